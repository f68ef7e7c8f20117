"""Conv2D on the CPU, NHWC activations and (KH, KW, C_in, C_out) weights.

y and dW come from register tiles that read a zero-padded copy of one image in place
(tile.direct: kernels/cpu/microkernel.py), with no patch matrix; dx goes through one:

    forward:  y_n  = P_n @ W              (W = w viewed as (KH*KW*C_in, C_out); P_n, the
                                          image's patch matrix, is never formed)
    backward: dW  += P_n^T @ dy_n         (the same tiles, window cells by channels, summed
                                          over pixels; per-chunk partial sums, reduced in
                                          chunk order)
              dP_n = dy_n @ W^T, then col2im scatter-adds dP_n into dx_n

Each product runs on a tile of few rows (kernels/cpu/tuning.short_tile: at most 4 rows,
as wide as fits the registers), shallow windows (KH*KW*C_in <= DIRECT_KDIM, as in a first
layer) on a strip tile 16 or 32 wide (tuning.strip_tile): a first layer's few output
channels would fill only part of a wide tile. The weights are packed once per call, dy
and dP's operands per image.

An activation (relu, sigmoid, tanh) is fused while the data is in cache: the forward
applies it to each image's output right after its tiles are written, and the backward
forms each image's dz = dy * act'(y) just before dy is packed. Neither makes a pass of
its own over the whole batch (11 MB each way for the article's first layer) nor starts a
parallel region.

A dilation (window cells dil_h rows and dil_w columns apart) enters only where a window
cell's input position is computed: the cell offsets and col2im. conv2d_transpose_forward
is the dx path alone (x in dy's place, y in dx's).

Positions outside x (padding; bottom/right padding is implied by y's shape) read as zero
and their gradients are dropped. Each prange iteration owns whole images (their rows of
y and dx) and its own partial dW/db, so there are no races and the sums are added in a
fixed order.
"""
import numba
import numpy as np
from numba import prange

from numbanet.kernels.cpu import tuning
from numbanet.kernels.cpu.apart import address_apart, call_apart
from numbanet.kernels.cpu.activation import activate_inplace, activation_grad
from numbanet.kernels.rules import CODES, LINEAR
from numbanet.kernels.cpu.gemm import gemm_packed, no_bias, pack_a, pack_b
from numbanet.kernels.cpu.rows import copy_row, zero_row
from numbanet.kernels.cpu.slp import plain_types
from numbanet.kernels.cpu.threads import dynamic, work_items

# Windows with KH*KW*C_in up to DIRECT_KDIM run on a strip tile (tuning.strip_tile) 16
# or 32 wide, whichever pads C_out less (the wider on a tie: _shallow_tile): a first
# layer has few output channels (the article's 32 fill half of a 4x64 tile's panel) and
# so few terms per output that a tile's loads and stores weigh more than its FMAs, and
# each tile sets up its MR window addresses once for its NR channels. Deeper windows run
# on tuning.short_tile(). Measure: numbanet bench --ops conv with DIRECT_KDIM below and
# above the case's depth; the widths with conv.SHALLOW_WIDTHS reordered.
SHALLOW_WIDTHS = (32, 16)
DIRECT_KDIM = 64
# dP = dy_n @ W^T runs on the 16-wide strip tile where it pads KH*KW*C_in less than the
# short tile does (_dx_tile).
NARROW_DX_NR = 16


@numba.njit(cache=True)
def _col2im_add(dpatches, dxn, kh_, kw_, oh_, ow_, sh, sw, dil_h, dil_w, pt, pl):
    """The adjoint of the patch lowering for one image: dxn[ih, iw, c] += every entry of
    dpatches (rows, KH*KW*C_in, not packed) that was read from x[n, ih, iw, c]."""
    h, w, c_in = dxn.shape
    for oh in range(oh_):
        for ow in range(ow_):
            row = dpatches[oh * ow_ + ow]
            for kh in range(kh_):
                ih = oh * sh - pt + kh * dil_h
                if ih < 0 or ih >= h:
                    continue
                for kw in range(kw_):
                    iw = ow * sw - pl + kw * dil_w
                    if iw < 0 or iw >= w:
                        continue
                    base = (kh * kw_ + kw) * c_in
                    dst = dxn[ih, iw]
                    for c in range(c_in):
                        dst[c] += row[base + c]


