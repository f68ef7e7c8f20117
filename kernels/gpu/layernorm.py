"""Layer normalization over the last axis on the gpu, forward and backward.

Rows: one thread per row (two passes over it for the mean and the variance, a third for
the output). dgamma / dbeta: the same fixed-order two-pass column reduction as
reduce.column_sum (chunks of CHUNK rows, then the chunk partials in order), so the result
is bit-identical run to run and no float atomics are used.
A missing gamma or beta is a one-element dummy with a has_* flag of 0.
"""
import math

from numba import cuda

from numbanet.kernels.gpu.launch import dummy, rows_1d

CHUNK = 256


@cuda.jit
def _forward(x, gamma, has_gamma, beta, has_beta, eps, inv_c, y, mean, rstd):
    zero = x.dtype.type(0)
    one = x.dtype.type(1)
    r = cuda.grid(1)
    n, c = x.shape
    if r < n:
        s = zero
        for k in range(c):
            s += x[r, k]
        mu = s * inv_c
        ss = zero
        for k in range(c):
            t = x[r, k] - mu
            ss += t * t
        rs = one / math.sqrt(ss * inv_c + eps)
        mean[r] = mu
        rstd[r] = rs
        for k in range(c):
            v = (x[r, k] - mu) * rs
            if has_gamma:
                v *= gamma[k]
            if has_beta:
                v += beta[k]
            y[r, k] = v


def layer_norm_forward(x, gamma, beta, eps, y, mean, rstd):
    n = x.shape[0]
    _forward[rows_1d(n)](x, dummy(x.dtype) if gamma is None else gamma, gamma is not None,
                         dummy(x.dtype) if beta is None else beta, beta is not None,
                         x.dtype.type(eps), x.dtype.type(1.0 / x.shape[1]), y, mean, rstd)


@cuda.jit
def _backward_rows(x, gamma, has_gamma, dy, mean, rstd, inv_c, dx):
    zero = x.dtype.type(0)
    r = cuda.grid(1)
    n, c = x.shape
    if r < n:
        mu = mean[r]
        rs = rstd[r]
        sg = zero
        sgx = zero
        for k in range(c):
            g = dy[r, k] * gamma[k] if has_gamma else dy[r, k]
            sg += g
            sgx += g * (x[r, k] - mu) * rs
        mg = sg * inv_c
        mgx = sgx * inv_c
        for k in range(c):
            g = dy[r, k] * gamma[k] if has_gamma else dy[r, k]
            dx[r, k] = rs * (g - mg - (x[r, k] - mu) * rs * mgx)


@cuda.jit
def _param_partials(x, dy, mean, rstd, part_g, part_b, chunk):
    zero = x.dtype.type(0)
    # Thread t: column t % C of chunk t // C (columns fastest: coalesced row reads).
    t = cuda.grid(1)
    n, c = x.shape
    if t < part_g.shape[0] * c:
        g = t // c
        k = t - g * c
        acc_g = zero
        acc_b = zero
        for r in range(g * chunk, min(g * chunk + chunk, n)):
            acc_g += dy[r, k] * (x[r, k] - mean[r]) * rstd[r]
            acc_b += dy[r, k]
        part_g[g, k] = acc_g
        part_b[g, k] = acc_b


@cuda.jit
def _param_fold(part_g, part_b, dgamma, dbeta):
    k = cuda.grid(1)
    if k < dgamma.shape[0]:
        acc_g = part_g[0, k]
        acc_b = part_b[0, k]
        for g in range(1, part_g.shape[0]):
            acc_g += part_g[g, k]
            acc_b += part_b[g, k]
        dgamma[k] = acc_g
        dbeta[k] = acc_b


def layer_norm_backward(x, gamma, dy, mean, rstd, dx, dgamma, dbeta):
    n, c = x.shape
    _backward_rows[rows_1d(n)](x, dummy(x.dtype) if gamma is None else gamma, gamma is not None,
                               dy, mean, rstd, x.dtype.type(1.0 / c), dx)
    if dgamma is None and dbeta is None:
        return
    nchunks = -(-n // CHUNK)
    part_g = cuda.device_array((nchunks, c), dtype=x.dtype)
    part_b = cuda.device_array((nchunks, c), dtype=x.dtype)
    _param_partials[rows_1d(nchunks * c)](x, dy, mean, rstd, part_g, part_b, CHUNK)
    _param_fold[rows_1d(c)](part_g, part_b, cuda.device_array(c, x.dtype) if dgamma is None else dgamma,
                            cuda.device_array(c, x.dtype) if dbeta is None else dbeta)
