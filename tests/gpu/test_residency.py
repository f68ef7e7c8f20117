"""Device residency (issue 4): inside a training step of Sequential.fit on the gpu backend,
nothing crosses between host and device but the batch's upload (none when the dataset
is resident) and the scalars the progress bar shows. Weights, gradients, optimizer state
and activations stay on the device.

The test does not trust the code to say so: it wraps every way numba.cuda can move data
and counts what moves during fit, by direction, size and the line of numbanet that asked.

  cuda.to_device                        host -> device
  DeviceArray.copy_to_device            host -> device (device -> device is not counted)
  DeviceArray.copy_to_host              device -> host; np.asarray(dev) on a real GPU too
  DeviceArray[i] giving a scalar        device -> host on a real GPU
  DeviceArray[...] = host values        host -> device on a real GPU
  a host ndarray passed to a kernel     copied up and back by numba (In/Out/InOut hints)
  cuda.mapped_array / managed_array     host memory the device reads over the bus
  simulator: any other attribute        the simulator forwards unknown attributes (np.asarray,
                                        .sum(), .item(), ...) to a host NumPy array

Not wrapped, because they copy nothing: cuda.device_array(_like) (an allocation), slicing
(a view on both the device and the simulator), cuda.pinned_array (a host allocation; a
copy into it still goes through copy_to_host).

Steps are the windows between Callback.on_batch_begin and on_batch_end: the batch gather
or upload, forward, loss, backward and the optimizer update. Under the simulator every
CUDA thread is a Python thread, so the model and the data are tiny.
"""
import os
import traceback
from collections import defaultdict, namedtuple

import numpy as np
import pytest
from numba import cuda
from numba.cuda import config as cuda_config

from numbanet import kernels
from numbanet.nn.trainers import epoch_iterator
from numbanet.nn.callbacks import Callback
from numbanet.nn import regularizers
from numbanet.nn.layers import Activation, Conv2D, Dense, Flatten, MaxPooling2D
from numbanet.nn.models import Sequential
from numbanet.nn.optimizers import Adam

SIM = bool(cuda_config.ENABLE_CUDASIM)
if SIM:
    from numba.cuda.simulator import args as arg_hints
    from numba.cuda.simulator import kernel as sim_kernel
else:
    from numba.cuda import args as arg_hints

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEVICE_ARRAY = type(cuda.device_array(1))

# One float64 or int64: the step's loss, be.accuracy's count; or both as two float64s,
# the one copy of be.softmax_cross_entropy_stats.
SCALAR_BYTES = 8
STATS_BYTES = 16
# A step may copy back its loss (the mean data loss and every regularization penalty,
# summed on the device) and the correct count: the progress bar shows both. With a
# softmax + cross-entropy model that is one 16-byte copy (the fused loss kernel writes
# both, the penalties are added on the device); with another loss, the loss (a float64)
# and be.accuracy's count (an int64). The finite check is math.isfinite on that loss, on
# the host. Nothing goes up: labels were range-checked on the host by _check_y (also for
# a loss that is not fused with softmax), the batch indices are fit's own permutation,
# and the accuracy count is cleared by a kernel.
MAX_SCALARS_PER_STEP = 2

# Shapes chosen so that no weight (and so no gradient or Adam slot) has the byte size of
# a scalar or a batch: a transfer of that size would be a weight crossing the bus.
N, H, W, CLASSES, BATCH = 6, 6, 6, 3, 4
Transfer = namedtuple("Transfer", "direction nbytes how where window epoch")


def _caller():
    """file:line (function) of the innermost numbanet frame that asked for the copy."""
    for frame in reversed(traceback.extract_stack()):
        rel = os.path.relpath(frame.filename, ROOT)
        if rel.startswith(("kernels" + os.sep, "nn" + os.sep)):
            return f"{rel}:{frame.lineno} ({frame.name})"
    return "outside numbanet"


def _nbytes(a):
    return int(np.asarray(a).nbytes)


def _in_kernel():
    """True while a simulated kernel runs: its array reads and writes are device accesses."""
    return SIM and sim_kernel._kernel_context is not None