@numba.njit(cache=True)
def _pack_dy_and_sum(dyn, dypack, dbt):
    """dyn (rows, C_out) -> column panels dypack[jp, row, c] (as wide as dypack's last
    axis, the dW tile's NR; zero past C_out), and dbt += its column sums: one read of dy
    serves both dW's B operand and db."""
    rows, c_out = dyn.shape
    npanels, _, width = dypack.shape
    for p in range(rows):
        src = dyn[p]
        for jp in range(npanels):
            j0 = jp * width
            dst = dypack[jp, p]
            nr = min(width, c_out - j0)
            # Slices indexed from 0 (gemm.py's _tile_in says why): with src[j0 + c] and
            # dbt[j0 + c] the loop ran at half the speed (the article's first layer, one
            # image: 31 -> 16 us; its second: 10 -> 2.7 us, scratch timing on an AMD EPYC).
            s = src[j0:j0 + nr]
            acc = dbt[j0:j0 + nr]
            for c in range(nr):
                v = s[c]
                dst[c] = v
                acc[c] += v
            for c in range(nr, width):
                dst[c] = 0


@numba.njit(cache=True)
def _pack_w(w2, c_out, kdim, wpack):
    """w2 (kdim, C_out) -> NR-column panels wpack[jp, k, c] (NR: wpack's last axis), zero
    past C_out: the register tile's B operand."""
    nrw = wpack.shape[2]
    for jp in range(wpack.shape[0]):
        j0 = jp * nrw
        nr = min(nrw, c_out - j0)
        for k in range(kdim):
            src = w2[k, j0:j0 + nr]
            dst = wpack[jp, k]
            for c in range(nr):
                dst[c] = src[c]
            for c in range(nr, nrw):
                dst[c] = 0


@plain_types
@numba.njit(cache=True)
def _panels(size, width):
    return (size + width - 1) // width


# ------------------------------------------------------------------ register tiles
#
# Each MR x NR tile of y is summed in registers by tile.direct (kernels/cpu/microkernel.py
# gives the loop nest) from a zero-padded copy of one image, starting at the bias, and
# stored once, straight into y. Against a patch matrix times packed weights, the image is
# read in place instead of being copied into MR-row panels first: on the article's second
# layer (3x3x32 -> 64, B128, AMD EPYC, one thread) the copy took 2.1 of 7.8 ms.


@numba.njit(cache=True)
def _pad_image(xn, pt, pl, xp):
    """xp[i, j*C + c] = xn[i - pt, j - pl, c], 0 outside xn; xp spans exactly the rows and
    columns the windows reach (bottom/right padding is implied by its shape)."""
    h, w, c_in = xn.shape
    wp = xp.shape[1] // c_in
    for i in range(xp.shape[0]):
        ih = i - pt
        row = xp[i]
        if ih < 0 or ih >= h:
            for q in range(row.shape[0]):
                row[q] = 0
            continue
        src = xn[ih]
        for j in range(wp):
            iw = j - pl
            dst = row[j * c_in:(j + 1) * c_in]
            if 0 <= iw < w:
                copy_row(dst, src[iw], c_in)
            else:
                zero_row(dst, c_in)


