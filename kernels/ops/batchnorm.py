"""The batchnorm family: normalization over every axis but the last, per channel (Keras's
BatchNormalization, channels last), on kernels/<backend>/batchnorm.py.

Training mode normalizes with the batch's statistics (biased variance) and updates the
moving statistics in place (moving = moving * momentum + batch * (1 - momentum), the
biased variance too, as Keras 3); inference mode normalizes with the moving ones.
"""
from numbanet.kernels import shapes
from numbanet.kernels.ops.declare import Family, Op
from numbanet.kernels.ops.layernorm import _norm_params


def _check_x(op, x):
    shapes.check_float(op, "x", x)
    shapes.check_min_ndim(op, "x", x, 2, "(N, ..., C)")
    shapes.check_nonempty(op, "x", x)


def _epsilon(op, epsilon):
    epsilon = shapes.float_scalar(op, "epsilon", epsilon)
    if not epsilon > 0:
        raise ValueError(f"{op}: epsilon must be > 0, got {epsilon}")
    return epsilon


def _moving(be, op, x, moving_mean, moving_variance, written):
    c = tuple(x.shape)[x.ndim - 1]
    named = [("moving_mean", moving_mean), ("moving_variance", moving_variance)]
    for name, arr in named:
        if written:
            be._check_written(op, name, arr, [("x", x)] + [e for e in named if e[0] != name])
        shapes.check_float(op, name, arr)
        shapes.check_same_dtype(op, [("x", x), (name, arr)])
        shapes.check_shape(op, name, arr, (c,))


def batch_norm_train(be, x, gamma, beta, moving_mean, moving_variance, *, momentum=0.99, epsilon=1e-3):
    """Training mode: -> (y, mean, rstd), per channel (C,) for x (N, ..., C);
    y = (x - mean) * rstd * gamma + beta with the batch's mean and biased variance,
    rstd = 1 / sqrt(variance + epsilon). moving_mean and moving_variance are updated in
    place; gamma/beta (C,) or None (Keras's scale=False / center=False)."""
    op = "batch_norm_train"
    # The moving statistics are written in place: checked as they are, never prepared (a
    # copy of a strided or read-only one would take the update and drop it).
    x, gamma, beta = be._prepare(op, ("gamma", "beta"), x=x, gamma=gamma, beta=beta)
    _check_x(op, x)
    _norm_params(be, op, x, [("gamma", gamma), ("beta", beta)])
    _moving(be, op, x, moving_mean, moving_variance, written=True)
    epsilon = _epsilon(op, epsilon)
    momentum = shapes.float_scalar(op, "momentum", momentum)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"{op}: momentum must be in [0, 1], got {momentum}")
    c = tuple(x.shape)[x.ndim - 1]
    y = be.empty(tuple(x.shape), x.dtype)
    mean = be.empty((c,), x.dtype)
    rstd = be.empty((c,), x.dtype)
    be.batchnorm.batch_norm_train(be._rows(x), gamma, beta, moving_mean, moving_variance, epsilon, momentum,
                                  be._rows(y), mean, rstd)
    return y, mean, rstd


def batch_norm_inference(be, x, gamma, beta, moving_mean, moving_variance, *, epsilon=1e-3):
    """Inference mode: y = (x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta."""
    op = "batch_norm_inference"
    x, gamma, beta, moving_mean, moving_variance = be._prepare(
        op, ("gamma", "beta"), x=x, gamma=gamma, beta=beta, moving_mean=moving_mean, moving_variance=moving_variance)
    _check_x(op, x)
    _norm_params(be, op, x, [("gamma", gamma), ("beta", beta)])
    _moving(be, op, x, moving_mean, moving_variance, written=False)
    epsilon = _epsilon(op, epsilon)
    y = be.empty(tuple(x.shape), x.dtype)
    be.batchnorm.batch_norm_inference(be._rows(x), gamma, beta, moving_mean, moving_variance, epsilon, be._rows(y))
    return y


