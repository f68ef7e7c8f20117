"""Batch normalization over every axis but the last (Keras's BatchNormalization, channels
last), forward in training and inference mode and backward, on (rows, C) views.

Statistics: one pass that sums x - s and (x - s)^2 per channel in float64, s a shift (the
channel's value in the first row). One pass instead of two (mean, then the squared
deviations) halves the reads of the largest tensor of the step; the shift removes the
cancellation of E[x^2] - E[x]^2 when |mean| >> std (s is within a few std of the mean for
any sample of the batch), and float64 sums keep the rest of it far below float32's
rounding. Welford's update would do as well but divides per element, which does not
vectorize.

Every per-channel sum (the statistics, dgamma and dbeta) is taken by fixed blocks of
_ROW_BLOCK rows, one block per prange iteration writing its own partial row (no atomics,
no shared accumulator), and the partials are added in block order: the same bits whatever
the thread count.

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


@numba.njit(parallel=True, cache=True)
def _stats(x, shift, part_s, part_q):
    n, c = x.shape
    for blk in prange(part_s.shape[0]):
        ps = part_s[blk]
        pq = part_q[blk]
        for r in range(blk * _ROW_BLOCK, min((blk + 1) * _ROW_BLOCK, n)):
            row = x[r]
            for k in range(c):
                d = np.float64(row[k]) - shift[k]
                ps[k] += d
                pq[k] += d * d


@numba.njit(cache=True)
def _finish_stats(shift, part_s, part_q, n, eps, momentum, mean, rstd, moving_mean, moving_var):
    """Fold the partials in block order; mean, rstd and the moving statistics per channel.
    The moving variance takes the biased batch variance, as Keras 3 does."""
    c = shift.shape[0]
    for k in range(c):
        s = 0.0
        q = 0.0
        for blk in range(part_s.shape[0]):
            s += part_s[blk, k]
            q += part_q[blk, k]
        ms = s / n
        var = max(q / n - ms * ms, 0.0)
        mu = shift[k] + ms
        mean[k] = mu
        rstd[k] = 1.0 / math.sqrt(var + eps)
        moving_mean[k] = moving_mean[k] * momentum + mu * (1.0 - momentum)
        moving_var[k] = moving_var[k] * momentum + var * (1.0 - momentum)


@numba.njit(parallel=True, cache=True, fastmath={"contract"})
def _normalize(x, a, b, y):
    """y = x * a + b per channel (a = gamma * rstd, b = beta - mean * a)."""
    n, c = x.shape
    for r in prange(n):
        row = x[r]
        out = y[r]
        for k in range(c):
            out[k] = row[k] * a[k] + b[k]


def _affine(gamma, beta, mean, rstd, dtype):
    """Per channel a, b with y = x * a + b, computed in float64 and rounded once."""
    a = rstd.astype(np.float64)
    if gamma is not None:
        a = a * gamma
    b = -mean.astype(np.float64) * a
    if beta is not None:
        b = b + beta
    return a.astype(dtype), b.astype(dtype)


def batch_norm_train(x, gamma, beta, moving_mean, moving_var, eps, momentum, y, mean, rstd):
    n, c = x.shape
    nblocks = (n + _ROW_BLOCK - 1) // _ROW_BLOCK
    part_s = np.zeros((nblocks, c), np.float64)
    part_q = np.zeros((nblocks, c), np.float64)
    shift = x[0].astype(np.float64)
    _stats(x, shift, part_s, part_q)
    _finish_stats(shift, part_s, part_q, float(n), float(eps), float(momentum), mean, rstd, moving_mean, moving_var)
    a, b = _affine(gamma, beta, mean, rstd, x.dtype)
    _normalize(x, a, b, y)


def batch_norm_inference(x, gamma, beta, moving_mean, moving_var, eps, y):
    rstd = 1.0 / np.sqrt(moving_var.astype(np.float64) + eps)
    a, b = _affine(gamma, beta, moving_mean, rstd, x.dtype)
    _normalize(x, a, b, y)


@numba.njit(parallel=True, cache=True)
def _grad_sums(x, dy, mean, part_b, part_g):
    """Per block: sum dy and sum dy * (x - mean) per channel (float64)."""
    n, c = x.shape
    for blk in prange(part_b.shape[0]):
        pb = part_b[blk]
        pg = part_g[blk]
        for r in range(blk * _ROW_BLOCK, min((blk + 1) * _ROW_BLOCK, n)):
            row = x[r]
            drow = dy[r]
            for k in range(c):
                d = np.float64(drow[k])
                pb[k] += d
                pg[k] += d * (np.float64(row[k]) - mean[k])


@numba.njit(parallel=True, cache=True, fastmath={"contract"})
def _dx(x, dy, mean, a, b, d, dx):
    """dx = a * dy - b * (x - mean) - d per channel (the fused form of
    gamma * rstd / N * (N dy - sum dy - xhat * sum(dy * xhat)))."""
    n, c = x.shape
    for r in prange(n):
        row = x[r]
        drow = dy[r]
        out = dx[r]
        for k in range(c):
            out[k] = a[k] * drow[k] - b[k] * (row[k] - mean[k]) - d[k]


def batch_norm_backward(x, gamma, dy, mean, rstd, dx, dgamma, dbeta):
    """dgamma / dbeta None: not wanted."""
    n, c = x.shape
    nblocks = (n + _ROW_BLOCK - 1) // _ROW_BLOCK
    part_b = np.zeros((nblocks, c), np.float64)
    part_g = np.zeros((nblocks, c), np.float64)
    mean64 = mean.astype(np.float64)
    _grad_sums(x, dy, mean64, part_b, part_g)
    sum_dy = _fold(part_b)
    sum_dyxc = _fold(part_g)
    r = rstd.astype(np.float64)
    g = np.ones(c) if gamma is None else gamma.astype(np.float64)
    sum_dyxhat = sum_dyxc * r
    if dgamma is not None:
        dgamma[:] = sum_dyxhat
    if dbeta is not None:
        dbeta[:] = sum_dy
    a = g * r
    _dx(x, dy, mean, a.astype(x.dtype), (a * r * sum_dyxhat / n).astype(x.dtype), (a * sum_dy / n).astype(x.dtype),
        dx)


@numba.njit(cache=True)
def _fold(part):
    """Column sums of the block partials, in block order."""
    out = part[0].copy()
    for blk in range(1, part.shape[0]):
        for k in range(part.shape[1]):
            out[k] += part[blk, k]
    return out
