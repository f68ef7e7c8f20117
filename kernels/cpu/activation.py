"""Activations and their gradients on flat arrays (relu, sigmoid, tanh from the forward output y;
gelu, silu, leaky_relu from the input x); softmax on (N, C)."""
import math

import numba
import numpy as np
from numba import prange

from numbanet.kernels.cpu.fastexp import exp_shifted


# The epilogue activations (relu, sigmoid, tanh: their gradients are functions of the
# output y), each rule written once as a scalar function. The parallel kernels below use
# them, and so do apply_activation, activate_inplace and activation_grad, the serial loops
# that small arrays take (SERIAL_MAX) and that a convolution runs inside its own prange on
# one image (kernels/cpu/conv.py): fused and separate passes give the same bits.
#
# relu's NaN rule is PyTorch's: relu(NaN) = NaN (the comparison is false, x passes
# through), and the gradient is zeroed only where y <= 0, so a NaN or inf in dy reaches dx
# exactly where relu let x through.
LINEAR, RELU, SIGMOID, TANH = 0, 1, 2, 3
# A kernel takes the activation as one of these ints: one compiled kernel serves them all.
ACTIVATION_CODES = {"linear": LINEAR, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH}


@numba.njit(cache=True)
def _relu(v, zero):
    return zero if v <= zero else v


@numba.njit(cache=True)
def _relu_grad(y, d, zero):
    return zero if y <= zero else d


@numba.njit(cache=True)
def _sigmoid(v, one):
    # exp of a non-positive number only: no overflow for large |v|.
    if v >= 0:
        return one / (one + math.exp(-v))
    e = math.exp(v)
    return e / (one + e)


@numba.njit(cache=True)
def _sigmoid_grad(y, d, one):
    return d * y * (one - y)


@numba.njit(cache=True)
def _tanh_grad(y, d, one):
    return d * (one - y * y)


@numba.njit(parallel=True, cache=True)
def _relu_forward(x, y):
    zero = x.dtype.type(0)
    for i in prange(x.shape[0]):
        y[i] = _relu(x[i], zero)


@numba.njit(parallel=True, cache=True)
def _relu_backward(y, dy, dx):
    zero = y.dtype.type(0)
    for i in prange(y.shape[0]):
        dx[i] = _relu_grad(y[i], dy[i], zero)


@numba.njit(parallel=True, cache=True)
def _sigmoid_forward(x, y):
    one = x.dtype.type(1)
    for i in prange(x.shape[0]):
        y[i] = _sigmoid(x[i], one)


@numba.njit(parallel=True, cache=True)
def _sigmoid_backward(y, dy, dx):
    one = y.dtype.type(1)
    for i in prange(y.shape[0]):
        dx[i] = _sigmoid_grad(y[i], dy[i], one)


@numba.njit(parallel=True, cache=True)
def _tanh_forward(x, y):
    for i in prange(x.shape[0]):
        y[i] = math.tanh(x[i])


@numba.njit(parallel=True, cache=True)
def _tanh_backward(y, dy, dx):
    one = y.dtype.type(1)
    for i in prange(y.shape[0]):
        dx[i] = _tanh_grad(y[i], dy[i], one)


@numba.njit(cache=True)
def apply_activation(code, x, y):
    """y = act(x) over 1-D arrays (y may be x), on the calling thread; LINEAR copies."""
    zero, one = x.dtype.type(0), x.dtype.type(1)
    n = x.shape[0]
    # One loop per activation: a branch inside the loop would keep it from vectorizing.
    if code == RELU:
        for i in range(n):
            y[i] = _relu(x[i], zero)
    elif code == SIGMOID:
        for i in range(n):
            y[i] = _sigmoid(x[i], one)
    elif code == TANH:
        for i in range(n):
            y[i] = math.tanh(x[i])
    else:
        for i in range(n):
            y[i] = x[i]


@numba.njit(cache=True)
def activate_inplace(code, y):
    """y = act(y) over a 1-D array, on the calling thread. One array argument, not
    apply_activation(code, y, y): for two array arguments LLVM vectorizes the loop behind
    a run-time overlap check, and an array passed twice fails it and runs the scalar loop
    (about 6x slower here)."""
    zero, one = y.dtype.type(0), y.dtype.type(1)
    n = y.shape[0]
    if code == RELU:
        for i in range(n):
            y[i] = _relu(y[i], zero)
    elif code == SIGMOID:
        for i in range(n):
            y[i] = _sigmoid(y[i], one)
    elif code == TANH:
        for i in range(n):
            y[i] = math.tanh(y[i])


@numba.njit(cache=True)
def activation_grad(code, y, dy, dx):
    """dx = dy * act'(y) over 1-D arrays, y the activation's output, on the calling
    thread; LINEAR copies dy."""
    zero, one = y.dtype.type(0), y.dtype.type(1)
    n = y.shape[0]
    if code == RELU:
        for i in range(n):
            dx[i] = _relu_grad(y[i], dy[i], zero)
    elif code == SIGMOID:
        for i in range(n):
            dx[i] = _sigmoid_grad(y[i], dy[i], one)
    elif code == TANH:
        for i in range(n):
            dx[i] = _tanh_grad(y[i], dy[i], one)
    else:
        for i in range(n):
            dx[i] = dy[i]


