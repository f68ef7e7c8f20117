"""Batch normalization over every axis but the last on the gpu (channels last), on
(rows, C) views: training and inference forward, backward.

Per-channel sums (the statistics; dgamma and dbeta) in two stages, the order fixed so the
result is the same bits on every run, with no float atomics:
1. a thread per (chunk of CHUNK rows, channel), channels fastest so a warp reads
   consecutive elements of a row (coalesced), summing in float64;
2. a block per channel folding that channel's chunk partials (kernels/gpu/rows.py's
   block_sum, a fixed tree), whose thread 0 then derives the per-channel coefficients.
The statistics sum x - s and (x - s)^2 with s the channel's first-row value: one pass over
x, without the cancellation of E[x^2] - E[x]^2 when |mean| >> std (see
kernels/cpu/batchnorm.py). The elementwise passes read the coefficients in x's dtype, as
the cpu does, so float32 stays float32 where the bytes are.
A missing gamma or beta is a one-element dummy with a has_* flag of 0.
"""
import math

import numpy as np
from numba import cuda, float64

from numbanet.kernels.gpu.launch import dummy, fixed_block, grid_1d, rows_1d, scratch, unravel2
from numbanet.kernels.gpu.rows import ROW_THREADS, block_sum

CHUNK = 256


@cuda.jit
def _stat_partials(x, part_s, part_q, chunk):
    t = cuda.grid(1)
    n, c = x.shape
    if t < part_s.shape[0] * c:
        g, k = unravel2(t, c)
        s = float64(x[0, k])
        acc_s = 0.0
        acc_q = 0.0
        for r in range(g * chunk, min(g * chunk + chunk, n)):
            d = float64(x[r, k]) - s
            acc_s += d
            acc_q += d * d
        part_s[g, k] = acc_s
        part_q[g, k] = acc_q


@cuda.jit(device=True)
def _fold_partials(buf, t, part_a, part_b, k):
    """(sum of part_a[:, k], sum of part_b[:, k]) over the chunks, to every thread of the
    block: strided over the block's threads, then block_sum's fixed tree."""
    sa = 0.0
    sb = 0.0
    for g in range(t, part_a.shape[0], ROW_THREADS):
        sa += part_a[g, k]
        sb += part_b[g, k]
    return block_sum(buf, t, sa), block_sum(buf, t, sb)


@fixed_block(ROW_THREADS)


@cuda.jit
def _finish_stats(x, part_s, part_q, gamma, has_gamma, beta, has_beta, eps, momentum, mean, rstd, moving_mean,
                  moving_var, a, b):
    """Block k: channel k's mean and rstd, its moving statistics (biased variance, as
    Keras 3), and the coefficients a, b of y = x * a + b."""
    buf = cuda.shared.array(ROW_THREADS, float64)
    k = cuda.blockIdx.x
    t = cuda.threadIdx.x
    n = x.shape[0]
    s, q = _fold_partials(buf, t, part_s, part_q, k)
    if t == 0:
        ms = s / n
        var = max(q / n - ms * ms, 0.0)
        mu = float64(x[0, k]) + ms
        rs = 1.0 / math.sqrt(var + eps)
        mean[k] = mu
        rstd[k] = rs
        moving_mean[k] = moving_mean[k] * momentum + mu * (1.0 - momentum)
        moving_var[k] = moving_var[k] * momentum + var * (1.0 - momentum)
        ak = rs * gamma[k] if has_gamma else rs
        a[k] = ak
        b[k] = beta[k] - mu * ak if has_beta else -mu * ak


@cuda.jit
def _inference_coefficients(gamma, has_gamma, beta, has_beta, eps, moving_mean, moving_var, a, b):
    k = cuda.grid(1)
    if k < a.shape[0]:
        ak = 1.0 / math.sqrt(float64(moving_var[k]) + eps)
        if has_gamma:
            ak *= gamma[k]
        a[k] = ak
        bk = -float64(moving_mean[k]) * ak
        if has_beta:
            bk += beta[k]
        b[k] = bk


@cuda.jit
def _normalize(x, a, b, y):
    n, c = x.shape
    for i in range(cuda.grid(1), n * c, cuda.gridsize(1)):
        r, k = unravel2(i, c)
        y[r, k] = x[r, k] * a[k] + b[k]


def _params(gamma, beta, dtype):
    return (dummy(dtype) if gamma is None else gamma, gamma is not None,
            dummy(dtype) if beta is None else beta, beta is not None)


