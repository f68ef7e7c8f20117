"""nn/models.py: Model and Sequential: building, weights, moving between backends, the
functional graph behind Sequential, the regularization penalties the model collects
from its weights, and Sequential stacks that read token ids.

Tests marked `simulator` also run on the gpu backend under the CUDA simulator (see
tests/nn/conftest.py)."""
import numpy as np
import pytest

from numbanet import nn
from numbanet.nn import utils
from numbanet.nn.layers import LSTM, Dense, Dropout, Embedding, Input
from numbanet.nn.models import Model, Sequential
from toy_models import blobs, mlp


def test_same_seed_same_weights_and_training():
    def run():
        utils.set_random_seed(7)
        m = Sequential([Dense(8, activation="relu", input_shape=(2,)), Dropout(0.3), Dense(2, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        w0 = m.get_weights()
        m.fit(*blobs(64), batch_size=8, epochs=2, verbose=0)
        return w0, m.get_weights()
    (a0, a1), (b0, b1) = run(), run()
    for p, q in zip(a0 + a1, b0 + b1):
        np.testing.assert_array_equal(p, q)
    utils.set_random_seed(8)
    assert not np.array_equal(Sequential([Dense(8, input_shape=(2,))]).get_weights()[0], a0[0])


def test_float64_model_and_set_floatx():
    m = mlp(dtype="float64")
    assert m.get_weights()[0].dtype == np.float64
    utils.set_floatx("float64")
    assert mlp().get_weights()[0].dtype == np.float64
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        Sequential(dtype="float16")


def test_build_on_first_fit_without_input_shape():
    m = Sequential([Dense(4, activation="relu"), Dense(2, activation="softmax")])
    assert not m.built
    m.compile("sgd", "sparse_categorical_crossentropy")
    m.fit(*blobs(20), verbose=0)
    assert m.layers[0].input_shape == (2,) and len(m.get_weights()) == 4


@pytest.mark.simulator
def test_set_weights_checks_and_roundtrip():
    m = mlp()
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
    m = mlp()
    m.compile("sgd", "sparse_categorical_crossentropy")
    mine = [np.full(a.shape, 0.25, a.dtype) for a in m.get_weights()]
    kept = [a.copy() for a in mine]
    m.set_weights(mine)
    m.train_on_batch(*blobs(8))
    for a, b in zip(mine, kept):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(m.get_weights(), kept)), "the step changed nothing"
    got = m.get_weights()
    got[0][...] = 7.0  # get_weights hands out copies too
    assert not np.any(m.get_weights()[0] == 7.0)


def test_to_same_backend_keeps_training():
    m = mlp()
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(*blobs(32), verbose=0)
    w = m.get_weights()
    assert m.to("cpu") is m
    for a, b in zip(m.get_weights(), w):
        np.testing.assert_array_equal(a, b)


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


def test_sequential_is_the_functional_graph():
    from numbanet.nn.layers import Input
    seq = mlp(dtype="float64")
    x = Input((2,))
    fun = nn.Model(x, Dense(2, activation="softmax")(Dense(8, activation="relu")(x)), dtype="float64")
    fun.set_weights(seq.get_weights())
    for m in (seq, fun):
        m.compile(nn.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    data = blobs(40)
    xs = data[0].astype("float64")
    h1 = seq.fit(xs, data[1], batch_size=8, epochs=2, shuffle=False, verbose=0)
    h2 = fun.fit(xs, data[1], batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert h1.history == h2.history
    for a, b in zip(seq.get_weights(), fun.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert seq.inputs[0].shape == (None, 2) and isinstance(seq.inputs[0].node.layer, nn.layers.InputLayer)


def _numpy_penalty(weights, regs):
    """sum over regularized arrays of l1 * sum|w| + l2 * sum(w^2); regs: {array index: (l1, l2)}."""
    return sum(l1 * np.abs(weights[i]).sum() + l2 * (weights[i] ** 2).sum() for i, (l1, l2) in regs.items())


@pytest.mark.simulator
def test_shared_layer_regularizer_counts_once():
    """A weight called at two places is one weight: its penalty enters the loss once, and
    so does its gradient (finite differences of that loss)."""
    from gradcheck import check_model_gradients
    from numbanet.nn import regularizers
    x = nn.Input((3,))
    shared = Dense(3, activation="tanh", kernel_regularizer=regularizers.l1_l2(0.02, 0.05),
                   bias_regularizer=regularizers.l2(0.1))
    m = nn.Model(x, Dense(2)(shared(shared(x))), dtype="float64")
    m.compile("sgd", "mse")
    rng = np.random.default_rng(5)
    xs, ys = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    check_model_gradients(m, xs, ys)
    x2 = nn.Input((3,))
    plain_shared = Dense(3, activation="tanh")
    plain = nn.Model(x2, Dense(2)(plain_shared(plain_shared(x2))), dtype="float64")
    plain.compile("sgd", "mse")
    w = m.get_weights()
    plain.set_weights(w)
    penalty = _numpy_penalty(w, {0: (0.02, 0.05), 1: (0.0, 0.1)})
    assert np.isclose(m.evaluate(xs, ys, verbose=0), plain.evaluate(xs, ys, verbose=0) + penalty, rtol=1e-12)


def test_every_layers_regularized_weights_join_the_loss_and_gradients():
    """Embedding, LayerNormalization, MultiHeadAttention and a Bidirectional SimpleRNN, each
    weight with its own regularizer: the loss is the data loss plus the NumPy penalty of
    exactly those arrays, and its gradients match finite differences."""
    from gradcheck import check_model_gradients
    from numbanet.nn import regularizers as R
    from numbanet.nn.layers import (Bidirectional, Embedding, Input, LayerNormalization, MultiHeadAttention,
                                    SimpleRNN)

    def build(reg):
        ids = Input((3,), dtype="int32")
        h = Embedding(5, 4, embeddings_regularizer=reg(R.l2(0.01)))(ids)
        h = LayerNormalization(gamma_regularizer=reg(R.l1(0.02)), beta_regularizer=reg(R.l2(0.03)))(h)
        h = MultiHeadAttention(2, 2, kernel_regularizer=reg(R.l2(0.04)), bias_regularizer=reg(R.l1(0.05)))(h, h)
        h = Bidirectional(SimpleRNN(2, kernel_regularizer=reg(R.l1_l2(0.01, 0.02)),
                                    recurrent_regularizer=reg(R.l2(0.06)), bias_regularizer=reg(R.l1(0.07))))(h)
        m = nn.Model(ids, Dense(2, activation="softmax")(h), dtype="float64")
        m.compile("sgd", "sparse_categorical_crossentropy")
        return m

    m, plain = build(lambda r: r), build(lambda r: None)
    rng = np.random.default_rng(6)
    x, y = rng.integers(0, 5, (4, 3)), rng.integers(0, 2, 4)
    check_model_gradients(m, x, y, max_per_array=6)
    w = m.get_weights()
    # get_weights order: embeddings; gamma, beta; query/key/value/attention_output kernel and
    # bias; the forward SimpleRNN's kernel, recurrent_kernel, bias, then the backward one's;
    # the output Dense's kernel and bias (not regularized).
    assert len(w) == 1 + 2 + 8 + 6 + 2
    regs = {0: (0.0, 0.01), 1: (0.02, 0.0), 2: (0.0, 0.03)}
    regs.update({3 + 2 * j: (0.0, 0.04) for j in range(4)})
    regs.update({4 + 2 * j: (0.05, 0.0) for j in range(4)})
    for side in (11, 14):
        regs.update({side: (0.01, 0.02), side + 1: (0.0, 0.06), side + 2: (0.07, 0.0)})
    plain.set_weights(w)
    penalty = _numpy_penalty(w, regs)
    assert penalty > 0.1
    assert np.isclose(m.evaluate(x, y, verbose=0), plain.evaluate(x, y, verbose=0) + penalty, rtol=1e-12)


# ---------------------------------------------------------------------- Sequential with token ids
# The tutorial text classifier, built each way a user may write it. Keras's own model of
# it (tests/nn/data/text_lstm.keras, made by make_keras_files.py) gives the weights and
# the predictions to match.
TOKEN_STACKS = {
    "input_shape": lambda: [Embedding(13, 8, input_shape=(6,))],
    "input_length": lambda: [Embedding(13, 8, input_length=6)],
    "int Input": lambda: [nn.Input((6,), dtype="int32")] + [Embedding(13, 8)],
    "untyped Input": lambda: [nn.Input((6,))] + [Embedding(13, 8)],
    "first batch": lambda: [Embedding(13, 8)],
}


def _token_model(how, dtype=None):
    return Sequential(TOKEN_STACKS[how]() + [LSTM(10), Dense(3, activation="softmax")], dtype=dtype)


def _keras_text_lstm():
    from keras_cases import arrays, load_keras_made
    model, _ = load_keras_made("text_lstm")
    return model.get_weights(), arrays("text_lstm_x")[0], arrays("text_lstm_y")[0]


@pytest.mark.simulator
@pytest.mark.parametrize("how", sorted(TOKEN_STACKS))
def test_sequential_of_token_ids_predicts_as_keras(how):
    weights, x, want = _keras_text_lstm()
    m = _token_model(how)
    if how == "first batch":
        assert not m.built
        m.predict(x[:1], verbose=0)   # builds on the ids' shape
    assert m.inputs[0].dtype == "int32" and m.inputs[0].shape == (None, 6)
    m.set_weights(weights)
    np.testing.assert_allclose(m.predict(x, verbose=0), want, rtol=0, atol=1e-5)
    for kind in (np.int64, np.uint8, np.int16):   # any integer dtype, no float
        np.testing.assert_array_equal(m.predict(x.astype(kind), verbose=0), m.predict(x, verbose=0))


@pytest.mark.simulator
def test_sequential_of_token_ids_evaluate_and_gradients():
    """evaluate's loss is the NumPy cross-entropy of predict's rows; the gradients of a
    float64 token stack match finite differences (on the simulator, the cpu's); one
    train_on_batch with plain SGD moves every weight by -lr times its gradient."""
    from gradcheck import check_model_gradients
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 13, (4, 6)), rng.integers(0, 3, 4)
    m = _token_model("input_shape", dtype="float64")
    m.compile(nn.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    p = m.predict(x, verbose=0)
    assert np.isclose(m.evaluate(x, y, verbose=0), -np.log(p[np.arange(4), y]).mean(), rtol=1e-12)
    check_model_gradients(m, x, y, max_per_array=8)
    before = m.get_weights()
    _, grads = m.compute_gradients(x, y)
    m.train_on_batch(x, y)
    for w0, g, w1 in zip(before, grads, m.get_weights()):
        np.testing.assert_allclose(w1, w0 - 0.5 * g, rtol=1e-12, atol=1e-14)


def test_sequential_of_token_ids_learns_a_toy_task():
    """The class is the first token of the sequence mod 3 (the LSTM must carry it over five
    steps): fit drives the loss down and the accuracy up, on held-out sequences too."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 13, (600, 6))
    y = x[:, 0] % 3
    m = _token_model("input_length")
    m.compile(nn.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    loss0, acc0 = m.evaluate(x[500:], y[500:], verbose=0)
    hist = m.fit(x[:500], y[:500], batch_size=32, epochs=12, verbose=0).history
    loss1, acc1 = m.evaluate(x[500:], y[500:], verbose=0)
    assert hist["loss"][-1] < 0.3 * hist["loss"][0]
    assert acc0 < 0.5 and acc1 > 0.9 and loss1 < 0.5 * loss0


@pytest.mark.simulator
@pytest.mark.parametrize("op", ["predict", "fit", "evaluate", "train_on_batch"])
def test_sequential_of_token_ids_checks_the_ids(op):
    m = _token_model("input_shape")
    m.compile("sgd", "sparse_categorical_crossentropy")
    y = np.zeros(2, np.int64)

    def call(x):
        if op == "predict":
            return m.predict(x, verbose=0)
        if op == "train_on_batch":
            return m.train_on_batch(x, y)
        return getattr(m, op)(x, y, verbose=0)

    ok = np.array([[0, 1, 2, 3, 4, 12], [5, 6, 7, 8, 9, 10]])
    for bad, got in ((13, "13"), (-1, "-1"), (2 ** 40, str(2 ** 40))):
        x = ok.copy()
        x[1, 3] = bad
        with pytest.raises(ValueError, match=rf"{op}: x holds token id {got}, out of range for layer 'embedding\w*' "
                                             rf"\(Embedding with input_dim=13, ids in \[0, 12\]\)"):
            call(x)
    for kind in ("float32", "float64", "bool"):
        with pytest.raises(TypeError, match=rf"{op}: x feeds the integer Input .* \(read by 'embedding\w*' "
                                            rf"\(Embedding\)\) but has dtype {kind}; pass integer token ids"):
            call(ok.astype(kind))
    call(ok.astype(np.uint16))   # any integer dtype in range goes through


def test_sequential_with_a_float_input_refuses_an_embedding():
    with pytest.raises(TypeError, match=r"layer 'embedding\w*' \(Embedding\) reads integer token ids, got a float "
                                        r"tensor \(None, 6\)"):
        Sequential([nn.Input((6,), dtype="float32"), Embedding(13, 8)])
    with pytest.raises(ValueError, match=r"Embedding: input_length=6 and input_shape=\(5,\) disagree"):
        Embedding(13, 8, input_length=6, input_shape=(5,))


def test_sequential_of_token_ids_saves_and_loads(tmp_path):
    from numbanet.nn.models import load_model
    m = _token_model("int Input")
    x = np.random.default_rng(4).integers(0, 13, (3, 6))
    m.save(tmp_path / "m.npz")
    back = load_model(tmp_path / "m.npz")
    assert type(back) is Sequential and back.inputs[0].dtype == "int32"
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))


def test_a_built_layer_joins_a_sequential_with_its_weights():
    """A layer built at a symbolic call may be added to a Sequential (Keras allows it): the
    stack takes its weights as they are."""
    dense = Dense(3)
    dense(nn.Input((4,)))
    w = dense.get_weights()
    m = Sequential([nn.Input((4,)), dense])
    for a, b in zip(m.get_weights(), w):
        np.testing.assert_array_equal(a, b)


def test_get_layer_by_name_and_index():
    x = Input((4,))
    h = Dense(3, name="hidden")(x)
    m = Model(x, Dense(2, name="out")(h))
    s = Sequential([Input((4,)), Dense(3, name="a"), Dense(2, name="b")])
    for model, names in ((m, ["hidden", "out"]), (s, ["a", "b"])):
        for i, name in enumerate(names):
            layer = model.get_layer(name)
            assert layer.name == name and layer is model.get_layer(index=model.layers.index(layer))
    assert s.get_layer(index=-1).name == "b"
    with pytest.raises(ValueError, match=r"model '.*': no layer named 'c'; its layers are \['a', 'b'\]"):
        s.get_layer("c")
    with pytest.raises(ValueError, match=r"layer index 2 out of range; the model has 2 layers"):
        s.get_layer(index=2)
    with pytest.raises(ValueError, match=r"get_layer takes a name or an index, not neither"):
        s.get_layer()
