"""One-file saving: round trip, bit-identical resumed training, corrupt files, atomic writes."""
import json
import os
import zipfile

import numpy as np
import pytest

from numbanet import nn
from numbanet.nn import saving, utils
from numbanet.nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from numbanet.nn.models import Sequential, load_model


def _model(opt="adam"):
    m = Sequential([Conv2D(2, 3, activation="relu", input_shape=(6, 6, 1),
                           kernel_regularizer=nn.regularizers.l2(0.01)),
                    MaxPooling2D(2), Flatten(), Dropout(0.2), Dense(3, activation="softmax")])
    m.compile(opt, "categorical_crossentropy", metrics=["accuracy"])
    return m


def _data():
    rng = np.random.default_rng(0)
    return rng.random((24, 6, 6, 1)).astype("float32"), rng.integers(0, 3, 24)


@pytest.mark.simulator
def test_save_load_predict_identical(tmp_path):
    m = _model()
    x, y = _data()
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "model.npz"
    m.save(path)
    m2 = load_model(path)
    np.testing.assert_array_equal(m2.predict(x), m.predict(x))
    assert [type(l).__name__ for l in m2.layers] == [type(l).__name__ for l in m.layers]
    assert m2.layers[0].kernel_regularizer.l2 == 0.01 and m2.layers[3].rate == 0.2
    assert m2.evaluate(x, y, verbose=0) == m.evaluate(x, y, verbose=0)
    assert m2.optimizer.iterations == m.optimizer.iterations == 3


def test_file_holds_no_pickles(tmp_path):
    m = _model()
    m.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)
        cfg = json.loads(data["config"].tobytes())
    assert cfg["model"]["layers"][0]["class_name"] == "Conv2D"


@pytest.mark.parametrize("opt", ["adam", lambda: nn.optimizers.SGD(0.05, momentum=0.9)])
def test_resumed_training_matches_uninterrupted(tmp_path, opt):
    x, y = _data()
    make = (lambda: _model(opt())) if callable(opt) else (lambda: _model(opt))
    utils.set_random_seed(3)
    a = make()
    a.fit(x, y, epochs=1, batch_size=8, verbose=0)
    a.save(tmp_path / "ckpt.npz")
    utils.set_random_seed(99)  # the second epoch's shuffling and dropout seeds
    a.fit(x, y, epochs=1, batch_size=8, verbose=0)
    b = load_model(tmp_path / "ckpt.npz")
    utils.set_random_seed(99)
    b.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(p, q)


@pytest.mark.simulator
def test_uncompiled_model_round_trip(tmp_path):
    m = Sequential([Dense(3, input_shape=(2,))], dtype="float64")
    m.save(tmp_path / "u.npz")
    m2 = load_model(tmp_path / "u.npz")
    assert not m2.compiled and m2.dtype == np.float64
    np.testing.assert_array_equal(m2.get_weights()[0], m.get_weights()[0])


@pytest.mark.simulator
def test_truncated_file(tmp_path):
    path = tmp_path / "m.npz"
    _model().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"load_model: {path} is not a valid numbanet model file"):
        load_model(path)


@pytest.mark.simulator
def test_garbage_and_foreign_files(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="junk.npz is not a valid numbanet model file"):
        load_model(junk)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz is not a valid numbanet model file: it holds no config"):
        load_model(other)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(tmp_path / "missing.npz")


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays.update(changes)
    np.savez(path, **arrays)


@pytest.mark.simulator
def test_mismatched_weights_and_bad_json(tmp_path):
    path = tmp_path / "m.npz"
    _model().save(path)
    _rewrite(path, weight_0000=np.zeros((2, 2), "float32"))
    with pytest.raises(saving.InvalidModelFile,
                       match=r"weight_0000.npy has shape \(2, 2\) but the architecture expects \(3, 3, 1, 2\)"):
        load_model(path)
    _model().save(path)
    _rewrite(path, config=np.frombuffer(b"{not json", dtype=np.uint8))
    with pytest.raises(ValueError, match="its config is not valid JSON"):
        load_model(path)
    _model().save(path)
    with np.load(path, allow_pickle=False) as data:
        cfg = json.loads(data["config"].tobytes())
    cfg["model"]["layers"][0]["class_name"] = "ConvLSTM2D"
    _rewrite(path, config=np.frombuffer(json.dumps(cfg).encode(), dtype=np.uint8))
    with pytest.raises(ValueError, match="its architecture cannot be rebuilt .*unknown layer class 'ConvLSTM2D'"):
        load_model(path)


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    m = _model()
    m.save(path)
    before = path.read_bytes()

    def failing_savez(f, **arrays):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(saving.np, "savez", failing_savez)
    m.fit(*_data(), epochs=1, verbose=0)
    with pytest.raises(OSError, match="disk full"):
        m.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]  # no temporary file left behind
    assert zipfile.is_zipfile(path)


# --------------------------------------------------------------------------- functional models

def _functional():
    from numbanet.nn.layers import (Add, Embedding, Input, LayerNormalization, MultiHeadAttention,
                                    PositionEmbedding)
    ids = Input((5,), dtype="int32", name="ids")
    tok = Embedding(7, 8)(ids)
    x = Add()([tok, PositionEmbedding(5)(tok)])
    h = MultiHeadAttention(2, 4)(LayerNormalization()(x), x, use_causal_mask=True)
    x = Add()([x, h])
    out = Dense(7, activation="softmax", name="next")(x)
    m = nn.Model(ids, out, name="tiny_lm")
    m.compile(nn.optimizers.AdamW(nn.optimizers.schedules.CosineDecay(0.0, 20, warmup_target=1e-2, warmup_steps=3),
                                  global_clipnorm=1.0),
              "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def test_functional_round_trip_and_resumed_training(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 7, (16, 5)), rng.integers(0, 7, (16, 5))
    utils.set_random_seed(1)
    a = _functional()
    a.fit(x, y, batch_size=8, epochs=1, verbose=0)
    a.save(tmp_path / "lm.npz")
    b = load_model(tmp_path / "lm.npz")
    assert b.name == "tiny_lm" and [l.name for l in b.layers] == [l.name for l in a.layers]
    assert any(n.kwargs.get("use_causal_mask") for n in b._graph.nodes)
    np.testing.assert_array_equal(b.predict(x), a.predict(x))
    assert b.optimizer.get_config() == a.optimizer.get_config() and b.optimizer.iterations == 2
    utils.set_random_seed(5)
    a.fit(x, y, batch_size=8, epochs=1, verbose=0)
    utils.set_random_seed(5)
    b.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(p, q)


def test_several_outputs_round_trip(tmp_path):
    from numbanet.nn.layers import Input
    x = Input((3,))
    h = Dense(4, activation="tanh")(x)
    m = nn.Model(x, [Dense(2, activation="softmax", name="c")(h), Dense(1, name="r")(h)])
    m.compile("adam", ["sparse_categorical_crossentropy", "mse"], metrics=[["accuracy"], []], loss_weights=[1, 0.3])
    m.save(tmp_path / "two.npz")
    b = load_model(tmp_path / "two.npz")
    xs = np.random.default_rng(2).standard_normal((4, 3)).astype("float32")
    ys = [np.array([0, 1, 1, 0]), np.zeros((4, 1), "float32")]
    assert b.evaluate(xs, ys, verbose=0, return_dict=True) == m.evaluate(xs, ys, verbose=0, return_dict=True)
    assert b._loss_weights == [1.0, 0.3] and b._metric_names == [["accuracy"], []]
