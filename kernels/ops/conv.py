"""The conv family: conv2d with a fused bias and activation, and conv2d_backward, which
back-propagates through that activation too, on kernels/<backend>/conv.py."""
from numbanet.kernels import shapes
from numbanet.kernels.ops import cost
from numbanet.kernels.ops.declare import Family, Op

# The activations conv2d applies as it writes y and conv2d_backward differentiates from
# that y (kernels/rules.py's, each with a gradient that is a function of its output):
# a GEMM's, and leaky_relu with Keras's default slope 0.2.
FUSED_ACTIVATIONS = shapes.EPILOGUE_ACTIVATIONS + ("leaky_relu",)


def conv2d_shapes(op, x, w, strides, padding):
    """-> (strides, (out_h, out_w, pt, pl, pb, pr))."""
    shapes.check_float(op, "x", x)
    shapes.check_float(op, "w", w)
    shapes.check_ndim(op, "x", x, 4, "NHWC")
    shapes.check_ndim(op, "w", w, 4, "(KH, KW, C_in, C_out)")
    shapes.check_same_dtype(op, [("x", x), ("w", w)])
    shapes.check_nonempty(op, "x", x)
    shapes.check_nonempty(op, "w", w)
    if x.shape[3] != w.shape[2]:
        raise ValueError(f"{op}: x has {x.shape[3]} channels but w expects {w.shape[2]} "
                         f"(x.shape={tuple(x.shape)}, w.shape={tuple(w.shape)})")
    strides = shapes.pair(op, "strides", strides)
    geometry = shapes.resolve_padding(op, padding, x.shape[1:3], w.shape[0:2], strides)
    return strides, geometry


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


def conv2d(be, x, w, bias=None, *, strides=(1, 1), padding="valid", activation=None):
    """NHWC x, (KH, KW, C_in, C_out) w -> NHWC y = act(conv + bias per output channel);
    activation as in matmul."""
    op = "conv2d"
    activation = shapes.check_activation(op, activation, FUSED_ACTIVATIONS)
    x, w, bias = be._prepare(op, ("bias",), x=x, w=w, bias=bias)
    (sh, sw), (oh, ow, pt, pl, _, _) = conv2d_shapes(op, x, w, strides, padding)
    if bias is not None:
        shapes.check_float(op, "bias", bias)
        shapes.check_same_dtype(op, [("x", x), ("bias", bias)])
        shapes.check_shape(op, "bias", bias, (w.shape[3],))
    y = be.empty((x.shape[0], oh, ow, w.shape[3]), x.dtype)
    be.conv.conv2d_forward(x, w, bias, y, sh, sw, pt, pl, activation)
    return y


def conv2d_backward(be, x, w, dy, *, strides=(1, 1), padding="valid", compute_dx=True, grads=None,
                    activation=None, y=None):
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
    (sh, sw), (oh, ow, pt, pl, _, _) = conv2d_shapes(op, x, w, strides, padding)
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
                            y, activation)
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


# --------------------------------------------------------------------------- costs (Op.cost)

def _conv_sizes(x, w, strides, padding):
    """(output elements, multiply-adds per output element) of conv2d on x and w."""
    (_, (oh, ow, _, _, _, _)) = conv2d_shapes("conv2d", x, w, strides, padding)
    kh, kw, ci, co = w.shape
    return x.shape[0] * oh * ow * co, kh * kw * ci


def _cost_conv2d(x, w, bias=None, *, strides=(1, 1), padding="valid", activation=None):
    outs, macs = _conv_sizes(x, w, strides, padding)
    epilogue = (bias is not None) + cost.activation_flops(activation)
    return (2 * macs + epilogue) * outs, cost.nbytes(x, w, bias) + outs * cost.itemsize(x)


def _cost_conv2d_backward(x, w, dy, *, strides=(1, 1), padding="valid", compute_dx=True, grads=None,
                          activation=None, y=None):
    # dw (a product the size of the forward's), db (the sums of dz), dx (a second such
    # product) when asked, and the activation's gradient dz = dy * act'(y) (one multiply
    # besides act' itself).
    outs, macs = _conv_sizes(x, w, strides, padding)
    products = 2 if compute_dx else 1
    act = 0 if activation in (None, "linear") else 1 + cost.activation_flops(activation)
    flops = products * 2 * macs * outs + outs + act * outs
    read = cost.nbytes(x, dy, y) + (cost.nbytes(w) if compute_dx else 0)
    written = cost.nbytes(w) + w.shape[3] * cost.itemsize(w) + (cost.nbytes(x) if compute_dx else 0)
    return flops, read + written


FAMILY = Family("conv", module="conv", attr="conv", hot=True, ops=(
    Op("conv2d", conv2d, backward="conv2d_backward", warmup=_warm_conv2d, cost=_cost_conv2d),
    Op("conv2d_backward", conv2d_backward, warmup=_warm_conv2d_backward, cost=_cost_conv2d_backward),
))
