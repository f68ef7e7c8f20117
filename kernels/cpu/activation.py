"""Activations and their gradients on flat arrays (relu, sigmoid, tanh from the forward output y;
gelu, silu, leaky_relu from the input x); softmax on (N, C)."""
import math

import numba
from numba import prange


@numba.njit(parallel=True, cache=True)
def relu_forward(x, y):
    zero = x.dtype.type(0)
    for i in prange(x.shape[0]):
        y[i] = x[i] if x[i] > zero else zero


@numba.njit(parallel=True, cache=True)
def relu_backward(y, dy, dx):
    zero = y.dtype.type(0)
    for i in prange(y.shape[0]):
        dx[i] = dy[i] if y[i] > zero else zero


@numba.njit(parallel=True, cache=True)
def sigmoid_forward(x, y):
    one = x.dtype.type(1)
    for i in prange(x.shape[0]):
        xi = x[i]
        # exp of a non-positive number only: no overflow for large |x|.
        if xi >= 0:
            y[i] = one / (one + math.exp(-xi))
        else:
            e = math.exp(xi)
            y[i] = e / (one + e)


@numba.njit(parallel=True, cache=True)
def sigmoid_backward(y, dy, dx):
    one = y.dtype.type(1)
    for i in prange(y.shape[0]):
        dx[i] = dy[i] * y[i] * (one - y[i])


@numba.njit(parallel=True, cache=True)
def tanh_forward(x, y):
    for i in prange(x.shape[0]):
        y[i] = math.tanh(x[i])


@numba.njit(parallel=True, cache=True)
def tanh_backward(y, dy, dx):
    one = y.dtype.type(1)
    for i in prange(y.shape[0]):
        dx[i] = dy[i] * (one - y[i] * y[i])


@numba.njit(parallel=True, cache=True)
def softmax_forward(x, y, causal_rows):
    """Row softmax of x (N, C). causal_rows = Tq > 0: the rows are (..., Tq) query rows of
    (Tq, C) score matrices, row r is query i = r % Tq and keeps columns j <= i only (the
    rest are set to exactly 0, never computed); 0: every column is kept."""
    n, c = x.shape
    zero = x.dtype.type(0)
    for r in prange(n):
        end = c if causal_rows == 0 else min(c, r % causal_rows + 1)
        # Subtract the row max so exp never overflows.
        mx = x[r, 0]
        for k in range(1, end):
            if x[r, k] > mx:
                mx = x[r, k]
        total = zero
        for k in range(end):
            e = math.exp(x[r, k] - mx)
            y[r, k] = e
            total += e
        inv = x.dtype.type(1) / total
        for k in range(end):
            y[r, k] *= inv
        for k in range(end, c):
            y[r, k] = zero


@numba.njit(parallel=True, cache=True)
def softmax_backward(y, dy, dx):
    n, c = y.shape
    for r in prange(n):
        s = y.dtype.type(0)
        for k in range(c):
            s += dy[r, k] * y[r, k]
        for k in range(c):
            dx[r, k] = y[r, k] * (dy[r, k] - s)


# GELU, SiLU and leaky ReLU: their derivatives are not functions of the output alone
# (GELU is not monotonic; leaky ReLU with a slope <= 0 loses the sign), so their
# backwards take the forward's input x, not y.
_SQRT_HALF = 0.7071067811865476          # 1 / sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327       # 1 / sqrt(2 pi)
_SQRT_2_OVER_PI = 0.7978845608028654     # sqrt(2 / pi), the tanh approximation's scale
_GELU_CUBIC = 0.044715


@numba.njit(parallel=True, cache=True)
def _gelu_erf_forward(x, y):
    half, one, r = x.dtype.type(0.5), x.dtype.type(1), x.dtype.type(_SQRT_HALF)
    for i in prange(x.shape[0]):
        xi = x[i]
        y[i] = half * xi * (one + math.erf(xi * r))


@numba.njit(parallel=True, cache=True)
def _gelu_tanh_forward(x, y):
    half, one = x.dtype.type(0.5), x.dtype.type(1)
    c, a = x.dtype.type(_SQRT_2_OVER_PI), x.dtype.type(_GELU_CUBIC)
    for i in prange(x.shape[0]):
        xi = x[i]
        y[i] = half * xi * (one + math.tanh(c * (xi + a * xi * xi * xi)))


@numba.njit(parallel=True, cache=True)
def _gelu_erf_backward(x, dy, dx):
    half, one = x.dtype.type(0.5), x.dtype.type(1)
    r, pdf = x.dtype.type(_SQRT_HALF), x.dtype.type(_INV_SQRT_2PI)
    for i in prange(x.shape[0]):
        xi = x[i]
        # d/dx x Phi(x) = Phi(x) + x phi(x)
        dx[i] = dy[i] * (half * (one + math.erf(xi * r)) + xi * pdf * math.exp(-half * xi * xi))


@numba.njit(parallel=True, cache=True)
def _gelu_tanh_backward(x, dy, dx):
    half, one = x.dtype.type(0.5), x.dtype.type(1)
    c, a, three_a = x.dtype.type(_SQRT_2_OVER_PI), x.dtype.type(_GELU_CUBIC), x.dtype.type(3 * _GELU_CUBIC)
    for i in prange(x.shape[0]):
        xi = x[i]
        t = math.tanh(c * (xi + a * xi * xi * xi))
        dx[i] = dy[i] * (half * (one + t) + half * xi * (one - t * t) * c * (one + three_a * xi * xi))


def gelu_forward(x, y, approximate):
    (_gelu_tanh_forward if approximate else _gelu_erf_forward)(x, y)


def gelu_backward(x, dy, dx, approximate):
    (_gelu_tanh_backward if approximate else _gelu_erf_backward)(x, dy, dx)


@numba.njit(parallel=True, cache=True)
def silu_forward(x, y):
    one = x.dtype.type(1)
    for i in prange(x.shape[0]):
        xi = x[i]
        # exp of a non-positive argument only, as in sigmoid_forward.
        if xi >= 0:
            s = one / (one + math.exp(-xi))
        else:
            e = math.exp(xi)
            s = e / (one + e)
        y[i] = xi * s


@numba.njit(parallel=True, cache=True)
def silu_backward(x, dy, dx):
    one = x.dtype.type(1)
    for i in prange(x.shape[0]):
        xi = x[i]
        if xi >= 0:
            s = one / (one + math.exp(-xi))
        else:
            e = math.exp(xi)
            s = e / (one + e)
        # d/dx x s(x) = s + x s (1 - s)
        dx[i] = dy[i] * s * (one + xi * (one - s))


@numba.njit(parallel=True, cache=True)
def _leaky_relu_forward(x, y, slope):
    zero = x.dtype.type(0)
    for i in prange(x.shape[0]):
        xi = x[i]
        # NaN fails the test and stays NaN (slope * NaN).
        y[i] = xi if xi >= zero else slope * xi


@numba.njit(parallel=True, cache=True)
def _leaky_relu_backward(x, dy, dx, slope):
    zero = x.dtype.type(0)
    for i in prange(x.shape[0]):
        # At x == 0 the slope is negative_slope, as in PyTorch (x > 0 selects 1).
        dx[i] = dy[i] if x[i] > zero else slope * dy[i]


def leaky_relu_forward(x, y, negative_slope):
    _leaky_relu_forward(x, y, x.dtype.type(negative_slope))


def leaky_relu_backward(x, dy, dx, negative_slope):
    _leaky_relu_backward(x, dy, dx, x.dtype.type(negative_slope))
