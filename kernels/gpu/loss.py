"""Losses on the gpu: one thread per row (fused softmax + cross-entropy, crossentropy on
probabilities, mse), with the row's gradient written by the same thread, so each row's
values are read once for both outputs. Integer labels and one-hot rows get separate
kernels: the label array's rank is part of the kernel's type.

accuracy counts correct rows with an integer atomic add into one device cell: integer
addition is associative, so the count is exact and order-independent (only float atomics
break determinism); one int is copied back.

softmax_cross_entropy_stats is the training step's whole loss in one launch: one block
computes every row's loss and gradient and folds the mean loss and the correct count in
shared memory, in a fixed order, into a 2-element device array the step reads once
(instead of the loss kernel, the sum kernels, a clear and an accuracy kernel, and two
copies).
"""
import functools
import math

import numpy as np
from numba import cuda, float64, int64

from numbanet.kernels.gpu import rules as R
from numbanet.kernels.gpu.launch import THREADS_1D, grid_1d, inlined, kernel_family, rows_1d, scratch
from numbanet.kernels.gpu.order import row_argmax
from numbanet.kernels.gpu.rows import fold_sum


@functools.lru_cache(maxsize=None)
def _sce_row(onehot):
    """A device function: row i's loss (returned) and gradient (written to dz)."""
    @inlined
    def row(z, labels, losses, dz, inv_n, one, i):
        c = z.shape[1]
        mx = z[i, 0]
        for j in range(1, c):
            if z[i, j] > mx:
                mx = z[i, j]
        total = one * 0
        for j in range(c):
            total += math.exp(z[i, j] - mx)
        log_total = math.log(total)
        inv_total = one / total
        # lse - z_j as (max - z_j) + log(total), relative to the row max as the cpu
        # backend does: logits of 1e4 neither overflow nor cancel the loss's digits.
        loss = one * 0
        for j in range(c):
            # onehot is a closure constant: numba prunes the other branch at compile
            # time, so a 1-D label array is never indexed as 2-D.
            if onehot:
                t = labels[i, j]
            else:
                t = one if labels[i] == j else one * 0
            # A zero target adds nothing, and is skipped: for a logit far below the max
            # (-3e38 under 3e38) mx - z overflows to inf, and 0 * inf is NaN.
            if t != 0:
                loss += t * ((mx - z[i, j]) + log_total)
            dz[i, j] = (math.exp(z[i, j] - mx) * inv_total - t) * inv_n
        losses[i] = loss
        return loss
    return row


@kernel_family
def _sce(onehot):
    row = _sce_row(onehot)

    @cuda.jit
    def kernel(z, labels, losses, dz, inv_n, one):
        i = cuda.grid(1)
        if i < z.shape[0]:
            row(z, labels, losses, dz, inv_n, one, i)
    return kernel


@kernel_family
def _sce_stats(onehot):
    """One block: every row's loss and gradient, and the batch's mean loss (float64) and
    correct count folded in shared memory in a fixed order into stats[0], stats[1]."""
    row = _sce_row(onehot)

    @cuda.jit
    def kernel(z, labels, losses, dz, inv_n, one, stats):
        loss_buf = cuda.shared.array(THREADS_1D, float64)
        hit_buf = cuda.shared.array(THREADS_1D, int64)
        tid = cuda.threadIdx.x
        total = 0.0
        hits = 0
        for i in range(tid, z.shape[0], THREADS_1D):
            total += float64(row(z, labels, losses, dz, inv_n, one, i))
            if onehot:
                hit = row_argmax(z, i) == row_argmax(labels, i)
            else:
                hit = row_argmax(z, i) == labels[i]
            if hit:
                hits += 1
        loss_buf[tid] = total
        hit_buf[tid] = hits
        cuda.syncthreads()
        fold_sum(loss_buf, tid, THREADS_1D)
        fold_sum(hit_buf, tid, THREADS_1D)
        if tid == 0:
            stats[0] = loss_buf[0] / z.shape[0]
            stats[1] = float64(hit_buf[0])
    return kernel


def softmax_cross_entropy(logits, labels, onehot, losses, dlogits):
    t = logits.dtype.type
    _sce(bool(onehot))[rows_1d(logits.shape[0])](logits, labels, losses, dlogits,
                                                            t(1.0 / logits.shape[0]), t(1))


def softmax_cross_entropy_stats(logits, labels, onehot, losses, dlogits, stats):
    """stats = [mean loss, correct count] (float64), with the losses and dlogits: one launch."""
    t = logits.dtype.type
    _sce_stats(bool(onehot))[1, THREADS_1D](logits, labels, losses, dlogits, t(1.0 / logits.shape[0]), t(1),
                                            stats)


