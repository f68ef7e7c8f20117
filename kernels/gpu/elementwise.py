"""Elementwise ops on the gpu: one thread per element in grid-stride loops (consecutive
threads, consecutive addresses: coalesced), scalars cast to the array dtype on the host as
the cpu backend does, so float32 arrays are updated in float32 arithmetic on both.

dropout draws its mask from kernels/rules.py's counter hash, as the cpu does, so the masks
are identical bit for bit and need no RNG state on the device.
"""
import numpy as np
from numba import cuda

from numbanet.kernels.gpu import reduce
from numbanet.kernels.gpu import rules as R
from numbanet.kernels.gpu.checks import in_range
from numbanet.kernels.gpu.launch import grid_1d, unravel2


@cuda.jit
def _dropout(x, y, mask, rate, seed, keep_scale):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        mi = keep_scale if R.counter_uniform(seed, i) >= rate else keep_scale * 0
        mask[i] = mi
        y[i] = x[i] * mi


def dropout_forward(x, y, mask, rate, seed):
    keep_scale = x.dtype.type(1.0 / (1.0 - rate))
    _dropout[grid_1d(x.shape[0])](x, y, mask, float(rate), np.uint64(seed), keep_scale)


@cuda.jit
def _multiply(a, b, out):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        out[i] = a[i] * b[i]


def multiply(a, b, out):
    _multiply[grid_1d(a.shape[0])](a, b, out)


@cuda.jit
def _scale(x, alpha, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = alpha * x[i]


def scale(x, alpha, y):
    _scale[grid_1d(x.shape[0])](x, x.dtype.type(alpha), y)


@cuda.jit
def _bias_add(x, b, y):
    # Flat index over (rows, C): coalesced; b (C values) stays in L1 across rows.
    c = x.shape[1]
    for t in range(cuda.grid(1), x.shape[0] * c, cuda.gridsize(1)):
        r, k = unravel2(t, c)
        y[r, k] = x[r, k] + b[k]


def bias_add(x, b, y):
    _bias_add[grid_1d(x.size)](x, b, y)


@cuda.jit
def _take_rows(x, indices, y):
    rest = x.shape[1]
    for t in range(cuda.grid(1), y.shape[0] * rest, cuda.gridsize(1)):
        r, k = unravel2(t, rest)
        src = indices[r]
        # Range-checked by the backend unless fit built the indices itself; a bad entry
        # still never reads outside x: its row becomes 0.
        y[r, k] = x[src, k] if in_range(src, x.shape[0]) else x.dtype.type(0)


def take_rows(x, indices, y):
    if y.size:
        _take_rows[grid_1d(y.size)](x, indices, y)


@cuda.jit
def _l1_l2_grad(w, dw, l1, two_l2):
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        wi = w[i]
        zero = w.dtype.type(0)  # not wi * 0, which is NaN for an infinite weight
        sign = zero + 1 if wi > zero else (zero - 1 if wi < zero else zero)
        dw[i] += l1 * sign + two_l2 * wi


def l1_l2_grad(w, dw, l1, l2):
    t = w.dtype.type
    _l1_l2_grad[grid_1d(w.shape[0])](w, dw, t(l1), t(2.0 * l2))


def l1_l2_penalty(w, l1, l2):
    return reduce.l1_l2_sum(w, l1, l2)


def l1_l2_penalty_into(w, l1, l2, into):
    reduce.l1_l2_sum_into(w, l1, l2, into)


@cuda.jit
def _add(a, b, out):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        out[i] = a[i] + b[i]


def add(a, b, out):
    # out may be a or b: each thread reads its element before writing it.
    _add[grid_1d(a.shape[0])](a, b, out)


@cuda.jit
def _copy_into_columns(src, dst, offset):
    w = src.shape[1]
    for t in range(cuda.grid(1), src.shape[0] * w, cuda.gridsize(1)):
        r, k = unravel2(t, w)
        dst[r, offset + k] = src[r, k]


@cuda.jit
def _copy_from_columns(src, dst, offset):
    w = dst.shape[1]
    for t in range(cuda.grid(1), dst.shape[0] * w, cuda.gridsize(1)):
        r, k = unravel2(t, w)
        dst[r, k] = src[r, offset + k]


def copy_into_columns(src, dst, offset):
    _copy_into_columns[grid_1d(src.size)](src, dst, offset)


def copy_from_columns(src, dst, offset):
    _copy_from_columns[grid_1d(dst.size)](src, dst, offset)


@cuda.jit
def _transpose6(x, y, n1, n2, n3, n4, n5, s0, s1, s2, s3, s4, s5):
    # One thread per element of y (consecutive threads write consecutive addresses; the
    # reads are strided, which is the nature of a transpose). See kernels/cpu/elementwise.py.
    for t in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        r = t
        i5 = r % n5
        r //= n5
        i4 = r % n4
        r //= n4
        i3 = r % n3
        r //= n3
        i2 = r % n2
        r //= n2
        i1 = r % n1
        i0 = r // n1
        y[t] = x[i0 * s0 + i1 * s1 + i2 * s2 + i3 * s3 + i4 * s4 + i5 * s5]


def transpose(x_flat, y_flat, shape, strides):
    if y_flat.size:
        _transpose6[grid_1d(y_flat.size)](x_flat, y_flat, *[int(v) for v in shape[1:]],
                                          *[int(v) for v in strides])
