"""nn/trainers/trainer.py: fit / evaluate / predict / train_on_batch, learning, the logs,
and training against a NumPy reference.

Tests marked `simulator` also run on the gpu backend under the CUDA simulator (see
tests/nn/conftest.py)."""
import numpy as np
import pytest

from numbanet import nn
from numbanet.kernels.backend import Workspace
from numbanet.nn.layers import Dense
from numbanet.nn.models import Sequential
from toy_models import blobs, cnn, images, mlp


@pytest.mark.parametrize("opt", [nn.optimizers.SGD(learning_rate=0.1), nn.optimizers.Adam(learning_rate=0.01)])
def test_learns_separable_problem(opt):
    x, y = blobs()
    m = mlp()
    m.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(x, y, batch_size=16, epochs=8, verbose=0)
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]
    loss, acc = m.evaluate(x, y, verbose=0)
    assert acc >= 0.97
    # evaluate's accuracy agrees with predict's argmax
    assert acc == np.mean(m.predict(x).argmax(1) == y)
    assert h is m.history


def test_history_keys_and_validation_split_takes_last_fraction():
    x, y = blobs(100)
    m = mlp()
    m.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(x, y, epochs=3, batch_size=10, validation_split=0.2, verbose=0)
    assert sorted(h.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(v) == 3 for v in h.history.values())
    # the last epoch's val figures are evaluate() on the last 20 samples with the final weights
    vl, va = m.evaluate(x[80:], y[80:], verbose=0)
    assert np.isclose(h.history["val_loss"][-1], vl, rtol=1e-6) and h.history["val_accuracy"][-1] == va


def test_validation_data_and_no_metrics():
    x, y = blobs(60)
    m = mlp()
    m.compile("sgd", "categorical_crossentropy")
    h = m.fit(x[:40], y[:40], epochs=2, validation_data=(x[40:], y[40:]), verbose=0)
    assert sorted(h.history) == ["loss", "val_loss"]
    assert isinstance(m.evaluate(x, y, verbose=0), float)


