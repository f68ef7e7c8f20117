"""relu/sigmoid/tanh/softmax and their gradients against NumPy and finite differences."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import simulated
from helpers import check_grad, check_op, randn

HYPOTHESIS = settings(max_examples=4 if simulated() else 15, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def sigmoid_ref(x):
    x = x.astype(np.float64)
    return (np.exp(-np.logaddexp(0.0, -x)))


REFS = {
    "relu": lambda x: np.where(x > 0, x, 0).astype(x.dtype),
    "sigmoid": lambda x: sigmoid_ref(x).astype(x.dtype),
    "tanh": lambda x: np.tanh(x.astype(np.float64)).astype(x.dtype),
    "softmax": lambda x: (lambda e: (e / e.sum(1, keepdims=True)).astype(x.dtype))(
        np.exp(x.astype(np.float64) - x.max(1, keepdims=True))),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax"])
def test_forward(be, name, dtype):
    x = randn((5, 7), dtype, scale=3.0)
    check_op(be, lambda be, x: getattr(be, name)(x), [x], REFS[name], k=7)


@HYPOTHESIS
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), dtype=st.sampled_from([np.float32, np.float64]),
       name=st.sampled_from(["relu", "sigmoid", "tanh"]))
def test_elementwise_forward_any_shape(be, shape, dtype, name):
    x = randn(tuple(shape), dtype, scale=4.0)
    check_op(be, lambda be, x: getattr(be, name)(x), [x], REFS[name])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_softmax_stable_for_huge_inputs(be, dtype):
    x = np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]], dtype)
    s = be.to_numpy(be.sigmoid(be.asarray(x)))
    assert np.all(np.isfinite(s))
    np.testing.assert_allclose(s[0, [0, 2, 4]], [0.0, 0.5, 1.0], atol=1e-30)
    y = be.to_numpy(be.softmax(be.asarray(x)))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, [[0, 0, 0, 0, 1]], atol=1e-30)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax"])
def test_backward_finite_differences(be, small, name):
    x = randn((4, 6), np.float64, scale=2.0)
    if name == "relu":
        x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink
    r = randn((4, 6), np.float64, seed=5)

    def loss(be, x, r):
        return float(np.sum(be.to_numpy(getattr(be, name)(x)) * be.to_numpy(r)))

    def backward(be, x, r):
        return getattr(be, name + "_backward")(getattr(be, name)(x), r)

    # The simulator runs softmax's block per row as 32 Python threads: fewer samples there.
    check_grad(be, loss, backward, [x, r], wrt=[0], samples=6 if small and name == "softmax" else 24)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax"])
def test_backward_reference_float32(be, name):
    y = REFS[name](randn((3, 5), np.float32))
    dy = randn((3, 5), np.float32, seed=2)
    refs = {
        "relu": lambda y, dy: np.where(y > 0, dy, 0).astype(y.dtype),
        "sigmoid": lambda y, dy: dy * y * (1 - y),
        "tanh": lambda y, dy: dy * (1 - y * y),
        "softmax": lambda y, dy: (y * (dy - (dy * y).sum(1, keepdims=True))).astype(y.dtype),
    }
    check_op(be, lambda be, y, dy: getattr(be, name + "_backward")(y, dy), [y, dy], refs[name], k=5)


def _sizes_around_serial_max(be, small):
    """The cpu runs relu/sigmoid/tanh (and their gradients) on one thread up to SERIAL_MAX
    elements and as a parallel kernel above: sizes on both sides of the switch."""
    if small:
        return [32]
    limit = 64 if be.name != "cpu" else __import__("numbanet.kernels.cpu.activation", fromlist=["x"]).SERIAL_MAX
    return [limit, limit + 1, 3 * limit + 7]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_elementwise_serial_and_parallel_sizes(be, small, name, dtype):
    """Forward and gradient against NumPy on both sides of the cpu's serial/parallel
    switch, NaN and inf included, and a prefix computed at a size below the switch equals
    the same prefix computed above it bit for bit."""
    results = []
    for n in _sizes_around_serial_max(be, small):
        x = randn((n,), dtype, seed=n % 97, scale=3.0)
        x[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0]
        y = be.to_numpy(getattr(be, name)(be.asarray(x)))
        with np.errstate(all="ignore"):
            # relu(NaN) = NaN (REFS' relu is for finite inputs).
            want = np.where(x <= 0, 0, x).astype(dtype) if name == "relu" else REFS[name](x)
        np.testing.assert_allclose(y, want, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=0)
        dy = randn((n,), dtype, seed=n % 89 + 1)
        dy[6:9] = [np.nan, np.inf, -np.inf]
        dx = be.to_numpy(getattr(be, name + "_backward")(be.asarray(y), be.asarray(dy)))
        with np.errstate(all="ignore"):
            grad = {"relu": np.where(y <= 0, 0, dy), "sigmoid": dy * y * (1 - y), "tanh": dy * (1 - y * y)}[name]
        np.testing.assert_allclose(dx, grad.astype(dtype), rtol=1e-6 if dtype == np.float32 else 1e-12, atol=0)
        results.append((x, y, dy, dx))
    if len(results) > 1:
        (x0, y0, dy0, dx0), (x1, y1, dy1, dx1) = results[0], results[1]
        k = x0.size
        x1 = x1.copy()
        x1[:k], dy1 = x0, dy1.copy()
        dy1[:k] = dy0
        y1 = be.to_numpy(getattr(be, name)(be.asarray(x1)))
        dx1 = be.to_numpy(getattr(be, name + "_backward")(be.asarray(y1), be.asarray(dy1)))
        np.testing.assert_array_equal(y1[:k], y0)
        np.testing.assert_array_equal(dx1[:k], dx0)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax"])
def test_bad_input(be, name):
    f = getattr(be, name)
    b = getattr(be, name + "_backward")
    with pytest.raises(TypeError, match=name):
        f(be.asarray(np.zeros((2, 3), np.int32)))
    with pytest.raises(TypeError, match=name):
        f(be.asarray(np.zeros((2, 3), np.float16)))
    with pytest.raises(ValueError, match=name):
        f(be.asarray(np.zeros((0, 3), np.float32)))
    with pytest.raises(ValueError, match=name + "_backward"):
        b(be.asarray(np.zeros((2, 3), np.float32)), be.asarray(np.zeros((3, 2), np.float32)))
    with pytest.raises(TypeError, match=name + "_backward"):
        b(be.asarray(np.zeros((2, 3), np.float32)), be.asarray(np.zeros((2, 3), np.float64)))
    if name == "softmax":
        with pytest.raises(ValueError, match=r"softmax: x must have at least 2 dimensions"):
            f(be.asarray(np.zeros((4,), np.float32)))
        with pytest.raises(ValueError, match=r"softmax_backward: y must have at least 2 dimensions"):
            b(be.asarray(np.zeros((4,), np.float32)), be.asarray(np.zeros((4,), np.float32)))


# --------------------------------------------------------------------------- softmax: any rank, causal

def softmax_ref(x, causal=False):
    """Softmax over the last axis in float64; causal: (i, j) kept iff j <= i over the last two axes
    (keras.layers.MultiHeadAttention's _compute_causal_mask: row index >= column index)."""
    z = x.astype(np.float64)
    if causal:
        tq, tk = x.shape[-2:]
        keep = np.arange(tq)[:, None] >= np.arange(tk)[None, :]
        z = np.where(keep, z, -np.inf)
    e = np.exp(z - z.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(x.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 1), (2, 3, 4), (2, 2, 3, 5), (1, 1, 1, 2, 7)])
