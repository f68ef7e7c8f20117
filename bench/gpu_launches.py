"""Kernel launches and device allocations in one training step of the article's CNN on the
gpu backend, and the Python launch overhead they cost.

    python -m numbanet.bench.gpu_launches                  # batch 128, as the article trains
    python -m numbanet.bench.gpu_launches --model charlm   # the GPT of `numbanet train --model charlm`, batch 32

Every numba kernel launch goes through one call: the simulator's FakeCUDAKernel.__call__,
or on a real GPU numba.cuda.dispatcher._LaunchConfiguration.__call__. launching() wraps
it and tells its listeners the kernel and the arguments; allocating() wraps
cuda.device_array, through which the gpu backend allocates everything. A step is the
window between Callback.on_batch_begin and on_batch_end of Sequential.fit: the batch
gather, forward, loss, backward and the optimizer update.

Without a GPU the step runs on Numba's CUDA simulator in dry mode: kernels are counted
but not run (the simulator would take hours for a 128-image step of real size); every
array a skipped kernel writes is zero-filled, so the step's loss is a finite 0 and fit
takes the same path as with real numbers. The count is exact: which kernels a step
launches depends on the shapes (the split-K rule included), never on the values. On a
GPU the kernels run.

The overhead estimate uses numba-cuda's dispatch cost from Python on an H100: about 6 us
per launch plus 1.5 us per argument (LAUNCH_US, ARG_US; bench/gpu_check.sh measures it on
the machine it runs on).
"""
import argparse
import contextlib
import os
import sys

PACKAGE = "numbanet.kernels.gpu"
LAUNCH_US, ARG_US = 6.0, 1.5

_listeners = []
_installed = None


def _simulated():
    from numba import config
    return bool(config.ENABLE_CUDASIM)


def kernel_name(kernel):
    """module:kernel, with a kernel family's arguments (launch.kernel_id) when it has them."""
    from numbanet.kernels.gpu.launch import kernel_id
    fn = getattr(kernel, "py_func", None) or getattr(kernel, "fn", None)
    if not fn.__module__.startswith(PACKAGE):
        return f"{fn.__module__}:{fn.__qualname__}"
    ident = kernel_id(kernel)
    if ident is None:
        return f"{fn.__module__}:{fn.__qualname__}"
    name, args = ident
    return name + (repr(tuple(args)) if args else "")


def _notify(kernel, args, block):
    skip = False
    for listener in list(_listeners):
        skip |= bool(listener(kernel, args, block))
    return skip


def _install():
    """Wrap the launch call once per process; -> the wrapped class."""
    global _installed
    if _installed is not None:
        return
    if _simulated():
        from numba.cuda.simulator import kernel as sim

        original = sim.FakeCUDAKernel.__call__

        def call(self, *args):
            if _listeners and not self._device and sim._kernel_context is None:
                if _notify(self, args, tuple(self.block_dim)):
                    return None
            return original(self, *args)
        sim.FakeCUDAKernel.__call__ = call
        _installed = sim.FakeCUDAKernel
    else:
        from numba.cuda import dispatcher

        original = dispatcher._LaunchConfiguration.__call__

        def call(self, *args):
            if _listeners:
                block = tuple(self.blockdim) if isinstance(self.blockdim, tuple) else (self.blockdim,)
                _notify(self.dispatcher, args, block)
            return original(self, *args)
        dispatcher._LaunchConfiguration.__call__ = call
        _installed = dispatcher._LaunchConfiguration


@contextlib.contextmanager
def launching(listener):
    """listener(kernel, args, block) is called before every kernel launch; under the
    simulator, a true return value skips the launch."""
    _install()
    _listeners.append(listener)
    try:
        yield listener
    finally:
        _listeners.remove(listener)


@contextlib.contextmanager
def allocating(listener):
    """listener(shape, dtype) for every cuda.device_array call (the backend's allocations)."""
    from numba import cuda
    original = cuda.device_array

    def device_array(shape, dtype=float, *args, **kwargs):
        listener(shape, dtype)
        return original(shape, dtype, *args, **kwargs)
    cuda.device_array = device_array
    try:
        yield listener
    finally:
        cuda.device_array = original


def _zero_fill(args):
    """Dry mode: what a skipped kernel would have written is zeros instead of garbage."""
    for a in args:
        ary = getattr(a, "_ary", None)
        if ary is not None:
            ary.fill(0)


