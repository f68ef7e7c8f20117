"""SimpleRNN, LSTM, GRU and Bidirectional: Keras's weights (shapes, order, initializers),
outputs against the NumPy loop of Keras's equations (tests/helpers.py: rnn_ref), masks
from Embedding(mask_zero=True), initial and returned states, gradients through whole
models, and training through fit, save and load (on the gpu too, under the simulator)."""
import numpy as np
import pytest

from gradcheck import check_model_gradients
from helpers import rnn_ref
from numbanet.nn import utils
from numbanet.nn.layers import GRU, LSTM, Bidirectional, Dense, Embedding, Input, SimpleRNN
from numbanet.nn.models import Model, Sequential, load_model
from numbanet.nn.optimizers import Adam

LAYERS = {"simple": SimpleRNN, "lstm": LSTM, "gru": GRU}
CELLS = list(LAYERS)


def _random_weights(model, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(w.shape) * scale for w in model.get_weights()]


def test_weights_in_keras_shapes_order_and_initializers(nnbe):
    utils.set_random_seed(0)
    x = Input((3, 4))
    lstm, gru, simple = LSTM(5), GRU(6), SimpleRNN(7)
    Model(x, [lstm(x), gru(x), simple(x)])
    assert list(lstm.params) == ["kernel", "recurrent_kernel", "bias"]
    assert [w.shape for w in lstm.get_weights()] == [(4, 20), (5, 20), (20,)]
    assert [w.shape for w in gru.get_weights()] == [(4, 18), (6, 18), (2, 18)]
    assert [w.shape for w in simple.get_weights()] == [(4, 7), (7, 7), (7,)]
    k, r, b = lstm.get_weights()
    # unit_forget_bias: the forget gate (Keras's second block, i f c o) starts at 1, the rest at 0.
    np.testing.assert_array_equal(b, np.r_[np.zeros(5), np.ones(5), np.zeros(10)])
    # Orthogonal recurrent kernel: (units, G*units) with orthonormal rows, as Keras's Orthogonal.
    np.testing.assert_allclose(r @ r.T, np.eye(5), atol=1e-5)
    # glorot_uniform kernel: limit sqrt(6 / (fan_in + fan_out)).
    assert np.abs(k).max() <= np.sqrt(6 / (4 + 20)) and k.dtype == np.float32
    assert np.all(gru.get_weights()[2] == 0)


def test_bidirectional_weights_forward_then_backward(nnbe):
    x = Input((3, 4))
    bi = Bidirectional(GRU(2, return_sequences=True))
    Model(x, bi(x))
    assert list(bi.params) == ["forward/kernel", "forward/recurrent_kernel", "forward/bias",
                               "backward/kernel", "backward/recurrent_kernel", "backward/bias"]
    assert bi.backward_layer.go_backwards and not bi.forward_layer.go_backwards


@pytest.mark.simulator
@pytest.mark.parametrize("cell", CELLS)
def test_forward_and_states_match_keras_equations(nnbe, cell):
    x = Input((4, 3))
    outs = LAYERS[cell](5, return_sequences=True, return_state=True)(x)
    m = Model(x, outs, dtype="float64")
    w = _random_weights(m, seed=1)
    m.set_weights(w)
    xs = np.random.default_rng(2).standard_normal((2, 4, 3))
    got = m.predict(xs)
    y, h, c = rnn_ref(cell, xs, *w)
    want = [y, h] + ([c] if cell == "lstm" else [])
    assert len(got) == len(want)
    for g, v in zip(got, want):
        np.testing.assert_allclose(g, v, rtol=1e-10, atol=1e-12)


@pytest.mark.simulator
def test_initial_state_and_go_backwards(nnbe):
    x, h0, c0 = Input((3, 2)), Input((4,)), Input((4,))
    y = LSTM(4, go_backwards=True)(x, initial_state=[h0, c0])
    m = Model([x, h0, c0], y, dtype="float64")
    w = _random_weights(m, seed=3)
    m.set_weights(w)
    rng = np.random.default_rng(4)
    xs, hs, cs = rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    want, _, _ = rnn_ref("lstm", xs, *w, h0=hs, c0=cs, go_backwards=True, return_sequences=False)
    np.testing.assert_allclose(m.predict([xs, hs, cs]), want, rtol=1e-10, atol=1e-12)


