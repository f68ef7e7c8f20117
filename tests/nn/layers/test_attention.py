"""MultiHeadAttention against a NumPy transcription of Keras's equations (einsum projections,
scaled dot products, the causal mask, softmax, the output projection), its weights in
Keras's shapes and order, and its gradients by finite differences through whole models:
the fused attention path, the batched-matmul path (scores returned), dropout."""
import numpy as np
import pytest

from gradcheck import check_model_gradients, sampled
from numbanet.nn import utils
from numbanet.nn.layers import Dense, Input, MultiHeadAttention
from numbanet.nn.models import Model


def mha_ref(query, value, key, weights, num_heads, key_dim, causal):
    """Keras 3's MultiHeadAttention, written from its einsum equations, float64."""
    wq, bq, wk, bk, wv, bv, wo, bo = [w.astype(np.float64) for w in weights]
    q = np.einsum("btd,dhk->bthk", query, wq) + bq
    k = np.einsum("btd,dhk->bthk", key, wk) + bk
    v = np.einsum("btd,dhk->bthk", value, wv) + bv
    q = q / np.sqrt(key_dim)
    s = np.einsum("bqhk,bthk->bhqt", q, k)
    if causal:
        tq, tk = s.shape[2], s.shape[3]
        keep = np.arange(tk)[None, :] <= np.arange(tq)[:, None]
        s = np.where(keep, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    o = np.einsum("bhqt,bthv->bqhv", p, v)
    return np.einsum("bqhv,hvd->bqd", o, wo) + bo, p


def _random_weights(model, seed=0, scale=0.4):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(w.shape) * scale for w in model.get_weights()]


def test_weights_in_keras_shapes_and_order(nnbe):
    q, v = Input((5, 6)), Input((7, 3))
    mha = MultiHeadAttention(num_heads=2, key_dim=4, value_dim=5)
    Model([q, v], mha(q, v))
    assert list(mha.params) == ["query/kernel", "query/bias", "key/kernel", "key/bias", "value/kernel", "value/bias",
                                "attention_output/kernel", "attention_output/bias"]
    assert [w.shape for w in mha.get_weights()] == [(6, 2, 4), (2, 4), (3, 2, 4), (2, 4), (3, 2, 5), (2, 5),
                                                    (2, 5, 6), (6,)]
    assert mha.count_params() == 48 + 8 + 24 + 8 + 30 + 10 + 60 + 6


def test_glorot_fans_follow_keras_einsum_axes(nnbe):
    # Keras's EinsumDense fans: a (d, heads, key_dim) kernel is d in, heads * key_dim out.
    utils.set_random_seed(0)
    x = Input((4, 64))
    mha = MultiHeadAttention(2, 8, use_bias=False)
    Model(x, mha(x, x))
    wq = mha.get_weights()[0]
    limit = np.sqrt(6 / (64 + 16))
    assert np.abs(wq).max() <= limit and np.abs(wq).max() > 0.95 * limit
    wo = mha.get_weights()[3]
    limit_o = np.sqrt(6 / (16 + 64))
    assert np.abs(wo).max() <= limit_o and np.abs(wo).max() > 0.95 * limit_o


@pytest.mark.simulator
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_forward_matches_keras_equations(nnbe, causal, cross):
    rng = np.random.default_rng(1)
    tq, tk = 4, (5 if cross else 4)
    query, value = Input((tq, 6)), Input((tk, 3 if cross else 6))
    key = Input((tk, 2)) if cross else None
    mha = MultiHeadAttention(num_heads=2, key_dim=3, value_dim=2, output_shape=7 if cross else None)
    if cross:
        model = Model([query, value, key], mha(query, value, key=key, use_causal_mask=causal), dtype="float64")
    else:
        model = Model(query, mha(query, query, use_causal_mask=causal), dtype="float64")
    w = _random_weights(model)
    model.set_weights(w)
    xq = rng.standard_normal((3, tq, 6))
    if cross:
        xv, xk = rng.standard_normal((3, tk, 3)), rng.standard_normal((3, tk, 2))
        got = model.predict([xq, xv, xk])
        want, _ = mha_ref(xq, xv, xk, w, 2, 3, causal)
    else:
        got = model.predict(xq)
        want, _ = mha_ref(xq, xq, xq, w, 2, 3, causal)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_causal_output_ignores_later_positions(nnbe):
    x = Input((6, 4))
    m = Model(x, MultiHeadAttention(2, 2)(x, x, use_causal_mask=True), dtype="float64")
    a = np.random.default_rng(2).standard_normal((1, 6, 4))
    b = a.copy()
    b[0, 4:] += 10.0
    np.testing.assert_allclose(m.predict(a)[0, :4], m.predict(b)[0, :4], rtol=1e-12, atol=1e-12)
    assert not np.allclose(m.predict(a)[0, 4:], m.predict(b)[0, 4:])


