"""A .keras file's compile record and optimizer variables (nn/keras_compile.py)."""
import os
import zipfile

import h5py
import numpy as np
import pytest

from keras_cases import DATA, load_keras_made, refused, rewrite, small_file
from numbanet.nn.models import load_model


def test_keras_made_optimizer_slots_are_the_filesarrays():
    """Adam's m and v for each weight, in get_weights order, are the h5 file's optimizer
    variables 2, 3, 4, ... (momentum then velocity per weight), read here by h5py."""
    model, _ = load_keras_made("text_lstm")
    with zipfile.ZipFile(os.path.join(DATA, "text_lstm.keras")) as z, z.open("model.weights.h5") as f, \
            h5py.File(f, "r") as h:
        saved = [h[f"optimizer/vars/{i}"][()] for i in range(len(h["optimizer/vars"]))]
    assert int(saved[0]) == model.optimizer.iterations == 2
    state = model.optimizer.get_state(model.be)
    for i, (key, _, _) in enumerate(model._params()):
        np.testing.assert_array_equal(state[f"{key}/m"], saved[2 + 2 * i])
        np.testing.assert_array_equal(state[f"{key}/v"], saved[3 + 2 * i])


def test_keras_made_rmsprop_slots_and_batch_norm_statistics_are_the_files_arrays():
    """cnn_bn.keras (a centered RMSprop with momentum): Keras's optimizer variables are the
    velocities of every trainable weight, then their momentums, then their average
    gradients, in get_weights order; BatchNormalization's moving statistics have none."""
    model, _ = load_keras_made("cnn_bn")
    with zipfile.ZipFile(os.path.join(DATA, "cnn_bn.keras")) as z, z.open("model.weights.h5") as f, \
            h5py.File(f, "r") as h:
        saved = [h[f"optimizer/vars/{i}"][()] for i in range(len(h["optimizer/vars"]))]
    trainable = model._trainable_params()
    assert len(trainable) == len(model._params()) - 2
    assert len(saved) == 2 + 3 * len(trainable)
    state = model.optimizer.get_state(model.be)
    assert not any("moving" in k for k in state)
    for g, slot in enumerate(("velocity", "momentum", "average_gradient")):
        for i, (key, _, _) in enumerate(trainable):
            np.testing.assert_array_equal(state[f"{key}/{slot}"], saved[2 + g * len(trainable) + i])


def test_a_compile_record_numbanet_cannot_honour_loads_the_model_uncompiled(tmp_path):
    good = small_file(tmp_path)

    def edit(cfg):
        cfg["compile_config"]["optimizer"] = {"module": "keras.optimizers", "class_name": "Nadam",
                                              "config": {"learning_rate": 0.001}, "registered_name": None}
    path = rewrite(good, tmp_path / "a.keras", config=edit)
    with pytest.warns(UserWarning, match=r"a.keras is loaded uncompiled: optimizer 'Nadam' has no numbanet "
                                         r"counterpart.*call model.compile\(\) before training"):
        model = load_model(path)
    assert not model.compiled and model.layers[0].units == 3
    edit2 = lambda c: c["compile_config"]["optimizer"]["config"].update(amsgrad=True)  # noqa: E731
    with pytest.warns(UserWarning, match=r"optimizer Adam: amsgrad=True is not supported"):
        assert not load_model(rewrite(good, tmp_path / "b.keras", config=edit2)).compiled


def test_optimizer_variables_of_the_wrong_shape_arerefused(tmp_path):
    good = small_file(tmp_path)

    def edit(h):
        del h["optimizer/vars/2"]
        h.create_dataset("optimizer/vars/2", data=np.zeros((9, 9), np.float32))
    refused(rewrite(good, tmp_path / "a.keras", weights=edit),
             r"'optimizer/vars/2' has shape \(9, 9\) but the architecture expects \(4, 3\)")