@pytest.mark.simulator
def test_embedding_mask_zero_masks_the_recurrent_layers(nnbe):
    """Padding ids (0) carry the state through: the padded and the unpadded sequence give
    the same last output, and every step matches Keras's masked loop."""
    ids = Input((5,), dtype="int32")
    e = Embedding(6, 3, mask_zero=True)(ids)
    seq = GRU(4, return_sequences=True)(e)
    last = SimpleRNN(2)(seq)
    m = Model(ids, [seq, last], dtype="float64")
    w = _random_weights(m, seed=5)
    m.set_weights(w)
    x = np.array([[3, 1, 0, 0, 0], [0, 0, 3, 1, 0], [2, 0, 5, 0, 4]])
    got_seq, got_last = m.predict(x)
    table = w[0]
    want_seq, _, _ = rnn_ref("gru", table[x], *w[1:4], mask=x != 0)
    want_last, _, _ = rnn_ref("simple", want_seq, *w[4:7], mask=x != 0, return_sequences=False)
    np.testing.assert_allclose(got_seq, want_seq, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_last, want_last, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_last[0], got_last[1], rtol=1e-12)   # the same ids, padded differently


@pytest.mark.simulator
@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_bidirectional_matches_two_keras_loops(nnbe, merge_mode):
    ids = Input((4,), dtype="int32")
    e = Embedding(5, 2, mask_zero=True)(ids)
    y = Bidirectional(LSTM(3, return_sequences=True), merge_mode=merge_mode)(e)
    m = Model(ids, y, dtype="float64")
    w = _random_weights(m, seed=6)
    m.set_weights(w)
    x = np.array([[1, 2, 0, 0], [4, 3, 2, 1]])
    xs, mask = w[0][x], x != 0
    # Keras: padded steps of a bidirectional sequence are zeros; the backward half in input order.
    yf, _, _ = rnn_ref("lstm", xs, *w[1:4], mask=mask, zero_output_for_mask=True)
    yb, _, _ = rnn_ref("lstm", xs, *w[4:7], mask=mask, zero_output_for_mask=True, go_backwards=True)
    yb = yb[:, ::-1]
    want = np.concatenate([yf, yb], axis=-1) if merge_mode == "concat" else yf + yb
    np.testing.assert_allclose(m.predict(x), want, rtol=1e-10, atol=1e-12)


# On the simulator the GRU case only (a Bidirectional over a masked sequence): the other
# cells' gradients meet the cpu's in tests/gpu/test_cross_backend.py.
@pytest.mark.parametrize("cell", ["simple", "lstm", pytest.param("gru", marks=pytest.mark.simulator)])
def test_gradients_through_a_masked_stack(nnbe, cell):
    ids = Input((4,), dtype="int32")
    e = Embedding(5, 3, mask_zero=True)(ids)
    h = LAYERS[cell](3, return_sequences=True)(e)
    h = Bidirectional(LAYERS[cell](2))(h) if cell == "gru" else LAYERS[cell](2, go_backwards=True)(h)
    m = Model(ids, Dense(3, activation="softmax")(h), dtype="float64")
    m.compile("sgd", "sparse_categorical_crossentropy")
    m.set_weights(_random_weights(m, seed=7))
    x = np.array([[1, 2, 0, 0], [4, 3, 2, 1], [0, 0, 3, 3]])
    check_model_gradients(m, x, np.array([0, 2, 1]), max_per_array=10)


def test_gradients_with_states_in_and_out(nnbe):
    x, h0, c0 = Input((3, 2)), Input((3,)), Input((3,))
    seq, h, c = LSTM(3, return_sequences=True, return_state=True)(x, initial_state=[h0, c0])
    out = Dense(2)(LSTM(3)(seq, initial_state=[h, c]))
    m = Model([x, h0, c0], out, dtype="float64")
    m.compile("sgd", "mse")
    m.set_weights(_random_weights(m, seed=8))
    rng = np.random.default_rng(9)
    xs = [rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 3)), rng.standard_normal((2, 3))]
    check_model_gradients(m, xs, rng.standard_normal((2, 2)))


