"""Conv2D on the CPU, NHWC activations and (KH, KW, C_in, C_out) weights.

Each image is lowered to a patch matrix P (OH*OW, KH*KW*C_in) in a buffer owned by one
prange iteration (never a whole-batch im2col), and the products run on gemm.py's packed
micro-kernel (the weights are packed once per call, the image's operands per image):

    forward:  y_n  = P_n @ W              (W = w viewed as (KH*KW*C_in, C_out))
    backward: dW  += P_n^T @ dy_n         (per-chunk partial sums, reduced in chunk order)
              dP_n = dy_n @ W^T, then col2im scatter-adds dP_n into dx_n

Positions outside x (padding; bottom/right padding is implied by y's shape) read as zero
and their gradients are dropped. Each prange iteration owns whole images (their rows of
y and dx) and its own partial dW/db, so there are no races and the sums are added in a
fixed order.
"""
import numba
import numpy as np
from numba import prange

from kernels.cpu.gemm import MR, NR, gemm_packed_serial, no_bias, pack_a, pack_b


@numba.njit(cache=True, inline="always")
def _put(dst, transposed, row, col, v):
    if transposed:
        dst[col // MR, row, col % MR] = v
    else:
        dst[row // MR, col, row % MR] = v


@numba.njit(cache=True)
def _im2col_packed(x, n, kh_, kw_, oh_, ow_, sh, sw, pt, pl, dst, transposed):
    """Image n's patch matrix P[oh*OW + ow, (kh*KW + kw)*C + c] = x[n, oh*sh - pt + kh,
    ow*sw - pl + kw, c] (0 outside x), written straight into the micro-kernel's MR-row
    panels: of P itself (dst[row // MR, col, row % MR]) or, when transposed, of P^T
    (dst[col // MR, row, col % MR]). Panel rows past the matrix are zeroed."""
    h, w, c_in = x.shape[1], x.shape[2], x.shape[3]
    dst[dst.shape[0] - 1] = 0
    for oh in range(oh_):
        for ow in range(ow_):
            row = oh * ow_ + ow
            for kh in range(kh_):
                ih = oh * sh - pt + kh
                for kw in range(kw_):
                    iw = ow * sw - pl + kw
                    base = (kh * kw_ + kw) * c_in
                    if 0 <= ih < h and 0 <= iw < w:
                        src = x[n, ih, iw]
                        for c in range(c_in):
                            _put(dst, transposed, row, base + c, src[c])
                    else:
                        for c in range(c_in):
                            # A store of int 0 casts to dst's dtype; a float32/int
                            # conditional expression would compute in float64.
                            _put(dst, transposed, row, base + c, 0)


@numba.njit(cache=True)
def _col2im_add(dpatches, dxn, kh_, kw_, oh_, ow_, sh, sw, pt, pl):
    """The adjoint of the patch lowering for one image: dxn[ih, iw, c] += every entry of
    dpatches (rows, KH*KW*C_in, not packed) that was read from x[n, ih, iw, c]."""
    h, w, c_in = dxn.shape
    for oh in range(oh_):
        for ow in range(ow_):
            row = dpatches[oh * ow_ + ow]
            for kh in range(kh_):
                ih = oh * sh - pt + kh
                if ih < 0 or ih >= h:
                    continue
                for kw in range(kw_):
                    iw = ow * sw - pl + kw
                    if iw < 0 or iw >= w:
                        continue
                    base = (kh * kw_ + kw) * c_in
                    dst = dxn[ih, iw]
                    for c in range(c_in):
                        dst[c] += row[base + c]


@numba.njit(cache=True)
def _pack_dy_and_sum(dyn, dypack, dbt):
    """dyn (rows, C_out) -> NR-column panels dypack[jp, row, c] (zero past C_out), and
    dbt += its column sums: one read of dy serves both dW's B operand and db."""
    rows, c_out = dyn.shape
    npanels = dypack.shape[0]
    for p in range(rows):
        src = dyn[p]
        for jp in range(npanels):
            j0 = jp * NR
            dst = dypack[jp, p]
            nr = min(NR, c_out - j0)
            for c in range(nr):
                v = src[j0 + c]
                dst[c] = v
                dbt[j0 + c] += v
            for c in range(nr, NR):
                dst[c] = 0


@numba.njit(cache=True)
def _panels(size, width):
    return (size + width - 1) // width


@numba.njit(cache=True, parallel=True)
def _conv2d_forward(x, w, bias, y, sh, sw, pad_top, pad_left):
    n_, oh_, ow_, c_out = y.shape
    kh_, kw_, c_in = w.shape[0], w.shape[1], w.shape[2]
    kdim = kh_ * kw_ * c_in
    rows = oh_ * ow_
    wpack = np.empty((_panels(c_out, NR), kdim, NR), dtype=w.dtype)
    pack_b(w.reshape((kdim, c_out)), False, c_out, 0, kdim, wpack)
    for n in prange(n_):
        ppack = np.empty((_panels(rows, MR), kdim, MR), dtype=x.dtype)
        tile = np.empty((MR, NR), dtype=x.dtype)
        _im2col_packed(x, n, kh_, kw_, oh_, ow_, sh, sw, pad_top, pad_left, ppack, False)
        gemm_packed_serial(ppack, wpack, rows, c_out, kdim, y[n].reshape((rows, c_out)), False, bias, tile)


@numba.njit(cache=True, parallel=True)
def _conv2d_backward(x, w, dy, dx, compute_dx, dw, db, sh, sw, pad_top, pad_left, nchunks):
    n_, oh_, ow_, c_out = dy.shape
    kh_, kw_, c_in = w.shape[0], w.shape[1], w.shape[2]
    kdim = kh_ * kw_ * c_in
    rows = oh_ * ow_
    # W^T packed once: dP = dy_n @ W^T needs it as the B operand (c_out deep, kdim wide).
    wtpack = np.empty((_panels(kdim, NR), c_out, NR), dtype=w.dtype)
    pack_b(w.reshape((kdim, c_out)), True, kdim, 0, c_out, wtpack)
    dw_part = np.zeros((nchunks, kdim, c_out), dtype=w.dtype)
    db_part = np.zeros((nchunks, c_out), dtype=w.dtype)
    for t in prange(nchunks):
        lo = t * n_ // nchunks
        hi = (t + 1) * n_ // nchunks
        ptpack = np.empty((_panels(kdim, MR), rows, MR), dtype=x.dtype)
        dybpack = np.empty((_panels(c_out, NR), rows, NR), dtype=x.dtype)
        dyapack = np.empty((_panels(rows, MR), c_out, MR), dtype=x.dtype)
        dpatches = np.empty((rows, kdim), dtype=x.dtype)
        tile = np.empty((MR, NR), dtype=x.dtype)
        nobias = np.empty(0, dtype=x.dtype)
        dwt = dw_part[t]
        dbt = db_part[t]
        for n in range(lo, hi):
            dyn = dy[n].reshape((rows, c_out))
            _pack_dy_and_sum(dyn, dybpack, dbt)
            _im2col_packed(x, n, kh_, kw_, oh_, ow_, sh, sw, pad_top, pad_left, ptpack, True)
            gemm_packed_serial(ptpack, dybpack, kdim, c_out, rows, dwt, True, nobias, tile)
            if compute_dx:
                pack_a(dyn, False, rows, c_out, dyapack)
                gemm_packed_serial(dyapack, wtpack, rows, kdim, c_out, dpatches, False, nobias, tile)
                dxn = dx[n]
                for ih in range(dxn.shape[0]):
                    for iw in range(dxn.shape[1]):
                        for c in range(c_in):
                            dxn[ih, iw, c] = 0
                _col2im_add(dpatches, dxn, kh_, kw_, oh_, ow_, sh, sw, pad_top, pad_left)
    dwmat = dw.reshape((kdim, c_out))
    for p in prange(kdim):
        for j in range(c_out):
            dwmat[p, j] = dw_part[0, p, j]
        for t in range(1, nchunks):
            for j in range(c_out):
                dwmat[p, j] += dw_part[t, p, j]
    for j in range(c_out):
        db[j] = db_part[0, j]
        for t in range(1, nchunks):
            db[j] += db_part[t, j]


def conv2d_backward(x, w, dy, dx, dw, db, sh, sw, pad_top, pad_left):
    """dx (skipped when None), dw, db of L given dL/dy = dy; arrays validated and C-contiguous."""
    # Fixed chunks, one per thread (not one per prange step), so the partial sums and so
    # dw and db do not depend on how the scheduler hands out iterations. Read here, not in
    # the kernel: numba.get_num_threads() inside @njit would defeat cache=True.
    nchunks = max(1, min(x.shape[0], numba.get_num_threads()))
    # An empty dx stands in for None: one compiled kernel per dtype, not two.
    compute_dx = dx is not None
    if not compute_dx:
        dx = np.empty((0, 0, 0, 0), dtype=x.dtype)
    _conv2d_backward(x, w, dy, dx, compute_dx, dw, db, sh, sw, pad_top, pad_left, nchunks)


def conv2d_forward(x, w, bias, y, sh, sw, pad_top, pad_left):
    """y = conv(x, w) (+ bias); arrays validated and C-contiguous, y allocated."""
    _conv2d_forward(x, w, no_bias(y.dtype) if bias is None else bias, y, sh, sw, pad_top, pad_left)
