"""GEMM on the CPU, BLIS-style: packed panels, cache blocking, register-blocked micro-kernels.

out = op(a) @ op(b) (+ bias over rows). For each KC-deep slice, op(b) is packed into
column panels and each block of op(a) into row panels (or read in place where its layout
already is one); packing reads a and b in either orientation, so the transposes cost
nothing beyond the copy, and pads edge panels with zeros so the micro-kernel always runs
full; only the write-back checks bounds.

Every product here runs on the micro-kernel shape in force (kernels/cpu/tuning.py: the
shape, KC, MC and the size thresholds, measured by `numbanet tune` or derived from the
CPU's features), passed to the kernels as `tile` (kernels/cpu/tiles.py). matmul picks
one of three paths by size (see "matmul's own path" below); conv.py runs dx's products
one image at a time inside its own prange through `pack_a`, `pack_b` and `gemm_packed`
(y and dW on the tile's twin that reads the image in place, tile.direct); batched_matmul
runs many small products at once.

Threads split `out` into rectangles; each owns its tiles of `out`, so no two iterations
write the same element, and every element is one chain of fused multiply-adds, p
ascending, from 0 or the bias: the same bits whatever the schedule, the path, the tile
shape or the blocking.
"""
import numba
import numpy as np
from numba import prange

from numbanet.kernels.cpu import tuning
from numbanet.kernels.cpu.apart import address_apart, call_apart
from numbanet.kernels.cpu.activation import epilogue
from numbanet.kernels.cpu.reduce import column_sum
from numbanet.kernels.cpu.rows import copy_row, zero_row
from numbanet.kernels.cpu.threads import dynamic, threading_layer, work_items


def no_bias(dtype):
    """The empty array the kernels take for "no bias". None would be a second type, and
    each kernel would be compiled twice per dtype (seconds each, on first use)."""
    return np.empty(0, dtype=dtype)


# --------------------------------------------------------------------------- matmul's own path
# matmul runs on the micro-kernel shape in force (kernels/cpu/tuning.py: measured by
# `numbanet tune` and stored per machine, else derived from the CPU's features), passed
# to every driver below as `tile` (kernels/cpu/tiles.py: its Numba type carries MR x NR,
# so each shape is its own compiled and cached driver), with the blocking (kc: deepest
# KC slice; mc: rows of op(a) per packed block) as run-time arguments.
#
# Three ways to run, by size, all adding every element's products in the same order (p
# ascending, each KC slice resuming from the running sum stored in out), so the result
# is the same bit for bit whichever runs and however many threads there are:
# - serial, below serial_below() multiply-adds: a parallel region costs 0.007-0.09 ms to
#   start and join (an empty prange, even on one thread), as much as a small product.
# - one parallel region, below the choice's prepack_macs: one rectangle of out per
#   thread, by rows unless op(b) must be packed anyway (trans_b), then by columns, each
#   thread packing only what it reads. Panels are read in place where they can be:
#   op(a) when trans_a (a row of `a` holds MR neighbouring rows of op(a)), op(b) when not
#   trans_b (a row of `b` holds NR neighbouring columns); only edge panels are packed,
#   with zero padding.
# - above: all of op(b) packed once, by all threads together (read in place, a large
#   power-of-two-wide b thrashes L1: its 4 KiB rows all map to one cache set), then
#   rectangles of mc rows x a group of panels handed out one at a time, each packing its
#   mc x kc blocks of op(a) and sweeping the panels over them.
#
# Under Numba's workqueue layer a parallel region of ours cost 0.1-0.2 ms more than under
# OpenMP on a 2-core VM (0.05 ms empty), and its second thread often starts late after
# another library's call, so the parallel paths lost to one thread up to 768^3 (serial /
# parallel: 256^3 0.157 / 0.268 ms, 512^3 1.17 / 1.37, 768^3 4.00 / 4.10; 1024^3 9.9-12.0
# / 5.1-7.1). Under workqueue the one-region path is then never taken:
SERIAL_MACS_WORKQUEUE = 160 * 1024 * 1024


