"""Fused optimizer steps on the gpu: one kernel launch per parameter tensor, each thread
reading p, g and the state once and writing them once (the step is memory bound; a
kernel per formula term would multiply the traffic). The formulas are kernels/rules.py's,
and the scalars are cast to the dtype as on the cpu, so float32 steps agree to rounding.
"""
import numpy as np
from numba import cuda

from numbanet.kernels.gpu import reduce
from numbanet.kernels.gpu import rules as R
from numbanet.kernels.gpu.launch import ACC, THREADS_1D, blocks_1d, dummy, grid_1d, kernel_family, scratch


@cuda.jit
def _adam(p, g, m, v, lr_wd, b1, one_b1, b2, one_b2, alpha, eps):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        p[i], m[i], v[i] = R.adam(p[i], g[i], m[i], v[i], lr_wd, b1, one_b1, b2, one_b2, alpha, eps)


def adam_step(p, g, m, v, lr_wd, b1, one_b1, b2, one_b2, alpha, eps):
    _adam[grid_1d(p.shape[0])](p, g, m, v, lr_wd, b1, one_b1, b2, one_b2, alpha, eps)


@cuda.jit
def _sgd_plain(p, g, lr, lr_wd):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        p[i] = R.sgd(p[i], g[i], lr, lr_wd)


@cuda.jit
def _sgd_momentum(p, g, vel, lr, lr_wd, mom, nesterov):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        p[i], vel[i] = R.sgd_momentum(p[i], g[i], vel[i], lr, lr_wd, mom, nesterov)


def sgd_step(p, g, velocity, lr, lr_wd, momentum, nesterov):
    grid = grid_1d(p.shape[0])
    if velocity is None:
        _sgd_plain[grid](p, g, lr, lr_wd)
    else:
        _sgd_momentum[grid](p, g, velocity, lr, lr_wd, momentum, bool(nesterov))


@cuda.jit
def _rmsprop(p, g, vel, avg, mom, lr, lr_wd, rho, one_rho, momentum, eps, centered, use_momentum):
    zero = lr - lr   # 0 in the parameter's dtype
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        R.rmsprop_at(i, p, g, vel, avg, mom, lr, lr_wd, rho, one_rho, momentum, eps, centered, use_momentum, zero)


def rmsprop_step(p, g, vel, avg, mom, lr, lr_wd, rho, one_rho, momentum, eps):
    _rmsprop[grid_1d(p.shape[0])](p, g, vel, dummy(p.dtype) if avg is None else avg,
                                  dummy(p.dtype) if mom is None else mom, lr, lr_wd, rho, one_rho, momentum, eps,
                                  avg is not None, mom is not None)


@cuda.jit
def _adagrad(p, g, acc, lr, lr_wd, eps):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        p[i], acc[i] = R.adagrad(p[i], g[i], acc[i], lr, lr_wd, eps)


def adagrad_step(p, g, acc, lr, lr_wd, eps):
    _adagrad[grid_1d(p.shape[0])](p, g, acc, lr, lr_wd, eps)


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
        scale[0] = R.clip_scale(sq[0], clipnorm)


def clip_scale(sq, clipnorm, scale):
    _clip_scale[1, 1](sq, float(clipnorm), scale)


@kernel_family
def _scale_by(dtype):
    cast = ACC[dtype]

    @cuda.jit
    def kernel(x, scale):
        s = cast(scale[0])   # in x's dtype, as the cpu casts it
        for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
            x[i] *= s
    return kernel


def scale_by(x, scale):
    _scale_by(np.dtype(x.dtype).name)[grid_1d(x.shape[0])](x, scale)
