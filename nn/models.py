"""Sequential: a stack of layers trained through backend ops only.

Activations, weights, gradients and optimizer state are backend arrays; on the gpu
backend they stay on the device and only the per-step loss and metric scalars come
back to the host. Host NumPy is used for input checks, index shuffling and initial
weights.
"""
import math
import os

import numpy as np

from numbanet import kernels
from numbanet.kernels import shapes
from numbanet.kernels.backend import Workspace
from numbanet.nn import callbacks as callbacks_mod
from numbanet.nn import layers as layers_mod
from numbanet.nn import losses as losses_mod
from numbanet.nn import metrics as metrics_mod
from numbanet.nn import optimizers as optimizers_mod
from numbanet.nn import saving
from numbanet.nn import utils
from numbanet.nn.layers.base import Layer, _counters
from numbanet.nn.packed import PackedParams
from numbanet.nn.progress import Progress

# Below this size the whole training set is uploaded once and batches are gathered on
# the backend with take_rows; above it, each batch is gathered on the host and uploaded.
_RESIDENT_BYTES = 2 << 30


class Sequential:
    def __init__(self, layers=None, name=None, dtype=None):
        if name is None:
            n = next(_counters["sequential"])
            name = "sequential" if n == 0 else f"sequential_{n}"
        self.name = name
        self.dtype = np.dtype(utils.check_float_name("Sequential", utils.floatx() if dtype is None else dtype))
        self.layers = []
        self.built = False
        self.be = None
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._packed = None
        for layer in layers or []:
            self.add(layer)

    # ------------------------------------------------------------------ structure
    def add(self, layer):
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected an nn.layers layer, got {type(layer).__name__}")
        if layer.built:
            raise ValueError(f"Sequential.add: layer '{layer.name}' already belongs to a built model")
        if any(l.name == layer.name for l in self.layers):
            raise ValueError(f"Sequential.add: a layer named '{layer.name}' is already in the model")
        self.layers.append(layer)
        self.built = False
        if self.layers[0].input_shape is not None:
            self.build()

    @property
    def input_shape(self):
        return None if not self.layers else self.layers[0].input_shape

    @property
    def output_shape(self):
        return self.layers[-1].output_shape if self.built else None

    def build(self, input_shape=None, backend=None):
        """Create every layer's parameters on the backend (the process default unless given)."""
        if not self.layers:
            raise ValueError("Sequential.build: the model has no layers")
        if input_shape is None:
            input_shape = self.layers[0].input_shape
        if input_shape is None:
            raise ValueError("Sequential.build: the first layer has no input_shape; pass input_shape=... "
                             "to it or call fit/predict so the model learns it from x")
        self.be = backend if backend is not None else (self.be or kernels.get_backend())
        shape = tuple(int(s) for s in input_shape)
        for i, layer in enumerate(self.layers):
            if not layer.built or layer.input_shape != shape:
                if i > 0:
                    layer.input_shape = None
                layer.build(shape, self.be, self.dtype)
            elif layer.be is not self.be:
                # Same shapes on another backend: keep the weights, move them.
                layer.move_to(self.be)
            layer.need_dx = i > 0
            shape = layer.output_shape
        self.built = True
        self._setup_fusion()

    def _params(self):
        """[(key, layer, param name)] in get_weights order."""
        return [(f"{i}/{k}", layer, k) for i, layer in enumerate(self.layers) for k in layer.params]

    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="adam", loss=None, metrics=None):
        self.optimizer = optimizers_mod.get(optimizer)
        if loss is None:
            raise ValueError("compile: loss is required (e.g. loss='categorical_crossentropy')")
        self.loss = losses_mod.get(loss)
        self.metrics = [metrics_mod.get(m) for m in (metrics or [])]
        self.compiled = True
        self._setup_fusion()

    def _setup_fusion(self):
        # softmax + cross-entropy: the last layer hands over its logits to the fused kernel.
        self._fused = bool(self.compiled and self.layers and self.loss.crossentropy and not self.loss.from_logits
                           and getattr(self.layers[-1], "activation", None) == "softmax")

    # ------------------------------------------------------------------ input checks
    def _ensure_built(self, x):
        if not self.built:
            self.build(self.layers[0].input_shape or x.shape[1:])

    def _check_x(self, op, x):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{op}: x must be a numpy.ndarray, got {type(x).__name__}")
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"{op}: x has dtype {x.dtype} but the model runs in {self.dtype}; "
                            f"convert it first, e.g. x.astype('{self.dtype}') / 255")
        if x.dtype != self.dtype:
            raise TypeError(f"{op}: x has dtype {x.dtype} but the model runs in {self.dtype}; "
                            f"convert it with x.astype('{self.dtype}') (nothing is cast silently)")
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"{op}: x is empty or has no batch axis (x.shape={x.shape})")
        if not self.layers:
            raise ValueError(f"{op}: the model has no layers")
        self._ensure_built(x)
        want = self.layers[0].input_shape
        if tuple(x.shape[1:]) != want:
            raise ValueError(f"{op}: x has per-sample shape {tuple(x.shape[1:])} but layer "
                             f"'{self.layers[0].name}' expects {want} (x.shape={x.shape}, "
                             f"expected (N, {', '.join(map(str, want))}))")
        if not np.isfinite(x).all():
            bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
            raise ValueError(f"{op}: x holds {bad} NaN or infinite values; expected finite inputs")

    def _check_y(self, op, x, y):
        """-> y ready for the loss kernel (int32 class ids or float rows of the model dtype)."""
        if y is None:
            raise ValueError(f"{op}: y is required")
        y = np.asarray(y)
        if y.shape[:1] != x.shape[:1]:
            raise ValueError(f"{op}: x and y have different lengths (x has {x.shape[0]} samples, y has "
                             f"{y.shape[0] if y.ndim else 'no'} samples; x.shape={x.shape}, y.shape={y.shape})")
        out_shape = self.layers[-1].output_shape
        if self.loss.crossentropy:
            classes = out_shape[-1]
            if len(out_shape) != 1:
                raise ValueError(f"{op}: {self.loss.name} needs a (batch, classes) output, but layer "
                                 f"'{self.layers[-1].name}' outputs {out_shape}")
            if y.ndim == 2 and y.shape[1] == 1 and np.issubdtype(y.dtype, np.integer):
                y = y[:, 0]
            if y.ndim == 1:
                if not np.issubdtype(y.dtype, np.integer):
                    raise TypeError(f"{op}: class labels y must be integers, got dtype {y.dtype}")
                bad = shapes.first_out_of_range(y, classes)
                if bad is not None:
                    raise ValueError(f"{op}: label {bad[1]} in y is out of range: layer '{self.layers[-1].name}' "
                                     f"has {classes} classes, expected labels in [0, {classes - 1}] "
                                     f"(y[{bad[0]}])")
                return y.astype(np.int32)
            if isinstance(self.loss, losses_mod.SparseCategoricalCrossentropy):
                raise ValueError(f"{op}: sparse_categorical_crossentropy needs integer class ids of shape (N,), "
                                 f"got y.shape={y.shape}")
            if y.ndim == 2 and np.issubdtype(y.dtype, np.floating):
                if y.shape[1] != classes:
                    raise ValueError(f"{op}: one-hot y has {y.shape[1]} columns but layer "
                                     f"'{self.layers[-1].name}' has {classes} classes (y.shape={y.shape})")
                if not np.isfinite(y).all():
                    raise ValueError(f"{op}: y holds NaN or infinite values")
                return np.ascontiguousarray(y, dtype=self.dtype)
            raise ValueError(f"{op}: y must be integer class ids (N,) or one-hot float rows (N, {classes}), "
                             f"got y.shape={y.shape}, dtype {y.dtype}")
        if tuple(y.shape[1:]) != tuple(out_shape):
            raise ValueError(f"{op}: y has per-sample shape {tuple(y.shape[1:])} but layer "
                             f"'{self.layers[-1].name}' outputs {tuple(out_shape)}")
        if not np.issubdtype(y.dtype, np.floating) and not np.issubdtype(y.dtype, np.integer):
            raise TypeError(f"{op}: y must be numeric, got dtype {y.dtype}")
        if not np.isfinite(y).all():
            raise ValueError(f"{op}: y holds NaN or infinite values")
        return np.ascontiguousarray(y, dtype=self.dtype)

    @staticmethod
    def _check_batch_size(op, batch_size):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"{op}: batch_size must be a positive int, got {batch_size!r}")
        return int(batch_size)

    def _require_compiled(self, op):
        if not self.compiled:
            raise RuntimeError(f"{op}: call model.compile(optimizer, loss, metrics) first")

    # ------------------------------------------------------------------ one step
    def _forward(self, xb, training):
        out = xb
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            out = layer.forward(out, training=training, logits=(i == last and self._fused))
        return out

    def _loss_and_grad(self, out, yb):
        """-> (per-sample losses, dloss/dout) for the model output (or logits when fused)."""
        # Every caller passes y through _check_y first: on the gpu, a range check here
        # would cost a device scan, a download and a sync per batch.
        if self._fused:
            return self.be.softmax_cross_entropy(out, yb, _labels_checked=True)
        return self.loss.compute(self.be, out, yb, labels_checked=True)

    def _step_stats(self, out, yb, losses):
        """Host scalars: summed data loss, correct count (None without accuracy)."""
        be = self.be
        loss_sum = be.sum(losses)
        correct = metrics_mod.correct(be, out, yb, labels_checked=True) if self.metrics else None
        return loss_sum, correct

    def _penalty(self):
        return sum(layer.regularization_penalty() for layer in self.layers)

    def _training_loss(self, losses, n):
        """Mean data loss plus every regularization penalty, summed on the backend and read
        back as one float: on the gpu one 8-byte download per step, not one per array."""
        # From the step's workspace (be.zeros would allocate every step), zeroed in place.
        total = self.be.empty((1,), np.float64)
        self.be.zero(total)
        self.be.sum(losses, into=total, scale=1.0 / n)
        for layer in self.layers:
            layer.regularization_penalty(into=total)
        return float(self.be.to_numpy(total)[0])

    def _backward(self, dout):
        d = dout
        last = len(self.layers) - 1
        for i in range(last, -1, -1):
            d = self.layers[i].backward(d, logits=(i == last and self._fused))

    def _update(self):
        params = [(key, layer.params[k], layer.grads[k]) for key, layer, k in self._params()]
        packed = self._packed
        if packed is not None and not packed.holds(params):
            packed = None
        self.optimizer.apply(self.be, params, packed=packed)

    # ------------------------------------------------------------------ packed parameters
    def _pack(self):
        """Put every weight in one flat backend array and have the layers write their
        gradients into a second one with the same layout, so that the optimizer updates
        every parameter with one kernel (nn/packed.py). Only for models whose
        layers with weights write packed gradients (Dense and Conv2D with a bias);
        otherwise the optimizer steps each array. Idempotent: arrays already in place
        stay; a weight replaced since (set_weights) is copied in again."""
        slots = self._params()
        layers = [layer for layer in self.layers if layer.params]
        if not slots or not all(getattr(layer, "packs_grads", False) for layer in layers):
            self._packed = None
            return
        if self._packed is None or not self._packed.matches(self.be, slots):
            self._packed = PackedParams(self.be, slots)
        self._packed.adopt(slots)

    def _train_batch(self, xb, yb):
        out = self._forward(xb, training=True)
        if self._fused:
            # The loss, its gradient, the mean loss and the correct count in one op (one
            # kernel on the gpu); the penalties are added to the mean on the backend, and
            # both numbers come back in one 16-byte read.
            _, dout, stats = self.be.softmax_cross_entropy_stats(out, yb, _labels_checked=True)
            for layer in self.layers:
                layer.regularization_penalty(into=stats[0:1])
            loss, hits = (float(v) for v in self.be.to_numpy(stats))
            correct = int(hits) if self.metrics else None
        else:
            losses, dout = self._loss_and_grad(out, yb)
            loss = self._training_loss(losses, xb.shape[0])
            correct = metrics_mod.correct(self.be, out, yb, labels_checked=True) if self.metrics else None
        if not math.isfinite(loss):
            # No update: non-finite gradients would overwrite the weights with NaN.
            return loss, correct, False
        self._backward(dout)
        self._update()
        return loss, correct, True

    def compute_gradients(self, x, y):
        """(loss, [gradient of loss w.r.t. each array of get_weights()]) for one batch, as host
        NumPy, without updating anything. The loss is the training loss (mean data loss plus
        regularization penalties); Dropout is active, as in training. For gradient checks."""
        op = "compute_gradients"
        self._require_compiled(op)
        self._check_x(op, x)
        y = self._check_y(op, x, y)
        be = self.be
        out = self._forward(be.asarray(x), training=True)
        losses, dout = self._loss_and_grad(out, be.asarray(y))
        loss = self._training_loss(losses, x.shape[0])
        self._backward(dout)
        grads = [be.to_numpy(layer.grads[k]).copy() for _, layer, k in self._params()]
        for layer in self.layers:
            layer.clear()
        return loss, grads

    def train_on_batch(self, x, y):
        """One optimizer step on (x, y); returns the loss (with metrics: [loss, *metrics])."""
        op = "train_on_batch"
        self._require_compiled(op)
        self._check_x(op, x)
        y = self._check_y(op, x, y)
        loss, correct, ok = self._train_batch(self.be.asarray(x), self.be.asarray(y))
        for layer in self.layers:
            layer.clear()
        if not ok:
            raise FloatingPointError(f"train_on_batch: the loss is {loss}; the weights were not updated")
        if self.metrics:
            return [loss, correct / x.shape[0]]
        return loss

    # ------------------------------------------------------------------ fit
    def _fit_step(self, x, y, x_dev, y_dev, order, lo, hi):
        """Gather rows lo:hi of the shuffled order (on the backend when the data is resident
        there: x_dev, y_dev and order are backend arrays; else on the host) and train."""
        be = self.be
        if x_dev is not None:
            # order is a permutation of range(n): no range check (on the gpu, a round
            # trip per call).
            idx = order[lo:hi]
            xb = be.take_rows(x_dev, idx, _indices_checked=True)
            yb = be.take_rows(y_dev, idx, _indices_checked=True)
        else:
            idx = order[lo:hi]
            xb, yb = be.asarray(x[idx]), be.asarray(y[idx])
        return self._train_batch(xb, yb)

    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0):
        op = "fit"
        self._require_compiled(op)
        batch_size = self._check_batch_size(op, batch_size)
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"fit: epochs must be an int >= 0, got {epochs!r}")
        self._check_x(op, x)
        y = self._check_y(op, x, y)
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split!r}")
        if validation_data is not None and validation_split:
            raise ValueError("fit: pass validation_data or validation_split, not both")
        if validation_split:
            # Keras holds out the last fraction, before any shuffling.
            split = int(x.shape[0] * (1.0 - float(validation_split)))
            if split == 0 or split == x.shape[0]:
                raise ValueError(f"fit: validation_split={validation_split} of {x.shape[0]} samples leaves "
                                 f"{split} for training and {x.shape[0] - split} for validation; both need >= 1")
            validation_data = (x[split:], y[split:])
            x, y = x[:split], y[:split]
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("fit: validation_data must be a pair (x_val, y_val)")
            vx, vy = validation_data
            self._check_x("fit (validation_data)", vx)
            vy = self._check_y("fit (validation_data)", vx, vy)

        be = self.be
        n = x.shape[0]
        steps = (n + batch_size - 1) // batch_size
        resident = x.nbytes + y.nbytes <= _RESIDENT_BYTES
        self._pack()
        # One workspace per batch size (the last batch may be smaller): from the second
        # step of a size on, the step's activations and gradients reuse its arrays and the
        # step allocates nothing (kernels.backend.Workspace).
        workspaces = {}
        if resident:
            x_dev, y_dev = be.asarray(np.ascontiguousarray(x)), be.asarray(np.ascontiguousarray(y))

        history = callbacks_mod.History()
        cbs = [history] + list(callbacks or [])
        for cb in cbs:
            cb.set_model(self)
        terminate_on_nan = any(isinstance(cb, callbacks_mod.TerminateOnNaN) for cb in cbs)
        progress = Progress(verbose, epochs, steps)
        self.stop_training = False
        self.history = history
        rng = utils.get_rng()
        for cb in cbs:
            cb.on_train_begin()
        try:
            for epoch in range(initial_epoch, epochs):
                for cb in cbs:
                    cb.on_epoch_begin(epoch)
                progress.epoch_begin(epoch)
                order = rng.permutation(n).astype(np.int32) if shuffle else np.arange(n, dtype=np.int32)
                if resident:
                    order_dev = be.asarray(order)
                loss_total, correct_total, seen = 0.0, 0, 0
                for step in range(steps):
                    for cb in cbs:
                        cb.on_batch_begin(step)
                    lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
                    ws = workspaces.setdefault(hi - lo, Workspace())
                    with be.workspace(ws):
                        loss, correct, ok = self._fit_step(x, y, x_dev if resident else None,
                                                           y_dev if resident else None,
                                                           order_dev if resident else order, lo, hi)
                    for cb in cbs:
                        cb.on_batch_end(step, {"loss": loss})
                    if not ok:
                        if terminate_on_nan:
                            break
                        raise FloatingPointError(f"fit: the loss became {loss} at epoch {epoch + 1}, step "
                                                 f"{step + 1} of {steps}; lower the learning rate or check the "
                                                 f"data (pass callbacks=[nn.callbacks.TerminateOnNaN()] to stop "
                                                 f"without an error)")
                    size = hi - lo
                    loss_total += loss * size
                    seen += size
                    running = {"loss": loss_total / seen}
                    if correct is not None:
                        correct_total += correct
                        running["accuracy"] = correct_total / seen
                    progress.batch_end(step, running)
                    if self.stop_training:
                        break
                if seen == 0:
                    break
                logs = dict(running)
                if validation_data is not None:
                    vals = self._evaluate_arrays(vx, vy, batch_size)
                    logs["val_loss"] = vals[0]
                    if self.metrics:
                        logs["val_accuracy"] = vals[1]
                progress.epoch_end(epoch, logs)
                for cb in cbs:
                    cb.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:
            progress.close()
            for layer in self.layers:
                layer.clear()
            for cb in cbs:
                cb.on_train_end()
        return history

    # ------------------------------------------------------------------ evaluate, predict
    def _evaluate_arrays(self, x, y, batch_size):
        be = self.be
        n = x.shape[0]
        loss_sum, correct_total = 0.0, 0
        for lo in range(0, n, batch_size):
            xb = be.asarray(np.ascontiguousarray(x[lo:lo + batch_size]))
            yb = be.asarray(np.ascontiguousarray(y[lo:lo + batch_size]))
            out = self._forward(xb, training=False)
            losses, _ = self._loss_and_grad(out, yb)
            batch_loss, correct = self._step_stats(out, yb, losses)
            loss_sum += batch_loss
            if correct is not None:
                correct_total += correct
        for layer in self.layers:
            layer.clear()
        result = [loss_sum / n + self._penalty()]
        if self.metrics:
            result.append(correct_total / n)
        return result

    def evaluate(self, x=None, y=None, batch_size=32, verbose=1, return_dict=False):
        """[loss, *metrics] (a float when compiled without metrics)."""
        op = "evaluate"
        self._require_compiled(op)
        batch_size = self._check_batch_size(op, batch_size)
        self._check_x(op, x)
        y = self._check_y(op, x, y)
        result = self._evaluate_arrays(x, y, batch_size)
        names = ["loss"] + (["accuracy"] if self.metrics else [])
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in zip(names, result)))
        if return_dict:
            return dict(zip(names, result))
        return result if self.metrics else result[0]

    def predict(self, x, batch_size=32, verbose=0):
        """Model outputs (softmax probabilities for a softmax layer) as a host array."""
        op = "predict"
        batch_size = self._check_batch_size(op, batch_size)
        self._check_x(op, x)
        be = self.be
        outs = []
        for lo in range(0, x.shape[0], batch_size):
            out = x[lo:lo + batch_size]
            out = be.asarray(np.ascontiguousarray(out))
            for layer in self.layers:
                out = layer.forward(out, training=False)
            outs.append(be.to_numpy(out))
        for layer in self.layers:
            layer.clear()
        return np.concatenate(outs, axis=0)

    def __call__(self, x):
        return self.predict(x)

    # ------------------------------------------------------------------ weights
    def get_weights(self):
        if not self.built:
            return []
        return [self.be.to_numpy(layer.params[k]).copy() for _, layer, k in self._params()]

    def set_weights(self, weights):
        if not self.built:
            raise ValueError("set_weights: build the model first (give the first layer an input_shape)")
        slots = self._params()
        weights = list(weights)
        if len(weights) != len(slots):
            raise ValueError(f"set_weights: the model has {len(slots)} weight arrays, got {len(weights)}")
        new = []
        # Copies, as Keras makes: on the cpu backend asarray would keep the caller's array,
        # and the next training step would write into it.
        for (key, layer, k), w in zip(slots, weights):
            w = np.asarray(w)
            have = tuple(layer.params[k].shape)
            if tuple(w.shape) != have:
                raise ValueError(f"set_weights: layer '{layer.name}' {k} has shape {have}, got {tuple(w.shape)}")
            if not np.issubdtype(w.dtype, np.floating):
                raise TypeError(f"set_weights: layer '{layer.name}' {k} must be a float array, got {w.dtype}")
            new.append(np.array(w, dtype=self.dtype, order="C", copy=True))
        for (key, layer, k), w in zip(slots, new):
            layer.params[k] = self.be.asarray(w)

    # ------------------------------------------------------------------ backend moves
    def to(self, backend):
        """Move weights and optimizer state to the backend "cpu" or "gpu" (or a Backend)."""
        new = kernels.get_backend(backend) if isinstance(backend, str) else backend
        if not self.built:
            self.be = new
            return self
        old = self.be
        if new is old:
            return self
        for layer in self.layers:
            layer.move_to(new)
        if self.optimizer is not None:
            self.optimizer.move_to(old, new)
        self._packed = None
        self.be = new
        return self

    # ------------------------------------------------------------------ summary, config, saving
    def summary(self, print_fn=None):
        print_fn = print_fn or print
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer in self.layers:
            shape = "?" if layer.output_shape is None else str((None,) + tuple(layer.output_shape))
            rows.append((f"{layer.name} ({type(layer).__name__})", shape,
                         str(layer.count_params()) if layer.built else "0 (unbuilt)"))
        widths = (29, 26, 10)
        line = lambda r: "".join((c + " ").ljust(w) for c, w in zip(r, widths)).rstrip()
        total = self.count_params() if self.built else 0
        out = [f'Model: "{self.name}"', "_" * sum(widths), line(rows[0]), "=" * sum(widths)]
        for i, r in enumerate(rows[1:]):
            out.append(line(r))
            out.append("_" * sum(widths) if i < len(rows) - 2 else "=" * sum(widths))
        if len(rows) == 1:
            out.append("=" * sum(widths))
        out += [f"Total params: {total:,}", f"Trainable params: {total:,}", "Non-trainable params: 0",
                "_" * sum(widths)]
        for s in out:
            print_fn(s)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype.name,
                "layers": [{"class_name": type(l).__name__, "config": l.get_config()} for l in self.layers]}

    def save(self, filepath):
        saving.save_model(self, filepath)


def load_model(filepath, backend=None):
    """Rebuild a model saved by model.save (compiled, with its optimizer state, when it was).

    Any defect of the file raises nn.saving.InvalidModelFile (a ValueError) saying what is
    wrong; only the archive members the config names are read, each checked against the
    architecture before its data is read (see nn/saving.py)."""
    filepath = os.fspath(filepath)
    be = kernels.get_backend(backend) if backend is not None else None
    with saving.open_model_file(filepath) as (config, archive):
        try:
            mcfg = config["model"]
            model = Sequential(name=mcfg["name"], dtype=mcfg["dtype"])
            for entry in mcfg["layers"]:
                model.add(layers_mod.from_config(entry["class_name"], entry["config"]))
            model.build(backend=be)
        except Exception as exc:  # a config can hold any JSON: every failure is the file's
            raise saving.bad_file(filepath, f"its architecture cannot be rebuilt ({type(exc).__name__}: {exc})") \
                from exc
        return saving.restore_state(model, config, archive, filepath)
