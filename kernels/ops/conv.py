"""The conv family: conv2d with a fused bias and activation, and conv2d_backward, which
back-propagates through that activation too; conv2d_transpose (the input gradient of a
conv2d, run forward) and its backward; all on kernels/<backend>/conv.py. Every conv takes
a dilation (window cells dilation_rate apart), and conv2d also "causal" padding, which
Conv1D (a conv2d over a (N, 1, W, C) view) needs."""

from numbanet.kernels import shapes
from numbanet.kernels.ops import cost
from numbanet.kernels.ops.declare import Family, Op, op_pair

# The activations conv2d applies as it writes y and conv2d_backward differentiates from
# that y (kernels/rules.py's, each with a gradient that is a function of its output):
# a GEMM's, and leaky_relu with Keras's default slope 0.2.
FUSED_ACTIVATIONS = shapes.EPILOGUE_ACTIVATIONS + ("leaky_relu",)


def conv_geometry(op, padding, in_hw, kernel_hw, strides, dilation):
    """-> (out_h, out_w, pt, pl, pb, pr) of a conv whose window cells are dilation apart
    (so it spans (K-1)*d + 1 cells): "valid", "same" and explicit padding as
    shapes.resolve_padding rules on that span; "causal" pads (span-1) rows on top and
    columns on the left and nothing below or right, so output (i, j) reads no input past
    (i, j) (Keras's Conv1D "causal" on a height-1 image)."""
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel_hw, dilation))
    if isinstance(padding, str) and padding.lower() == "causal":
        (h, w), (sh, sw) = in_hw, strides
        pt, pl = span[0] - 1, span[1] - 1
        return (h - 1) // sh + 1, (w - 1) // sw + 1, pt, pl, 0, 0
    return shapes.resolve_padding(op, padding, in_hw, span, strides)


def _check_x_w(op, x, w, w_layout, in_axis, strides, dilation):
    """x NHWC and a 4-D kernel of the same float type whose axis `in_axis` is x's channels;
    -> (strides, dilation) as pairs."""
    shapes.check_float(op, "x", x)
    shapes.check_float(op, "w", w)
    shapes.check_ndim(op, "x", x, 4, "NHWC")
    shapes.check_ndim(op, "w", w, 4, w_layout)
    shapes.check_same_dtype(op, [("x", x), ("w", w)])
    shapes.check_nonempty(op, "x", x)
    shapes.check_nonempty(op, "w", w)
    if x.shape[3] != w.shape[in_axis]:
        raise ValueError(f"{op}: x has {x.shape[3]} channels but w expects {w.shape[in_axis]} "
                         f"(x.shape={tuple(x.shape)}, w.shape={tuple(w.shape)})")
    return shapes.pair(op, "strides", strides), shapes.pair(op, "dilation_rate", dilation)


def conv2d_shapes(op, x, w, strides, padding, dilation=(1, 1)):
    """-> (strides, dilation, (out_h, out_w, pt, pl, pb, pr))."""
    strides, dilation = _check_x_w(op, x, w, "(KH, KW, C_in, C_out)", 2, strides, dilation)
    geometry = conv_geometry(op, padding, x.shape[1:3], w.shape[0:2], strides, dilation)
    return strides, dilation, geometry


def check_activation_output(op, activation, y, dy):
    """y, the forward output an activation's gradient is taken from: given exactly when
    activation is not "linear", then of dy's shape and dtype."""
    if activation == "linear":
        if y is not None:
            raise ValueError(f"{op}: y is only read to back-propagate through an activation; pass it with "
                             f"one of {FUSED_ACTIVATIONS[1:]}, not with activation=None")
        return
    if y is None:
        raise TypeError(f"{op}: activation={activation!r} needs y, the activated forward output "
                        f"(the array conv2d returned), got None")
    shapes.check_float(op, "y", y)
    shapes.check_same_dtype(op, [("dy", dy), ("y", y)])
    shapes.check_shape(op, "y", y, tuple(dy.shape))


