"""Activations and their gradients on flat arrays (relu, sigmoid, tanh from the forward output y;
gelu, silu, leaky_relu from the input x); softmax on (N, C)."""
import math

import numba
import numpy as np
from numba import prange

from numbanet.kernels import rules
from numbanet.kernels.cpu import rules as R
from numbanet.kernels.cpu.fastexp import exp_shifted
from numbanet.kernels.cpu.threads import SERIAL_MAX, chunk
from numbanet.kernels.rules import LEAKY_RELU, RELU, SIGMOID, TANH


# The activations by code (kernels/rules.py's encoding): each rule lives in kernels/rules.py
# and is compiled into the loops below, the serial ones that small arrays take
# (threads.SERIAL_MAX)
# and that a convolution runs inside its own prange on one image (kernels/cpu/conv.py),
# and the parallel ones that run those loops over chunks of a large array: fused and
# separate passes give the same bits.
ACTIVATION_CODES = rules.CODES


@numba.njit(cache=True, inline="always")
def _map(code, x, y, n, one):
    """y[:n] = act(x[:n]) for a `code` fixed where this is inlined: the loop of one
    activation, its branches on the code folded away."""
    for i in range(n):
        y[i] = R.activate(code, x[i], one)


@numba.njit(cache=True, inline="always")
def _activate_loop(code, x, y, n, one):
    """y[:n] = act(x[:n]) for relu, sigmoid, tanh and leaky_relu, True; False, nothing
    written, for any other code. x may be y: inlined, the loop then reads and writes one
    array. One loop per activation: a branch inside the loop would keep it from vectorizing."""
    if code == RELU:
        _map(RELU, x, y, n, one)
    elif code == SIGMOID:
        _map(SIGMOID, x, y, n, one)
    elif code == TANH:
        _map(TANH, x, y, n, one)
    elif code == LEAKY_RELU:
        _map(LEAKY_RELU, x, y, n, one)
    else:
        return False
    return True


@numba.njit(cache=True)
def apply_activation(code, x, y):
    """y = act(x) over 1-D arrays, on the calling thread; LINEAR copies."""
    n = x.shape[0]
    if not _activate_loop(code, x, y, n, x.dtype.type(1)):
        for i in range(n):
            y[i] = x[i]


@numba.njit(cache=True)
def activate_inplace(code, y):
    """y = act(y) over a 1-D array, on the calling thread. One array argument, not
    apply_activation(code, y, y): for two array arguments LLVM vectorizes the loop behind
    a run-time overlap check, and an array passed twice fails it and runs the scalar loop."""
    _activate_loop(code, y, y, y.shape[0], y.dtype.type(1))


@numba.njit(cache=True)
def activation_grad(code, y, dy, dx):
    """dx = dy * act'(y) over 1-D arrays, y the activation's output, on the calling
    thread; LINEAR copies dy."""
    one = y.dtype.type(1)
    zero = one - one
    n = y.shape[0]
    if code == RELU:
        for i in range(n):
            dx[i] = R.relu_grad(y[i], dy[i], zero)
    elif code == SIGMOID:
        for i in range(n):
            dx[i] = R.output_grad(SIGMOID, y[i], dy[i], one)
    elif code == TANH:
        for i in range(n):
            dx[i] = R.output_grad(TANH, y[i], dy[i], one)
    elif code == LEAKY_RELU:
        for i in range(n):
            dx[i] = R.output_grad(LEAKY_RELU, y[i], dy[i], one)
    else:
        for i in range(n):
            dx[i] = dy[i]


@numba.njit(parallel=True, cache=True)
def _apply_parallel(code, x, y, chunks):
    for k in prange(chunks):
        lo, hi = chunk(k, chunks, x.shape[0])
        apply_activation(code, x[lo:hi], y[lo:hi])


@numba.njit(parallel=True, cache=True)
def _activate_inplace_parallel(code, y, chunks):
    for k in prange(chunks):
        lo, hi = chunk(k, chunks, y.shape[0])
        activate_inplace(code, y[lo:hi])


@numba.njit(parallel=True, cache=True)
def _grad_parallel(code, y, dy, dx, chunks):
    for k in prange(chunks):
        lo, hi = chunk(k, chunks, y.shape[0])
        activation_grad(code, y[lo:hi], dy[lo:hi], dx[lo:hi])