# Arrays up to this many elements (a Dense layer's 128 x 128 output: 16384) take the
# serial loops above: a parallel region costs more to start and join than one thread
# needs for them, and a busy machine's descheduled thread cannot hold them up. Under the
# workqueue threading layer (the bench's), relu of 16,384 float32 took 65 us as the
# parallel kernel and 0.9 us serially; 65,536: 63 us and 2.1 us; 262,144: 89 us and 17 us.
SERIAL_MAX = 1 << 16


def _elementwise(code, parallel, x, y):
    if x.shape[0] <= SERIAL_MAX:
        if x is y:
            activate_inplace(code, y)
        else:
            apply_activation(code, x, y)
    else:
        parallel(x, y)


def _elementwise_grad(code, parallel, y, dy, dx):
    if y.shape[0] <= SERIAL_MAX:
        activation_grad(code, y, dy, dx)
    else:
        parallel(y, dy, dx)


def relu_forward(x, y):
    _elementwise(RELU, _relu_forward, x, y)


def relu_backward(y, dy, dx):
    _elementwise_grad(RELU, _relu_backward, y, dy, dx)


def sigmoid_forward(x, y):
    _elementwise(SIGMOID, _sigmoid_forward, x, y)


def sigmoid_backward(y, dy, dx):
    _elementwise_grad(SIGMOID, _sigmoid_backward, y, dy, dx)


def tanh_forward(x, y):
    _elementwise(TANH, _tanh_forward, x, y)


def tanh_backward(y, dy, dx):
    _elementwise_grad(TANH, _tanh_backward, y, dy, dx)


@numba.njit(parallel=True, cache=True)
def _softmax_rows(x, y, causal_rows, nchunks, fast):
    n, c = x.shape
    zero = x.dtype.type(0)
    for chunk in prange(nchunks):
        bits = np.empty(c, np.int32)  # fastexp's scratch, once per run of rows
        for r in range(chunk * n // nchunks, (chunk + 1) * n // nchunks):
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
        _elementwise(ACTIVATION_CODES[activation], _PARALLEL_FORWARDS[activation], flat, flat)


_PARALLEL_FORWARDS = {"relu": _relu_forward, "sigmoid": _sigmoid_forward, "tanh": _tanh_forward}


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


# float32 GELU: libm's erff and expf are scalar calls numba cannot vectorize (4-6 ns an
# element, 34 ms a step in the charlm's MLPs). erf is instead a rational function of z
# (Eigen's and XLA's fast float erf: odd degree-13 over even degree-8 polynomials on
# [-4, 4], +/-1 outside; 6.5e-8 from erf, below float32's resolution), and the backward
# differentiates that same rational function, so it needs no exp: every step is a
# multiply-add or a divide, and the loops run as AVX-512 vectors. float64 keeps math.erf.
_ERF_P = (-1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04, -5.69250639462346e-05,
          -2.10102402082508e-06, 2.77068142495902e-08, -2.72614225801306e-10)
_ERF_Q = (-1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03, -2.13374055278905e-04,
          -1.45660718464996e-05)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _erf_rational(z, p0, p1, p2, p3, p4, p5, p6, q0, q1, q2, q3, q4):
    """-> (erf(z), d erf / dz) of the rational approximation, float32, z clamped to [-4, 4].
    Every constant is a float32: an int or float64 literal would promote the loop to float64."""
    four, zero = np.float32(4), np.float32(0)
    two, three, five, six = np.float32(2), np.float32(3), np.float32(5), np.float32(6)
    c = min(max(z, -four), four)
    t = c * c
    big_p = (((((p6 * t + p5) * t + p4) * t + p3) * t + p2) * t + p1) * t + p0
    dp = ((((six * p6 * t + five * p5) * t + four * p4) * t + three * p3) * t + two * p2) * t + p1
    big_q = (((q4 * t + q3) * t + q2) * t + q1) * t + q0
    dq = ((four * q4 * t + three * q3) * t + two * q2) * t + q1
    num = c * big_p
    # d/dz [z P(z^2) / Q(z^2)] = ((P + 2 z^2 P') Q - z P 2 z Q') / Q^2; 0 where clamped.
    slope = ((big_p + two * t * dp) * big_q - num * two * c * dq) / (big_q * big_q)
    return num / big_q, slope if abs(z) <= four else zero


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _gelu_erf_forward_f32(x, y, p0, p1, p2, p3, p4, p5, p6, q0, q1, q2, q3, q4):
    half, one, r = np.float32(0.5), np.float32(1), np.float32(_SQRT_HALF)
    for i in prange(x.shape[0]):
        xi = x[i]
        e, _ = _erf_rational(xi * r, p0, p1, p2, p3, p4, p5, p6, q0, q1, q2, q3, q4)
        y[i] = half * xi * (one + e)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _gelu_erf_backward_f32(x, dy, dx, p0, p1, p2, p3, p4, p5, p6, q0, q1, q2, q3, q4):
    half, one, r = np.float32(0.5), np.float32(1), np.float32(_SQRT_HALF)
    for i in prange(x.shape[0]):
        xi = x[i]
        e, de = _erf_rational(xi * r, p0, p1, p2, p3, p4, p5, p6, q0, q1, q2, q3, q4)
        # d/dx 0.5 x (1 + erf(x r)) = 0.5 (1 + erf) + 0.5 x r erf'
        dx[i] = dy[i] * (half * (one + e) + half * xi * r * de)


def _erf_coefficients():
    return tuple(np.float32(c) for c in _ERF_P + _ERF_Q)


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