@pytest.mark.simulator
def test_epoch_loss_is_sample_weighted_mean_of_batch_losses():
    x, y = blobs(25)
    m = mlp()
    m.compile("sgd", "sparse_categorical_crossentropy")
    w0 = m.get_weights()
    h = m.fit(x, y, batch_size=10, epochs=1, shuffle=False, verbose=0)
    m2 = mlp()
    m2.compile("sgd", "sparse_categorical_crossentropy")
    m2.set_weights(w0)
    losses = [m2.train_on_batch(x[i:i + 10], y[i:i + 10]) for i in (0, 10, 20)]
    assert np.isclose(h.history["loss"][0], (10 * losses[0] + 10 * losses[1] + 5 * losses[2]) / 25, rtol=1e-6)
    for a, b in zip(m.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.simulator
def test_train_on_batch_reuses_its_step_arrays_and_trains_as_fresh_arrays(monkeypatch):
    """train_on_batch runs fit's step: from the second call of a batch shape on it allocates
    no backend array, and alternating shapes (each with its own workspace) leave the same
    weights as a model given fresh arrays at every step."""
    x, y = images(13)
    batches = [(x[:8], y[:8]), (x[8:], y[8:])] * 3
    reused, fresh = cnn(), cnn()
    fresh.set_weights(reused.get_weights())
    be = reused.be
    calls = []
    allocate = type(be)._allocate
    monkeypatch.setattr(type(be), "_allocate", lambda self, *a, **k: calls.append(a) or allocate(self, *a, **k))
    for i, (xb, yb) in enumerate(batches):
        before = len(calls)
        reused.train_on_batch(xb, yb)
        if i >= 2:
            assert len(calls) == before, f"step {i} allocated {calls[before:]}"
    monkeypatch.setattr(fresh, "_step_workspace", lambda arrays: Workspace())
    for xb, yb in batches:
        fresh.train_on_batch(xb, yb)
    for a, b in zip(reused.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_article_style_cnn_shapes_and_integer_labels():
    x, y = images()
    m = cnn()
    m.fit(x, y.astype(np.uint8), batch_size=4, epochs=1, verbose=0)
    p = m.predict(x, batch_size=3)
    assert p.shape == (8, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    res = m.evaluate(x, nn.utils.to_categorical(y, 3), verbose=0)
    assert len(res) == 2 and 0.0 <= res[1] <= 1.0
    assert np.isclose(res[0], m.evaluate(x, y, verbose=0)[0], rtol=1e-6)


@pytest.mark.simulator
def test_fit_before_compile():
    x, y = blobs(10)
    with pytest.raises(RuntimeError, match="call model.compile"):
        mlp().fit(x, y, verbose=0)


def _reference_training(x, y, weights, lr, epochs, batch):
    """Dense(relu) -> Dense(softmax) + cross-entropy with Keras's Adam, in float64 NumPy,
    batches in order: -> (per-epoch mean losses, final weights)."""
    w1, b1, w2, b2 = [w.astype(np.float64) for w in weights]
    params = [w1, b1, w2, b2]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    step, history = 0, []
    for _ in range(epochs):
        total = 0.0
        for lo in range(0, len(x), batch):
            xb, yb = x[lo:lo + batch].astype(np.float64), y[lo:lo + batch]
            n = len(xb)
            w1, b1, w2, b2 = params
            h = np.maximum(xb @ w1 + b1, 0.0)
            z = h @ w2 + b2
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            total += -np.log(p[np.arange(n), yb]).sum()
            dz = p.copy()
            dz[np.arange(n), yb] -= 1.0
            dz /= n
            dh = (dz @ w2.T) * (h > 0)
            grads = [xb.T @ dh, dh.sum(0), h.T @ dz, dz.sum(0)]
            step += 1
            alpha = lr * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
            for i, g in enumerate(grads):
                m[i] = 0.9 * m[i] + 0.1 * g
                v[i] = 0.999 * v[i] + 0.001 * g * g
                params[i] = params[i] - alpha * m[i] / (np.sqrt(v[i]) + 1e-7)
        history.append(total / len(x))
    return history, params


@pytest.mark.simulator
def test_training_matches_a_numpy_reference():
    """Two epochs of fit on the backend under test against the same training in NumPy:
    forward, fused softmax cross-entropy, backward and Adam, batch by batch."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 3)).astype("float32")
    y = rng.integers(0, 3, 8)
    m = Sequential([Dense(4, activation="relu", input_shape=(3,)), Dense(3, activation="softmax")])
    m.compile(nn.optimizers.Adam(learning_rate=0.05), "sparse_categorical_crossentropy")
    w0 = m.get_weights()
    h = m.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    want_loss, want_w = _reference_training(x, y, w0, 0.05, epochs=2, batch=4)
    np.testing.assert_allclose(h.history["loss"], want_loss, rtol=1e-5)
    for got, want in zip(m.get_weights(), want_w):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert not np.allclose(m.get_weights()[0], w0[0]), "four Adam steps left the kernel unchanged"


def test_several_inputs_and_outputs_with_loss_weights_and_dicts():
    from gradcheck import check_model_gradients
    from numbanet.nn.layers import Concatenate, Input
    a, b = Input((3,), name="a"), Input((2,), name="b")
    h = Dense(4, activation="tanh")(Concatenate()([a, b]))
    cls = Dense(3, activation="softmax", name="cls")(h)
    reg = Dense(1, name="reg")(h)
    m = nn.Model([a, b], [cls, reg], dtype="float64")
    m.compile("adam", {"cls": "sparse_categorical_crossentropy", "reg": "mse"}, metrics={"cls": ["accuracy"]},
              loss_weights={"reg": 0.25})
    rng = np.random.default_rng(1)
    xa, xb = rng.standard_normal((10, 3)), rng.standard_normal((10, 2))
    yc, yr = rng.integers(0, 3, 10), rng.standard_normal((10, 1))
    res = m.evaluate({"a": xa, "b": xb}, {"cls": yc, "reg": yr}, verbose=0, return_dict=True)
    assert list(res) == ["loss", "cls_loss", "reg_loss", "cls_accuracy"]
    p_cls, p_reg = m.predict([xa, xb])
    ce = -np.log(p_cls[np.arange(10), yc]).mean()
    mse = ((p_reg - yr) ** 2).mean()
    assert np.isclose(res["cls_loss"], ce, rtol=1e-12) and np.isclose(res["reg_loss"], mse, rtol=1e-12)
    assert np.isclose(res["loss"], ce + 0.25 * mse, rtol=1e-12)
    assert res["cls_accuracy"] == np.mean(p_cls.argmax(1) == yc)
    check_model_gradients(m, [xa, xb], [yc, yr])
    h = m.fit([xa, xb], [yc, yr], epochs=2, batch_size=4, validation_split=0.3, verbose=0)
    assert sorted(h.history) == sorted(["loss", "cls_loss", "reg_loss", "cls_accuracy", "val_loss", "val_cls_loss",
                                        "val_reg_loss", "val_cls_accuracy"])