def _chunks():
    # A few chunks per thread balance the load; the count is read here because
    # numba.get_num_threads() inside a cached kernel defeats the cache.
    return 4 * numba.get_num_threads()


def forward(code, x, y):
    """y = act(x) over 1-D arrays (y may be x)."""
    if x.shape[0] <= SERIAL_MAX:
        if x is y:
            activate_inplace(code, y)
        else:
            apply_activation(code, x, y)
    elif x is y:
        _activate_inplace_parallel(code, y, _chunks())
    else:
        _apply_parallel(code, x, y, _chunks())


def backward(code, y, dy, dx):
    """dx = dy * act'(y) over 1-D arrays, from the activation's output y."""
    if y.shape[0] <= SERIAL_MAX:
        activation_grad(code, y, dy, dx)
    else:
        _grad_parallel(code, y, dy, dx, _chunks())








@numba.njit(parallel=True, cache=True)
def _softmax_rows(x, y, causal_rows, nchunks, fast):
    n, c = x.shape
    zero = x.dtype.type(0)
    for part in prange(nchunks):
        bits = np.empty(c, np.int32)  # fastexp's scratch, once per run of rows
        for r in range(part * n // nchunks, (part + 1) * n // nchunks):
            end = c if causal_rows == 0 else min(c, r % causal_rows + 1)
            # Subtract the row max so exp never overflows.
            mx = x[r, 0]
            for k in range(1, end):
                if x[r, k] > mx:
                    mx = x[r, k]
            inv = x.dtype.type(1) / exp_shifted(x[r, :end], mx, y[r, :end], bits, fast)
            for k in range(end):
                y[r, k] *= inv
            for k in range(end, c):
                y[r, k] = zero


def softmax_forward(x, y, causal_rows):
    """Row softmax of x (N, C). causal_rows = Tq > 0: the rows are (..., Tq) query rows of
    (Tq, C) score matrices, row r is query i = r % Tq and keeps columns j <= i only (the
    rest are set to exactly 0, never computed); 0: every column is kept."""
    n = x.shape[0]
    # Runs of rows per prange iteration: the exponentials' scratch is allocated per run.
    # The thread count is read here: numba.get_num_threads() inside @njit defeats cache=True.
    _softmax_rows(x, y, causal_rows, min(n, 4 * numba.get_num_threads()), x.dtype == np.float32)


@numba.njit(parallel=True, cache=True)
def softmax_backward(y, dy, dx):
    n, c = y.shape
    for r in prange(n):
        s = y.dtype.type(0)
        for k in range(c):
            s += dy[r, k] * y[r, k]
        for k in range(c):
            dx[r, k] = y[r, k] * (dy[r, k] - s)


def epilogue(activation, y):
    """y = act(y) in place on a C-contiguous array: the activation a GEMM applies to its
    output (the convolution applies it inside its own kernel, image by image; the gpu
    kernels in their epilogue). Here it is one more pass over the output, on the calling
    thread for a small output (SERIAL_MAX)."""
    if activation != "linear":
        flat = y.reshape(y.size)
        forward(ACTIVATION_CODES[activation], flat, flat)


# GELU, SiLU and leaky ReLU take the forward's input x (kernels/rules.py says why); their
# constants are cast to the array's dtype here, so float32 is computed in float32.

@numba.njit(parallel=True, cache=True)
def _gelu_erf_forward(x, y):
    half, one, r = x.dtype.type(0.5), x.dtype.type(1), x.dtype.type(rules.SQRT_HALF)
    for i in prange(x.shape[0]):
        y[i] = R.gelu_erf(x[i], half, one, r)


@numba.njit(parallel=True, cache=True)
def _gelu_tanh_forward(x, y):
    half, one = x.dtype.type(0.5), x.dtype.type(1)
    c, a = x.dtype.type(rules.SQRT_2_OVER_PI), x.dtype.type(rules.GELU_CUBIC)
    for i in prange(x.shape[0]):
        y[i] = R.gelu_tanh(x[i], half, one, c, a)


@numba.njit(parallel=True, cache=True)
def _gelu_erf_backward(x, dy, dx):
    half, one = x.dtype.type(0.5), x.dtype.type(1)
    r, pdf = x.dtype.type(rules.SQRT_HALF), x.dtype.type(rules.INV_SQRT_2PI)
    for i in prange(x.shape[0]):
        dx[i] = R.gelu_erf_grad(x[i], dy[i], half, one, r, pdf)


@numba.njit(parallel=True, cache=True)
def _gelu_tanh_backward(x, dy, dx):
    half, one = x.dtype.type(0.5), x.dtype.type(1)
    c, a = x.dtype.type(rules.SQRT_2_OVER_PI), x.dtype.type(rules.GELU_CUBIC)
    three_a = x.dtype.type(3 * rules.GELU_CUBIC)
    for i in prange(x.shape[0]):
        dx[i] = R.gelu_tanh_grad(x[i], dy[i], half, one, c, a, three_a)


# float32 GELU without libm: erf as kernels/rules.py's rational function (libm's erff and
# expf are scalar calls numba cannot vectorize), its derivative from
# the same function, so every step is a multiply-add or a divide and the loops run as
# vector instructions. float64 keeps math.erf.
@numba.njit(parallel=True, cache=True, error_model="numpy")
def _gelu_erf_forward_f32(x, y, p0, p1, p2, p3, p4, p5, p6, q0, q1, q2, q3, q4):
    half, one, r = np.float32(0.5), np.float32(1), np.float32(rules.SQRT_HALF)
    for i in prange(x.shape[0]):
        xi = x[i]
        e, _ = R.erf_rational(xi * r, p0, p1, p2, p3, p4, p5, p6, q0, q1, q2, q3, q4)
        y[i] = R.gelu_from_erf(xi, e, half, one)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _gelu_erf_backward_f32(x, dy, dx, p0, p1, p2, p3, p4, p5, p6, q0, q1, q2, q3, q4):
    half, one, r = np.float32(0.5), np.float32(1), np.float32(rules.SQRT_HALF)
    for i in prange(x.shape[0]):
        xi = x[i]
        e, de = R.erf_rational(xi * r, p0, p1, p2, p3, p4, p5, p6, q0, q1, q2, q3, q4)
        # x phi(x) = 0.5 x r erf'(x r)
        dx[i] = R.gelu_grad_from_erf(dy[i], e, half * xi * r * de, half, one)


def _erf_coefficients():
    return tuple(np.float32(c) for c in rules.ERF_P + rules.ERF_Q)


def gelu_forward(x, y, approximate):
    if approximate:
        _gelu_tanh_forward(x, y)
    elif x.dtype == np.float32:
        _gelu_erf_forward_f32(x, y, *_erf_coefficients())
    else:
        _gelu_erf_forward(x, y)


def gelu_backward(x, dy, dx, approximate):
    if approximate:
        _gelu_tanh_backward(x, dy, dx)
    elif x.dtype == np.float32:
        _gelu_erf_backward_f32(x, dy, dx, *_erf_coefficients())
    else:
        _gelu_erf_backward(x, dy, dx)


@numba.njit(parallel=True, cache=True)
def silu_forward(x, y):
    one = x.dtype.type(1)
    for i in prange(x.shape[0]):
        y[i] = R.silu(x[i], one)


@numba.njit(parallel=True, cache=True)
def silu_backward(x, dy, dx):
    one = x.dtype.type(1)
    for i in prange(x.shape[0]):
        dx[i] = R.silu_grad(x[i], dy[i], one)


@numba.njit(parallel=True, cache=True)
def _leaky_relu_forward(x, y, slope):
    zero = x.dtype.type(0)
    for i in prange(x.shape[0]):
        y[i] = R.leaky_relu(x[i], slope, zero)


@numba.njit(parallel=True, cache=True)
def _leaky_relu_backward(x, dy, dx, slope):
    zero = x.dtype.type(0)
    for i in prange(x.shape[0]):
        dx[i] = R.leaky_relu_grad(x[i], dy[i], slope, zero)


def leaky_relu_forward(x, y, negative_slope):
    _leaky_relu_forward(x, y, x.dtype.type(negative_slope))


def leaky_relu_backward(x, dy, dx, negative_slope):
    _leaky_relu_backward(x, dy, dx, x.dtype.type(negative_slope))
