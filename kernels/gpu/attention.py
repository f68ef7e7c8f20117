"""Scaled-dot-product attention on the gpu, forward and backward: tiled, flash-attention style,
deterministic (no atomics).

Layout: q (B, Tq, H, D), k (B, Tk, H, D), v (B, Tk, H, Dv), out (B, Tq, H, Dv), lse (B, H, Tq).

Every kernel runs blocks of 128 threads on a 32 x 32 tile of (rows x columns), four
threads per row, each owning the row's columns sub, sub + 4, ..., sub + 28 (sub =
thread % 4): the score tile lives in registers, 8 per thread. Operands are staged in
shared memory 32 rows x 32 features at a time (coalesced: consecutive threads load
consecutive features; rows padded to 33 words so the column reads hit distinct banks),
so any head dimension works with fixed, literal shared sizes. A row's max and sum are
folded over its four threads through shared memory in a fixed order.

forward: a block per 32 queries of one (batch, head), looping over key tiles with an
    online softmax: the running max m and sum l rescale the output accumulator, which
    stays in registers (8 per 32 output features per thread).
backward, two kernels, each gradient element written by one thread, summed in a fixed
    order (the probabilities recomputed from lse):
    dq: a block per 32 queries looping over key tiles (it also stores
        delta = rowsum(dout * out), which the second kernel reads);
    dk, dv: a block per 32 keys looping over the query tiles that can see them.
Under the causal mask a block skips the tiles its rows cannot see.

The kernels are specialized per dtype and per register budget (the number of 32-feature
chunks of the accumulators, rounded up to a power of two) and built on first use.
"""
import math

import numpy as np
from numba import cuda, float32, float64

from numbanet.kernels.gpu.launch import fixed_block, inlined, kernel_family, scratch

# A tile's rows and columns (and the feature chunk staged at once), 4 threads per tile row:
# the shared tiles of one block fit beside several others on an SM. Measure: numbanet
# bench --backends gpu --ops attention, and numbanet info --gpu-kernels for the occupancy.
TILE = 32
THREADS = 128
PER = 8        # columns per thread: TILE / 4
PAD = TILE + 1

_ACC = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}


@cuda.jit(device=True)
def _stage(src, b, r0, nrows, h, c0, ncols, buf, t):
    """buf[i, j] = src[b, r0 + i, h, c0 + j] for the 32 x 32 chunk, zero outside the array."""
    for e in range(t, TILE * TILE, THREADS):
        i = e // TILE
        j = e - i * TILE
        if r0 + i < nrows and c0 + j < ncols:
            buf[i, j] = src[b, r0 + i, h, c0 + j]
        else:
            buf[i, j] = 0


@cuda.jit(device=True, inline="always")
def _sizes(q, k, v):
    """(Tq, Tk, H, D, Dv) of the operands q (B, Tq, H, D), k (B, Tk, H, D), v (B, Tk, H, Dv).
    Inlined by numba, not by NVVM (launch.inlined): as a call, or inlined by NVVM, ptxas
    gives the float64 dkdv kernel 47 more registers (numbanet info --gpu-kernels)."""
    return q.shape[1], k.shape[1], q.shape[2], q.shape[3], v.shape[3]


@cuda.jit(device=True)
def _block_rows(nrows, nh):
    """(t, row, sub, b, h, r0): this thread, its tile row and first column (sub), and the
    (batch, head) and first row of the 32 rows its block owns, blocks numbered by
    (batch, head) and then by row tile of nrows."""
    t = cuda.threadIdx.x
    row = t // 4
    ntiles = (nrows + TILE - 1) // TILE
    bh = cuda.blockIdx.x // ntiles
    b = bh // nh
    return t, row, t - row * 4, b, bh - b * nh, (cuda.blockIdx.x - bh * ntiles) * TILE


@cuda.jit(device=True)
def _row_max(red, row, sub, v):
    """Max of v over the four threads of a tile row (in a fixed order)."""
    red[row, sub] = v
    cuda.syncthreads()
    m = red[row, 0]
    for w in range(1, 4):
        if red[row, w] > m:
            m = red[row, w]
    cuda.syncthreads()
    return m