def batch_norm_backward(be, x, gamma, dy, mean, rstd, *, center=True):
    """Training mode's backward -> (dx, dgamma, dbeta); dgamma is None when gamma is None,
    dbeta is None when center=False. The per-channel sums are taken in a fixed order: the
    same bits on every run and thread count."""
    op = "batch_norm_backward"
    center = shapes.flag(op, "center", center)
    x, gamma, dy, mean, rstd = be._prepare(op, ("gamma",), x=x, gamma=gamma, dy=dy, mean=mean, rstd=rstd)
    _check_x(op, x)
    for name, arr in (("dy", dy), ("mean", mean), ("rstd", rstd)):
        shapes.check_float(op, name, arr)
    shapes.check_same_dtype(op, [("x", x), ("dy", dy), ("mean", mean), ("rstd", rstd)])
    shapes.check_shape(op, "dy", dy, tuple(x.shape))
    c = tuple(x.shape)[x.ndim - 1]
    shapes.check_shape(op, "mean", mean, (c,))
    shapes.check_shape(op, "rstd", rstd, (c,))
    _norm_params(be, op, x, [("gamma", gamma)])
    dx = be.empty(tuple(x.shape), x.dtype)
    dgamma = be.empty((c,), x.dtype) if gamma is not None else None
    dbeta = be.empty((c,), x.dtype) if center else None
    be.batchnorm.batch_norm_backward(be._rows(x), gamma, be._rows(dy), mean, rstd, be._rows(dx), dgamma, dbeta)
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------- costs
# (flops, bytes moved) from the argument shapes: x is read and y written once per pass
# that touches it; the per-channel vectors are negligible but counted.

def _sizes(x):
    shape = tuple(x.shape)
    return int(x.size), shape[-1], x.dtype.itemsize


def _cost_train(x, *args, **kwargs):
    n, c, b = _sizes(x)
    # statistics: 3 flops per element (shift, add, multiply-add); normalize: one fma (2).
    return 5 * n, b * (2 * n + n) + b * 6 * c


def _cost_inference(x, *args, **kwargs):
    n, c, b = _sizes(x)
    return 2 * n, b * 2 * n + b * 6 * c


def _cost_backward(x, gamma, dy, *args, **kwargs):
    n, c, b = _sizes(x)
    # sums: 4 flops per element (two adds, a subtract, a multiply); dx: 5.
    return 9 * n, b * (2 * n + 3 * n) + b * 6 * c


# --------------------------------------------------------------------------- warm-ups
# Row counts on both sides of the cpu's statistics block (one block, several).
_ROWS = (3, 600)


def _warm_train(be, dt):
    for rows in _ROWS:
        x = be.zeros((rows, 4), dt)
        be.batch_norm_train(x, be.zeros((4,), dt), be.zeros((4,), dt), be.zeros((4,), dt), be.zeros((4,), dt))
        be.batch_norm_train(x, None, None, be.zeros((4,), dt), be.zeros((4,), dt))


def _warm_inference(be, dt):
    x = be.zeros((3, 4), dt)
    be.batch_norm_inference(x, be.zeros((4,), dt), be.zeros((4,), dt), be.zeros((4,), dt), be.zeros((4,), dt))
    be.batch_norm_inference(x, None, None, be.zeros((4,), dt), be.zeros((4,), dt))


def _warm_backward(be, dt):
    for rows in _ROWS:
        x, g = be.zeros((rows, 4), dt), be.zeros((4,), dt)
        y, mean, rstd = be.batch_norm_train(x, g, be.zeros((4,), dt), be.zeros((4,), dt), be.zeros((4,), dt))
        be.batch_norm_backward(x, g, y, mean, rstd)
        be.batch_norm_backward(x, None, y, mean, rstd, center=False)


FAMILY = Family("batchnorm", module="batchnorm", attr="batchnorm", ops=(
    Op("batch_norm_train", batch_norm_train, backward="batch_norm_backward", warmup=_warm_train,
       cost=_cost_train),
    Op("batch_norm_inference", batch_norm_inference, warmup=_warm_inference, cost=_cost_inference),
    Op("batch_norm_backward", batch_norm_backward, warmup=_warm_backward, cost=_cost_backward),
))