class Recorder:
    """Transfers made while recording, each tagged with the step window it fell in."""

    def __init__(self):
        self.events = []
        self.recording = False
        self.window = None
        self.epoch = None
        self._inside = 0

    def add(self, direction, nbytes, how):
        if not self.recording or self._inside:
            return
        self.events.append(Transfer(direction, int(nbytes), how, _caller(), self.window, self.epoch))

    def wrap(self, how, direction, size, fn):
        """fn, recording one transfer per call; transfers it makes itself (to_device copying
        through copy_to_device on a real GPU) are part of that one."""
        recorder = self

        def wrapper(*args, **kwargs):
            moved = size(*args, **kwargs)
            if moved is not None:
                recorder.add(direction, moved, how)
            recorder._inside += 1
            try:
                return fn(*args, **kwargs)
            finally:
                recorder._inside -= 1
        return wrapper


# Attributes the simulator forwards to its NumPy array that are metadata, not data.
_METADATA = {"dtype", "size", "ndim", "strides", "itemsize", "flags"}


@pytest.fixture
def transfers(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(cuda, "to_device", rec.wrap("cuda.to_device", "up", lambda a, *r, **k: _nbytes(a),
                                                    cuda.to_device))
    monkeypatch.setattr(DEVICE_ARRAY, "copy_to_host", rec.wrap(
        "copy_to_host", "down", lambda self, *r, **k: self.nbytes, DEVICE_ARRAY.copy_to_host))
    monkeypatch.setattr(DEVICE_ARRAY, "copy_to_device", rec.wrap(
        "copy_to_device", "up", lambda self, a, *r, **k: None if isinstance(a, DEVICE_ARRAY) else _nbytes(a),
        DEVICE_ARRAY.copy_to_device))

    get, set_ = DEVICE_ARRAY.__getitem__, DEVICE_ARRAY.__setitem__
    put = rec.wrap("device_array[...] = host value", "up",
                   lambda self, idx, value: None if isinstance(value, DEVICE_ARRAY) else _nbytes(value), set_)

    # Simulated kernels index arrays from many Python threads at once: they bypass the
    # recorder (and its counter) entirely.
    def getitem(self, idx):
        if _in_kernel():
            return get(self, idx)
        rec._inside += 1
        try:
            out = get(self, idx)
        finally:
            rec._inside -= 1
        if not isinstance(out, DEVICE_ARRAY):
            rec.add("down", np.dtype(self.dtype).itemsize, "device_array[...] -> scalar")
        return out

    def setitem(self, idx, value):
        return set_(self, idx, value) if _in_kernel() else put(self, idx, value)

    monkeypatch.setattr(DEVICE_ARRAY, "__getitem__", getitem)
    monkeypatch.setattr(DEVICE_ARRAY, "__setitem__", setitem)

    for hint in (arg_hints.In, arg_hints.Out, arg_hints.InOut):
        monkeypatch.setattr(hint, "to_device", rec.wrap(
            f"host array passed to a kernel ({hint.__name__})", "host",
            lambda self, *r, **k: _nbytes(self.value) if isinstance(self.value, np.ndarray) else None,
            hint.to_device))
    # Not a transfer, but counted the same way: every device allocation (the backend
    # allocates through cuda.device_array), direction "alloc".
    monkeypatch.setattr(cuda, "device_array", rec.wrap(
        "cuda.device_array", "alloc",
        lambda shape, dtype=np.float64, *r, **k: int(np.prod(shape)) * np.dtype(dtype).itemsize, cuda.device_array))
    for name in ("mapped_array", "managed_array"):
        if hasattr(cuda, name):
            monkeypatch.setattr(cuda, name, rec.wrap(f"cuda.{name}", "host", lambda *a, **k: 0,
                                                     getattr(cuda, name)))
    if SIM:
        forward = DEVICE_ARRAY.__getattr__

        def getattr_(self, name):
            if name not in _METADATA and not _in_kernel():
                rec.add("down", self._ary.nbytes, f"simulator: device_array.{name} read on the host")
            return forward(self, name)

        monkeypatch.setattr(DEVICE_ARRAY, "__getattr__", getattr_)
    return rec


class StepWindows(Callback):
    def __init__(self, rec):
        self.rec = rec

    def on_epoch_begin(self, epoch, logs=None):
        self.rec.epoch = epoch

    def on_batch_begin(self, batch, logs=None):
        self.rec.window = (self.rec.epoch, batch)

    def on_batch_end(self, batch, logs=None):
        self.rec.window = None


def tiny_cnn(variant="fused"):
    """The step's model. "fused": softmax + cross-entropy in one kernel. "regularized": L1
    and L2 penalties on kernels and a bias (before, one download per penalized array per
    step). "not fused": cross-entropy on probabilities after a linear Activation (before,
    one label upload and range check per step)."""
    reg = regularizers.l1_l2(0.01, 0.02) if variant == "regularized" else None
    m = Sequential()
    m.add(Conv2D(3, kernel_size=(3, 3), activation="relu", input_shape=(H, W, 1), kernel_regularizer=reg))
    m.add(MaxPooling2D(pool_size=(2, 2)))
    m.add(Flatten())
    m.add(Dense(CLASSES, activation="softmax", kernel_regularizer=reg,
                bias_regularizer=regularizers.l2(0.03) if reg else None))
    if variant == "not fused":
        m.add(Activation("linear"))
    m.compile(optimizer=Adam(learning_rate=0.05), loss="categorical_crossentropy", metrics=["accuracy"])
    m.build((H, W, 1), backend=kernels.get_backend("gpu"))
    assert m._fused == (variant != "not fused")
    return m


VARIANTS = ["fused", "regularized", "not fused"]


def data():
    rng = np.random.default_rng(4)
    return rng.random((N, H, W, 1), dtype=np.float32), rng.integers(0, CLASSES, N)


def fit_recorded(rec, epochs, variant="fused"):
    model = tiny_cnn(variant)
    x, y = data()
    rec.recording = True
    try:
        model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[StepWindows(rec)])
    finally:
        rec.recording = False
    assert rec._inside == 0, f"recorder: {rec._inside} wrapped calls never returned; transfers went unseen"
    assert model.optimizer.iterations == epochs * -(-N // BATCH), \
        f"fit: expected {epochs * -(-N // BATCH)} optimizer steps, got {model.optimizer.iterations}"
    return model, x


def by_step(rec, epochs):
    steps = defaultdict(list)
    for e in rec.events:
        if e.window is not None:
            steps[e.window].append(e)
    windows = [(ep, s) for ep in range(epochs) for s in range(-(-N // BATCH))]
    return {w: steps[w] for w in windows}, [e for e in rec.events if e.window is None]


def state_sizes(model):
    """Byte sizes of every weight, gradient and optimizer slot."""
    assert model.be.name == "gpu" and model.optimizer.slots, "fit: the model did not train on the gpu"
    arrays = [a for layer in model.layers for a in (*layer.params.values(), *layer.grads.values())]
    arrays += [a for d in model.optimizer.slots.values() for a in d.values()]
    if model._packed is not None:  # the flat arrays behind the weights, gradients and slots (nn/packed.py)
        arrays += [model._packed.params, model._packed.grads, *model.optimizer._flat[1].values()]
    return {int(a.nbytes) for a in arrays}


def show(events):
    return "\n  ".join(f"{e.direction} {e.nbytes} B via {e.how} at {e.where}" for e in events) or "(none)"


def moves(events):
    """The transfers among the events (allocations are recorded too, direction "alloc")."""
    return [e for e in events if e.direction != "alloc"]


def check_no_state_crosses(model, steps, legit_sizes):
    sizes = state_sizes(model)
    assert not sizes & legit_sizes, \
        f"test setup: weight sizes {sorted(sizes)} overlap the expected transfer sizes {sorted(legit_sizes)}"
    for w, events in steps.items():
        moved = [e for e in moves(events) if e.nbytes in sizes]
        assert not moved, (f"fit step {w}: a transfer has the size of a weight, gradient or optimizer slot "
                           f"({sorted(sizes)} bytes); expected them to stay on the device, got:\n  {show(moved)}")


def check_scalars(w, events):
    downs = [e for e in events if e.direction == "down"]
    assert downs, f"fit step {w}: expected the batch loss to come back, saw no download (is the recorder live?)"
    big = [e for e in downs if e.nbytes > STATS_BYTES]
    assert not big, f"fit step {w}: expected only scalar downloads (<= {STATS_BYTES} B), got:\n  {show(big)}"
    assert len(downs) <= MAX_SCALARS_PER_STEP, \
        f"fit step {w}: expected at most {MAX_SCALARS_PER_STEP} scalar downloads, got {len(downs)}:\n  {show(downs)}"
    other = [e for e in events if e.direction == "host"]
    assert not other, f"fit step {w}: expected no implicit or mapped copies, got:\n  {show(other)}"


def check_no_allocations_after_the_first_step_of_each_size(steps, n=N, batch=BATCH):
    """fit keeps one workspace per batch size (kernels.backend.Workspace): the first step
    of each size allocates its activations and gradients, every later step none."""
    sizes_seen = set()
    first = []
    for (epoch, step), events in sorted(steps.items()):
        size = min(batch, n - step * batch)
        allocs = [e for e in events if e.direction == "alloc"]
        if size in sizes_seen:
            assert not allocs, (f"fit step {(epoch, step)}: expected no device allocations after the first step "
                                f"of batch size {size}, got {len(allocs)}:\n  {show(allocs)}")
        else:
            sizes_seen.add(size)
            first.append(len(allocs))
    assert min(first) > 0, "the recorder saw no allocation in the first steps (is cuda.device_array wrapped?)"


def test_the_recorder_sees_every_transfer_path(transfers):
    """The wrappers are live: each copy below is counted once, with its size; views and
    device-to-device copies are not counted."""
    be = kernels.get_backend("gpu")

    @cuda.jit
    def double(a):
        i = cuda.grid(1)
        if i < a.shape[0]:
            a[i] *= 2

    host = np.arange(4, dtype=np.float32)
    transfers.recording = True
    dev = be.asarray(host)                       # up 16
    dev.copy_to_device(host)                     # up 16
    dev.copy_to_device(be.zeros((4,)))           # device to device: not counted
    be.to_numpy(dev)                             # down 16
    dev[1]                                       # down 4
    dev[2:3] = host[:1]                          # up 4
    dev[0:2]                                     # a view: not counted
    double[1, 32](host)                          # host array to a kernel
    double[1, 32](dev)                           # a device array: not counted
    np.asarray(dev)                              # down 16
    transfers.recording = False
    got = [(e.direction, e.nbytes) for e in moves(transfers.events)]
    assert [(e.direction, e.nbytes) for e in transfers.events if e.direction == "alloc"] == [("alloc", 16)], \
        "recorder: be.zeros((4,)) is the one allocation that is not part of a copy"
    want = [("up", 16), ("up", 16), ("down", 16), ("down", 4), ("up", 4), ("host", 16)]
    if SIM:
        want.append(("down", 16))  # the simulator copies the kernel's host argument back
    want.append(("down", 16))
    assert got == want, f"recorder: expected {want}, got {got}:\n  {show(transfers.events)}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_resident_fit_copies_only_scalars_per_step(transfers, variant):
    epochs = 2
    model, x = fit_recorded(transfers, epochs, variant)
    steps, outside = by_step(transfers, epochs)
    for w, events in steps.items():
        ups = [e for e in events if e.direction == "up"]
        assert not ups, f"fit step {w} (resident data): expected no uploads, got:\n  {show(ups)}"
        check_scalars(w, events)
    # Outside the steps: the dataset once (x, then int32 labels), then each epoch's
    # shuffled order (int32), nothing else and nothing back.
    want = [("up", x.nbytes), ("up", N * 4)] + [("up", N * 4)] * epochs
    got = [(e.direction, e.nbytes) for e in moves(outside)]
    assert got == want, (f"fit outside steps (resident data): expected {want}, got {got}:\n  {show(outside)}")
    check_no_state_crosses(model, steps, {SCALAR_BYTES, STATS_BYTES, x.nbytes, N * 4})
    check_no_allocations_after_the_first_step_of_each_size(steps)


@pytest.mark.parametrize("variant", VARIANTS)
def test_non_resident_fit_uploads_each_batch_once(transfers, monkeypatch, variant):
    monkeypatch.setattr(epoch_iterator, "RESIDENT_BYTES", 0)
    model, x = fit_recorded(transfers, 1, variant)
    steps, outside = by_step(transfers, 1)
    legit = {SCALAR_BYTES, STATS_BYTES}
    for (epoch, step), events in steps.items():
        rows = min(BATCH, N - step * BATCH)
        want = [x[:rows].nbytes, rows * 4]  # the x batch, then its int32 labels
        legit |= set(want)
        ups = [e.nbytes for e in events if e.direction == "up"]
        assert ups == want, (f"fit step {(epoch, step)} (data uploaded per batch): expected uploads of "
                             f"{want} bytes (x batch, y batch), got {ups}:\n  {show(events)}")
        check_scalars((epoch, step), events)
    assert not moves(outside), \
        f"fit outside steps (data uploaded per batch): expected no transfers, got:\n  {show(moves(outside))}"
    check_no_state_crosses(model, steps, legit)


# --------------------------------------------------------------------------- a charlm step (issue 12)
# The GPT of `numbanet train --model charlm`, tiny: token and position embeddings, a pre-norm
# block of causal attention and a GELU MLP, AdamW on a cosine schedule with global gradient
# clipping (its norm and scale stay on the device). Sizes chosen so that no weight has the
# byte size of the dataset (4 x 5 int32 = 80 B), an order (16 B) or a scalar (8 B); two
# steps of one batch size, so that the second must allocate nothing on the device (the
# workspace, and launch.scratch for the attention, layer norm, embedding sort and
# clipping temporaries).
LM_N, LM_T, LM_V, LM_BATCH = 4, 5, 11, 2


def test_charlm_fit_copies_only_scalars_per_step(transfers):
    from numbanet.nn import charlm
    model = charlm.build_model(LM_V, LM_T, d_model=8, num_heads=2, num_layers=1).to("gpu")
    charlm.compile_model(model, total_steps=10, warmup_steps=2)
    assert model.be.name == "gpu"
    rng = np.random.default_rng(5)
    x = rng.integers(0, LM_V, (LM_N, LM_T)).astype(np.int32)
    y = rng.integers(0, LM_V, (LM_N, LM_T)).astype(np.int32)
    epochs = 1   # two steps; the simulator runs every thread in Python
    transfers.recording = True
    try:
        model.fit(x, y, batch_size=LM_BATCH, epochs=epochs, verbose=0, callbacks=[StepWindows(transfers)])
    finally:
        transfers.recording = False
    steps_per_epoch = -(-LM_N // LM_BATCH)
    assert model.optimizer.iterations == epochs * steps_per_epoch
    steps = defaultdict(list)
    for e in transfers.events:
        if e.window is not None:
            steps[e.window].append(e)
    outside = [e for e in transfers.events if e.window is None]
    for w in [(ep, s) for ep in range(epochs) for s in range(steps_per_epoch)]:
        events = steps[w]
        ups = [e for e in events if e.direction == "up"]
        assert not ups, f"charlm fit step {w}: expected no uploads, got:\n  {show(ups)}"
        check_scalars(w, events)
    want = [("up", x.nbytes), ("up", y.nbytes)] + [("up", LM_N * 4)] * epochs
    got = [(e.direction, e.nbytes) for e in moves(outside)]
    assert got == want, f"charlm fit outside steps: expected {want}, got {got}:\n  {show(moves(outside))}"
    sizes = {int(a.nbytes) for layer in model.layers for a in (*layer.params.values(), *layer.grads.values())}
    sizes |= {int(a.nbytes) for d in model.optimizer.slots.values() for a in d.values()}
    legit = {SCALAR_BYTES, STATS_BYTES, x.nbytes, LM_N * 4}
    assert not sizes & legit, f"test setup: weight sizes {sorted(sizes)} overlap {sorted(legit)}"
    for w, events in steps.items():
        moved = [e for e in moves(events) if e.nbytes in sizes]
        assert not moved, f"charlm fit step {w}: a weight-sized transfer:\n  {show(moved)}"
    check_no_allocations_after_the_first_step_of_each_size(steps, n=LM_N, batch=LM_BATCH)


# --------------------------------------------------------------------------- a recurrent step (issue 13)
# Embedding(mask_zero=True) -> LSTM (sequences) -> Bidirectional(GRU) -> Dense: the masked
# recurrences forward and backward, dropout masks drawn on the device. No weight has the
# byte size of the dataset (6 x 4 int32 = 96 B), an order or the labels (24 B), a scalar or
# the stats (8, 16 B); two steps of one batch size, the second allocating nothing.
RNN_N, RNN_T, RNN_V, RNN_BATCH = 6, 4, 7, 3


def test_recurrent_fit_copies_only_scalars_per_step(transfers):
    from numbanet.nn.layers import GRU, LSTM, Bidirectional, Embedding, Input
    from numbanet.nn.models import Model
    ids = Input((RNN_T,), dtype="int32")
    h = Embedding(RNN_V, 3, mask_zero=True)(ids)
    h = LSTM(3, return_sequences=True, recurrent_dropout=0.25, seed=1)(h)
    h = Bidirectional(GRU(2, dropout=0.25, seed=2))(h)
    model = Model(ids, Dense(CLASSES, activation="softmax")(h)).to("gpu")
    model.compile(optimizer=Adam(learning_rate=0.05), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert model.be.name == "gpu"
    rng = np.random.default_rng(6)
    x = rng.integers(0, RNN_V, (RNN_N, RNN_T)).astype(np.int32)
    y = rng.integers(0, CLASSES, RNN_N).astype(np.int32)
    transfers.recording = True
    try:
        model.fit(x, y, batch_size=RNN_BATCH, epochs=1, verbose=0, callbacks=[StepWindows(transfers)])
    finally:
        transfers.recording = False
    steps_per_epoch = -(-RNN_N // RNN_BATCH)
    assert model.optimizer.iterations == steps_per_epoch
    steps = defaultdict(list)
    for e in transfers.events:
        if e.window is not None:
            steps[e.window].append(e)
    for w in [(0, s) for s in range(steps_per_epoch)]:
        ups = [e for e in steps[w] if e.direction == "up"]
        assert not ups, f"recurrent fit step {w}: expected no uploads, got:\n  {show(ups)}"
        check_scalars(w, steps[w])
    outside = [(e.direction, e.nbytes) for e in moves(transfers.events) if e.window is None]
    want = [("up", x.nbytes), ("up", y.nbytes), ("up", RNN_N * 4)]
    assert outside == want, f"recurrent fit outside steps: expected {want}, got {outside}"
    sizes = {int(a.nbytes) for layer in model.layers for a in (*layer.params.values(), *layer.grads.values())}
    sizes |= {int(a.nbytes) for d in model.optimizer.slots.values() for a in d.values()}
    legit = {SCALAR_BYTES, STATS_BYTES, x.nbytes, RNN_N * 4}
    assert not sizes & legit, f"test setup: weight sizes {sorted(sizes)} overlap {sorted(legit)}"
    for w, events in steps.items():
        moved = [e for e in moves(events) if e.nbytes in sizes]
        assert not moved, f"recurrent fit step {w}: a weight-sized transfer:\n  {show(moved)}"
    check_no_allocations_after_the_first_step_of_each_size(steps, n=RNN_N, batch=RNN_BATCH)


# --------------------------------------------------------------------------- data-parallel steps (issue 14)
class LoopbackComm:
    """Stands in for a 2-process mpi4py communicator, inside this process (rank 0; the
    other process holds the same rows, so Allreduce doubles the buffer). Records where
    each Allreduce's buffer lived and its size."""

    def __init__(self, be, rec):
        self.be, self.rec, self.calls = be, rec, []

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 2

    def Bcast(self, buf, root=0):
        pass   # rank 0 sends; nothing changes here

    def Allreduce(self, sendbuf, recvbuf, op=None):
        on_device = isinstance(recvbuf, DEVICE_ARRAY)
        self.calls.append((self.rec.window, "device" if on_device else "host", int(recvbuf.nbytes)))
        if on_device:
            self.be.scale(recvbuf, 2.0, out=recvbuf)
        else:
            recvbuf *= 2


@pytest.mark.parametrize("cuda_aware", [False, True])
def test_data_parallel_step_copies_the_packed_gradients_once_each_way(transfers, monkeypatch, cuda_aware):
    """One Allreduce per step over every gradient packed in one buffer, with the step's
    loss and metric counts behind them: without CUDA-aware MPI the packed gradients come
    down once and go up once per step (and nothing else of their size moves); with it,
    the device buffer goes to Allreduce and only the few logged numbers cross."""
    from numbanet.nn import distributed
    monkeypatch.setenv("NUMBANET_MPI_CUDA_AWARE", "1" if cuda_aware else "0")
    model = tiny_cnn("fused")
    comm = LoopbackComm(model.be, transfers)
    monkeypatch.setattr(distributed, "_comm", distributed.Communicator(comm))
    grads = sum(int(np.prod(w.shape)) for w in model.get_weights())
    packed = grads * 4                 # float32 gradients
    tail = (1 + 2) * 4                 # the loss, then the accuracy's hits and count
    x, y = data()
    epochs = 1
    transfers.recording = True
    try:
        model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[StepWindows(transfers)])
    finally:
        transfers.recording = False
    assert transfers._inside == 0
    steps, _ = by_step(transfers, epochs)
    windows = sorted(steps)
    assert model.optimizer.iterations == len(windows)
    # Exactly one Allreduce in each step, of the whole packed buffer.
    where = "device" if cuda_aware else "host"
    assert comm.calls == [(w, where, packed + tail) for w in windows], comm.calls
    # The packed optimizer's flat weight/gradient/moment arrays (nn/packed.py) have the
    # Allreduce buffer's size by construction: the crossings of that size are counted exactly
    # below; every other weight-sized transfer is refused.
    assert model._packed is not None, "test setup: fit did not pack this model's parameters"
    sizes = state_sizes(model) - {packed}
    assert packed not in {int(np.prod(w.shape)) * 4 for w in model.get_weights()}, \
        f"test setup: the packed size {packed} B equals a weight's"
    for w in windows:
        events = steps[w]
        if cuda_aware:
            assert not [e for e in moves(events) if e.nbytes >= packed], show(events)
            # The logged numbers go up into the buffer's tail and come back reduced (the tiny
            # model's output bias has their size too: those two are the tail's, not its).
            assert [e.nbytes for e in events if e.direction == "up"] == [tail], show(events)
            assert [e.nbytes for e in events if e.direction == "down" and e.nbytes == tail] == [tail], show(events)
            events = [e for e in events if e.nbytes != tail]
        else:
            assert [e.nbytes for e in events if e.direction == "down" and e.nbytes == packed] == [packed], show(events)
            assert [e.nbytes for e in events if e.direction == "up"] == [packed], show(events)
            # Besides them only scalars and the loss step's 16-byte stats read come down.
            assert not [e for e in events if e.direction == "down" and e.nbytes > SCALAR_BYTES
                        and e.nbytes not in (packed, STATS_BYTES)], show(events)
        moved = [e for e in moves(events) if e.nbytes in sizes]
        assert not moved, f"data-parallel step {w}: a weight-sized transfer:\n  {show(moved)}"
        assert not [e for e in events if e.direction == "host"], show(events)