@numba.njit(cache=True)
def _forward_image(tile, xn, wpack, bpack, offs, yn, sh, sw, pt, pl, xp, bases, scratch):
    """One image's output yn (OH, OW, C_out) by `tile`'s register tiles; xp, bases and scratch
    are scratch owned by the caller. Takes the image, not (x, n): a prange index is typed
    uint64 in the parallel body but int64 where numba first types it, so every function
    it reaches would be compiled twice."""
    oh_, ow_, c_out = yn.shape
    c_in = xn.shape[2]
    mrw = tile.mr
    nrw = tile.nr
    wp = xp.shape[1] // c_in
    kdim = offs.shape[0]
    rows = oh_ * ow_
    _pad_image(xn, pt, pl, xp)
    xf = xp.reshape(xp.size)
    ym = yn.reshape((rows, c_out))
    for p0 in range(0, rows, mrw):
        # The last block's missing pixels repeat the last one: valid reads, never stored.
        for r in range(mrw):
            p = min(p0 + r, rows - 1)
            oh = p // ow_
            bases[r] = (oh * sh * wp + (p - oh * ow_) * sw) * c_in
        mr = min(mrw, rows - p0)
        for jp in range(wpack.shape[0]):
            j0 = jp * nrw
            # Full tiles go straight into y, edge tiles through `scratch`; one call site, as
            # LLVM inlines the tile's code into each.
            full = mr == mrw and j0 + nrw <= c_out
            dst, r0, c0 = (ym, p0, j0) if full else (scratch, 0, 0)
            tile.direct(xf, bases, offs, kdim, wpack[jp], bpack[jp], dst, r0, c0)
            if not full:
                nr = min(nrw, c_out - j0)
                for r in range(mr):
                    orow = ym[p0 + r]
                    t = scratch[r]
                    for c in range(nr):
                        orow[j0 + c] = t[c]


@numba.njit(cache=True)
def _cell_offsets(kh_, kw_, c_in, wp, dil_h, dil_w):
    """Offset of window cell k = (kh*KW + kw)*C + c from its window's corner in a padded
    image of wp columns (the order of w's rows), the cells dil_h rows and dil_w columns apart."""
    offs = np.empty(kh_ * kw_ * c_in, dtype=np.intp)
    for kh in range(kh_):
        for kw in range(kw_):
            for c in range(c_in):
                offs[(kh * kw_ + kw) * c_in + c] = (kh * dil_h * wp + kw * dil_w) * c_in + c
    return offs


@numba.njit(cache=True)
def _dw_image(tile, xn, dybpack, offs, pix, zero, dwt, pt, pl, xp, cells, scratch):
    """dwt += P_n^T @ dy_n for one image by the forward's register tiles with the roles
    swapped: MR window cells by NR output channels, summed over the image's pixels (pix:
    each window's corner offset) against dy's packed NR-column panels."""
    _pad_image(xn, pt, pl, xp)
    xf = xp.reshape(xp.size)
    mrw = tile.mr
    nrw = tile.nr
    kdim = offs.shape[0]
    c_out = dwt.shape[1]
    for k0 in range(0, kdim, mrw):
        for r in range(mrw):
            cells[r] = offs[min(k0 + r, kdim - 1)]
        mr = min(mrw, kdim - k0)
        for jp in range(dybpack.shape[0]):
            tile.direct(xf, cells, pix, pix.shape[0], dybpack[jp], zero, scratch, 0, 0)
            j0 = jp * nrw
            nr = min(nrw, c_out - j0)
            for r in range(mr):
                drow = dwt[k0 + r]
                t = scratch[r]
                for c in range(nr):
                    drow[j0 + c] += t[c]


@numba.njit(cache=True)
def _dx_patches(tile, dyn, dyapack, wtpack, dpatches, nobias, scratch):
    """dpatches = dyn @ W^T for one image (W^T packed in wtpack), by `tile`."""
    rows, c_out = dyn.shape
    pack_a(tile, dyn, False, rows, c_out, dyapack)
    gemm_packed(tile, dyapack, wtpack, rows, dpatches.shape[1], c_out, dpatches, False, nobias, scratch)


