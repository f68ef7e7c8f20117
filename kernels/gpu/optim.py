"""Fused optimizer steps on the gpu: one kernel launch per parameter tensor, each thread
reading p, g and the state once and writing them once (the step is memory bound; a
kernel per formula term would multiply the traffic). Formulas and the float64 -> dtype
casts of the scalars match kernels/cpu/optim.py, so float32 steps agree to rounding.
"""
import math

import numpy as np
from numba import cuda, float32, float64

from numbanet.kernels.gpu import reduce
from numbanet.kernels.gpu.launch import THREADS_1D, blocks_1d, grid_1d, kernel_family, rows_1d, scratch


@cuda.jit
def _adam(p, g, m, v, lr_wd, b1, one_b1, b2, one_b2, alpha, eps):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        pi = p[i] - lr_wd * p[i]
        gi = g[i]
        mi = b1 * m[i] + one_b1 * gi
        vi = b2 * v[i] + one_b2 * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = pi - alpha * mi / (math.sqrt(vi) + eps)


def adam_step(p, g, m, v, lr, beta1, beta2, eps, step, weight_decay):
    # Bias correction folded into one step size, computed once on the host in float64.
    alpha = lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)
    t = p.dtype.type
    _adam[grid_1d(p.shape[0])](p, g, m, v, t(lr * weight_decay), t(beta1), t(1.0 - beta1),
                                             t(beta2), t(1.0 - beta2), t(alpha), t(eps))


@cuda.jit
def _sgd_plain(p, g, lr, lr_wd):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        p[i] = p[i] - lr_wd * p[i] - lr * g[i]


@cuda.jit
def _sgd_momentum(p, g, vel, lr, lr_wd, mom, nesterov):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        pi = p[i] - lr_wd * p[i]
        vi = mom * vel[i] - lr * g[i]
        vel[i] = vi
        if nesterov:
            p[i] = pi + mom * vi - lr * g[i]
        else:
            p[i] = pi + vi


def sgd_step(p, g, velocity, lr, momentum, nesterov, weight_decay):
    t = p.dtype.type
    grid = grid_1d(p.shape[0])
    if momentum == 0.0:
        _sgd_plain[grid](p, g, t(lr), t(lr * weight_decay))
    else:
        _sgd_momentum[grid](p, g, velocity, t(lr), t(lr * weight_decay), t(momentum), bool(nesterov))


# ---------------------------------------------------------------------- gradient clipping
# The squared norm is reduced on the device in a fixed order (block partials, then one
# block folds them: kernels/gpu/reduce.py's scheme) into a float64 device cell; the scale
# is computed by one thread into another cell; the multiply reads it there. Nothing goes
# to the host, so a clipped training step costs no synchronisation.


@cuda.jit
def _add_into(acc, total):
    if cuda.grid(1) == 0:
        acc[0] += total[0]


def sq_norm_accumulate(x, acc):
    nblocks = blocks_1d(x.shape[0])
    partial = scratch("sq-norm-partials", (nblocks,), np.float64)
    reduce.sum_kernel("square")[nblocks, THREADS_1D](x, 0.0, 0.0, partial)
    total = scratch("sq-norm", (1,), np.float64)
    reduce.fold_partials(partial, total)
    _add_into[1, 1](acc, total)


@cuda.jit
def _clip_scale(sq, clipnorm, scale):
    if cuda.grid(1) == 0:
        norm = math.sqrt(sq[0])
        if norm > clipnorm:
            scale[0] = clipnorm / norm
        elif norm != norm:
            scale[0] = norm
        else:
            scale[0] = 1.0


def clip_scale(sq, clipnorm, scale):
    _clip_scale[1, 1](sq, float(clipnorm), scale)


@kernel_family
def _scale_by(dtype):
    cast = {"float32": float32, "float64": float64}[dtype]

    @cuda.jit
    def kernel(x, scale):
        s = cast(scale[0])   # in x's dtype, as the cpu casts it
        for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
            x[i] *= s
    return kernel


def scale_by(x, scale):
    _scale_by(np.dtype(x.dtype).name)[grid_1d(x.shape[0])](x, scale)
