"""Activations and their gradients (from the forward output y), on flat arrays; softmax on (N, C)."""
import math

import numba
from numba import prange


# relu's NaN rule is PyTorch's: relu(NaN) = NaN (the comparison is false, x passes
# through), and the gradient is zeroed only where y <= 0, so a NaN or inf in dy reaches dx
# exactly where relu let x through.
@numba.njit(parallel=True, cache=True)
def relu_forward(x, y):
    zero = x.dtype.type(0)
    for i in prange(x.shape[0]):
        y[i] = zero if x[i] <= zero else x[i]


@numba.njit(parallel=True, cache=True)
def relu_backward(y, dy, dx):
    zero = y.dtype.type(0)
    for i in prange(y.shape[0]):
        dx[i] = zero if y[i] <= zero else dy[i]


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
def softmax_forward(x, y):
    n, c = x.shape
    for r in prange(n):
        # Subtract the row max so exp never overflows.
        mx = x[r, 0]
        for k in range(1, c):
            if x[r, k] > mx:
                mx = x[r, k]
        total = x.dtype.type(0)
        for k in range(c):
            e = math.exp(x[r, k] - mx)
            y[r, k] = e
            total += e
        inv = x.dtype.type(1) / total
        for k in range(c):
            y[r, k] *= inv


@numba.njit(parallel=True, cache=True)
def softmax_backward(y, dy, dx):
    n, c = y.shape
    for r in prange(n):
        s = y.dtype.type(0)
        for k in range(c):
            s += dy[r, k] * y[r, k]
        for k in range(c):
            dx[r, k] = y[r, k] * (dy[r, k] - s)


_EPILOGUES = {"relu": relu_forward, "sigmoid": sigmoid_forward, "tanh": tanh_forward}


def epilogue(activation, y):
    """y = act(y) in place on a C-contiguous array: the activation a GEMM or convolution
    applies to its output (the gpu kernels fuse it into their epilogue; here it is one
    more pass over the output, while it is still in cache)."""
    if activation != "linear":
        flat = y.reshape(y.size)
        _EPILOGUES[activation](flat, flat)
