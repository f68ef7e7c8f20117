"""Reductions on the gpu, all in a fixed order (no float atomics), so the same input gives
bit-identical results run to run.

column_sum: two passes. Pass 1 gives each thread one column of one chunk of CHUNK rows
(column index fastest across threads: a warp reads 32 consecutive words of a row, a
coalesced load) and writes a partial; pass 2 gives each thread one column and adds the
partials in chunk order. One pass with a thread per column would leave a 32-channel
bias gradient with 32 busy threads on a 132-SM chip.

sum (and the l1/l2 penalty): each thread accumulates a grid-stride slice in float64, the
block folds its 256 values with a shared-memory tree (fixed pairing), and one block folds
the per-block partials the same way; one float64 scalar is copied back. The grid size is
a function of the length only, so the pairing, and the result, never change.
"""
import numpy as np
from numba import cuda, float64

from numbanet.kernels.gpu.launch import THREADS_1D, blocks_1d, inlined, kernel_family, rows_1d, scratch
from numbanet.kernels.gpu.order import row_argmax
from numbanet.kernels.gpu.rows import fold_sum

CHUNK = 256


@cuda.jit
def _column_partials(x, partial, rows, cols, chunk):
    t = cuda.grid(1)
    nchunks = partial.shape[0]
    if t < nchunks * cols:
        g = t // cols
        c = t - g * cols
        r0 = g * chunk
        r1 = min(r0 + chunk, rows)
        # A typed zero, not x[0, 0] * 0: an inf in row 0 would make every column NaN.
        acc = x.dtype.type(0)
        for r in range(r0, r1):
            acc += x[r, c]
        partial[g, c] = acc


@cuda.jit
def _column_fold(partial, out):
    c = cuda.grid(1)
    if c < out.shape[0]:
        acc = partial[0, c]
        for g in range(1, partial.shape[0]):
            acc += partial[g, c]
        out[c] = acc


def column_sum(x, out):
    rows, cols = x.shape
    nchunks = -(-rows // CHUNK)
    partial = scratch("column-sum", (nchunks, cols), x.dtype)
    n = nchunks * cols
    _column_partials[rows_1d(n)](x, partial, rows, cols, CHUNK)
    _column_fold[rows_1d(cols)](partial, out)


@inlined
def _identity(v, a, b):
    return v


@inlined
def _l1_l2(v, a, b):
    return a * abs(v) + b * v * v


@inlined
def _square(v, a, b):
    return v * v


_TERMS = {"identity": _identity, "l1_l2": _l1_l2, "square": _square}


@kernel_family
def sum_kernel(term_name):
    """A block-partial kernel for sum_i term(x[i], a, b), float64 accumulation."""
    term = _TERMS[term_name]

    @cuda.jit
    def kernel(x, a, b, partial):
        buf = cuda.shared.array(THREADS_1D, float64)
        tid = cuda.threadIdx.x
        acc = 0.0
        for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
            acc += term(float64(x[i]), a, b)
        buf[tid] = acc
        cuda.syncthreads()
        fold_sum(buf, tid, THREADS_1D)
        if tid == 0:
            partial[cuda.blockIdx.x] = buf[0]
    return kernel


@cuda.jit
def _add_scaled(result, scale, into):
    into[0] += scale * result[0]


def _fold_on_device(kernel, x, a, b):
    """-> a device float64 (1,) array holding the reduction (nothing copied back); both
    arrays are scratch buffers (launch.scratch): read the result before the next sum."""
    nblocks = blocks_1d(x.shape[0])
    partial = scratch("sum-partials", (nblocks,), np.float64)
    kernel[nblocks, THREADS_1D](x, a, b, partial)
    result = scratch("sum", (1,), np.float64)
    sum_kernel("identity")[1, THREADS_1D](partial, 0.0, 0.0, result)
    return result


def fold_partials(partial, out):
    """out[0] = the fixed-order sum of a float64 array of block partials, on the device."""
    sum_kernel("identity")[1, THREADS_1D](partial, 0.0, 0.0, out)


def sum(x):  # noqa: A001  (the op is called sum in every backend)
    return float(_fold_on_device(sum_kernel("identity"), x, 0.0, 0.0).copy_to_host()[0])


def sum_into(x, scale, into):
    """into[0] += scale * sum(x), on the device."""
    _add_scaled[1, 1](_fold_on_device(sum_kernel("identity"), x, 0.0, 0.0), float(scale), into)


def l1_l2_sum(w, l1, l2):
    """l1 * sum|w| + l2 * sum(w^2) as one fixed-order float64 reduction."""
    return float(_fold_on_device(sum_kernel("l1_l2"), w, float(l1), float(l2)).copy_to_host()[0])


def l1_l2_sum_into(w, l1, l2, into):
    """into[0] += l1 * sum|w| + l2 * sum(w^2), on the device."""
    _add_scaled[1, 1](_fold_on_device(sum_kernel("l1_l2"), w, float(l1), float(l2)), 1.0, into)


@cuda.jit
def _argmax_rows(x, out):
    # One thread per row: rows are short (class scores). The first NaN, else the first
    # maximum, wins, as in numpy.argmax (kernels/gpu/order.py).
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = row_argmax(x, i)


def argmax(x, out):
    _argmax_rows[rows_1d(x.shape[0])](x, out)
