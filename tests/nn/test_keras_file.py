""".keras files: files real Keras 3 wrote (tests/nn/data/make_keras_files.py) load and
predict as Keras did; every layer kind round-trips through numbanet's writer; the writer's
layout is Keras's; hostile files get one clear error each."""
import json
import os
import shutil
import sys
import time
import warnings
import zipfile

import h5py
import numpy as np
import pytest

from numbanet import nn
from numbanet.nn import keras_file, keras_layers, saving
from numbanet.nn import layers as L
from numbanet.nn.models import Model, Sequential, load_model

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _arrays(prefix):
    """<prefix>.npy, or <prefix>0.npy, <prefix>1.npy, ... as a list."""
    one = os.path.join(DATA, f"{prefix}.npy")
    if os.path.exists(one):
        return [np.load(one, allow_pickle=False)]
    out, i = [], 0
    while os.path.exists(os.path.join(DATA, f"{prefix}{i}.npy")):
        out.append(np.load(os.path.join(DATA, f"{prefix}{i}.npy"), allow_pickle=False))
        i += 1
    return out


def _load_keras_made(name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(os.path.join(DATA, f"{name}.keras"))
    return model, [str(w.message) for w in caught]


def _flat(weights):
    return np.concatenate([np.asarray(w).ravel() for w in weights])


def _h5_layout(path, prefix="layers/"):
    """{dataset path: (shape, dtype)} of a .keras file's weights under prefix."""
    with zipfile.ZipFile(path) as z, z.open("model.weights.h5") as f, h5py.File(f, "r") as h:
        out = {}
        h.visititems(lambda n, o: out.__setitem__(n, (o.shape, o.dtype.str)) if isinstance(o, h5py.Dataset)
                     and n.startswith(prefix) else None)
    return out


# --------------------------------------------------------------------------- files real Keras wrote
KERAS_MADE = {
    # name: (numbanet model class, optimizer class, optimizer iterations, losses, metrics per output)
    "text_lstm": (Model, nn.optimizers.Adam, 2, ["sparse_categorical_crossentropy"], [["accuracy"]]),
    "transformer": (Model, nn.optimizers.AdamW, 2, ["sparse_categorical_crossentropy"], [["accuracy"]]),
    "cnn": (Sequential, nn.optimizers.SGD, 2, ["categorical_crossentropy"], [["accuracy"]]),
    "recurrent": (Model, nn.optimizers.Adam, 0, ["mean_squared_error", "binary_crossentropy"], [[], ["accuracy"]]),
}


@pytest.mark.simulator
@pytest.mark.parametrize("name", sorted(KERAS_MADE))
def test_files_keras_wrote_predict_as_keras_did(name):
    """Keras's own predictions for the saved input, within 1e-5, and the compile record:
    the same optimizer class and step count, losses and metrics."""
    cls, opt, iterations, losses, metrics = KERAS_MADE[name]
    model, caught = _load_keras_made(name)
    xs, want = _arrays(f"{name}_x"), _arrays(f"{name}_y")
    got = model.predict(xs if len(xs) > 1 else xs[0])
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)
    assert type(model) is cls and model.compiled and type(model.optimizer) is opt
    assert model.optimizer.iterations == iterations
    assert [l.name for l in model._losses] == losses and model._metric_names == metrics
    # "recurrent" was compiled but never trained: Keras saved an optimizer without slots,
    # which numbanet (as Keras) skips with a warning; the others load theirs silently.
    assert bool(caught) == (name == "recurrent")
    if caught:
        assert "the optimizer's 2 saved variables do not match" in caught[0]


@pytest.mark.parametrize("name", ["text_lstm", "transformer"])
def test_a_step_from_a_keras_file_lands_where_keras_s_step_did(name):
    """The optimizer state (Adam's moments, AdamW's decay, the step count) comes over:
    one train_on_batch from the loaded file gives Keras's next weights. A step moves them by
    about 1e-2; Adam divides by sqrt(v), so float32 differences in the gradients show at
    1e-6 to 1e-5 of that, and a slot in the wrong place would show at 1e-2."""
    model, _ = _load_keras_made(name)
    start = _flat(model.get_weights())
    model.train_on_batch(_arrays(f"{name}_x")[0], _arrays(f"{name}_t")[0])
    want = _arrays(f"{name}_next")[0]
    assert np.abs(want - start).max() > 5e-3
    np.testing.assert_allclose(_flat(model.get_weights()), want, rtol=0, atol=3e-5)


