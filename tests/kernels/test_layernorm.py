"""layer_norm / layer_norm_backward against NumPy (Keras's formula), finite differences, bad input."""
import numpy as np
import pytest

from conftest import simulated
from helpers import check_grad, check_op, randn


def layer_norm_ref(x, gamma, beta, epsilon=1e-3):
    """Keras's LayerNormalization over the last axis in float64: variance with 1/C,
    epsilon inside the square root."""
    dtype = x.dtype
    x = x.astype(np.float64)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + epsilon)
    y = (x - mean) * rstd
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y.astype(dtype), mean[..., 0].astype(dtype), rstd[..., 0].astype(dtype)


def ln_op(be, x, gamma, beta, epsilon=1e-3):
    return be.layer_norm(x, gamma, beta, epsilon=epsilon)


# Under the simulator (a block of 32 Python threads per row) fewer, smaller rows; C = 33
# still crosses the gpu's 32-thread row stride.
FORWARD_SHAPES = ([(1, 1), (2, 3, 33)] if simulated() else [(1, 1), (3, 5), (2, 7, 16), (2, 3, 4, 33), (600, 9)])
PARAMS = ["both", "none"] if simulated() else ["both", "gamma", "beta", "none"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", FORWARD_SHAPES)
@pytest.mark.parametrize("params", ["both", "gamma", "beta", "none"])
def test_layer_norm_forward(be, small, shape, params, dtype):
    c = shape[-1]
    x = randn(shape, dtype, scale=2.0) + dtype(0.5)
    gamma = randn((c,), dtype, seed=1) if params in ("both", "gamma") else None
    beta = randn((c,), dtype, seed=2) if params in ("both", "beta") else None
    check_op(be, ln_op, [x, gamma, beta], layer_norm_ref, k=c, scale=3.0)


@pytest.mark.parametrize("epsilon", [0.0, 1e-5, 0.5])
def test_layer_norm_epsilon_is_inside_the_sqrt(be, epsilon):
    x = randn((4, 6), np.float64)
    check_op(be, ln_op, [x, None, None], layer_norm_ref, kwargs={"epsilon": epsilon}, k=6)


def test_layer_norm_float32_large_mean(be):
    """Rows far from zero (mean 1e4, std 1): a one-pass E[x^2] - E[x]^2 would lose every
    digit of the variance in float32."""
    x = (randn((8, 64), np.float64) + 1e4).astype(np.float32)
    y, _, rstd = (be.to_numpy(a) for a in be.layer_norm(be.asarray(x), None, None, epsilon=1e-6))
    want_y, _, want_rstd = layer_norm_ref(x.astype(np.float64), None, None, 1e-6)
    np.testing.assert_allclose(rstd, want_rstd, rtol=1e-3)
    np.testing.assert_allclose(y, want_y, atol=5e-3)


@pytest.mark.parametrize("params", PARAMS)
def test_layer_norm_backward_finite_differences(be, small, params):
    x = randn((1, 2, 5) if small else (2, 3, 5), np.float64, scale=1.5)
    gamma = randn((5,), np.float64, seed=1) if params in ("both", "gamma") else None
    beta = randn((5,), np.float64, seed=2) if params in ("both", "beta") else None
    r = randn(x.shape, np.float64, seed=3)
    inputs = [x, gamma, beta, r]
    wrt = [0] + ([1] if gamma is not None else []) + ([2] if beta is not None else [])

    def loss(be, x, gamma, beta, r):
        y, _, _ = be.layer_norm(x, gamma, beta, epsilon=0.01)
        return float(np.sum(be.to_numpy(y) * be.to_numpy(r)))

    def backward(be, x, gamma, beta, r):
        _, mean, rstd = be.layer_norm(x, gamma, beta, epsilon=0.01)
        dx, dgamma, dbeta = be.layer_norm_backward(x, gamma, r, mean, rstd, center=beta is not None)
        assert (dgamma is None) == (gamma is None) and (dbeta is None) == (beta is None)
        return tuple(g for g in (dx, dgamma, dbeta) if g is not None)

    check_grad(be, loss, backward, inputs, wrt=wrt, samples=4 if small else 30)


def layer_norm_backward_ref(x, gamma, dy, epsilon):
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    c = x.shape[-1]
    mean = x.mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + epsilon)
    xhat = (x - mean) * rstd
    g = dy * gamma if gamma is not None else dy
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    rows = (dy * xhat).reshape(-1, c)
    return dx, rows.sum(0), dy.reshape(-1, c).sum(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 4), (3, 33)] if simulated() else [(1, 4), (3, 17), (700, 8), (2, 300, 3)])
