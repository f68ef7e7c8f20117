"""The optim family: fused in-place Adam, SGD, RMSprop and Adagrad steps and gradient clipping by norm, on
kernels/<backend>/optim.py (the per-element updates are kernels/rules.py's)."""
import math

import numpy as np

from numbanet.kernels import shapes
from numbanet.kernels.ops import cost
from numbanet.kernels.ops.declare import Family, Op


def _optim_arrays(be, op, param, named, written, optional=()):
    """param and the (name, array) pairs in named, flattened; param and the names in
    `written` (the optimizer's slots) are updated in place, so they are checked as
    outputs that share memory with no other argument. None passes only for the names in
    `optional` (a slot the step's settings do not use)."""
    everything = [("param", param)] + [(name, arr) for name, arr in named]
    be._check_written(op, "param", param, everything[1:])
    shapes.check_float(op, "param", param)
    flats = [be._flat(param)]
    for name, arr in named:
        if arr is None:
            if name not in optional:
                raise TypeError(f"{op}: {name} must be an array, got None")
            flats.append(None)
            continue
        if name in written:
            be._check_written(op, name, arr, [e for e in everything if e[0] != name])
        else:
            be._check_native(op, name, arr)
            if not be._is_c_contiguous(arr):
                raise ValueError(f"{op}: {name} must be C-contiguous")
        shapes.check_float(op, name, arr)
        shapes.check_same_dtype(op, [("param", param), (name, arr)])
        shapes.check_same_shape(op, [("param", param), (name, arr)])
        flats.append(be._flat(arr))
    return flats


def adam_step(be, param, grad, m, v, *, lr, beta1=0.9, beta2=0.999, eps=1e-7, step, weight_decay=0.0):
    """One fused, in-place Adam step (Keras's form); decoupled weight decay when non-zero."""
    op = "adam_step"
    step = shapes.int_scalar(op, "step", step)
    if step < 1:
        raise ValueError(f"{op}: step counts from 1, got {step}")
    lr, eps, weight_decay = (shapes.float_scalar(op, k, v) for k, v in
                             (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)))
    for name, val in (("beta1", beta1), ("beta2", beta2)):
        if not 0.0 <= shapes.float_scalar(op, name, val) < 1.0:
            raise ValueError(f"{op}: {name} must be in [0, 1), got {val}")
    p, g, m_, v_ = _optim_arrays(be, op, param, [("grad", grad), ("m", m), ("v", v)], ("m", "v"))
    # Bias correction folded into one step size, computed once in float64; every scalar
    # in the parameter's dtype, so a float32 update runs in float32.
    beta1, beta2 = float(beta1), float(beta2)
    alpha = lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)
    t = np.dtype(p.dtype).type
    be.optim.adam_step(p, g, m_, v_, t(lr * weight_decay), t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2),
                       t(alpha), t(eps))


def sgd_step(be, param, grad, velocity=None, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """One fused, in-place SGD step (Keras's form: v = momentum * v - lr * g)."""
    op = "sgd_step"
    lr, momentum, weight_decay = (shapes.float_scalar(op, k, v) for k, v in
                                  (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)))
    nesterov = shapes.flag(op, "nesterov", nesterov)
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"{op}: momentum must be in [0, 1), got {momentum}")
    if momentum > 0.0 and velocity is None:
        raise ValueError(f"{op}: momentum={momentum} needs a velocity array, got None")
    p, g, vel = _optim_arrays(be, op, param, [("grad", grad), ("velocity", velocity)], ("velocity",),
                              optional=("velocity",))
    t = np.dtype(p.dtype).type
    be.optim.sgd_step(p, g, None if momentum == 0.0 else vel, t(lr), t(lr * weight_decay), t(momentum), nesterov)


