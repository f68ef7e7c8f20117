"""Launch-configuration helpers shared by the gpu compute modules."""
from numba import cuda

# 256 threads = 8 warps per block: enough warps per SM to hide global-memory latency
# while leaving room for several resident blocks (registers are the limiter on H100/H200).
THREADS_1D = 256

# Grid-stride loops cover any size; capping the grid keeps launch overhead constant for
# huge arrays (132 SMs x 16 blocks of 256 threads saturate an H200).
MAX_BLOCKS_1D = 132 * 16


def blocks_1d(n, threads=THREADS_1D):
    return max(1, min(MAX_BLOCKS_1D, -(-int(n) // threads)))


_dummies = {}


def dummy(dtype):
    """A one-element device array standing in for an optional argument (None)."""
    import numpy as np
    key = np.dtype(dtype).str
    if key not in _dummies:
        _dummies[key] = cuda.device_array(1, dtype=dtype)
    return _dummies[key]


def grid_1d(n):
    """(blocks, threads) for a grid-stride kernel over n items: whole warps, no more
    threads than items for small arrays (a 10-element bias needs one warp, not 8)."""
    n = max(1, int(n))
    threads = min(THREADS_1D, 32 * -(-n // 32))
    return blocks_1d(n, threads), threads


def rows_1d(n):
    """(blocks, threads) for a kernel with one thread per item and no grid-stride loop."""
    n = max(1, int(n))
    threads = min(THREADS_1D, 32 * -(-n // 32))
    return -(-n // threads), threads
