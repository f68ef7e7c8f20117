"""Every loss: values against NumPy, gradients by finite differences through the model API,
names / functions / classes in compile, and the fused softmax path."""
import numpy as np
import pytest

from gradcheck import check_model_gradients
from numbanet.nn import losses
from numbanet.nn.layers import Activation, Dense
from numbanet.nn.models import Sequential


def _model(loss, activation="softmax", extra=None):
    layers = [Dense(4, activation=activation, input_shape=(3,))] + (extra or [])
    m = Sequential(layers, dtype="float64")
    m.compile("sgd", loss)
    return m


def _xy(onehot=False, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 3))
    y = rng.integers(0, 4, 6)
    return x, (np.eye(4)[y] if onehot else y), y


@pytest.mark.parametrize("loss", ["categorical_crossentropy", losses.categorical_crossentropy,
                                  losses.CategoricalCrossentropy, losses.CategoricalCrossentropy()])
@pytest.mark.parametrize("onehot", [False, True])
def test_categorical_crossentropy_value_and_gradients(loss, onehot):
    m = _model(loss)
    assert m._fused
    x, y, ids = _xy(onehot)
    w, b = m.get_weights()
    z = x @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = -np.log(p[np.arange(6), ids]).mean()
    assert np.isclose(m.evaluate(x, y, verbose=0), want, rtol=1e-12)
    check_model_gradients(m, x, y)


def test_sparse_categorical_crossentropy_gradients_and_rejects_onehot():
    m = _model("sparse_categorical_crossentropy")
    x, y, _ = _xy()
    check_model_gradients(m, x, y)
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy needs integer class ids"):
        m.evaluate(x, np.eye(4)[y], verbose=0)


def test_crossentropy_on_probabilities_without_fusion():
    # softmax then a linear Activation: the loss sees probabilities, not logits
    m = _model("categorical_crossentropy", extra=[Activation("linear")])
    assert not m._fused
    x, y, ids = _xy(seed=1)
    p = m.predict(x)
    assert np.isclose(m.evaluate(x, y, verbose=0), -np.log(p[np.arange(6), ids]).mean(), rtol=1e-12)
    check_model_gradients(m, x, y)


def test_crossentropy_from_logits():
    m = _model(losses.CategoricalCrossentropy(from_logits=True), activation=None)
    x, y, ids = _xy(onehot=True, seed=2)
    z = m.predict(x)
    lse = np.log(np.exp(z).sum(1))
    assert np.isclose(m.evaluate(x, y, verbose=0), (lse - z[np.arange(6), ids]).mean(), rtol=1e-12)
    check_model_gradients(m, x, y)


@pytest.mark.parametrize("loss", ["mse", "mean_squared_error", losses.mean_squared_error, losses.MeanSquaredError])
def test_mean_squared_error_value_and_gradients(loss):
    m = _model(loss, activation="tanh")
    x = np.random.default_rng(3).standard_normal((5, 3))
    t = np.random.default_rng(4).standard_normal((5, 4))
    assert np.isclose(m.evaluate(x, t, verbose=0), ((m.predict(x) - t) ** 2).mean(), rtol=1e-12)
    check_model_gradients(m, x, t)


def test_loss_functions_on_host_arrays():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    got = losses.categorical_crossentropy(np.array([0, 2]), p)
    np.testing.assert_allclose(got, -np.log([0.7, 0.8]), rtol=1e-12)
    np.testing.assert_allclose(losses.mean_squared_error(np.zeros((2, 3)), p), (p ** 2).mean(1), rtol=1e-12)


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="loss must be one of"):
        _model("hinge")
