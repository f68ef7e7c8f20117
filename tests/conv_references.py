"""NumPy references for the convolutions, written from Keras's rules with direct loops and
shared by the kernel tests (tests/kernels/test_conv.py) and the layer tests
(tests/nn/layers/test_conv.py): independent of kernels.shapes and of the kernels."""
import numpy as np


def geometry(h, w, kh, kw, strides, padding):
    """(oh, ow, pt, pl, pb, pr), written here independently of kernels.shapes."""
    sh, sw = strides
    if padding == "valid":
        pt = pl = pb = pr = 0
    elif padding == "same":
        th = max((-(-h // sh) - 1) * sh + kh - h, 0)
        tw = max((-(-w // sw) - 1) * sw + kw - w, 0)
        pt, pl, pb, pr = th // 2, tw // 2, th - th // 2, tw - tw // 2
    else:
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        pt, pl, pb, pr = ph, pw, ph, pw
    return (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1, pt, pl, pb, pr


def dilated_ref(x, w, bias, strides, dilation, pt, pl, oh, ow):
    """Direct loops: y[n, i, j] = sum over window cells of x[n, i*sh - pt + a*dh, j*sw - pl + b*dw] @ w[a, b]."""
    n, h, wd, _ = x.shape
    kh, kw, _, co = w.shape
    y = np.zeros((n, oh, ow, co))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    ih, iw = i * strides[0] - pt + a * dilation[0], j * strides[1] - pl + b * dilation[1]
                    if 0 <= ih < h and 0 <= iw < wd:
                        y[:, i, j] += x[:, ih, iw].astype(np.float64) @ w[a, b].astype(np.float64)
    return y + (0 if bias is None else bias)


def dilated_geometry(h, w, kh, kw, strides, dilation, padding):
    """(oh, ow, pt, pl), written here from Keras's rules: the window spans (k-1)*d + 1
    cells; "causal" pads span-1 before and nothing after."""
    kh_span, kw_span = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    if padding == "causal":
        return -(-h // strides[0]), -(-w // strides[1]), kh_span - 1, kw_span - 1
    oh, ow, pt, pl, _, _ = geometry(h, w, kh_span, kw_span, strides, padding)
    return oh, ow, pt, pl


def transpose_ref(x, w, bias, strides, padding, output_padding, dilation):
    """Direct loops, from Keras 3's rules written out here: out = (L-1)*s + span - 2*pad + extra
    (TensorFlow's conv2d_transpose), scattering x[i] @ w[k]^T to y[i*s - pt + k*d]."""
    n, h, wd, c_in = x.shape
    kh, kw, f, _ = w.shape
    outs, pts = [], []
    for size, k, s, d, axis in ((h, kh, strides[0], dilation[0], 0), (wd, kw, strides[1], dilation[1], 1)):
        span = (k - 1) * d + 1
        extra = None if output_padding is None else output_padding[axis]
        if padding == "valid":
            out = size * s + max(span - s, 0) if extra is None else (size - 1) * s + span + extra
            pt = 0
        else:
            out = size * s if extra is None else (size - 1) * s + span - 2 * (span // 2) + extra
            # the conv from out to size cells pads top by the smaller half of what "same" needs
            total = max((size - 1) * s + span - out, 0)
            pt = total // 2
        outs.append(out)
        pts.append(pt)
    y = np.zeros((n, outs[0], outs[1], f))
    for i in range(h):
        for j in range(wd):
            for a in range(kh):
                for b in range(kw):
                    oi, oj = i * strides[0] - pts[0] + a * dilation[0], j * strides[1] - pts[1] + b * dilation[1]
                    if 0 <= oi < outs[0] and 0 <= oj < outs[1]:
                        y[:, oi, oj] += x[:, i, j].astype(np.float64) @ w[a, b].astype(np.float64).T
    return y + (0 if bias is None else bias)