@numba.njit(cache=True)
def _slice(k, kcw, s):
    """(p0, kc) of KC slice s of ceil(k / kcw) near-equal slices: k = 288 runs as
    144 + 144, not 256 + 32 (a 32-deep slice pays a whole tile load and store for little).
    A function of k and kcw alone, so every path and split sums each element in the same
    order."""
    nslices = (k + kcw - 1) // kcw
    p0 = s * k // nslices
    return p0, (s + 1) * k // nslices - p0


@numba.njit(cache=True)
def _pack_b_wide(tile, b, trans_b, jp, n, p0, kc, bp):
    """op(b)[p0:p0+kc, jp*NR : jp*NR+NR] -> bp[p, c] (kc x NR), zero columns past n.
    Rows are copied through 1-D slices: indexing b[p0 + p, j0 + c] directly costs a
    negative-index check per element and ran 5x slower (1.7 against 9 GB/s)."""
    nrw = tile.nr
    j0 = jp * nrw
    nr = min(nrw, n - j0)
    if nr < nrw:
        for p in range(kc):
            dst = bp[p]
            for c in range(nr, nrw):
                dst[c] = 0
    if trans_b:
        for c in range(nr):
            src = b[j0 + c, p0:p0 + kc]
            for p in range(kc):
                bp[p, c] = src[p]
    else:
        for p in range(kc):
            src = b[p0 + p, j0:j0 + nr]
            dst = bp[p]
            for c in range(nr):
                dst[c] = src[c]


