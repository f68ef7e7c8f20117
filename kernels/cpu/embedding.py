"""Embedding lookup (a row gather) and its gradient (a deterministic scatter-add).

The backward pass sorts positions by id with a stable counting sort, then each table row
sums its positions' gradients in increasing position order, one row per prange
iteration: no two threads write the same row and the order of every sum is fixed, so
the result is the same bits on every run and thread count, and the same order as the
gpu kernel (kernels/gpu/embedding.py), which sorts the same way.

The backend range-checks the ids before these run (Backend._check_range) unless the
caller vouches for them (_ids_checked); an out-of-range id still never reaches memory
outside the arrays: its output row is 0 and its gradient is dropped.
"""
import numba
import numpy as np
from numba import prange

from numbanet.kernels.cpu import rules as R
from numbanet.kernels.cpu.rows import copy_row, zero_row


@numba.njit(parallel=True, cache=True)
def _gather(table, ids, out):
    v, d = table.shape
    for i in prange(ids.shape[0]):
        r = ids[i]
        if R.in_range(r, v):
            copy_row(out[i], table[r], d)
        else:
            zero_row(out[i], d)


def embedding_forward(table, ids, out):
    _gather(table, ids, out)


@numba.njit(cache=True)
def sort_by_id(ids, v, starts, order):
    """Stable counting sort: order[starts[r]:starts[r + 1]] are the positions i with
    ids[i] == r, increasing."""
    counts = np.zeros(v + 1, dtype=np.int64)
    for i in range(ids.shape[0]):
        if R.in_range(ids[i], v):
            counts[ids[i] + 1] += 1
    starts[0] = 0
    for r in range(v):
        starts[r + 1] = starts[r] + counts[r + 1]
    fill = starts[:v].copy()
    for i in range(ids.shape[0]):
        r = ids[i]
        if R.in_range(r, v):
            order[fill[r]] = i
            fill[r] += 1


@numba.njit(parallel=True, cache=True)
def _scatter_rows(dout, starts, order, dtable):
    v, d = dtable.shape
    zero = dtable.dtype.type(0)
    for r in prange(v):
        acc = dtable[r]
        for k in range(d):
            acc[k] = zero
        for e in range(starts[r], starts[r + 1]):
            src = dout[order[e]]
            for k in range(d):
                acc[k] += src[k]


def embedding_backward(ids, dout, dtable):
    v = dtable.shape[0]
    starts = np.empty(v + 1, dtype=np.int64)
    order = np.empty(ids.shape[0], dtype=np.int64)
    sort_by_id(ids, v, starts, order)
    _scatter_rows(dout, starts, order, dtable)
