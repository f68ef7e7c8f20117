"""nn/layers/base.py: a layer builds on its first symbolic call, as in Keras (its weights
exist, in Keras's shapes, before any model does), and the model built on those calls
uses exactly those weights: moved to its backend, drawn again in its float type from the
same RNG state, never initialised a second time."""
import numpy as np
import pytest

from numbanet import nn
from numbanet.nn import initializers, utils
from numbanet.nn import layers as L
from numbanet.nn.layers.base import calls_without_building
from numbanet.nn.models import Model, Sequential


def _float(*shape):
    return lambda: [L.Input(shape)]


# Every layer kind: (make the layer, make its input tensors, call kwargs, the shapes of
# Keras 3's weights for those inputs, in get_weights order). The shapes are Keras's own
# (keras.layers.<Kind>(...) called on keras.Input tensors of the same shapes, read by
# hand with KERAS_BACKEND=torch): an independent record, not numbanet's output.
KINDS = {
    "Dense": (lambda: L.Dense(3), _float(4), {}, [(4, 3), (3,)]),
    "Conv2D": (lambda: L.Conv2D(2, (2, 3)), _float(5, 6, 3), {}, [(2, 3, 3, 2), (2,)]),
    "MaxPooling2D": (lambda: L.MaxPooling2D(), _float(4, 4, 2), {}, []),
    "AveragePooling2D": (lambda: L.AveragePooling2D(), _float(4, 4, 2), {}, []),
    "GlobalAveragePooling1D": (lambda: L.GlobalAveragePooling1D(), _float(3, 2), {}, []),
    "GlobalAveragePooling2D": (lambda: L.GlobalAveragePooling2D(), _float(3, 3, 2), {}, []),
    "Flatten": (lambda: L.Flatten(), _float(2, 3), {}, []),
    "Dropout": (lambda: L.Dropout(0.5), _float(4), {}, []),
    "Activation": (lambda: L.Activation("relu"), _float(4), {}, []),
    "Reshape": (lambda: L.Reshape((3, 2)), _float(6), {}, []),
    "Permute": (lambda: L.Permute((2, 1)), _float(2, 3), {}, []),
    "Add": (lambda: L.Add(), lambda: [[L.Input((4,)), L.Input((4,))]], {}, []),
    "Concatenate": (lambda: L.Concatenate(), lambda: [[L.Input((4,)), L.Input((2,))]], {}, []),
    "Embedding": (lambda: L.Embedding(7, 4), lambda: [L.Input((3,), dtype="int32")], {}, [(7, 4)]),
    "PositionEmbedding": (lambda: L.PositionEmbedding(5), _float(3, 4), {}, [(5, 4)]),
    "LayerNormalization": (lambda: L.LayerNormalization(), _float(3, 4), {}, [(4,), (4,)]),
    "BatchNormalization": (lambda: L.BatchNormalization(), _float(3, 3, 4), {}, [(4,), (4,), (4,), (4,)]),
    "MultiHeadAttention": (lambda: L.MultiHeadAttention(num_heads=2, key_dim=3),
                           lambda: [L.Input((4, 5)), L.Input((3, 6))], {},
                           [(5, 2, 3), (2, 3), (6, 2, 3), (2, 3), (6, 2, 3), (2, 3), (2, 3, 5), (5,)]),
    "SimpleRNN": (lambda: L.SimpleRNN(3), _float(4, 5), {}, [(5, 3), (3, 3), (3,)]),
    "LSTM": (lambda: L.LSTM(3), _float(4, 5), {}, [(5, 12), (3, 12), (12,)]),
    "GRU": (lambda: L.GRU(3), _float(4, 5), {}, [(5, 9), (3, 9), (2, 9)]),
    "Bidirectional": (lambda: L.Bidirectional(L.LSTM(3)), _float(4, 5), {},
                      [(5, 12), (3, 12), (12,)] * 2),
    "Conv1D": (lambda: L.Conv1D(2, 3), _float(6, 4), {}, [(3, 4, 2), (2,)]),
    "Conv2DTranspose": (lambda: L.Conv2DTranspose(2, (2, 3)), _float(4, 5, 3), {}, [(2, 3, 2, 3), (2,)]),
    "MaxPooling1D": (lambda: L.MaxPooling1D(), _float(4, 2), {}, []),
    "AveragePooling1D": (lambda: L.AveragePooling1D(2), _float(4, 2), {}, []),
    "GlobalMaxPooling1D": (lambda: L.GlobalMaxPooling1D(), _float(3, 2), {}, []),
    "GlobalMaxPooling2D": (lambda: L.GlobalMaxPooling2D(), _float(3, 3, 2), {}, []),
    "UpSampling2D": (lambda: L.UpSampling2D(), _float(2, 2, 2), {}, []),
}