@pytest.mark.simulator
@pytest.mark.parametrize("causal", [False, True])
def test_attention_scores_are_keras_softmax(nnbe, causal):
    q = Input((4, 6))
    out, scores = MultiHeadAttention(3, 2)(q, q, use_causal_mask=causal, return_attention_scores=True)
    m = Model(q, [out, scores], dtype="float64")
    w = _random_weights(m, seed=3)
    m.set_weights(w)
    x = np.random.default_rng(4).standard_normal((2, 4, 6))
    got_out, got_scores = m.predict(x)
    want_out, want_scores = mha_ref(x, x, x, w, 3, 2, causal)
    assert got_scores.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_out, want_out, rtol=1e-10, atol=1e-10)
    if causal:
        assert np.all(got_scores[:, :, np.triu_indices(4, 1)[0], np.triu_indices(4, 1)[1]] == 0)


@pytest.mark.simulator
def test_gradients_self_attention_fused_path(nnbe):
    x = Input((4, 5))
    h = MultiHeadAttention(2, 3)(x, x, use_causal_mask=True)
    m = Model(x, Dense(3, activation="softmax")(h), dtype="float64")
    m.compile("sgd", "sparse_categorical_crossentropy")
    m.set_weights(_random_weights(m, seed=5))
    rng = np.random.default_rng(6)
    xs, ys = rng.standard_normal((3, 4, 5)), rng.integers(0, 3, (3, 4))
    check_model_gradients(m, xs, ys, max_per_array=12)


def test_gradients_cross_attention_and_scores_output(nnbe):
    """The batched-matmul path: scores are an output with their own loss, so gradients
    reach the softmax from both the values' mix and the scores."""
    q, v, k = Input((3, 4)), Input((5, 2)), Input((5, 3))
    out, scores = MultiHeadAttention(2, 2, value_dim=3)(q, v, key=k, return_attention_scores=True)
    m = Model([q, v, k], [out, scores], dtype="float64")
    m.compile("sgd", ["mse", "mse"], loss_weights=[1.0, 0.5])
    m.set_weights(_random_weights(m, seed=7))
    rng = np.random.default_rng(8)
    xs = [rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 2)), rng.standard_normal((2, 5, 3))]
    ys = [rng.standard_normal((2, 3, 4)), rng.uniform(0, 0.4, (2, 2, 3, 5))]
    check_model_gradients(m, xs, ys, max_per_array=10)


def test_fused_and_unfused_paths_agree(nnbe):
    q = Input((5, 4))
    mha = MultiHeadAttention(2, 2)
    out, scores = mha(q, q, use_causal_mask=True, return_attention_scores=True)
    both = Model(q, [out, scores], dtype="float64")
    fused = Model(q, out, dtype="float64")
    both.compile("sgd", ["mse", "mse"], loss_weights=[1.0, 0.0])
    fused.compile("sgd", "mse")
    rng = np.random.default_rng(9)
    x, t = rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 4))
    np.testing.assert_allclose(both.predict(x)[0], fused.predict(x), rtol=1e-12, atol=1e-12)
    l1, g1 = both.compute_gradients(x, [t, np.zeros((2, 2, 5, 5))])
    l2, g2 = fused.compute_gradients(x, t)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_dropout_path_gradients(nnbe):
    """With dropout, training runs the batched-matmul path with a dropout mask on the
    probabilities; reseeding the library RNG before each loss repeats the mask, so finite
    differences of the training loss check the backward pass through it."""
    x = Input((4, 4))
    m = Model(x, MultiHeadAttention(2, 2, dropout=0.4)(x, x, use_causal_mask=True), dtype="float64")
    m.compile("sgd", "mse")
    rng = np.random.default_rng(10)
    xs, ts = rng.standard_normal((2, 4, 4)), rng.standard_normal((2, 4, 4))

    def loss_and_grads():
        utils.set_random_seed(123)
        return m.compute_gradients(xs, ts)

    _, grads = loss_and_grads()
    weights = m.get_weights()
    h = 1e-6
    for i in range(len(weights)):
        for p in rng.choice(weights[i].size, min(sampled(m, 6), weights[i].size), replace=False):
            ws = [w.copy() for w in weights]
            ws[i].reshape(-1)[p] += h
            m.set_weights(ws)
            up = loss_and_grads()[0]
            ws[i].reshape(-1)[p] -= 2 * h
            m.set_weights(ws)
            down = loss_and_grads()[0]
            num = (up - down) / (2 * h)
            assert abs(grads[i].reshape(-1)[p] - num) <= 1e-6 * max(1.0, abs(num))
    m.set_weights(weights)
    # inference has no dropout: the same as a dropout-free layer with these weights
    y = Input((4, 4))
    plain = Model(y, MultiHeadAttention(2, 2)(y, y, use_causal_mask=True), dtype="float64")
    plain.set_weights(weights)
    np.testing.assert_allclose(m.predict(xs), plain.predict(xs), rtol=1e-12, atol=1e-12)
    utils.set_random_seed(1)
    assert not np.allclose(m.compute_gradients(xs, ts)[0], m.evaluate(xs, ts, verbose=0))


