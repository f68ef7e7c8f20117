"""Scaled-dot-product attention on the CPU, forward and backward, flash-attention style.

Layout: q (B, Tq, H, D), k (B, Tk, H, D), v (B, Tk, H, Dv), out (B, Tq, H, Dv), lse (B, H, Tq).

The scores are computed one strip at a time, never as a whole Tq x Tk matrix: 16 queries
against their keys in the forward pass, 16 keys against their queries in the backward
pass (a strip of 16 x 128 floats is 8 KiB, in L1). Every product runs on an MR x 16
register-blocked micro-kernel from packed panels (kernels/cpu/tuning.strip_tile: the best
candidate 16 lanes wide for this CPU, 8 x 16 with AVX-512, 4 x 16 with AVX2, where 8 x 16
spills), oriented so that its tiles land in the strip as they are, 16 lanes wide (the
panels below say 8 for MR):

forward, per 16 queries (scale * log2(e) is folded into the packed queries, so the
exponentials are powers of two):
    S^T  (keys x 16 queries)  = k q^T        A: k panels (D x 8 keys)   B: q^T (D x 16)
    P^T = 2^(S^T - max), l = sum over keys, per query lane (_attention_lanes)
    out^T (Dv x 16 queries)  = v^T P^T      A: v panels (keys x 8 Dv)  B: the strip
    lse = (max + log2 l) * ln 2

backward, per 16 keys (the probabilities recomputed from lse, as flash attention does):
    S   (queries x 16 keys)  = q k^T        A: q panels (D x 8)        B: k^T (D x 16 keys)
    dP  (queries x 16 keys)  = dout v^T     A: dout panels             B: v^T (Dv x 16)
    P = 2^(S - lse log2 e), dS = P * (dP - rowsum(dout * out))
    dv^T (Dv x 16 keys)      = dout^T P     A: dout panels (q x 8 Dv)  B: the P strip
    dk^T (D x 16 keys)       = q^T dS       A: q panels (q x 8 D)      B: the dS strip
  and per block of KB keys, from dS^T stored query-panel-major:
    dq^T (D x 16 queries)   += k^T dS^T     A: k panels (keys x 8 D)   B: dS^T

So dk and dv are final after one pass over the queries, and dS is the only strip that
is transposed. The MR-wide tile outputs (out, dk, dv, dq) are written transposed.

With a causal mask a strip only covers the keys (queries) its queries (keys) can see:
about half the work. Masked scores are set to -inf before the exponentials, so their
probabilities are exactly 0.

Threads: the forward splits (batch, head, query range) items over threads; the backward
gives each thread whole (batch, head) items, since dk and dv sum over every query and dq
over every key of the item: one writer per element and a fixed summation order, so the
results do not depend on the thread count. Scratch is allocated once per run (chunk) of
items, not per item.
"""
import math

import numba
import numpy as np
from numba import prange

from numbanet.kernels.cpu._attention_lanes import LANES, ds_rows, exp2_lanes, exp2_rows, max_lanes
from numbanet.kernels.cpu import tuning
from numbanet.kernels.cpu.apart import address_apart, call_apart
from numbanet.kernels.cpu.fastexp import LN2, LOG2E
from numbanet.kernels.cpu.threads import CHUNKS_PER_THREAD
from numbanet.kernels.cpu.threads import dynamic as _dynamic

NR = LANES  # lanes of a strip, as many as _attention_lanes' helpers are unrolled for
KB = 128  # backward: keys whose dS^T is multiplied into dq at once (a multiple of NR)


@numba.njit(cache=True)
def _pack_cols(x, b, h, i0, n, scale, out):
    """Rows i0 .. i0+n of x[b, :, h, :] as panels of W = out.shape[2] rows, feature-major:
    out[p, c, w] = x[b, i0 + p*W + w, h, c] * scale, zero past row n (every panel of out
    is written). With W = MR that is the A operand of a product over the feature axis,
    with W = NR its B operand."""
    d = x.shape[3]
    width = out.shape[2]
    for p in range(out.shape[0]):
        panel = out[p]
        for w in range(width):
            i = p * width + w
            if i < n:
                src = x[b, i0 + i, h]
                for c in range(d):
                    panel[c, w] = src[c] * scale
            else:
                for c in range(d):
                    panel[c, w] = 0