def test_keras_made_optimizer_slots_are_the_files_arrays():
    """Adam's m and v for each weight, in get_weights order, are the h5 file's optimizer
    variables 2, 3, 4, ... (momentum then velocity per weight), read here by h5py."""
    model, _ = _load_keras_made("text_lstm")
    with zipfile.ZipFile(os.path.join(DATA, "text_lstm.keras")) as z, z.open("model.weights.h5") as f, \
            h5py.File(f, "r") as h:
        saved = [h[f"optimizer/vars/{i}"][()] for i in range(len(h["optimizer/vars"]))]
    assert int(saved[0]) == model.optimizer.iterations == 2
    state = model.optimizer.get_state(model.be)
    for i, (key, _, _) in enumerate(model._params()):
        np.testing.assert_array_equal(state[f"{key}/m"], saved[2 + 2 * i])
        np.testing.assert_array_equal(state[f"{key}/v"], saved[3 + 2 * i])


@pytest.mark.parametrize("name", sorted(KERAS_MADE))
def test_numbanet_writes_keras_s_layout_and_values(tmp_path, name):
    """A Keras file loaded and saved again by numbanet: the same weight datasets (paths,
    shapes, dtypes) as Keras wrote, the same values in them, the same optimizer variable
    count, and every layer's config value numbanet writes equal to Keras's own."""
    model, _ = _load_keras_made(name)
    src = os.path.join(DATA, f"{name}.keras")
    out = tmp_path / "again.keras"
    model.save(out)
    assert _h5_layout(out) == _h5_layout(src)
    # "recurrent"'s optimizer never stepped: Keras saved its 2 scalars, numbanet writes the
    # zero slots Keras builds at load (2 per weight for Adam), so Keras loads them silently.
    n_opt = 2 + 2 * len(model.get_weights()) if name == "recurrent" else len(_h5_layout(src, "optimizer/"))
    assert len(_h5_layout(out, "optimizer/")) == n_opt
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(out) as b, a.open("model.weights.h5") as fa, \
            b.open("model.weights.h5") as fb, h5py.File(fa, "r") as ha, h5py.File(fb, "r") as hb:
        for path in _h5_layout(src):
            np.testing.assert_array_equal(ha[path][()], hb[path][()])
        theirs = json.loads(a.read("config.json"))["config"]["layers"]
        ours = json.loads(b.read("config.json"))["config"]["layers"]
        assert [m.namelist() for m in (b,)] == [["metadata.json", "config.json", "model.weights.h5"]]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in b.infolist())
    theirs = {e["config"]["name"]: e for e in theirs if e["class_name"] != "InputLayer"}
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


