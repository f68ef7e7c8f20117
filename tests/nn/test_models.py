"""Sequential: fit / evaluate / predict / train_on_batch, learning, determinism, bad input.

Tests marked `simulator` also run on the gpu backend under the CUDA simulator (see
tests/nn/conftest.py); there, training runs against a NumPy reference and against the
cpu backend, and every check of bad input runs on the gpu model."""
import numpy as np
import pytest

from numbanet import nn
from numbanet.kernels.backend import Workspace
from numbanet.nn import utils
from numbanet.nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from numbanet.nn.models import Sequential


def _blobs(n=200, seed=0):
    """Two Gaussian blobs in 2-D, linearly separable."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.uint8)
    x = rng.standard_normal((n, 2)) * 0.5 + np.where(y[:, None] == 1, 2.0, -2.0)
    return x.astype("float32"), y


def _mlp(**kw):
    m = Sequential([Dense(8, activation="relu", input_shape=(2,)), Dense(2, activation="softmax")], **kw)
    return m


def _images(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 6, 6, 1)).astype("float32"), rng.integers(0, 3, n)


def _cnn():
    m = Sequential()
    m.add(Conv2D(2, kernel_size=(3, 3), activation="relu", input_shape=(6, 6, 1)))
    m.add(MaxPooling2D(pool_size=(2, 2)))
    m.add(Flatten())
    m.add(Dense(3, activation="softmax"))
    m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return m


@pytest.mark.parametrize("opt", [nn.optimizers.SGD(learning_rate=0.1), nn.optimizers.Adam(learning_rate=0.01)])
def test_learns_separable_problem(opt):
    x, y = _blobs()
    m = _mlp()
    m.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(x, y, batch_size=16, epochs=8, verbose=0)
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]
    loss, acc = m.evaluate(x, y, verbose=0)
    assert acc >= 0.97
    # evaluate's accuracy agrees with predict's argmax
    assert acc == np.mean(m.predict(x).argmax(1) == y)
    assert h is m.history


def test_history_keys_and_validation_split_takes_last_fraction():
    x, y = _blobs(100)
    m = _mlp()
    m.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(x, y, epochs=3, batch_size=10, validation_split=0.2, verbose=0)
    assert sorted(h.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(v) == 3 for v in h.history.values())
    # the last epoch's val figures are evaluate() on the last 20 samples with the final weights
    vl, va = m.evaluate(x[80:], y[80:], verbose=0)
    assert np.isclose(h.history["val_loss"][-1], vl, rtol=1e-6) and h.history["val_accuracy"][-1] == va


def test_validation_data_and_no_metrics():
    x, y = _blobs(60)
    m = _mlp()
    m.compile("sgd", "categorical_crossentropy")
    h = m.fit(x[:40], y[:40], epochs=2, validation_data=(x[40:], y[40:]), verbose=0)
    assert sorted(h.history) == ["loss", "val_loss"]
    assert isinstance(m.evaluate(x, y, verbose=0), float)


@pytest.mark.simulator
def test_epoch_loss_is_sample_weighted_mean_of_batch_losses():
    x, y = _blobs(25)
    m = _mlp()
    m.compile("sgd", "sparse_categorical_crossentropy")
    w0 = m.get_weights()
    h = m.fit(x, y, batch_size=10, epochs=1, shuffle=False, verbose=0)
    m2 = _mlp()
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
    x, y = _images(13)
    batches = [(x[:8], y[:8]), (x[8:], y[8:])] * 3
    reused, fresh = _cnn(), _cnn()
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
    x, y = _images()
    m = _cnn()
    m.fit(x, y.astype(np.uint8), batch_size=4, epochs=1, verbose=0)
    p = m.predict(x, batch_size=3)
    assert p.shape == (8, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    res = m.evaluate(x, nn.utils.to_categorical(y, 3), verbose=0)
    assert len(res) == 2 and 0.0 <= res[1] <= 1.0
    assert np.isclose(res[0], m.evaluate(x, y, verbose=0)[0], rtol=1e-6)


def test_same_seed_same_weights_and_training():
    def run():
        utils.set_random_seed(7)
        m = Sequential([Dense(8, activation="relu", input_shape=(2,)), Dropout(0.3), Dense(2, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        w0 = m.get_weights()
        m.fit(*_blobs(64), batch_size=8, epochs=2, verbose=0)
        return w0, m.get_weights()
    (a0, a1), (b0, b1) = run(), run()
    for p, q in zip(a0 + a1, b0 + b1):
        np.testing.assert_array_equal(p, q)
    utils.set_random_seed(8)
    assert not np.array_equal(Sequential([Dense(8, input_shape=(2,))]).get_weights()[0], a0[0])


def test_float64_model_and_set_floatx():
    m = _mlp(dtype="float64")
    assert m.get_weights()[0].dtype == np.float64
    utils.set_floatx("float64")
    assert _mlp().get_weights()[0].dtype == np.float64
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        Sequential(dtype="float16")


def test_build_on_first_fit_without_input_shape():
    m = Sequential([Dense(4, activation="relu"), Dense(2, activation="softmax")])
    assert not m.built
    m.compile("sgd", "sparse_categorical_crossentropy")
    m.fit(*_blobs(20), verbose=0)
    assert m.layers[0].input_shape == (2,) and len(m.get_weights()) == 4


def test_summary_table(capsys):
    m = _cnn()
    m.summary()
    out = capsys.readouterr().out
    assert f'Model: "{m.name}"' in out
    assert "(None, 4, 4, 2)" in out and "(None, 2, 2, 2)" in out and "(None, 8)" in out
    total = (3 * 3 * 1 * 2 + 2) + (8 * 3 + 3)
    assert f"Total params: {total:,}" in out
    assert "Conv2D" in out and "MaxPooling2D" in out and "Flatten" in out and "Dense" in out


@pytest.mark.simulator
def test_set_weights_checks_and_roundtrip():
    m = _mlp()
    w = [np.full(a.shape, 0.5, a.dtype) for a in m.get_weights()]
    m.set_weights(w)
    for a, b in zip(m.get_weights(), w):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"has shape \(2, 8\), got \(3, 8\)"):
        m.set_weights([np.zeros((3, 8))] + w[1:])
    with pytest.raises(ValueError, match="the model has 4 weight arrays, got 3"):
        m.set_weights(w[:3])


@pytest.mark.simulator
def test_set_weights_copies_like_keras():
    """Training after set_weights leaves the caller's arrays alone (on the cpu backend an
    array kept by reference would be updated in place by the optimizer)."""
    m = _mlp()
    m.compile("sgd", "sparse_categorical_crossentropy")
    mine = [np.full(a.shape, 0.25, a.dtype) for a in m.get_weights()]
    kept = [a.copy() for a in mine]
    m.set_weights(mine)
    m.train_on_batch(*_blobs(8))
    for a, b in zip(mine, kept):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(m.get_weights(), kept)), "the step changed nothing"
    got = m.get_weights()
    got[0][...] = 7.0  # get_weights hands out copies too
    assert not np.any(m.get_weights()[0] == 7.0)


def test_to_same_backend_keeps_training():
    m = _mlp()
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(*_blobs(32), verbose=0)
    w = m.get_weights()
    assert m.to("cpu") is m
    for a, b in zip(m.get_weights(), w):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- bad input

def _compiled_cnn_data():
    return _cnn(), _images()


@pytest.mark.simulator
def test_wrong_image_shape():
    m, (x, y) = _compiled_cnn_data()
    with pytest.raises(ValueError, match=r"fit: x has per-sample shape \(6, 6\) but layer 'conv2d.*' expects "
                                         r"\(6, 6, 1\)"):
        m.fit(x[..., 0], y, verbose=0)
    with pytest.raises(ValueError, match=r"predict: x has per-sample shape \(5, 6, 1\)"):
        m.predict(x[:, :5])


@pytest.mark.simulator
def test_lengths_differ():
    m, (x, y) = _compiled_cnn_data()
    with pytest.raises(ValueError, match="x and y have different lengths \\(x has 8 samples, y has 7 samples"):
        m.fit(x, y[:7], verbose=0)


@pytest.mark.simulator
def test_label_out_of_range():
    m, (x, y) = _compiled_cnn_data()
    y = y.copy()
    y[2] = 3
    with pytest.raises(ValueError, match=r"label 3 in y is out of range: layer 'dense.*' has 3 classes, "
                                         r"expected labels in \[0, 2\]"):
        m.evaluate(x, y, verbose=0)
    y[2] = -1
    with pytest.raises(ValueError, match="label -1 in y is out of range"):
        m.fit(x, y, verbose=0)


@pytest.mark.simulator
@pytest.mark.parametrize("bs", [0, -4, 2.5])
def test_bad_batch_size(bs):
    m, (x, y) = _compiled_cnn_data()
    with pytest.raises(ValueError, match=f"fit: batch_size must be a positive int, got {bs}"):
        m.fit(x, y, batch_size=bs, verbose=0)
    with pytest.raises(ValueError, match="predict: batch_size must be a positive int"):
        m.predict(x, batch_size=bs)


@pytest.mark.simulator
def test_empty_data():
    m, (x, y) = _compiled_cnn_data()
    with pytest.raises(ValueError, match=r"fit: x is empty .*x.shape=\(0, 6, 6, 1\)"):
        m.fit(x[:0], y[:0], verbose=0)


@pytest.mark.simulator
def test_nan_in_x():
    m, (x, y) = _compiled_cnn_data()
    x = x.copy()
    x[1, 2, 3, 0] = np.nan
    x[4, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="fit: x holds 2 NaN or infinite values"):
        m.fit(x, y, verbose=0)


@pytest.mark.simulator
def test_wrong_dtypes_are_refused_not_cast():
    m, (x, y) = _compiled_cnn_data()
    with pytest.raises(TypeError, match="fit: x has dtype float64 but the model runs in float32"):
        m.fit(x.astype("float64"), y, verbose=0)
    with pytest.raises(TypeError, match="predict: x has dtype uint8 but the model runs in float32"):
        m.predict((x * 255).astype(np.uint8))
    with pytest.raises(TypeError, match="class labels y must be integers, got dtype float32"):
        m.fit(x, y.astype("float32"), verbose=0)


@pytest.mark.simulator
def test_fit_before_compile():
    x, y = _blobs(10)
    with pytest.raises(RuntimeError, match="call model.compile"):
        _mlp().fit(x, y, verbose=0)


# --------------------------------------------------------------------------- backends

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


def _tiny_run(backend_name, move_to=None):
    from numbanet import kernels
    utils.set_random_seed(11)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3)).astype("float32")
    y = rng.integers(0, 3, 8).astype(np.uint8)
    m = Sequential([Dense(4, activation="relu", input_shape=(3,)), Dropout(0.25), Dense(3, activation="softmax")])
    m.build(backend=kernels.get_backend(backend_name))
    m.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    h1 = m.fit(x, y, batch_size=4, epochs=1, verbose=0)
    if move_to is not None:
        m.to(move_to)  # weights and Adam's m, v move; training continues where it was
    h2 = m.fit(x, y, batch_size=4, epochs=1, verbose=0)
    m.to("cpu")
    return h1.history["loss"] + h2.history["loss"], m.get_weights()


def _other_backends():
    from conftest import BACKENDS
    return [b for b in BACKENDS if b != "cpu"]


# Defined only where a second backend is under test (the simulator process, or a real
# GPU): on the cpu alone it could only compare the cpu with itself.
if _other_backends():
    @pytest.mark.simulator
    @pytest.mark.parametrize("other", _other_backends())
    def test_training_on_another_backend_and_moving_between_them_matches_cpu(other):
        want_loss, want_w = _tiny_run("cpu")
        for run in (_tiny_run(other), _tiny_run("cpu", move_to=other), _tiny_run(other, move_to="cpu")):
            np.testing.assert_allclose(run[0], want_loss, rtol=1e-5)
            for a, b in zip(run[1], want_w):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- the functional API

def _residual_model(dtype="float64"):
    from numbanet.nn.layers import Add, Input
    x = Input((2,))
    h = Dense(4, activation="tanh")(x)
    y = Add()([h, Dense(4, activation="relu")(h)])   # h fans out to Add and the inner Dense
    return nn.Model(x, Dense(2, activation="softmax")(y), dtype=dtype)


@pytest.mark.simulator
def test_fan_out_sums_gradients():
    from gradcheck import check_model_gradients
    m = _residual_model()
    m.compile("sgd", "sparse_categorical_crossentropy")
    x, y = _blobs(12)
    assert check_model_gradients(m, x.astype("float64") * 0.5, y) == 2 * 4 + 4 + 4 * 4 + 4 + 4 * 2 + 2


@pytest.mark.simulator
def test_shared_layer_accumulates_over_its_calls():
    from gradcheck import check_model_gradients
    from numbanet.nn.layers import Add, Input
    a, b = Input((3,)), Input((3,))
    shared = Dense(3, activation="tanh")
    m = nn.Model([a, b], Dense(1)(Add()([shared(a), shared(shared(b))])), dtype="float64")
    assert [l.name for l in m.layers].count(shared.name) == 1 and len(m.get_weights()) == 4
    m.compile("sgd", "mse")
    rng = np.random.default_rng(0)
    check_model_gradients(m, [rng.standard_normal((4, 3)), rng.standard_normal((4, 3))],
                          rng.standard_normal((4, 1)))


def test_sequential_is_the_functional_graph():
    from numbanet.nn.layers import Input
    seq = _mlp(dtype="float64")
    x = Input((2,))
    fun = nn.Model(x, Dense(2, activation="softmax")(Dense(8, activation="relu")(x)), dtype="float64")
    fun.set_weights(seq.get_weights())
    for m in (seq, fun):
        m.compile(nn.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    data = _blobs(40)
    xs = data[0].astype("float64")
    h1 = seq.fit(xs, data[1], batch_size=8, epochs=2, shuffle=False, verbose=0)
    h2 = fun.fit(xs, data[1], batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert h1.history == h2.history
    for a, b in zip(seq.get_weights(), fun.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert seq.inputs[0].shape == (None, 2) and isinstance(seq.inputs[0].node.layer, nn.layers.InputLayer)


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


def test_functional_summary_names_connections(capsys):
    m = _residual_model()
    m.summary()
    out = capsys.readouterr().out
    assert "Connected to" in out and "(None, 2)" in out and "InputLayer" in out
    add = next(l for l in m.layers if type(l).__name__ == "Add")
    assert f"{add.name} (Add)" in out
    inner = [l.name for l in m.layers if type(l).__name__ == "Dense"]
    assert f"{inner[0]}[0][0], {inner[1]}[0][0]" in out


def test_graph_errors():
    from numbanet.nn.layers import Add, Input
    a, b = Input((3,)), Input((3,))
    y = Add()([a, b])
    with pytest.raises(ValueError, match="the outputs depend on nn.Input '.*', which is not among the model's inputs"):
        nn.Model(a, y)
    with pytest.raises(ValueError, match="every input must come from nn.Input"):
        nn.Model(y, Dense(1)(y))
    with pytest.raises(ValueError, match="the name 'twin' is used by 2 layers"):
        nn.Model(a, Dense(1, name="twin")(Dense(3, name="twin")(a)))
    m = nn.Model([a, b], y)
    with pytest.raises(ValueError, match="predict: x has 1 arrays but the model has 2 inputs"):
        m.predict([np.zeros((2, 3), np.float32)])
    with pytest.raises(ValueError, match=r"the inputs have different lengths \(x\[0\] has 2 samples, x\[1\] has 3\)"):
        m.predict([np.zeros((2, 3), np.float32), np.zeros((3, 3), np.float32)])
    with pytest.raises(TypeError, match="nesting models is not supported"):
        m(a)
    with pytest.raises(ValueError, match="a shared layer needs the same shapes at every call"):
        d = Dense(2)
        c = Input((4,))
        nn.Model([a, c], Add()([d(a), d(c)]))


def test_int_inputs_keep_their_dtype_and_are_checked():
    from numbanet.nn.layers import Embedding, Input
    ids = Input((3,), dtype="int32")
    m = nn.Model(ids, Dense(2)(Embedding(5, 4)(ids)))
    x64 = np.array([[0, 4, 2]], dtype=np.int64)
    assert m.predict(x64).shape == (1, 3, 2)
    with pytest.raises(ValueError, match="holds id 4294967296, beyond the Input's int32"):
        m.predict(np.array([[0, 2 ** 32, 1]]))
