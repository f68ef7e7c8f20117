"""Adam and SGD steps against NumPy implementations of Keras 3's formulas, over several steps."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import simulated
from helpers import assert_close, randn

HYPOTHESIS = settings(max_examples=4 if simulated() else 15, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def adam_ref(p, g, m, v, lr, b1, b2, eps, step, wd):
    p, m, v = p.astype(np.float64), m.astype(np.float64), v.astype(np.float64)
    g = g.astype(np.float64)
    if wd:
        p = p - lr * wd * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    alpha = lr * np.sqrt(1 - b2 ** step) / (1 - b1 ** step)
    return p - alpha * m / (np.sqrt(v) + eps), m, v


def sgd_ref(p, g, vel, lr, momentum, nesterov, wd):
    p, g = p.astype(np.float64), g.astype(np.float64)
    if wd:
        p = p - lr * wd * p
    if momentum == 0:
        return p - lr * g, vel
    vel = momentum * vel.astype(np.float64) - lr * g
    return (p + momentum * vel - lr * g if nesterov else p + vel), vel


def run_adam(be, shape, dtype, steps, wd, lr=1e-2, b1=0.9, b2=0.999, eps=1e-7):
    p = randn(shape, dtype)
    m = np.zeros(shape, dtype)
    v = np.zeros(shape, dtype)
    dp, dm, dv = be.asarray(p.copy()), be.asarray(m.copy()), be.asarray(v.copy())
    rp, rm, rv = p.astype(np.float64), m.astype(np.float64), v.astype(np.float64)
    for step in range(1, steps + 1):
        g = randn(shape, dtype, seed=step)
        be.adam_step(dp, be.asarray(g), dm, dv, lr=lr, beta1=b1, beta2=b2, eps=eps, step=step, weight_decay=wd)
        rp, rm, rv = adam_ref(rp, g, rm, rv, lr, b1, b2, eps, step, wd)
    for got, want, what in ((dp, rp, "param"), (dm, rm, "m"), (dv, rv, "v")):
        # float32: every step rounds, so allow a few ulps per step.
        assert_close(be.to_numpy(got), want.astype(dtype), dtype, k=4 * steps, what=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adam_several_steps(be, dtype, wd):
    run_adam(be, (7, 5), dtype, steps=5, wd=wd)


def test_adam_large_parallel_path(be, small):
    # Above the single-thread threshold the cpu kernel splits into chunks.
    run_adam(be, (300 if small else 200_003,), np.float32, steps=3, wd=0.004)


@HYPOTHESIS
@given(n=st.integers(1, 300), steps=st.integers(1, 4), dtype=st.sampled_from([np.float32, np.float64]),
       wd=st.sampled_from([0.0, 0.05]))
def test_adam_hypothesis(be, n, steps, dtype, wd):
    run_adam(be, (n,), dtype, steps, wd)


def test_adam_first_step_moves_by_lr(be):
    # With bias correction the first step is lr * g / (|g| + eps) ~ lr * sign(g).
    p = np.zeros(4, np.float64)
    g = np.array([3.0, -0.5, 2.0, -7.0])
    m, v = np.zeros(4), np.zeros(4)
    dp = be.asarray(p)
    be.adam_step(dp, be.asarray(g), be.asarray(m), be.asarray(v), lr=0.1, step=1, eps=0.0)
    np.testing.assert_allclose(be.to_numpy(dp), -0.1 * np.sign(g), rtol=1e-12)


def run_sgd(be, dtype, steps, momentum, nesterov, wd, lr=0.05):
    shape = (6, 3)
    p = randn(shape, dtype)
    vel = np.zeros(shape, dtype)
    dp, dvel = be.asarray(p.copy()), be.asarray(vel.copy())
    rp, rvel = p.astype(np.float64), vel.astype(np.float64)
    for step in range(steps):
        g = randn(shape, dtype, seed=10 + step)
        be.sgd_step(dp, be.asarray(g), dvel if momentum else None, lr=lr, momentum=momentum,
                    nesterov=nesterov, weight_decay=wd)
        rp, rvel = sgd_ref(rp, g, rvel, lr, momentum, nesterov, wd)
    assert_close(be.to_numpy(dp), rp.astype(dtype), dtype, k=4 * steps, what="param")
    if momentum:
        assert_close(be.to_numpy(dvel), rvel.astype(dtype), dtype, k=4 * steps, what="velocity")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_sgd_several_steps(be, dtype, momentum, nesterov, wd):
    run_sgd(be, dtype, 4, momentum, nesterov, wd)


def test_sgd_without_momentum_is_p_minus_lr_g(be):
    p = randn((5,), np.float64)
    g = randn((5,), np.float64, seed=1)
    dp = be.asarray(p.copy())
    be.sgd_step(dp, be.asarray(g), lr=0.3)
    np.testing.assert_allclose(be.to_numpy(dp), p - 0.3 * g, rtol=1e-15)


def test_optim_bad_input(be):
    p = be.asarray(np.zeros((3, 2), np.float32))
    ok = be.asarray(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="adam_step"):
        be.adam_step(p, ok, ok, ok, lr=0.1, step=0)
    with pytest.raises(ValueError, match="adam_step"):
        be.adam_step(p, be.asarray(np.zeros((2, 3), np.float32)), ok, ok, lr=0.1, step=1)
    with pytest.raises(TypeError, match="adam_step"):
        be.adam_step(p, be.asarray(np.zeros((3, 2), np.float64)), ok, ok, lr=0.1, step=1)
    with pytest.raises(TypeError, match="adam_step"):
        be.adam_step(be.asarray(np.zeros((3, 2), np.int32)), ok, ok, ok, lr=0.1, step=1)
    with pytest.raises(TypeError, match="adam_step"):
        be.adam_step(p, be.asarray(np.zeros((3, 2), np.float16)), ok, ok, lr=0.1, step=1)
    with pytest.raises(ValueError, match="adam_step"):
        be.adam_step(p, ok, ok, ok, lr=0.1, step=1, beta1=1.0)
    with pytest.raises(ValueError, match="sgd_step"):
        be.sgd_step(p, ok, None, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="sgd_step"):
        be.sgd_step(p, be.asarray(np.zeros((6,), np.float32)), lr=0.1)
    with pytest.raises(TypeError, match="sgd_step"):
        be.sgd_step(p, be.asarray(np.zeros((3, 2), np.int64)), lr=0.1)


# --------------------------------------------------------------------------- gradient clipping

def clip_ref(grads, clipnorm):
    """Keras's rule, in float64: g * clipnorm / max(norm, clipnorm) over the arrays together."""
    norm = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
    return [(g.astype(np.float64) * (clipnorm / max(norm, clipnorm))).astype(g.dtype) for g in grads]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("clipnorm", [0.5, 1e6])
