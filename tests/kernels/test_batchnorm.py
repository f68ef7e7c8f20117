"""batch_norm_train / batch_norm_inference / batch_norm_backward against NumPy (Keras 3's
formulas), finite differences, moving statistics, determinism, bad input."""
import numpy as np
import pytest

from conftest import simulated
from helpers import assert_close, check_grad, check_op, randn


def batch_norm_ref(x, gamma, beta, moving_mean, moving_var, momentum=0.99, epsilon=1e-3):
    """Keras 3's BatchNormalization in training mode, in float64: statistics over every
    axis but the last, the biased variance both to normalize and for the moving update.
    -> (y, mean, rstd, new moving_mean, new moving_var)."""
    dtype = x.dtype
    x = x.astype(np.float64)
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axes)
    var = ((x - mean) ** 2).mean(axes)
    rstd = 1.0 / np.sqrt(var + epsilon)
    y = (x - mean) * rstd
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    new_mean = moving_mean * momentum + mean * (1 - momentum)
    new_var = moving_var * momentum + var * (1 - momentum)
    return tuple(a.astype(dtype) for a in (y, mean, rstd, new_mean, new_var))


def batch_norm_inference_ref(x, gamma, beta, moving_mean, moving_var, epsilon=1e-3):
    y = (x.astype(np.float64) - moving_mean) / np.sqrt(moving_var.astype(np.float64) + epsilon)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y.astype(x.dtype)


def batch_norm_backward_ref(x, gamma, dy, epsilon=1e-3):
    """Gradients of y = xhat * gamma + beta with batch statistics, in float64."""
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    c = x.shape[-1]
    x2, d2 = x.reshape(-1, c), dy.reshape(-1, c)
    n = x2.shape[0]
    mean = x2.mean(0)
    rstd = 1.0 / np.sqrt(((x2 - mean) ** 2).mean(0) + epsilon)
    xhat = (x2 - mean) * rstd
    g = np.ones(c) if gamma is None else gamma.astype(np.float64)
    dbeta = d2.sum(0)
    dgamma = (d2 * xhat).sum(0)
    dx = g * rstd / n * (n * d2 - dbeta - xhat * dgamma)
    return dx.reshape(x.shape), dgamma, dbeta


def _train(be, x, gamma, beta, mm, mv, **kw):
    """The op's outputs and the moving statistics it updated, as one tuple."""
    y, mean, rstd = be.batch_norm_train(x, gamma, beta, mm, mv, **kw)
    return y, mean, rstd, mm, mv