def test_every_layer_kind_is_covered():
    """A new layer kind gets the rule from the base class; this table must name it too."""
    kinds = {getattr(L, n) for n in L.__all__}
    kinds = {k.__name__ for k in kinds if isinstance(k, type) and issubclass(k, L.Layer)} - {"Layer", "InputLayer"}
    assert kinds == set(KINDS)


@pytest.mark.simulator
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_weights_exist_after_the_first_symbolic_call_and_the_model_uses_them(kind, nnbe):
    make, inputs, kwargs, want = KINDS[kind]
    layer, args = make(), inputs()
    out = layer(*args, **kwargs)
    assert layer.built and layer.be is nnbe
    got = layer.get_weights()
    assert [w.shape for w in got] == want
    assert all(w.dtype == np.float32 for w in got)
    flat = [t for a in args for t in (a if isinstance(a, list) else [a])]
    model = Model(flat if len(flat) > 1 else flat[0], out)
    mine = model.get_weights()   # the layer's are the model's only weights
    assert len(mine) == len(got)
    for a, b in zip(mine, got):
        np.testing.assert_array_equal(a, b)   # the same values: no second initialisation


def test_attention_weights_right_after_the_call():
    q, v = nn.Input((4, 5)), nn.Input((3, 6))
    mha = L.MultiHeadAttention(num_heads=2, key_dim=3)
    mha(q, v)
    assert [w.shape for w in mha.get_weights()] == KINDS["MultiHeadAttention"][3]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_model_s_float_type_gets_the_draws_a_build_in_it_would_make(dtype):
    """Built at the call in floatx (float32), then taken by a model of `dtype`: the kernel
    is glorot_uniform drawn from the seed in float64 and cast to dtype, exactly, and the
    library RNG stands where one build's draws leave it."""
    utils.set_random_seed(42)
    want = initializers.initialize("glorot_uniform", (4, 3), "float64").astype(dtype)
    after = utils.get_rng().bit_generator.state
    utils.set_random_seed(42)
    x = nn.Input((4,))
    dense = L.Dense(3)
    y = dense(x)
    assert dense.dtype == np.float32
    m = Model(x, y, dtype=dtype)
    kernel, bias = m.get_weights()
    assert kernel.dtype == np.dtype(dtype) and dense.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(kernel, want)
    assert not bias.any()
    assert utils.get_rng().bit_generator.state == after


def test_weights_a_model_took_are_not_cast_into_another_type():
    x = nn.Input((4,))
    dense = L.Dense(3)
    y = dense(x)
    Model(x, y)
    with pytest.raises(ValueError, match=r"layer 'dense\w*' holds float32 weights that a model has already taken; "
                                         r"a float64 model cannot share them"):
        Model(x, y, dtype="float64")


def test_a_second_model_shares_the_first_one_s_weights():
    """As in Keras: two models over the same layers share their weights."""
    x = nn.Input((4,))
    dense = L.Dense(3)
    y = dense(x)
    a, b = Model(x, y), Model(x, L.Activation("relu")(y))
    a.set_weights([np.ones((4, 3), "float32"), np.zeros(3, "float32")])
    np.testing.assert_array_equal(b.get_weights()[0], np.ones((4, 3)))


