"""The .keras layer table (nn/keras_layers.py): every layer kind is in it, its shapes are
what the layers build, and what it cannot represent is refused by name."""
import pytest

from keras_cases import ROUND_TRIP, layer_entry, refused, rewrite, small_file
from numbanet.nn import keras_layers
from numbanet.nn import layers as L
from numbanet.nn.models import load_model


def test_the_round_trip_models_hold_every_layer_kind():
    """Every Keras class of the table but InputLayer appears in a ROUND_TRIP model."""
    seen = set()
    for make in ROUND_TRIP.values():
        model = make()[0]
        for layer in model.layers:
            seen.add(type(layer).__name__)
            if isinstance(layer, L.Bidirectional):
                seen.add(type(layer.forward_layer).__name__)
    assert set(keras_layers.LAYERS) - {"InputLayer"} <= seen


def test_the_table_s_shapes_are_what_the_layers_build():
    """The shapes the loader checks a file against before building are the ones each layer
    then builds (for every layer of the round-trip models)."""
    for make in ROUND_TRIP.values():
        model = make()[0]
        for layer in model.layers:
            if isinstance(layer, L.InputLayer):
                continue
            for _, params in keras_layers.entry_of(layer).variables(layer, layer.input_shape):
                for param, shape in params:
                    assert tuple(layer.params[param].shape) == tuple(shape), (layer.name, param)
            names = [p for _, params in keras_layers.entry_of(layer).variables(layer, layer.input_shape)
                     for p, _ in params]
            assert names == list(layer.params), layer.name


@pytest.mark.parametrize("cls, match", [
    ("Conv3D", r"Keras layer class 'Conv3D' has no numbanet counterpart \(numbanet reads .*Dense"),
    ("Lambda", r"a Lambda layer holds Python code, which numbanet never runs from a file"),
    ("TorchModuleWrapper", r"a TorchModuleWrapper layer holds Python code"),
])
def test_unknown_and_code_layers_are_refused_by_class(tmp_path, cls, match):
    def edit(cfg):
        layer_entry(cfg, 1).update(class_name=cls)
        layer_entry(cfg, 1)["config"]["function"] = {"class_name": "__lambda__", "config": {"code": "print('pwned')"}}
    refused(rewrite(small_file(tmp_path), tmp_path / "x.keras", config=edit), match)


def test_custom_classes_and_unsupported_arguments_arerefused(tmp_path):
    good = small_file(tmp_path)
    refused(rewrite(good, tmp_path / "a.keras", config=lambda c: layer_entry(c, 1).update(
        registered_name="my_package>Dense", module="my_package")), r"a custom class \(module 'my_package'")
    refused(rewrite(good, tmp_path / "b.keras", config=lambda c: layer_entry(c, 1)["config"].update(
        kernel_constraint={"class_name": "MaxNorm", "config": {}})), r"layer 'dense.*' \(Dense\): "
                                                                     r"kernel_constraint=.*is not supported")
    refused(rewrite(good, tmp_path / "c.keras", config=lambda c: layer_entry(c, 1)["config"].update(
        activation="elu")), r"activation 'elu' has no numbanet kernel")
    refused(rewrite(good, tmp_path / "d.keras", config=lambda c: layer_entry(c, 1)["config"].update(
        trainable=False)), r"trainable=False is not supported")
    refused(rewrite(good, tmp_path / "e.keras", config=lambda c: layer_entry(c, 1)["config"].update(
        new_keras_argument=3)), r"argument new_keras_argument=3 has no numbanet counterpart")
    # a later Keras's argument left at null or false is accepted
    back = load_model(rewrite(good, tmp_path / "f.keras", config=lambda c: layer_entry(c, 1)["config"].update(
        new_keras_argument=None, other=False)))
    assert back.layers[0].units == 3
