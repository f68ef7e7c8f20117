"""Training callbacks: History, EarlyStopping, ModelCheckpoint, TerminateOnNaN,
ReduceLROnPlateau, LearningRateScheduler and CSVLogger (Keras 3's arguments, rules and
file format)."""
import collections
import csv
import io
import math
import os

import numpy as np

from numbanet.nn import distributed
from numbanet.nn import schedules
from numbanet.nn import utils


def _say(message):
    """Print, on process 0 only in a data-parallel run (every process runs the callbacks
    on the same logs and decides alike)."""
    if distributed.is_chief():
        print(message)


class Callback:
    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass


class History(Callback):
    """history.history: {"loss": [...], "accuracy": [...], "val_loss": [...], ...}, one entry per epoch."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.history, self.epoch = {}, []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def _mode_op(owner, mode, monitor):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if "acc" in monitor else "min"
    return mode


def _improved(mode, min_delta, current, best):
    """Keras's rule: better than best by more than min_delta (the first value always is)."""
    if best is None:
        return True
    if mode == "min":
        return current < best - min_delta
    return current > best + min_delta


def _monitored(owner, monitor, logs):
    if monitor not in logs:
        raise ValueError(f"{owner}: monitor {monitor!r} is not among the logged values "
                         f"{sorted(logs)}; pass validation_data or validation_split for val_ keys")
    return float(logs[monitor])


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than min_delta for `patience` epochs.

    restore_best_weights=True puts back the best epoch's weights when training ends,
    whichever way it ends (stopped early, ran out of epochs, or raised)."""

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 restore_best_weights=False):
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        self.patience = patience
        self.verbose = verbose
        self.mode = _mode_op("EarlyStopping", mode, monitor)
        self.restore_best_weights = bool(restore_best_weights)

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = None
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored("EarlyStopping", self.monitor, logs or {})
        if _improved(self.mode, self.min_delta, current, self.best):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.verbose:
                _say(f"Epoch {epoch + 1}: early stopping")

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                _say(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model after each epoch to filepath.format(epoch=epoch + 1, **logs)."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, mode="auto"):
        self.filepath = str(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.mode = _mode_op("ModelCheckpoint", mode, monitor)
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = _monitored("ModelCheckpoint", self.monitor, logs)
            if not _improved(self.mode, 0.0, current, self.best):
                return
            self.best = current
        self.model.save(path)
        if self.verbose:
            _say(f"Epoch {epoch + 1}: saved model to {path}")


class TerminateOnNaN(Callback):
    """Stop training at the first non-finite batch loss (instead of raising)."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            _say(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True




def _optimizer(owner, model):
    opt = getattr(model, "optimizer", None)
    if opt is None:
        raise ValueError(f"{owner}: the model has no optimizer; compile it first")
    return opt


