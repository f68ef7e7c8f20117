"""Activations and their gradients (from the forward output y), on flat arrays; softmax on (N, C)."""
import math

import numba
import numpy as np
from numba import prange

from numbanet.kernels.cpu.fastexp import exp_shifted


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