@cuda.jit(device=True)
def _row_sum(red, row, sub, v):
    red[row, sub] = v
    cuda.syncthreads()
    s = red[row, 0] + red[row, 1] + red[row, 2] + red[row, 3]
    cuda.syncthreads()
    return s


@cuda.jit(device=True)
def _dot_tiles(x, y, b, h, rx0, nx, ry0, ny, ncols, bx, by, row, sub, t, acc):
    """acc[u] += x[b, rx0 + row, h, :] . y[b, ry0 + sub + 4u, h, :] over all ncols features,
    staged 32 at a time through bx (x's rows) and by (y's rows)."""
    for c0 in range(0, ncols, TILE):
        _stage(x, b, rx0, nx, h, c0, ncols, bx, t)
        _stage(y, b, ry0, ny, h, c0, ncols, by, t)
        cuda.syncthreads()
        for cc in range(TILE):
            xv = bx[row, cc]
            for u in range(PER):
                acc[u] += xv * by[sub + 4 * u, cc]
        cuda.syncthreads()


@inlined
def _grad_tile(xs, ys, xd, yd, lse, delta, b, h, r0, c0, key_rows, causal, scale, lse_r, delta_r, bx, by, row,
               sub, t, p_tile, ds_tile):
    """One 32 x 32 tile of the backward pass, rows r0.. by columns c0..: queries by keys
    (xs, ys, xd, yd = q, k, dout, v) or, when key_rows, keys by queries (k, q, v, dout).
    S = xs ys^T and dP = xd yd^T are recomputed, then P = exp(S * scale - lse) goes to
    p_tile (key_rows only) and dS = P * (dP - delta) to ds_tile, both exact zeros where the
    query cannot see the key. lse_r, delta_r: this thread's row's values when the rows are
    queries (read once per row by the caller)."""
    nr, nc = xs.shape[1], ys.shape[1]
    tq, tk = (nc, nr) if key_rows else (nr, nc)
    zero = xs.dtype.type(0)
    s = cuda.local.array(PER, xs.dtype)
    dp = cuda.local.array(PER, xs.dtype)
    for u in range(PER):
        s[u] = zero
        dp[u] = zero
    _dot_tiles(xs, ys, b, h, r0, nr, c0, nc, xs.shape[3], bx, by, row, sub, t, s)
    _dot_tiles(xd, yd, b, h, r0, nr, c0, nc, xd.shape[3], bx, by, row, sub, t, dp)
    for u in range(PER):
        c = c0 + sub + 4 * u
        qi = c if key_rows else r0 + row
        kj = r0 + row if key_rows else c
        # A store in each branch, not one after them: the float64 dq kernel keeps 6
        # registers fewer (numbanet info --gpu-kernels).
        if qi >= tq or kj >= tk or (causal and kj > qi):
            if key_rows:
                p_tile[row, sub + 4 * u] = zero
            ds_tile[row, sub + 4 * u] = zero
        else:
            p = math.exp(s[u] * scale - (lse[b, h, qi] if key_rows else lse_r))
            if key_rows:
                p_tile[row, sub + 4 * u] = p
            ds_tile[row, sub + 4 * u] = p * (dp[u] - (delta[b, h, qi] if key_rows else delta_r))


@cuda.jit(device=True)
def _tile_times_rows(tile, src, b, r0, nrows, h, ncols, nch, buf, row, sub, t, acc):
    """acc[ch * 8 + w] += sum over c of tile[row, c] * src[b, r0 + c, h, ch * 32 + sub + 4w]:
    this thread's row of the 32 x 32 shared tile times 32 rows of src, for each of src's
    32-feature chunks ch < nch (staged through buf). nch is a literal of the calling
    kernel, so once inlined the loops unroll and acc stays in registers."""
    for ch in range(nch):
        if ch * TILE < ncols:
            _stage(src, b, r0, nrows, h, ch * TILE, ncols, buf, t)
            cuda.syncthreads()
            for c in range(TILE):
                tc = tile[row, c]
                for w in range(PER):
                    acc[ch * PER + w] += tc * buf[c, sub + 4 * w]
            cuda.syncthreads()


