"""Adam against the machine's copy bandwidth, the bar a memory-bound kernel is held to.

    python -m numbanet.bench.bandwidth

Adam reads param, grad, m and v and writes param, m and v: 28 bytes per float32
parameter. The copy reference is the faster of NumPy's single-threaded copy and a
Numba copy split over every thread; a copy moves 8 bytes per element as counted here
(the cache line fill before each write is not counted, as it is not for Adam, whose
written arrays are read first anyway). All three are timed in turn, 15 times each on
10M elements (40 MB per array, more than the L3 cache), and the medians compared.
"""
import time

import numba
import numpy as np
from numba import prange

N = 10_000_000
REPEATS = 15


@numba.njit(parallel=True, cache=True)
def _threaded_copy(src, dst, chunks):
    n = src.shape[0]
    size = (n + chunks - 1) // chunks
    for c in prange(chunks):
        lo = min(c * size, n)
        hi = min(lo + size, n)
        dst[lo:hi] = src[lo:hi]


@numba.njit(parallel=True, cache=True)
def _threaded_triad(a, b, c, scalar, chunks):
    n = a.shape[0]
    size = (n + chunks - 1) // chunks
    for j in prange(chunks):
        lo = min(j * size, n)
        hi = min(lo + size, n)
        for i in range(lo, hi):
            a[i] = b[i] + scalar * c[i]


def triad_gbs(n=N, repeats=REPEATS):
    """STREAM's triad a = b + s * c over n float32 on every Numba thread: the best GB/s of
    `repeats` (STREAM's rule: the machine's limit, not its typical rate under other load),
    12 bytes per element (b and c read, a written; the write's cache line fill not counted)."""
    b = np.ones(n, dtype=np.float32)
    c = np.full(n, 2.0, dtype=np.float32)
    a = np.empty_like(b)
    chunks = 4 * numba.get_num_threads()
    _threaded_triad(a, b, c, np.float32(3.0), chunks)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        _threaded_triad(a, b, c, np.float32(3.0), chunks)
        times.append(time.perf_counter() - t)
    return 12 * n / min(times) / 1e9


def main():
    from numbanet import kernels
    be = kernels.get_backend("cpu")
    rng = np.random.default_rng(0)
    src = rng.random(N, dtype=np.float32)
    dst = np.empty_like(src)
    p, g = src.copy(), rng.random(N, dtype=np.float32) * np.float32(1e-3)
    m, v = np.zeros_like(p), np.zeros_like(p)
    chunks = 4 * numba.get_num_threads()
    _threaded_copy(src, dst, chunks)
    be.adam_step(p, g, m, v, lr=1e-3, step=1)
    times = {"numpy copy": [], "threaded copy": [], "adam_step": []}
    for i in range(REPEATS):
        t = time.perf_counter()
        np.copyto(dst, src)
        times["numpy copy"].append(time.perf_counter() - t)
        t = time.perf_counter()
        _threaded_copy(src, dst, chunks)
        times["threaded copy"].append(time.perf_counter() - t)
        t = time.perf_counter()
        be.adam_step(p, g, m, v, lr=1e-3, step=i + 2)
        times["adam_step"].append(time.perf_counter() - t)
    rate = {k: (28 if k == "adam_step" else 8) * N / np.median(ts) / 1e9 for k, ts in times.items()}
    copy = max(rate["numpy copy"], rate["threaded copy"])
    print(f"{N:,} float32, median of {REPEATS}, {numba.get_num_threads()} numba threads")
    print(f"  numpy copy     {rate['numpy copy']:6.1f} GB/s (8 B per element)")
    print(f"  threaded copy  {rate['threaded copy']:6.1f} GB/s (8 B per element)")
    print(f"  adam_step      {rate['adam_step']:6.1f} GB/s (28 B per parameter) = "
          f"{100 * rate['adam_step'] / copy:.0f}% of the faster copy")
    print(f"python -m numbanet.bench.bandwidth ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")


if __name__ == "__main__":
    main()
