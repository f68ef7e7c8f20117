"""Loading .keras files (nn/keras_file.py): files real Keras 3 wrote predict as Keras did;
every layer kind round-trips through numbanet's writer; hostile archives and configs get
one clear error each, before anything large is read or allocated."""
import os
import time
import zipfile

import numpy as np
import pytest

from keras_cases import (DATA, KERAS_MADE, ROUND_TRIP, arrays, flat, layer_entry, load_keras_made, refused, rewrite,
                         small_file)
from numbanet.nn import keras_layers, saving
from numbanet.nn import layers as L
from numbanet.nn.models import Model, Sequential, load_model


@pytest.mark.simulator
@pytest.mark.parametrize("name", sorted(KERAS_MADE))
def test_files_keras_wrote_predict_as_keras_did(name):
    """Keras's own predictions for the saved input, within 1e-5, and the compile record:
    the same optimizer class and step count, losses and metrics."""
    cls, opt, iterations, losses, metrics = KERAS_MADE[name]
    model, caught = load_keras_made(name)
    xs, want = arrays(f"{name}_x"), arrays(f"{name}_y")
    got = model.predict(xs if len(xs) > 1 else xs[0])
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)
    assert type(model) is cls and model.compiled == (opt is not None)
    if opt is not None:
        assert type(model.optimizer) is opt and model.optimizer.iterations == iterations
        assert [l.name for l in model._losses] == losses and model._metric_names == metrics
    # "recurrent" was compiled but never trained: Keras saved an optimizer without slots,
    # which numbanet (as Keras) skips with a warning; the others load theirs silently.
    assert bool(caught) == (name == "recurrent")
    if caught:
        assert "the optimizer's 2 saved variables do not match" in caught[0]


@pytest.mark.parametrize("name", ["text_lstm", "transformer", "cnn_bn"])
def test_a_step_from_a_keras_file_lands_where_keras_s_step_did(name):
    """The optimizer state (Adam's moments, AdamW's decay, the step count) comes over:
    one train_on_batch from the loaded file gives Keras's next weights. A step moves them by
    about 1e-2; Adam divides by sqrt(v), so float32 differences in the gradients show at
    1e-6 to 1e-5 of that, and a slot in the wrong place would show at 1e-2."""
    model, _ = load_keras_made(name)
    start = flat(model.get_weights())
    model.train_on_batch(arrays(f"{name}_x")[0], arrays(f"{name}_t")[0])
    want = arrays(f"{name}_next")[0]
    assert np.abs(want - start).max() > 5e-3
    np.testing.assert_allclose(flat(model.get_weights()), want, rtol=0, atol=3e-5)


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


def test_keras_s_padding_mask_node_is_numbanet_s_embedding_mask():
    """Keras writes Embedding(mask_zero=True)'s mask as a NotEqual(ids, 0) node feeding the
    recurrent layers' mask arguments; numbanet's graph carries the mask itself. Rows with
    padding predict as Keras did (test above), and the padding is skipped, not read: ids
    2, 3, 5 with padding between them predict as the same ids packed at the front."""
    model, _ = load_keras_made("masked")
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "Embedding", "LSTM", "Dense", "Bidirectional",
                                                        "Dense"]
    spread = np.array([[0, 0, 2, 3, 0, 5]], "int32")
    packed = np.array([[2, 3, 5, 0, 0, 0]], "int32")
    np.testing.assert_allclose(model.predict(spread), model.predict(packed), rtol=0, atol=1e-6)
    assert not np.allclose(model.predict(np.array([[1, 1, 2, 3, 1, 5]], "int32")), model.predict(packed), atol=1e-4)


def test_a_padding_mask_numbanet_would_not_apply_is_refused(tmp_path):
    """A mask reaching a layer Keras applies it in and numbanet does not (GlobalAveragePooling1D)
    is refused, loading and saving; so is a NotEqual node that is not a padding mask."""
    tok = L.Input((4,), dtype="int32")
    m = Model(tok, L.GlobalAveragePooling1D()(L.Embedding(5, 3, mask_zero=True)(tok)))
    with pytest.raises(keras_layers.Unsupported, match=r"layer 'global_average_pooling1d.*' \(GlobalAveragePooling1D\) "
                                                       r"receives the padding mask of an Embedding\(mask_zero=True\)"):
        m.save(tmp_path / "m.keras")
    src = os.path.join(DATA, "masked.keras")

    def not_a_padding_mask(cfg):
        op = next(e for e in cfg["config"]["layers"] if e["class_name"] == "NotEqual")
        op["inbound_nodes"][0]["args"][1] = 3
    refused(rewrite(src, tmp_path / "a.keras", config=not_a_padding_mask),
            r"operation 'not_equal' \(NotEqual\) compares .*; numbanet reads it only as an Embedding\(mask_zero=True\) "
            r"padding mask")

    def no_mask_for_the_gru(cfg):
        bi = next(e for e in cfg["config"]["layers"] if e["class_name"] == "Bidirectional")
        del bi["inbound_nodes"][0]["kwargs"]["mask"]
    refused(rewrite(src, tmp_path / "b.keras", config=no_mask_for_the_gru),
            r"layer 'bidirectional\w*' gets no padding mask in Keras's graph but one in numbanet's")