@numba.njit(cache=True)
def _pack_rows(x, b, h, n, nrows, out):
    """Rows 0 .. n of x[b, :, h, :] as panels of W = out.shape[2] features, row-major:
    out[p, i, w] = x[b, i, h, p*W + w], zero past row n (up to nrows) and past the last
    feature: the A operand (W = MR) of a product over the row axis."""
    d = x.shape[3]
    width = out.shape[2]
    for p in range((d + width - 1) // width):
        c0 = p * width
        nc = min(width, d - c0)
        panel = out[p]
        for i in range(nrows):
            row = panel[i]
            if i < n:
                src = x[b, i, h]
                for w in range(nc):
                    row[w] = src[c0 + w]
                for w in range(nc, width):
                    row[w] = 0
            else:
                for w in range(width):
                    row[w] = 0


@numba.njit(cache=True, inline="always")
def _product(tile, ap, bp, kc, cp):
    """cp[:MR, :NR] = ap[:kc].T @ bp[:kc] on the tile's micro-kernel (which adds onto cp,
    so cp is zeroed first)."""
    for r in range(tile.mr):
        row = cp[r]
        for c in range(tile.nr):
            row[c] = 0
    tile.micro(ap, 0, bp, 0, kc, cp, 0)


@numba.njit(cache=True)
def _write_t(t, nrows, c0, ncols, factor, x, b, h, r0):
    """x[b, r0 + col, h, c0 + r] = t[r, col] * factor[col] for col < ncols, r < nrows:
    an MR x 16 tile of a transposed product written back in x's layout."""
    for col in range(ncols):
        f = factor[col]
        for r in range(nrows):
            x[b, r0 + col, h, c0 + r] = t[r, col] * f


@numba.njit(cache=True, inline="always")
def _geometry(tile, q, k, v, scale):
    """What both passes start from: (Tq, heads, D, Tk, Dv, the tile's MR, and in q's dtype
    scale * log2(e) and -inf)."""
    dt = q.dtype
    return (q.shape[1], q.shape[2], q.shape[3], k.shape[1], v.shape[3], tile.mr, dt.type(scale * LOG2E),
            dt.type(-np.inf))


@numba.njit(cache=True)
def _forward_items(tile, q, k, v, out, lse, causal, scale, lo, hi, qsplit, fast):
    """Forward items lo .. hi (an item: a (batch, head) pair's part of the queries), serially."""
    tq, nh, d, tk, dv, mrw, c2, ninf = _geometry(tile, q, k, v, scale)
    dt = q.dtype
    ln2 = dt.type(LN2)
    nqp = (tq + NR - 1) // NR                # 16-query strips
    tkp = ((tk + mrw - 1) // mrw) * mrw         # keys, padded to the 8-key panels
    ndvp = (dv + mrw - 1) // mrw
    ka = np.empty((tkp // mrw, d, mrw), dt)
    va = np.empty((ndvp, tkp, mrw), dt)
    qb = np.empty((1, d, NR), dt)
    strip = np.empty((tkp, NR), dt)
    bits = np.empty((tkp, NR), np.int32)
    scratch = np.empty((mrw, NR), dt)
    mx = np.empty(NR, dt)
    total = np.empty(NR, dt)
    inv = np.empty(NR, dt)
    for item in range(lo, hi):
        bh = item // qsplit
        part = item - bh * qsplit
        b = bh // nh
        h = bh - b * nh
        s_lo = part * nqp // qsplit
        s_hi = (part + 1) * nqp // qsplit
        if s_lo == s_hi:
            continue
        # Keys some query of this item may see: a causal item stops at its last query.
        nk = min(tk, s_hi * NR) if causal else tk
        nkp = (nk + mrw - 1) // mrw * mrw
        _pack_cols(k, b, h, 0, nk, dt.type(1), ka)
        _pack_rows(v, b, h, nk, nkp, va)
        for sp in range(s_lo, s_hi):
            q0 = sp * NR
            nq = min(NR, tq - q0)
            kc = ((min(tk, q0 + NR) if causal else tk) + mrw - 1) // mrw * mrw
            _pack_cols(q, b, h, q0, nq, c2, qb)
            for kp in range(kc // mrw):
                _product(tile, ka[kp], qb[0], d, strip[kp * mrw:kp * mrw + mrw])
            # -inf where key j is hidden from query q0 + c: past Tk (panel padding), or
            # after the query under the causal mask.
            for j in range(min(q0 + 1, tk) if causal else tk, kc):
                row = strip[j]
                for c in range(NR):
                    if j >= tk or (causal and j > q0 + c):
                        row[c] = ninf
            max_lanes(strip, kc, mx)
            exp2_lanes(strip, kc, mx, total, bits, fast)
            for c in range(NR):
                inv[c] = dt.type(1) / total[c]
            for vp in range(ndvp):
                _product(tile, va[vp], strip, kc, scratch)
                _write_t(scratch, min(mrw, dv - vp * mrw), vp * mrw, nq, inv, out, b, h, q0)
            for c in range(nq):
                lse[b, h, q0 + c] = (mx[c] + math.log2(total[c])) * ln2


@numba.njit(cache=True, parallel=True)
def _forward(tile, q, k, v, out, lse, causal, scale, nchunks, qsplit, fast):
    # The prange body is one call: numba's parallel lowering then compiles a small
    # function, and the work is compiled once, as a plain function called apart (apart.py).
    nitems = q.shape[0] * q.shape[2] * qsplit
    items = address_apart(_forward_items, tile, q, k, v, out, lse, causal, scale, 0, 0, qsplit, fast)
    for chunk in prange(nchunks):
        call_apart(items, _forward_items, tile, q, k, v, out, lse, causal, scale, chunk * nitems // nchunks,
                   (chunk + 1) * nitems // nchunks, qsplit, fast)


def _threads():
    # Read here: numba.get_num_threads() inside @njit defeats cache=True.
    return numba.get_num_threads()


def attention_forward(q, k, v, out, lse, causal, scale):
    nb, tq, nh, _ = q.shape
    threads = _threads()
    # Split each (batch, head) over query ranges only when there are too few pairs to go round.
    qsplit = max(1, min(-(-tq // NR), -(-2 * threads // (nb * nh))))
    nitems = nb * nh * qsplit
    _dynamic(_forward, tuning.strip_tile(NR), q, k, v, out, lse, causal, scale,
             min(nitems, CHUNKS_PER_THREAD * threads), qsplit, q.dtype == np.float32)


@numba.njit(cache=True)
def _backward_items(tile, q, k, v, out, dout, lse, dq, dk, dv, causal, scale, lo, hi, fast):
    """Backward items lo .. hi (an item: a (batch, head) pair), serially."""
    tq, nh, d, tk, ndv, mrw, c2, ninf = _geometry(tile, q, k, v, scale)
    dt = q.dtype
    log2e = dt.type(LOG2E)
    one = dt.type(1)
    tqp = ((tq + NR - 1) // NR) * NR        # queries, padded to the 16-query dq panels
    tkp = ((tk + NR - 1) // NR) * NR
    ndp = (d + mrw - 1) // mrw
    ndvp = (ndv + mrw - 1) // mrw
    qa = np.empty((tqp // mrw, d, mrw), dt)       # S = q k^T: A
    doa = np.empty((tqp // mrw, ndv, mrw), dt)    # dP = dout v^T: A
    dot = np.empty((ndvp, tqp, mrw), dt)         # dv^T = dout^T P: A
    qt = np.empty((ndp, tqp, mrw), dt)           # dk^T = q^T dS: A
    kt = np.empty((ndp, tkp, mrw), dt)           # dq^T = k^T dS^T: A
    kb = np.empty((1, d, NR), dt)               # S: B (16 keys)
    vb = np.empty((1, ndv, NR), dt)             # dP: B (16 keys)
    strip = np.empty((tqp, NR), dt)             # S, then P (queries x 16 keys)
    dstrip = np.empty((tqp, NR), dt)            # dP, then dS
    bits = np.empty((tqp, NR), np.int32)
    dst = np.empty((tqp // NR, KB, NR), dt)     # dS^T per 16-query panel: dq's B
    dqt = np.empty((tqp // NR, ndp * mrw, NR), dt)
    lse2 = np.empty(tqp, dt)
    delta = np.empty(tqp, dt)
    scratch = np.empty((mrw, NR), dt)
    ones = np.ones(NR, dt)
    scales = np.full(NR, scale, dt)
    for item in range(lo, hi):
        b = item // nh
        h = item - b * nh
        _pack_cols(q, b, h, 0, tq, c2, qa)
        _pack_cols(dout, b, h, 0, tq, one, doa)
        _pack_rows(dout, b, h, tq, tqp, dot)
        _pack_rows(q, b, h, tq, tqp, qt)
        _pack_rows(k, b, h, tk, tkp, kt)
        for i in range(tqp):
            if i < tq:
                lse2[i] = lse[b, h, i] * log2e
                o = out[b, i, h]
                g = dout[b, i, h]
                acc = dt.type(0)
                for c in range(ndv):
                    acc += g[c] * o[c]
                delta[i] = acc
            else:
                lse2[i] = np.inf  # padding queries: P = 2**-inf = 0
                delta[i] = 0
        dqt[:] = 0
        for k0 in range(0, tk, KB):
            nkb = min(KB, tk - k0)
            for kp in range((nkb + NR - 1) // NR):
                j0 = k0 + kp * NR
                nk = min(NR, tk - j0)
                # Queries that may see a key of this panel: all, or j0 on under the mask
                # (j0 is a multiple of NR, so rows start at a 16-query dq panel).
                i0 = min(j0, tqp) if causal else 0
                nrows = tqp - i0
                if nrows == 0:
                    # Keys after the last query (causal, Tk > Tq): seen by none.
                    for c in range(nk):
                        dk[b, j0 + c, h, :] = 0
                        dv[b, j0 + c, h, :] = 0
                else:
                    _pack_cols(k, b, h, j0, nk, one, kb)
                    _pack_cols(v, b, h, j0, nk, one, vb)
                    for qp in range(i0 // mrw, tqp // mrw):
                        _product(tile, qa[qp], kb[0], d, strip[qp * mrw:qp * mrw + mrw])
                        _product(tile, doa[qp], vb[0], ndv, dstrip[qp * mrw:qp * mrw + mrw])
                    if nk < NR or causal:
                        # -inf where key j0 + c is hidden from query i: past Tk (panel
                        # padding), or after the query under the causal mask.
                        for i in range(i0, tqp if nk < NR else min(tqp, j0 + NR)):
                            row = strip[i]
                            for c in range(NR):
                                if c >= nk or (causal and j0 + c > i):
                                    row[c] = ninf
                    exp2_rows(strip[i0:], nrows, lse2[i0:], bits, fast)
                    ds_rows(strip[i0:], dstrip[i0:], nrows, delta[i0:])
                    for vp in range(ndvp):
                        _product(tile, dot[vp][i0:], strip[i0:], nrows, scratch)
                        _write_t(scratch, min(mrw, ndv - vp * mrw), vp * mrw, nk, ones, dv, b, h, j0)
                    for dp in range(ndp):
                        _product(tile, qt[dp][i0:], dstrip[i0:], nrows, scratch)
                        _write_t(scratch, min(mrw, d - dp * mrw), dp * mrw, nk, scales, dk, b, h, j0)
                # dS^T, query-panel-major, for dq (the rows the mask skipped are never read:
                # under the mask a 16-query panel's dq stops at its last query's keys).
                kk = kp * NR
                for sp in range(i0 // NR, tqp // NR):
                    for c in range(NR):
                        for r in range(NR):
                            dst[sp, kk + c, r] = dstrip[sp * NR + r, c]
            kc_all = (nkb + NR - 1) // NR * NR
            for sp in range((k0 // NR) if causal else 0, tqp // NR):
                kc = min(kc_all, sp * NR + NR - k0) if causal else kc_all
                for dp in range(ndp):
                    _product(tile, kt[dp][k0:k0 + kc], dst[sp], kc, scratch)
                    acc = dqt[sp][dp * mrw:dp * mrw + mrw]
                    for r in range(mrw):
                        for c in range(NR):
                            acc[r, c] += scratch[r, c]
        for sp in range(tqp // NR):
            for dp in range(ndp):
                _write_t(dqt[sp][dp * mrw:dp * mrw + mrw], min(mrw, d - dp * mrw), dp * mrw,
                         min(NR, tq - sp * NR), scales, dq, b, h, sp * NR)


@numba.njit(cache=True, parallel=True)
def _backward(tile, q, k, v, out, dout, lse, dq, dk, dv, causal, scale, nchunks, fast):
    nitems = q.shape[0] * q.shape[2]
    items = address_apart(_backward_items, tile, q, k, v, out, dout, lse, dq, dk, dv, causal, scale, 0, 0, fast)
    for chunk in prange(nchunks):
        call_apart(items, _backward_items, tile, q, k, v, out, dout, lse, dq, dk, dv, causal, scale,
                   chunk * nitems // nchunks, (chunk + 1) * nitems // nchunks, fast)


def attention_backward(q, k, v, out, dout, lse, dq, dk, dv, causal, scale):
    nitems = q.shape[0] * q.shape[2]
    _dynamic(_backward, tuning.strip_tile(NR), q, k, v, out, dout, lse, dq, dk, dv, causal, scale,
             min(nitems, CHUNKS_PER_THREAD * _threads()), q.dtype == np.float32)
