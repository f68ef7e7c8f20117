"""Data-parallel scaling on one machine, measured, and across machines, on paper.

    python -m numbanet.bench.scaling [--steps 12] [--warmup 3] [--rounds 3] [--charlm]

Measures one training step of the article's CNN (global batch 128, MNIST-shaped random
data) three ways, each in fresh processes, medians after warm-up:

    1 process,  1 Numba thread
    2 processes (mpiexec -n 2, nn/distributed.py), 1 Numba thread each, 64 rows each
    1 process,  2 Numba threads

and, inside the 2-process job, the Allreduce of the CNN's packed gradients alone. It
prints the speed-up and efficiency of the two processes (and of the two threads) over
one thread, then the ring-allreduce model for N machines at 25 and 100 Gb/s:

    allreduce(N) = 2 (N - 1) / N * bytes / bandwidth + 2 (N - 1) * latency
    step(N)      = compute + allreduce(N)           (each machine keeps its own batch)

with `compute` the step measured here with one process and one thread (one core: on this
shared 2-core machine the least disturbed figure; --charlm: also the charlm GPT's step,
`numbanet train --model charlm`'s model at its batch of 32 windows) and bytes the model's
float32 gradients. Faster machines (more cores, a GPU) shrink `compute` and so raise the
allreduce's share: the table's allreduce column is what to set against a step's time. Needs mpiexec (pip install 'numbanet[mpi]').
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

BANDWIDTHS_GBPS = (25, 100)
NODES = (1, 2, 4, 8, 16, 64)
LATENCY_S = 5e-6   # per message of the ring (one hop), a typical RDMA/RoCE figure; TCP is 10-50 us


def ring_allreduce_seconds(nbytes, nodes, gbps, latency_s=LATENCY_S):
    """A ring allreduce of nbytes on `nodes` machines: a reduce-scatter and an allgather,
    each N - 1 steps moving nbytes / N per machine."""
    if nodes == 1:
        return 0.0
    return 2 * (nodes - 1) / nodes * nbytes * 8 / (gbps * 1e9) + 2 * (nodes - 1) * latency_s


# --------------------------------------------------------------------------- one process of a measurement
def _cnn_step_times(steps, warmup):
    from numbanet.nn import distributed
    from numbanet.nn.callbacks import Callback
    from numbanet.nn.mnist_cnn import build_model
    from numbanet.nn.utils import set_random_seed

    distributed.init()
    set_random_seed(0)
    batch = 128
    rng = np.random.default_rng(0)
    n = batch * (steps + warmup)
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, n)
    model = build_model()

    class Clock(Callback):
        def __init__(self):
            self.times = []

        def on_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    clock = Clock()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[clock])
    result = {"step_s": float(np.median(clock.times[warmup:])), "params": model.count_params(),
              "processes": distributed.size()}
    comm = distributed.active()
    if comm is not None:
        # The step's Allreduce alone: the packed gradients and 3 logged numbers, float32.
        buf = np.zeros(model.count_params() + 3, np.float32)
        times = []
        for _ in range(warmup + 3 * steps):
            comm.comm.Barrier()
            start = time.perf_counter()
            comm.allreduce(buf)
            times.append(time.perf_counter() - start)
        result["allreduce_s"] = float(np.median(times[warmup:]))
        result["allreduce_bytes"] = int(buf.nbytes)
    return result


def _charlm_step_time(steps, warmup):
    from numbanet.nn import charlm
    from numbanet.nn.callbacks import Callback
    from numbanet.nn.utils import set_random_seed

    set_random_seed(0)
    vocab = 97
    rng = np.random.default_rng(0)
    n = charlm.BATCH_SIZE * (steps + warmup)
    x = rng.integers(0, vocab, (n, charlm.SEQUENCE_LENGTH)).astype(np.int32)
    y = rng.integers(0, vocab, (n, charlm.SEQUENCE_LENGTH)).astype(np.int32)
    model = charlm.compile_model(charlm.build_model(vocab), total_steps=steps + warmup)
    times = []

    class Clock(Callback):
        def on_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(x, y, batch_size=charlm.BATCH_SIZE, epochs=1, verbose=0, shuffle=False, callbacks=[Clock()])
    return {"step_s": float(np.median(times[warmup:])), "params": model.count_params()}


def _worker(args):
    result = _charlm_step_time(args.steps, args.warmup) if args.worker == "charlm" else \
        _cnn_step_times(args.steps, args.warmup)
    from numbanet.nn import distributed
    if distributed.is_chief():
        print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- the driver
def _run(argv, threads, processes=1, timeout=1800):
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), NUMBANET_BACKEND="cpu")
    cmd = [sys.executable, "-m", "numbanet.bench.scaling", *argv]
    if processes > 1:
        mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
        if mpiexec is None:
            raise SystemExit("numbanet.bench.scaling: mpiexec not found; pip install 'numbanet[mpi]'")
        cmd = [mpiexec, "-n", str(processes), *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    if r.returncode != 0 or not lines:
        raise SystemExit(f"numbanet.bench.scaling: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _paper(name, compute_s, params):
    nbytes = 4 * params
    print(f"\n{name}: compute {compute_s * 1e3:.1f} ms/step (measured: one process, one thread), gradients "
          f"{nbytes / 1e6:.2f} MB ({params:,} float32); ring allreduce, {LATENCY_S * 1e6:.0f} us per hop, "
          f"each machine keeping its batch")
    print("| machines | " + " | ".join(f"allreduce {g} Gb/s | step {g} Gb/s | efficiency {g} Gb/s"
                                       for g in BANDWIDTHS_GBPS) + " |")
    print("|---:|" + "---:|---:|---:|" * len(BANDWIDTHS_GBPS))
    for nodes in NODES:
        cells = []
        for g in BANDWIDTHS_GBPS:
            t = ring_allreduce_seconds(nbytes, nodes, g)
            cells += [f"{t * 1e3:.3f} ms", f"{(compute_s + t) * 1e3:.1f} ms", f"{compute_s / (compute_s + t):.1%}"]
        print(f"| {nodes} | " + " | ".join(cells) + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m numbanet.bench.scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per run (default 12)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of the three runs (default 3)")
    parser.add_argument("--charlm", action="store_true", help="also time the charlm GPT's step for the paper model")
    parser.add_argument("--worker", choices=("cnn", "charlm"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)
    common = ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    # The three runs interleaved, --rounds times: on a shared machine the load moves
    # between runs; each figure is the median over the rounds.
    runs = {"one": [], "two_proc": [], "two_threads": []}
    for _ in range(args.rounds):
        runs["one"].append(_run(["--worker", "cnn", *common], threads=1))
        runs["two_proc"].append(_run(["--worker", "cnn", *common], threads=1, processes=2))
        runs["two_threads"].append(_run(["--worker", "cnn", *common], threads=2))
    step = {k: float(np.median([r["step_s"] for r in v])) for k, v in runs.items()}
    spread = {k: (min(r["step_s"] for r in v), max(r["step_s"] for r in v)) for k, v in runs.items()}
    base = step["one"]
    print(f"article CNN, global batch 128: median over {args.rounds} interleaved rounds of each run's median of "
          f"{args.steps} steps after {args.warmup} (cpu backend; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at the end)")
    print("| run | ms/step | range over rounds | speed-up | efficiency |")
    print("|---|---:|---:|---:|---:|")
    for key, label, n in (("one", "1 process, 1 thread", 1), ("two_proc", "2 processes (MPI), 1 thread each", 2),
                          ("two_threads", "1 process, 2 threads", 2)):
        lo, hi = spread[key]
        print(f"| {label} | {step[key] * 1e3:.1f} | {lo * 1e3:.1f}-{hi * 1e3:.1f} | {base / step[key]:.2f}x | "
              f"{base / step[key] / n:.0%} |")
    ar = float(np.median([r["allreduce_s"] for r in runs["two_proc"]]))
    nbytes = runs["two_proc"][0]["allreduce_bytes"]
    print(f"Allreduce of the CNN's packed gradients ({nbytes / 1e6:.2f} MB, 2 processes, shared memory): "
          f"{ar * 1e3:.2f} ms, {ar / step['two_proc']:.1%} of the 2-process step")
    params = runs["one"][0]["params"]
    _paper("article CNN, 128 images per machine", base, params)
    if args.charlm:
        lm = _run(["--worker", "charlm", *common], threads=1)
        _paper("charlm GPT, 32 x 128 characters per machine", lm["step_s"], lm["params"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
