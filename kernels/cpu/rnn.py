"""Recurrent layers on the CPU: SimpleRNN, LSTM and GRU cells, forward and backward through time.

The backend (Backend.rnn, Backend.rnn_backward in kernels/backend.py) does the parts that
are one GEMM over all time steps: the input projection x @ kernel (+ bias) before the
loop, and dx, dkernel, drecurrent_kernel after it. What is left is the recurrence, and
each of `rnn_forward` / `rnn_backward` below runs it as one call that loops over time
itself: the state never leaves the kernel between steps.

The batch rows never depend on each other, so each thread takes a run of MR-row panels
of the batch (_chunks: one run per thread) and carries them through every step: one
parallel region for the whole sequence, no barrier between steps. Per step, the product
with the recurrent kernel runs on a GEMM micro-kernel of few rows (kernels/cpu/tuning
.short_tile: an MR x NR tile from packed panels, MR and NR constants where the kernels are
compiled for it) and the gates are combined right where the tile lands:

    forward, per (MR batch rows, NR units) of the thread's run: G tiles, one per gate,
        z_g = h_{t-1} @ U[:, g*H + j0 : g*H + j0 + NR]     A: h packed (H x MR)
                                                             B: U packed per gate (H x NR)
        then the cell's equations on the MR x NR lanes, writing h_t straight into the
        packed A panel of the next step (double-buffered: the run's other unit blocks
        still read h_{t-1}).
    backward, per (MR batch rows, NR units) of the run:
        dh_{t-1}[rows, units] = dz_t @ U^T                  A: dz_t packed (G*H x MR)
                                                             B: U^T packed (G*H x NR)
        then step t-1's gradients on those lanes, writing dz_{t-1} into the next packed A.

Every element of every output has one writer and a fixed summation order: the same bits
on every run and thread count. The gradient of the recurrent kernel is one GEMM over all
steps afterwards (h_{t-1}^T dz_t summed over t in a fixed order), not a sum of per-step
products.

Keras's equations (gates in Keras's column order; act = activation, rec = recurrent_activation):
    SimpleRNN  h = act(x W + b + h U)
    LSTM       i, f, g, o = rec(.), rec(.), act(.), rec(.) of x W + b + h U  (i, f, c, o)
               c = f c_prev + i g;  h = o act(c)
    GRU        z, r = rec(x W_z + b_z + h U_z + rb_z), rec(x W_r + b_r + h U_r + rb_r)
               hh = act(x W_h + b_h + r (h U_h + rb_h))  (reset_after=True)
               h = z h_prev + (1 - z) hh

Time runs in processing order s (reversed when go_backwards); x, the mask and the
projection are read at t = T-1-s then, and the outputs and the workspace are written at
s (Keras's go_backwards returns the reversed sequence). A masked step (mask == 0) carries
the state unchanged, and its output is the previous output (0 before the first one), or 0
with zero_output_for_mask, as Keras's backend rnn does.

Workspace per (batch, step s), what backward needs (W columns):
    SimpleRNN  h                              (H)
    LSTM       i f g o (activated), c, h      (6H)
    GRU        z r hh (activated), rh, h      (5H)   rh = h_prev U_h + rb_h
"""
import numba
import numpy as np
from numba import prange

from numbanet.kernels.cpu import rules as R
from numbanet.kernels.cpu.apart import address_apart, call_apart
from numbanet.kernels.cpu import tuning
from numbanet.kernels.cpu.rows import copy_row, zero_row
from numbanet.kernels.rules import GATES, GRU, LSTM, RELU, SIGMOID, TANH, WORKSPACE


# --------------------------------------------------------------------------- packing

@numba.njit(cache=True)
def _pack_recurrent(u, g_count, up):
    """up[jb, g, k, c] = U[k, g*H + jb*NR + c] (zero past the last unit): the B panels of the
    forward product, one per (unit block, gate)."""
    h = u.shape[0]
    width = up.shape[3]
    for jb in range(up.shape[0]):
        for g in range(g_count):
            for k in range(h):
                for c in range(width):
                    j = jb * width + c
                    up[jb, g, k, c] = u[k, g * h + j] if j < h else 0


