"""The activation family: relu, sigmoid, tanh (their gradients from the output y), gelu,
silu, leaky_relu (from the input x) and softmax over the last axis, on
kernels/<backend>/activation.py (the per-element rules are kernels/rules.py's)."""
from functools import partial

from numbanet.kernels import shapes
from numbanet.kernels.ops import cost
from numbanet.kernels.rules import RELU, SIGMOID, TANH
from numbanet.kernels.ops.declare import Family, Op


def _unary_backward(be, op, y, dy):
    y, dy = be._prepare(op, y=y, dy=dy)
    shapes.check_alike(op, [("y", y), ("dy", dy)])
    return y, dy


def _elementwise_forward(be, op, fn, x):
    x = be._unary(op, x)
    y = be.empty(x.shape, x.dtype)
    fn(be._flat(x), be._flat(y))
    return y


def _elementwise_backward(be, op, fn, y, dy):
    y, dy = _unary_backward(be, op, y, dy)
    dx = be.empty(y.shape, y.dtype)
    fn(be._flat(y), be._flat(dy), be._flat(dx))
    return dx


def relu(be, x):
    return _elementwise_forward(be, "relu", partial(be.activation.forward, RELU), x)


def relu_backward(be, y, dy):
    """dx from the forward output y (y > 0 exactly where x > 0)."""
    return _elementwise_backward(be, "relu_backward", partial(be.activation.backward, RELU), y, dy)


def sigmoid(be, x):
    return _elementwise_forward(be, "sigmoid", partial(be.activation.forward, SIGMOID), x)


def sigmoid_backward(be, y, dy):
    return _elementwise_backward(be, "sigmoid_backward", partial(be.activation.backward, SIGMOID), y, dy)


def tanh(be, x):
    return _elementwise_forward(be, "tanh", partial(be.activation.forward, TANH), x)


def tanh_backward(be, y, dy):
    return _elementwise_backward(be, "tanh_backward", partial(be.activation.backward, TANH), y, dy)


def _elementwise_backward_x(be, op, fn, x, dy, *extra):
    """dx of an activation whose derivative needs the forward's input x."""
    x, dy = be._prepare(op, x=x, dy=dy)
    shapes.check_alike(op, [("x", x), ("dy", dy)])
    dx = be.empty(x.shape, x.dtype)
    fn(be._flat(x), be._flat(dy), be._flat(dx), *extra)
    return dx


def gelu(be, x, *, approximate=False):
    """x * Phi(x) (Keras's default), or its tanh approximation when approximate=True."""
    approximate = shapes.flag("gelu", "approximate", approximate)
    x = be._unary("gelu", x)
    y = be.empty(x.shape, x.dtype)
    be.activation.gelu_forward(be._flat(x), be._flat(y), approximate)
    return y


def gelu_backward(be, x, dy, *, approximate=False):
    """dx from the forward's input x (GELU's derivative is not a function of its output)."""
    return _elementwise_backward_x(be, "gelu_backward", be.activation.gelu_backward, x, dy,
                                        shapes.flag("gelu_backward", "approximate", approximate))


def silu(be, x):
    """x * sigmoid(x) (Keras's silu, alias swish)."""
    return _elementwise_forward(be, "silu", be.activation.silu_forward, x)


def silu_backward(be, x, dy):
    return _elementwise_backward_x(be, "silu_backward", be.activation.silu_backward, x, dy)


def leaky_relu(be, x, *, negative_slope=0.2):
    """x where x >= 0, negative_slope * x elsewhere (Keras 3's default slope 0.2)."""
    op = "leaky_relu"
    slope = shapes.float_scalar(op, "negative_slope", negative_slope)
    x = be._unary(op, x)
    y = be.empty(x.shape, x.dtype)
    be.activation.leaky_relu_forward(be._flat(x), be._flat(y), slope)
    return y


def leaky_relu_backward(be, x, dy, *, negative_slope=0.2):
    """dx from the forward's input x; at x == 0 the slope is negative_slope, as in PyTorch."""
    op = "leaky_relu_backward"
    return _elementwise_backward_x(be, op, be.activation.leaky_relu_backward, x, dy,
                                        shapes.float_scalar(op, "negative_slope", negative_slope))


def softmax(be, x, *, causal=False):
    """Softmax over the last axis of x (rank >= 2). causal=True treats x as (..., Tq, Tk)
    scores and keeps (i, j) only where j <= i (Keras 3's top-left aligned causal mask);
    masked probabilities are exactly 0."""
    op = "softmax"
    causal = shapes.flag(op, "causal", causal)
    x = be._unary(op, x)
    shapes.check_min_ndim(op, "x", x, 2, "(..., C)" if not causal else "(..., Tq, Tk)")
    shape = tuple(x.shape)
    y = be.empty(shape, x.dtype)
    causal_rows = shape[-2] if causal else 0
    be.activation.softmax_forward(be._rows(x), be._rows(y), int(causal_rows))
    return y


