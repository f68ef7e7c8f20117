"""Embedding and PositionEmbedding: lookups against NumPy indexing, gradients by finite
differences through whole models, Keras's defaults, and ids checked with clear errors."""
import numpy as np
import pytest

from gradcheck import check_model_gradients
from numbanet import nn
from numbanet.nn import utils
from numbanet.nn.layers import Add, Dense, Embedding, Input, PositionEmbedding
from numbanet.nn.models import Model


def _lm(vocab=7, steps=4, d=3, dtype="float64"):
    ids = Input((steps,), dtype="int32")
    tok = Embedding(vocab, d)(ids)
    x = Add()([tok, PositionEmbedding(steps)(tok)])
    return Model(ids, Dense(vocab)(x), dtype=dtype)


@pytest.mark.simulator
def test_lookup_is_table_rows_of_any_id_shape(nnbe):
    ids = Input((2, 3), dtype="int64")
    emb = Embedding(10, 4)
    m = Model(ids, emb(ids), dtype="float64")
    table = np.random.default_rng(0).standard_normal((10, 4))
    m.set_weights([table])
    x = np.random.default_rng(1).integers(0, 10, (5, 2, 3))
    got = m.predict(x)
    assert got.shape == (5, 2, 3, 4)
    np.testing.assert_array_equal(got, table[x])


def test_keras_defaults(nnbe):
    utils.set_random_seed(0)
    emb = Embedding(50, 8)
    ids = Input((3,), dtype="int32")
    Model(ids, emb(ids))
    (table,) = emb.get_weights()
    assert table.shape == (50, 8) and table.dtype == np.float32
    # RandomUniform(-0.05, 0.05), Keras's "uniform"
    assert np.abs(table).max() <= 0.05 and np.abs(table).max() > 0.045
    assert emb.get_config()["embeddings_initializer"] == "random_uniform"


@pytest.mark.simulator
def test_gradients_scatter_add_repeated_ids(nnbe):
    m = _lm()
    m.compile("sgd", nn.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.set_weights([w + np.random.default_rng(2).standard_normal(w.shape) * 0.3 for w in m.get_weights()])
    x = np.array([[1, 1, 3, 1], [6, 0, 1, 6]])   # repeated ids: their gradient rows add up
    y = np.array([[2, 3, 1, 0], [5, 5, 4, 1]])
    check_model_gradients(m, x, y)


def test_unused_rows_get_zero_gradient(nnbe):
    m = _lm(vocab=9)
    m.compile("sgd", nn.losses.SparseCategoricalCrossentropy(from_logits=True))
    _, grads = m.compute_gradients(np.array([[0, 2, 2, 4]]), np.array([[1, 2, 3, 4]]))
    used = {0, 2, 4}
    for row in range(9):
        assert (np.abs(grads[0][row]).sum() > 0) == (row in used)


@pytest.mark.simulator
def test_position_embedding_broadcasts_the_table(nnbe):
    x = Input((3, 2))
    pe = PositionEmbedding(5)
    m = Model(x, pe(x), dtype="float64")
    table = np.arange(10.0).reshape(5, 2)
    m.set_weights([table])
    got = m.predict(np.random.default_rng(3).standard_normal((4, 3, 2)))
    np.testing.assert_array_equal(got, np.broadcast_to(table[:3], (4, 3, 2)))


def test_position_embedding_shorter_input_gradient(nnbe):
    # 3 steps of a 5-position table: the last two rows get no gradient.
    x = Input((3, 2))
    h = Add()([x, PositionEmbedding(5)(x)])
    m = Model(x, Dense(2)(h), dtype="float64")
    m.compile("sgd", "mse")
    rng = np.random.default_rng(4)
    xs, ys = rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3, 2))
    check_model_gradients(m, xs, ys)
    _, grads = m.compute_gradients(xs, ys)
    assert grads[0].shape == (5, 2) and not grads[0][3:].any() and grads[0][:3].all()


def test_position_embedding_alone_reaches_no_input_gradient(nnbe):
    # A layer whose only reader is a PositionEmbedding (which uses its input's shape only)
    # gets zero gradients, not stale ones.
    x = Input((3, 2))
    d = Dense(2)(x)
    m = Model(x, PositionEmbedding(3)(d), dtype="float64")
    m.compile("sgd", "mse")
    _, grads = m.compute_gradients(np.ones((2, 3, 2)), np.zeros((2, 3, 2)))
    assert not grads[0].any() and not grads[1].any() and grads[2].all()   # dense kernel, bias; table


@pytest.mark.simulator
def test_ids_are_checked_with_the_layer_named(nnbe):
    m = _lm(vocab=7)
    m.compile("sgd", nn.losses.SparseCategoricalCrossentropy(from_logits=True))
    y = np.zeros((1, 4), np.int64)
    with pytest.raises(ValueError, match=r"fit: x holds token id 7, out of range for layer 'embedding.*' "
                                         r"\(Embedding with input_dim=7, ids in \[0, 6\]\)"):
        m.fit(np.array([[0, 7, 1, 2]]), y, verbose=0)
    with pytest.raises(ValueError, match="predict: x holds token id -1"):
        m.predict(np.array([[0, -1, 1, 2]]))
    with pytest.raises(TypeError, match="predict: x feeds the integer Input .* but has dtype float64"):
        m.predict(np.zeros((1, 4)))


def test_bad_arguments(nnbe):
    with pytest.raises(ValueError, match="Embedding: input_dim must be a positive int, got 0"):
        Embedding(0, 3)
    # mask_zero=True masks the recurrent layers after it (issue 13: tests/nn/layers/test_recurrent.py).
    assert Embedding(5, 3, mask_zero=True).get_config()["mask_zero"] is True
    with pytest.raises(TypeError, match=r"layer 'dense.*' \(Dense\) needs float inputs, got a int32 tensor"):
        Dense(3)(Input((4,), dtype="int32"))
    with pytest.raises(ValueError, match="6 steps exceed sequence_length=5"):
        PositionEmbedding(5)(Input((6, 2)))
