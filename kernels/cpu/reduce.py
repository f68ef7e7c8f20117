"""Reductions: column sums (bias gradients), a scalar sum, row-wise argmax."""
import numba
import numpy as np
from numba import prange

_COLS = 64


@numba.njit(parallel=True, cache=True)
def column_sum(x, out):
    n, c = x.shape
    # Parallel over blocks of columns, each summed over rows top to bottom: the same
    # order on every call and every thread count, so the result is deterministic.
    blocks = (c + _COLS - 1) // _COLS
    for blk in prange(blocks):
        lo = blk * _COLS
        hi = min(lo + _COLS, c)
        for k in range(lo, hi):
            out[k] = 0
        for r in range(n):
            for k in range(lo, hi):
                out[k] += x[r, k]


@numba.njit(cache=True)
def sum(x):
    acc = 0.0
    for i in range(x.shape[0]):
        acc += np.float64(x[i])
    return acc


@numba.njit(parallel=True, cache=True)
def argmax(x, out):
    n, c = x.shape
    for r in prange(n):
        best = 0
        for k in range(1, c):
            if x[r, k] > x[r, best]:
                best = k
        out[r] = best
