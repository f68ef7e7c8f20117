"""GEMM on the CPU, BLIS-style: packed panels, cache blocking, a register-blocked micro-kernel.

out = op(a) @ op(b) (+ bias over rows). op(a) is cut into MC x KC blocks packed as MR-row
panels, op(b) into KC x N slices packed as NR-column panels; packing reads a or b in
either orientation, so the transposes cost nothing beyond the copy. The micro-kernel
updates an MR x NR tile of `out` (kept in L1) from one packed a panel and one packed b
panel; its inner loop over NR contiguous columns is what LLVM vectorizes into FMAs.
Edge tiles just run with smaller bounds.

Threads split the rows of op(a) (prange over MC blocks); each owns its rows of `out`, so
no two iterations write the same element and the result does not depend on the schedule.

`gemm_nn` (a small serial a @ b on C-ordered operands) is exported for conv.py, which runs
it once per image inside its own prange.
"""
import numba
import numpy as np
from numba import prange

MR = 6     # rows of op(a) sharing each loaded vector of packed b
NR = 64    # columns per b panel: four 16-float vectors per row of the tile
MC = 96    # rows per thread block (a multiple of MR)
KC = 256   # depth of one packed slice: MC*KC of a and KC*NR of b stay in L1/L2


@numba.njit(cache=True)
def _pack_a(a, trans_a, i0, mc, p0, kc, ap):
    """op(a)[i0:i0+mc, p0:p0+kc] -> ap[panel, p, r]: each panel's MR values per p adjacent."""
    for i in range(mc):
        ip = i // MR
        r = i - ip * MR
        if trans_a:
            for p in range(kc):
                ap[ip, p, r] = a[p0 + p, i0 + i]
        else:
            for p in range(kc):
                ap[ip, p, r] = a[i0 + i, p0 + p]


@numba.njit(cache=True)
def _pack_b_panel(b, trans_b, jp, n, p0, kc, bp):
    """op(b)[p0:p0+kc, jp*NR:jp*NR+nr] -> bp[jp, p, :nr], rows contiguous for the micro-kernel."""
    j0 = jp * NR
    nr = min(NR, n - j0)
    if trans_b:
        for c in range(nr):
            for p in range(kc):
                bp[jp, p, c] = b[j0 + c, p0 + p]
    else:
        for p in range(kc):
            for c in range(nr):
                bp[jp, p, c] = b[p0 + p, j0 + c]


@numba.njit(cache=True, fastmath={"contract"})
def _micro(ap, ip, mr, bp, jp, nr, kc, out, i0, j0):
    """out[i0:i0+mr, j0:j0+nr] += packed a panel @ packed b panel.

    nr is a run-time bound on purpose: a constant trip count gets fully unrolled into
    scalars (Numba runs no SLP vectorizer), a variable one is loop-vectorized into
    16-wide FMAs. The mr rows of `out` stay in L1 across the whole kc loop."""
    for p in range(kc):
        brow = bp[jp, p]
        arow = ap[ip, p]
        for r in range(mr):
            av = arow[r]
            # A slice, so the vector loop indexes from 0 and needs no negative-index fix-up.
            orow = out[i0 + r, j0:j0 + nr]
            for c in range(nr):
                orow[c] += av * brow[c]


@numba.njit(cache=True, parallel=True)
def _gemm_packed(a, b, trans_a, trans_b, bias, out):
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    nbp = (n + NR - 1) // NR
    nblocks = (m + MC - 1) // MC
    bp = np.empty((nbp, min(KC, k), NR), dtype=out.dtype)
    # One packed-a buffer per row block, allocated once; each prange iteration owns its own.
    ap_all = np.empty((nblocks, MC // MR, min(KC, k), MR), dtype=out.dtype)
    for blk in prange(nblocks):
        for i in range(blk * MC, min(m, blk * MC + MC)):
            if bias is None:
                for j in range(n):
                    out[i, j] = 0
            else:
                for j in range(n):
                    out[i, j] = bias[j]
    for p0 in range(0, k, KC):
        kc = min(KC, k - p0)
        for jp in prange(nbp):
            _pack_b_panel(b, trans_b, jp, n, p0, kc, bp)
        for blk in prange(nblocks):
            i0 = blk * MC
            mc = min(MC, m - i0)
            ap = ap_all[blk]
            _pack_a(a, trans_a, i0, mc, p0, kc, ap)
            for jp in range(nbp):
                j0 = jp * NR
                nr = min(NR, n - j0)
                for ip in range((mc + MR - 1) // MR):
                    mr = min(MR, mc - ip * MR)
                    _micro(ap, ip, mr, bp, jp, nr, kc, out, i0 + ip * MR, j0)


@numba.njit(cache=True)
def gemm_nn(a, b, out, accumulate):
    """out (+)= a @ b for C-ordered a (M, K), b (K, N), serially (conv calls it per image).

    Four rows of a share each loaded row of b; the j loop over a row of `out` is the
    vectorized one. Meant for the moderate N of conv channels, where B stays in cache."""
    m, k = a.shape
    n = b.shape[1]
    if not accumulate:
        for i in range(m):
            for j in range(n):
                out[i, j] = 0
    i = 0
    while i + 4 <= m:
        o0 = out[i]
        o1 = out[i + 1]
        o2 = out[i + 2]
        o3 = out[i + 3]
        for p in range(k):
            a0 = a[i, p]
            a1 = a[i + 1, p]
            a2 = a[i + 2, p]
            a3 = a[i + 3, p]
            bp = b[p]
            for j in range(n):
                bv = bp[j]
                o0[j] += a0 * bv
                o1[j] += a1 * bv
                o2[j] += a2 * bv
                o3[j] += a3 * bv
        i += 4
    while i < m:
        o = out[i]
        for p in range(k):
            av = a[i, p]
            bp = b[p]
            for j in range(n):
                o[j] += av * bp[j]
        i += 1


def matmul(a, b, trans_a, trans_b, bias, out):
    """out = op(a) @ op(b) (+ bias over rows); arrays validated and C-contiguous."""
    _gemm_packed(a, b, trans_a, trans_b, bias, out)
