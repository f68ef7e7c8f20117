"""EarlyStopping, ModelCheckpoint, TerminateOnNaN, History, the NaN error without them,
and ReduceLROnPlateau, LearningRateScheduler and CSVLogger against the files real Keras 3
writes for the same logs (tests/nn/data/make_keras_callback_logs.py)."""
import csv
import json
import os

import numpy as np
import pytest

from numbanet import nn
from numbanet.nn.callbacks import (Callback, CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint,
                                   ReduceLROnPlateau, TerminateOnNaN)
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


# --------------------------------------------------------------------------- learning rate and CSV callbacks
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


class Replay(Callback):
    """Replaces each epoch's logs with the scripted ones (it runs first)."""

    def __init__(self, logs):
        self.logs = logs

    def on_epoch_end(self, epoch, logs=None):
        logs.clear()
        logs.update(self.logs[epoch])


def _schedule(name):
    # The functions of make_keras_callback_logs.py, written again here: the test does not
    # import the generating script, a Keras program.
    if name == "halve_after_first":
        return lambda epoch, lr: lr if epoch == 0 else lr * 0.5
    return lambda epoch: 0.05 / (epoch + 1)


def _numbanet_callbacks(spec, path):
    out = []
    for kind, args in spec:
        if kind == "CSVLogger":
            out.append(CSVLogger(path, **args))
        elif kind == "ReduceLROnPlateau":
            out.append(ReduceLROnPlateau(**args))
        else:
            out.append(LearningRateScheduler(_schedule(args["schedule"])))
    return out


def _rows(path, sep):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


with open(os.path.join(DATA, "callback_cases.json")) as _f:
    CASES = json.load(_f)


@pytest.mark.parametrize("case", sorted(CASES))
def test_csv_file_and_learning_rates_match_what_keras_writes(tmp_path, case):
    """The same logs through numbanet's fit and its callbacks give Keras's file: the same
    bytes (\r\n line ends, the header, NA cells, the val_ copies, the appended run), except
    that Keras holds the learning rate in float32: those cells must be the same float32."""
    spec = CASES[case]
    path = str(tmp_path / "log.csv")
    m, x, y = _setup(8)
    m.compile(nn.optimizers.SGD(spec["learning_rate"]), "categorical_crossentropy")
    for run in spec["runs"]:
        cbs = [Replay(run["logs"])] + _numbanet_callbacks(run["callbacks"], path)
        m.fit(x, y, epochs=len(run["logs"]), batch_size=8, shuffle=False, callbacks=cbs, verbose=0)
    keras_path = os.path.join(DATA, f"keras_{case}.csv")
    sep = next((a.get("separator", ",") for k, a in spec["runs"][0]["callbacks"] if k == "CSVLogger"), ",")
    ours, theirs = _rows(path, sep), _rows(keras_path, sep)
    assert ours[0] == theirs[0] and len(ours) == len(theirs)
    lr_col = theirs[0].index("learning_rate") if "learning_rate" in theirs[0] else None
    for a, b in zip(ours[1:], theirs[1:]):
        if lr_col is not None:
            assert np.float32(float(a[lr_col])) == np.float32(float(b[lr_col])), (a, b)
            a, b = a[:lr_col] + a[lr_col + 1:], b[:lr_col] + b[lr_col + 1:]
        assert a == b
    if lr_col is None:
        with open(path, "rb") as f, open(keras_path, "rb") as g:
            assert f.read() == g.read()