@numba.njit(cache=True)
def _pack_a_wide(tile, a, trans_a, i0, mc, p0, kc, ap):
    """op(a)[i0:i0+mc, p0:p0+kc] -> ap[panel, p, r] (MR-row panels, rows past mc zero so
    the micro-kernel always runs full), through 1-D row slices: MR rows read side by side
    (tile.pack_rows) when not trans_a, one row of `a` per p when trans_a (7x faster than
    element-wise 2-D indexing, measured at 1024 x 1024 with MR = 8)."""
    mrw = tile.mr
    for ip in range((mc + mrw - 1) // mrw):
        r0 = i0 + ip * mrw
        rows = min(mrw, mc - ip * mrw)
        dst = ap[ip]
        if trans_a:
            for p in range(kc):
                src = a[p0 + p, r0:r0 + rows]
                d = dst[p]
                for r in range(rows):
                    d[r] = src[r]
                for r in range(rows, mrw):
                    d[r] = 0
        elif rows == mrw:
            tile.pack_rows(a, r0, p0, kc, dst)
        else:
            for r in range(mrw):
                if r < rows:
                    src = a[r0 + r, p0:p0 + kc]
                    for p in range(kc):
                        dst[p, r] = src[p]
                else:
                    for p in range(kc):
                        dst[p, r] = 0


@numba.njit(cache=True)
def _tile_in(out, r0, c0, mr, nr, first, bias, scratch):
    """An edge tile (mr < MR or nr < NR) runs through the scratch tile: the micro-kernel
    always computes all MR x NR, and only mr x nr are real. It starts as full tiles do
    (0, the bias, or the previous slices' sum), so every element is summed in the same
    order wherever its tile falls. (Element loops over 1-D row slices, here and below:
    numba's slice assignment `t[r, :nr] = o[...]` emits ~3,000 lines of machine code per
    use, which every function linking this one compiles again; indexing the slices from
    0 keeps the loops free of negative-index checks, so LLVM vectorizes them.)"""
    bsrc = bias[c0:c0 + nr]
    for r in range(mr):
        t = scratch[r]
        if not first:
            copy_row(t, out[r0 + r, c0:c0 + nr], nr)
        elif bias.shape[0] != 0:
            copy_row(t, bsrc, nr)
        else:
            zero_row(t, nr)


@numba.njit(cache=True)
def _tile_out(scratch, out, r0, c0, mr, nr):
    """The tile store of an edge tile (a full tile is stored by the micro-kernel into out itself)."""
    for r in range(mr):
        t = scratch[r]
        o = out[r0 + r, c0:c0 + nr]
        for c in range(nr):
            o[c] = t[c]


@numba.njit(cache=True)
def _tile_start(tile, out, r0, c0, bias):
    """A full tile's first KC slice accumulates onto the bias (or zeros), written here."""
    nrw = tile.nr
    bsrc = bias[c0:c0 + nrw]
    for r in range(tile.mr):
        o = out[r0 + r, c0:c0 + nrw]
        if bias.shape[0] != 0:
            copy_row(o, bsrc, nrw)
        else:
            zero_row(o, nrw)


@numba.njit(cache=True)
def _wide_rect(tile, a, b, trans_a, trans_b, bias, out, i_lo, i_hi, jp_lo, jp_hi, kcw, mcw,
               bpre, bscr, ascr, scratch):
    """out[i_lo:i_hi, panels jp_lo:jp_hi] on one thread. op(b)'s panels come from bpre
    (packed by all threads beforehand, when it is not empty), from b itself, or are
    packed into bscr; op(a)'s from a itself or are packed, one mcw-row block at a time,
    into ascr. Full tiles accumulate straight into out: the first KC slice onto zeros
    or the bias written there just before, later ones onto the running sum."""
    mrw = tile.mr
    nrw = tile.nr
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    use_pre = bpre.shape[0] > 0
    nslices = (k + kcw - 1) // kcw
    for s in range(nslices):
        p0, kc = _slice(k, kcw, s)
        first = s == 0
        if not use_pre:
            for jp in range(jp_lo, jp_hi):
                if trans_b or (jp + 1) * nrw > n:
                    _pack_b_wide(tile, b, trans_b, jp, n, p0, kc, bscr[jp - jp_lo])
        arows = a[p0:p0 + kc]
        brows = b[p0:p0 + kc]
        for i0 in range(i_lo, i_hi, mcw):
            mc = min(mcw, i_hi - i0)
            npan = (mc + mrw - 1) // mrw
            if not trans_a:
                _pack_a_wide(tile, a, trans_a, i0, mc, p0, kc, ascr)
            elif mc % mrw != 0:
                # only the ragged last panel: its padding rows must read as zeros
                last = (npan - 1) * mrw
                _pack_a_wide(tile, a, trans_a, i0 + last, mc - last, p0, kc, ascr[npan - 1:])
            for jp in range(jp_lo, jp_hi):
                j0 = jp * nrw
                nr = min(nrw, n - j0)
                if use_pre:
                    bpan = bpre[s, jp, :kc]
                    bcol = 0
                elif trans_b or nr < nrw:
                    bpan = bscr[jp - jp_lo, :kc]
                    bcol = 0
                else:
                    bpan = brows
                    bcol = j0
                for ip in range(npan):
                    r0 = i0 + ip * mrw
                    mr = min(mrw, i_hi - r0)
                    if trans_a and mr == mrw:
                        apan = arows
                        acol = r0
                    else:
                        apan = ascr[ip, :kc]
                        acol = 0
                    # Two call sites on purpose: LLVM inlines a function called once
                    # (the last-call bonus), then unswitches the loops around the
                    # inlined MR x NR body, copying it per branch; that cost 2-4 s of
                    # compile time in every function this one is linked into.
                    if mr < mrw or nr < nrw:
                        _tile_in(out, r0, j0, mr, nr, first, bias, scratch)
                        tile.micro(apan, acol, bpan, bcol, kc, scratch, 0)
                        _tile_out(scratch, out, r0, j0, mr, nr)
                    else:
                        if first:
                            _tile_start(tile, out, r0, j0, bias)
                        tile.micro(apan, acol, bpan, bcol, kc, out[r0:r0 + mrw], j0)


@numba.njit(cache=True, parallel=True)
def _wide_parallel(tile, a, b, trans_a, trans_b, bias, out, kcw, mcw, prepack, rstep, ngroups, nparts):
    """out in rectangles of rstep rows (a multiple of MR) x one of ngroups runs of
    NR-column panels, dealt to nparts threads as contiguous runs of rectangles, each
    run with its scratch allocated once. With prepack, every panel of op(b) is first
    packed once, by all threads together (a second parallel region); without, each
    rectangle packs what it reads of op(b) itself."""
    mrw = tile.mr
    nrw = tile.nr
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    kc_max = min(kcw, k)
    njp = (n + nrw - 1) // nrw
    nslices = (k + kcw - 1) // kcw
    if prepack:
        bpre = np.empty((nslices, njp, kc_max, nrw), dtype=out.dtype)
        for job in prange(nslices * njp):
            s = job // njp
            jp = job - s * njp
            p0, kc = _slice(k, kcw, s)
            _pack_b_wide(tile, b, trans_b, jp, n, p0, kc, bpre[s, jp])
    else:
        bpre = np.empty((0, 0, 0, nrw), dtype=out.dtype)
    nitems = ((m + rstep - 1) // rstep) * ngroups
    widest = 1 if prepack else (njp + ngroups - 1) // ngroups
    # The rectangle's work is compiled apart (apart.py): the look-up reads no element of
    # these placeholders, only their types.
    none3 = np.empty((0, 0, 0), dtype=out.dtype)
    rect = address_apart(_wide_rect, tile, a, b, trans_a, trans_b, bias, out, 0, 0, 0, 0, kcw, mcw, bpre, none3, none3,
                         np.empty((0, 0), dtype=out.dtype))
    for part in prange(nparts):
        bscr = np.empty((widest, kc_max, nrw), dtype=out.dtype)
        ascr = np.empty(((min(mcw, m) + mrw - 1) // mrw, kc_max, mrw), dtype=out.dtype)
        scratch = np.zeros((mrw, nrw), dtype=out.dtype)
        for item in range(part * nitems // nparts, (part + 1) * nitems // nparts):
            rb = item // ngroups
            g = item - rb * ngroups
            i_lo = rb * rstep
            jp_lo = g * njp // ngroups
            jp_hi = (g + 1) * njp // ngroups
            if jp_lo < jp_hi:
                call_apart(rect, _wide_rect, tile, a, b, trans_a, trans_b, bias, out, i_lo, min(m, i_lo + rstep),
                           jp_lo, jp_hi, kcw, mcw, bpre, bscr, ascr, scratch)


_layer = []


def serial_below(choice=None):
    """matmul runs on one thread below this many multiply-adds: the choice's serial_macs,
    or SERIAL_MACS_WORKQUEUE under the workqueue threading layer (known only once a
    parallel kernel has run: kernels/cpu/threads.py runs one, once per process)."""
    choice = choice or tuning.current()
    if not _layer:
        _layer.append(threading_layer())
    return max(SERIAL_MACS_WORKQUEUE, choice.serial_macs) if _layer[0] == "workqueue" else choice.serial_macs


def _wide_serial(tile, kcw, mcw, a, b, trans_a, trans_b, bias, out):
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    kc = min(kcw, k)
    mrw, nrw = tile.mr, tile.nr
    njp = -(-n // nrw)
    _wide_rect(tile, a, b, trans_a, trans_b, bias, out, 0, m, 0, njp, kcw, mcw, np.empty((0, 0, 0, nrw), out.dtype),
               np.empty((njp, kc, nrw), out.dtype), np.empty((-(-min(mcw, m) // mrw), kc, mrw), out.dtype),
               np.zeros((mrw, nrw), out.dtype))


def matmul_with(choice, a, b, trans_a, trans_b, bias, out, threads):
    """out = op(a) @ op(b) (+ bias over rows) by `choice` (tuning.Choice: tile, blocking,
    thresholds) on `threads` threads; bias is an array (empty: none). matmul runs it with
    the choice in force; `numbanet tune` with each candidate."""
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    macs = m * n * k
    tile, kcw, mcw = choice.tile, choice.kc, choice.mc
    if k <= 2 * kcw:
        # One KC slice up to twice KC: a second slice stores the whole output's running sum
        # and reads it back, which costs more than op(b)'s panel outgrowing L1 (15488x288x64,
        # the article's second convolution as one product, in `numbanet bench --quick --ops
        # gemm` on an AMD EPYC: 0.67x -> 0.89x NumPy). Results are the same bits: a slice
        # boundary only stores the float32 sum and resumes from it.
        kcw = max(k, 1)
    npan, njp = -(-m // tile.mr), -(-n // tile.nr)
    if macs < serial_below(choice) or (threads == 1 and macs < choice.prepack_macs):
        _wide_serial(tile, kcw, mcw, a, b, trans_a, trans_b, bias, out)
    elif macs < choice.prepack_macs and trans_b:
        # by columns: each thread packs only its own panels of op(b)
        parts = min(threads, njp)
        _wide_parallel(tile, a, b, trans_a, trans_b, bias, out, kcw, mcw, False, m, parts, parts)
    elif macs < choice.prepack_macs:
        # by rows: op(b) is read in place (its edge panel packed by each thread)
        parts = min(threads, npan)
        _wide_parallel(tile, a, b, trans_a, trans_b, bias, out, kcw, mcw, False, -(-npan // parts) * tile.mr, 1,
                       parts)
    else:
        nblocks = -(-m // mcw)
        # Enough rectangles for two per thread, splitting columns only when rows run out.
        ngroups = max(1, min(njp, -(-2 * threads // nblocks)))
        # Handed out one at a time (kernels/cpu/threads.py): when another process holds
        # a core, the thread that keeps its own takes more of the rectangles.
        dynamic(_wide_parallel, tile, a, b, trans_a, trans_b, bias, out, kcw, mcw, True, mcw, ngroups,
                work_items(nblocks * ngroups))


def matmul(a, b, trans_a, trans_b, bias, out, activation="linear"):
    """out = act(op(a) @ op(b) (+ bias over rows)); arrays validated and C-contiguous."""
    if bias is None:
        bias = no_bias(out.dtype)
    # The thread count is read here: numba.get_num_threads() inside @njit defeats cache=True.
    matmul_with(tuning.current(), a, b, trans_a, trans_b, bias, out, numba.get_num_threads())
    epilogue(activation, out)


def dense_backward(x, w, dy, dx, dwdb):
    """dwdb[:in] = x^T @ dy, dwdb[in] = column sums of dy; dx = dy @ w^T unless None."""
    fan_in = w.shape[0]
    matmul(x, dy, True, False, None, dwdb[:fan_in])
    column_sum(dy, dwdb[fan_in])
    if dx is not None:
        matmul(dy, w, False, True, None, dx)


# --------------------------------------------------------------------------- packed operands
@numba.njit(cache=True)
def pack_b(tile, b, trans_b, n, kc, bp):
    """All NR-column panels of op(b)[:kc, :n] into bp[jp] (kc x NR each), serially."""
    for jp in range((n + tile.nr - 1) // tile.nr):
        _pack_b_wide(tile, b, trans_b, jp, n, 0, kc, bp[jp])


@numba.njit(cache=True)
def pack_a(tile, a, trans_a, m, kc, ap):
    """All MR-row panels of op(a)[:m, :kc] into ap[ip] (kc x MR each), serially."""
    _pack_a_wide(tile, a, trans_a, 0, m, 0, kc, ap)


@numba.njit(cache=True)
def gemm_packed(tile, ap, bp, m, n, kc, out, accumulate, bias, scratch):
    """out[:m, :n] (+)= A @ B (+ bias over rows when not accumulating; an empty bias adds
    nothing) from packed panels of A (ap[ip]: kc x MR) and B (bp[jp]: kc x NR), on one
    thread: conv.py calls it per image inside its own prange. Full tiles accumulate
    straight into out (from the bias or zeros written there first, or onto what out
    holds), edge tiles through `scratch` (at least MR x NR)."""
    mrw = tile.mr
    nrw = tile.nr
    for jp in range((n + nrw - 1) // nrw):
        j0 = jp * nrw
        nr = min(nrw, n - j0)
        for ip in range((m + mrw - 1) // mrw):
            r0 = ip * mrw
            mr = min(mrw, m - r0)
            if mr < mrw or nr < nrw:
                _tile_in(out, r0, j0, mr, nr, not accumulate, bias, scratch)
                tile.micro(ap[ip], 0, bp[jp], 0, kc, scratch, 0)
                _tile_out(scratch, out, r0, j0, mr, nr)
            else:
                if not accumulate:
                    _tile_start(tile, out, r0, j0, bias)
                tile.micro(ap[ip], 0, bp[jp], 0, kc, out[r0:r0 + mrw], j0)


# --------------------------------------------------------------------------- batched
@numba.njit(cache=True, parallel=True)
def _batched_gemm(tile, a, b, trans_a, trans_b, out, kcw, mcw, nchunks):
    """out[z] = op(a[z]) @ op(b[z]) for every z. Work item = (z, mcw-row block); the items
    are split into nchunks contiguous runs, one prange iteration each, so the packing
    scratch is allocated once per run rather than once per (small) product."""
    mrw = tile.mr
    nrw = tile.nr
    nz, m, n = out.shape
    k = a.shape[1] if trans_a else a.shape[2]
    kc_max = min(kcw, k)
    nblocks = (m + mcw - 1) // mcw
    nitems = nz * nblocks
    empty_bias = np.empty(0, dtype=out.dtype)
    nslices = (k + kcw - 1) // kcw
    for chunk in prange(nchunks):
        ap = np.empty(((min(mcw, m) + mrw - 1) // mrw, kc_max, mrw), dtype=out.dtype)
        bp = np.empty(((n + nrw - 1) // nrw, kc_max, nrw), dtype=out.dtype)
        scratch = np.empty((mrw, nrw), dtype=out.dtype)
        for item in range(chunk * nitems // nchunks, (chunk + 1) * nitems // nchunks):
            z = item // nblocks
            i0 = (item - z * nblocks) * mcw
            mc = min(mcw, m - i0)
            az = a[z]
            bz = b[z]
            oz = out[z]
            for s in range(nslices):
                p0, kc = _slice(k, kcw, s)
                for jp in range((n + nrw - 1) // nrw):
                    _pack_b_wide(tile, bz, trans_b, jp, n, p0, kc, bp[jp])
                _pack_a_wide(tile, az, trans_a, i0, mc, p0, kc, ap)
                gemm_packed(tile, ap, bp, mc, n, kc, oz[i0:i0 + mc], s > 0, empty_bias, scratch)


def batched_matmul(a, b, trans_a, trans_b, out):
    """out[z] = op(a[z]) @ op(b[z]) for 3-D (Z, ., .) arrays, validated and C-contiguous."""
    choice = tuning.current()
    nz, m, _ = out.shape
    nitems = nz * -(-m // choice.mc)
    threads = numba.get_num_threads()
    if nitems < threads:
        # Too few products to share out: each one runs on every thread instead.
        for z in range(nz):
            matmul(a[z], b[z], trans_a, trans_b, None, out[z])
        return
    _batched_gemm(choice.tile, a, b, trans_a, trans_b, out, choice.kc, choice.mc, min(nitems, 4 * threads))
