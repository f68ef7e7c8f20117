"""Conv2D on the gpu as implicit GEMM: the tiled kernel of kernels/gpu/gemm.py with operand
loaders that compute the im2col patch index on the fly, so no patch matrix is ever
written to global memory (it would be KH*KW times the input: 9x for a 3x3 layer).

    forward  y[(n,oh,ow), co]   = sum_(kh,kw,ci) x[n, oh*sh-pt+kh*dh, ow*sw-pl+kw*dw, ci] * w[(kh,kw,ci), co]
    dw       dw[(kh,kw,ci), co] = sum_(n,oh,ow)  patch[(n,oh,ow), (kh,kw,ci)] * dy[(n,oh,ow), co]
    dx       dx[(n,h,w), ci]    = sum_(kh,kw,co) dy[n, (h+pt-kh*dh)/sh, (w+pl-kw*dw)/sw, co] * w[kh,kw,ci,co]
                                  (terms where the division is inexact or out of range are 0)

dx is a gather: each dx element is owned by one thread, which sums every dy position that
touches it, instead of scattering dy into dx with atomics. dw is owned per output by one
thread that loops over the batch and positions in a fixed order (split over K into
partials that one more kernel adds in order, when the layer's few weights would leave
the GPU idle: kernels/gpu/gemm.py); db is the same GEMM's extra row (a row of ones in
patches^T), so one launch gives both. No float atomics anywhere: gradients are
bit-identical run to run. NHWC puts channels last, so the K index of each loader runs fastest along the
contiguous channel axis and tile loads stay coalesced.

conv2d_transpose_forward is the dx GEMM alone (x in dy's place, y in dx's, the bias in
its epilogue). dh, dw: the dilation (dil_h, dil_w below).

geo = (H, W, C_in, OH, OW, KH, KW, sh, sw, pt, pl, C_out, dil_h, dil_w), one tuple for
every loader.
"""
import numpy as np

from numbanet.kernels import rules
from numbanet.kernels.gpu import activation as act
from numbanet.kernels.gpu import gemm
from numbanet.kernels.gpu.launch import ACC, inlined, kernel_family, scratch, unravel3


@inlined
def _patch(x, geo, i, p, zero):
    """Element (i, p) of the virtual im2col matrix: row i = (n, oh, ow), column p = (kh, kw, ci).
    A padding position gives an exact zero (never x * 0, which is NaN for an inf input)."""
    H, W, C, OH, OW, KH, KW, sh, sw, pt, pl, CO, dil_h, dil_w = geo
    n, oh, ow = unravel3(i, OH, OW)
    kh, kw, ci = unravel3(p, KW, C)
    h = oh * sh - pt + kh * dil_h
    w = ow * sw - pl + kw * dil_w
    if h < 0 or h >= H or w < 0 or w >= W:
        return zero
    return x[n, h, w, ci]


@inlined
def _patch_t_ones(x, geo, p, i, zero):
    """Row p of the dw GEMM's A (patches^T), with a row of ones appended (p = KH*KW*C_in):
    that extra output row is dy's column sums, db, computed by the same GEMM as dw."""
    H, W, C, OH, OW, KH, KW, sh, sw, pt, pl, CO, dil_h, dil_w = geo
    if p == KH * KW * C:
        return zero + 1
    return _patch(x, geo, i, p, zero)


@inlined
def _dy_gather(dy, geo, i, p, zero):
    """Row i = (n, h, w) of dx, column p = (kh, kw, co): the dy element that input cell
    feeds through tap (kh, kw), or an exact 0 when no output position uses it."""
    H, W, C, OH, OW, KH, KW, sh, sw, pt, pl, CO, dil_h, dil_w = geo
    n, h, w = unravel3(i, H, W)
    kh, kw, co = unravel3(p, KW, CO)
    th = h + pt - kh * dil_h
    tw = w + pl - kw * dil_w
    if th < 0 or tw < 0:
        return zero
    oh = th // sh
    ow = tw // sw
    if oh * sh != th or ow * sw != tw or oh >= OH or ow >= OW:
        return zero
    return dy[n, oh, ow, co]


@inlined
def _w_for_dx(w, geo, p, j, zero):
    """Row p = (kh, kw, co), column j = ci of the dx GEMM's B operand: w[kh, kw, ci, co]."""
    H, W, C, OH, OW, KH, KW, sh, sw, pt, pl, CO, dil_h, dil_w = geo
    kh, kw, co = unravel3(p, KW, CO)
    return w[kh, kw, j, co]


