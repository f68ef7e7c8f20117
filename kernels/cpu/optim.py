"""Fused, in-place optimizer steps on flat parameter arrays (Keras 3's formulas, per element
in kernels/rules.py).

These are memory-bound (Adam moves 28 bytes per float32 parameter), so each is a single
pass over large contiguous chunks, one chunk per thread; the scalars are cast to the
array dtype first so float32 loops stay float32 and vectorize.
"""
import numba
import numpy as np
from numba import prange

from numbanet.kernels.cpu import rules as R
from numbanet.kernels.cpu.threads import SERIAL_MAX, chunk


def _dispatch(chunk_kernel, parallel_kernel, p, *args):
    """The serial kernel below threads.SERIAL_MAX elements, else the chunked prange one."""
    if p.shape[0] > SERIAL_MAX:
        # A few chunks per thread balance the load; the count is passed in because
        # numba.get_num_threads() inside a cached kernel defeats the cache.
        parallel_kernel(4 * numba.get_num_threads(), p, *args)
    else:
        chunk_kernel(p, *args)


# Two things keep this loop vectorized (vsqrtps/vdivps): error_model="numpy", so a float
# division need not raise ZeroDivisionError, and indices counting up from 0 over a slice,
# so numba's negative-index wraparound check folds away (range(lo, hi) defeats both).
@numba.njit(cache=True, error_model="numpy")
def _adam_chunk(p, g, m, v, lr_wd, b1, one_b1, b2, one_b2, alpha, eps):
    for i in range(p.shape[0]):
        p[i], m[i], v[i] = R.adam(p[i], g[i], m[i], v[i], lr_wd, b1, one_b1, b2, one_b2, alpha, eps)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _adam_parallel(chunks, p, g, m, v, lr_wd, b1, one_b1, b2, one_b2, alpha, eps):
    for k in prange(chunks):
        lo, hi = chunk(k, chunks, p.shape[0])
        _adam_chunk(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], lr_wd, b1, one_b1, b2, one_b2, alpha, eps)


def adam_step(p, g, m, v, lr_wd, b1, one_b1, b2, one_b2, alpha, eps):
    """One Adam step in place; the scalars in p's dtype (kernels/ops/optim.py casts them)."""
    _dispatch(_adam_chunk, _adam_parallel, p, g, m, v, lr_wd, b1, one_b1, b2, one_b2, alpha, eps)


@numba.njit(parallel=True, cache=True)
def _sgd_plain(p, g, lr, lr_wd):
    for i in prange(p.shape[0]):
        p[i] = R.sgd(p[i], g[i], lr, lr_wd)


@numba.njit(parallel=True, cache=True)
def _sgd_momentum(p, g, vel, lr, lr_wd, mom, nesterov):
    for i in prange(p.shape[0]):
        p[i], vel[i] = R.sgd_momentum(p[i], g[i], vel[i], lr, lr_wd, mom, nesterov)


def sgd_step(p, g, velocity, lr, lr_wd, momentum, nesterov):
    """One SGD step in place; velocity None without momentum; scalars in p's dtype."""
    if velocity is None:
        _sgd_plain(p, g, lr, lr_wd)
    else:
        _sgd_momentum(p, g, velocity, lr, lr_wd, momentum, bool(nesterov))


# Both vectorized as _adam_chunk (error_model="numpy", indices from 0 over a slice); the
# flags are loop-invariant, so LLVM unswitches the loop into one per combination.
@numba.njit(cache=True, error_model="numpy")
def _rmsprop_chunk(p, g, vel, avg, mom, lr, lr_wd, rho, one_rho, momentum, eps, centered, use_momentum):
    zero = p.dtype.type(0)
    for i in range(p.shape[0]):
        R.rmsprop_at(i, p, g, vel, avg, mom, lr, lr_wd, rho, one_rho, momentum, eps, centered, use_momentum, zero)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _rmsprop_parallel(chunks, p, g, vel, avg, mom, lr, lr_wd, rho, one_rho, momentum, eps, centered, use_momentum):
    for k in prange(chunks):
        lo, hi = chunk(k, chunks, p.shape[0])
        # An absent slot is an empty array: its slice stays empty and is never indexed.
        _rmsprop_chunk(p[lo:hi], g[lo:hi], vel[lo:hi], avg[lo:hi], mom[lo:hi], lr, lr_wd, rho, one_rho, momentum,
                       eps, centered, use_momentum)