def test_clip_by_norm(be, dtype, clipnorm):
    g = randn((7, 5), dtype, scale=0.3)
    d = be.asarray(g.copy())
    be.clip_by_norm(d, clipnorm)
    (want,) = clip_ref([g], clipnorm)
    assert_close(be.to_numpy(d), want, dtype, k=35)
    if clipnorm > 1e3:  # within bounds: untouched, bit for bit (scale exactly 1)
        np.testing.assert_array_equal(be.to_numpy(d), g)
    else:
        np.testing.assert_allclose(np.linalg.norm(be.to_numpy(d).astype(np.float64)), clipnorm, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_by_global_norm(be, dtype, small):
    big = 300 if small else 200_000   # > the cpu's 65,536-element block: the blocked, parallel sum
    grads = [randn((3, 4), dtype, 1), randn((big,), dtype, 2, scale=0.01), randn((5,), dtype, 3)]
    dev = [be.asarray(g.copy()) for g in grads]
    be.clip_by_global_norm(dev, 1.0)
    want = clip_ref(grads, 1.0)
    for got, w in zip(dev, want):
        assert_close(be.to_numpy(got), w, dtype, k=big)
    total = np.sqrt(sum(np.sum(be.to_numpy(g).astype(np.float64) ** 2) for g in dev))
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)