@numba.njit(cache=True)
def _pack_recurrent_t(u, upt):
    """upt[jb, k, c] = U[jb*NR + c, k] (zero past the last unit): U^T's B panels, for the
    backward product dz @ U^T over k = all G*H gate columns."""
    h, gh = u.shape
    width = upt.shape[2]
    for jb in range(upt.shape[0]):
        for k in range(gh):
            for c in range(width):
                j = jb * width + c
                upt[jb, k, c] = u[j, k] if j < h else 0


# --------------------------------------------------------------------------- lanes
# The gate arithmetic runs on NR-lane rows (one tile row: one batch row, NR units) in
# loops without branches inside; the choice of activation and the mask test are made once
# per row, outside them, so LLVM vectorizes each loop across the lanes.

@numba.njit(cache=True, inline="always")
def _zero(t):
    """An accumulator tile to zeros: the micro-kernel adds its product onto it."""
    for r in range(t.shape[0]):
        zero_row(t[r], t.shape[1])


@numba.njit(cache=True, inline="always")
def _add(dst, src, n):
    for c in range(n):
        dst[c] += src[c]


@numba.njit(cache=True, inline="always")
def _activate(code, v, n, one):
    """v[:n] = act(v[:n]) in place (tanh and sigmoid in their gate forms: kernels/cpu/rules.py)."""
    if code == TANH:
        for c in range(n):
            v[c] = R.gate_tanh(v[c])
    elif code == SIGMOID:
        for c in range(n):
            v[c] = R.gate_sigmoid(v[c])
    elif code == RELU:
        for c in range(n):
            v[c] = R.activate(RELU, v[c], one)


@numba.njit(cache=True, inline="always")
def _derive(code, y, out, n, one):
    """out[:n] = act'(z) from the activation's outputs y[:n]."""
    if code == TANH:
        for c in range(n):
            out[c] = R.derivative(TANH, y[c], one)
    elif code == SIGMOID:
        for c in range(n):
            out[c] = R.derivative(SIGMOID, y[c], one)
    elif code == RELU:
        for c in range(n):
            out[c] = R.derivative(RELU, y[c], one)
    else:
        for c in range(n):
            out[c] = one


@numba.njit(cache=True, inline="always")
def _blocks(tile, b_count, h):
    """(MR, NR, blocks of MR batch rows, blocks of NR units): the recurrent product's tiling."""
    mrw = tile.mr
    nrw = tile.nr
    return mrw, nrw, (b_count + mrw - 1) // mrw, (h + nrw - 1) // nrw


# --------------------------------------------------------------------------- forward