def rmsprop_step(p, g, vel, avg, mom, lr, lr_wd, rho, one_rho, momentum, eps):
    """One RMSprop step in place; avg None unless centered, mom None without momentum;
    the scalars in p's dtype (kernels/ops/optim.py casts them)."""
    empty = np.empty(0, p.dtype)
    _dispatch(_rmsprop_chunk, _rmsprop_parallel, p, g, vel, empty if avg is None else avg,
              empty if mom is None else mom, lr, lr_wd, rho, one_rho, momentum, eps, avg is not None,
              mom is not None)


@numba.njit(cache=True, error_model="numpy")
def _adagrad_chunk(p, g, acc, lr, lr_wd, eps):
    for i in range(p.shape[0]):
        p[i], acc[i] = R.adagrad(p[i], g[i], acc[i], lr, lr_wd, eps)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _adagrad_parallel(chunks, p, g, acc, lr, lr_wd, eps):
    for k in prange(chunks):
        lo, hi = chunk(k, chunks, p.shape[0])
        _adagrad_chunk(p[lo:hi], g[lo:hi], acc[lo:hi], lr, lr_wd, eps)


def adagrad_step(p, g, acc, lr, lr_wd, eps):
    """One Adagrad step in place; the scalars in p's dtype."""
    _dispatch(_adagrad_chunk, _adagrad_parallel, p, g, acc, lr, lr_wd, eps)


# ---------------------------------------------------------------------- gradient clipping
# Keras's clipnorm / global_clipnorm: g *= clipnorm / max(norm, clipnorm). The squared
# norm, the scale and the multiply are three steps on backend arrays, so that on the gpu
# neither the norm nor the scale ever visits the host.

# Elements per partial sum: fixed, so the summation order (and the float result) does
# not depend on the thread count.
_SQ_BLOCK = 1 << 16


@numba.njit(cache=True)
def _sq_sum(x):
    acc = 0.0
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        acc += v * v
    return acc


@numba.njit(parallel=True, cache=True)
def _sq_sum_blocks(x, partial):
    n = x.shape[0]
    for b in prange(partial.shape[0]):
        partial[b] = _sq_sum(x[b * _SQ_BLOCK:min((b + 1) * _SQ_BLOCK, n)])


@numba.njit(cache=True)
def _fold(partial, acc):
    total = 0.0
    for b in range(partial.shape[0]):
        total += partial[b]
    acc[0] += total


def sq_norm_accumulate(x, acc):
    """acc[0] (float64) += sum(x ** 2), accumulated in float64 in a fixed order."""
    n = x.shape[0]
    if n <= _SQ_BLOCK:
        acc[0] += _sq_sum(x)
        return
    partial = np.empty((n + _SQ_BLOCK - 1) // _SQ_BLOCK, np.float64)
    _sq_sum_blocks(x, partial)
    _fold(partial, acc)


@numba.njit(cache=True)
def clip_scale(sq, clipnorm, scale):
    """scale[0] = clipnorm / max(sqrt(sq[0]), clipnorm): exactly 1 when the norm is within
    bounds, NaN when the norm is NaN (so a broken gradient is not hidden)."""
    scale[0] = R.clip_scale(sq[0], clipnorm)


@numba.njit(cache=True)
def _scale_by_serial(x, scale):
    s = x.dtype.type(scale[0])
    for i in range(x.shape[0]):
        x[i] *= s


@numba.njit(parallel=True, cache=True)
def _scale_by_parallel(x, scale):
    s = x.dtype.type(scale[0])
    for i in prange(x.shape[0]):
        x[i] *= s


def scale_by(x, scale):
    # A model's biases and norms are small: one thread, no pool wake-up (threads.SERIAL_MAX).
    (_scale_by_parallel if x.shape[0] > SERIAL_MAX else _scale_by_serial)(x, scale)
