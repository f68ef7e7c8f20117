"""Recurrent layers on the CPU: SimpleRNN, LSTM and GRU cells, forward and backward through time.

The backend (Backend.rnn, Backend.rnn_backward in kernels/backend.py) does the parts that
are one GEMM over all time steps: the input projection x @ kernel (+ bias) before the
loop, and dx, dkernel, drecurrent_kernel after it. What is left is the recurrence, and
each of `rnn_forward` / `rnn_backward` below runs it as one call that loops over time
itself: the state never leaves the kernel between steps.

Per step, the product with the recurrent kernel runs on the GEMM micro-kernel
(kernels/cpu/_gemm_micro.py: an MR x NR tile from packed panels) and the gates are
combined right where the tile lands, in the same prange iteration:

    forward, work item = (MR batch rows, NR units): G tiles, one per gate,
        z_g = h_{t-1} @ U[:, g*H + j0 : g*H + j0 + NR]     A: h packed (H x MR)
                                                             B: U packed per gate (H x NR)
        then the cell's equations on the MR x NR lanes, writing h_t straight into the
        packed A panel of the next step (double-buffered: other items still read h_{t-1}).
    backward, work item = (MR batch rows, NR units):
        dh_{t-1}[rows, units] = dz_t @ U^T                  A: dz_t packed (G*H x MR)
                                                             B: U^T packed (G*H x NR)
        then step t-1's gradients on those lanes, writing dz_{t-1} into the next packed A.

So each step is one parallel region, and every element of every output has one writer
and a fixed summation order: the same bits on every run and thread count. The gradient
of the recurrent kernel is one GEMM over all steps afterwards (h_{t-1}^T dz_t summed over
t in a fixed order), not a sum of per-step products.

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
import math

import numba
import numpy as np
from numba import prange
from numba.core import types
from numba.extending import overload

from numbanet.kernels.cpu._gemm_micro import MR, NR, micro

SIMPLE, LSTM, GRU = 0, 1, 2
LINEAR, TANH, SIGMOID, RELU = 0, 1, 2, 3
GATES = (1, 4, 3)
WORKSPACE = (1, 6, 5)   # workspace columns per unit, by cell

# tanh on float32 as an odd rational function (Eigen's fast tanh: x P(x^2) / Q(x^2) on
# [-7.9053, 7.9053], clamped outside; max error 3.4e-7 against float64 tanh over [-12, 12]).
# libm's tanhf is a scalar call, and a step's gates need B * H * G of them: the rational
# form is plain arithmetic that LLVM vectorizes across a tile's lanes. sigmoid(x) =
# (1 + tanh(x / 2)) / 2. float64 (the gradient-check dtype) keeps math.tanh and math.exp.
_A = tuple(np.float32(c) for c in (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05,
                                   5.12229709037114e-08, -8.60467152213735e-11, 2.00018790482477e-13,
                                   -2.76076847742355e-16))
_B = tuple(np.float32(c) for c in (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04,
                                   1.19825839466702e-06))
_CLAMP = np.float32(7.90531110763549805)
_A0, _A1, _A2, _A3, _A4, _A5, _A6 = _A
_B0, _B1, _B2, _B3 = _B
_HALF32 = np.float32(0.5)


def tanh(x):
    """tanh; the float32 rational form above, math.tanh for float64."""
    return math.tanh(x)


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@overload(tanh, jit_options={"cache": True})
def _tanh_impl(x):
    if x == types.float32:
        def impl(x):
            x = max(min(x, _CLAMP), -_CLAMP)
            x2 = x * x
            p = ((((((_A6 * x2 + _A5) * x2 + _A4) * x2 + _A3) * x2 + _A2) * x2 + _A1) * x2 + _A0) * x
            q = ((_B3 * x2 + _B2) * x2 + _B1) * x2 + _B0
            return p / q
        return impl
    return lambda x: math.tanh(x)


@overload(sigmoid, jit_options={"cache": True})
def _sigmoid_impl(x):
    if x == types.float32:
        return lambda x: _HALF32 + _HALF32 * tanh(_HALF32 * x)

    def impl(x):
        # exp of a non-positive number only: no overflow for large |x|.
        if x >= 0:
            return 1.0 / (1.0 + math.exp(-x))
        e = math.exp(x)
        return e / (1.0 + e)
    return impl


@numba.njit(cache=True, inline="always")
def activate(code, z):
    if code == TANH:
        return tanh(z)
    if code == SIGMOID:
        return sigmoid(z)
    if code == RELU:
        return max(z, z - z)
    return z


@numba.njit(cache=True, inline="always")
def derivative(code, y, one):
    """d act / d z at the activation's output y (every supported activation allows it);
    one is 1 in y's type (a literal 1 would make float32 arithmetic float64)."""
    if code == TANH:
        return one - y * y
    if code == SIGMOID:
        return y * (one - y)
    if code == RELU:
        return one if y > 0 else one - one
    return one