def batch_norm_train(x, gamma, beta, moving_mean, moving_var, eps, momentum, y, mean, rstd):
    n, c = x.shape
    nchunks = -(-n // CHUNK)
    part_s = scratch("batchnorm-sum-partials", (nchunks, c), np.float64)
    part_q = scratch("batchnorm-sumsq-partials", (nchunks, c), np.float64)
    _stat_partials[rows_1d(nchunks * c)](x, part_s, part_q, CHUNK)
    a = scratch("batchnorm-scale", (c,), x.dtype)
    b = scratch("batchnorm-shift", (c,), x.dtype)
    _finish_stats[c, ROW_THREADS](x, part_s, part_q, *_params(gamma, beta, x.dtype), float(eps), float(momentum),
                                  mean, rstd, moving_mean, moving_var, a, b)
    _normalize[grid_1d(n * c)](x, a, b, y)


def batch_norm_inference(x, gamma, beta, moving_mean, moving_var, eps, y):
    n, c = x.shape
    a = scratch("batchnorm-scale", (c,), x.dtype)
    b = scratch("batchnorm-shift", (c,), x.dtype)
    _inference_coefficients[rows_1d(c)](*_params(gamma, beta, x.dtype), float(eps), moving_mean, moving_var, a, b)
    _normalize[grid_1d(n * c)](x, a, b, y)


@cuda.jit
def _grad_partials(x, dy, mean, part_b, part_g, chunk):
    t = cuda.grid(1)
    n, c = x.shape
    if t < part_b.shape[0] * c:
        g, k = unravel2(t, c)
        mu = float64(mean[k])
        acc_b = 0.0
        acc_g = 0.0
        for r in range(g * chunk, min(g * chunk + chunk, n)):
            d = float64(dy[r, k])
            acc_b += d
            acc_g += d * (float64(x[r, k]) - mu)
        part_b[g, k] = acc_b
        part_g[g, k] = acc_g


@fixed_block(ROW_THREADS)


@cuda.jit
def _finish_grads(part_b, part_g, n, gamma, has_gamma, rstd, dgamma, dbeta, ca, cb, cd):
    """Block k: dbeta = sum dy, dgamma = sum dy * xhat, and the coefficients of
    dx = ca * dy - cb * (x - mean) - cd."""
    buf = cuda.shared.array(ROW_THREADS, float64)
    k = cuda.blockIdx.x
    t = cuda.threadIdx.x
    sb, sg = _fold_partials(buf, t, part_b, part_g, k)
    if t == 0:
        rs = float64(rstd[k])
        sxhat = sg * rs
        dgamma[k] = sxhat
        dbeta[k] = sb
        ak = rs * gamma[k] if has_gamma else rs
        ca[k] = ak
        cb[k] = ak * rs * sxhat / n
        cd[k] = ak * sb / n


@cuda.jit
def _dx(x, dy, mean, ca, cb, cd, dx):
    n, c = x.shape
    for i in range(cuda.grid(1), n * c, cuda.gridsize(1)):
        r, k = unravel2(i, c)
        dx[r, k] = ca[k] * dy[r, k] - cb[k] * (x[r, k] - mean[k]) - cd[k]


def batch_norm_backward(x, gamma, dy, mean, rstd, dx, dgamma, dbeta):
    n, c = x.shape
    nchunks = -(-n // CHUNK)
    part_b = scratch("batchnorm-dbeta-partials", (nchunks, c), np.float64)
    part_g = scratch("batchnorm-dgamma-partials", (nchunks, c), np.float64)
    _grad_partials[rows_1d(nchunks * c)](x, dy, mean, part_b, part_g, CHUNK)
    ca = scratch("batchnorm-dx-scale", (c,), x.dtype)
    cb = scratch("batchnorm-dx-xscale", (c,), x.dtype)
    cd = scratch("batchnorm-dx-shift", (c,), x.dtype)
    _finish_grads[c, ROW_THREADS](part_b, part_g, float(n), dummy(x.dtype) if gamma is None else gamma,
                                  gamma is not None, rstd,
                                  scratch("batchnorm-unused-dgamma", (c,), x.dtype) if dgamma is None else dgamma,
                                  scratch("batchnorm-unused-dbeta", (c,), x.dtype) if dbeta is None else dbeta,
                                  ca, cb, cd)
    _dx[grid_1d(n * c)](x, dy, mean, ca, cb, cd, dx)