def softmax_backward(be, y, dy):
    """dx from the forward output y (masked entries of a causal softmax have y = 0, so dx = 0)."""
    op = "softmax_backward"
    y, dy = _unary_backward(be, op, y, dy)
    shapes.check_min_ndim(op, "y", y, 2, "(..., C)")
    shapes.check_nonempty(op, "y", y)
    dx = be.empty(tuple(y.shape), y.dtype)
    be.activation.softmax_backward(be._rows(y), be._rows(dy), be._rows(dx))
    return dx



# --------------------------------------------------------------------------- warm-ups
# Elementwise ops run serially on small arrays and threaded on large ones on the cpu
# (kernels/cpu/threads.py: SERIAL_MAX): a size on each side.
_SHAPES = ((3, 4), (1 << 17,))


def _warm_forward(name, **kwargs):
    def warm(be, dt):
        for shape in _SHAPES:
            getattr(be, name)(be.zeros(shape, dt), **kwargs)
    return warm


def _warm_backward(name, **kwargs):
    def warm(be, dt):
        for shape in _SHAPES:
            a = be.zeros(shape, dt)
            getattr(be, name)(a, a, **kwargs)
    return warm


def _warm_gelu(be, dt):
    for approximate in (False, True):
        _warm_forward("gelu", approximate=approximate)(be, dt)


def _warm_gelu_backward(be, dt):
    for approximate in (False, True):
        _warm_backward("gelu_backward", approximate=approximate)(be, dt)


def _warm_softmax(be, dt):
    be.softmax(be.zeros((4, 10), dt))
    be.softmax(be.zeros((2, 3, 3), dt), causal=True)


def _warm_softmax_backward(be, dt):
    a = be.zeros((4, 10), dt)
    be.softmax_backward(a, a)


# --------------------------------------------------------------------------- costs (Op.cost)
# FLOPs per element by kernels/rules.py's formulas (kernels/ops/cost.py's counting rule);
# a forward reads x and writes y, a backward reads two arrays and writes dx.

def _cost_gelu(x, *, approximate=False):
    # exact: x * (1 + erf(x / sqrt 2)) / 2; tanh form: x^3 and the polynomial (4), tanh, 1 +, x / 2 *.
    return (9 if approximate else 5) * cost.size(x), 2 * cost.nbytes(x)


def _cost_gelu_backward(x, dy, *, approximate=False):
    # Phi(x) and phi(x) (4 each), x * phi + Phi, times dy; the tanh form adds its polynomial's derivative.
    return (16 if approximate else 11) * cost.size(x), 3 * cost.nbytes(x)


_COSTS = {
    "relu": cost.elementwise(1, 1, 1), "relu_backward": cost.elementwise(1, 2, 1),
    "sigmoid": cost.elementwise(4, 1, 1), "sigmoid_backward": cost.elementwise(3, 2, 1),   # dy * y * (1 - y)
    "tanh": cost.elementwise(1, 1, 1), "tanh_backward": cost.elementwise(3, 2, 1),         # dy * (1 - y * y)
    "gelu": _cost_gelu, "gelu_backward": _cost_gelu_backward,
    "silu": cost.elementwise(5, 1, 1), "silu_backward": cost.elementwise(9, 2, 1),
    "leaky_relu": cost.elementwise(2, 1, 1), "leaky_relu_backward": cost.elementwise(2, 2, 1),
    # the row's max, x - max, exp, the sum, the scale; backward: the row's dot(y, dy), dy - dot, y *
    "softmax": cost.elementwise(5, 1, 1), "softmax_backward": cost.elementwise(4, 2, 1),
}


def _pair(name, forward=None, backward=None):
    """An elementwise activation and its gradient."""
    return (Op(name, globals()[name], backward=name + "_backward", warmup=forward or _warm_forward(name),
               cost=_COSTS[name]),
            Op(name + "_backward", globals()[name + "_backward"],
               warmup=backward or _warm_backward(name + "_backward"), cost=_COSTS[name + "_backward"]))


FAMILY = Family("activation", module="activation", attr="activation", ops=(
    *_pair("relu"), *_pair("sigmoid"), *_pair("tanh"), *_pair("gelu", _warm_gelu, _warm_gelu_backward),
    *_pair("silu"), *_pair("leaky_relu"), *_pair("softmax", _warm_softmax, _warm_softmax_backward),
))
