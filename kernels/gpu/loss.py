"""Losses on the gpu: one thread per row (fused softmax + cross-entropy, crossentropy on
probabilities, mse), with the row's gradient written by the same thread, so each row's
values are read once for both outputs. Integer labels and one-hot rows get separate
kernels: the label array's rank is part of the kernel's type.

accuracy counts correct rows with an integer atomic add into one device cell: integer
addition is associative, so the count is exact and order-independent (only float atomics
break determinism); one int is copied back.
"""
import math

import numpy as np
from numba import cuda

from kernels.gpu.launch import THREADS_1D


def _rows(n):
    return -(-n // THREADS_1D)


@cuda.jit(device=True, inline=True)
def _row_logsumexp(z, i):
    c = z.shape[1]
    mx = z[i, 0]
    for j in range(1, c):
        mx = max(mx, z[i, j])
    s = z[i, 0] * 0
    for j in range(c):
        s += math.exp(z[i, j] - mx)
    return mx, s


@cuda.jit
def _sce_int(z, labels, losses, dz):
    i = cuda.grid(1)
    n = z.shape[0]
    if i < n:
        mx, s = _row_logsumexp(z, i)
        lab = labels[i]
        losses[i] = math.log(s) + mx - z[i, lab]
        for j in range(z.shape[1]):
            p = math.exp(z[i, j] - mx) / s
            if j == lab:
                p -= 1
            dz[i, j] = p / n


@cuda.jit
def _sce_onehot(z, y, losses, dz):
    i = cuda.grid(1)
    n = z.shape[0]
    if i < n:
        mx, s = _row_logsumexp(z, i)
        lse = math.log(s) + mx
        dot = z[i, 0] * 0
        for j in range(z.shape[1]):
            dot += y[i, j] * z[i, j]
            dz[i, j] = (math.exp(z[i, j] - mx) / s - y[i, j]) / n
        # sum_j y_j (lse - z_j), written as lse * sum y - sum y z so that soft labels work too.
        ysum = y[i, 0] * 0
        for j in range(z.shape[1]):
            ysum += y[i, j]
        losses[i] = lse * ysum - dot


def softmax_cross_entropy(logits, labels, onehot, losses, dlogits):
    k = _sce_onehot if onehot else _sce_int
    k[_rows(logits.shape[0]), THREADS_1D](logits, labels, losses, dlogits)


@cuda.jit(device=True, inline=True)
def _clip_term(p, y, eps, n):
    """-> (loss term -y log(clip(p)), gradient -y/p/N inside the clip, 0 where clipped)."""
    lo = eps
    hi = 1 - eps
    pc = min(max(p, lo), hi)
    g = -y / p / n if (p >= lo and p <= hi) else p * 0
    return -y * math.log(pc), g


@cuda.jit
def _ce_int(p, labels, eps, losses, dp):
    i = cuda.grid(1)
    n = p.shape[0]
    if i < n:
        lab = labels[i]
        loss = p[i, 0] * 0
        for j in range(p.shape[1]):
            y = 1.0 if j == lab else 0.0
            t, g = _clip_term(p[i, j], y, eps, n)
            loss += t
            dp[i, j] = g
        losses[i] = loss


@cuda.jit
def _ce_onehot(p, y, eps, losses, dp):
    i = cuda.grid(1)
    n = p.shape[0]
    if i < n:
        loss = p[i, 0] * 0
        for j in range(p.shape[1]):
            t, g = _clip_term(p[i, j], y[i, j], eps, n)
            loss += t
            dp[i, j] = g
        losses[i] = loss


def crossentropy(probs, labels, onehot, eps, losses, dprobs):
    k = _ce_onehot if onehot else _ce_int
    k[_rows(probs.shape[0]), THREADS_1D](probs, labels, eps, losses, dprobs)


@cuda.jit
def _mse(p, t, losses, dp):
    i = cuda.grid(1)
    n, d = p.shape
    if i < n:
        acc = p[i, 0] * 0
        for j in range(d):
            e = p[i, j] - t[i, j]
            acc += e * e
            dp[i, j] = 2 * e / (n * d)
        losses[i] = acc / d


def mse(pred, target, losses, dpred):
    _mse[_rows(pred.shape[0]), THREADS_1D](pred, target, losses, dpred)


@cuda.jit(device=True, inline=True)
def _row_argmax(s, i):
    best = s[i, 0]
    k = 0
    for j in range(1, s.shape[1]):
        if s[i, j] > best:
            best = s[i, j]
            k = j
    return k


@cuda.jit
def _acc_int(s, labels, count):
    i = cuda.grid(1)
    if i < s.shape[0]:
        if _row_argmax(s, i) == labels[i]:
            cuda.atomic.add(count, 0, 1)


@cuda.jit
def _acc_onehot(s, y, count):
    i = cuda.grid(1)
    if i < s.shape[0]:
        if _row_argmax(s, i) == _row_argmax(y, i):
            cuda.atomic.add(count, 0, 1)


_zero = np.zeros(1, dtype=np.int64)


def accuracy(scores, labels, onehot):
    count = cuda.to_device(_zero)
    k = _acc_onehot if onehot else _acc_int
    k[_rows(scores.shape[0]), THREADS_1D](scores, labels, count)
    return int(count.copy_to_host()[0])