@numba.njit(cache=True, parallel=True, fastmath={"contract"})
def _forward(tile, cell, xproj, u, rbias, h0, c0, keep, rmask, reverse, zero_output, act, ract,
             y, last, h_out, c_out, ws, in_order, nchunks):
    b_count, t_count, _ = xproj.shape
    h = u.shape[0]
    g_count = GATES[cell]
    mrw, nrw, nib, njb = _blocks(tile, b_count, h)
    dt = xproj.dtype
    one = dt.type(1)
    zero = one - one
    up = np.empty((njb, g_count, h, nrw), dt)
    _pack_recurrent(u, g_count, up)
    hp = np.zeros((2, nib, h, mrw), dt)          # h_{t-1} (times the recurrent dropout mask), packed
    hs = np.empty((2, b_count, h), dt)          # the state h itself
    cs = np.zeros((b_count, h), dt)             # LSTM's c
    tiles = np.empty((nchunks, g_count, mrw, nrw), dt)
    lanes = np.empty((nchunks, 2, nrw), dt)
    for b in range(b_count):
        for j in range(h):
            v = h0[b, j]
            hs[0, b, j] = v
            hp[0, b // mrw, j, b % mrw] = v * rmask[b, j] if rmask.shape[0] else v
            if cell == LSTM:
                cs[b, j] = c0[b, j]
            last[b, j] = zero
    seq = y.shape[0] > 0
    rows = address_apart(_forward_rows, tile, cell, xproj, rbias, keep, rmask, reverse, zero_output, act, ract, y,
                         last, ws, in_order, h, up, hp, hs, cs, seq, 0, 0, tiles[0], lanes[0])
    for chunk in prange(nchunks):
        # A run of batch rows per thread, every step: rows never depend on each other, so the
        # threads need no barrier between steps (one parallel region for the whole sequence).
        # The body is a function of its own (here and in _backward; called apart, apart.py: its
        # code is compiled once, not again inside this kernel): the parallel passes
        # then see one call instead of its inlined cell code, which they would copy,
        # propagate and type again. Compiling the float32 LSTM kernels with an empty cache
        # (AMD EPYC): forward 35 -> 32 CPU-s, backward 32 -> 24, the same bits and speed.
        c = np.int64(chunk)   # typed uint64 in the parallel body: one type for the call
        call_apart(rows, _forward_rows, tile, cell, xproj, rbias, keep, rmask, reverse, zero_output, act, ract, y,
                   last, ws, in_order, h, up, hp, hs, cs, seq, c * nib // nchunks, (c + 1) * nib // nchunks, tiles[c],
                   lanes[c])
    fin = t_count % 2
    for b in range(b_count):
        for j in range(h):
            h_out[b, j] = hs[fin, b, j]
            if cell == LSTM:
                c_out[b, j] = cs[b, j]


# NumPy's error model, as Numba gives a parallel body: under Python's, the checks for a zero
# divisor made the forward 20% slower (41 -> 50 ms at B64 T100 F128 H256).
@numba.njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _forward_rows(tile, cell, xproj, rbias, keep, rmask, reverse, zero_output, act, ract, y, last, ws, in_order, h,
                  up, hp, hs, cs, seq, ib0, ib1, acc, ln):
    """Every step of the forward for the batch rows of MR-row panels ib0..ib1-1 (acc, ln: the
    run's scratch tile and lanes)."""
    b_count, t_count, _ = xproj.shape
    g_count = GATES[cell]
    hcol = (WORKSPACE[cell] - 1) * h
    mrw, nrw, nib, njb = _blocks(tile, b_count, h)
    one = xproj.dtype.type(1)
    zero = one - one
    hn = ln[0]
    tmp = ln[1]
    for s in range(t_count):
        cur = s % 2
        nxt = 1 - cur
        t = t_count - 1 - s if reverse else s
        # Unit blocks outer: the U panels of a block serve all of the run's rows.
        for jb in range(njb):
            for ib in range(ib0, ib1):
                for g in range(g_count):
                    _zero(acc[g])
                    tile.micro(hp[cur, ib], 0, up[jb, g], 0, h, acc[g], 0)
                j0 = jb * nrw
                nj = min(nrw, h - j0)
                for r in range(min(mrw, b_count - ib * mrw)):
                    b = ib * mrw + r
                    on = keep.shape[0] == 0 or keep[b, t] != 0
                    xp = xproj[b, t]
                    w = ws[b, s]
                    hprev = hs[cur, b, j0:j0 + nj]
                    if cell == LSTM:
                        # One call site per rule in a loop over the gates: each inlined
                        # call is a copy the kernel's compile pays for.
                        for g in range(4):
                            _add(acc[g, r], xp[g * h + j0:], nj)
                            _activate(act if g == 2 else ract, acc[g, r], nj, one)
                        gi, gf, gg, go = acc[0, r], acc[1, r], acc[2, r], acc[3, r]
                        cst = cs[b, j0:j0 + nj]
                        for c in range(nj):
                            tmp[c] = R.lstm_cell(gi[c], gf[c], gg[c], cst[c])
                        if on:
                            copy_row(cst, tmp, nj)
                        _activate(act, tmp, nj, one)
                        for c in range(nj):
                            hn[c] = go[c] * tmp[c]
                        for g in range(4):
                            copy_row(w[g * h + j0:], acc[g, r], nj)
                        copy_row(w[4 * h + j0:], cst, nj)
                    elif cell == GRU:
                        if rbias.shape[0]:
                            for g in range(3):
                                _add(acc[g, r], rbias[g * h + j0:], nj)
                        gz, gr, gh = acc[0, r], acc[1, r], acc[2, r]
                        copy_row(w[3 * h + j0:], gh, nj)          # rh = h_prev U_h + rb_h
                        for g in range(2):
                            _add(acc[g, r], xp[g * h + j0:], nj)
                            _activate(ract, acc[g, r], nj, one)
                        xh = xp[2 * h + j0:]
                        for c in range(nj):
                            gh[c] = R.gru_candidate(xh[c], gr[c], gh[c])
                        _activate(act, gh, nj, one)
                        for c in range(nj):
                            hn[c] = R.gru_state(gz[c], hprev[c], gh[c], one)
                        for g in range(3):
                            copy_row(w[g * h + j0:], acc[g, r], nj)
                    else:
                        g0 = acc[0, r]
                        _add(g0, xp[j0:], nj)
                        _activate(act, g0, nj, one)
                        copy_row(hn, g0, nj)
                    # hn: this step's h. A masked row keeps h_prev as its state.
                    hnew = hs[nxt, b, j0:j0 + nj]
                    copy_row(hnew, hn if on else hprev, nj)
                    copy_row(w[hcol + j0:], hnew, nj)
                    packed = hp[nxt, ib]
                    if rmask.shape[0]:
                        rm = rmask[b, j0:]
                        for c in range(nj):
                            packed[j0 + c, r] = hnew[c] * rm[c]
                    else:
                        for c in range(nj):
                            packed[j0 + c, r] = hnew[c]
                    lst = last[b, j0:j0 + nj]
                    if on:
                        copy_row(lst, hn, nj)
                    elif zero_output:
                        for c in range(nj):
                            lst[c] = zero
                    if seq:
                        copy_row(y[b, t if in_order else s, j0:], lst, nj)


def _chunks(batch):
    """Runs of MR-row panels, one per thread (numba.get_num_threads() inside @njit defeats
    cache=True, so it is read here)."""
    return max(1, min(numba.get_num_threads(), -(-batch // tuning.short_tile().mr)))


def _empty(arr, ndim, dtype):
    # None -> an empty array of the one type each kernel is compiled for (None would be a
    # second type, compiled again, for seconds, on first use).
    return np.empty((0,) * ndim, dtype) if arr is None else arr


def rnn_forward(cell, xproj, u, rbias, h0, c0, keep, rmask, reverse, zero_output, act, ract, y, last, h_out,
                c_out, ws, in_order):
    """The recurrence over xproj (B, T, G*H: x @ kernel + bias for every step, input order).
    y (B, T, H) receives every output, or is None when only `last` (B, H), the last output,
    is wanted; in_order writes y[:, t] at input step t even when reverse (else in processing
    order, Keras's go_backwards rule). None also stands for the absent rbias (GRU's recurrent bias), c0/c_out (not
    an LSTM), keep (uint8 (B, T), no mask) and rmask (no recurrent dropout)."""
    dt = xproj.dtype
    _forward(tuning.short_tile(), cell, xproj, u, _empty(rbias, 1, dt), h0, _empty(c0, 2, dt), _empty(keep, 2, np.uint8),
             _empty(rmask, 2, dt), reverse, zero_output, act, ract, _empty(y, 3, dt), last, h_out,
             _empty(c_out, 2, dt), ws, in_order, _chunks(xproj.shape[0]))


# --------------------------------------------------------------------------- backward

@numba.njit(cache=True, parallel=True, fastmath={"contract"})
def _backward(tile, cell, u, h0, c0, keep, rmask, reverse, zero_output, act, ract, ws, dy, dh_last, dc_last,
              dzx, dzr, hprev, dh0, dc0, in_order, nchunks):
    b_count, t_count, _ = ws.shape
    h = u.shape[0]
    g_count = GATES[cell]
    gh = g_count * h
    mrw, nrw, nib, njb = _blocks(tile, b_count, h)
    dt = ws.dtype
    upt = np.empty((njb, gh, nrw), dt)
    _pack_recurrent_t(u, upt)
    dzp = np.zeros((2, nib, gh, mrw), dt)     # dz_t (recurrent part), packed as the A operand
    direct = np.empty((b_count, h), dt)      # dh_{t-1} terms that skip the product (GRU's z dh; a masked step)
    dcs = np.zeros((b_count, h), dt)         # LSTM: dc carried to the previous step
    carry = np.zeros((b_count, h), dt)       # d(output) carried back over masked steps
    tiles = np.empty((nchunks, mrw, nrw), dt)
    lanes = np.empty((nchunks, 8, nrw), dt)
    for b in range(b_count):
        for j in range(h):
            direct[b, j] = dh_last[b, j]
            if cell == LSTM:
                dcs[b, j] = dc_last[b, j]
    seq = dy.shape[1] == t_count
    # Phase s: dh_s = direct + (dz_{s+1} @ U^T) * rmask, then step s's gradients (s >= 0).
    rows = address_apart(_backward_rows, tile, cell, u, h0, c0, keep, rmask, reverse, zero_output, act, ract, ws, dy,
                         dzx, dzr, hprev, dh0, dc0, in_order, upt, dzp, direct, dcs, carry, seq, 0, 0, tiles[0],
                         lanes[0])
    for chunk in prange(nchunks):
        c = np.int64(chunk)   # see _forward
        call_apart(rows, _backward_rows, tile, cell, u, h0, c0, keep, rmask, reverse, zero_output, act, ract, ws, dy,
                   dzx, dzr, hprev, dh0, dc0, in_order, upt, dzp, direct, dcs, carry, seq, c * nib // nchunks,
                   (c + 1) * nib // nchunks, tiles[c], lanes[c])


@numba.njit(cache=True, fastmath={"contract"}, error_model="numpy")   # see _forward_rows
def _backward_rows(tile, cell, u, h0, c0, keep, rmask, reverse, zero_output, act, ract, ws, dy, dzx, dzr, hprev,
                   dh0, dc0, in_order, upt, dzp, direct, dcs, carry, seq, ib0, ib1, acc, ln):
    """Every phase of the backward for the batch rows of MR-row panels ib0..ib1-1."""
    b_count, t_count, _ = ws.shape
    h = u.shape[0]
    g_count = GATES[cell]
    gh = g_count * h
    hcol = (WORKSPACE[cell] - 1) * h
    mrw, nrw, nib, njb = _blocks(tile, b_count, h)
    one = ws.dtype.type(1)
    zero = one - one
    dh, dout, d1, d2, d3, d4, tc, dc = ln[0], ln[1], ln[2], ln[3], ln[4], ln[5], ln[6], ln[7]
    for s in range(t_count - 1, -2, -1):
        cur = s % 2
        nxt = 1 - cur
        t = t_count - 1 - s if reverse else s
        for jb in range(njb):
            for ib in range(ib0, ib1):
                if s < t_count - 1:
                    _zero(acc)
                    tile.micro(dzp[nxt, ib], 0, upt[jb], 0, gh, acc, 0)
                j0 = jb * nrw
                nj = min(nrw, h - j0)
                for r in range(min(mrw, b_count - ib * mrw)):
                    b = ib * mrw + r
                    copy_row(dh, direct[b, j0:], nj)
                    if s < t_count - 1:
                        if rmask.shape[0]:
                            rm = rmask[b, j0:]
                            for c in range(nj):
                                dh[c] += acc[r, c] * rm[c]
                        else:
                            _add(dh, acc[r], nj)
                    if s < 0:
                        copy_row(dh0[b, j0:], dh, nj)
                        if cell == LSTM:
                            copy_row(dc0[b, j0:], dcs[b, j0:], nj)
                        continue
                    on = keep.shape[0] == 0 or keep[b, t] != 0
                    cr = carry[b, j0:j0 + nj]
                    copy_row(dout, cr, nj)
                    if seq:
                        _add(dout, dy[b, t if in_order else s, j0:], nj)
                    elif s == t_count - 1:
                        _add(dout, dy[b, 0, j0:], nj)
                    hp_ = ws[b, s - 1, hcol + j0:] if s > 0 else h0[b, j0:]
                    hpv = hprev[b, t, j0:]
                    if rmask.shape[0]:
                        rm = rmask[b, j0:]
                        for c in range(nj):
                            hpv[c] = hp_[c] * rm[c]
                    else:
                        copy_row(hpv, hp_, nj)
                    zx = dzx[b, t]
                    zr = dzr[b, t]
                    packed = dzp[cur, ib]
                    if not on:
                        # The state passed through unchanged; the output is the previous one (or 0).
                        if zero_output or s == 0:
                            for c in range(nj):
                                cr[c] = zero
                        else:
                            copy_row(cr, dout, nj)
                        copy_row(direct[b, j0:], dh, nj)
                        for g in range(g_count):
                            for c in range(nj):
                                zx[g * h + j0 + c] = zero
                                zr[g * h + j0 + c] = zero
                                packed[g * h + j0 + c, r] = zero
                        continue
                    for c in range(nj):
                        cr[c] = zero
                    _add(dh, dout, nj)
                    w = ws[b, s]
                    if cell == LSTM:
                        gi, gf, gg, go = w[j0:], w[h + j0:], w[2 * h + j0:], w[3 * h + j0:]
                        cprev = ws[b, s - 1, 4 * h + j0:] if s > 0 else c0[b, j0:]
                        copy_row(tc, w[4 * h + j0:], nj)
                        _activate(act, tc, nj, one)
                        _derive(act, tc, dc, nj, one)          # dc holds act'(c) here
                        for g in range(4):                     # d1..d4: the gates' act'
                            _derive(act if g == 2 else ract, w[g * h + j0:], ln[2 + g], nj, one)
                        dcst = dcs[b, j0:]
                        for c in range(nj):
                            di, df, dg, do, dcp = R.lstm_cell_grads(dh[c], dcst[c], gi[c], gf[c], gg[c], go[c],
                                                                    tc[c], cprev[c], dc[c], d1[c], d2[c], d3[c],
                                                                    d4[c])
                            dcst[c] = dcp
                            zx[j0 + c] = di
                            zx[h + j0 + c] = df
                            zx[2 * h + j0 + c] = dg
                            zx[3 * h + j0 + c] = do
                        for c in range(nj):
                            direct[b, j0 + c] = zero
                    elif cell == GRU:
                        gz, gr, ghh, rh = w[j0:], w[h + j0:], w[2 * h + j0:], w[3 * h + j0:]
                        for g in range(3):                     # d1, d2, d3: z', r', hh'
                            _derive(act if g == 2 else ract, w[g * h + j0:], ln[2 + g], nj, one)
                        dst = direct[b, j0:]
                        for c in range(nj):
                            dzz, dr, dpre, dst[c], zr[2 * h + j0 + c] = R.gru_cell_grads(
                                dh[c], hp_[c], gz[c], gr[c], ghh[c], rh[c], d1[c], d2[c], d3[c], one)
                            zx[j0 + c] = dzz
                            zx[h + j0 + c] = dr
                            zx[2 * h + j0 + c] = dpre
                            zr[j0 + c] = dzz
                            zr[h + j0 + c] = dr
                    else:
                        _derive(act, w[j0:], d1, nj, one)
                        for c in range(nj):
                            zx[j0 + c] = dh[c] * d1[c]
                            direct[b, j0 + c] = zero
                    for g in range(g_count):
                        for c in range(nj):
                            packed[g * h + j0 + c, r] = zr[g * h + j0 + c]


def rnn_backward(cell, u, h0, c0, keep, rmask, reverse, zero_output, act, ract, ws, dy, dh_last, dc_last,
                 dzx, dzr, hprev, dh0, dc0, in_order):
    """Backward through time. dy: (B, T, H) gradients of every output (in y's order: see
    in_order in rnn_forward), or (B, 1, H) of the last output only; dh_last/dc_last: gradients
    of the final states. Writes, indexed by input step: dzx (B, T, G*H: the gradients of the
    gate pre-activations on the input side; zero at masked steps), dzr (the recurrent side:
    GRU's candidate gate differs, r times it; for the other cells dzr is dzx and the caller
    passes the same array) and hprev (B, T, H: the GEMM input of each step, h_{t-1} times
    the recurrent dropout mask); then dh0 and dc0 (LSTM). None as in rnn_forward."""
    dt = ws.dtype
    _backward(tuning.short_tile(), cell, u, h0, _empty(c0, 2, dt), _empty(keep, 2, np.uint8), _empty(rmask, 2, dt), reverse,
              zero_output, act, ract, ws, dy, dh_last, _empty(dc_last, 2, dt), dzx, dzr, hprev, dh0,
              _empty(dc0, 2, dt), in_order, _chunks(ws.shape[0]))


# --------------------------------------------------------------------------- helpers for the backend

@numba.njit(cache=True, parallel=True)
def keep_steps(mask, keep):
    """keep[b, t] = 1 where mask[b, t] is non-zero (True), else 0: any integer or bool mask
    becomes the one uint8 type the recurrence kernels are compiled for."""
    for b in prange(mask.shape[0]):
        for t in range(mask.shape[1]):
            keep[b, t] = 1 if mask[b, t] != 0 else 0


@numba.njit(cache=True, parallel=True)
def scale_features(x, m, out):
    """out[b, t, i] = x[b, t, i] * m[b, i]: one dropout mask per sample, the same at every step."""
    for b in prange(x.shape[0]):
        for t in range(x.shape[1]):
            for i in range(x.shape[2]):
                out[b, t, i] = x[b, t, i] * m[b, i]