# --------------------------------------------------------------------------- numbanet's own round trip
def _cnn():
    m = Sequential([L.Conv2D(4, (3, 3), activation="relu", input_shape=(8, 8, 1),
                             kernel_regularizer=nn.regularizers.l2(0.01)), L.MaxPooling2D(),
                    L.Conv2D(3, (2, 2), padding="same", activation="sigmoid", kernel_initializer="he_normal"),
                    L.AveragePooling2D(padding="same"), L.Flatten(), L.Dropout(0.3),
                    L.Dense(5, activation="softmax")])
    m.compile(nn.optimizers.SGD(0.05, momentum=0.9, nesterov=True), "categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    return m, rng.uniform(0, 1, (6, 8, 8, 1)).astype("float32"), rng.integers(0, 5, 6)


def _transformer():
    tok = L.Input((6,), dtype="int32")
    e = L.Embedding(20, 8, embeddings_regularizer=nn.regularizers.l1_l2(0.001, 0.002))(tok)
    e = L.Add()([e, L.PositionEmbedding(8)(e)])
    a = L.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=5, output_shape=8)(e, e)
    h = L.LayerNormalization()(L.Add()([e, a]))
    q = L.MultiHeadAttention(num_heads=1, key_dim=4, use_bias=False)(h, e, key=h, use_causal_mask=True)
    h2 = L.LayerNormalization(center=False, epsilon=1e-5)(L.Add()([h, q]))
    out = L.Dense(3, activation="softmax")(L.GlobalAveragePooling1D()(L.Dense(8, activation="gelu")(h2)))
    m = Model(tok, out)
    m.compile(nn.optimizers.AdamW(nn.optimizers.schedules.CosineDecay(0.01, 10, warmup_target=0.02,
                                                                        warmup_steps=2), clipnorm=1.0),
              "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(1)
    return m, rng.integers(0, 20, (5, 6)).astype("int32"), rng.integers(0, 3, 5)


def _recurrent():
    seq, img = L.Input((5, 3)), L.Input((4, 4, 2))
    a = L.SimpleRNN(4, return_sequences=True, activation="relu")(seq)
    b = L.GRU(4, return_sequences=True)(a)
    c = L.Bidirectional(L.LSTM(3, return_sequences=True, unit_forget_bias=False))(b)
    _, h, s = L.LSTM(2, return_state=True)(c)
    d = L.LSTM(2, return_sequences=True, go_backwards=True)(c, initial_state=[h, s])
    e = L.Bidirectional(L.GRU(2), merge_mode="ave", backward_layer=L.GRU(2, go_backwards=True))(d)
    g = L.GlobalAveragePooling2D(keepdims=False)(L.Conv2D(3, (2, 2), padding="same", strides=(2, 1))(img))
    p = L.Permute((2, 1))(L.Reshape((2, 4))(L.Flatten()(L.MaxPooling2D()(img))))
    f = L.Concatenate()([e, g, L.GlobalAveragePooling1D()(p)])
    out1 = L.Activation("tanh")(L.Dense(3)(f))
    out2 = L.Dense(2, name="flag")(f)
    m = Model([seq, img], [out1, out2])
    m.compile(nn.optimizers.Adam(0.01, beta_1=0.8, global_clipnorm=2.0),
              ["mse", nn.losses.BinaryCrossentropy(from_logits=True)], loss_weights=[1.0, 0.5],
              metrics=[[], ["binary_accuracy"]])
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((3, 5, 3)).astype("float32"), rng.standard_normal((3, 4, 4, 2)).astype("float32")]
    return m, xs, [rng.standard_normal((3, 3)).astype("float32"), rng.integers(0, 2, (3, 2)).astype("float32")]


def _float64_uncompiled():
    m = Sequential([L.Dense(4, activation="silu", input_shape=(3,)), L.Dense(2, activation="leaky_relu")],
                   dtype="float64")
    return m, np.random.default_rng(3).standard_normal((4, 3)), None


ROUND_TRIP = {"cnn": _cnn, "transformer": _transformer, "recurrent": _recurrent, "float64": _float64_uncompiled}


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


@pytest.mark.simulator
@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_round_trip_through_numbanet_s_writer(tmp_path, name, nn_small):
    """Saved and loaded: the same class, layer names, weights and predictions (bit for bit:
    the same kernels on the same weights), the same compile record and optimizer state, and
    one more training step lands on the same weights as the original's."""
    model, x, y = ROUND_TRIP[name]()
    if y is not None:
        # Under the simulator the two steps run on the cpu (minutes on the simulated gpu);
        # the weights and optimizer state then move back to the gpu, which saves and loads.
        be = model.be
        model.to("cpu" if nn_small else be)
        model.fit(x, y, batch_size=len(y[0]) if isinstance(y, list) else len(y), epochs=2, verbose=0)
        model.to(be)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    back = load_model(path)
    assert type(back) is type(model) and [l.name for l in back.layers] == [l.name for l in model.layers]
    for a, b in zip(back.get_weights(), model.get_weights()):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    got, want = back.predict(x), model.predict(x)
    for g, w in zip(got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]):
        np.testing.assert_array_equal(g, w)
    assert back.compiled == model.compiled
    if y is None:
        return
    assert type(back.optimizer) is type(model.optimizer)
    assert back.optimizer.get_config() == model.optimizer.get_config()
    assert back.optimizer.iterations == model.optimizer.iterations == 2
    assert [(type(l), l.from_logits) for l in back._losses] == [(type(l), l.from_logits) for l in model._losses]
    assert back._metric_names == model._metric_names and back._loss_weights == model._loss_weights
    mine, theirs = model.optimizer.get_state(model.be), back.optimizer.get_state(back.be)
    assert mine.keys() == theirs.keys()
    for k in mine:
        np.testing.assert_array_equal(mine[k], theirs[k])
    if name != "cnn" and not nn_small:   # cnn: its Dropout draws a fresh mask per model
        model.train_on_batch(x, y)
        back.train_on_batch(x, y)
        for a, b in zip(back.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_npz_stays_the_default_and_the_extension_picks(tmp_path):
    model, x, y = _cnn()
    model.save(tmp_path / "m.npz")
    model.save(tmp_path / "m.KERAS")
    with zipfile.ZipFile(tmp_path / "m.npz") as z:
        assert "config.npy" in z.namelist()
    with zipfile.ZipFile(tmp_path / "m.KERAS") as z:
        assert z.namelist() == ["metadata.json", "config.json", "model.weights.h5"]
        assert json.loads(z.read("metadata.json"))["keras_version"] == keras_file.KERAS_VERSION
    np.testing.assert_array_equal(load_model(tmp_path / "m.KERAS").predict(x), model.predict(x))


def test_a_sequential_of_token_ids_loads_as_the_same_functional_stack():
    model, _ = _load_keras_made("text_lstm")
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "Embedding", "LSTM", "Dense"]
    assert model.inputs[0].dtype == "int32"


