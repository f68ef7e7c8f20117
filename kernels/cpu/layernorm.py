"""Layer normalization over the last axis (Keras's LayerNormalization), forward and backward.

Rows are independent, so both passes split rows over threads. The parameter gradients
(dgamma, dbeta) are column sums over rows: each fixed block of _ROW_BLOCK rows sums its own
partials, and the partials are added in block order, so the result is the same bits
whatever the thread count or schedule (as reduce.column_sum does). The row pass and the
partials are one prange: the block's rows are in cache when their partials are taken.

An empty array stands for a missing gamma or beta (one compile per dtype, not one per
combination of None arguments).
"""
import math

import numba
import numpy as np
from numba import prange

_ROW_BLOCK = 256


def _param(arr, dtype):
    return np.empty(0, dtype=dtype) if arr is None else arr


@numba.njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def _forward(x, gamma, beta, eps, y, mean, rstd):
    n, c = x.shape
    inv_c = x.dtype.type(1.0 / c)
    eps = x.dtype.type(eps)
    for r in prange(n):
        row = x[r]
        out = y[r]
        s = x.dtype.type(0)
        for k in range(c):
            s += row[k]
        mu = s * inv_c
        # Two passes (mean, then the mean of squared deviations): no cancellation when
        # |mean| >> std, as E[x^2] - E[x]^2 would suffer.
        ss = x.dtype.type(0)
        for k in range(c):
            t = row[k] - mu
            ss += t * t
        rs = x.dtype.type(1) / math.sqrt(ss * inv_c + eps)
        mean[r] = mu
        rstd[r] = rs
        for k in range(c):
            out[k] = (row[k] - mu) * rs
        if gamma.shape[0] != 0:
            for k in range(c):
                out[k] *= gamma[k]
        if beta.shape[0] != 0:
            for k in range(c):
                out[k] += beta[k]


def layer_norm_forward(x, gamma, beta, eps, y, mean, rstd):
    _forward(x, _param(gamma, x.dtype), _param(beta, x.dtype), eps, y, mean, rstd)


@numba.njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def _backward(x, gamma, dy, mean, rstd, dx, dgamma, dbeta):
    n, c = x.shape
    inv_c = x.dtype.type(1.0 / c)
    has_gamma = gamma.shape[0] != 0
    nblocks = (n + _ROW_BLOCK - 1) // _ROW_BLOCK
    part_g = np.zeros((nblocks, c), dtype=x.dtype)
    part_b = np.zeros((nblocks, c), dtype=x.dtype)
    for blk in prange(nblocks):
        g = np.empty(c, dtype=x.dtype)
        pg = part_g[blk]
        pb = part_b[blk]
        for r in range(blk * _ROW_BLOCK, min((blk + 1) * _ROW_BLOCK, n)):
            row = x[r]
            drow = dy[r]
            mu = mean[r]
            rs = rstd[r]
            # dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma.
            sg = x.dtype.type(0)
            sgx = x.dtype.type(0)
            for k in range(c):
                xhat = (row[k] - mu) * rs
                gk = drow[k] * gamma[k] if has_gamma else drow[k]
                g[k] = gk
                sg += gk
                sgx += gk * xhat
                pg[k] += drow[k] * xhat
                pb[k] += drow[k]
            mg = sg * inv_c
            mgx = sgx * inv_c
            out = dx[r]
            for k in range(c):
                out[k] = rs * (g[k] - mg - (row[k] - mu) * rs * mgx)
    for k in range(c):
        dgamma[k] = part_g[0, k]
        dbeta[k] = part_b[0, k]
    for blk in range(1, nblocks):
        for k in range(c):
            dgamma[k] += part_g[blk, k]
            dbeta[k] += part_b[blk, k]


def layer_norm_backward(x, gamma, dy, mean, rstd, dx, dgamma, dbeta):
    """dgamma / dbeta None: not wanted (scratch arrays take their sums and are dropped)."""
    c = x.shape[1]
    _backward(x, _param(gamma, x.dtype), dy, mean, rstd, dx,
              np.empty(c, x.dtype) if dgamma is None else dgamma,
              np.empty(c, x.dtype) if dbeta is None else dbeta)
