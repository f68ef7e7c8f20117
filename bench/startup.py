"""Start-up cost: Numba's first-ever compile against a warm on-disk cache.

    python -m numbanet.bench.startup

Runs the same child process twice against one fresh, empty NUMBA_CACHE_DIR: the first
compiles every kernel it touches and writes the cache, the second only loads it. Each
child reports, from just before `import numbanet`:
  - first step: the article's CNN built, compiled and one batch of 128 trained
    (`train_on_batch`), i.e. what a user waits for before training starts;
  - every op f32 / f64: then each op's declared warm-up (kernels/ops/) in float32, then
    in float64, so that every kernel the backend has is compiled (or loaded) by the end.
Times are wall-clock seconds of one run each (compile time is what is measured here, so
there is no warm-up to discard); run it again to see the spread. Beside each, the CPU
seconds the child used (all its threads): on a machine shared with other jobs the wall
time grows with the load, the CPU time much less, so it is the figure to compare
between runs there. When the child's first cache miss started the background compile
(kernels/cpu/precompile.py), its helper process's CPU seconds follow after a `+`: the
child waits for the helper after each column (outside the timed wall clock) so that they
are counted; the first-step column thus counts all the helper did, including work the
step did not need. The helper starts only when the load average leaves a core idle:
NUMBANET_BACKGROUND_COMPILE=1 measures with it regardless, =0 without it.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _helper_cpu():
    """CPU seconds of the background-compile helper processes so far (waited for first)."""
    from numbanet.kernels.cpu import precompile
    precompile.wait()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _child():
    t0, c0 = time.perf_counter(), time.process_time()
    import numpy as np

    from numbanet import kernels
    from numbanet.nn.mnist_cnn import build_model

    kernels.set_backend(os.environ.get("NUMBANET_BACKEND", "cpu"))
    rng = np.random.default_rng(0)
    x = rng.random((128, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 128).astype(np.int64)
    model = build_model()
    loss = model.train_on_batch(x, y)
    t_step, c_step = time.perf_counter() - t0, time.process_time() - c0
    if not np.isfinite(loss[0]):
        raise SystemExit(f"startup: the first training step gave a loss of {loss[0]}")
    h_step = _helper_cpu()
    t1 = time.perf_counter()   # the helper's wait is not timed
    _every_op(kernels.get_backend(), np.float32)
    t_f32, c_f32 = time.perf_counter() - t1 + t_step, time.process_time() - c0
    h_f32 = _helper_cpu()
    t2 = time.perf_counter()
    _every_op(kernels.get_backend(), np.float64)
    t_all, c_all = time.perf_counter() - t2 + t_f32, time.process_time() - c0
    h_all = _helper_cpu()
    print(json.dumps({"first_step_s": t_step, "every_op_f32_s": t_f32, "every_op_s": t_all,
                      "first_step_cpu_s": c_step, "every_op_f32_cpu_s": c_f32, "every_op_cpu_s": c_all,
                      "first_step_helper_cpu_s": h_step, "every_op_f32_helper_cpu_s": h_f32,
                      "every_op_helper_cpu_s": h_all}))


def _every_op(be, dt):
    """Every op's declared warm-up (kernels/ops/) once in dtype dt: each op on tiny arrays,
    once per kernel path it has."""
    from numbanet.kernels import ops
    for op in ops.all_ops():
        op.warmup(be, dt)


def _run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    proc = subprocess.run([sys.executable, "-m", "numbanet.bench.startup", "--child"], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"startup: the child process failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu(r, k):
    helper = r[k + "_helper_cpu_s"]
    return f"{r[k + '_cpu_s']:.1f}" + (f"+{helper:.1f}" if helper > 0.05 else "")


def main():
    with tempfile.TemporaryDirectory(prefix="numbanet-cache-") as cache_dir:
        cold = _run(cache_dir)
        warm = _run(cache_dir)
    head = f"{'process':<34} {'first step s':>18} {'+ every op f32 s':>18} {'+ every op f64 s':>18}"
    print(head)
    for label, r in (("1st (empty cache: compiles)", cold), ("2nd (cache written by the 1st)", warm)):
        cells = [f"{r[k + '_s']:.2f} ({_cpu(r, k)})" for k in ("first_step", "every_op_f32", "every_op")]
        print(f"{label:<34} " + " ".join(f"{c:>18}" for c in cells))
    print("seconds from `import numbanet`: to one finished train_on_batch of the article's CNN (batch 128), "
          "then to every op's warm-up in float32, then in float64 (every kernel compiled); "
          "wall clock, with the child's CPU seconds in brackets (+ its background-compile helper's, when one ran)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"python -m numbanet.bench.startup ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        _child()
    else:
        main()