def test_a_keras_sequential_of_token_ids_loads_as_a_sequential():
    """text_lstm.keras is keras.Sequential([keras.Input((6,), dtype="int32"), Embedding, LSTM,
    Dense]): a Sequential here too, reading int32 ids, and trainable as one (its step from
    the file is checked against Keras's above)."""
    model, _ = load_keras_made("text_lstm")
    assert type(model) is Sequential
    assert [type(l).__name__ for l in model.layers] == ["Embedding", "LSTM", "Dense"]
    assert model.inputs[0].dtype == "int32" and model.inputs[0].shape == (None, 6)
    with pytest.raises(TypeError, match=r"x feeds the integer Input .* \(read by 'embedding' \(Embedding\)\) but "
                                        r"has dtype float32"):
        model.predict(arrays("text_lstm_x")[0].astype("float32"))


def test_keras_s_float_input_before_an_embedding_reads_ids(tmp_path):
    """keras.Sequential([Embedding(13, 8, input_shape=(6,)), ...]) saves a float32 InputLayer
    (Keras casts the ids in Embedding): numbanet reads the same file as a Sequential taking
    integer ids, with the same predictions."""
    def float_input(cfg):
        cfg["config"]["layers"][0]["config"]["dtype"] = "float32"
    model = load_model(rewrite(os.path.join(DATA, "text_lstm.keras"), tmp_path / "f.keras", config=float_input))
    assert type(model) is Sequential and model.inputs[0].dtype == "int32"
    np.testing.assert_allclose(model.predict(arrays("text_lstm_x")[0]), arrays("text_lstm_y")[0], rtol=0, atol=1e-5)


def test_not_a_zip_and_missing_or_broken_members(tmp_path):
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"PK\x03\x04 this is not really a zip file")
    refused(junk, r"junk.keras .*cannot be read as a .keras archive")
    good = small_file(tmp_path)
    refused(rewrite(good, tmp_path / "a.keras", drop=["config.json"]), "it has no config.json")
    refused(rewrite(good, tmp_path / "b.keras", drop=["model.weights.h5"]), "it has no model.weights.h5")
    refused(rewrite(good, tmp_path / "c.keras", extra={"config.json": b"{not json"}),
             "its config.json cannot be read as JSON")
    refused(rewrite(good, tmp_path / "d.keras", extra={"model.weights.h5": b"\x89HDF\r\n junk"}),
             "model.weights.h5 is not an HDF5 file")
    refused(rewrite(good, tmp_path / "e.keras", config=lambda c: c.update(class_name="MyModel")),
             "its model class is 'MyModel'; numbanet reads Sequential and Functional models")


def test_a_config_above_the_limit_is_not_read(tmp_path, monkeypatch):
    good = small_file(tmp_path)
    with zipfile.ZipFile(good) as z:
        size = z.getinfo("config.json").file_size
    monkeypatch.setattr(saving, "MAX_CONFIG_BYTES", size - 1)
    refused(good, f"its config.json is {size} bytes, more than the {size - 1} allowed")


def test_huge_shapes_in_the_config_are_refused_before_anything_is_allocated(tmp_path):
    good = small_file(tmp_path)
    start = time.monotonic()
    refused(rewrite(good, tmp_path / "a.keras", config=lambda c: layer_entry(c, 1)["config"].update(units=10 ** 12)),
             r"its architecture declares \d{14} bytes of weights, more than the \d+ numbanet reads")
    # 2.8 GB of weights, within the limit: the file's 48-byte kernel does not match, and that
    # is found from the HDF5 headers, before the model (and its 2.8 GB) is built.
    refused(rewrite(good, tmp_path / "b.keras", config=lambda c: layer_entry(c, 1)["config"].update(units=10 ** 8)),
             r"layers/dense/vars/0.*has shape \(4, 3\) and dtype float32; the architecture expects "
             r"\(4, 100000000\) float32")
    assert time.monotonic() - start < 5.0


def test_a_weights_member_larger_than_the_architecture_allows_is_not_copied(tmp_path):
    good = small_file(tmp_path)
    refused(rewrite(good, tmp_path / "a.keras", weights=lambda h: h.create_dataset(
        "padding", data=np.zeros(1 << 19))), r"its model.weights.h5 is \d+ bytes, more than the \d+ that its "
                                         r"architecture's 92 bytes of weights")
