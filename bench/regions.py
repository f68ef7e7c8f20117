"""What a parallel region costs here: starting and joining Numba's threads, the fixed price
of every call of a prange kernel, beside a small GEMM's own time.

    python -m numbanet.bench.regions
    OMP_WAIT_POLICY=PASSIVE python -m numbanet.bench.regions    # as numbanet bench runs

Times an empty region (one item per thread) and a 256^3 float32 matmul on one thread and
on every thread (the GEMM's choice in force), medians after a warm-up. Under OpenMP's
default wait policy an idle worker spins for a while before it sleeps, so a region that
follows the last one soon finds it awake; under PASSIVE (what `numbanet bench` sets, so
that one implementation's idle threads do not slow the next one's) each region wakes it
from sleep, and the region pays the operating system's wake-up twice: at its start, and
at its end for the thread that finished first. On a virtual machine a wake-up can cost
tens of microseconds: against a 0.2 ms product that is most of what separates two threads
from half of one thread's time.
"""
import time

import numba
import numpy as np
from numba import prange

REPEATS = 2000
GEMM_SIZE = 256
GEMM_REPEATS = 300


@numba.njit(parallel=True, cache=True)
def _region(out):
    for i in prange(out.shape[0]):
        out[i] = i


def _median_us(fn, repeats):
    for _ in range(min(50, repeats)):
        fn()
    times = np.empty(repeats)
    for i in range(repeats):
        t = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t
    return float(np.median(times)) * 1e6


def region_us(repeats=None):
    """Median microseconds of an empty parallel region with one item per Numba thread."""
    repeats = repeats or REPEATS
    out = np.zeros(numba.get_num_threads(), dtype=np.int64)
    return _median_us(lambda: _region(out), repeats)


def gemm_us(threads, n=None, repeats=None):
    """Median microseconds of an n^3 float32 matmul (the choice in force) on `threads` threads."""
    n, repeats = n or GEMM_SIZE, repeats or GEMM_REPEATS
    from numbanet.kernels.cpu import gemm, tuning
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    out = np.empty((n, n), dtype=np.float32)
    choice, bias = tuning.current(), gemm.no_bias(np.float32)
    return _median_us(lambda: gemm.matmul_with(choice, a, b, False, False, bias, out, threads), repeats)


def main():
    import os
    from numbanet import kernels
    kernels.get_backend("cpu")   # the GEMM's cache lock and tuned choice, as in training
    threads = numba.get_num_threads()
    region = region_us()
    one, every = gemm_us(1), gemm_us(threads)
    print(f"{threads} numba threads ({numba.threading_layer()} threading layer), "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print(f"  empty parallel region        {region:8.1f} us (median of {REPEATS})")
    print(f"  matmul {GEMM_SIZE}^3 on 1 thread     {one:8.1f} us (median of {GEMM_REPEATS})")
    print(f"  matmul {GEMM_SIZE}^3 on {threads} threads    {every:8.1f} us = {one / every:.2f}x one thread; "
          f"one thread's time / {threads} + a region: {one / threads + region:.1f} us")
    print(f"python -m numbanet.bench.regions ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")


if __name__ == "__main__":
    main()