class StepCounter:
    """Launches and allocations per fit step (a Callback and both listeners in one)."""

    def __init__(self, dry=False):
        self.dry = dry
        self.window = None
        self.launches = {}     # step -> [(kernel name, argument count)]
        self.allocations = {}  # step -> [(shape, dtype)]

    # Callback
    def set_model(self, model):
        self.model = model

    def on_batch_begin(self, batch, logs=None):
        self.window = batch
        self.launches[batch], self.allocations[batch] = [], []

    def on_batch_end(self, batch, logs=None):
        self.window = None

    def __getattr__(self, name):
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    # listeners
    def launch(self, kernel, args, block):
        if self.window is not None and kernel_name(kernel).startswith(PACKAGE):
            self.launches[self.window].append((kernel_name(kernel), len(args)))
        if self.dry:
            _zero_fill(args)
            return True
        return False

    def allocate(self, shape, dtype):
        if self.window is not None:
            self.allocations[self.window].append((shape, dtype))


def charlm_model_and_data(batch, steps):
    """The GPT that `numbanet train --model charlm` trains (its default sizes, AdamW with
    global clipping), on the gpu backend, and random windows of characters."""
    import numpy as np
    from numbanet import kernels
    from numbanet.nn import charlm
    vocabulary = 96
    model = charlm.build_model(vocabulary)
    model.build(backend=kernels.get_backend("gpu"))
    charlm.compile_model(model, total_steps=1000)
    rng = np.random.default_rng(0)
    shape = (batch * steps, charlm.SEQUENCE_LENGTH)
    return model, rng.integers(0, vocabulary, shape).astype(np.int32), rng.integers(0, vocabulary, shape).astype(np.int32)


def count_fit_steps(batch=128, steps=3, dry=None, model=None, x=None, y=None):
    """Fit the article's CNN (or `model`) for `steps` steps of `batch` on the gpu backend,
    counting; -> StepCounter. Random digits-shaped data unless x, y are given."""
    import numpy as np
    from numba import cuda
    from numbanet import kernels
    from numbanet.nn.mnist_cnn import build_model

    dry = _simulated() if dry is None else dry
    if model is None:
        model = build_model()
        model.build((28, 28, 1), backend=kernels.get_backend("gpu"))
    if x is None:
        rng = np.random.default_rng(0)
        x = rng.random((batch * steps,) + tuple(model.input_shape), dtype=np.float32)
        y = rng.integers(0, 10, batch * steps)
    counter = StepCounter(dry)
    with launching(counter.launch), allocating(counter.allocate):
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[counter])
    if not _simulated():
        cuda.synchronize()
    return counter


def report(counter, what="the article's CNN"):
    """The last step (steady state: optimizer slots and scratch buffers exist by then)."""
    from collections import Counter
    step = max(counter.launches)
    launches = counter.launches[step]
    by_kernel = Counter(name for name, _ in launches)
    args = sum(n for _, n in launches)
    lines = [f"one training step of {what} on the gpu backend "
             f"({'counted on the CUDA simulator, kernels not run' if counter.dry else 'on the GPU'}); "
             f"step {step + 1} of {len(counter.launches)}", "",
             f"{'launches':>8}  kernel"]
    lines += [f"{n:>8}  {name.split(':', 1)[1]} ({name.split(':')[0].rsplit('.', 1)[-1]}.py)"
              for name, n in sorted(by_kernel.items(), key=lambda kv: (-kv[1], kv[0]))]
    overhead = LAUNCH_US * len(launches) + ARG_US * args
    lines += ["", f"kernel launches per step:        {len(launches)} ({args} arguments)",
              f"Python launch overhead per step: ~{overhead:.0f} us "
              f"({LAUNCH_US:g} us per launch + {ARG_US:g} us per argument)",
              f"device allocations per step:     {len(counter.allocations[step])}"]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m numbanet.bench.gpu_launches", description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("cnn", "charlm"), default="cnn",
                        help="cnn: the article's CNN (default); charlm: the GPT of numbanet train --model charlm")
    parser.add_argument("--batch", type=int, default=None, help="samples per step (cnn: 128, charlm: 32)")
    args = parser.parse_args(argv)
    from numbanet import kernels
    if not kernels.gpu_status()[0] and os.environ.get("NUMBA_ENABLE_CUDASIM", "0") in ("", "0"):
        # No GPU: count on the simulator, which must be chosen before numba.cuda loads.
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        os.execve(sys.executable, [sys.executable, "-m", "numbanet.bench.gpu_launches", *sys.argv[1:]], env)
    if args.model == "charlm":
        from numbanet.nn import charlm
        batch = args.batch or charlm.BATCH_SIZE
        model, x, y = charlm_model_and_data(batch, 3)
        print(report(count_fit_steps(batch=batch, model=model, x=x, y=y),
                     f"the charlm GPT ({charlm.NUM_LAYERS} layers, d_model {charlm.D_MODEL}, "
                     f"{charlm.SEQUENCE_LENGTH} characters)"))
    else:
        print(report(count_fit_steps(batch=args.batch or 128)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
