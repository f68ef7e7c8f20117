"""Recurrent layers on the GPU: SimpleRNN, LSTM and GRU cells, forward and backward through time.

The same functions, arguments and equations as kernels/cpu/rnn.py (read its docstring for
the cells, the mask rule and the workspace layout); the backend does the GEMMs over all
steps with kernels/gpu/gemm.py. The recurrence is one launch per step: steps depend on
each other, and a grid-wide barrier inside one persistent kernel would need cooperative
launches (and a grid small enough to be co-resident). A thread per (batch row, unit)
computes its unit's G recurrent dot products over the previous state, then the cell's
equations in registers, and writes the new state for the next launch (double-buffered).
Consecutive threads are consecutive units, so the loads of U[k, g*H + j] are coalesced and
h_{t-1}[b, k] is one broadcast per warp.

Backward, a thread per (row, unit) forms its unit of dh_s = dz_{s+1} U^T (G * H products
in a fixed order, read from a transposed copy of U so that the loads are coalesced), then
step s's gate gradients. Every output has one writer and a fixed summation order: the
same bits on every run. The recurrent kernel's gradient is one GEMM afterwards
(h_{t-1}^T dz over every step), as on the cpu.

Arithmetic stays in the data's dtype: the constants are typed (one = dtype(1)), since an
int literal with a float32 promotes to float64, which runs at a fraction of the rate.
"""
import numpy as np
from numba import cuda

from numbanet.kernels.gpu import rules as R
from numbanet.kernels.gpu.launch import inlined, rows_1d, scratch, thread_cell, unravel2
from numbanet.kernels.rules import GATES, GRU, LSTM, WORKSPACE


_none = {}


def _absent(ndim, dtype):
    """A (1,)*ndim device array standing in for an absent optional argument: the kernel is
    compiled for the array type it would have, and a flag says it is not there."""
    key = (ndim, np.dtype(dtype).str)
    if key not in _none:
        _none[key] = cuda.device_array((1,) * ndim, dtype=dtype)
    return _none[key]


def _opt(arr, ndim, dtype):
    return (_absent(ndim, dtype), False) if arr is None else (arr, True)


# --------------------------------------------------------------------------- forward

@inlined
def _init_state(h0, c0, is_lstm, h, c, cleared):
    """h = h0, c = c0 (an LSTM) or 0, cleared = 0: a thread per (row, unit); the start of
    both passes (forward: the state and the last output; backward: dh, dc and the carry)."""
    # The bound before the split, not thread_cell (which splits first): ptxas gives this
    # kernel two registers fewer (numbanet info --gpu-kernels).
    i = cuda.grid(1)
    if i < h0.size:
        b, j = unravel2(i, h0.shape[1])
        zero = h.dtype.type(0)
        h[b, j] = h0[b, j]
        c[b, j] = c0[b, j] if is_lstm else zero
        cleared[b, j] = zero


@cuda.jit
def _forward_init(h0, c0, is_lstm, hs, cs, last):
    _init_state(h0, c0, is_lstm, hs[0], cs, last)


@inlined
def _step_unit(state, data):
    """A step kernel's thread: (b, j, H, one, inside) for its (row, unit) of the (B, H)
    array state, the constant 1 typed as data (module docstring: an int literal would
    promote float32 arithmetic to float64) and whether the thread has a unit at all."""
    b, j, inside = thread_cell(state)
    return b, j, state.shape[1], data.dtype.type(1), inside


@cuda.jit
def _forward_step(cell, s, t, y_t, xproj, u, rbias, has_rbias, keep, has_keep, rmask, has_rmask, zero_output,
                  act, ract, y, has_y, last, hs, cs, ws):
    b, j, h, one, inside = _step_unit(last, xproj)
    if not inside:
        return
    zero = one - one
    cur = s % 2
    g_count = GATES[cell]
    # This unit's recurrent products, one per gate: h_{t-1} (times the dropout mask) @ U[:, g*H + j].
    z0 = zero
    z1 = zero
    z2 = zero
    z3 = zero
    for k in range(h):
        hk = hs[cur, b, k]
        if has_rmask:
            hk *= rmask[b, k]
        z0 += hk * u[k, j]
        if g_count > 1:
            z1 += hk * u[k, h + j]
            z2 += hk * u[k, 2 * h + j]
        if g_count > 3:
            z3 += hk * u[k, 3 * h + j]
    on = (not has_keep) or keep[b, t] != 0
    hprev = hs[cur, b, j]
    if cell == LSTM:
        gi = R.activate(ract, xproj[b, t, j] + z0, one)
        gf = R.activate(ract, xproj[b, t, h + j] + z1, one)
        gg = R.activate(act, xproj[b, t, 2 * h + j] + z2, one)
        go = R.activate(ract, xproj[b, t, 3 * h + j] + z3, one)
        cv = R.lstm_cell(gi, gf, gg, cs[b, j])
        hn = go * R.activate(act, cv, one)
        if on:
            cs[b, j] = cv
        ws[b, s, j] = gi
        ws[b, s, h + j] = gf
        ws[b, s, 2 * h + j] = gg
        ws[b, s, 3 * h + j] = go
        ws[b, s, 4 * h + j] = cs[b, j]
    elif cell == GRU:
        if has_rbias:
            z0 += rbias[j]
            z1 += rbias[h + j]
            z2 += rbias[2 * h + j]
        gz = R.activate(ract, xproj[b, t, j] + z0, one)
        gr = R.activate(ract, xproj[b, t, h + j] + z1, one)
        gh = R.activate(act, R.gru_candidate(xproj[b, t, 2 * h + j], gr, z2), one)
        hn = R.gru_state(gz, hprev, gh, one)
        ws[b, s, j] = gz
        ws[b, s, h + j] = gr
        ws[b, s, 2 * h + j] = gh
        ws[b, s, 3 * h + j] = z2          # rh = h_prev U_h + rb_h
    else:
        hn = R.activate(act, xproj[b, t, j] + z0, one)
    # A masked row keeps h_prev as its state; its output is the previous output (or 0).
    state = hn if on else hprev
    hs[1 - cur, b, j] = state
    ws[b, s, (WORKSPACE[cell] - 1) * h + j] = state
    if on:
        last[b, j] = hn
    elif zero_output:
        last[b, j] = zero
    if has_y:
        y[b, y_t, j] = last[b, j]


