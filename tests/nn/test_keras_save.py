"""Writing .keras files (nn/keras_save.py): Keras's layout and values, the extension picks
the format, refusals, an atomic write."""
import json
import os
import sys
import zipfile

import h5py
import numpy as np
import pytest

from keras_cases import DATA, KERAS_MADE, cnn, h5_layout, load_keras_made
from numbanet.nn import keras_layers, keras_save
from numbanet.nn import layers as L
from numbanet.nn.models import Sequential, load_model


@pytest.mark.parametrize("name", sorted(KERAS_MADE))
def test_numbanet_writes_keras_s_layout_and_values(tmp_path, name):
    """A Keras file loaded and saved again by numbanet: the same weight datasets (paths,
    shapes, dtypes) as Keras wrote, the same values in them, the same optimizer variable
    count, and every layer's config value numbanet writes equal to Keras's own."""
    model, _ = load_keras_made(name)
    src = os.path.join(DATA, f"{name}.keras")
    out = tmp_path / "again.keras"
    model.save(out)
    assert h5_layout(out) == h5_layout(src)
    # "recurrent"'s optimizer never stepped: Keras saved its 2 scalars, numbanet writes the
    # zero slots Keras builds at load (2 per weight for Adam), so Keras loads them silently.
    n_opt = 2 + 2 * len(model.get_weights()) if name == "recurrent" else len(h5_layout(src, "optimizer/"))
    assert len(h5_layout(out, "optimizer/")) == n_opt
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(out) as b, a.open("model.weights.h5") as fa, \
            b.open("model.weights.h5") as fb, h5py.File(fa, "r") as ha, h5py.File(fb, "r") as hb:
        for path in h5_layout(src):
            np.testing.assert_array_equal(ha[path][()], hb[path][()])
        theirs = json.loads(a.read("config.json"))["config"]["layers"]
        ours = json.loads(b.read("config.json"))["config"]["layers"]
        assert [m.namelist() for m in (b,)] == [["metadata.json", "config.json", "model.weights.h5"]]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in b.infolist())
    # Keras's NotEqual padding-mask node: numbanet writes none; Keras makes it again when it
    # calls the Embedding(mask_zero=True) at load (a by-hand check with Keras, not a test
    # dependency: the loaded model skips the padded steps).
    theirs = {e["config"]["name"]: e for e in theirs if e["class_name"] not in ("InputLayer", "NotEqual")}
    ours = {e["config"]["name"]: e for e in ours if e["class_name"] != "InputLayer"}
    assert theirs.keys() == ours.keys()

    def same(a, b, where):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in set(a) & set(b) - {"shared_object_id", "dtype", "registered_name", "module"}:
                same(a[k], b[k], f"{where}.{k}")
        elif isinstance(a, float) or isinstance(b, float):
            assert np.float32(a) == np.float32(b), where   # Keras keeps some floats in float32
        else:
            assert a == b, where

    for lname, e in theirs.items():
        assert ours[lname]["class_name"] == e["class_name"]
        same(e["config"], ours[lname]["config"], lname)


def test_npz_stays_the_default_and_the_extension_picks(tmp_path):
    model, x, y = cnn()
    model.save(tmp_path / "m.npz")
    model.save(tmp_path / "m.KERAS")
    with zipfile.ZipFile(tmp_path / "m.npz") as z:
        assert "config.npy" in z.namelist()
    with zipfile.ZipFile(tmp_path / "m.KERAS") as z:
        assert z.namelist() == ["metadata.json", "config.json", "model.weights.h5"]
        assert json.loads(z.read("metadata.json"))["keras_version"] == keras_save.KERAS_VERSION
    np.testing.assert_array_equal(load_model(tmp_path / "m.KERAS").predict(x), model.predict(x))


def test_saving_refuses_what_keras_cannot_name(tmp_path):
    m = Sequential([L.Dense(2, activation={"name": "gelu", "approximate": True}, input_shape=(3,))])
    with pytest.raises(keras_layers.Unsupported, match=r"layer 'dense.*' \(Dense\): activation .*gelu.*takes a "
                                                       r"parameter other than its default"):
        m.save(tmp_path / "m.keras")
    with pytest.raises(ValueError, match="save: the model is not built yet"):
        Sequential([L.Dense(2)]).save(tmp_path / "n.keras")
    assert not os.listdir(tmp_path)


def test_a_failed_save_leaves_the_previous_file(tmp_path, monkeypatch):
    model, x, _ = cnn()
    path = tmp_path / "m.keras"
    model.save(path)
    before = path.read_bytes()

    def broken(fileobj, objects):
        fileobj.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(keras_save.keras_h5, "write_weights", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.keras"]


def test_without_h5py_the_error_says_how_to_get_it(tmp_path, monkeypatch):
    model, _, _ = cnn()
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"pip install 'numbanet\[keras\]'"):
        model.save(tmp_path / "m.keras")
