"""LayerNormalization and BatchNormalization against NumPy (Keras's formulas and defaults)
and by finite differences."""
import numpy as np
import pytest

from gradcheck import check_model_gradients
from numbanet import nn
from numbanet.nn.layers import BatchNormalization, Conv2D, Dense, Flatten, Input, LayerNormalization
from numbanet.nn.models import Model, Sequential, load_model


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
    with pytest.raises(ValueError, match="LayerNormalization: epsilon must be a number, got '0.1'"):
        LayerNormalization(epsilon="0.1")
    assert LayerNormalization(epsilon=np.float32(0.5)).epsilon == 0.5


# ---------------------------------------------------------------------- BatchNormalization

def batch_norm_ref(x, gamma, beta, mean, var, eps=1e-3):
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def batch_stats(x):
    """Keras 3's training statistics: over every axis but the last, biased variance."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    return flat.mean(0), flat.var(0)


def bn_model(shape, dtype="float32", **kw):
    bn = BatchNormalization(**kw)
    x = Input(shape)
    m = Model(x, Dense(2)(Flatten()(bn(x))), dtype=dtype)
    return m, bn


def test_batch_norm_defaults_and_weight_order_are_keras(nnbe):
    bn = BatchNormalization()
    assert (bn.axis, bn.momentum, bn.epsilon, bn.center, bn.scale) == (-1, 0.99, 1e-3, True, True)
    m, bn = bn_model((2, 2, 3))
    assert list(bn.params) == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert bn.non_trainable == ("moving_mean", "moving_variance")
    g, b, mm, mv = bn.get_weights()
    for w, want in ((g, 1.0), (b, 0.0), (mm, 0.0), (mv, 1.0)):
        np.testing.assert_array_equal(w, np.full(3, want, np.float32))
    lines = []
    m.summary(print_fn=lines.append)
    assert "Non-trainable params: 6" in lines and f"Trainable params: {m.count_params() - 6:,}" in lines
    _, bn2 = bn_model((5,), center=False, scale=False)
    assert list(bn2.params) == ["moving_mean", "moving_variance"]


@pytest.mark.simulator
@pytest.mark.parametrize("shape", [(6,), (3, 2, 4)])
def test_batch_norm_inference_uses_the_moving_statistics(nnbe, shape):
    m, bn = bn_model(shape, dtype="float64")
    rng = np.random.default_rng(0)
    c = shape[-1]
    g, b, mm = rng.standard_normal(c), rng.standard_normal(c), rng.standard_normal(c)
    mv = rng.uniform(0.5, 2.0, c)
    bn_w = [g, b, mm, mv]
    m.set_weights(bn_w + m.get_weights()[4:])
    x = rng.standard_normal((4,) + shape) * 2 + 1
    kernel, bias = m.get_weights()[4:]
    want = batch_norm_ref(x, g, b, mm, mv).reshape(4, -1) @ kernel + bias
    np.testing.assert_allclose(m.predict(x, verbose=0), want, rtol=1e-10, atol=1e-12)
    for got, w in zip(bn.get_weights(), bn_w):   # predicting leaves them alone
        np.testing.assert_array_equal(got, w)


@pytest.mark.simulator
def test_batch_norm_training_forward_and_moving_statistics_after_three_steps(nnbe):
    """BatchNormalization first: its input is the data, so after each train_on_batch the
    moving statistics are Keras's update with that batch's statistics; the Adam steps
    move gamma and beta but never the moving statistics (non-trainable: no slots)."""
    m, bn = bn_model((2, 2, 3), dtype="float64", momentum=0.8)
    m.compile(nn.optimizers.Adam(0.01), "mse")
    rng = np.random.default_rng(1)
    mm, mv = np.zeros(3), np.ones(3)
    for step in range(3):
        x = rng.standard_normal((5, 2, 2, 3)) * (1 + step) + step
        m.train_on_batch(x, rng.standard_normal((5, 2)))
        mean, var = batch_stats(x)
        mm, mv = mm * 0.8 + mean * 0.2, mv * 0.8 + var * 0.2
        np.testing.assert_allclose(bn.get_weights()[2], mm, rtol=1e-12)
        np.testing.assert_allclose(bn.get_weights()[3], mv, rtol=1e-12)
    assert not np.allclose(bn.get_weights()[0], 1.0)   # gamma trained
    slots = m.optimizer.slots
    assert any(k.endswith("/gamma") for k in slots)
    assert not any(k.endswith(("moving_mean", "moving_variance")) for k in slots)
    # The training forward normalizes with the batch's statistics.
    x = rng.standard_normal((4, 2, 2, 3))
    g, b = bn.get_weights()[:2]
    y = bn.be.to_numpy(bn.forward(bn.be.asarray(x), training=True))
    mean, var = batch_stats(x)
    np.testing.assert_allclose(y, batch_norm_ref(x, g, b, mean, var), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_batch_norm_gradients_by_finite_differences(nnbe, center, scale):
    """compute_gradients against central differences of the training-mode loss (batch
    statistics, which moving-statistic updates do not change); the moving statistics'
    entries are zero (they do not enter the training loss)."""
    x = Input((2, 3))
    bn = BatchNormalization(epsilon=1e-2, center=center, scale=scale)
    m = Model(x, Dense(2)(Flatten()(bn(Dense(3)(x)))), dtype="float64")
    m.compile("sgd", "mse")
    rng = np.random.default_rng(2)
    m.set_weights([w + rng.standard_normal(w.shape) * 0.3 for w in m.get_weights()])
    xs, ys = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2))
    _, grads = m.compute_gradients(xs, ys)
    weights = m.get_weights()
    frozen = {i for i, (_, layer, k) in enumerate(m._params()) if k in layer.non_trainable}
    assert len(frozen) == 2
    h = 1e-6
    for i, w in enumerate(weights):
        if i in frozen:
            np.testing.assert_array_equal(grads[i], 0.0)
            continue
        for j in rng.choice(w.size, size=min(w.size, 6), replace=False):
            probe = [a.copy() for a in weights]
            probe[i].reshape(-1)[j] += h
            m.set_weights(probe)
            up = m.compute_gradients(xs, ys)[0]
            probe[i].reshape(-1)[j] -= 2 * h
            m.set_weights(probe)
            down = m.compute_gradients(xs, ys)[0]
            np.testing.assert_allclose(grads[i].reshape(-1)[j], (up - down) / (2 * h), rtol=1e-5, atol=1e-8,
                                       err_msg=f"weight array {i}, position {j}")


def test_batch_norm_conv_model_trains_and_saves(nnbe, tmp_path):
    m = Sequential([Conv2D(3, (2, 2), input_shape=(5, 5, 2)), BatchNormalization(), Flatten(),
                    Dense(2, activation="softmax")])
    m.compile(nn.optimizers.RMSprop(0.01, momentum=0.5, centered=True), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((8, 5, 5, 2)).astype("float32"), rng.integers(0, 2, 8)
    first = m.evaluate(x, y, verbose=0)
    m.fit(x, y, epochs=5, batch_size=8, verbose=0)
    assert m.evaluate(x, y, verbose=0) < first
    path = tmp_path / "bn.npz"
    m.save(path)
    back = load_model(path)
    for a, b in zip(back.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))


def test_batch_norm_refuses_other_axes_and_bad_arguments(nnbe):
    with pytest.raises(ValueError, match=r"BatchNormalization\): only the channels-last axis is supported "
                                         r"\(axis=-1 or 3 for per-sample shape \(2, 2, 3\)\), got axis=1"):
        BatchNormalization(axis=1)(Input((2, 2, 3)))
    BatchNormalization(axis=3)(Input((2, 2, 3)))   # the last axis by number: accepted
    with pytest.raises(ValueError, match="BatchNormalization: axis must be the channels axis"):
        BatchNormalization(axis=0)
    with pytest.raises(ValueError, match=r"BatchNormalization: momentum must be in \[0, 1\], got 1.5"):
        BatchNormalization(momentum=1.5)
    with pytest.raises(ValueError, match="BatchNormalization: epsilon must be > 0"):
        BatchNormalization(epsilon=0)
    with pytest.raises(ValueError, match="BatchNormalization: momentum must be a number, got True"):
        BatchNormalization(momentum=True)
