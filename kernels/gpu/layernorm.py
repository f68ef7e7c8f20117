"""Layer normalization over the last axis on the gpu, forward and backward.

Rows: a block per row (kernels/gpu/rows.py): coalesced reads, the mean and the variance
(two passes: no cancellation when |mean| >> std) and the backward's two row sums folded
in a fixed order. dgamma / dbeta: the same fixed-order two-pass column reduction as
reduce.column_sum (chunks of CHUNK rows, then the chunk partials in order), so the
result is bit-identical run to run and no float atomics are used.
A missing gamma or beta is a one-element dummy with a has_* flag of 0.
"""
import math

import numpy as np
from numba import cuda, float64

from numbanet.kernels.gpu.launch import dummy, fixed_block, rows_1d, scratch, unravel2
from numbanet.kernels.gpu.rows import ROW_THREADS, block_row, block_sum

CHUNK = 256


@fixed_block(ROW_THREADS)


@cuda.jit
def _forward(x, gamma, has_gamma, beta, has_beta, eps, y, mean, rstd):
    buf = cuda.shared.array(ROW_THREADS, float64)
    r, t, c = block_row(x)
    s = 0.0
    for k in range(t, c, ROW_THREADS):
        s += x[r, k]
    mu = block_sum(buf, t, s) / c
    ss = 0.0
    for k in range(t, c, ROW_THREADS):
        d = x[r, k] - mu
        ss += d * d
    rs = 1.0 / math.sqrt(block_sum(buf, t, ss) / c + eps)
    if t == 0:
        mean[r] = mu
        rstd[r] = rs
    for k in range(t, c, ROW_THREADS):
        v = (x[r, k] - mu) * rs
        if has_gamma:
            v *= gamma[k]
        if has_beta:
            v += beta[k]
        y[r, k] = v


def layer_norm_forward(x, gamma, beta, eps, y, mean, rstd):
    _forward[x.shape[0], ROW_THREADS](x, dummy(x.dtype) if gamma is None else gamma, gamma is not None,
                                      dummy(x.dtype) if beta is None else beta, beta is not None,
                                      float(eps), y, mean, rstd)


@fixed_block(ROW_THREADS)


@cuda.jit
def _backward_rows(x, gamma, has_gamma, dy, mean, rstd, dx):
    # dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma.
    buf = cuda.shared.array(ROW_THREADS, float64)
    r, t, c = block_row(x)
    mu = float64(mean[r])
    rs = float64(rstd[r])
    sg = 0.0
    sgx = 0.0
    for k in range(t, c, ROW_THREADS):
        g = float64(dy[r, k])
        if has_gamma:
            g *= gamma[k]
        sg += g
        sgx += g * (x[r, k] - mu) * rs
    mg = block_sum(buf, t, sg) / c
    mgx = block_sum(buf, t, sgx) / c
    for k in range(t, c, ROW_THREADS):
        g = float64(dy[r, k])
        if has_gamma:
            g *= gamma[k]
        dx[r, k] = rs * (g - mg - (x[r, k] - mu) * rs * mgx)


@cuda.jit
def _param_partials(x, dy, mean, rstd, part_g, part_b, chunk):
    # Thread t: column t % C of chunk t // C (columns fastest: coalesced row reads).
    t = cuda.grid(1)
    n, c = x.shape
    if t < part_g.shape[0] * c:
        g, k = unravel2(t, c)
        acc_g = 0.0
        acc_b = 0.0
        for r in range(g * chunk, min(g * chunk + chunk, n)):
            acc_g += float64(dy[r, k]) * (x[r, k] - mean[r]) * rstd[r]
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
    _backward_rows[n, ROW_THREADS](x, dummy(x.dtype) if gamma is None else gamma, gamma is not None,
                                   dy, mean, rstd, dx)
    if dgamma is None and dbeta is None:
        return
    nchunks = -(-n // CHUNK)
    # float64 partials, as the row folds: one rounding to the output dtype at the end.
    part_g = scratch("layernorm-dgamma-partials", (nchunks, c), np.float64)
    part_b = scratch("layernorm-dbeta-partials", (nchunks, c), np.float64)
    _param_partials[rows_1d(nchunks * c)](x, dy, mean, rstd, part_g, part_b, CHUNK)
    _param_fold[rows_1d(c)](part_g, part_b,
                            scratch("layernorm-unused-dgamma", (c,), x.dtype) if dgamma is None else dgamma,
                            scratch("layernorm-unused-dbeta", (c,), x.dtype) if dbeta is None else dbeta)
