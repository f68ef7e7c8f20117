"""Training callbacks: History, EarlyStopping, ModelCheckpoint, TerminateOnNaN."""
import math
import sys

from numbanet.nn import distributed


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

    def _better(self, current, best):
        if self.mode == "min":
            return current < best - self.min_delta
        return current > best + self.min_delta

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = None
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping: monitor {self.monitor!r} is not among the logged values "
                             f"{sorted(logs)}; pass validation_data or validation_split for val_ keys")
        current = float(logs[self.monitor])
        if self.best is None or self._better(current, self.best):
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
            if self.monitor not in logs:
                raise ValueError(f"ModelCheckpoint: monitor {self.monitor!r} is not among the logged values "
                                 f"{sorted(logs)}")
            current = float(logs[self.monitor])
            better = self.best is None or (current < self.best if self.mode == "min" else current > self.best)
            if not better:
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