@pytest.mark.parametrize("causal", [False, True])
def test_softmax_any_rank(be, shape, causal, dtype):
    x = randn(shape, dtype, scale=3.0)
    check_op(be, lambda be, x, causal: be.softmax(x, causal=causal), [x], softmax_ref,
             kwargs={"causal": causal}, k=shape[-1])


@pytest.mark.parametrize("tq,tk", [(4, 4), (3, 6), (6, 3), (1, 5), (5, 1)])
def test_softmax_causal_mask_is_top_left_aligned(be, tq, tk):
    """A uniform row keeps exactly the first min(i + 1, Tk) keys, each with 1 / that count,
    and the masked probabilities are exactly zero (not tiny)."""
    x = np.zeros((2, tq, tk), np.float32)
    y = be.to_numpy(be.softmax(be.asarray(x), causal=True))
    for i in range(tq):
        kept = min(i + 1, tk)
        np.testing.assert_allclose(y[:, i, :kept], 1.0 / kept, rtol=1e-6)
        assert np.all(y[:, i, kept:] == 0.0)


def test_softmax_causal_ignores_masked_values(be):
    """Huge values in masked positions change nothing: they are never exponentiated."""
    x = randn((2, 5, 5), np.float32)
    hidden = x.copy()
    hidden[:, np.triu_indices(5, 1)[0], np.triu_indices(5, 1)[1]] = 1e30
    a = be.to_numpy(be.softmax(be.asarray(x), causal=True))
    b = be.to_numpy(be.softmax(be.asarray(hidden), causal=True))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_backward_any_rank_finite_differences(be, small, causal):
    shape = (2, 1, 3, 3) if small else (2, 3, 4, 4)
    x = randn(shape, np.float64, scale=2.0)
    r = randn(shape, np.float64, seed=5)

    def loss(be, x, r):
        return float(np.sum(be.to_numpy(be.softmax(x, causal=causal)) * be.to_numpy(r)))

    def backward(be, x, r):
        return be.softmax_backward(be.softmax(x, causal=causal), r)

    check_grad(be, loss, backward, [x, r], wrt=[0], samples=6 if small else 40)