# --------------------------------------------------------------------------- refusals when saving
def test_saving_refuses_what_keras_cannot_name(tmp_path):
    m = Sequential([L.Dense(2, activation={"name": "gelu", "approximate": True}, input_shape=(3,))])
    with pytest.raises(keras_layers.Unsupported, match=r"layer 'dense.*' \(Dense\): activation .*gelu.*takes a "
                                                       r"parameter other than its default"):
        m.save(tmp_path / "m.keras")
    with pytest.raises(ValueError, match="save: the model is not built yet"):
        Sequential([L.Dense(2)]).save(tmp_path / "n.keras")
    assert not os.listdir(tmp_path)


def test_a_failed_save_leaves_the_previous_file(tmp_path, monkeypatch):
    model, x, _ = _cnn()
    path = tmp_path / "m.keras"
    model.save(path)
    before = path.read_bytes()

    def broken(fileobj, objects):
        fileobj.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(keras_file.keras_h5, "write_weights", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.keras"]


def test_without_h5py_the_error_says_how_to_get_it(tmp_path, monkeypatch):
    model, _, _ = _cnn()
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"pip install 'numbanet\[keras\]'"):
        model.save(tmp_path / "m.keras")


# --------------------------------------------------------------------------- hostile files
def _small(tmp_path, compiled=True):
    m = Sequential([L.Dense(3, input_shape=(4,)), L.Dense(2, activation="softmax")])
    if compiled:
        m.compile("adam", "categorical_crossentropy")
        m.fit(np.zeros((2, 4), "float32"), np.array([0, 1]), verbose=0)
    path = tmp_path / "good.keras"
    m.save(path)
    return path


def _rewrite(src, dst, config=None, weights=None, extra=None, drop=()):
    """A copy of the .keras file src with config.json edited by config(dict) and/or
    model.weights.h5 edited by weights(h5py.File), members dropped or added."""
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist() if n not in drop}
    if config is not None:
        cfg = json.loads(members["config.json"])
        config(cfg)
        members["config.json"] = json.dumps(cfg).encode()
    if weights is not None:
        tmp = str(dst) + ".h5"
        with open(tmp, "wb") as f:
            f.write(members["model.weights.h5"])
        with h5py.File(tmp, "a") as h:
            weights(h)
        with open(tmp, "rb") as f:
            members["model.weights.h5"] = f.read()
        os.remove(tmp)
    members.update(extra or {})
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    return dst


def _layer(cfg, i):
    return cfg["config"]["layers"][i]


def _refused(path, match):
    with pytest.raises(saving.InvalidModelFile, match=match):
        load_model(path)


def test_not_a_zip_and_missing_or_broken_members(tmp_path):
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"PK\x03\x04 this is not really a zip file")
    _refused(junk, r"junk.keras .*cannot be read as a .keras archive")
    good = _small(tmp_path)
    _refused(_rewrite(good, tmp_path / "a.keras", drop=["config.json"]), "it has no config.json")
    _refused(_rewrite(good, tmp_path / "b.keras", drop=["model.weights.h5"]), "it has no model.weights.h5")
    _refused(_rewrite(good, tmp_path / "c.keras", extra={"config.json": b"{not json"}),
             "its config.json cannot be read as JSON")
    _refused(_rewrite(good, tmp_path / "d.keras", extra={"model.weights.h5": b"\x89HDF\r\n junk"}),
             "model.weights.h5 is not an HDF5 file")
    _refused(_rewrite(good, tmp_path / "e.keras", config=lambda c: c.update(class_name="MyModel")),
             "its model class is 'MyModel'; numbanet reads Sequential and Functional models")


