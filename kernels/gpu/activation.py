"""Activations on the gpu: one thread per element (grid-stride), a block per row for softmax.

Elementwise kernels are memory bound: consecutive threads touch consecutive elements, so
every warp load/store is one coalesced 128-byte transaction. Softmax gives each row to a
block (kernels/gpu/rows.py): rows range from 10 classes to a vocabulary or a sequence of
attention scores, and a row per thread would read them uncoalesced and serially.
"""
import math

import numpy as np
from numba import cuda, float64

from numbanet.kernels import rules
from numbanet.kernels.gpu import rules as R
from numbanet.kernels.gpu.launch import ACC, fixed_block, grid_1d, kernel_family
from numbanet.kernels.gpu.rows import ROW_THREADS, block_max, block_row, block_sum


def _launch(kernel, n, *args):
    kernel[grid_1d(n)](*args)


# The activations by code (kernels/rules.py's encoding), a kernel per code and dtype with
# the code a constant, so each compiles only its own rule.
@kernel_family
def forward_kernel(code, dtype):
    """y = act(x), or in place with x = y."""
    cast = ACC[dtype]

    @cuda.jit
    def kernel(x, y):
        one = cast(1)
        for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
            y[i] = R.activate(code, x[i], one)
    return kernel


@kernel_family
def backward_kernel(code, dtype):
    """dx = dy * act'(z) from the activation's output y."""
    cast = ACC[dtype]

    @cuda.jit
    def kernel(y, dy, dx):
        one = cast(1)
        for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
            dx[i] = R.output_grad(code, y[i], dy[i], one)
    return kernel


def forward(code, x, y):
    _launch(forward_kernel(code, np.dtype(x.dtype).name), x.shape[0], x, y)


def backward(code, y, dy, dx):
    _launch(backward_kernel(code, np.dtype(y.dtype).name), y.shape[0], y, dy, dx)


@fixed_block(ROW_THREADS)


@cuda.jit
def _softmax_forward(x, y, causal_rows):
    # A block per row (kernels/gpu/rows.py). causal_rows = Tq > 0: row r is query
    # r % Tq of a (Tq, C) score matrix and keeps columns j <= r % Tq only; the rest are
    # written as exact zeros and never exponentiated.
    buf = cuda.shared.array(ROW_THREADS, float64)
    r, t, c = block_row(x)
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


@fixed_block(ROW_THREADS)


@cuda.jit
def _softmax_backward(y, dy, dx):
    buf = cuda.shared.array(ROW_THREADS, float64)
    r, t, c = block_row(y)
    s = 0.0
    for j in range(t, c, ROW_THREADS):
        s += float64(y[r, j]) * float64(dy[r, j])
    dot = block_sum(buf, t, s)
    for j in range(t, c, ROW_THREADS):
        dx[r, j] = y[r, j] * (dy[r, j] - dot)








def softmax_forward(x, y, causal_rows):
    _softmax_forward[x.shape[0], ROW_THREADS](x, y, causal_rows)


def softmax_backward(y, dy, dx):
    _softmax_backward[y.shape[0], ROW_THREADS](y, dy, dx)


# GELU, SiLU, leaky ReLU take the forward's input x (kernels/rules.py says why). The
# constants are cast to the array dtype on the host (`c`, `a`, ... arguments), so float32
# arrays are computed in float32 as on the cpu.
@cuda.jit
def _gelu_erf_forward(x, y, half, one, r):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = R.gelu_erf(x[i], half, one, r)


@cuda.jit
def _gelu_tanh_forward(x, y, half, one, c, a):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = R.gelu_tanh(x[i], half, one, c, a)


@cuda.jit
def _gelu_erf_backward(x, dy, dx, half, one, r, pdf):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        dx[i] = R.gelu_erf_grad(x[i], dy[i], half, one, r, pdf)


@cuda.jit
def _gelu_tanh_backward(x, dy, dx, half, one, c, a, three_a):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        dx[i] = R.gelu_tanh_grad(x[i], dy[i], half, one, c, a, three_a)


def gelu_forward(x, y, approximate):
    t = x.dtype.type
    if approximate:
        _launch(_gelu_tanh_forward, x.shape[0], x, y, t(0.5), t(1), t(rules.SQRT_2_OVER_PI), t(rules.GELU_CUBIC))
    else:
        _launch(_gelu_erf_forward, x.shape[0], x, y, t(0.5), t(1), t(rules.SQRT_HALF))


def gelu_backward(x, dy, dx, approximate):
    t = x.dtype.type
    if approximate:
        _launch(_gelu_tanh_backward, x.shape[0], x, dy, dx, t(0.5), t(1), t(rules.SQRT_2_OVER_PI),
                t(rules.GELU_CUBIC), t(3 * rules.GELU_CUBIC))
    else:
        _launch(_gelu_erf_backward, x.shape[0], x, dy, dx, t(0.5), t(1), t(rules.SQRT_HALF),
                t(rules.INV_SQRT_2PI))


@cuda.jit
def _silu_forward(x, y, one):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = R.silu(x[i], one)


@cuda.jit
def _silu_backward(x, dy, dx, one):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        dx[i] = R.silu_grad(x[i], dy[i], one)


def silu_forward(x, y):
    _launch(_silu_forward, x.shape[0], x, y, x.dtype.type(1))


def silu_backward(x, dy, dx):
    _launch(_silu_backward, x.shape[0], x, dy, dx, x.dtype.type(1))


@cuda.jit
def _leaky_relu_forward(x, y, slope, zero):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = R.leaky_relu(x[i], slope, zero)


@cuda.jit
def _leaky_relu_backward(x, dy, dx, slope, zero):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        dx[i] = R.leaky_relu_grad(x[i], dy[i], slope, zero)


def leaky_relu_forward(x, y, negative_slope):
    t = x.dtype.type
    _launch(_leaky_relu_forward, x.shape[0], x, y, t(negative_slope), t(0))


def leaky_relu_backward(x, dy, dx, negative_slope):
    t = x.dtype.type
    _launch(_leaky_relu_backward, x.shape[0], x, dy, dx, t(negative_slope), t(0))
