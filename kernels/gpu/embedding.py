"""Embedding lookup (a row gather) and its gradient (a deterministic scatter-add) on the gpu.

forward: one thread per output element, consecutive threads on consecutive columns of a
row (coalesced reads of the table row and writes of the output row).
backward: one thread per table element (row r, column k) sums dout[i, k] over the
positions i with ids[i] == r in increasing i: each element has one writer and a fixed
order, so no float atomics and the same bits as the cpu backend.
Ids are range-checked by the backend before any kernel runs (Backend._ids_in_range).
"""
from numba import cuda

from numbanet.kernels.gpu.launch import grid_1d


@cuda.jit
def _gather(table, ids, out):
    d = table.shape[1]
    for t in range(cuda.grid(1), out.shape[0] * d, cuda.gridsize(1)):
        i = t // d
        k = t - i * d
        out[i, k] = table[ids[i], k]


def embedding_forward(table, ids, out):
    _gather[grid_1d(out.size)](table, ids, out)


@cuda.jit
def _scatter_scan(ids, dout, dtable):
    zero = dout.dtype.type(0)
    d = dtable.shape[1]
    for t in range(cuda.grid(1), dtable.shape[0] * d, cuda.gridsize(1)):
        r = t // d
        k = t - r * d
        acc = zero
        for i in range(ids.shape[0]):
            if ids[i] == r:
                acc += dout[i, k]
        dtable[r, k] = acc


def embedding_backward(ids, dout, dtable):
    _scatter_scan[grid_1d(dtable.size)](ids, dout, dtable)