def _dx_tile(kdim):
    """(the 16-wide tile, whether dP = dy_n @ W^T (kdim columns) runs on it): the short
    tile pads a shallow window's columns to its NR (a first layer's 9 to 32 or 64, the
    product 3.5-7x the work), the 16-wide one (kernels/cpu/tuning.strip_tile) to 16."""
    wide, narrow = tuning.short_tile(), tuning.strip_tile(NARROW_DX_NR)
    return narrow, _panels(kdim, narrow.nr) * narrow.nr < _panels(kdim, wide.nr) * wide.nr


def _shallow_tile(w):
    """The register tile of a shallow window's forward and dW (see SHALLOW_WIDTHS); a deep
    window's kernels never run it, so they get one fixed tile, and one compiled kernel."""
    kdim = w.shape[0] * w.shape[1] * w.shape[2]
    if kdim > DIRECT_KDIM:
        return tuning.strip_tile(NARROW_DX_NR)
    c_out = w.shape[3]
    width = min(SHALLOW_WIDTHS, key=lambda nr: _panels(c_out, nr) * nr)   # the first on a tie
    return tuning.strip_tile(width)


@numba.njit(cache=True, parallel=True)
def _conv2d_forward(tile, narrow, x, w, bias, y, sh, sw, dil_h, dil_w, pad_top, pad_left, act):
    n_, oh_, ow_, c_out = y.shape
    kh_, kw_, c_in = w.shape[0], w.shape[1], w.shape[2]
    kdim = kh_ * kw_ * c_in
    rows = oh_ * ow_
    # Both tiles are compiled into one kernel per dtype; which one runs is the window's depth.
    shallow = kdim <= DIRECT_KDIM
    mrw = narrow.mr if shallow else tile.mr
    nrw = narrow.nr if shallow else tile.nr
    nbp = _panels(c_out, nrw)
    wpack = np.empty((nbp, kdim, nrw), dtype=w.dtype)
    _pack_w(w.reshape((kdim, c_out)), c_out, kdim, wpack)
    # Bias panels zero-padded like wpack (all zero for "no bias"): the tiles start from
    # them. np.empty and a loop, not np.zeros: under parallel=True every np.zeros becomes
    # a parfor of its own, about a second of compile time each per dtype.
    bpack = np.empty((nbp, nrw), dtype=w.dtype)
    for jp in range(nbp):
        for c in range(nrw):
            bpack[jp, c] = 0
    for j in range(bias.shape[0]):
        bpack[j // nrw, j % nrw] = bias[j]
    hp = (oh_ - 1) * sh + (kh_ - 1) * dil_h + 1
    wp = (ow_ - 1) * sw + (kw_ - 1) * dil_w + 1
    offs = _cell_offsets(kh_, kw_, c_in, wp, dil_h, dil_w)
    # The image's work is compiled apart (apart.py), once per tile: the look-up reads no
    # element of these placeholders, only their types (an image as a view that exists for
    # an empty batch too, where x[0] would not).
    none2 = np.empty((0, 0), dtype=x.dtype)
    noidx = np.empty(0, dtype=np.intp)
    x0 = x.reshape((n_ * x.shape[1], x.shape[2], x.shape[3]))
    y0 = y.reshape((n_ * oh_, ow_, c_out))
    image_narrow = address_apart(_forward_image, narrow, x0, wpack, bpack, offs, y0, sh, sw, pad_top, pad_left,
                                 none2, noidx, none2)
    image_tile = address_apart(_forward_image, tile, x0, wpack, bpack, offs, y0, sh, sw, pad_top, pad_left,
                               none2, noidx, none2)
    for n in prange(n_):
        scratch = np.empty((mrw, nrw), dtype=x.dtype)
        xp = np.empty((hp, wp * c_in), dtype=x.dtype)
        bases = np.empty(mrw, dtype=np.intp)
        if shallow:
            call_apart(image_narrow, _forward_image, narrow, x[n], wpack, bpack, offs, y[n], sh, sw, pad_top,
                       pad_left, xp, bases, scratch)
        else:
            call_apart(image_tile, _forward_image, tile, x[n], wpack, bpack, offs, y[n], sh, sw, pad_top, pad_left,
                       xp, bases, scratch)
        if act != LINEAR:
            # The image's output just written, still in cache (86 KB for the article's
            # first layer, in L2): no second pass over all of y, no parallel region.
            yn = y[n].reshape(rows * c_out)
            activate_inplace(act, yn)


@numba.njit(cache=True, parallel=True)
def _conv2d_backward(tile, narrow, dwtile, narrow_dx, x, w, dy, y, act, dx, compute_dx, dw, db, sh, sw, dil_h, dil_w,
                     pad_top, pad_left, nchunks):
    n_, oh_, ow_, c_out = dy.shape
    kh_, kw_, c_in = w.shape[0], w.shape[1], w.shape[2]
    kdim = kh_ * kw_ * c_in
    rows = oh_ * ow_
    mrw = tile.mr
    nrw = tile.nr
    # W^T packed once: dP = dy_n @ W^T needs it as the B operand (c_out deep, kdim wide),
    # in the panels of the tile dP runs on (narrow_dx: see _dx_tile; the other one empty).
    wtpack = np.empty((0 if narrow_dx else _panels(kdim, nrw), c_out, nrw), dtype=w.dtype)
    wtpack_n = np.empty((_panels(kdim, narrow.nr) if narrow_dx else 0, c_out, narrow.nr), dtype=w.dtype)
    if narrow_dx:
        pack_b(narrow, w.reshape((kdim, c_out)), True, kdim, c_out, wtpack_n)
    else:
        pack_b(tile, w.reshape((kdim, c_out)), True, kdim, c_out, wtpack)
    # Not np.zeros (a parfor each under parallel=True): each chunk clears its own below.
    dw_part = np.empty((nchunks, kdim, c_out), dtype=w.dtype)
    db_part = np.empty((nchunks, c_out), dtype=w.dtype)
    # dW's register tile, as the forward's: a strip tile for a shallow window (dwtile).
    shallow = kdim <= DIRECT_KDIM
    dmr = dwtile.mr if shallow else mrw
    dnr = dwtile.nr if shallow else nrw
    wp = (ow_ - 1) * sw + (kw_ - 1) * dil_w + 1
    offs = _cell_offsets(kh_, kw_, c_in, wp, dil_h, dil_w)
    pix = np.empty(rows, dtype=np.intp)
    for p in range(rows):
        oh = p // ow_
        pix[p] = (oh * sh * wp + (p - oh * ow_) * sw) * c_in
    zero = np.empty(dnr, dtype=w.dtype)
    for c in range(dnr):
        zero[c] = 0
    # An image's dW and dP are compiled apart (apart.py), once per tile: the look-up reads no
    # element of these placeholders, only their types (x0: see _conv2d_forward).
    x0 = x.reshape((n_ * x.shape[1], x.shape[2], x.shape[3]))
    none2 = np.empty((0, 0), dtype=x.dtype)
    none3 = np.empty((0, 0, 0), dtype=x.dtype)
    none1 = np.empty(0, dtype=x.dtype)
    noidx = np.empty(0, dtype=np.intp)
    dw_narrow = address_apart(_dw_image, dwtile, x0, none3, offs, pix, zero, dw_part[0], pad_top, pad_left, none2,
                              noidx, none2)
    dw_tile = address_apart(_dw_image, tile, x0, none3, offs, pix, zero, dw_part[0], pad_top, pad_left, none2,
                            noidx, none2)
    dp_narrow = address_apart(_dx_patches, narrow, none2, none3, wtpack_n, none2, none1, none2)
    dp_tile = address_apart(_dx_patches, tile, none2, none3, wtpack, none2, none1, none2)
    for t in prange(nchunks):
        lo = t * n_ // nchunks
        hi = (t + 1) * n_ // nchunks
        dybpack = np.empty((_panels(c_out, dnr), rows, dnr), dtype=x.dtype)
        dyapack = np.empty((0 if narrow_dx else _panels(rows, mrw), c_out, mrw), dtype=x.dtype)
        dyapack_n = np.empty((_panels(rows, narrow.mr) if narrow_dx else 0, c_out, narrow.mr), dtype=x.dtype)
        dpatches = np.empty((rows, kdim), dtype=x.dtype)
        # for dW's tiles and the dP GEMMs' edge tiles
        scratch = np.empty((max(mrw, narrow.mr, dwtile.mr), max(nrw, narrow.nr, dwtile.nr)), dtype=x.dtype)
        nobias = np.empty(0, dtype=x.dtype)
        xp = np.empty(((oh_ - 1) * sh + (kh_ - 1) * dil_h + 1, wp * c_in), dtype=x.dtype)
        cells = np.empty(dmr, dtype=np.intp)
        dzn = np.empty((rows if act != LINEAR else 0, c_out), dtype=x.dtype)
        dwt = dw_part[t]
        dbt = db_part[t]
        for p in range(kdim):
            for j in range(c_out):
                dwt[p, j] = 0
        for j in range(c_out):
            dbt[j] = 0
        for n in range(lo, hi):
            dyn = dy[n].reshape((rows, c_out))
            if act != LINEAR:
                # dz = dy * act'(y) for this image only, into a buffer that stays in
                # cache for the packing below: the whole dz (11 MB for the article's
                # first layer) is never written out and read back.
                activation_grad(act, y[n].reshape(rows * c_out), dy[n].reshape(rows * c_out),
                                dzn.reshape(rows * c_out))
                dyn = dzn
            _pack_dy_and_sum(dyn, dybpack, dbt)
            if shallow:
                call_apart(dw_narrow, _dw_image, dwtile, x[n], dybpack, offs, pix, zero, dwt, pad_top, pad_left, xp,
                           cells, scratch)
            else:
                call_apart(dw_tile, _dw_image, tile, x[n], dybpack, offs, pix, zero, dwt, pad_top, pad_left, xp,
                           cells, scratch)
            if compute_dx:
                if narrow_dx:
                    call_apart(dp_narrow, _dx_patches, narrow, dyn, dyapack_n, wtpack_n, dpatches, nobias, scratch)
                else:
                    call_apart(dp_tile, _dx_patches, tile, dyn, dyapack, wtpack, dpatches, nobias, scratch)
                dxn = dx[n]
                for ih in range(dxn.shape[0]):
                    for iw in range(dxn.shape[1]):
                        for c in range(c_in):
                            dxn[ih, iw, c] = 0
                _col2im_add(dpatches, dxn, kh_, kw_, oh_, ow_, sh, sw, dil_h, dil_w, pad_top, pad_left)
    # A serial reduction: dW is small next to the work above, and a third parfor would
    # cost more compile time than it saves run time.
    dwmat = dw.reshape((kdim, c_out))
    for p in range(kdim):
        for j in range(c_out):
            dwmat[p, j] = dw_part[0, p, j]
        for t in range(1, nchunks):
            for j in range(c_out):
                dwmat[p, j] += dw_part[t, p, j]
    for j in range(c_out):
        db[j] = db_part[0, j]
        for t in range(1, nchunks):
            db[j] += db_part[t, j]


def conv2d_backward(x, w, dy, dx, dwdb, sh, sw, pad_top, pad_left, y=None, activation="linear", dil_h=1, dil_w=1):
    """dx (skipped when None), dw and db of L given dL/dy = dy; dwdb holds dw's
    KH*KW*C_in rows and then db; arrays validated and C-contiguous. With an activation,
    dy is the gradient of y = act(conv + bias), the forward's output, and each image's
    dz = dy * act'(y) is formed where dy is read."""
    fan_in = dwdb.shape[0] - 1
    dw = dwdb[:fan_in].reshape(w.shape)
    db = dwdb[fan_in]
    # Fixed runs of images, several per thread, each with its own partial dW/db summed in
    # run order: dw and db do not depend on which thread ran which run, and a thread that
    # loses its core to another process leaves its unstarted runs to the other thread.
    nchunks = work_items(x.shape[0])
    # An empty dx stands in for None: one compiled kernel per dtype, not two.
    compute_dx = dx is not None
    if not compute_dx:
        dx = np.empty((0, 0, 0, 0), dtype=x.dtype)
    # dy stands in for y when there is no activation (never read): one compiled kernel.
    narrow, narrow_dx = _dx_tile(w.shape[0] * w.shape[1] * w.shape[2])
    dynamic(_conv2d_backward, tuning.short_tile(), narrow, _shallow_tile(w), narrow_dx, x, w, dy,
            dy if y is None else y, CODES[activation], dx, compute_dx, dw, db, sh, sw, dil_h, dil_w, pad_top, pad_left,
            nchunks)


def conv2d_forward(x, w, bias, y, sh, sw, pad_top, pad_left, activation="linear", dil_h=1, dil_w=1):
    """y = act(conv(x, w) (+ bias)), window cells dil_h rows and dil_w columns apart (the
    dilation); arrays validated and C-contiguous, y allocated."""
    # One image per prange item, handed out one at a time (threads.dynamic).
    dynamic(_conv2d_forward, tuning.short_tile(), _shallow_tile(w), x, w,
            no_bias(y.dtype) if bias is None else bias, y, sh, sw, dil_h, dil_w, pad_top, pad_left, CODES[activation])


@numba.njit(cache=True, parallel=True)
def _conv2d_transpose_forward(tile, x, w, bias, y, sh, sw, dil_h, dil_w, pad_top, pad_left):
    # conv2d_backward's dx path alone, image by image: x plays dy, y plays dx, and y
    # starts at the bias instead of 0.
    n_, ih_, iw_, c_out = x.shape
    kh_, kw_, f = w.shape[0], w.shape[1], w.shape[2]
    kdim = kh_ * kw_ * f
    rows = ih_ * iw_
    wtpack = np.empty((_panels(kdim, tile.nr), c_out, tile.nr), dtype=w.dtype)
    pack_b(tile, w.reshape((kdim, c_out)), True, kdim, c_out, wtpack)
    for n in prange(n_):
        xapack = np.empty((_panels(rows, tile.mr), c_out, tile.mr), dtype=x.dtype)
        dpatches = np.empty((rows, kdim), dtype=x.dtype)
        scratch = np.empty((tile.mr, tile.nr), dtype=x.dtype)
        nobias = np.empty(0, dtype=x.dtype)
        pack_a(tile, x[n].reshape((rows, c_out)), False, rows, c_out, xapack)
        gemm_packed(tile, xapack, wtpack, rows, kdim, c_out, dpatches, False, nobias, scratch)
        yn = y[n]
        for i in range(yn.shape[0]):
            for j in range(yn.shape[1]):
                for c in range(f):
                    if bias.shape[0] > 0:
                        yn[i, j, c] = bias[c]
                    else:
                        yn[i, j, c] = 0
        _col2im_add(dpatches, yn, kh_, kw_, ih_, iw_, sh, sw, dil_h, dil_w, pad_top, pad_left)


def conv2d_transpose_forward(x, w, bias, y, sh, sw, pad_top, pad_left, dil_h=1, dil_w=1):
    """y = the input gradient of the conv2d (w, strides, padding, dilation) from y's shape
    to x's, given x as its output gradient, + bias; arrays validated and C-contiguous."""
    narrow, narrow_dx = _dx_tile(w.shape[0] * w.shape[1] * w.shape[2])
    dynamic(_conv2d_transpose_forward, narrow if narrow_dx else tuning.short_tile(), x, w,
            no_bias(y.dtype) if bias is None else bias, y, sh, sw, dil_h, dil_w, pad_top, pad_left)
