"""Activations on the gpu: one thread per element (grid-stride), one per row for softmax.

Elementwise kernels are memory bound: consecutive threads touch consecutive elements, so
every warp load/store is one coalesced 128-byte transaction. Softmax gives each row to one
thread; class counts are small (10 for the article's model), so a row fits in a thread's
loop and the three passes over it hit L1.
"""
import math

from numba import cuda

from numbanet.kernels.gpu.launch import grid_1d, rows_1d


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
def _softmax_forward(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        c = x.shape[1]
        mx = x[i, 0]
        for j in range(1, c):
            if x[i, j] > mx:
                mx = x[i, j]
        s = x.dtype.type(0)
        for j in range(c):
            e = math.exp(x[i, j] - mx)
            y[i, j] = e
            s += e
        for j in range(c):
            y[i, j] = y[i, j] / s


@cuda.jit
def _softmax_backward(y, dy, dx):
    i = cuda.grid(1)
    if i < y.shape[0]:
        dot = y.dtype.type(0)
        for j in range(y.shape[1]):
            dot += y[i, j] * dy[i, j]
        for j in range(y.shape[1]):
            dx[i, j] = y[i, j] * (dy[i, j] - dot)


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


def softmax_forward(x, y):
    _softmax_forward[rows_1d(x.shape[0])](x, y)


def softmax_backward(y, dy, dx):
    _softmax_backward[rows_1d(y.shape[0])](y, dy, dx)