# --------------------------------------------------------------------------- gelu, silu, leaky_relu
# Their backwards take the forward's input x. References in float64 from the textbook
# formulas (math.erf elementwise; the tanh form with its 0.044715 cubic, as Keras writes it).
_erf = np.vectorize(math.erf)


def gelu_ref(x, approximate=False):
    v = x.astype(np.float64)
    if approximate:
        y = 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))
    else:
        y = 0.5 * v * (1 + _erf(v / np.sqrt(2)))
    return y.astype(x.dtype)


def silu_ref(x):
    v = x.astype(np.float64)
    return (v * sigmoid_ref(v)).astype(x.dtype)


def leaky_relu_ref(x, negative_slope=0.2):
    v = x.astype(np.float64)
    return np.where(v >= 0, v, negative_slope * v).astype(x.dtype)


X_ACTIVATIONS = {
    "gelu": (lambda be, x: be.gelu(x), gelu_ref),
    "gelu_tanh": (lambda be, x: be.gelu(x, approximate=True), lambda x: gelu_ref(x, True)),
    "silu": (lambda be, x: be.silu(x), silu_ref),
    "leaky_relu": (lambda be, x: be.leaky_relu(x), leaky_relu_ref),
    "leaky_relu_0.05": (lambda be, x: be.leaky_relu(x, negative_slope=0.05), lambda x: leaky_relu_ref(x, 0.05)),
    "leaky_relu_-1": (lambda be, x: be.leaky_relu(x, negative_slope=-1.0), lambda x: leaky_relu_ref(x, -1.0)),
}
X_BACKWARDS = {
    "gelu": lambda be, x, dy: be.gelu_backward(x, dy),
    "gelu_tanh": lambda be, x, dy: be.gelu_backward(x, dy, approximate=True),
    "silu": lambda be, x, dy: be.silu_backward(x, dy),
    "leaky_relu": lambda be, x, dy: be.leaky_relu_backward(x, dy),
    "leaky_relu_0.05": lambda be, x, dy: be.leaky_relu_backward(x, dy, negative_slope=0.05),
    "leaky_relu_-1": lambda be, x, dy: be.leaky_relu_backward(x, dy, negative_slope=-1.0),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(X_ACTIVATIONS))
def test_x_activation_forward(be, name, dtype):
    op, ref = X_ACTIVATIONS[name]
    x = randn((3, 5, 4), dtype, scale=3.0)
    check_op(be, op, [x], ref)