@kernel_family
def _ce(onehot):
    @cuda.jit
    def kernel(p, labels, lo, hi, losses, dp, inv_n, one):
        i = cuda.grid(1)
        if i < p.shape[0]:
            loss = one * 0
            for j in range(p.shape[1]):
                # onehot is a closure constant: numba prunes the other branch at compile
                # time, so a 1-D label array is never indexed as 2-D.
                if onehot:
                    t = labels[i, j]
                else:
                    t = one if labels[i] == j else one * 0
                pk = p[i, j]
                clipped = min(max(pk, lo), hi)
                loss -= t * math.log(clipped)
                # Clipping has zero derivative outside [eps, 1 - eps].
                dp[i, j] = -t / clipped * inv_n if (pk >= lo and pk <= hi) else one * 0
            losses[i] = loss
    return kernel


def crossentropy(probs, labels, onehot, eps, losses, dprobs):
    t = probs.dtype.type
    _ce(bool(onehot))[rows_1d(probs.shape[0])](probs, labels, t(eps), t(1.0 - eps), losses,
                                                          dprobs, t(1.0 / probs.shape[0]), t(1))


@cuda.jit
def _mse(p, t, losses, dp, inv_d, scale):
    i = cuda.grid(1)
    if i < p.shape[0]:
        acc = inv_d * 0
        for j in range(p.shape[1]):
            e = p[i, j] - t[i, j]
            acc += e * e
            dp[i, j] = scale * e
        losses[i] = acc * inv_d


def mse(pred, target, losses, dpred):
    n, d = pred.shape
    t = pred.dtype.type
    _mse[rows_1d(n)](pred, target, losses, dpred, t(1.0 / d), t(2.0 / (n * d)))


@cuda.jit
def _acc_int(s, labels, count):
    i = cuda.grid(1)
    if i < s.shape[0]:
        if row_argmax(s, i) == labels[i]:
            cuda.atomic.add(count, 0, 1)


@cuda.jit
def _acc_onehot(s, y, count):
    i = cuda.grid(1)
    if i < s.shape[0]:
        if row_argmax(s, i) == row_argmax(y, i):
            cuda.atomic.add(count, 0, 1)


@cuda.jit
def _clear_count(count):
    count[0] = 0


def accuracy(scores, labels, onehot):
    # Cleared by a kernel, not uploaded: a host-to-device copy from pageable memory
    # waits for the stream, a kernel launch queues behind it.
    count = scratch("accuracy", (1,), np.int64)
    _clear_count[1, 1](count)
    k = _acc_onehot if onehot else _acc_int
    k[rows_1d(scores.shape[0])](scores, labels, count)
    return int(count.copy_to_host()[0])


@cuda.jit
def _bce_probs(p, t, lo, hi, losses, dp, inv_d, inv_nd, one):
    i = cuda.grid(1)
    if i < p.shape[0]:
        zero = one - one
        acc = zero
        for j in range(p.shape[1]):
            loss, grad = R.bce_probs(p[i, j], t[i, j], lo, hi, one, zero)
            acc += loss
            dp[i, j] = grad * inv_nd
        losses[i] = acc * inv_d


@cuda.jit
def _bce_logits(z, t, losses, dz, inv_d, inv_nd, one):
    i = cuda.grid(1)
    if i < z.shape[0]:
        zero = one - one
        acc = zero
        for j in range(z.shape[1]):
            loss, grad = R.bce_logits(z[i, j], t[i, j], one, zero)
            acc += loss
            dz[i, j] = grad * inv_nd
        losses[i] = acc * inv_d


def binary_crossentropy(pred, target, from_logits, eps, losses, dpred):
    n, d = pred.shape
    t = pred.dtype.type
    if from_logits:
        _bce_logits[rows_1d(n)](pred, target, losses, dpred, t(1.0 / d), t(1.0 / (n * d)), t(1))
    else:
        _bce_probs[rows_1d(n)](pred, target, t(eps), t(1.0 - eps), losses, dpred, t(1.0 / d),
                               t(1.0 / (n * d)), t(1))


@cuda.jit
def _binary_accuracy(p, y, threshold, count):
    # Integer atomics: exact and order-independent (see accuracy).
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        guess = 1 if p[i] > threshold else 0
        if y[i] == guess:
            cuda.atomic.add(count, 0, 1)


def binary_accuracy(pred, target, threshold):
    count = scratch("accuracy", (1,), np.int64)
    _clear_count[1, 1](count)
    _binary_accuracy[grid_1d(pred.shape[0])](pred, target, pred.dtype.type(threshold), count)
    return int(count.copy_to_host()[0])
