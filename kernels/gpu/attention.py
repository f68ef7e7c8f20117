"""Scaled-dot-product attention on the gpu, forward and backward, deterministic (no atomics).

Layout: q (B, Tq, H, D), k (B, Tk, H, D), v (B, Tk, H, Dv), out (B, Tq, H, Dv), lse (B, H, Tq).

forward: one thread per (batch, head, query row), an online softmax over the keys (the
running max m and sum l rescale the partial output whenever m grows), accumulating the
output row in place in `out`.
backward: the probabilities are recomputed from lse. dq: one thread per query row looping
over its keys; it also stores D_i = rowsum(dout * out). dk, dv: one thread per key row
looping over the queries that see it. Each gradient element is written by exactly one
thread, summed in a fixed order: bit-identical results run to run.
"""
import math

import numpy as np
from numba import cuda

from numbanet.kernels.gpu.launch import rows_1d

@cuda.jit
def _forward_rows(q, k, v, out, lse, causal, scale):
    zero = q.dtype.type(0)
    one = q.dtype.type(1)
    neg_inf = q.dtype.type(-math.inf)
    t = cuda.grid(1)
    nb, tq, nh, d = q.shape
    tk = k.shape[1]
    dv = v.shape[3]
    if t < nb * nh * tq:
        i = t % tq
        bh = t // tq
        h = bh % nh
        b = bh // nh
        end = min(tk, i + 1) if causal else tk
        m = neg_inf
        l = zero
        for c in range(dv):
            out[b, i, h, c] = zero
        for j in range(end):
            s = zero
            for c in range(d):
                s += q[b, i, h, c] * k[b, j, h, c]
            s *= scale
            if s > m:
                alpha = math.exp(m - s)
                m = s
            else:
                alpha = one
            p = math.exp(s - m)
            l = l * alpha + p
            for c in range(dv):
                out[b, i, h, c] = out[b, i, h, c] * alpha + p * v[b, j, h, c]
        for c in range(dv):
            out[b, i, h, c] = out[b, i, h, c] / l
        lse[b, h, i] = m + math.log(l)


def attention_forward(q, k, v, out, lse, causal, scale):
    nb, tq, nh, _ = q.shape
    _forward_rows[rows_1d(nb * nh * tq)](q, k, v, out, lse, causal, q.dtype.type(scale))


@cuda.jit
def _backward_dq(q, k, v, out, dout, lse, dq, delta, causal, scale):
    zero = q.dtype.type(0)
    t = cuda.grid(1)
    nb, tq, nh, d = q.shape
    tk = k.shape[1]
    dv = v.shape[3]
    if t < nb * nh * tq:
        i = t % tq
        bh = t // tq
        h = bh % nh
        b = bh // nh
        end = min(tk, i + 1) if causal else tk
        di = zero
        for c in range(dv):
            di += dout[b, i, h, c] * out[b, i, h, c]
        delta[b, h, i] = di
        for c in range(d):
            dq[b, i, h, c] = zero
        for j in range(end):
            s = zero
            for c in range(d):
                s += q[b, i, h, c] * k[b, j, h, c]
            p = math.exp(s * scale - lse[b, h, i])
            dp = zero
            for c in range(dv):
                dp += dout[b, i, h, c] * v[b, j, h, c]
            ds = p * (dp - di) * scale
            for c in range(d):
                dq[b, i, h, c] += ds * k[b, j, h, c]


@cuda.jit
def _backward_dkdv(q, k, v, dout, lse, delta, dk, dv, causal, scale):
    zero = q.dtype.type(0)
    t = cuda.grid(1)
    nb, tq, nh, d = q.shape
    tk = k.shape[1]
    ndv = v.shape[3]
    if t < nb * nh * tk:
        j = t % tk
        bh = t // tk
        h = bh % nh
        b = bh // nh
        for c in range(d):
            dk[b, j, h, c] = zero
        for c in range(ndv):
            dv[b, j, h, c] = zero
        # Causal: key j is seen by queries i >= j only.
        for i in range(j if causal else 0, tq):
            s = zero
            for c in range(d):
                s += q[b, i, h, c] * k[b, j, h, c]
            p = math.exp(s * scale - lse[b, h, i])
            dp = zero
            for c in range(ndv):
                dp += dout[b, i, h, c] * v[b, j, h, c]
                dv[b, j, h, c] += p * dout[b, i, h, c]
            ds = p * (dp - delta[b, h, i]) * scale
            for c in range(d):
                dk[b, j, h, c] += ds * q[b, i, h, c]


def attention_backward(q, k, v, out, dout, lse, dq, dk, dv, causal, scale):
    nb, tq, nh, _ = q.shape
    tk = k.shape[1]
    scale = q.dtype.type(scale)
    delta = cuda.device_array((nb, nh, tq), dtype=q.dtype)
    _backward_dq[rows_1d(nb * nh * tq)](q, k, v, out, dout, lse, dq, delta, causal, scale)
    _backward_dkdv[rows_1d(nb * nh * tk)](q, k, v, dout, lse, delta, dk, dv, causal, scale)