SHAPES = [(1, 3), (2, 3, 2, 33)] if simulated() else [(1, 3), (5, 4), (2, 3, 4, 7), (600, 9), (3, 300, 5)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("params", ["both", "none"] if simulated() else ["both", "gamma", "beta", "none"])
def test_batch_norm_train_forward(be, small, shape, params, dtype):
    c = shape[-1]
    x = randn(shape, dtype, scale=2.0) + dtype(0.5)
    gamma = randn((c,), dtype, seed=1) if params in ("both", "gamma") else None
    beta = randn((c,), dtype, seed=2) if params in ("both", "beta") else None
    mm = randn((c,), dtype, seed=3)
    mv = np.abs(randn((c,), dtype, seed=4)) + dtype(0.5)
    rows = int(np.prod(shape[:-1]))
    # The op updates the moving statistics in place (on the cpu, the very arrays passed):
    # the reference starts from copies.
    mm0, mv0 = mm.copy(), mv.copy()
    check_op(be, _train, [x, gamma, beta, mm, mv], lambda x, g, b, m, v, **kw: batch_norm_ref(x, g, b, mm0, mv0, **kw),
             kwargs={"momentum": 0.9, "epsilon": 1e-3}, k=rows, scale=3.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_inference_forward(be, small, shape, dtype):
    c = shape[-1]
    x = randn(shape, dtype, scale=2.0)
    gamma, beta = randn((c,), dtype, seed=1), randn((c,), dtype, seed=2)
    mm = randn((c,), dtype, seed=3)
    mv = np.abs(randn((c,), dtype, seed=4)) + dtype(0.5)
    check_op(be, lambda be, *a, **k: be.batch_norm_inference(*a, **k), [x, gamma, beta, mm, mv],
             batch_norm_inference_ref, kwargs={"epsilon": 0.01}, scale=3.0)
    check_op(be, lambda be, *a: be.batch_norm_inference(*a), [x, None, None, mm, mv],
             lambda x, g, b, m, v: batch_norm_inference_ref(x, g, b, m, v), scale=3.0)


def test_batch_norm_moving_statistics_after_three_steps(be):
    """Three training steps on three batches: moving = moving * m + batch * (1 - m) each
    time, with the biased batch variance, from Keras's initial zeros and ones."""
    c = 3
    mm, mv = be.asarray(np.zeros(c, np.float64)), be.asarray(np.ones(c, np.float64))
    want_m, want_v = np.zeros(c), np.ones(c)
    for step in range(3):
        x = randn((4, 2, c), np.float64, seed=10 + step, scale=1.0 + step) + step
        be.batch_norm_train(be.asarray(x), None, None, mm, mv, momentum=0.8)
        flat = x.reshape(-1, c)
        want_m = want_m * 0.8 + flat.mean(0) * 0.2
        want_v = want_v * 0.8 + flat.var(0) * 0.2
    np.testing.assert_allclose(be.to_numpy(mm), want_m, rtol=1e-12)
    np.testing.assert_allclose(be.to_numpy(mv), want_v, rtol=1e-12)


def test_batch_norm_float32_large_mean(be, small):
    """Channels far from zero (mean 1e4, std 1): an unshifted one-pass E[x^2] - E[x]^2
    loses every digit of the variance; the shifted float64 sums keep it."""
    x = (randn((8, 4) if small else (512, 16), np.float64) + 1e4).astype(np.float32)
    c = x.shape[-1]
    mm, mv = be.asarray(np.zeros(c, np.float32)), be.asarray(np.ones(c, np.float32))
    y, _, rstd = (be.to_numpy(a) for a in be.batch_norm_train(be.asarray(x), None, None, mm, mv, epsilon=1e-6))
    want_y, _, want_rstd, _, _ = batch_norm_ref(x.astype(np.float64), None, None, np.zeros(c), np.ones(c),
                                                epsilon=1e-6)
    np.testing.assert_allclose(rstd, want_rstd, rtol=1e-3)
    np.testing.assert_allclose(y, want_y, atol=5e-3)


@pytest.mark.parametrize("params", ["both", "none"] if simulated() else ["both", "gamma", "beta", "none"])
def test_batch_norm_backward_finite_differences(be, small, params):
    x = randn((3, 2, 5) if small else (4, 3, 5), np.float64, scale=1.5)
    gamma = randn((5,), np.float64, seed=1) if params in ("both", "gamma") else None
    beta = randn((5,), np.float64, seed=2) if params in ("both", "beta") else None
    r = randn(x.shape, np.float64, seed=3)
    wrt = [0] + ([1] if gamma is not None else []) + ([2] if beta is not None else [])

    def stats(be):
        return be.asarray(np.zeros(5)), be.asarray(np.ones(5))

    def loss(be, x, gamma, beta, r):
        y, _, _ = be.batch_norm_train(x, gamma, beta, *stats(be), epsilon=0.01)
        return float(np.sum(be.to_numpy(y) * be.to_numpy(r)))

    def backward(be, x, gamma, beta, r):
        _, mean, rstd = be.batch_norm_train(x, gamma, beta, *stats(be), epsilon=0.01)
        dx, dgamma, dbeta = be.batch_norm_backward(x, gamma, r, mean, rstd, center=beta is not None)
        assert (dgamma is None) == (gamma is None) and (dbeta is None) == (beta is None)
        return tuple(g for g in (dx, dgamma, dbeta) if g is not None)

    check_grad(be, loss, backward, [x, gamma, beta, r], wrt=wrt, samples=4 if small else 30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 4), (3, 2, 33)] if simulated() else [(1, 4), (3, 17), (700, 8), (2, 300, 3)])
def test_batch_norm_backward_reference(be, small, shape, dtype):
    c = shape[-1]
    x = randn(shape, dtype, scale=2.0)
    gamma = randn((c,), dtype, seed=1)
    dy = randn(shape, dtype, seed=2)
    _, mean, rstd, _, _ = batch_norm_ref(x, gamma, None, np.zeros(c), np.ones(c))
    rows = int(np.prod(shape[:-1]))
    check_op(be, lambda be, x, g, dy, m, r: be.batch_norm_backward(x, g, dy, m, r), [x, gamma, dy, mean, rstd],
             lambda x, g, dy, m, r: tuple(a.astype(dtype) for a in batch_norm_backward_ref(x, g, dy)),
             k=rows, scale=3.0)