@cuda.jit(device=True)
def _store_row(acc, nch, factor, dst, b, i, h, ncols, sub):
    """dst[b, i, h, ch * 32 + sub + 4w] = acc[ch * 8 + w] * factor for the row's columns
    this thread owns."""
    for ch in range(nch):
        for w in range(PER):
            col = ch * TILE + sub + 4 * w
            if col < ncols:
                dst[b, i, h, col] = acc[ch * PER + w] * factor


def _make_forward(acc_t, nchv):
    nout = PER * nchv

    @fixed_block(THREADS)

    @cuda.jit
    def forward(q, k, v, out, lse, causal, scale):
        bx = cuda.shared.array((TILE, PAD), acc_t)
        by = cuda.shared.array((TILE, PAD), acc_t)
        p_tile = cuda.shared.array((TILE, PAD), acc_t)
        red = cuda.shared.array((TILE, 4), acc_t)
        o = cuda.local.array(nout, acc_t)
        s = cuda.local.array(PER, acc_t)
        tq, tk, nh, d, ndv = _sizes(q, k, v)
        t, row, sub, b, h, q0 = _block_rows(tq, nh)
        i = q0 + row
        zero = q.dtype.type(0)
        ninf = q.dtype.type(-math.inf)
        for w in range(nout):
            o[w] = zero
        m = ninf
        total = zero
        # Keys any query of this block may see.
        kend = min(tk, q0 + TILE) if causal else tk
        for j0 in range(0, kend, TILE):
            for u in range(PER):
                s[u] = zero
            _dot_tiles(q, k, b, h, q0, tq, j0, tk, d, bx, by, row, sub, t, s)
            tile_max = ninf
            for u in range(PER):
                j = j0 + sub + 4 * u
                if j >= tk or (causal and j > i):
                    s[u] = ninf
                else:
                    s[u] *= scale
                if s[u] > tile_max:
                    tile_max = s[u]
            tile_max = _row_max(red, row, sub, tile_max)
            # Key 0 is in the first tile and visible to every row, so m is finite from
            # then on; in the first tile m = -inf gives alpha = 0.
            m_new = tile_max if tile_max > m else m
            alpha = math.exp(m - m_new)
            psum = zero
            for u in range(PER):
                p = math.exp(s[u] - m_new)
                psum += p
                p_tile[row, sub + 4 * u] = p
            total = total * alpha + _row_sum(red, row, sub, psum)
            m = m_new
            for w in range(nout):
                o[w] *= alpha
            _tile_times_rows(p_tile, v, b, j0, tk, h, ndv, nchv, by, row, sub, t, o)
        if i < tq:
            _store_row(o, nchv, 1 / total, out, b, i, h, ndv, sub)
            if sub == 0:
                lse[b, h, i] = m + math.log(total)
    return forward


def _make_dq(acc_t, nchd):
    nacc = PER * nchd

    @fixed_block(THREADS)

    @cuda.jit
    def dq_kernel(q, k, v, out, dout, lse, dq, delta, causal, scale):
        bx = cuda.shared.array((TILE, PAD), acc_t)
        by = cuda.shared.array((TILE, PAD), acc_t)
        ds_tile = cuda.shared.array((TILE, PAD), acc_t)
        red = cuda.shared.array((TILE, 4), acc_t)
        acc = cuda.local.array(nacc, acc_t)
        tq, tk, nh, d, ndv = _sizes(q, k, v)
        t, row, sub, b, h, q0 = _block_rows(tq, nh)
        i = q0 + row
        zero = q.dtype.type(0)
        for w in range(nacc):
            acc[w] = zero
        # delta_i = rowsum(dout * out), folded over the row's four threads.
        part = zero
        lse_i = zero
        if i < tq:
            for c in range(sub, ndv, 4):
                part += dout[b, i, h, c] * out[b, i, h, c]
            lse_i = lse[b, h, i]
        delta_i = _row_sum(red, row, sub, part)
        if i < tq and sub == 0:
            delta[b, h, i] = delta_i
        kend = min(tk, q0 + TILE) if causal else tk
        for j0 in range(0, kend, TILE):
            _grad_tile(q, k, dout, v, lse, delta, b, h, q0, j0, False, causal, scale, lse_i, delta_i, bx, by, row,
                       sub, t, ds_tile, ds_tile)
            _tile_times_rows(ds_tile, k, b, j0, tk, h, d, nchd, by, row, sub, t, acc)
        if i < tq:
            _store_row(acc, nchd, scale, dq, b, i, h, d, sub)
    return dq_kernel