def test_a_built_layer_keeps_the_shapes_of_its_first_call():
    """Its weights were made for them: a call on other shapes is refused (as in Keras),
    in a functional graph and in a Sequential alike, instead of a silent re-initialisation."""
    dense = L.Dense(2)
    dense(nn.Input((3,)))
    with pytest.raises(ValueError, match=r"layer 'dense\w*' \(Dense\) was built on input shape\(s\) \(3,\) and is "
                                         r"now called on \(4,\); a layer keeps the shapes of its first call"):
        dense(nn.Input((4,)))
    with pytest.raises(ValueError, match=r"was built on input shape\(s\) \(3,\) and is now called on \(5,\)"):
        Sequential([nn.Input((2,)), L.Dense(5), dense])
    assert [w.shape for w in dense.get_weights()] == [(3, 2), (2,)]


def test_calls_without_building_wire_only():
    x = nn.Input((4,))
    dense = L.Dense(10 ** 6)
    with calls_without_building():
        y = dense(x)
    assert not dense.built and dense.get_weights() == [] and y.shape == (None, 10 ** 6)
    small = L.Dense(2)
    with calls_without_building():
        z = small(x)
    m = Model(x, z)   # the model builds what the calls did not
    assert small.built and [w.shape for w in m.get_weights()] == [(4, 2), (2,)]


def test_embedding_refuses_a_float_tensor_at_the_call():
    with pytest.raises(TypeError, match=r"layer 'embedding\w*' \(Embedding\) reads integer token ids, got a float "
                                        r"tensor \(None, 6\); declare the input as nn.Input\(shape, dtype='int32'\)"):
        L.Embedding(5, 2)(nn.Input((6,)))


# Per-weight arguments of each weighted kind: (constructor, {weight: regularized?}). l2's
# default factor is Keras's 0.01 (keras.regularizers.L2); an initializer keeps its name.
WEIGHT_ARGS = [
    (L.Dense, dict(units=3), ("kernel", "bias"), ()),
    (L.Conv1D, dict(filters=2, kernel_size=3), ("kernel", "bias"), ()),
    (L.MultiHeadAttention, dict(num_heads=2, key_dim=3), ("kernel", "bias"), ()),
    (L.Embedding, dict(input_dim=5, output_dim=2), ("embeddings",), ()),
    (L.LayerNormalization, {}, ("beta", "gamma"), ()),
    (L.BatchNormalization, {}, ("beta", "gamma"), ("moving_mean", "moving_variance")),
    (L.GRU, dict(units=2), ("kernel", "recurrent", "bias"), ()),
]


@pytest.mark.parametrize("cls,args,weights,stats", WEIGHT_ARGS, ids=lambda v: getattr(v, "__name__", None))
def test_weight_arguments_are_resolved_and_configured_per_weight(cls, args, weights, stats):
    for chosen in weights:
        kw = {f"{chosen}_regularizer": "l2", f"{stats[0] if stats else chosen}_initializer": "he_normal"}
        layer = cls(**args, **kw)
        cfg = layer.get_config()
        for w in weights:
            expected = {"l1": 0.0, "l2": 0.01} if w == chosen else None
            assert cfg[f"{w}_regularizer"] == expected, (w, cfg)
            assert (getattr(layer, f"{w}_regularizer") is None) == (w != chosen)
        assert cfg[f"{stats[0] if stats else chosen}_initializer"] == "he_normal"
        for s in stats:
            assert f"{s}_regularizer" not in cfg
        again = cls(**{k: v for k, v in cfg.items() if k != "name"}).get_config()
        assert {k: v for k, v in again.items() if k != "name"} == {k: v for k, v in cfg.items() if k != "name"}