@cuda.jit
def _forward_final(hs, fin, cs, is_lstm, h_out, c_out):
    b, j, inside = thread_cell(h_out)
    if inside:
        h_out[b, j] = hs[fin, b, j]
        if is_lstm:
            c_out[b, j] = cs[b, j]


def rnn_forward(cell, xproj, u, rbias, h0, c0, keep, rmask, reverse, zero_output, act, ract, y, last, h_out,
                c_out, ws, in_order):
    """See kernels/cpu/rnn.py: rnn_forward (the same arguments and outputs)."""
    b_count, t_count, _ = xproj.shape
    h = u.shape[0]
    dt = xproj.dtype
    is_lstm = cell == LSTM
    # The state between launches, from launch.scratch: a training step allocates nothing.
    hs = scratch("rnn_h", (2, b_count, h), dt)
    cs = scratch("rnn_c", (b_count, h), dt)
    blocks, threads = rows_1d(b_count * h)
    _forward_init[blocks, threads](h0, c0 if is_lstm else h0, is_lstm, hs, cs, last)
    rbias, has_rbias = _opt(rbias, 1, dt)
    keep, has_keep = _opt(keep, 2, np.uint8)
    rmask, has_rmask = _opt(rmask, 2, dt)
    y, has_y = _opt(y, 3, dt)
    for s in range(t_count):
        t = t_count - 1 - s if reverse else s
        _forward_step[blocks, threads](cell, s, t, t if in_order else s, xproj, u, rbias, has_rbias, keep,
                                       has_keep, rmask, has_rmask, zero_output, act, ract, y, has_y, last, hs,
                                       cs, ws)
    _forward_final[blocks, threads](hs, t_count % 2, cs, is_lstm, h_out, c_out if is_lstm else h_out)


# --------------------------------------------------------------------------- backward

@cuda.jit
def _transpose(a, at):
    """at = a^T, a thread per element (once per call: U^T for the backward product)."""
    r, c, inside = thread_cell(a)
    if inside:
        at[c, r] = a[r, c]


@cuda.jit
def _backward_init(dh_last, dc_last, is_lstm, direct, dcs, carry):
    _init_state(dh_last, dc_last, is_lstm, direct, dcs, carry)


