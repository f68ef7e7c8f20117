"""Activations on the gpu: one thread per element (grid-stride), a block per row for softmax.

Elementwise kernels are memory bound: consecutive threads touch consecutive elements, so
every warp load/store is one coalesced 128-byte transaction. Softmax gives each row to a
block (kernels/gpu/rows.py): rows range from 10 classes to a vocabulary or a sequence of
attention scores, and a row per thread would read them uncoalesced and serially.
"""
import math

from numba import cuda, float64

from numbanet.kernels.gpu.launch import grid_1d
from numbanet.kernels.gpu.rows import ROW_THREADS, block_max, block_sum


def _launch(kernel, n, *args):
    kernel[grid_1d(n)](*args)


# PyTorch's NaN rule, as on the cpu: relu(NaN) = NaN, relu(-inf) = 0 (a typed zero, not
# v * 0, which is NaN for -inf), and dx is zeroed only where y <= 0.
@cuda.jit
def _relu_forward(x, y):
    zero = x.dtype.type(0)
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        y[i] = zero if v <= zero else v


@cuda.jit
def _relu_backward(y, dy, dx):
    zero = dy.dtype.type(0)
    for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        dx[i] = zero if y[i] <= zero else dy[i]


@cuda.jit
def _sigmoid_forward(x, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        # exp of a non-positive argument only: no overflow for large |x|.
        if v >= 0:
            y[i] = 1 / (1 + math.exp(-v))
        else:
            e = math.exp(v)
            y[i] = e / (1 + e)


@cuda.jit
def _sigmoid_backward(y, dy, dx):
    for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        dx[i] = dy[i] * y[i] * (1 - y[i])


@cuda.jit
def _tanh_forward(x, y):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = math.tanh(x[i])


@cuda.jit
def _tanh_backward(y, dy, dx):
    for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
        dx[i] = dy[i] * (1 - y[i] * y[i])


@cuda.jit
def _softmax_forward(x, y, causal_rows):
    # A block per row (kernels/gpu/rows.py). causal_rows = Tq > 0: row r is query
    # r % Tq of a (Tq, C) score matrix and keeps columns j <= r % Tq only; the rest are
    # written as exact zeros and never exponentiated.
    buf = cuda.shared.array(ROW_THREADS, float64)
    r = cuda.blockIdx.x
    t = cuda.threadIdx.x
    c = x.shape[1]
    end = c if causal_rows == 0 else min(c, r % causal_rows + 1)
    m = -math.inf
    for j in range(t, end, ROW_THREADS):
        v = float64(x[r, j])
        if v > m:
            m = v
    m = block_max(buf, t, m)
    s = 0.0
    for j in range(t, end, ROW_THREADS):
        e = math.exp(float64(x[r, j]) - m)
        y[r, j] = e
        s += e
    inv = 1.0 / block_sum(buf, t, s)
    for j in range(t, end, ROW_THREADS):
        y[r, j] = y[r, j] * inv
    for j in range(end + t, c, ROW_THREADS):
        y[r, j] = 0


@cuda.jit
def _softmax_backward(y, dy, dx):
    buf = cuda.shared.array(ROW_THREADS, float64)
    r = cuda.blockIdx.x
    t = cuda.threadIdx.x
    c = y.shape[1]
    s = 0.0
    for j in range(t, c, ROW_THREADS):
        s += float64(y[r, j]) * float64(dy[r, j])
    dot = block_sum(buf, t, s)
    for j in range(t, c, ROW_THREADS):
        dx[r, j] = y[r, j] * (dy[r, j] - dot)


def relu_forward(x, y):
    _launch(_relu_forward, x.shape[0], x, y)


def relu_backward(y, dy, dx):
    _launch(_relu_backward, y.shape[0], y, dy, dx)


def sigmoid_forward(x, y):
    _launch(_sigmoid_forward, x.shape[0], x, y)


def sigmoid_backward(y, dy, dx):
    _launch(_sigmoid_backward, y.shape[0], y, dy, dx)


def tanh_forward(x, y):
    _launch(_tanh_forward, x.shape[0], x, y)


def tanh_backward(y, dy, dx):
    _launch(_tanh_backward, y.shape[0], y, dy, dx)


def softmax_forward(x, y, causal_rows):
    _softmax_forward[x.shape[0], ROW_THREADS](x, y, causal_rows)


def softmax_backward(y, dy, dx):
    _softmax_backward[y.shape[0], ROW_THREADS](y, dy, dx)


# GELU, SiLU, leaky ReLU: the backward takes the forward's input x (see kernels/cpu/activation.py).
# The constants are cast to the array dtype on the host (`c`, `a`, ... arguments), so float32
# arrays are computed in float32 as on the cpu.
_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
_SQRT_2_OVER_PI = 0.7978845608028654
_GELU_CUBIC = 0.044715


@cuda.jit
def _gelu_erf_forward(x, y, half, one, r):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        y[i] = half * v * (one + math.erf(v * r))


@cuda.jit
def _gelu_tanh_forward(x, y, half, one, c, a):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        y[i] = half * v * (one + math.tanh(c * (v + a * v * v * v)))


@cuda.jit
def _gelu_erf_backward(x, dy, dx, half, one, r, pdf):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        dx[i] = dy[i] * (half * (one + math.erf(v * r)) + v * pdf * math.exp(-half * v * v))


@cuda.jit
def _gelu_tanh_backward(x, dy, dx, half, one, c, a, three_a):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        t = math.tanh(c * (v + a * v * v * v))
        dx[i] = dy[i] * (half * (one + t) + half * v * (one - t * t) * c * (one + three_a * v * v))


def gelu_forward(x, y, approximate):
    t = x.dtype.type
    if approximate:
        _launch(_gelu_tanh_forward, x.shape[0], x, y, t(0.5), t(1), t(_SQRT_2_OVER_PI), t(_GELU_CUBIC))
    else:
        _launch(_gelu_erf_forward, x.shape[0], x, y, t(0.5), t(1), t(_SQRT_HALF))


def gelu_backward(x, dy, dx, approximate):
    t = x.dtype.type
    if approximate:
        _launch(_gelu_tanh_backward, x.shape[0], x, dy, dx, t(0.5), t(1), t(_SQRT_2_OVER_PI), t(_GELU_CUBIC),
                t(3 * _GELU_CUBIC))
    else:
        _launch(_gelu_erf_backward, x.shape[0], x, dy, dx, t(0.5), t(1), t(_SQRT_HALF), t(_INV_SQRT_2PI))


@cuda.jit(device=True, inline=True)
def _stable_sigmoid(v, one):
    # exp of a non-positive argument only: no overflow for large |v|.
    if v >= 0:
        return one / (one + math.exp(-v))
    e = math.exp(v)
    return e / (one + e)


@cuda.jit
def _silu_forward(x, y, one):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        y[i] = v * _stable_sigmoid(v, one)


@cuda.jit
def _silu_backward(x, dy, dx, one):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        s = _stable_sigmoid(v, one)
        dx[i] = dy[i] * s * (one + v * (one - s))


def silu_forward(x, y):
    _launch(_silu_forward, x.shape[0], x, y, x.dtype.type(1))


def silu_backward(x, dy, dx):
    _launch(_silu_backward, x.shape[0], x, dy, dx, x.dtype.type(1))


@cuda.jit
def _leaky_relu_forward(x, y, slope):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        y[i] = v if v >= 0 else slope * v


@cuda.jit
def _leaky_relu_backward(x, dy, dx, slope):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        dx[i] = dy[i] if x[i] > 0 else slope * dy[i]


def leaky_relu_forward(x, y, negative_slope):
    _launch(_leaky_relu_forward, x.shape[0], x, y, x.dtype.type(negative_slope))


def leaky_relu_backward(x, dy, dx, negative_slope):
    _launch(_leaky_relu_backward, x.shape[0], x, dy, dx, x.dtype.type(negative_slope))