def test_config_round_trip(nnbe):
    mha = MultiHeadAttention(4, 8, value_dim=6, dropout=0.1, use_bias=False, output_shape=(12,), name="att")
    cfg = mha.get_config()
    assert cfg["output_shape"] == 12 and cfg["value_dim"] == 6 and cfg["use_bias"] is False
    again = MultiHeadAttention(**cfg)
    assert again.get_config() == cfg


def test_bad_arguments_and_calls(nnbe):
    with pytest.raises(ValueError, match="MultiHeadAttention: num_heads must be a positive int, got 0"):
        MultiHeadAttention(0, 4)
    with pytest.raises(ValueError, match=r"MultiHeadAttention: dropout must be a number in \[0, 1\), got 1.0"):
        MultiHeadAttention(2, 4, dropout=1.0)
    mha = MultiHeadAttention(2, 4)
    q = Input((3, 4))
    with pytest.raises(ValueError, match="key has 4 steps but value has 5"):
        mha(q, Input((5, 4)), key=Input((4, 4)))
    with pytest.raises(ValueError, match=r"query must have per-sample shape \(steps, features\), got \(3, 4, 1\)"):
        mha(Input((3, 4, 1)), q)
    with pytest.raises(ValueError, match="attention_mask is not supported; use_causal_mask=True"):
        mha(q, q, attention_mask=q)
    with pytest.raises(TypeError, match="got unexpected arguments"):
        mha(q, q, causal=True)
    with pytest.raises(TypeError, match="was called on ndarray"):
        mha(np.zeros((1, 3, 4)), np.zeros((1, 3, 4)))


def test_self_attention_stacks_its_projections_with_the_same_results(nnbe):
    """mha(x, x) runs the query, key and value projections as one product; mha(x, r) with r
    a copy of x (Reshape to the same shape) runs them apart: same outputs, same gradients."""
    from numbanet.nn.layers import Reshape
    x = Input((5, 4))
    fused = Model(x, Dense(2)(MultiHeadAttention(2, 3, value_dim=2)(x, x, use_causal_mask=True)), dtype="float64")
    y = Input((5, 4))
    copy = Reshape((5, 4))(y)
    apart = Model(y, Dense(2)(MultiHeadAttention(2, 3, value_dim=2)(y, copy, use_causal_mask=True)), dtype="float64")
    w = _random_weights(fused, seed=11)
    fused.set_weights(w)
    apart.set_weights(w)
    for m in (fused, apart):
        m.compile("sgd", "mse")
    rng = np.random.default_rng(12)
    xs, ts = rng.standard_normal((3, 5, 4)), rng.standard_normal((3, 5, 2))
    np.testing.assert_allclose(fused.predict(xs), apart.predict(xs), rtol=1e-12, atol=1e-12)
    la, ga = fused.compute_gradients(xs, ts)
    lb, gb = apart.compute_gradients(xs, ts)
    assert np.isclose(la, lb, rtol=1e-12)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # and the input gradient: a Dense in front makes it a weight gradient
    z = Input((5, 3))
    h = Dense(4)(z)
    m = Model(z, Dense(2)(MultiHeadAttention(2, 3)(h, h)), dtype="float64")
    m.compile("sgd", "mse")
    check_model_gradients(m, rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 2)), max_per_array=8)


def test_key_given_as_the_query_tensor_with_another_value(nnbe):
    """mha(q, v, key=q): the key is the query tensor but the value is not, so this is not
    self-attention: the value projection reads v (Keras's equations)."""
    q, v = Input((4, 3)), Input((4, 3))
    model = Model([q, v], MultiHeadAttention(2, 2)(q, v, key=q), dtype="float64")
    w = _random_weights(model, seed=13)
    model.set_weights(w)
    rng = np.random.default_rng(14)
    xq, xv = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4, 3))
    want, _ = mha_ref(xq, xv, xq, w, 2, 2, False)
    np.testing.assert_allclose(model.predict([xq, xv]), want, rtol=1e-10, atol=1e-10)
    model.compile("sgd", "mse")
    check_model_gradients(model, [xq, xv], rng.standard_normal((2, 4, 3)), max_per_array=6)
