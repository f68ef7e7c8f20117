"""Elementwise ops: bias add, scaling, dropout, L1/L2 penalty and its gradient, row gather."""
import numba
import numpy as np
from numba import prange

from numbanet.kernels.cpu import rules as R
from numbanet.kernels.cpu.threads import SERIAL_MAX

@numba.njit(parallel=True, cache=True)
def dropout_forward(x, y, mask, rate, seed):
    keep_scale = x.dtype.type(1.0 / (1.0 - rate))
    zero = x.dtype.type(0)
    for i in prange(x.shape[0]):
        mi = keep_scale if R.counter_uniform(seed, i) >= rate else zero
        mask[i] = mi
        y[i] = x[i] * mi


@numba.njit(parallel=True, cache=True)
def multiply(a, b, out):
    for i in prange(a.shape[0]):
        out[i] = a[i] * b[i]


@numba.njit(parallel=True, cache=True)
def _scale(x, alpha, y):
    for i in prange(x.shape[0]):
        y[i] = alpha * x[i]


def scale(x, alpha, y):
    _scale(x, x.dtype.type(alpha), y)


@numba.njit(parallel=True, cache=True)
def bias_add(x, b, y):
    n, c = x.shape
    for r in prange(n):
        for k in range(c):
            y[r, k] = x[r, k] + b[k]


@numba.njit(parallel=True, cache=True)
def take_rows(x, indices, y):
    rest = x.shape[1]
    n = x.shape[0]
    for r in prange(indices.shape[0]):
        src = indices[r]
        # The backend has range-checked indices unless the caller built them (fit's
        # permutation); a bad entry still never reads outside x: its row becomes 0.
        ok = R.in_range(src, n)
        for k in range(rest):
            y[r, k] = x[src, k] if ok else 0


@numba.njit(parallel=True, cache=True)
def _l1_l2_grad(w, dw, l1, two_l2):
    zero = w.dtype.type(0)
    for i in prange(w.shape[0]):
        wi = w[i]
        sign = w.dtype.type(1) if wi > zero else (w.dtype.type(-1) if wi < zero else zero)
        dw[i] += l1 * sign + two_l2 * wi


def l1_l2_grad(w, dw, l1, l2):
    t = w.dtype.type
    _l1_l2_grad(w, dw, t(l1), t(2.0 * l2))


@numba.njit(cache=True)
def _abs_and_square_sums(w):
    # float64 accumulation: the result is a returned scalar, not an array.
    sa = 0.0
    sq = 0.0
    for i in range(w.shape[0]):
        wi = np.float64(w[i])
        sa += abs(wi)
        sq += wi * wi
    return sa, sq


def l1_l2_penalty(w, l1, l2):
    sa, sq = _abs_and_square_sums(w)
    return l1 * sa + l2 * sq


def l1_l2_penalty_into(w, l1, l2, into):
    """into[0] += the penalty (into: float64, shape (1,))."""
    into[0] += l1_l2_penalty(w, l1, l2)




@numba.njit(cache=True)
def _add_serial(a, b, out):
    for i in range(a.shape[0]):
        out[i] = a[i] + b[i]


@numba.njit(parallel=True, cache=True)
def _add_parallel(a, b, out):
    for i in prange(a.shape[0]):
        out[i] = a[i] + b[i]


def add(a, b, out):
    # out may be a or b (in-place accumulation): each element is read before it is written.
    (_add_parallel if a.shape[0] > SERIAL_MAX else _add_serial)(a, b, out)


@numba.njit(parallel=True, cache=True)
def _copy_columns(src, src_col, dst, dst_col, w):
    """dst[r, dst_col:dst_col + w] = src[r, src_col:src_col + w] for every row r."""
    for r in prange(dst.shape[0]):
        s = src[r, src_col:src_col + w]
        d = dst[r, dst_col:dst_col + w]
        for k in range(w):
            d[k] = s[k]


def copy_into_columns(src, dst, offset):
    """dst[r, offset:offset + src.shape[1]] = src[r]: one input of a concatenation."""
    _copy_columns(src, 0, dst, offset, src.shape[1])


def copy_from_columns(src, dst, offset):
    """dst[r] = src[r, offset:offset + dst.shape[1]]: one piece of a split."""
    _copy_columns(src, offset, dst, 0, dst.shape[1])


@numba.njit(parallel=True, cache=True)
def _transpose6(x, y, shape, strides):
    # y (flat, C order over `shape`) gets x[sum_d i_d * strides[d]]: strides are x's element
    # strides permuted into y's axis order. Six axes always (leading ones of size 1), so one
    # compiled kernel serves every rank up to 6; the innermost loop runs over y's last axis,
    # contiguous in y.
    n0, n1, n2, n3, n4, n5 = shape[0], shape[1], shape[2], shape[3], shape[4], shape[5]
    s0, s1, s2, s3, s4, s5 = strides[0], strides[1], strides[2], strides[3], strides[4], strides[5]
    outer = n0 * n1 * n2 * n3
    for t in prange(outer):
        i3 = t % n3
        r = t // n3
        i2 = r % n2
        r //= n2
        i1 = r % n1
        i0 = r // n1
        base = i0 * s0 + i1 * s1 + i2 * s2 + i3 * s3
        o = t * n4 * n5
        for i4 in range(n4):
            b4 = base + i4 * s4
            for i5 in range(n5):
                y[o] = x[b4 + i5 * s5]
                o += 1


def transpose(x_flat, y_flat, shape, strides):
    _transpose6(x_flat, y_flat, np.asarray(shape, np.int64), np.asarray(strides, np.int64))
