"""EarlyStopping, ModelCheckpoint, TerminateOnNaN, History, and the NaN error without them."""
import os

import numpy as np
import pytest

from numbanet import nn
from numbanet.nn.callbacks import Callback, EarlyStopping, ModelCheckpoint, TerminateOnNaN
from numbanet.nn.layers import Dense
from numbanet.nn.models import Sequential


class Scripted(Callback):
    """Overwrites the logged val_loss with a script, so the monitors see known values,
    and records the weights at the end of each epoch."""

    def __init__(self, values):
        self.values, self.weights = values, []

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]
        self.weights.append(self.model.get_weights())


def _setup(n=40):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 3)).astype("float32")
    y = rng.integers(0, 2, n)
    m = Sequential([Dense(2, activation="softmax", input_shape=(3,))])
    m.compile(nn.optimizers.SGD(0.1), "categorical_crossentropy")
    return m, x, y


def test_early_stopping_patience_and_restore_best_weights():
    m, x, y = _setup()
    script = Scripted([1.0, 0.5, 0.6, 0.55, 0.4, 0.3])
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    # Scripted runs first so EarlyStopping sees the scripted values
    h = m.fit(x, y, epochs=6, validation_split=0.25, callbacks=[script, es], verbose=0)
    assert len(h.history["loss"]) == 4  # epochs 3 and 4 do not improve on 0.5: stop after epoch 4
    assert es.stopped_epoch == 3 and es.best == 0.5
    for a, b in zip(m.get_weights(), script.weights[1]):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_min_delta_and_restore_when_epochs_run_out():
    m, x, y = _setup()
    script = Scripted([1.0, 0.7, 0.69, 0.68])
    es = EarlyStopping(monitor="val_loss", min_delta=0.05, patience=5, restore_best_weights=True)
    h = m.fit(x, y, epochs=4, validation_split=0.25, callbacks=[script, es], verbose=0)
    assert len(h.history["loss"]) == 4 and es.best == 0.7
    for a, b in zip(m.get_weights(), script.weights[1]):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_max_mode_for_accuracy_and_missing_key():
    assert EarlyStopping(monitor="val_accuracy").mode == "max"
    m, x, y = _setup()
    with pytest.raises(ValueError, match="monitor 'val_loss' is not among the logged values"):
        m.fit(x, y, epochs=1, callbacks=[EarlyStopping()], verbose=0)


def test_model_checkpoint_every_epoch_with_epoch_in_name(tmp_path):
    m, x, y = _setup()
    path = str(tmp_path / "m-{epoch:02d}.npz")
    m.fit(x, y, epochs=3, callbacks=[ModelCheckpoint(path)], verbose=0)
    assert sorted(os.listdir(tmp_path)) == ["m-01.npz", "m-02.npz", "m-03.npz"]
    last = nn.models.load_model(tmp_path / "m-03.npz")
    np.testing.assert_array_equal(last.predict(x), m.predict(x))


def test_model_checkpoint_save_best_only(tmp_path):
    m, x, y = _setup()
    script = Scripted([0.9, 0.5, 0.7, 0.8])
    path = str(tmp_path / "best.npz")
    m.fit(x, y, epochs=4, validation_split=0.25, callbacks=[script, ModelCheckpoint(path, save_best_only=True)],
          verbose=0)
    best = nn.models.load_model(path)
    for a, b in zip(best.get_weights(), script.weights[1]):
        np.testing.assert_array_equal(a, b)
    assert os.listdir(tmp_path) == ["best.npz"]


def _nan_model():
    m, x, y = _setup(32)
    # a huge learning rate makes the logits overflow within a few steps
    m.compile(nn.optimizers.SGD(1e38), "categorical_crossentropy")
    return m, x * 1e3, y


@pytest.mark.simulator
def test_nan_loss_without_terminate_raises_with_epoch_and_step():
    m, x, y = _nan_model()
    with pytest.raises(FloatingPointError, match=r"the loss became (nan|inf) at epoch 1, step \d+ of 8"):
        m.fit(x, y, batch_size=4, epochs=3, verbose=0)


@pytest.mark.simulator
def test_terminate_on_nan_stops_quietly(capsys):
    m, x, y = _nan_model()
    h = m.fit(x, y, batch_size=4, epochs=3, callbacks=[TerminateOnNaN()], verbose=0)
    assert "Invalid loss, terminating training" in capsys.readouterr().out
    assert len(h.history.get("loss", [])) <= 1
    # stopped within the first epoch of 8 steps, the non-finite step not applied
    assert m.optimizer.iterations < 8


def test_history_records_each_epoch():
    m, x, y = _setup()
    h = m.fit(x, y, epochs=3, verbose=0)
    assert h.epoch == [0, 1, 2] and list(h.history) == ["loss"] and len(h.history["loss"]) == 3