def test_layer_norm_backward_reference(be, small, shape, dtype):
    x = randn(shape, dtype, scale=2.0)
    gamma = randn(shape[-1:], dtype, seed=1)
    dy = randn(shape, dtype, seed=2)
    _, mean, rstd = layer_norm_ref(x, gamma, None, 1e-3)
    rows = int(np.prod(shape[:-1]))
    check_op(be, lambda be, x, g, dy, m, r: be.layer_norm_backward(x, g, dy, m, r), [x, gamma, dy, mean, rstd],
             lambda x, g, dy, m, r: tuple(a.astype(dtype) for a in layer_norm_backward_ref(x, g, dy, 1e-3)),
             k=max(rows, shape[-1]), scale=3.0)


def test_layer_norm_backward_is_deterministic(be, small):
    shape = (6, 5) if small else (5000, 64)
    x = be.asarray(randn(shape, np.float32))
    gamma = be.asarray(randn(shape[-1:], np.float32, seed=1))
    dy = be.asarray(randn(shape, np.float32, seed=2))
    _, mean, rstd = be.layer_norm(x, gamma, None)
    first = [be.to_numpy(a).tobytes() for a in be.layer_norm_backward(x, gamma, dy, mean, rstd)]
    for _ in range(2):
        assert [be.to_numpy(a).tobytes() for a in be.layer_norm_backward(x, gamma, dy, mean, rstd)] == first


def test_layer_norm_rejects_bad_input(be):
    x = be.asarray(np.ones((2, 3), np.float32))
    g3 = be.asarray(np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"layer_norm: gamma must have shape \(3,\), got \(4,\)"):
        be.layer_norm(x, be.asarray(np.ones(4, np.float32)), None)
    with pytest.raises(ValueError, match=r"layer_norm: beta must have shape \(3,\), got \(3, 1\)"):
        be.layer_norm(x, None, be.asarray(np.ones((3, 1), np.float32)))
    with pytest.raises(TypeError, match=r"layer_norm: gamma is float64 but x is float32"):
        be.layer_norm(x, be.asarray(np.ones(3, np.float64)), None)
    with pytest.raises(TypeError, match=r"layer_norm: x must be float32 or float64, got int64"):
        be.layer_norm(be.asarray(np.ones((2, 3), np.int64)), None, None)
    with pytest.raises(ValueError, match=r"layer_norm: x must have at least 2 dimensions"):
        be.layer_norm(be.asarray(np.ones(3, np.float32)), g3, None)
    with pytest.raises(ValueError, match=r"layer_norm: x is empty"):
        be.layer_norm(be.asarray(np.ones((0, 3), np.float32)), None, None)
    with pytest.raises(ValueError, match=r"layer_norm: epsilon must be >= 0, got -1"):
        be.layer_norm(x, g3, g3, epsilon=-1.0)
    with pytest.raises(ValueError, match=r"layer_norm: epsilon must be finite"):
        be.layer_norm(x, g3, g3, epsilon=float("inf"))
    _, mean, rstd = be.layer_norm(x, g3, None)
    with pytest.raises(ValueError, match=r"layer_norm_backward: dy must have shape \(2, 3\), got \(3, 2\)"):
        be.layer_norm_backward(x, g3, be.asarray(np.ones((3, 2), np.float32)), mean, rstd)
    with pytest.raises(ValueError, match=r"layer_norm_backward: rstd must have shape \(2,\), got \(2, 1\)"):
        be.layer_norm_backward(x, g3, x, mean, be.asarray(np.ones((2, 1), np.float32)))
    with pytest.raises(TypeError, match=r"layer_norm_backward: mean is float64 but x is float32"):
        be.layer_norm_backward(x, g3, x, be.asarray(np.ones(2, np.float64)), rstd)