def test_reduce_lr_on_plateau_sets_the_rate_fit_steps_with_and_history_records_it():
    """After a reduction the next steps use the new rate: the weights equal those of a
    model trained with the rate set by hand between two fits."""
    m, x, y = _setup(8)
    twin, _, _ = _setup(8)
    twin.set_weights(m.get_weights())
    cb = ReduceLROnPlateau(monitor="val_loss", factor=0.25, patience=1, min_delta=0.0)
    h = m.fit(x, y, epochs=3, batch_size=4, shuffle=False, callbacks=[Replay([{"val_loss": 1.0}] * 3), cb],
              verbose=0)
    # Epoch 0 sets the best; epoch 1 does not improve: the rate drops to 0.025 after it.
    assert h.history["learning_rate"] == [0.1, 0.1, 0.025]
    assert m.optimizer.learning_rate == pytest.approx(0.1 * 0.25 * 0.25)
    twin.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    twin.optimizer.learning_rate = 0.025
    twin.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    for a, b in zip(m.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_learning_rate_scheduler_rate_reaches_the_steps():
    m, x, y = _setup(8)
    twin, _, _ = _setup(8)
    twin.set_weights(m.get_weights())
    m.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0,
          callbacks=[LearningRateScheduler(lambda epoch, lr: [0.5, 0.01][epoch])])
    for lr in (0.5, 0.01):
        twin.optimizer.learning_rate = lr
        twin.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    for a, b in zip(m.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_learning_rate_callbacks_refuse_bad_values_and_schedules(capsys):
    m, x, y = _setup(8)
    with pytest.raises(ValueError, match="LearningRateScheduler: the output of the schedule function should be a "
                                         "float, got 1 at epoch 0"):
        m.fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda epoch, lr: 1)])
    with pytest.raises(ValueError, match=r"LearningRateScheduler: the learning rate must be a finite number > 0, "
                                         r"got -0.5"):
        m.fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda epoch, lr: -0.5)])
    m.compile(nn.optimizers.SGD(nn.optimizers.schedules.CosineDecay(0.1, 10)), "categorical_crossentropy")
    with pytest.raises(TypeError, match="LearningRateScheduler: the optimizer's learning_rate is a CosineDecay "
                                        "schedule.*not settable"):
        m.fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda epoch, lr: 0.1)])
    with pytest.raises(ValueError, match="ReduceLROnPlateau: factor must be a number in \\[0, 1\\)"):
        ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="ReduceLROnPlateau: patience must be an int >= 0"):
        ReduceLROnPlateau(patience=-1)
    with pytest.raises(ValueError, match="ReduceLROnPlateau: monitor 'val_loss' is not among the logged values"):
        m.fit(x, y, epochs=1, verbose=0, callbacks=[ReduceLROnPlateau()])
    with pytest.raises(ValueError, match="CSVLogger: separator must be a one-character string"):
        CSVLogger("x.csv", separator="::")


def test_verbose_messages_are_keras_s(capsys):
    m, x, y = _setup(8)
    m.fit(x, y, epochs=2, verbose=0, callbacks=[Replay([{"val_loss": 1.0}] * 2),
                                                ReduceLROnPlateau(patience=1, factor=0.5, verbose=1),
                                                LearningRateScheduler(lambda e, lr: lr, verbose=1)])
    out = capsys.readouterr().out
    assert "Epoch 1: LearningRateScheduler setting learning rate to 0.1." in out
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.05." in out


def test_csv_logger_rewrites_the_file_whole_and_keeps_an_appended_file(tmp_path):
    """Each epoch's file is complete (written through a temporary file, no .tmp left
    behind); append=True keeps the earlier rows byte for byte, without a second header."""
    path = tmp_path / "log.csv"
    seen = []

    class Peek(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(path.read_bytes())

    m, x, y = _setup(8)
    m.fit(x, y, epochs=2, verbose=0, callbacks=[CSVLogger(path), Peek()])
    assert seen[0].count(b"\r\n") == 2 and seen[1].startswith(seen[0]) and seen[1].count(b"\r\n") == 3
    assert seen[0].startswith(b"epoch,loss,val_loss\r\n0,")
    first = path.read_bytes()
    m.fit(x, y, epochs=1, verbose=0, callbacks=[CSVLogger(path, append=True)])
    after = path.read_bytes()
    assert after.startswith(first) and after[len(first):].startswith(b"0,") and after.count(b"epoch") == 1
    m.fit(x, y, epochs=1, verbose=0, callbacks=[CSVLogger(path)])
    assert path.read_bytes().count(b"\r\n") == 2   # without append: a new file
    assert sorted(os.listdir(tmp_path)) == ["log.csv"]