def _sequence_task(n, steps, seed):
    """Which half of the sequence holds the larger sum: needs the whole sequence."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, steps, 2)).astype(np.float32)
    y = (x[:, :steps // 2].sum(axis=(1, 2)) > x[:, steps // 2:].sum(axis=(1, 2))).astype(np.int64)
    return x, y


@pytest.mark.simulator
@pytest.mark.parametrize("cell", CELLS)
def test_trains_through_fit_saves_and_loads(nnbe, nn_small, tmp_path, cell):
    """fit lowers the loss; the saved file loads into the same configuration with the same
    weights, and its outputs are Keras's equations on those weights."""
    n, steps, units, epochs = (4, 3, 2, 3) if nn_small else (256, 6, 8, 15)
    x, y = _sequence_task(n, steps, seed=10)
    m = Sequential([LAYERS[cell](units, input_shape=(steps, 2)), Dense(2, activation="softmax")])
    m.compile(Adam(learning_rate=0.02), "sparse_categorical_crossentropy", metrics=["accuracy"])
    before = m.evaluate(x, y, verbose=0)[0]
    hist = m.fit(x, y, batch_size=4 if nn_small else 32, epochs=epochs, verbose=0)
    after = m.evaluate(x, y, verbose=0)[0]
    assert m.be is nnbe and hist.history["loss"][-1] < hist.history["loss"][0] and after < before
    if not nn_small:
        assert after < 0.5 * before and m.evaluate(x, y, verbose=0)[1] > 0.85
    path = tmp_path / "rnn.npz"
    m.save(str(path))
    loaded = load_model(str(path))
    assert type(loaded.layers[0]) is LAYERS[cell] and loaded.layers[0].get_config() == m.layers[0].get_config()
    for a, b in zip(loaded.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)
    w = loaded.get_weights()
    hidden, _, _ = rnn_ref(cell, x.astype(np.float64), *[a.astype(np.float64) for a in w[:3]], return_sequences=False)
    logits = hidden @ w[3] + w[4]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(loaded.predict(x), probs, rtol=2e-4, atol=2e-5)
    np.testing.assert_array_equal(loaded.predict(x), m.predict(x))


@pytest.mark.simulator
def test_bidirectional_with_dropout_saves_and_loads(nnbe, tmp_path):
    ids = Input((4,), dtype="int32")
    e = Embedding(5, 3, mask_zero=True)(ids)
    h = Bidirectional(GRU(2, dropout=0.2, recurrent_dropout=0.2, seed=1), merge_mode="ave")(e)
    m = Model(ids, Dense(2, activation="softmax")(h))
    m.compile("adam", "sparse_categorical_crossentropy")
    x = np.array([[1, 2, 0, 0], [4, 3, 2, 1], [0, 0, 3, 3]])
    y = np.array([0, 1, 1])
    m.fit(x, y, batch_size=3, epochs=2, verbose=0)
    path = tmp_path / "bi.npz"
    m.save(str(path))
    loaded = load_model(str(path))
    bi = loaded.layers[2]
    assert isinstance(bi, Bidirectional) and bi.merge_mode == "ave" and bi.forward_layer.recurrent_dropout == 0.2
    np.testing.assert_array_equal(loaded.predict(x), m.predict(x))   # no dropout outside training


def test_bad_arguments_name_the_layer(nnbe):
    with pytest.raises(ValueError, match=r"LSTM: units must be a positive int, got 0"):
        LSTM(0)
    with pytest.raises(ValueError, match=r"GRU: only reset_after=True"):
        GRU(3, reset_after=False)
    with pytest.raises(ValueError, match=r"SimpleRNN: dropout must be a number in \[0, 1\), got 1.5"):
        SimpleRNN(3, dropout=1.5)
    with pytest.raises(ValueError, match=r"LSTM: activation must be one of"):
        LSTM(3, activation="softmax")
    with pytest.raises(ValueError, match=r"expects per-sample shape \(timesteps, features\), got \(4,\)"):
        LSTM(3)(Input((4,)))
    with pytest.raises(ValueError, match=r"initial_state must be 2 tensor\(s\)"):
        LSTM(3)(Input((2, 4)), initial_state=[Input((3,))])
    with pytest.raises(ValueError, match=r"Bidirectional: layer must be a SimpleRNN, LSTM or GRU, got Dense"):
        Bidirectional(Dense(3))
