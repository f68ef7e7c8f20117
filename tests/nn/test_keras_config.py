"""Keras's serialized objects in config.json (nn/keras_config.py): initializers,
regularizers, activations, dtype policies, the argument-by-argument reader, Keras's
snake_case group names."""
import pytest

from numbanet.nn import keras_config as kc

# As Keras 3.15 serializes them in config.json (copied from tests/nn/data/*.keras).
GLOROT = {"module": "keras.initializers", "class_name": "GlorotUniform",
          "config": {"seed": None, "input_axes": None, "output_axes": None}, "registered_name": None}
ORTHOGONAL = {"module": "keras.initializers", "class_name": "Orthogonal", "config": {"seed": None, "gain": 1.0},
              "registered_name": None}
EMBEDDING_UNIFORM = {"module": "keras.initializers", "class_name": "RandomUniform",
                     "config": {"seed": None, "minval": -0.05, "maxval": 0.05}, "registered_name": None}
ZEROS = {"module": "keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": None}


def test_keras_s_default_initializers_map_both_ways():
    for keras_obj, name in ((GLOROT, "glorot_uniform"), (ORTHOGONAL, "orthogonal"),
                            (EMBEDDING_UNIFORM, "random_uniform"), (ZEROS, "zeros")):
        assert kc.read_initializer("x", keras_obj) == name
        back = kc.write_initializer(name)
        assert back["class_name"] == keras_obj["class_name"]
        assert {k: v for k, v in back["config"].items()} == {k: v for k, v in keras_obj["config"].items()
                                                           if k not in ("input_axes", "output_axes")}
    # a seed only picks a draw that the file's weights replace
    assert kc.read_initializer("x", dict(GLOROT, config={"seed": 7})) == "glorot_uniform"
    assert kc.read_initializer("x", "he_normal") == "he_normal"


def test_initializers_numbanet_cannot_draw_are_refused():
    wide = dict(EMBEDDING_UNIFORM, config={"minval": -0.1, "maxval": 0.1, "seed": None})
    with pytest.raises(kc.Unsupported, match=r"layer 'e': initializer RandomUniform with minval=-0.1 has no numbanet"):
        kc.read_initializer("layer 'e'", wide)
    with pytest.raises(kc.Unsupported, match=r"initializer 'TruncatedNormal' has no numbanet counterpart \(numbanet has "
                                             r"GlorotNormal, GlorotUniform"):
        kc.read_initializer("x", {"class_name": "TruncatedNormal", "config": {}})


def test_regularizers_and_activations():
    assert kc.read_regularizer("x", None) is None
    for cls, cfg, want in (("L2", {"l2": 0.01}, (0.0, 0.01)), ("L1", {"l1": 0.5}, (0.5, 0.0)),
                           ("L1L2", {"l1": 0.1, "l2": 0.2}, (0.1, 0.2))):
        reg = kc.read_regularizer("x", {"class_name": cls, "config": cfg})
        assert (reg.l1, reg.l2) == want
        assert kc.write_regularizer(reg)["config"] == {"l1": want[0], "l2": want[1]}
    with pytest.raises(kc.Unsupported, match="regularizer .*OrthogonalRegularizer.* has no numbanet counterpart"):
        kc.read_regularizer("x", {"class_name": "OrthogonalRegularizer", "config": {}})
    assert kc.read_activation("x", "swish") == "silu"
    assert kc.read_activation("x", {"class_name": "function", "config": "relu"}) == "relu"
    with pytest.raises(kc.Unsupported, match="x: activation 'selu' has no numbanet kernel"):
        kc.read_activation("x", "selu")
    with pytest.raises(kc.Unsupported, match="takes a parameter other than its default"):
        kc.write_activation("x", {"name": "leaky_relu", "negative_slope": 0.1})


def test_dtype_policies():
    assert kc.policy_name("x", kc.policy("float64")) == "float64"
    assert kc.policy_name("x", "float32") == "float32" and kc.policy_name("x", None) is None
    with pytest.raises(kc.Unsupported, match="dtype policy .*QuantizedDTypePolicy.* is not supported"):
        kc.policy_name("x", {"class_name": "QuantizedDTypePolicy", "config": {"name": "int8_from_float32"}})


def test_the_config_reader_refuses_what_it_leaves_over():
    c = kc.KerasConfig({"name": "d", "units": 3, "seed": 5, "later_option": None, "flag": False, "groups": 1},
                       "layer 'd'")
    assert c.take("units") == 3 and c.only("groups", 1) == 1 and c.take("absent", 9) == 9
    c.finish()   # seed, null and false leftovers are fine
    c = kc.KerasConfig({"units": 3, "dilation_rate": [2, 2]}, "layer 'c'")
    with pytest.raises(kc.Unsupported, match=r"layer 'c': dilation_rate=\(2, 2\) is not supported \(numbanet: "
                                             r"\(1, 1\)\)"):
        c.only("dilation_rate", (1, 1))
    c = kc.KerasConfig({"units": 3, "trainable": False}, "layer 'c'")
    c.take("units")
    with pytest.raises(kc.Unsupported, match="trainable=False is not supported"):
        c.finish()
    with pytest.raises(kc.Unsupported, match="layer 'c': the config has no 'units'"):
        kc.KerasConfig({}, "layer 'c'").take("units")


def test_snake_case_names_groups_as_keras_does():
    # The group names in the Keras-written files of tests/nn/data.
    for cls, group in (("Conv2D", "conv2d"), ("MaxPooling2D", "max_pooling2d"), ("SimpleRNN", "simple_rnn"),
                       ("GlobalAveragePooling1D", "global_average_pooling1d"), ("LSTM", "lstm"),
                       ("MultiHeadAttention", "multi_head_attention"), ("LayerNormalization", "layer_normalization"),
                       ("InputLayer", "input_layer")):
        assert kc.snake_case(cls) == group


def test_map_tree_replaces_inside_lists_and_dicts():
    tree = {"a": [1, {"b": 2}], "c": 3}
    assert kc.map_tree(tree, lambda v: v * 10 if isinstance(v, int) else kc.KEEP) == {"a": [10, {"b": 20}], "c": 30}