def test_clip_nan_gradient_stays_nan(be):
    g = np.array([1.0, np.nan, 2.0], np.float32)
    d = be.asarray(g.copy())
    be.clip_by_norm(d, 1.0)
    assert np.all(np.isnan(be.to_numpy(d)))


def test_clip_bad_input(be):
    g = be.asarray(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="clip_by_norm: clipnorm must be > 0, got 0"):
        be.clip_by_norm(g, 0)
    with pytest.raises(TypeError, match="clip_by_norm: grad must be float32 or float64, got int32"):
        be.clip_by_norm(be.asarray(np.ones(3, np.int32)), 1.0)
    with pytest.raises(ValueError, match="clip_by_global_norm: expected a non-empty list"):
        be.clip_by_global_norm([], 1.0)
    with pytest.raises(TypeError, match=r"clip_by_global_norm: grads\[1\] must be"):
        be.clip_by_global_norm([g, np.ones(3) if be.name == "gpu" else [1.0]], 1.0)
    with pytest.raises(ValueError, match=r"clip_by_global_norm: grads\[0\] shares memory with grads\[1\]"):
        be.clip_by_global_norm([g, g], 1.0)


def test_clip_by_global_norm_names_any_two_that_overlap(be):
    """Views that only touch, and empty views, pass; an overlapping pair is named wherever
    it sits in the list and in memory, and nothing is scaled before the error."""
    buf = be.asarray(np.ones(40, np.float32))
    other = be.asarray(np.ones(5, np.float32))
    be.clip_by_global_norm([buf[20:40], buf[0:10], other, buf[10:20]], 100.0)   # norm 6.7: unchanged
    be.clip_by_global_norm([buf[0:10], buf[5:5]], 100.0)   # an empty view holds no element of another
    np.testing.assert_array_equal(be.to_numpy(buf), np.ones(40, np.float32))
    for grads, pair in (([other, buf[20:40], buf[0:10], buf[15:25]], (1, 3)),
                        ([buf[30:35], other, buf[0:40]], (0, 2)),
                        ([buf[0:10], buf[12:14], buf[9:11]], (0, 2))):
        with pytest.raises(ValueError, match=rf"clip_by_global_norm: grads\[{pair[0]}\] shares memory with "
                                             rf"grads\[{pair[1]}\]"):
            be.clip_by_global_norm(grads, 1.0)
    np.testing.assert_array_equal(be.to_numpy(buf), np.ones(40, np.float32))


# ---------------------------------------------------------------------- RMSprop, Adagrad

def rmsprop_ref(p, g, vel, avg, mom, lr, rho, momentum, eps, centered, wd):
    """Keras 3's RMSprop.update_step in float64 (epsilon inside the square root)."""
    p, g = p.astype(np.float64), g.astype(np.float64)
    if wd:
        p = p - lr * wd * p
    vel = rho * vel + (1 - rho) * g * g
    if centered:
        avg = rho * avg + (1 - rho) * g
        denominator = vel - avg * avg + eps
    else:
        denominator = vel + eps
    increment = lr * g / np.sqrt(denominator)
    if momentum > 0:
        mom = momentum * mom + increment
        return p - mom, vel, avg, mom
    return p - increment, vel, avg, mom


def adagrad_ref(p, g, acc, lr, eps, wd):
    p, g = p.astype(np.float64), g.astype(np.float64)
    if wd:
        p = p - lr * wd * p
    acc = acc + g * g
    return p - lr * g / np.sqrt(acc + eps), acc