def test_a_config_above_the_limit_is_not_read(tmp_path, monkeypatch):
    good = _small(tmp_path)
    with zipfile.ZipFile(good) as z:
        size = z.getinfo("config.json").file_size
    monkeypatch.setattr(saving, "MAX_CONFIG_BYTES", size - 1)
    _refused(good, f"its config.json is {size} bytes, more than the {size - 1} allowed")


@pytest.mark.parametrize("cls, match", [
    ("Conv3D", r"Keras layer class 'Conv3D' has no numbanet counterpart \(numbanet reads .*Dense"),
    ("Lambda", r"a Lambda layer holds Python code, which numbanet never runs from a file"),
    ("TorchModuleWrapper", r"a TorchModuleWrapper layer holds Python code"),
])
def test_unknown_and_code_layers_are_refused_by_class(tmp_path, cls, match):
    def edit(cfg):
        _layer(cfg, 1).update(class_name=cls)
        _layer(cfg, 1)["config"]["function"] = {"class_name": "__lambda__", "config": {"code": "print('pwned')"}}
    _refused(_rewrite(_small(tmp_path), tmp_path / "x.keras", config=edit), match)


def test_custom_classes_and_unsupported_arguments_are_refused(tmp_path):
    good = _small(tmp_path)
    _refused(_rewrite(good, tmp_path / "a.keras", config=lambda c: _layer(c, 1).update(
        registered_name="my_package>Dense", module="my_package")), r"a custom class \(module 'my_package'")
    _refused(_rewrite(good, tmp_path / "b.keras", config=lambda c: _layer(c, 1)["config"].update(
        kernel_constraint={"class_name": "MaxNorm", "config": {}})), r"layer 'dense.*' \(Dense\): "
                                                                     r"kernel_constraint=.*is not supported")
    _refused(_rewrite(good, tmp_path / "c.keras", config=lambda c: _layer(c, 1)["config"].update(
        activation="elu")), r"activation 'elu' has no numbanet kernel")
    _refused(_rewrite(good, tmp_path / "d.keras", config=lambda c: _layer(c, 1)["config"].update(
        trainable=False)), r"trainable=False is not supported")
    _refused(_rewrite(good, tmp_path / "e.keras", config=lambda c: _layer(c, 1)["config"].update(
        new_keras_argument=3)), r"argument new_keras_argument=3 has no numbanet counterpart")
    # a later Keras's argument left at null or false is accepted
    back = load_model(_rewrite(good, tmp_path / "f.keras", config=lambda c: _layer(c, 1)["config"].update(
        new_keras_argument=None, other=False)))
    assert back.layers[0].units == 3


def test_huge_shapes_in_the_config_are_refused_before_anything_is_allocated(tmp_path):
    good = _small(tmp_path)
    start = time.monotonic()
    _refused(_rewrite(good, tmp_path / "a.keras", config=lambda c: _layer(c, 1)["config"].update(units=10 ** 12)),
             r"its architecture declares \d{14} bytes of weights, more than the \d+ numbanet reads")
    # 2.8 GB of weights, within the limit: the file's 48-byte kernel does not match, and that
    # is found from the HDF5 headers, before the model (and its 2.8 GB) is built.
    _refused(_rewrite(good, tmp_path / "b.keras", config=lambda c: _layer(c, 1)["config"].update(units=10 ** 8)),
             r"layers/dense/vars/0.*has shape \(4, 3\) and dtype float32; the architecture expects "
             r"\(4, 100000000\) float32")
    assert time.monotonic() - start < 5.0


def test_a_weights_member_larger_than_the_architecture_allows_is_not_copied(tmp_path):
    good = _small(tmp_path)
    _refused(_rewrite(good, tmp_path / "a.keras", weights=lambda h: h.create_dataset(
        "padding", data=np.zeros(1 << 19))), r"its model.weights.h5 is \d+ bytes, more than the \d+ that its "
                                         r"architecture's 92 bytes of weights")