def test_batch_norm_is_deterministic(be, small):
    shape = (6, 5) if small else (5000, 64)
    x = be.asarray(randn(shape, np.float32))
    gamma = be.asarray(randn(shape[-1:], np.float32, seed=1))
    dy = be.asarray(randn(shape, np.float32, seed=2))
    c = shape[-1]

    def run():
        mm, mv = be.asarray(np.zeros(c, np.float32)), be.asarray(np.ones(c, np.float32))
        y, mean, rstd = be.batch_norm_train(x, gamma, None, mm, mv)
        grads = be.batch_norm_backward(x, gamma, dy, mean, rstd)
        return [be.to_numpy(a).tobytes() for a in (y, mean, rstd, mm, mv) + grads]

    first = run()
    assert run() == first


def test_batch_norm_rejects_bad_input(be):
    f32 = np.float32
    x = be.asarray(np.ones((2, 3), f32))
    g3 = be.asarray(np.ones(3, f32))

    def stats():
        return be.asarray(np.zeros(3, f32)), be.asarray(np.ones(3, f32))

    with pytest.raises(ValueError, match=r"batch_norm_train: gamma must have shape \(3,\), got \(4,\)"):
        be.batch_norm_train(x, be.asarray(np.ones(4, f32)), None, *stats())
    with pytest.raises(ValueError, match=r"batch_norm_train: moving_variance must have shape \(3,\), got \(2,\)"):
        be.batch_norm_train(x, None, None, stats()[0], be.asarray(np.ones(2, f32)))
    with pytest.raises(TypeError, match=r"batch_norm_inference: moving_mean is float64 but x is float32"):
        be.batch_norm_inference(x, None, None, be.asarray(np.zeros(3)), stats()[1])
    with pytest.raises(ValueError, match=r"batch_norm_train: x must have at least 2 dimensions"):
        be.batch_norm_train(be.asarray(np.ones(3, f32)), g3, None, *stats())
    with pytest.raises(ValueError, match=r"batch_norm_train: x is empty"):
        be.batch_norm_train(be.asarray(np.ones((0, 3), f32)), None, None, *stats())
    with pytest.raises(ValueError, match=r"batch_norm_inference: epsilon must be > 0, got 0"):
        be.batch_norm_inference(x, None, None, *stats(), epsilon=0.0)
    with pytest.raises(ValueError, match=r"batch_norm_train: momentum must be in \[0, 1\], got 1.5"):
        be.batch_norm_train(x, None, None, *stats(), momentum=1.5)
    mm = be.asarray(np.zeros(3, f32))
    with pytest.raises(ValueError, match=r"batch_norm_train: moving_mean"):
        be.batch_norm_train(x, None, None, mm, mm)   # the two moving statistics aliased
    if be.name == "cpu":
        # Written in place, so never copied: a strided or read-only one would lose the update.
        strided = np.zeros(6, f32)[::2]
        with pytest.raises(ValueError, match=r"batch_norm_train: moving_mean must be C-contiguous"):
            be.batch_norm_train(x, None, None, strided, stats()[1])
        frozen = np.ones(3, f32)
        frozen.flags.writeable = False
        with pytest.raises(ValueError, match=r"batch_norm_train: moving_variance is read-only"):
            be.batch_norm_train(x, None, None, stats()[0], frozen)
    _, mean, rstd = be.batch_norm_train(x, g3, None, *stats())
    with pytest.raises(ValueError, match=r"batch_norm_backward: dy must have shape \(2, 3\), got \(3, 2\)"):
        be.batch_norm_backward(x, g3, be.asarray(np.ones((3, 2), f32)), mean, rstd)
    with pytest.raises(ValueError, match=r"batch_norm_backward: rstd must have shape \(3,\), got \(2,\)"):
        be.batch_norm_backward(x, g3, x, mean, be.asarray(np.ones(2, f32)))


def test_batch_norm_inference_leaves_moving_statistics(be):
    x = be.asarray(randn((4, 3), np.float32))
    mm, mv = be.asarray(np.full(3, 0.25, np.float32)), be.asarray(np.full(3, 2.0, np.float32))
    be.batch_norm_inference(x, None, None, mm, mv)
    assert_close(be.to_numpy(mm), np.full(3, 0.25, np.float32), np.float32)
    assert_close(be.to_numpy(mv), np.full(3, 2.0, np.float32), np.float32)
