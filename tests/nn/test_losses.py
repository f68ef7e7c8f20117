"""Every loss: values against NumPy, gradients by finite differences through the model API,
names / functions / classes in compile, and the fused softmax path."""
import numpy as np
import pytest

from gradcheck import check_model_gradients
from numbanet.nn import losses
from numbanet.nn.layers import Activation, Dense
from numbanet.nn import models as nn_models
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


# --------------------------------------------------------------------------- sequences, binary cross-entropy

def _sequence_model(vocab=5, steps=4, activation="softmax"):
    from numbanet.nn.layers import Embedding, Input
    ids = Input((steps,), dtype="int32")
    m = nn_models.Model(ids, Dense(vocab, activation=activation)(Embedding(vocab, 3)(ids)), dtype="float64")
    m.set_weights([w + np.random.default_rng(0).standard_normal(w.shape) * 0.5 for w in m.get_weights()])
    return m


@pytest.mark.simulator
@pytest.mark.parametrize("loss,activation", [("sparse_categorical_crossentropy", "softmax"),
                                             (losses.SparseCategoricalCrossentropy(from_logits=True), None)])
def test_sequence_crossentropy_is_the_mean_over_every_position(loss, activation):
    m = _sequence_model(activation=activation)
    m.compile("sgd", loss, metrics=["accuracy"])
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 5, (3, 4)), rng.integers(0, 5, (3, 4))
    out = m.predict(x)
    p = out if activation else np.exp(out) / np.exp(out).sum(-1, keepdims=True)
    want = -np.log(np.take_along_axis(p, y[..., None], -1)).mean()
    got = m.evaluate(x, y, verbose=0, return_dict=True)
    assert np.isclose(got["loss"], want, rtol=1e-12)
    assert got["accuracy"] == np.mean(p.argmax(-1) == y)   # 12 predictions, not 3 rows
    check_model_gradients(m, x, y)


def test_sequence_one_hot_targets_and_label_errors():
    m = _sequence_model()
    m.compile("sgd", "categorical_crossentropy")
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 5, (2, 4)), rng.integers(0, 5, (2, 4))
    assert np.isclose(m.evaluate(x, np.eye(5)[y], verbose=0), m.evaluate(x, y, verbose=0), rtol=1e-12)
    bad = y.copy()
    bad[1, 2] = 5
    with pytest.raises(ValueError, match=r"label 5 in y is out of range: layer 'dense.*' has 5 classes"):
        m.evaluate(x, bad, verbose=0)
    with pytest.raises(ValueError, match=r"y must be integer class ids \(N, 4\) or one-hot float rows \(N, 4, 5\)"):
        m.evaluate(x, y[:, :3], verbose=0)
    sparse = _sequence_model()
    sparse.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"sparse_categorical_crossentropy needs integer class ids of shape \(N, 4\)"):
        sparse.evaluate(x, np.eye(5)[y], verbose=0)


def bce_ref(p, t, eps=1e-7):
    c = np.clip(p, eps, 1 - eps)
    return -(t * np.log(c) + (1 - t) * np.log(1 - c))


@pytest.mark.simulator
@pytest.mark.parametrize("loss", ["binary_crossentropy", losses.binary_crossentropy, losses.BinaryCrossentropy])
def test_binary_crossentropy_fused_with_sigmoid(loss):
    m = _model(loss, activation="sigmoid")
    assert m._fused
    x = np.random.default_rng(3).standard_normal((6, 3))
    t = np.random.default_rng(4).integers(0, 2, (6, 4)).astype(np.float64)
    p = m.predict(x)
    assert np.isclose(m.evaluate(x, t, verbose=0), bce_ref(p, t).mean(), rtol=1e-10)
    check_model_gradients(m, x, t)


def test_binary_crossentropy_on_probabilities_and_from_logits():
    m = _model("binary_crossentropy", activation="sigmoid", extra=[Activation("linear")])
    assert not m._fused
    x = np.random.default_rng(5).standard_normal((5, 3))
    t = np.random.default_rng(6).uniform(0, 1, (5, 4))
    assert np.isclose(m.evaluate(x, t, verbose=0), bce_ref(m.predict(x), t).mean(), rtol=1e-10)
    check_model_gradients(m, x, t)
    lg = _model(losses.BinaryCrossentropy(from_logits=True), activation=None)
    z = lg.predict(x)
    want = (np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).mean()
    assert np.isclose(lg.evaluate(x, t, verbose=0), want, rtol=1e-12)
    check_model_gradients(lg, x, t)


def test_binary_accuracy_and_a_single_sigmoid_output():
    m = Sequential([Dense(1, activation="sigmoid", input_shape=(2,))], dtype="float64")
    m.compile("sgd", "binary_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(7).standard_normal((8, 2))
    y = np.random.default_rng(8).integers(0, 2, 8)          # (N,) targets for a (N, 1) output, as Keras takes
    loss, acc = m.evaluate(x, y, verbose=0)
    p = m.predict(x)[:, 0]
    assert acc == np.mean((p > 0.5) == y)
    assert np.isclose(loss, bce_ref(p, y).mean(), rtol=1e-10)


def test_binary_crossentropy_host_function():
    p = np.array([[0.9, 0.2], [0.4, 0.6]])
    t = np.array([[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(losses.binary_crossentropy(t, p), bce_ref(p, t).mean(1), rtol=1e-12)