def test_gelu_known_values(be):
    # Phi(1) = 0.841344746..., so gelu(1) = 0.8413447; gelu(-1) = -0.1586553; the tanh
    # form gives 0.8411920 at 1 (PyTorch's F.gelu(approximate="tanh") prints the same).
    x = be.asarray(np.array([-1.0, 0.0, 1.0], np.float64))
    np.testing.assert_allclose(be.to_numpy(be.gelu(x)), [-0.15865525393145707, 0.0, 0.8413447460685429],
                               rtol=1e-14)
    np.testing.assert_allclose(be.to_numpy(be.gelu(x, approximate=True))[2], 0.8411919906082768, rtol=1e-12)


@pytest.mark.parametrize("name", list(X_BACKWARDS))
def test_x_activation_backward_finite_differences(be, name):
    op, _ = X_ACTIVATIONS[name]
    x = randn((4, 6), np.float64, scale=2.0)
    x[np.abs(x) < 1e-3] = 0.5  # leaky_relu's kink
    r = randn((4, 6), np.float64, seed=5)

    def loss(be, x, r):
        return float(np.sum(be.to_numpy(op(be, x)) * be.to_numpy(r)))

    check_grad(be, loss, X_BACKWARDS[name], [x, r], wrt=[0])


@pytest.mark.parametrize("name", list(X_BACKWARDS))
def test_x_activation_backward_float32(be, name):
    x = randn((3, 5), np.float32, scale=3.0)
    dy = randn((3, 5), np.float32, seed=2)
    h = 1e-5
    _, ref = X_ACTIVATIONS[name]
    x64 = x.astype(np.float64)
    slope = (ref(x64 + h) - ref(x64 - h)) / (2 * h)   # central difference of the float64 reference
    want = (dy * slope).astype(np.float32)
    check_op(be, X_BACKWARDS[name], [x, dy], lambda x, dy: want)


def test_leaky_relu_at_zero_and_nan(be):
    x = be.asarray(np.array([0.0, np.nan, -2.0], np.float32))
    y = be.to_numpy(be.leaky_relu(x))
    assert y[0] == 0 and np.isnan(y[1]) and y[2] == np.float32(-0.4)
    dx = be.to_numpy(be.leaky_relu_backward(x, be.asarray(np.ones(3, np.float32))))
    np.testing.assert_array_equal(dx, np.array([0.2, 0.2, 0.2], np.float32))  # PyTorch's rule: x > 0 selects 1


def test_silu_stable_for_huge_inputs(be):
    x = be.asarray(np.array([-1e4, -100.0, 100.0, 1e4], np.float32))
    y = be.to_numpy(be.silu(x))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, [0.0, -100.0 / (1 + np.exp(100.0)), 100.0, 1e4], rtol=1e-6, atol=1e-30)
    dx = be.to_numpy(be.silu_backward(x, be.asarray(np.ones(4, np.float32))))
    np.testing.assert_allclose(dx, [0.0, 0.0, 1.0, 1.0], atol=1e-30)


@pytest.mark.parametrize("name", ["gelu", "silu", "leaky_relu"])
def test_x_activation_bad_input(be, name):
    f, b = getattr(be, name), getattr(be, name + "_backward")
    with pytest.raises(TypeError, match=name):
        f(be.asarray(np.zeros((2, 3), np.int32)))
    with pytest.raises(ValueError, match=name):
        f(be.asarray(np.zeros((0, 3), np.float32)))
    with pytest.raises(ValueError, match=rf"{name}_backward: dy.shape=\(3, 2\) differs from x.shape=\(2, 3\)"):
        b(be.asarray(np.zeros((2, 3), np.float32)), be.asarray(np.zeros((3, 2), np.float32)))
    with pytest.raises(TypeError, match=f"{name}_backward: dy is float64 but x is float32"):
        b(be.asarray(np.zeros((2, 3), np.float32)), be.asarray(np.zeros((2, 3), np.float64)))
    if name == "leaky_relu":
        with pytest.raises(ValueError, match="leaky_relu: negative_slope must be finite, got nan"):
            f(be.asarray(np.zeros(3, np.float32)), negative_slope=float("nan"))