@cuda.jit
def _backward_step(cell, s, t, t_next, dy_t, ut, h0, c0, keep, has_keep, rmask, has_rmask, zero_output, act,
                   ract, ws, dy, seq, dzx, dzr, hprev, direct, dcs, carry, dh0, dc0):
    """Phase s: dh_s = direct + (dz_{s+1} @ U^T) * rmask, then step s's gradients (s >= 0),
    or dh0 and dc0 (s = -1)."""
    b, j, h, one, inside = _step_unit(direct, ws)
    if not inside:
        return
    zero = one - one
    t_count = ws.shape[1]
    g_count = GATES[cell]
    gh = g_count * h
    dh = direct[b, j]
    if s < t_count - 1:
        # dz_{s+1} @ U^T for unit j, over every gate column in a fixed order.
        acc = zero
        for k in range(gh):
            acc += dzr[b, t_next, k] * ut[k, j]
        if has_rmask:
            acc *= rmask[b, j]
        dh += acc
    if s < 0:
        dh0[b, j] = dh
        if cell == LSTM:
            dc0[b, j] = dcs[b, j]
        return
    on = (not has_keep) or keep[b, t] != 0
    dout = carry[b, j]
    if seq:
        dout += dy[b, dy_t, j]
    elif s == t_count - 1:
        dout += dy[b, 0, j]
    hcol = (WORKSPACE[cell] - 1) * h
    hp = ws[b, s - 1, hcol + j] if s > 0 else h0[b, j]
    hprev[b, t, j] = hp * rmask[b, j] if has_rmask else hp
    if not on:
        # The state passed through unchanged; the output is the previous one (or 0).
        carry[b, j] = zero if (zero_output or s == 0) else dout
        direct[b, j] = dh
        for g in range(g_count):
            dzx[b, t, g * h + j] = zero
            dzr[b, t, g * h + j] = zero
        return
    carry[b, j] = zero
    dh += dout
    if cell == LSTM:
        gi = ws[b, s, j]
        gf = ws[b, s, h + j]
        gg = ws[b, s, 2 * h + j]
        go = ws[b, s, 3 * h + j]
        cprev = ws[b, s - 1, 4 * h + j] if s > 0 else c0[b, j]
        tc = R.activate(act, ws[b, s, 4 * h + j], one)
        di, df, dg, do, dcs[b, j] = R.lstm_cell_grads(
            dh, dcs[b, j], gi, gf, gg, go, tc, cprev, R.derivative(act, tc, one), R.derivative(ract, gi, one),
            R.derivative(ract, gf, one), R.derivative(act, gg, one), R.derivative(ract, go, one))
        dzx[b, t, j] = di
        dzx[b, t, h + j] = df
        dzx[b, t, 2 * h + j] = dg
        dzx[b, t, 3 * h + j] = do
        direct[b, j] = zero
    elif cell == GRU:
        gz = ws[b, s, j]
        gr = ws[b, s, h + j]
        ghh = ws[b, s, 2 * h + j]
        rh = ws[b, s, 3 * h + j]
        dzz, dr, dpre, direct[b, j], dzr[b, t, 2 * h + j] = R.gru_cell_grads(
            dh, hp, gz, gr, ghh, rh, R.derivative(ract, gz, one), R.derivative(ract, gr, one),
            R.derivative(act, ghh, one), one)
        dzx[b, t, j] = dzz
        dzx[b, t, h + j] = dr
        dzx[b, t, 2 * h + j] = dpre
        dzr[b, t, j] = dzz
        dzr[b, t, h + j] = dr
    else:
        dzx[b, t, j] = dh * R.derivative(act, ws[b, s, j], one)
        direct[b, j] = zero


def rnn_backward(cell, u, h0, c0, keep, rmask, reverse, zero_output, act, ract, ws, dy, dh_last, dc_last,
                 dzx, dzr, hprev, dh0, dc0, in_order):
    """See kernels/cpu/rnn.py: rnn_backward (the same arguments and outputs)."""
    b_count, t_count, _ = ws.shape
    h, gh = u.shape
    dt = ws.dtype
    is_lstm = cell == LSTM
    ut = scratch("rnn_ut", (gh, h), dt)
    _transpose[rows_1d(u.size)](u, ut)
    direct = scratch("rnn_direct", (b_count, h), dt)
    dcs = scratch("rnn_dc", (b_count, h), dt)
    carry = scratch("rnn_carry", (b_count, h), dt)
    blocks, threads = rows_1d(b_count * h)
    _backward_init[blocks, threads](dh_last, dc_last if is_lstm else dh_last, is_lstm, direct, dcs, carry)
    keep, has_keep = _opt(keep, 2, np.uint8)
    rmask, has_rmask = _opt(rmask, 2, dt)
    c0 = c0 if is_lstm else h0
    dc0 = dc0 if is_lstm else dh0
    seq = dy.shape[1] == t_count

    def step_t(s):
        return t_count - 1 - s if reverse else s

    for s in range(t_count - 1, -2, -1):
        t = step_t(s) if s >= 0 else 0
        t_next = step_t(s + 1) if s < t_count - 1 else 0
        dy_t = (t if in_order else s) if s >= 0 else 0
        _backward_step[blocks, threads](cell, s, t, t_next, dy_t, ut, h0, c0, keep, has_keep, rmask, has_rmask,
                                        zero_output, act, ract, ws, dy, seq, dzx, dzr, hprev, direct, dcs, carry,
                                        dh0, dc0)


# --------------------------------------------------------------------------- helpers for the backend

@cuda.jit
def _keep_steps(mask, keep):
    b, t, inside = thread_cell(mask)
    if inside:
        keep[b, t] = 1 if mask[b, t] != 0 else 0


def keep_steps(mask, keep):
    """keep[b, t] = 1 where mask[b, t] is non-zero (True), else 0 (uint8)."""
    _keep_steps[rows_1d(mask.size)](mask, keep)


@cuda.jit
def _scale_features(x, m, out):
    i = cuda.grid(1)
    b_count, t_count, f = x.shape
    if i < b_count * t_count * f:
        k = i % f
        b = i // (t_count * f)
        t = (i // f) - b * t_count
        out[b, t, k] = x[b, t, k] * m[b, k]


def scale_features(x, m, out):
    """out[b, t, i] = x[b, t, i] * m[b, i]: one dropout mask per sample, the same at every step."""
    _scale_features[rows_1d(x.size)](x, m, out)