def test_hdf5_objects_that_reach_outside_or_are_not_plain_data_are_refused(tmp_path):
    good = _small(tmp_path)
    cases = {
        "external": (lambda h: h.__setitem__("layers/dense/vars/extra", h5py.ExternalLink("/etc/passwd", "/x")),
                     r"'layers/dense/vars/extra' is an external link \(to '/etc/passwd'\)"),
        "soft": (lambda h: h.__setitem__("layers/dense/alias", h5py.SoftLink("/layers/dense_1")),
                 r"'layers/dense/alias' is a SoftLink; only plain groups and datasets are read"),
        "float16": (lambda h: (h.__delitem__("layers/dense/vars/1"),
                               h.create_dataset("layers/dense/vars/1", data=np.zeros(3, np.float16))),
                    r"dataset 'layers/dense/vars/1' has dtype float16"),
        "strings": (lambda h: h.create_dataset("layers/dense/note", data="text"), r"'layers/dense/note' has dtype"),
        "unwritten": (lambda h: h.create_dataset("layers/dense/huge", shape=(10 ** 6, 10 ** 6), dtype="f4"),
                      r"'layers/dense/huge' declares shape \(1000000, 1000000\) \(4000000000000 bytes\) but stores 0"),
        "chunked": (lambda h: h.create_dataset("layers/dense/big", shape=(10 ** 5,), dtype="f4", compression="gzip",
                                               data=np.zeros(10 ** 5, "f4")),
                    r"'layers/dense/big' is chunked or compressed"),
        "wrong shape": (lambda h: (h.__delitem__("layers/dense/vars/0"),
                                   h.create_dataset("layers/dense/vars/0", data=np.zeros((3, 4), np.float32))),
                        r"'layers/dense/vars/0' \(layer 'dense.*' kernel\) has shape \(3, 4\) and dtype float32; "
                        r"the architecture expects \(4, 3\)"),
        "missing": (lambda h: h.__delitem__("layers/dense/vars/1"),
                    r"holds 1 variables for layer 'dense.*' at 'layers/dense', its architecture 2"),
        "gap": (lambda h: h.move("layers/dense/vars/1", "layers/dense/vars/7"),
                r"'layers/dense/vars' holds variables \['0', '7'\]; expected '0', '1', ..."),
    }
    for name, (edit, match) in cases.items():
        _refused(_rewrite(good, tmp_path / f"{name.replace(' ', '_')}.keras", weights=edit), match)


def test_a_virtual_dataset_is_refused(tmp_path):
    good = _small(tmp_path)

    def edit(h):
        layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
        layout[:] = h5py.VirtualSource("/etc/hostname", "data", shape=(4,))
        h.create_virtual_dataset("layers/dense/virtual", layout)
    _refused(_rewrite(good, tmp_path / "v.keras", weights=edit), r"'layers/dense/virtual' is virtual")


def test_a_compile_record_numbanet_cannot_honour_loads_the_model_uncompiled(tmp_path):
    good = _small(tmp_path)

    def edit(cfg):
        cfg["compile_config"]["optimizer"] = {"module": "keras.optimizers", "class_name": "Nadam",
                                              "config": {"learning_rate": 0.001}, "registered_name": None}
    path = _rewrite(good, tmp_path / "a.keras", config=edit)
    with pytest.warns(UserWarning, match=r"a.keras is loaded uncompiled: optimizer 'Nadam' has no numbanet "
                                         r"counterpart.*call model.compile\(\) before training"):
        model = load_model(path)
    assert not model.compiled and model.layers[0].units == 3
    edit2 = lambda c: c["compile_config"]["optimizer"]["config"].update(amsgrad=True)  # noqa: E731
    with pytest.warns(UserWarning, match=r"optimizer Adam: amsgrad=True is not supported"):
        assert not load_model(_rewrite(good, tmp_path / "b.keras", config=edit2)).compiled


def test_optimizer_variables_of_the_wrong_shape_are_refused(tmp_path):
    good = _small(tmp_path)

    def edit(h):
        del h["optimizer/vars/2"]
        h.create_dataset("optimizer/vars/2", data=np.zeros((9, 9), np.float32))
    _refused(_rewrite(good, tmp_path / "a.keras", weights=edit),
             r"'optimizer/vars/2' has shape \(9, 9\) but the architecture expects \(4, 3\)")


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