def _make_dkdv(acc_t, nchd, nchv):
    nk_acc = PER * nchd
    nv_acc = PER * nchv

    @fixed_block(THREADS)

    @cuda.jit
    def dkdv_kernel(q, k, v, dout, lse, delta, dk, dv, causal, scale):
        bx = cuda.shared.array((TILE, PAD), acc_t)
        by = cuda.shared.array((TILE, PAD), acc_t)
        p_tile = cuda.shared.array((TILE, PAD), acc_t)
        ds_tile = cuda.shared.array((TILE, PAD), acc_t)
        dka = cuda.local.array(nk_acc, acc_t)
        dva = cuda.local.array(nv_acc, acc_t)
        tq, tk, nh, d, ndv = _sizes(q, k, v)
        t, row, sub, b, h, j0 = _block_rows(tk, nh)
        j = j0 + row
        zero = q.dtype.type(0)
        one = q.dtype.type(1)
        for w in range(nk_acc):
            dka[w] = zero
        for w in range(nv_acc):
            dva[w] = zero
        # Under the mask only queries i >= j0 see this block's keys (j0 is a tile start).
        for i0 in range(j0 if causal else 0, tq, TILE):
            _grad_tile(k, q, v, dout, lse, delta, b, h, j0, i0, True, causal, scale, zero, zero, bx, by, row, sub, t,
                       p_tile, ds_tile)
            _tile_times_rows(p_tile, dout, b, i0, tq, h, ndv, nchv, by, row, sub, t, dva)
            _tile_times_rows(ds_tile, q, b, i0, tq, h, d, nchd, by, row, sub, t, dka)
        if j < tk:
            _store_row(dka, nchd, scale, dk, b, j, h, d, sub)
            _store_row(dva, nchv, one, dv, b, j, h, ndv, sub)
    return dkdv_kernel


def _chunks(n):
    """32-feature chunks of an accumulator, rounded up to a power of two (fewer kernels)."""
    c = 1
    while c * TILE < n:
        c *= 2
    return c


@kernel_family
def attention_kernel(kind, dtype, *chunks):
    """The kernel of `kind` ("forward", "dq", "dkdv") for a dtype name and register budget,
    named so that the static compile (kernels/gpu_static.py) can build it again."""
    make = {"forward": _make_forward, "dq": _make_dq, "dkdv": _make_dkdv}[kind]
    return make(_ACC[np.dtype(dtype)], *chunks)


def _kernel(kind, dtype, *chunks):
    return attention_kernel(kind, np.dtype(dtype).name, *(int(c) for c in chunks))


def attention_forward(q, k, v, out, lse, causal, scale):
    nb, tq, nh, _ = q.shape
    # One block per (batch, head, 32-query tile), all along x: y and z stop at 65,535.
    grid = -(-tq // TILE) * nb * nh
    _kernel("forward", q.dtype, _chunks(v.shape[3]))[grid, THREADS](q, k, v, out, lse, causal,
                                                                     q.dtype.type(scale))


def attention_backward(q, k, v, out, dout, lse, dq, dk, dv, causal, scale):
    nb, tq, nh, d = q.shape
    tk = k.shape[1]
    scale = q.dtype.type(scale)
    delta = scratch("attention-delta", (nb, nh, tq), q.dtype)  # read by the second kernel only
    _kernel("dq", q.dtype, _chunks(d))[-(-tq // TILE) * nb * nh, THREADS](
        q, k, v, out, dout, lse, dq, delta, causal, scale)
    _kernel("dkdv", q.dtype, _chunks(d), _chunks(v.shape[3]))[-(-tk // TILE) * nb * nh, THREADS](
        q, k, v, dout, lse, delta, dk, dv, causal, scale)
