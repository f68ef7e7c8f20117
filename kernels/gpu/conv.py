"""Conv2D on the gpu as implicit GEMM: the tiled kernel of kernels/gpu/gemm.py with operand
loaders that compute the im2col patch index on the fly, so no patch matrix is ever
written to global memory (it would be KH*KW times the input: 9x for a 3x3 layer).

    forward  y[(n,oh,ow), co]   = sum_(kh,kw,ci) x[n, oh*sh-pt+kh, ow*sw-pl+kw, ci] * w[(kh,kw,ci), co]
    dw       dw[(kh,kw,ci), co] = sum_(n,oh,ow)  patch[(n,oh,ow), (kh,kw,ci)] * dy[(n,oh,ow), co]
    dx       dx[(n,h,w), ci]    = sum_(kh,kw,co) dy[n, (h+pt-kh)/sh, (w+pl-kw)/sw, co] * w[kh,kw,ci,co]
                                  (terms where the division is inexact or out of range are 0)

dx is a gather: each dx element is owned by one thread, which sums every dy position that
touches it, instead of scattering dy into dx with atomics. dw is owned per output by one
thread that loops over the batch and positions in a fixed order, and db is a column sum of
dy (kernels/gpu/reduce.py): no float atomics anywhere, so gradients are bit-identical run
to run. NHWC puts channels last, so the K index of each loader runs fastest along the
contiguous channel axis and tile loads stay coalesced.

geo = (H, W, C_in, OH, OW, KH, KW, sh, sw, pt, pl, C_out), one tuple for every loader.
"""
import numpy as np
from numba import cuda

from numbanet.kernels.gpu import gemm, reduce


@cuda.jit(device=True, inline=True)
def _patch(x, geo, i, p):
    """Element (i, p) of the virtual im2col matrix: row i = (n, oh, ow), column p = (kh, kw, ci)."""
    H, W, C, OH, OW, KH, KW, sh, sw, pt, pl, CO = geo
    n = i // (OH * OW)
    r = i - n * (OH * OW)
    oh = r // OW
    ow = r - oh * OW
    kh = p // (KW * C)
    q = p - kh * (KW * C)
    kw = q // C
    ci = q - kw * C
    h = oh * sh - pt + kh
    w = ow * sw - pl + kw
    if h < 0 or h >= H or w < 0 or w >= W:
        # A typed zero: x[0, 0, 0, 0] * 0 would turn one inf in image 0 into a NaN in
        # every padded border of the batch.
        return x.dtype.type(0)
    return x[n, h, w, ci]


@cuda.jit(device=True, inline=True)
def _patch_t(x, geo, p, i):
    return _patch(x, geo, i, p)


@cuda.jit(device=True, inline=True)
def _rowmajor(b, geo, p, j):
    return b[p, j]


@cuda.jit(device=True, inline=True)
def _dy_gather(dy, geo, i, p):
    """Row i = (n, h, w) of dx, column p = (kh, kw, co): the dy element that input cell
    feeds through tap (kh, kw), or 0 when no output position uses it."""
    H, W, C, OH, OW, KH, KW, sh, sw, pt, pl, CO = geo
    n = i // (H * W)
    r = i - n * (H * W)
    h = r // W
    w = r - h * W
    kh = p // (KW * CO)
    q = p - kh * (KW * CO)
    kw = q // CO
    co = q - kw * CO
    th = h + pt - kh
    tw = w + pl - kw
    zero = dy.dtype.type(0)  # not dy[0, 0, 0, 0] * 0: see _patch
    if th < 0 or tw < 0:
        return zero
    oh = th // sh
    ow = tw // sw
    if oh * sh != th or ow * sw != tw or oh >= OH or ow >= OW:
        return zero
    return dy[n, oh, ow, co]


@cuda.jit(device=True, inline=True)
def _w_for_dx(w, geo, p, j):
    """Row p = (kh, kw, co), column j = ci of the dx GEMM's B operand: w[kh, kw, ci, co]."""
    H, W, C, OH, OW, KH, KW, sh, sw, pt, pl, CO = geo
    kh = p // (KW * CO)
    q = p - kh * (KW * CO)
    kw = q // CO
    co = q - kw * CO
    return w[kh, kw, j, co]


_kernels = {}


def _kernel(which, dtype, config):
    key = (which, np.dtype(dtype), config)
    if key not in _kernels:
        acc = gemm._ACC[key[1]]
        if which == "forward":
            # A = patches (ci fastest along K), B = w as a (KH*KW*C_in, C_out) matrix.
            k = gemm.make_tiled_kernel(_patch, _rowmajor, True, True, acc, config)
        elif which == "dw":
            # A = patches^T: its rows are (kh, kw, ci), contiguous in ci, so M runs fastest.
            k = gemm.make_tiled_kernel(_patch_t, _rowmajor, False, True, acc, config)
        else:
            # A = gathered dy (co fastest along K); B = w read as [kh, kw, ci, co]: co
            # (its K index) is contiguous, so K runs fastest.
            k = gemm.make_tiled_kernel(_dy_gather, _w_for_dx, True, False, acc, config)
        _kernels[key] = k
    return _kernels[key]


def _geo(x, w, dy_or_y, sh, sw, pt, pl):
    n, h, wd, c = x.shape
    kh, kw, _, co = w.shape
    oh, ow = dy_or_y.shape[1], dy_or_y.shape[2]
    return (h, wd, c, oh, ow, kh, kw, sh, sw, pt, pl, co)


def conv2d_forward(x, w, bias, y, sh, sw, pad_top, pad_left):
    geo = _geo(x, w, y, sh, sw, pad_top, pad_left)
    kh, kw, c, co = w.shape
    m = y.shape[0] * y.shape[1] * y.shape[2]
    gemm.launch_tiled(lambda cfg: _kernel("forward", x.dtype, cfg), x, w.reshape(kh * kw * c, co), bias,
                      y.reshape(m, co), m, co, kh * kw * c, geo)


def conv2d_backward(x, w, dy, dx, dw, db, sh, sw, pad_top, pad_left):
    """dx (None to skip), dw, db written in full; every reduction in a fixed order."""
    geo = _geo(x, w, dy, sh, sw, pad_top, pad_left)
    kh, kw, c, co = w.shape
    m = dy.shape[0] * dy.shape[1] * dy.shape[2]
    dy2 = dy.reshape(m, co)
    gemm.launch_tiled(lambda cfg: _kernel("dw", x.dtype, cfg), x, dy2, None, dw.reshape(kh * kw * c, co),
                      kh * kw * c, co, m, geo)
    reduce.column_sum(dy2, db)
    if dx is not None:
        n, h, wd, _ = x.shape
        gemm.launch_tiled(lambda cfg: _kernel("dx", x.dtype, cfg), dy, w, None, dx.reshape(n * h * wd, c),
                          n * h * wd, c, kh * kw * co, geo)
