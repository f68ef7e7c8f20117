"""Losses with their gradients in one pass, and the accuracy count.

Labels are integer class ids (N,) or float one-hot / probability rows (N, C); each loss
has one kernel per label form, picked by the `onehot` flag the backend passes. The
backend has checked integer labels against the class count (Backend._check_range); they
are only compared here, never used as an index.
"""
import math

import numba
import numpy as np
from numba import prange

from numbanet.kernels.cpu import reduce
from numbanet.kernels.cpu import rules as R
from numbanet.kernels.cpu.order import row_argmax


@numba.njit(parallel=True, cache=True)
def _softmax_ce_rows(z, y, onehot, labels, losses, dz):
    n, c = z.shape
    inv_n = z.dtype.type(1.0 / n)
    for r in prange(n):
        mx = z[r, 0]
        for k in range(1, c):
            if z[r, k] > mx:
                mx = z[r, k]
        total = z.dtype.type(0)
        for k in range(c):
            total += math.exp(z[r, k] - mx)
        log_total = math.log(total)
        inv_total = z.dtype.type(1) / total
        # lse - z_k as (max - z_k) + log(total): relative to the row max, so logits of 1e4
        # neither overflow nor lose the loss's digits to a large intermediate.
        loss = z.dtype.type(0)
        for k in range(c):
            t = y[r, k] if onehot else (z.dtype.type(1) if labels[r] == k else z.dtype.type(0))
            # A zero target adds nothing, and is skipped: for a logit far below the max
            # (-3e38 under 3e38) mx - z overflows to inf, and 0 * inf is NaN.
            if t != 0:
                loss += t * ((mx - z[r, k]) + log_total)
            dz[r, k] = (math.exp(z[r, k] - mx) * inv_total - t) * inv_n
        losses[r] = loss


def softmax_cross_entropy(logits, labels, onehot, losses, dlogits):
    if onehot:
        _softmax_ce_rows(logits, labels, True, np.zeros(1, np.int64), losses, dlogits)
    else:
        _softmax_ce_rows(logits, logits, False, labels, losses, dlogits)


@numba.njit(parallel=True, cache=True)
def _crossentropy_rows(p, y, onehot, labels, eps, losses, dp):
    n, c = p.shape
    lo = p.dtype.type(eps)
    hi = p.dtype.type(1.0 - eps)
    inv_n = p.dtype.type(1.0 / n)
    zero = p.dtype.type(0)
    for r in prange(n):
        loss = zero
        for k in range(c):
            t = y[r, k] if onehot else (p.dtype.type(1) if labels[r] == k else zero)
            pk = p[r, k]
            clipped = min(max(pk, lo), hi)
            loss -= t * math.log(clipped)
            # Clipping has zero derivative outside [eps, 1 - eps].
            dp[r, k] = -t / clipped * inv_n if lo <= pk <= hi else zero
        losses[r] = loss


def crossentropy(probs, labels, onehot, eps, losses, dprobs):
    if onehot:
        _crossentropy_rows(probs, labels, True, np.zeros(1, np.int64), eps, losses, dprobs)
    else:
        _crossentropy_rows(probs, probs, False, labels, eps, losses, dprobs)


@numba.njit(parallel=True, cache=True)
def mse(pred, target, losses, dpred):
    n, d = pred.shape
    inv_d = pred.dtype.type(1.0 / d)
    scale = pred.dtype.type(2.0 / (n * d))
    for r in prange(n):
        acc = pred.dtype.type(0)
        for k in range(d):
            diff = pred[r, k] - target[r, k]
            acc += diff * diff
            dpred[r, k] = scale * diff
        losses[r] = acc * inv_d


@numba.njit(cache=True)
def _accuracy_int(scores, labels):
    hits = 0
    for r in range(scores.shape[0]):
        if row_argmax(scores, r) == labels[r]:
            hits += 1
    return hits


@numba.njit(cache=True)
def _accuracy_onehot(scores, labels):
    hits = 0
    for r in range(scores.shape[0]):
        if row_argmax(scores, r) == row_argmax(labels, r):
            hits += 1
    return hits


def accuracy(scores, labels, onehot):
    if onehot:
        return int(_accuracy_onehot(scores, labels))
    return int(_accuracy_int(scores, labels))


def softmax_cross_entropy_stats(logits, labels, onehot, losses, dlogits, stats):
    """softmax_cross_entropy, then stats = [mean loss, correct count] (float64)."""
    softmax_cross_entropy(logits, labels, onehot, losses, dlogits)
    stats[0] = reduce.sum(losses) / logits.shape[0]
    stats[1] = accuracy(logits, labels, onehot)


@numba.njit(parallel=True, cache=True)
def _bce_probs(p, t, eps, losses, dp):
    n, d = p.shape
    lo = p.dtype.type(eps)
    hi = p.dtype.type(1.0 - eps)
    one = p.dtype.type(1)
    zero = p.dtype.type(0)
    inv_d = p.dtype.type(1.0 / d)
    inv_nd = p.dtype.type(1.0 / (n * d))
    for r in prange(n):
        acc = zero
        for k in range(d):
            loss, grad = R.bce_probs(p[r, k], t[r, k], lo, hi, one, zero)
            acc += loss
            dp[r, k] = grad * inv_nd
        losses[r] = acc * inv_d


@numba.njit(parallel=True, cache=True)
def _bce_logits(z, t, losses, dz):
    n, d = z.shape
    one = z.dtype.type(1)
    zero = z.dtype.type(0)
    inv_d = z.dtype.type(1.0 / d)
    inv_nd = z.dtype.type(1.0 / (n * d))
    for r in prange(n):
        acc = zero
        for k in range(d):
            loss, grad = R.bce_logits(z[r, k], t[r, k], one, zero)
            acc += loss
            dz[r, k] = grad * inv_nd
        losses[r] = acc * inv_d


def binary_crossentropy(pred, target, from_logits, eps, losses, dpred):
    if from_logits:
        _bce_logits(pred, target, losses, dpred)
    else:
        _bce_probs(pred, target, eps, losses, dpred)


@numba.njit(cache=True)
def _binary_accuracy(pred, target, threshold):
    # Keras's rule: the prediction (pred > threshold, as 0 or 1) must equal the target exactly.
    hits = 0
    one = pred.dtype.type(1)
    zero = pred.dtype.type(0)
    for i in range(pred.shape[0]):
        guess = one if pred[i] > threshold else zero
        if guess == target[i]:
            hits += 1
    return hits


def binary_accuracy(pred, target, threshold):
    # The threshold in the array dtype, as on the gpu, so both backends draw the same line.
    return int(_binary_accuracy(pred, target, pred.dtype.type(threshold)))