# which -> (load_a, load_b, a_k_fast, b_n_fast)
_OPERANDS = {
    # A = patches (ci fastest along K), B = w as a (KH*KW*C_in, C_out) matrix.
    "forward": (_patch, gemm.element, True, True),
    # A = patches^T and a row of ones: rows (kh, kw, ci), contiguous in ci, so M runs
    # fastest; the extra row gives db.
    "dwdb": (_patch_t_ones, gemm.element, False, True),
    # A = gathered dy (co fastest along K); B = w read as [kh, kw, ci, co]: co (its K
    # index) is contiguous, so K runs fastest.
    "dx": (_dy_gather, _w_for_dx, True, False),
}


@kernel_family
def conv_kernel(which, dtype, config, activation):
    load_a, load_b, a_k_fast, b_n_fast = _OPERANDS[which]
    return gemm.make_tiled_kernel(load_a, load_b, a_k_fast, b_n_fast, ACC[dtype], config, activation)


def _geo(x, w, dy_or_y, sh, sw, pt, pl, dil_h, dil_w):
    n, h, wd, c = x.shape
    kh, kw, _, co = w.shape
    oh, ow = dy_or_y.shape[1], dy_or_y.shape[2]
    return (h, wd, c, oh, ow, kh, kw, sh, sw, pt, pl, co, dil_h, dil_w)


def _family(which, dtype):
    name = np.dtype(dtype).name
    return lambda config, activation: conv_kernel(which, name, config, activation)


def conv2d_forward(x, w, bias, y, sh, sw, pad_top, pad_left, activation="linear", dil_h=1, dil_w=1):
    geo = _geo(x, w, y, sh, sw, pad_top, pad_left, dil_h, dil_w)
    kh, kw, c, co = w.shape
    m = y.shape[0] * y.shape[1] * y.shape[2]
    gemm.launch_tiled(_family("forward", x.dtype), x, w.reshape(kh * kw * c, co), bias,
                      y.reshape(m, co), m, co, kh * kw * c, geo, activation)


def conv2d_backward(x, w, dy, dx, dwdb, sh, sw, pad_top, pad_left, y=None, activation="linear", dil_h=1, dil_w=1):
    """dx (None to skip) and dwdb = [dw rows; db] written in full, each by one GEMM;
    every reduction in a fixed order. With an activation, dy is the gradient of the
    forward's output y = act(conv + bias): dz = dy * act'(y) is formed first, by the
    elementwise kernel relu_backward etc. launch, into a scratch buffer (a second
    pass here, kept behind the cpu's signature; folding it into the GEMM loaders would
    make two more conv kernel variants per dtype)."""
    if activation != "linear":
        dz = scratch("conv2d-dz", (dy.size,), dy.dtype)
        act.backward(rules.CODES[activation], y.reshape(y.size), dy.reshape(dy.size), dz)
        dy = dz.reshape(dy.shape)
    geo = _geo(x, w, dy, sh, sw, pad_top, pad_left, dil_h, dil_w)
    kh, kw, c, co = w.shape
    m = dy.shape[0] * dy.shape[1] * dy.shape[2]
    gemm.launch_tiled(_family("dwdb", x.dtype), x, dy.reshape(m, co), None, dwdb,
                      kh * kw * c + 1, co, m, geo)
    if dx is not None:
        n, h, wd, _ = x.shape
        gemm.launch_tiled(_family("dx", x.dtype), dy, w, None, dx.reshape(n * h * wd, c),
                          n * h * wd, c, kh * kw * co, geo)


def conv2d_transpose_forward(x, w, bias, y, sh, sw, pad_top, pad_left, dil_h=1, dil_w=1):
    """y = the input gradient of the conv2d (w, strides, padding) from y's shape to x's,
    given x as its output gradient, + bias: conv2d_backward's dx GEMM with the bias in
    its epilogue."""
    geo = _geo(y, w, x, sh, sw, pad_top, pad_left, dil_h, dil_w)
    kh, kw, f, co = w.shape
    n, h, wd, _ = y.shape
    gemm.launch_tiled(_family("dx", x.dtype), x, w, bias, y.reshape(n * h * wd, f), n * h * wd, f, kh * kw * co, geo)