def rmsprop_step(be, param, grad, velocity, average_gradient=None, momentum_slot=None, *, lr, rho=0.9,
                 momentum=0.0, eps=1e-7, weight_decay=0.0):
    """One fused, in-place RMSprop step (Keras 3's form, kernels/rules.py's rmsprop).
    average_gradient: the centered variant's running mean of the gradient (None: not
    centered); momentum_slot: the momentum buffer, needed when momentum > 0."""
    op = "rmsprop_step"
    lr, rho, momentum, eps, weight_decay = (shapes.float_scalar(op, k, v) for k, v in (
        ("lr", lr), ("rho", rho), ("momentum", momentum), ("eps", eps), ("weight_decay", weight_decay)))
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"{op}: rho must be in [0, 1), got {rho}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"{op}: momentum must be in [0, 1), got {momentum}")
    if (momentum > 0.0) != (momentum_slot is not None):
        raise ValueError(f"{op}: momentum={momentum} needs a momentum_slot array exactly when momentum > 0, got "
                         f"{'None' if momentum_slot is None else 'an array'}")
    p, g, vel, avg, mom = _optim_arrays(
        be, op, param, [("grad", grad), ("velocity", velocity), ("average_gradient", average_gradient),
                        ("momentum_slot", momentum_slot)],
        ("velocity", "average_gradient", "momentum_slot"), optional=("average_gradient", "momentum_slot"))
    t = np.dtype(p.dtype).type
    be.optim.rmsprop_step(p, g, vel, avg, mom, t(lr), t(lr * weight_decay), t(rho), t(1.0 - rho), t(momentum),
                          t(eps))


def adagrad_step(be, param, grad, accumulator, *, lr, eps=1e-7, weight_decay=0.0):
    """One fused, in-place Adagrad step (Keras 3's form: acc += g^2, p -= lr g / sqrt(acc + eps))."""
    op = "adagrad_step"
    lr, eps, weight_decay = (shapes.float_scalar(op, k, v) for k, v in
                             (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)))
    p, g, acc = _optim_arrays(be, op, param, [("grad", grad), ("accumulator", accumulator)], ("accumulator",))
    t = np.dtype(p.dtype).type
    be.optim.adagrad_step(p, g, acc, t(lr), t(lr * weight_decay), t(eps))


def _clip_arrays(be, op, grads, clipnorm):
    if shapes.float_scalar(op, "clipnorm", clipnorm) <= 0.0:
        raise ValueError(f"{op}: clipnorm must be > 0, got {clipnorm!r}")
    named = [(f"grads[{i}]" if len(grads) > 1 else "grad", g) for i, g in enumerate(grads)]
    for name, g in named:
        be._check_written(op, name, g, ())
        shapes.check_float(op, name, g)
    # Scaled in place: an array listed twice (or two overlapping ones) would be scaled twice.
    be._check_disjoint(op, named)
    return [be._flat(g) for _, g in named]


def _clip(be, flats, clipnorm):
    # From the step's workspace (be.zeros would allocate every step), zeroed in place.
    sq = be.empty((1,), np.float64)
    be.zero(sq)
    for g in flats:
        be.optim.sq_norm_accumulate(g, sq)
    scale = be.empty((1,), np.float64)
    be.optim.clip_scale(sq, float(clipnorm), scale)
    for g in flats:
        be.optim.scale_by(g, scale)


def clip_by_norm(be, grad, clipnorm):
    """In place: grad *= clipnorm / max(||grad||, clipnorm) (Keras's clipnorm, per array).
    The norm and the scale stay on the backend: no host round trip on the gpu."""
    _clip(be, _clip_arrays(be, "clip_by_norm", [grad], clipnorm), clipnorm)


def clip_by_global_norm(be, grads, clipnorm):
    """In place: every array in grads *= clipnorm / max(global norm, clipnorm) (Keras's
    global_clipnorm), the global norm taken over all of them together."""
    op = "clip_by_global_norm"
    if not isinstance(grads, (list, tuple)) or not grads:
        raise ValueError(f"{op}: expected a non-empty list of gradient arrays, got {grads!r}")
    _clip(be, _clip_arrays(be, op, list(grads), clipnorm), clipnorm)



# --------------------------------------------------------------------------- warm-ups
# Sizes on both sides of the cpu's threading threshold (kernels/cpu/threads.py: SERIAL_MAX).
_SIZES = (8, 1 << 17)


def _warm_adam_step(be, dt):
    for size in _SIZES:
        p = be.zeros((size,), dt)
        be.adam_step(p, be.zeros((size,), dt), be.zeros((size,), dt), be.zeros((size,), dt), lr=1e-3, step=1)


