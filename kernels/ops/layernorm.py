"""The layernorm family: normalization over the last axis (Keras's LayerNormalization),
forward and backward, on kernels/<backend>/layernorm.py."""
from numbanet.kernels import shapes
from numbanet.kernels.ops import cost
from numbanet.kernels.ops.declare import Family, Op, op_pair


def _norm_params(be, op, x, named):
    c = tuple(x.shape)[x.ndim - 1]
    for name, arr in named:
        if arr is not None:
            shapes.check_float(op, name, arr)
            shapes.check_same_dtype(op, [("x", x), (name, arr)])
            shapes.check_shape(op, name, arr, (c,))


def layer_norm(be, x, gamma, beta, *, epsilon=1e-3):
    """Normalization over the last axis (Keras's LayerNormalization): -> (y, mean, rstd).

    y = (x - mean) * rstd * gamma + beta with mean and variance over the last axis
    (variance with 1/C), rstd = 1 / sqrt(variance + epsilon); gamma/beta (C,) or None
    (Keras's scale=False / center=False); mean and rstd have shape x.shape[:-1]."""
    op = "layer_norm"
    x, gamma, beta = be._prepare(op, ("gamma", "beta"), x=x, gamma=gamma, beta=beta)
    shapes.check_float(op, "x", x)
    shapes.check_min_ndim(op, "x", x, 2, "(..., C)")
    shapes.check_nonempty(op, "x", x)
    _norm_params(be, op, x, [("gamma", gamma), ("beta", beta)])
    epsilon = shapes.float_scalar(op, "epsilon", epsilon)
    if epsilon < 0:
        raise ValueError(f"{op}: epsilon must be >= 0, got {epsilon}")
    shape = tuple(x.shape)
    y = be.empty(shape, x.dtype)
    mean = be.empty(shape[:-1], x.dtype)
    rstd = be.empty(shape[:-1], x.dtype)
    be.layernorm.layer_norm_forward(be._rows(x), gamma, beta, epsilon, be._rows(y),
                                    be._flat(mean), be._flat(rstd))
    return y, mean, rstd


def layer_norm_backward(be, x, gamma, dy, mean, rstd, *, center=True):
    """-> (dx, dgamma, dbeta); dgamma is None when gamma is None, dbeta is None when
    center=False (a LayerNormalization without beta). dgamma and dbeta are summed over
    rows in a fixed order: the same bits on every run and thread count."""
    op = "layer_norm_backward"
    center = shapes.flag(op, "center", center)
    x, gamma, dy, mean, rstd = be._prepare(op, ("gamma",), x=x, gamma=gamma, dy=dy, mean=mean, rstd=rstd)
    for name, arr in (("x", x), ("dy", dy), ("mean", mean), ("rstd", rstd)):
        shapes.check_float(op, name, arr)
    shapes.check_min_ndim(op, "x", x, 2, "(..., C)")
    shapes.check_nonempty(op, "x", x)
    shapes.check_same_dtype(op, [("x", x), ("dy", dy), ("mean", mean), ("rstd", rstd)])
    shapes.check_shape(op, "dy", dy, tuple(x.shape))
    shapes.check_shape(op, "mean", mean, tuple(x.shape)[:-1])
    shapes.check_shape(op, "rstd", rstd, tuple(x.shape)[:-1])
    _norm_params(be, op, x, [("gamma", gamma)])
    c = tuple(x.shape)[x.ndim - 1]
    dx = be.empty(tuple(x.shape), x.dtype)
    dgamma = be.empty((c,), x.dtype) if gamma is not None else None
    dbeta = be.empty((c,), x.dtype) if center else None
    be.layernorm.layer_norm_backward(be._rows(x), gamma, be._rows(dy), be._flat(mean),
                                     be._flat(rstd), be._rows(dx), dgamma, dbeta)
    return dx, dgamma, dbeta



# --------------------------------------------------------------------------- warm-ups

def _warm_layer_norm(be, dt):
    x, g = be.zeros((3, 4, 8), dt), be.zeros((8,), dt)
    be.layer_norm(x, g, be.zeros((8,), dt))
    be.layer_norm(x, None, None)


def _warm_layer_norm_backward(be, dt):
    x, g = be.zeros((3, 4, 8), dt), be.zeros((8,), dt)
    y, mean, rstd = be.layer_norm(x, g, be.zeros((8,), dt))
    be.layer_norm_backward(x, g, y, mean, rstd)
    be.layer_norm_backward(x, None, y, mean, rstd, center=False)


# --------------------------------------------------------------------------- costs (Op.cost)

def _cost_layer_norm(x, gamma, beta, *, epsilon=1e-3):
    # Per element: the mean's add, the variance's subtract and multiply-add, (x - mean) *
    # rstd, * gamma + beta; per row rstd (an add, a sqrt, a divide).
    c = x.shape[x.ndim - 1]
    rows = cost.size(x) // c
    return 8 * cost.size(x) + 3 * rows, 2 * cost.nbytes(x) + cost.nbytes(gamma, beta) + 2 * rows * cost.itemsize(x)


def _cost_layer_norm_backward(x, gamma, dy, mean, rstd, *, center=True):
    # Per element: x_hat (2), dy * gamma, the row sums of g and g * x_hat (3), dx from them
    # (4), dgamma += dy * x_hat (2), dbeta += dy.
    c = x.shape[x.ndim - 1]
    params = (gamma is not None) + bool(center)   # dgamma, dbeta
    written = cost.nbytes(x) + params * c * cost.itemsize(x)
    return 13 * cost.size(x), cost.nbytes(x, gamma, dy, mean, rstd) + written


FAMILY = Family("layernorm", module="layernorm", attr="layernorm", ops=(
    *op_pair(layer_norm, layer_norm_backward, (_warm_layer_norm, _warm_layer_norm_backward),
             (_cost_layer_norm, _cost_layer_norm_backward)),
))