def run_rmsprop(be, shape, dtype, steps, momentum, centered, wd, lr=1e-2, rho=0.9, eps=1e-7):
    p = randn(shape, dtype)
    dp, dv = be.asarray(p.copy()), be.asarray(np.zeros(shape, dtype))
    da = be.asarray(np.zeros(shape, dtype)) if centered else None
    dm = be.asarray(np.zeros(shape, dtype)) if momentum > 0 else None
    rp, rv, ra, rm = p.astype(np.float64), np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for step in range(1, steps + 1):
        g = randn(shape, dtype, seed=step)
        be.rmsprop_step(dp, be.asarray(g), dv, da, dm, lr=lr, rho=rho, momentum=momentum, eps=eps, weight_decay=wd)
        rp, rv, ra, rm = rmsprop_ref(rp, g, rv, ra, rm, lr, rho, momentum, eps, centered, wd)
    got = [(dp, rp, "param"), (dv, rv, "velocity")] + ([(da, ra, "average_gradient")] if centered else []) \
        + ([(dm, rm, "momentum")] if momentum > 0 else [])
    for arr, want, what in got:
        assert_close(be.to_numpy(arr), want.astype(dtype), dtype, k=8 * steps, what=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum,centered", [(0.0, False), (0.9, False), (0.0, True), (0.5, True)])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_rmsprop_several_steps(be, dtype, momentum, centered, wd):
    run_rmsprop(be, (7, 5), dtype, steps=4, momentum=momentum, centered=centered, wd=wd)


def test_rmsprop_large_parallel_path(be, small):
    run_rmsprop(be, (300 if small else 200_003,), np.float32, steps=3, momentum=0.9, centered=True, wd=0.0)


def test_rmsprop_first_step(be):
    """From zero state the first plain step is lr g / sqrt((1 - rho) g^2 + eps)."""
    g = np.array([3.0, -0.5, 2.0, -7.0])
    dp = be.asarray(np.zeros(4))
    be.rmsprop_step(dp, be.asarray(g), be.asarray(np.zeros(4)), lr=0.1, rho=0.75, eps=0.0)
    np.testing.assert_allclose(be.to_numpy(dp), -0.1 * np.sign(g) / np.sqrt(0.25), rtol=1e-12)


def run_adagrad(be, shape, dtype, steps, wd, lr=1e-2, eps=1e-7, initial=0.1):
    p = randn(shape, dtype)
    dp, dacc = be.asarray(p.copy()), be.asarray(np.full(shape, initial, dtype))
    rp, racc = p.astype(np.float64), np.full(shape, initial)
    for step in range(1, steps + 1):
        g = randn(shape, dtype, seed=step)
        be.adagrad_step(dp, be.asarray(g), dacc, lr=lr, eps=eps, weight_decay=wd)
        rp, racc = adagrad_ref(rp, g, racc, lr, eps, wd)
    assert_close(be.to_numpy(dp), rp.astype(dtype), dtype, k=4 * steps, what="param")
    assert_close(be.to_numpy(dacc), racc.astype(dtype), dtype, k=4 * steps, what="accumulator")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adagrad_several_steps(be, dtype, wd):
    run_adagrad(be, (7, 5), dtype, steps=4, wd=wd)


def test_adagrad_large_parallel_path(be, small):
    run_adagrad(be, (300 if small else 200_003,), np.float32, steps=3, wd=0.0)


def test_rmsprop_adagrad_bad_input(be):
    p = be.asarray(np.zeros(4, np.float32))
    g = be.asarray(np.zeros(4, np.float32))
    v = be.asarray(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"rmsprop_step: momentum=0.9 needs a momentum_slot array"):
        be.rmsprop_step(p, g, v, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"rmsprop_step: rho must be in \[0, 1\), got 1.0"):
        be.rmsprop_step(p, g, v, lr=0.1, rho=1.0)
    with pytest.raises(TypeError, match=r"rmsprop_step: velocity must be an array, got None"):
        be.rmsprop_step(p, g, None, lr=0.1)
    with pytest.raises(ValueError, match=r"rmsprop_step: .*velocity"):
        be.rmsprop_step(p, g, p, lr=0.1)   # the state aliases the parameter
    with pytest.raises(TypeError, match=r"adagrad_step: accumulator is float64 but param is float32"):
        be.adagrad_step(p, g, be.asarray(np.zeros(4)), lr=0.1)
    with pytest.raises(ValueError, match=r"adagrad_step: accumulator"):
        be.adagrad_step(p, g, be.asarray(np.zeros(5, np.float32)), lr=0.1)