def _warm_sgd_step(be, dt):
    for size in _SIZES:
        p, g = be.zeros((size,), dt), be.zeros((size,), dt)
        be.sgd_step(p, g, lr=0.1)
        be.sgd_step(p, g, be.zeros((size,), dt), lr=0.1, momentum=0.9, nesterov=True)


def _warm_rmsprop_step(be, dt):
    for size in _SIZES:
        z = [be.zeros((size,), dt) for _ in range(5)]
        be.rmsprop_step(z[0], z[1], z[2], lr=1e-3)
        be.rmsprop_step(z[0], z[1], z[2], z[3], z[4], lr=1e-3, momentum=0.9)


def _warm_adagrad_step(be, dt):
    for size in _SIZES:
        be.adagrad_step(be.zeros((size,), dt), be.zeros((size,), dt), be.zeros((size,), dt), lr=1e-3)


def _cost_elementwise(flops, arrays):
    """(flops, bytes) of a step doing `flops` per element over `arrays` array reads + writes."""
    def cost(param, *args, **kwargs):
        n = int(param.size)
        return flops * n, arrays * n * param.dtype.itemsize
    return cost


def _cost_rmsprop(param, grad, velocity, average_gradient=None, momentum_slot=None, **kwargs):
    n, b = int(param.size), param.dtype.itemsize
    # p, g, v read; p, v written (5); the centered mean and the momentum a read and a write each.
    arrays = 5 + 2 * (average_gradient is not None) + 2 * (momentum_slot is not None)
    return (9 + 4 * (average_gradient is not None) + 2 * (momentum_slot is not None)) * n, arrays * n * b


def _warm_clip_by_norm(be, dt):
    for size in _SIZES:
        be.clip_by_norm(be.zeros((size,), dt), 1.0)


def _warm_clip_by_global_norm(be, dt):
    be.clip_by_global_norm([be.zeros((8,), dt), be.zeros((3, 4), dt)], 1.0)


# --------------------------------------------------------------------------- costs (Op.cost)

def _cost_adam_step(param, grad, m, v, *, lr, beta1=0.9, beta2=0.999, eps=1e-7, step, weight_decay=0.0):
    # kernels/rules.py's adam per element: decay 2, m 3, v 4, the update 5 (a sqrt, an add,
    # a multiply, a divide, a subtract); param, grad, m, v read and param, m, v written.
    return 14 * cost.size(param), 7 * cost.nbytes(param)


def _cost_sgd_step(param, grad, velocity=None, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    # rules.sgd: 4 per element; rules.sgd_momentum: decay 2, velocity 3, the update 1
    # (nesterov: 4), the velocity read and written besides param and grad.
    n = cost.size(param)
    if momentum == 0.0:
        return 4 * n, 3 * cost.nbytes(param)
    return (9 if nesterov else 6) * n, 5 * cost.nbytes(param)


def _cost_clip_by_norm(grad, clipnorm):
    return _cost_clip_by_global_norm([grad], clipnorm)


def _cost_clip_by_global_norm(grads, clipnorm):
    # A multiply-add per element for the squared norm, a multiply to scale it: read twice,
    # written once.
    n = sum(cost.size(g) for g in grads)
    return 3 * n, 3 * cost.nbytes(*grads)


FAMILY = Family("optim", module="optim", attr="optim", ops=(
    Op("adam_step", adam_step, warmup=_warm_adam_step, cost=_cost_adam_step),
    Op("sgd_step", sgd_step, warmup=_warm_sgd_step, cost=_cost_sgd_step),
    Op("rmsprop_step", rmsprop_step, warmup=_warm_rmsprop_step, cost=_cost_rmsprop),
    # acc += g^2 (2 flops), decay (2), lr g / sqrt(acc + eps) and the subtract (5);
    # p, g, acc read, p, acc written.
    Op("adagrad_step", adagrad_step, warmup=_warm_adagrad_step, cost=_cost_elementwise(9, 5)),
    Op("clip_by_norm", clip_by_norm, warmup=_warm_clip_by_norm, cost=_cost_clip_by_norm),
    Op("clip_by_global_norm", clip_by_global_norm, warmup=_warm_clip_by_global_norm, cost=_cost_clip_by_global_norm),
))
