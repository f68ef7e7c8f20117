"""LayerNormalization against NumPy (Keras's formula and defaults) and by finite differences."""
import numpy as np
import pytest

from gradcheck import check_model_gradients
from numbanet.nn.layers import Dense, Input, LayerNormalization
from numbanet.nn.models import Model


def layer_norm_ref(x, gamma, beta, eps=1e-3):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    return y * (1 if gamma is None else gamma) + (0 if beta is None else beta)


@pytest.mark.simulator
@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False), (False, False)])
def test_forward_and_weights(nnbe, center, scale):
    x = Input((3, 5))
    ln = LayerNormalization(center=center, scale=scale)
    m = Model(x, ln(x), dtype="float64")
    assert list(ln.params) == (["gamma"] if scale else []) + (["beta"] if center else [])
    rng = np.random.default_rng(0)
    w = [rng.standard_normal(5) for _ in ln.params]
    m.set_weights(w)
    gamma = w[0] if scale else None
    beta = w[-1] if center else None
    xs = rng.standard_normal((4, 3, 5)) * 3 + 1
    np.testing.assert_allclose(m.predict(xs), layer_norm_ref(xs, gamma, beta), rtol=1e-10, atol=1e-12)


def test_defaults_are_keras(nnbe):
    ln = LayerNormalization()
    assert (ln.axis, ln.epsilon, ln.center, ln.scale) == (-1, 1e-3, True, True)
    x = Input((4,))
    Model(x, ln(x))
    g, b = ln.get_weights()
    np.testing.assert_array_equal(g, np.ones(4, np.float32))
    np.testing.assert_array_equal(b, np.zeros(4, np.float32))


@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_gradients(nnbe, center, scale):
    x = Input((3, 4))
    h = LayerNormalization(epsilon=1e-2, center=center, scale=scale)(Dense(4)(x))
    m = Model(x, Dense(2)(h), dtype="float64")
    m.compile("sgd", "mse")
    rng = np.random.default_rng(1)
    m.set_weights([w + rng.standard_normal(w.shape) * 0.3 for w in m.get_weights()])
    check_model_gradients(m, rng.standard_normal((3, 3, 4)), rng.standard_normal((3, 3, 2)))


def test_only_the_last_axis(nnbe):
    with pytest.raises(ValueError, match=r"only the last axis is supported \(axis=-1 or 2 for per-sample shape "
                                         r"\(3, 4\)\), got axis=1"):
        LayerNormalization(axis=1)(Input((3, 4)))
    LayerNormalization(axis=2)(Input((3, 4)))   # the last axis by number: accepted
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        LayerNormalization(epsilon=0)
