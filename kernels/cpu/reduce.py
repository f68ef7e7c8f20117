"""Reductions: column sums (bias gradients), a scalar sum, row-wise argmax."""
import numba
import numpy as np
from numba import prange

from numbanet.kernels.cpu.order import row_argmax

# Rows per partial sum. Fixed, not derived from the thread count, so the summation order
# (and so the float result) is the same on every machine and every call.
_ROW_BLOCK = 2048


@numba.njit(cache=True)
def _column_sum_rows(x, out):
    c = x.shape[1]
    for k in range(c):
        out[k] = 0
    for r in range(x.shape[0]):
        # A row view with indices from 0: the inner loop vectorizes (x[r, k] does not).
        row = x[r]
        for k in range(c):
            out[k] += row[k]


@numba.njit(parallel=True, cache=True)
def _column_sum_blocks(x, out):
    n, c = x.shape
    blocks = (n + _ROW_BLOCK - 1) // _ROW_BLOCK
    partial = np.empty((blocks, c), x.dtype)
    # Blocks of rows in parallel (a bias gradient has few columns and many rows), then
    # the partial sums combined in block order.
    for blk in prange(blocks):
        _column_sum_rows(x[blk * _ROW_BLOCK:min((blk + 1) * _ROW_BLOCK, n)], partial[blk])
    for k in range(c):
        out[k] = partial[0, k]
    for blk in range(1, blocks):
        for k in range(c):
            out[k] += partial[blk, k]


def column_sum(x, out):
    if x.shape[0] <= _ROW_BLOCK:
        _column_sum_rows(x, out)
    else:
        _column_sum_blocks(x, out)


@numba.njit(cache=True)
def sum(x):
    # float64 accumulation: the result is a returned Python float, not an array.
    acc = 0.0
    for i in range(x.shape[0]):
        acc += np.float64(x[i])
    return acc


def sum_into(x, scale, into):
    """into[0] += scale * sum(x) (into: float64, shape (1,))."""
    into[0] += scale * sum(x)


@numba.njit(parallel=True, cache=True)
def argmax(x, out):
    for r in prange(x.shape[0]):
        out[r] = row_argmax(x, r)