def conv2d(be, x, w, bias=None, *, strides=(1, 1), padding="valid", activation=None, dilation_rate=(1, 1)):
    """NHWC x, (KH, KW, C_in, C_out) w -> NHWC y = act(conv + bias per output channel);
    activation as in matmul."""
    op = "conv2d"
    activation = shapes.check_activation(op, activation, FUSED_ACTIVATIONS)
    x, w, bias = be._prepare(op, ("bias",), x=x, w=w, bias=bias)
    (sh, sw), (rh, rw), (oh, ow, pt, pl, _, _) = conv2d_shapes(op, x, w, strides, padding, dilation_rate)
    if bias is not None:
        shapes.check_float(op, "bias", bias)
        shapes.check_same_dtype(op, [("x", x), ("bias", bias)])
        shapes.check_shape(op, "bias", bias, (w.shape[3],))
    y = be.empty((x.shape[0], oh, ow, w.shape[3]), x.dtype)
    be.conv.conv2d_forward(x, w, bias, y, sh, sw, pt, pl, activation, rh, rw)
    return y


def conv2d_backward(be, x, w, dy, *, strides=(1, 1), padding="valid", compute_dx=True, grads=None,
                    activation=None, y=None, dilation_rate=(1, 1)):
    """-> (dx, dw, db); dx is None when compute_dx=False (a first layer needs no dx).
    dw and db are views of one buffer (dw, then db): `grads` when given, as in
    dense_backward.

    With activation (one of FUSED_ACTIVATIONS but "linear", as conv2d applied it) and y,
    the conv2d output it produced, dy is the gradient of that activated y and the op
    back-propagates through the activation first (dz = dy * act'(y), relu's zeroed
    only where y <= 0), as relu_backward etc. would, without the separate pass: the cpu
    forms dz image by image where dy is read."""
    op = "conv2d_backward"
    activation = shapes.check_activation(op, activation, FUSED_ACTIVATIONS)
    x, w, dy, y = be._prepare(op, ("y",), x=x, w=w, dy=dy, y=y)
    (sh, sw), (rh, rw), (oh, ow, pt, pl, _, _) = conv2d_shapes(op, x, w, strides, padding, dilation_rate)
    shapes.check_float(op, "dy", dy)
    shapes.check_same_dtype(op, [("x", x), ("dy", dy)])
    shapes.check_shape(op, "dy", dy, (x.shape[0], oh, ow, w.shape[3]))
    check_activation_output(op, activation, y, dy)
    dx = be.empty(x.shape, x.dtype) if shapes.flag(op, "compute_dx", compute_dx) else None
    # dw and db as views of one (KH*KW*C_in + 1) x C_out buffer, as in dense_backward:
    # the gpu's dw GEMM writes db as its extra row.
    co = w.shape[3]
    dwdb = be._grads_buffer(op, grads, w.size + co, w.dtype, [("x", x), ("w", w), ("dy", dy), ("y", y)])
    dw = be.reshape(dwdb[:w.size], w.shape)
    db = dwdb[w.size:]
    be.conv.conv2d_backward(x, w, dy, dx, be.reshape(dwdb, (w.size // co + 1, co)), sh, sw, pt, pl,
                            y, activation, rh, rw)
    return dx, dw, db


def transpose_geometry(op, in_hw, kernel_hw, strides, padding, output_padding, dilation):
    """-> (out_h, out_w, pt, pl) of conv2d_transpose: the output size Keras 3 gives
    (keras.src.ops.operation_utils.compute_conv_transpose_output_shape) and the top/left
    padding of the conv2d whose input gradient it is (from Keras's own conversion of its
    padding to an explicit one, _convert_conv_transpose_padding_args_from_keras_to_jax:
    that conv pads span-1-left)."""
    mode = shapes.check_padding(op, padding, explicit=False)
    if output_padding is not None:
        output_padding = check_output_padding(op, output_padding)
    out, pads = [], []
    for axis in range(2):
        size, k, s, d = in_hw[axis], kernel_hw[axis], strides[axis], dilation[axis]
        span = (k - 1) * d + 1
        extra = None if output_padding is None else output_padding[axis]
        if extra is not None and extra >= max(s, d):
            raise ValueError(f"{op}: output_padding must be smaller than the stride or the dilation along each "
                             f"axis, got output_padding={output_padding} with strides={tuple(strides)}, "
                             f"dilation_rate={tuple(dilation)}")
        if mode == "valid":
            extra = max(span, s) - span if extra is None else extra
            left, pad_len = span - 1, 2 * (span - 1) + extra
        else:
            pad_len = s + span - 2 if extra is None else span + span % 2 - 2 + extra
            left = min(pad_len // 2 + pad_len % 2, span - 1)
        out.append((size - 1) * s + pad_len - span + 2)
        pads.append(span - 1 - left)
    return out[0], out[1], pads[0], pads[1]


def check_output_padding(op, value):
    """output_padding: an int >= 0 or a pair of them (0 is allowed, unlike a stride)."""
    return shapes.pair(op, "output_padding", value, minimum=0)


def conv2d_transpose_shapes(op, x, w, strides, padding, output_padding, dilation):
    """x (N, H, W, C_in), w (KH, KW, filters, C_in) -> (strides, dilation, (out_h, out_w, pt, pl))."""
    strides, dilation = _check_x_w(op, x, w, "(KH, KW, filters, C_in)", 3, strides, dilation)
    geometry = transpose_geometry(op, x.shape[1:3], w.shape[0:2], strides, padding, output_padding, dilation)
    return strides, dilation, geometry


def conv2d_transpose(be, x, w, bias=None, *, strides=(1, 1), padding="valid", output_padding=None,
                     dilation_rate=(1, 1)):
    """NHWC x, (KH, KW, filters, C_in) w (Keras's Conv2DTranspose kernel) -> NHWC y
    (N, out_h, out_w, filters) + bias: the input gradient of the conv2d that maps y's shape
    to x's with w, computed by the same kernels (y[i*s - pt + k*d] += x[i] @ w[k]^T)."""
    op = "conv2d_transpose"
    x, w, bias = be._prepare(op, ("bias",), x=x, w=w, bias=bias)
    (sh, sw), (rh, rw), (oh, ow, pt, pl) = conv2d_transpose_shapes(op, x, w, strides, padding, output_padding,
                                                                   dilation_rate)
    if bias is not None:
        shapes.check_float(op, "bias", bias)
        shapes.check_same_dtype(op, [("x", x), ("bias", bias)])
        shapes.check_shape(op, "bias", bias, (w.shape[2],))
    y = be.empty((x.shape[0], oh, ow, w.shape[2]), x.dtype)
    be.conv.conv2d_transpose_forward(x, w, bias, y, sh, sw, pt, pl, rh, rw)
    return y


def conv2d_transpose_backward(be, x, w, dy, *, strides=(1, 1), padding="valid", output_padding=None,
                              dilation_rate=(1, 1), compute_dx=True):
    """-> (dx, dw, db) of conv2d_transpose (dx None when compute_dx=False): dx is the
    conv2d of dy with w (the transpose's transpose), dw that conv2d's weight gradient with
    x as its output gradient, db dy's sums per filter."""
    op = "conv2d_transpose_backward"
    x, w, dy = be._prepare(op, x=x, w=w, dy=dy)
    (sh, sw), (rh, rw), (oh, ow, pt, pl) = conv2d_transpose_shapes(op, x, w, strides, padding, output_padding,
                                                                   dilation_rate)
    shapes.check_float(op, "dy", dy)
    shapes.check_same_dtype(op, [("x", x), ("dy", dy)])
    shapes.check_shape(op, "dy", dy, (x.shape[0], oh, ow, w.shape[2]))
    dx = None
    if shapes.flag(op, "compute_dx", compute_dx):
        dx = be.empty(x.shape, x.dtype)
        be.conv.conv2d_forward(dy, w, None, dx, sh, sw, pt, pl, "linear", rh, rw)
    # The conv's weight gradient buffer carries its bias gradient (x's channel sums, not
    # wanted here) as an extra row; db is dy's own sums per filter.
    c_in = w.shape[3]
    dwdb = be.empty((w.size // c_in + 1, c_in), w.dtype)
    be.conv.conv2d_backward(dy, w, x, None, dwdb, sh, sw, pt, pl, None, "linear", rh, rw)
    dw = be.reshape(dwdb[:w.size // c_in], w.shape)
    db = be.column_sum(be.reshape(dy, (dy.size // w.shape[2], w.shape[2])))
    return dx, dw, db



# --------------------------------------------------------------------------- warm-ups

def _warm_conv2d(be, dt):
    # A shallow window (the cpu's direct path) and a deep one (its GEMM path), each fused
    # activation once.
    for x, w in ((be.zeros((2, 6, 6, 3), dt), be.zeros((3, 3, 3, 4), dt)),
                 (be.zeros((2, 6, 6, 9), dt), be.zeros((3, 3, 9, 4), dt))):
        for act in FUSED_ACTIVATIONS:
            be.conv2d(x, w, be.zeros((4,), dt), padding="same", activation=act)


def _warm_conv2d_backward(be, dt):
    for x, w in ((be.zeros((2, 6, 6, 3), dt), be.zeros((3, 3, 3, 4), dt)),
                 (be.zeros((2, 6, 6, 9), dt), be.zeros((3, 3, 9, 4), dt))):
        dy = be.zeros((2, 6, 6, 4), dt)
        be.conv2d_backward(x, w, dy, padding="same", compute_dx=False)
        for act in FUSED_ACTIVATIONS:
            be.conv2d_backward(x, w, dy, padding="same", activation=act, y=None if act == "linear" else dy)


def _warm_conv2d_transpose(be, dt):
    for padding in ("valid", "same"):
        be.conv2d_transpose(be.zeros((2, 3, 3, 4), dt), be.zeros((3, 3, 2, 4), dt), be.zeros((2,), dt),
                            strides=2, padding=padding)


def _warm_conv2d_transpose_backward(be, dt):
    for padding, side in (("valid", 7), ("same", 6)):
        be.conv2d_transpose_backward(be.zeros((2, 3, 3, 4), dt), be.zeros((3, 3, 2, 4), dt),
                                     be.zeros((2, side, side, 2), dt), strides=2, padding=padding)


# --------------------------------------------------------------------------- costs (Op.cost)

def _conv_sizes(x, w, strides, padding, dilation_rate):
    """(output elements, multiply-adds per output element) of conv2d on x and w."""
    (_, _, (oh, ow, _, _, _, _)) = conv2d_shapes("conv2d", x, w, strides, padding, dilation_rate)
    kh, kw, ci, co = w.shape
    return x.shape[0] * oh * ow * co, kh * kw * ci


def _cost_conv2d(x, w, bias=None, *, strides=(1, 1), padding="valid", activation=None, dilation_rate=(1, 1)):
    outs, macs = _conv_sizes(x, w, strides, padding, dilation_rate)
    epilogue = (bias is not None) + cost.activation_flops(activation)
    return (2 * macs + epilogue) * outs, cost.nbytes(x, w, bias) + outs * cost.itemsize(x)


def _cost_conv2d_backward(x, w, dy, *, strides=(1, 1), padding="valid", compute_dx=True, grads=None,
                          activation=None, y=None, dilation_rate=(1, 1)):
    # dw (a product the size of the forward's), db (the sums of dz), dx (a second such
    # product) when asked, and the activation's gradient dz = dy * act'(y) (one multiply
    # besides act' itself).
    outs, macs = _conv_sizes(x, w, strides, padding, dilation_rate)
    products = 2 if compute_dx else 1
    act = 0 if activation in (None, "linear") else 1 + cost.activation_flops(activation)
    flops = products * 2 * macs * outs + outs + act * outs
    read = cost.nbytes(x, dy, y) + (cost.nbytes(w) if compute_dx else 0)
    written = cost.nbytes(w) + w.shape[3] * cost.itemsize(w) + (cost.nbytes(x) if compute_dx else 0)
    return flops, read + written


def _transpose_out(x, w, strides, padding, output_padding, dilation_rate):
    (sh, sw), (rh, rw), (oh, ow, _, _) = conv2d_transpose_shapes("conv2d_transpose", x, w, strides, padding,
                                                                 output_padding, dilation_rate)
    return x.shape[0] * oh * ow * w.shape[2]


def _cost_conv2d_transpose(x, w, bias=None, *, strides=(1, 1), padding="valid", output_padding=None,
                           dilation_rate=(1, 1)):
    # Each input element meets every weight of its channel: KH*KW*filters multiply-adds.
    out = _transpose_out(x, w, strides, padding, output_padding, dilation_rate)
    return 2 * cost.size(x) * cost.size(w) // w.shape[3], cost.nbytes(x, w, bias) + out * cost.itemsize(x)


def _cost_conv2d_transpose_backward(x, w, dy, *, strides=(1, 1), padding="valid", output_padding=None,
                                    dilation_rate=(1, 1), compute_dx=True):
    # dw always, dx when asked: each as many multiply-adds as the forward.
    passes = 2 if compute_dx else 1
    written = (cost.size(x) if compute_dx else 0) + cost.size(w) + w.shape[2]
    return passes * 2 * cost.size(x) * cost.size(w) // w.shape[3], cost.nbytes(x, w, dy) + written * cost.itemsize(x)


FAMILY = Family("conv", module="conv", attr="conv", hot=True, ops=(
    *op_pair(conv2d, conv2d_backward, (_warm_conv2d, _warm_conv2d_backward), (_cost_conv2d, _cost_conv2d_backward)),
    *op_pair(conv2d_transpose, conv2d_transpose_backward, (_warm_conv2d_transpose, _warm_conv2d_transpose_backward),
             (_cost_conv2d_transpose, _cost_conv2d_transpose_backward)),
))
