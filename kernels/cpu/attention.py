"""Scaled-dot-product attention on the CPU, forward and backward (flash-attention style:
the backward recomputes the probabilities from the forward's log-sum-exp).

Layout: q (B, Tq, H, D), k (B, Tk, H, D), v (B, Tk, H, Dv), out (B, Tq, H, Dv), lse (B, H, Tq).
One (batch, head) pair per prange iteration: it owns its rows of out, dq, dk and dv, so
nothing is shared between threads and every sum runs in a fixed order.
"""
import math

import numba
import numpy as np
from numba import prange


@numba.njit(parallel=True, cache=True)
def _forward(q, k, v, out, lse, causal, scale):
    nb, tq, nh, d = q.shape
    tk = k.shape[1]
    dv = v.shape[3]
    scale = q.dtype.type(scale)
    for item in prange(nb * nh):
        b = item // nh
        h = item - b * nh
        s = np.empty(tk, dtype=q.dtype)
        acc = np.empty(dv, dtype=q.dtype)
        for i in range(tq):
            end = min(tk, i + 1) if causal else tk
            mx = -np.inf
            for j in range(end):
                dot = q.dtype.type(0)
                for c in range(d):
                    dot += q[b, i, h, c] * k[b, j, h, c]
                s[j] = dot * scale
                mx = max(mx, s[j])
            total = q.dtype.type(0)
            for j in range(end):
                s[j] = math.exp(s[j] - mx)
                total += s[j]
            for c in range(dv):
                acc[c] = 0
            for j in range(end):
                for c in range(dv):
                    acc[c] += s[j] * v[b, j, h, c]
            inv = q.dtype.type(1) / total
            for c in range(dv):
                out[b, i, h, c] = acc[c] * inv
            lse[b, h, i] = mx + math.log(total)


def attention_forward(q, k, v, out, lse, causal, scale):
    _forward(q, k, v, out, lse, causal, scale)


@numba.njit(parallel=True, cache=True)
def _backward(q, k, v, out, dout, lse, dq, dk, dv, causal, scale):
    nb, tq, nh, d = q.shape
    tk = k.shape[1]
    ndv = v.shape[3]
    scale = q.dtype.type(scale)
    for item in prange(nb * nh):
        b = item // nh
        h = item - b * nh
        for j in range(tk):
            for c in range(d):
                dk[b, j, h, c] = 0
            for c in range(ndv):
                dv[b, j, h, c] = 0
        for i in range(tq):
            end = min(tk, i + 1) if causal else tk
            di = q.dtype.type(0)
            for c in range(ndv):
                di += dout[b, i, h, c] * out[b, i, h, c]
            for c in range(d):
                dq[b, i, h, c] = 0
            for j in range(end):
                dot = q.dtype.type(0)
                for c in range(d):
                    dot += q[b, i, h, c] * k[b, j, h, c]
                p = math.exp(dot * scale - lse[b, h, i])
                dp = q.dtype.type(0)
                for c in range(ndv):
                    dp += dout[b, i, h, c] * v[b, j, h, c]
                    dv[b, j, h, c] += p * dout[b, i, h, c]
                ds = p * (dp - di) * scale
                for c in range(d):
                    dq[b, i, h, c] += ds * k[b, j, h, c]
                    dk[b, j, h, c] += ds * q[b, i, h, c]


def attention_backward(q, k, v, out, dout, lse, dq, dk, dv, causal, scale):
    _backward(q, k, v, out, dout, lse, dq, dk, dv, causal, scale)