# --------------------------------------------------------------------------- packing

@numba.njit(cache=True)
def _pack_recurrent(u, g_count, up):
    """up[jb, g, k, c] = U[k, g*H + jb*NR + c] (zero past the last unit): the B panels of the
    forward product, one per (unit block, gate)."""
    h = u.shape[0]
    for jb in range(up.shape[0]):
        for g in range(g_count):
            for k in range(h):
                for c in range(NR):
                    j = jb * NR + c
                    up[jb, g, k, c] = u[k, g * h + j] if j < h else 0


@numba.njit(cache=True)
def _pack_recurrent_t(u, upt):
    """upt[jb, k, c] = U[jb*NR + c, k] (zero past the last unit): U^T's B panels, for the
    backward product dz @ U^T over k = all G*H gate columns."""
    h, gh = u.shape
    for jb in range(upt.shape[0]):
        for k in range(gh):
            for c in range(NR):
                j = jb * NR + c
                upt[jb, k, c] = u[j, k] if j < h else 0


# --------------------------------------------------------------------------- forward

@numba.njit(cache=True, parallel=True, fastmath={"contract"})
def _forward(cell, xproj, u, rbias, h0, c0, keep, rmask, reverse, zero_output, act, ract,
             y, last, h_out, c_out, ws):
    b_count, t_count, _ = xproj.shape
    h = u.shape[0]
    g_count = GATES[cell]
    nib = (b_count + MR - 1) // MR
    njb = (h + NR - 1) // NR
    nitems = nib * njb
    dt = xproj.dtype
    one = dt.type(1)
    up = np.empty((njb, g_count, h, NR), dt)
    _pack_recurrent(u, g_count, up)
    hp = np.zeros((2, nib, h, MR), dt)          # h_{t-1} (times the recurrent dropout mask), packed
    hs = np.empty((2, b_count, h), dt)          # the state h itself
    cs = np.empty((b_count, h), dt)             # LSTM's c
    tiles = np.empty((nitems, g_count, MR, NR), dt)
    for b in range(b_count):
        for j in range(h):
            v = h0[b, j]
            hs[0, b, j] = v
            hp[0, b // MR, j, b % MR] = v * rmask[b, j] if rmask.shape[0] else v
            cs[b, j] = c0[b, j] if cell == LSTM else one - one
            last[b, j] = one - one
    seq = y.shape[0] > 0
    for s in range(t_count):
        cur = s % 2
        nxt = 1 - cur
        t = t_count - 1 - s if reverse else s
        for item in prange(nitems):
            # Unit-block-major: a thread's consecutive items reuse the same U panels.
            jb = item // nib
            ib = item - jb * nib
            tile = tiles[item]
            for g in range(g_count):
                micro(hp[cur, ib], up[jb, g], h, tile[g])
            j0 = jb * NR
            nj = min(NR, h - j0)
            for r in range(min(MR, b_count - ib * MR)):
                b = ib * MR + r
                on = keep.shape[0] == 0 or keep[b, t] != 0
                xp = xproj[b, t]
                w = ws[b, s]
                hprev = hs[cur, b]
                hnew = hs[nxt, b]
                for c in range(nj):
                    j = j0 + c
                    hv = hprev[j]
                    if cell == LSTM:
                        zi = activate(ract, xp[j] + tile[0, r, c])
                        zf = activate(ract, xp[h + j] + tile[1, r, c])
                        zg = activate(act, xp[2 * h + j] + tile[2, r, c])
                        zo = activate(ract, xp[3 * h + j] + tile[3, r, c])
                        cv = zf * cs[b, j] + zi * zg
                        hv_new = zo * activate(act, cv)
                        w[j] = zi
                        w[h + j] = zf
                        w[2 * h + j] = zg
                        w[3 * h + j] = zo
                        if on:
                            cs[b, j] = cv
                        w[4 * h + j] = cs[b, j]
                    elif cell == GRU:
                        rz = tile[0, r, c]
                        rr = tile[1, r, c]
                        rh = tile[2, r, c]
                        if rbias.shape[0]:
                            rz += rbias[j]
                            rr += rbias[h + j]
                            rh += rbias[2 * h + j]
                        zz = activate(ract, xp[j] + rz)
                        zr = activate(ract, xp[h + j] + rr)
                        hh = activate(act, xp[2 * h + j] + zr * rh)
                        hv_new = zz * hv + (one - zz) * hh
                        w[j] = zz
                        w[h + j] = zr
                        w[2 * h + j] = hh
                        w[3 * h + j] = rh
                    else:
                        hv_new = activate(act, xp[j] + tile[0, r, c])
                    if on:
                        hv = hv_new
                    hnew[j] = hv
                    w[(WORKSPACE[cell] - 1) * h + j] = hv
                    hp[nxt, ib, j, r] = hv * rmask[b, j] if rmask.shape[0] else hv
                    out = hv_new if on else (one - one if zero_output else last[b, j])
                    last[b, j] = out
                    if seq:
                        y[b, s, j] = out
    fin = t_count % 2
    for b in range(b_count):
        for j in range(h):
            h_out[b, j] = hs[fin, b, j]
            if cell == LSTM:
                c_out[b, j] = cs[b, j]


def _empty(arr, ndim, dtype):
    # None -> an empty array of the one type each kernel is compiled for (None would be a
    # second type, compiled again, for seconds, on first use).
    return np.empty((0,) * ndim, dtype) if arr is None else arr


def rnn_forward(cell, xproj, u, rbias, h0, c0, keep, rmask, reverse, zero_output, act, ract, y, last, h_out,
                c_out, ws):
    """The recurrence over xproj (B, T, G*H: x @ kernel + bias for every step, input order).
    y (B, T, H) receives every output, or is None when only `last` (B, H), the last output,
    is wanted. None also stands for the absent rbias (GRU's recurrent bias), c0/c_out (not
    an LSTM), keep (uint8 (B, T), no mask) and rmask (no recurrent dropout)."""
    dt = xproj.dtype
    _forward(cell, xproj, u, _empty(rbias, 1, dt), h0, _empty(c0, 2, dt), _empty(keep, 2, np.uint8),
             _empty(rmask, 2, dt), reverse, zero_output, act, ract, _empty(y, 3, dt), last, h_out,
             _empty(c_out, 2, dt), ws)


# --------------------------------------------------------------------------- backward

@numba.njit(cache=True, parallel=True, fastmath={"contract"})
def _backward(cell, u, h0, c0, keep, rmask, reverse, zero_output, act, ract, ws, dy, dh_last, dc_last,
              dzx, dzr, hprev, dh0, dc0):
    b_count, t_count, _ = ws.shape
    h = u.shape[0]
    g_count = GATES[cell]
    gh = g_count * h
    nib = (b_count + MR - 1) // MR
    njb = (h + NR - 1) // NR
    nitems = nib * njb
    dt = ws.dtype
    one = dt.type(1)
    upt = np.empty((njb, gh, NR), dt)
    _pack_recurrent_t(u, upt)
    dzp = np.zeros((2, nib, gh, MR), dt)     # dz_t (recurrent part), packed as the A operand
    direct = np.empty((b_count, h), dt)      # dh_{t-1} terms that skip the product (GRU's z dh; a masked step)
    dcs = np.empty((b_count, h), dt)         # LSTM: dc carried to the previous step
    carry = np.zeros((b_count, h), dt)       # d(output) carried back over masked steps
    tiles = np.empty((nitems, MR, NR), dt)
    hcol = (WORKSPACE[cell] - 1) * h
    for b in range(b_count):
        for j in range(h):
            direct[b, j] = dh_last[b, j]
            dcs[b, j] = dc_last[b, j] if cell == LSTM else one - one
    seq = dy.shape[1] == t_count
    # Phase s: dh_s = direct + (dz_{s+1} @ U^T) * rmask, then step s's gradients (s >= 0).
    for s in range(t_count - 1, -2, -1):
        cur = s % 2
        nxt = 1 - cur
        t = t_count - 1 - s if reverse else s
        for item in prange(nitems):
            jb = item // nib
            ib = item - jb * nib
            tile = tiles[item]
            if s < t_count - 1:
                micro(dzp[nxt, ib], upt[jb], gh, tile)
            j0 = jb * NR
            nj = min(NR, h - j0)
            for r in range(min(MR, b_count - ib * MR)):
                b = ib * MR + r
                for c in range(nj):
                    j = j0 + c
                    dh = direct[b, j]
                    if s < t_count - 1:
                        dh += tile[r, c] * rmask[b, j] if rmask.shape[0] else tile[r, c]
                    if s < 0:
                        dh0[b, j] = dh
                        if cell == LSTM:
                            dc0[b, j] = dcs[b, j]
                        continue
                    on = keep.shape[0] == 0 or keep[b, t] != 0
                    dout = carry[b, j]
                    if seq:
                        dout += dy[b, s, j]
                    elif s == t_count - 1:
                        dout += dy[b, 0, j]
                    w = ws[b, s]
                    hp_ = ws[b, s - 1, hcol + j] if s > 0 else h0[b, j]
                    hprev[b, t, j] = hp_ * rmask[b, j] if rmask.shape[0] else hp_
                    zx = dzx[b, t]
                    zr = dzr[b, t]
                    if not on:
                        # The state passed through unchanged; the output is the previous one (or 0).
                        carry[b, j] = one - one if (zero_output or s == 0) else dout
                        direct[b, j] = dh
                        for g in range(g_count):
                            zx[g * h + j] = 0
                            zr[g * h + j] = 0
                            dzp[cur, ib, g * h + j, r] = 0
                        continue
                    carry[b, j] = 0
                    dh += dout
                    if cell == LSTM:
                        zi = w[j]
                        zf = w[h + j]
                        zg = w[2 * h + j]
                        zo = w[3 * h + j]
                        cv = w[4 * h + j]
                        cprev = ws[b, s - 1, 4 * h + j] if s > 0 else c0[b, j]
                        tc = activate(act, cv)
                        dc = dcs[b, j] + dh * zo * derivative(act, tc, one)
                        di = dc * zg * derivative(ract, zi, one)
                        df = dc * cprev * derivative(ract, zf, one)
                        dg = dc * zi * derivative(act, zg, one)
                        do = dh * tc * derivative(ract, zo, one)
                        dcs[b, j] = dc * zf
                        direct[b, j] = 0
                        zx[j] = di
                        zx[h + j] = df
                        zx[2 * h + j] = dg
                        zx[3 * h + j] = do
                        dzp[cur, ib, j, r] = di
                        dzp[cur, ib, h + j, r] = df
                        dzp[cur, ib, 2 * h + j, r] = dg
                        dzp[cur, ib, 3 * h + j, r] = do
                    elif cell == GRU:
                        zz = w[j]
                        zr_ = w[h + j]
                        hh = w[2 * h + j]
                        rh = w[3 * h + j]
                        dzz = dh * (hp_ - hh) * derivative(ract, zz, one)
                        dpre = dh * (one - zz) * derivative(act, hh, one)
                        dr = dpre * rh * derivative(ract, zr_, one)
                        direct[b, j] = dh * zz
                        zx[j] = dzz
                        zx[h + j] = dr
                        zx[2 * h + j] = dpre
                        zr[j] = dzz
                        zr[h + j] = dr
                        zr[2 * h + j] = dpre * zr_
                        dzp[cur, ib, j, r] = dzz
                        dzp[cur, ib, h + j, r] = dr
                        dzp[cur, ib, 2 * h + j, r] = dpre * zr_
                    else:
                        dz = dh * derivative(act, w[j], one)
                        direct[b, j] = 0
                        zx[j] = dz
                        dzp[cur, ib, j, r] = dz


def rnn_backward(cell, u, h0, c0, keep, rmask, reverse, zero_output, act, ract, ws, dy, dh_last, dc_last,
                 dzx, dzr, hprev, dh0, dc0):
    """Backward through time. dy: (B, T, H) gradients of every output (processing order,
    as rnn_forward wrote y), or (B, 1, H) of the last output only; dh_last/dc_last: gradients
    of the final states. Writes, indexed by input step: dzx (B, T, G*H: the gradients of the
    gate pre-activations on the input side; zero at masked steps), dzr (the recurrent side:
    GRU's candidate gate differs, r times it; for the other cells dzr is dzx and the caller
    passes the same array) and hprev (B, T, H: the GEMM input of each step, h_{t-1} times
    the recurrent dropout mask); then dh0 and dc0 (LSTM). None as in rnn_forward."""
    dt = ws.dtype
    _backward(cell, u, h0, _empty(c0, 2, dt), _empty(keep, 2, np.uint8), _empty(rmask, 2, dt), reverse,
              zero_output, act, ract, ws, dy, dh_last, _empty(dc_last, 2, dt), dzx, dzr, hprev, dh0,
              _empty(dc0, 2, dt))


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