def _set_learning_rate(owner, opt, value):
    """The rate the optimizer's next steps use (read by each step, so it takes effect at the
    next batch on either backend)."""
    if isinstance(opt.learning_rate, schedules.LearningRateSchedule):
        raise TypeError(f"{owner}: the optimizer's learning_rate is a {type(opt.learning_rate).__name__} "
                        f"schedule, which sets the rate at every step, so it is not settable; give the optimizer "
                        f"a number as learning_rate")
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{owner}: the learning rate must be a finite number > 0, got {value!r}")
    opt.learning_rate = float(value)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` (not below min_lr) once `monitor` has not
    improved by more than min_delta for `patience` epochs; then wait `cooldown` epochs
    before counting again. Adds the rate to each epoch's logs as "learning_rate"."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        owner = "ReduceLROnPlateau"
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0.0 <= factor < 1.0:
            raise ValueError(f"{owner}: factor must be a number in [0, 1) (new_lr = lr * factor), got {factor!r}")
        for name, value in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{owner}: {name} must be an int >= 0, got {value!r}")
        for name, value in (("min_delta", min_delta), ("min_lr", min_lr)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{owner}: {name} must be a finite number, got {value!r}")
        if min_lr < 0:
            raise ValueError(f"{owner}: min_lr must be >= 0, got {min_lr!r}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience, self.cooldown = patience, cooldown
        self.verbose = verbose
        self.mode = _mode_op(owner, mode, monitor)
        self.min_delta = abs(float(min_delta))
        self.min_lr = float(min_lr)
        self._reset()

    def _reset(self):
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        owner = "ReduceLROnPlateau"
        logs = logs if logs is not None else {}
        opt = _optimizer(owner, self.model)
        logs["learning_rate"] = opt.current_learning_rate()
        current = _monitored(owner, self.monitor, logs)
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if _improved(self.mode, self.min_delta, current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old = opt.current_learning_rate()
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    _set_learning_rate(owner, opt, new)
                    if self.verbose > 0:
                        _say(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """At the start of each epoch, learning rate = schedule(epoch, current rate) (epoch
    counts from 0; a schedule(epoch) of one argument is called so when the two-argument
    call raises TypeError, as Keras does). The schedule must return a float. Adds the rate
    to each epoch's logs as "learning_rate"."""

    def __init__(self, schedule, verbose=0):
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be a function (epoch, lr) -> lr, "
                            f"got {type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        owner = "LearningRateScheduler"
        opt = _optimizer(owner, self.model)
        try:
            lr = self.schedule(epoch, opt.current_learning_rate())
        except TypeError:
            lr = self.schedule(epoch)
        if isinstance(lr, bool) or not isinstance(lr, (float, np.floating)):
            raise ValueError(f"{owner}: the output of the schedule function should be a float, got {lr!r} "
                             f"at epoch {epoch}")
        _set_learning_rate(owner, opt, float(lr))
        if self.verbose > 0:
            _say(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _optimizer("LearningRateScheduler", self.model).current_learning_rate()


def _csv_value(value):
    """Keras's CSVLogger cell: strings as they are, a sequence (not a 0-d array) as
    "[a, b, ...]" in double quotes, anything else as str() writes it."""
    if isinstance(value, str):
        return value
    if isinstance(value, collections.abc.Iterable) and not (isinstance(value, np.ndarray) and value.ndim == 0):
        return f'"[{", ".join(map(str, value))}]"'
    return value


class CSVLogger(Callback):
    """Each epoch's logs as a row of a CSV file, in Keras's format: a header
    "epoch,<log keys sorted>" (with val_ copies of every key when there is no val_ key:
    they read NA), rows in the csv module's excel dialect (\\r\\n line ends), `separator`
    between cells. append=True continues an existing file, without a second header unless
    the file is empty. The whole file is rewritten through a temporary file each epoch, so
    a killed run leaves the rows of its finished epochs and never half a row. In a
    data-parallel run, process 0 writes it."""

    def __init__(self, filename, separator=",", append=False):
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be a one-character string, got {separator!r}")
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self._text = None

    def on_train_begin(self, logs=None):
        self.keys = None
        self._text = None
        if not distributed.is_chief():
            return
        existing = b""
        if self.append and os.path.exists(self.filename):
            with open(self.filename, "rb") as f:
                existing = f.read()
        self._header = not existing
        self._text = existing
        self._flush()   # as Keras opens the file here: without append, it is emptied now

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        first = self.keys is None
        if first:
            keys = sorted(logs)
            if keys and not any(k.startswith("val_") for k in keys):
                keys += [f"val_{k}" for k in keys]
            self.keys = keys
        if self._text is None:
            return

        class Dialect(csv.excel):
            delimiter = self.sep

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["epoch"] + self.keys, dialect=Dialect)
        if first and self._header:
            writer.writeheader()
        row = {"epoch": epoch}
        row.update((k, _csv_value(logs.get(k, "NA"))) for k in self.keys)
        writer.writerow(row)
        self._text += buf.getvalue().encode("utf-8")
        self._flush()

    def _flush(self):
        text = self._text
        utils.atomic_write(self.filename, lambda f: f.write(text), suffix=".csv")
