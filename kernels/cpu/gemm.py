"""GEMM on the CPU, BLIS-style: packed panels, cache blocking, a register-blocked micro-kernel.

out = op(a) @ op(b) (+ bias over rows). For each KC-deep slice, op(b) is packed into
NR-column panels and each MC-row block of op(a) into MR-row panels; packing reads a and b
in either orientation, so the transposes cost nothing beyond the copy, and pads edge
panels with zeros so the micro-kernel (kernels/cpu/_gemm_micro.py: MR x NR accumulators
in registers, SLP-vectorized FMAs) always runs full; only the write-back checks bounds.

Threads split `out` into work items (an MC-row block x a group of NR-column panels); each
owns its tiles of `out`, so no two iterations write the same element and every element's
sum is added in the same order whatever the schedule.

`pack_a`, `pack_b` and `gemm_packed_serial` are exported for conv.py, which packs and
multiplies one image at a time inside its own prange.
"""
import numba
import numpy as np
from numba import prange

from numbanet.kernels.cpu._gemm_micro import MR, NR, micro
from numbanet.kernels.cpu.activation import epilogue
from numbanet.kernels.cpu.reduce import column_sum
from numbanet.kernels.cpu.slp import plain_types

MC = 128   # rows of op(a) per thread block (a multiple of MR): 128 x KC packed fits L2
KC = 256   # depth of one packed slice: one MR x KC a panel + one KC x NR b panel fit L1


@plain_types
@numba.njit(cache=True)
def _pack_a(a, trans_a, i0, mc, p0, kc, ap):
    """op(a)[i0:i0+mc, p0:p0+kc] -> ap[panel, p, r]; rows past mc are zero so the
    micro-kernel always runs full (their results are never written back)."""
    npanels = (mc + MR - 1) // MR
    for i in range(npanels * MR):
        ip = i // MR
        r = i - ip * MR
        if i >= mc:
            for p in range(kc):
                ap[ip, p, r] = 0
        elif trans_a:
            for p in range(kc):
                ap[ip, p, r] = a[p0 + p, i0 + i]
        else:
            for p in range(kc):
                ap[ip, p, r] = a[i0 + i, p0 + p]


@plain_types
@numba.njit(cache=True)
def _pack_b_panel(b, trans_b, jp, n, p0, kc, bp):
    """op(b)[p0:p0+kc, jp*NR:jp*NR+NR] -> bp[jp, p, c], zero columns past n."""
    j0 = jp * NR
    nr = min(NR, n - j0)
    for p in range(kc):
        for c in range(nr, NR):
            bp[jp, p, c] = 0
    if trans_b:
        for c in range(nr):
            for p in range(kc):
                bp[jp, p, c] = b[j0 + c, p0 + p]
    else:
        for p in range(kc):
            for c in range(nr):
                bp[jp, p, c] = b[p0 + p, j0 + c]


@numba.njit(cache=True, parallel=True)
def _gemm_packed(a, b, trans_a, trans_b, bias, out, ngroups):
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    nbp = (n + NR - 1) // NR
    nblocks = (m + MC - 1) // MC
    nslices = (k + KC - 1) // KC
    # Work item = (row block, group of b panels): a short, wide out (a Dense layer's
    # batch of 128 rows) still gives every thread work.
    nitems = nblocks * ngroups
    kc_max = min(KC, k)
    # All of op(b) is packed up front (one copy of b), so the threads meet at two
    # barriers per call instead of two per KC slice.
    bp = np.empty((nslices, nbp, kc_max, NR), dtype=out.dtype)
    for job in prange(nslices * nbp):
        s = job // nbp
        jp = job - s * nbp
        p0 = s * KC
        _pack_b_panel(b, trans_b, jp, n, p0, min(KC, k - p0), bp[s])
    # Scratch per work item, allocated once: each prange iteration owns its own.
    ap_all = np.empty((nitems, MC // MR, kc_max, MR), dtype=out.dtype)
    tiles = np.empty((nitems, MR, NR), dtype=out.dtype)
    for item in prange(nitems):
        blk = item // ngroups
        g = item - blk * ngroups
        i0 = blk * MC
        mc = min(MC, m - i0)
        ap = ap_all[item]
        tile = tiles[item]
        for s in range(nslices):
            p0 = s * KC
            kc = min(KC, k - p0)
            _pack_a(a, trans_a, i0, mc, p0, kc, ap)
            bps = bp[s]
            # jp outer, ip inner: one b panel stays in L1 while the block's a panels stream.
            for jp in range(g * nbp // ngroups, (g + 1) * nbp // ngroups):
                j0 = jp * NR
                nr = min(NR, n - j0)
                for ip in range((mc + MR - 1) // MR):
                    micro(ap[ip], bps[jp], kc, tile)
                    for r in range(min(MR, mc - ip * MR)):
                        orow = out[i0 + ip * MR + r, j0:j0 + nr]
                        if s > 0:
                            for c in range(nr):
                                orow[c] += tile[r, c]
                        elif bias.shape[0] == 0:
                            for c in range(nr):
                                orow[c] = tile[r, c]
                        else:
                            for c in range(nr):
                                orow[c] = tile[r, c] + bias[j0 + c]


@plain_types
@numba.njit(cache=True)
def pack_b(b, trans_b, n, p0, kc, bp):
    """All NR-column panels of op(b)[p0:p0+kc, :n] into bp (serially)."""
    for jp in range((n + NR - 1) // NR):
        _pack_b_panel(b, trans_b, jp, n, p0, kc, bp)


@plain_types
@numba.njit(cache=True)
def pack_a(a, trans_a, m, kc, ap):
    """All MR-row panels of op(a)[:m, :kc] into ap (serially)."""
    _pack_a(a, trans_a, 0, m, 0, kc, ap)


@numba.njit(cache=True)
def gemm_packed_serial(ap, bp, m, n, kc, out, accumulate, bias, tile):
    """out[:m, :n] (+)= A @ B (+ bias over rows when not accumulating; an empty bias adds
    nothing) from already packed panels of A (m x kc) and B (kc x n), on one thread:
    conv.py calls it per image inside its own prange. The bias rides on the single write
    of each tile, not a second pass."""
    for jp in range((n + NR - 1) // NR):
        j0 = jp * NR
        nr = min(NR, n - j0)
        for ip in range((m + MR - 1) // MR):
            micro(ap[ip], bp[jp], kc, tile)
            for r in range(min(MR, m - ip * MR)):
                orow = out[ip * MR + r, j0:j0 + nr]
                if accumulate:
                    for c in range(nr):
                        orow[c] += tile[r, c]
                elif bias.shape[0] == 0:
                    for c in range(nr):
                        orow[c] = tile[r, c]
                else:
                    for c in range(nr):
                        orow[c] = tile[r, c] + bias[j0 + c]


def no_bias(dtype):
    """The empty array the kernels take for "no bias". None would be a second type, and
    each kernel would be compiled twice per dtype (seconds each, on first use)."""
    return np.empty(0, dtype=dtype)


def matmul(a, b, trans_a, trans_b, bias, out, activation="linear"):
    """out = act(op(a) @ op(b) (+ bias over rows)); arrays validated and C-contiguous."""
    if bias is None:
        bias = no_bias(out.dtype)
    m, n = out.shape
    nblocks = -(-m // MC)
    nbp = -(-n // NR)
    # Enough work items for two per thread, splitting columns only when rows run out.
    # The thread count is read here: numba.get_num_threads() inside @njit defeats cache=True.
    ngroups = max(1, min(nbp, -(-2 * numba.get_num_threads() // nblocks)))
    _gemm_packed(a, b, trans_a, trans_b, bias, out, ngroups)
    epilogue(activation, out)


def dense_backward(x, w, dy, dx, dwdb):
    """dwdb[:in] = x^T @ dy, dwdb[in] = column sums of dy; dx = dy @ w^T unless None."""
    fan_in = w.shape[0]
    matmul(x, dy, True, False, None, dwdb[:fan_in])
    column_sum(dy, dwdb[fan_in])
    if dx is not None:
        matmul(dy, w, False, True, None, dx)


# --------------------------------------------------------------------------- batched (issue 12)
@numba.njit(cache=True, parallel=True)
def _batched_gemm(a, b, trans_a, trans_b, out, nchunks):
    """out[z] = op(a[z]) @ op(b[z]) for every z. Work item = (z, MC-row block); the items
    are split into nchunks contiguous runs, one prange iteration each, so the packing
    scratch is allocated once per run rather than once per (small) product."""
    nz, m, n = out.shape
    k = a.shape[1] if trans_a else a.shape[2]
    kc_max = min(KC, k)
    nblocks = (m + MC - 1) // MC
    nitems = nz * nblocks
    mc_max = min(MC, ((m + MR - 1) // MR) * MR)
    empty_bias = np.empty(0, dtype=out.dtype)
    for chunk in prange(nchunks):
        ap = np.empty((mc_max // MR, kc_max, MR), dtype=out.dtype)
        bp = np.empty(((n + NR - 1) // NR, kc_max, NR), dtype=out.dtype)
        tile = np.empty((MR, NR), dtype=out.dtype)
        for item in range(chunk * nitems // nchunks, (chunk + 1) * nitems // nchunks):
            z = item // nblocks
            i0 = (item - z * nblocks) * MC
            mc = min(MC, m - i0)
            az = a[z]
            oz = out[z]
            for p0 in range(0, k, KC):
                kc = min(KC, k - p0)
                pack_b(b[z], trans_b, n, p0, kc, bp)
                _pack_a(az, trans_a, i0, mc, p0, kc, ap)
                gemm_packed_serial(ap, bp, mc, n, kc, oz[i0:i0 + mc], p0 > 0, empty_bias, tile)


def batched_matmul(a, b, trans_a, trans_b, out):
    """out[z] = op(a[z]) @ op(b[z]) for 3-D (Z, ., .) arrays, validated and C-contiguous."""
    nz, m, _ = out.shape
    nitems = nz * -(-m // MC)
    threads = numba.get_num_threads()
    if nitems < threads:
        # Too few products to share out: each one runs on every thread instead.
        for z in range(nz):
            matmul(a[z], b[z], trans_a, trans_b, None, out[z])
        return
    _batched_gemm(a, b, trans_a, trans_b, out, min(nitems, 4 * threads))
