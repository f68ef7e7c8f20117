"""Training, Keras 3's way (keras/src/trainers/trainer.py): compile, fit, evaluate,
predict, train_on_batch and compute_gradients, for a model that runs a graph (nn/graph.py)
on a backend. Model (nn/models.py) inherits them.

A step: the graph forward on the batch, the compiled loss terms (nn/compile_utils.py),
the graph backward, the regularizers' gradients added, the optimizer's update. Batches
reach the backend through trainers/epoch_iterator.py after the checks of
trainers/data_adapter.py. Activations, weights, gradients and optimizer state are backend
arrays; on the gpu backend they stay on the device and only the per-step loss and metric
scalars come back to the host.
"""
import math

import numpy as np

from numbanet.kernels.backend import Workspace
from numbanet.nn import compile_utils, distributed, utils
from numbanet.nn import optimizers as optimizers_mod
from numbanet.nn.compile_utils import RunningLogs
from numbanet.nn.packed import PackedParams
from numbanet.nn.progress import Progress
from numbanet.nn.trainers import data_adapter
from numbanet.nn.trainers.callback_list import CallbackList
from numbanet.nn.trainers.epoch_iterator import EpochIterator, host_batches


class Trainer:
    # Batch shapes train_on_batch keeps a workspace for (a custom loop's full and last batch, ...).
    _STEP_WORKSPACES = 4

    def _init_trainer(self):
        self.optimizer = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._compile_args = None
        self._compile_loss = None    # compile_utils.CompileLoss, once compiled and the outputs are known
        self._packed = None          # nn/packed.py's flat weights, when the model's layers allow it
        self._step_workspaces = {}   # train_on_batch's, by backend and batch shapes

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="adam", loss=None, metrics=None, loss_weights=None):
        compile_utils.check_names(loss, metrics)
        self.optimizer = optimizers_mod.get(optimizer)
        self._compile_args = (loss, metrics, loss_weights)
        self.compiled = True
        self._compile_loss = None
        if self.outputs:
            self._resolve_compile()

    def _resolve_compile(self):
        """Per-output losses and metrics for the model's outputs, and the fused outputs."""
        self._compile_loss = compile_utils.CompileLoss(*self._compile_args, self.output_names)
        self._compile_loss.fuse(self._graph)

    @property
    def loss(self):
        """The loss object (a list of them for a model with several outputs)."""
        if self._compile_loss is None:
            return None
        losses = self._compile_loss.losses
        return losses[0] if len(losses) == 1 else list(losses)

    @property
    def metrics(self):
        """The metric names of the first output (Keras's compiled metric names)."""
        return list(self._compile_loss.metric_names[0]) if self._compile_loss is not None else []

    # The compile record, per output, as nn/saving.py writes it.
    _losses = utils.list_of("_compile_loss", "losses")
    _loss_weights = utils.list_of("_compile_loss", "loss_weights")
    _metric_names = utils.list_of("_compile_loss", "metric_names")

    @property
    def _fused(self):
        """True when an output hands its logits to a fused activation + loss kernel."""
        return self._compile_loss is not None and any(self._compile_loss.fused_outputs)

    def _require_compiled(self, op):
        if not self.compiled:
            raise RuntimeError(f"{op}: call model.compile(optimizer, loss, metrics) first")

    # ------------------------------------------------------------------ one step
    def _backward(self, douts, regularized):
        """Every weight's gradient: the graph's backward, then each regularizer's term."""
        self._graph.backward(self.be, douts, self._compile_loss.fused_nodes)
        self._add_penalty_gradients(regularized)

    def _update(self):
        params = [(key, layer.params[k], layer.grads[k], f"{layer.name}/{k}")
                  for key, layer, k in self._trainable_params()]
        packed = self._packed
        if packed is not None and not packed.holds([(key, p, g) for key, p, g, _ in params]):
            packed = None
        self.optimizer.apply(self.be, params, packed=packed)

    def _pack(self):
        """Put every weight in one flat backend array and have the layers write their
        gradients into a second one with the same layout, so that the optimizer can update
        every parameter with one kernel (nn/packed.py). Only for models whose layers with
        weights write packed gradients (Dense and Conv2D with a bias) and are called once
        (a shared layer's gradients are sums of copies); otherwise the optimizer steps each
        array. Arrays already in place stay; a weight replaced since (set_weights) is copied
        in again."""
        slots = self._trainable_params()
        layers = [layer for layer in self.layers if layer.params]
        if not slots or not all(getattr(layer, "packs_grads", False) and self._graph.calls.get(id(layer), 0) == 1
                                for layer in layers):
            self._packed = None
            for layer in layers:
                layer.grad_buffer = None
            return
        if self._packed is None or not self._packed.matches(self.be, slots):
            self._packed = PackedParams(self.be, slots)
        self._packed.adopt(slots)

    def _train_batch(self, xbs, ybs, sync=None):
        """One step -> (loss, per-output losses, metric counts, updated). With sync (a
        data-parallel fit: nn/distributed.py) the gradients and logs are the global
        batch's after one Allreduce; xbs is None when this process has no rows this step."""
        loss, per_output, douts, stats = 0.0, [], None, []
        regularized = self._regularized()
        if xbs is not None:
            outs = self._graph.forward(xbs, True, self._compile_loss.fused_nodes)
            loss, per_output, douts, stats = self._compile_loss(self.be, outs, ybs, self._penalty_adder(regularized))
        finite = math.isfinite(loss)
        for layer in self.layers:  # set again by each layer that writes packed gradients this step
            layer._grads_into = None
        if finite and douts is not None:
            self._backward(douts, regularized)
        if sync is not None:
            loss, per_output, stats = sync.reduce(loss, per_output, stats, have_grads=finite and douts is not None)
            finite = math.isfinite(loss)
        if not finite:
            # No update: non-finite gradients would overwrite the weights with NaN.
            return loss, per_output, stats, False
        self._update()
        return loss, per_output, stats, True

    def compute_gradients(self, x, y):
        """(loss, [gradient of loss w.r.t. each array of get_weights()]) for one batch, as host
        NumPy, without updating anything. The loss is the training loss (weighted data losses
        plus regularization penalties); Dropout is active, as in training. For gradient checks."""
        op = "compute_gradients"
        self._require_compiled(op)
        xs = data_adapter.check_x(self, op, x)
        ys = data_adapter.check_y(self, op, xs, y)
        be = self.be
        regularized = self._regularized()
        try:
            outs = self._graph.forward([be.asarray(a) for a in xs], True, self._compile_loss.fused_nodes)
            loss, _, douts, _ = self._compile_loss(be, outs, [be.asarray(a) for a in ys],
                                                   self._penalty_adder(regularized))
            self._backward(douts, regularized)
            # A non-trainable weight (moving statistics) does not enter the loss: zero.
            grads = [np.zeros(tuple(layer.params[k].shape), np.dtype(layer.params[k].dtype))
                     if k in layer.non_trainable else be.to_numpy(layer.grads[k]).copy()
                     for _, layer, k in self._params()]
        finally:
            self._graph.clear()
        return loss, grads

    def train_on_batch(self, x, y):
        """One optimizer step on (x, y); returns the loss (with metrics or several outputs:
        a list in evaluate's order). The step is fit's: the packed optimizer, and a workspace
        per batch shape (the model keeps the last few), so that from the second call of a
        shape on the step allocates nothing."""
        op = "train_on_batch"
        self._require_compiled(op)
        xs = data_adapter.check_x(self, op, x)
        ys = data_adapter.check_y(self, op, xs, y)
        be = self.be
        self._pack()
        try:
            with be.workspace(self._step_workspace(xs + ys)):
                loss, per_output, stats, ok = self._train_batch([be.asarray(a) for a in xs],
                                                                [be.asarray(a) for a in ys])
        finally:
            self._graph.clear()
        if not ok:
            raise FloatingPointError(f"train_on_batch: the loss is {loss}; the weights were not updated")
        values = [loss] + per_output + [hits / count for hits, count in stats]   # evaluate's order
        return values[0] if len(values) == 1 else values

    def _step_workspace(self, arrays):
        key = (id(self.be),) + tuple((tuple(a.shape), np.dtype(a.dtype).str) for a in arrays)
        ws = self._step_workspaces.pop(key, None)
        if ws is None:
            ws = Workspace()
            while len(self._step_workspaces) >= self._STEP_WORKSPACES:
                del self._step_workspaces[next(iter(self._step_workspaces))]   # the least recently used
        self._step_workspaces[key] = ws
        return ws

    # ------------------------------------------------------------------ fit
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0):
        op = "fit"
        self._require_compiled(op)
        batch_size = data_adapter.check_batch_size(op, batch_size)
        epochs = data_adapter.check_epochs(op, epochs)
        xs = data_adapter.check_x(self, op, x)
        ys = data_adapter.check_y(self, op, xs, y)
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split!r}")
        if validation_data is not None and validation_split:
            raise ValueError("fit: pass validation_data or validation_split, not both")
        val = None
        if validation_split:
            xs, ys, val = data_adapter.train_validation_split(xs, ys, validation_split)
        elif validation_data is not None:
            val = data_adapter.check_validation(self, validation_data)

        # Several processes (distributed.init() under mpiexec): process 0's weights and
        # optimizer state everywhere, then each step on this process's share of the batch.
        comm = distributed.active()
        sync = distributed.FitSync(comm, self) if comm is not None else None
        if sync is not None:
            sync.begin()
            verbose = verbose if sync.chief else 0
        data = EpochIterator(self.be, xs, ys, batch_size, sync)
        callbacks = CallbackList(callbacks, self)
        progress = Progress(verbose, epochs, data.steps)
        self.stop_training = False
        self.history = callbacks.history
        rng = utils.get_rng()
        self._pack()
        callbacks.on_train_begin()
        try:
            for epoch in range(initial_epoch, epochs):
                callbacks.on_epoch_begin(epoch)
                progress.epoch_begin(epoch)
                data.set_order(rng.permutation(data.rows).astype(np.int32) if shuffle
                               else np.arange(data.rows, dtype=np.int32))
                logs = self._fit_epoch(epoch, data, callbacks, progress, sync)
                if logs is None:
                    break
                if val is not None:
                    vals = self._evaluate_arrays(val[0], val[1], batch_size)
                    logs.update({f"val_{k}": v for k, v in zip(self._compile_loss.log_names(), vals)})
                progress.epoch_end(epoch, logs)
                callbacks.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:
            progress.close()
            self._graph.clear()
            callbacks.on_train_end()
        return callbacks.history

    def _fit_epoch(self, epoch, data, callbacks, progress, sync):
        """The steps of one epoch -> its logs (None when not one step finished)."""
        logs = RunningLogs(self._compile_loss)
        for step in range(data.steps):
            callbacks.on_batch_begin(step)
            with data.workspace(step):
                rows, xbs, ybs = data.batch(step)
                loss, per_output, stats, ok = self._train_batch(xbs, ybs, sync)
            callbacks.on_batch_end(step, {"loss": loss})
            if not ok:
                if callbacks.stop_on_nan:
                    break
                raise FloatingPointError(f"fit: the loss became {loss} at epoch {epoch + 1}, step {step + 1} of "
                                         f"{data.steps}; lower the learning rate or check the data (pass "
                                         f"callbacks=[nn.callbacks.TerminateOnNaN()] to stop without an error)")
            logs.add(rows, loss, per_output, stats)
            progress.batch_end(step, logs.means())
            if self.stop_training:
                break
        return logs.means() if logs.rows else None

    # ------------------------------------------------------------------ evaluate, predict
    def evaluate(self, x=None, y=None, batch_size=32, verbose=1, return_dict=False):
        """[loss, *per-output losses, *metrics] (a float when that is just the loss)."""
        op = "evaluate"
        self._require_compiled(op)
        batch_size = data_adapter.check_batch_size(op, batch_size)
        xs = data_adapter.check_x(self, op, x)
        ys = data_adapter.check_y(self, op, xs, y)
        result = self._evaluate_arrays(xs, ys, batch_size)
        names = self._compile_loss.log_names()
        if verbose and distributed.is_chief():
            print(" - ".join(f"{k}: {v:.4f}" for k, v in zip(names, result)))
        if return_dict:
            return dict(zip(names, result))
        return result if len(result) > 1 else result[0]

    def _evaluate_arrays(self, xs, ys, batch_size):
        n = xs[0].shape[0]
        comm = distributed.active()
        if comm is None:
            logs = self._evaluate_sums(xs, ys, batch_size)
            sums, hits = logs.sums, logs.hits
        else:
            # Each process its consecutive share of the rows; the sums and counts added up.
            lo, hi = distributed.share(0, n, comm.rank, comm.size)
            logs = self._evaluate_sums([a[lo:hi] for a in xs], [a[lo:hi] for a in ys], -(-batch_size // comm.size))
            sums, hits = comm.sum_counts(logs.sums, logs.hits)
        penalty = self._penalty()
        return [sums[0] / n + penalty] + [s / n for s in sums[1:]] + [h / c for h, c in hits]

    def _evaluate_sums(self, xs, ys, batch_size):
        """RunningLogs over xs's rows (none: zero sums) of the data losses and metrics."""
        be, n_in = self.be, len(xs)
        logs = RunningLogs(self._compile_loss)
        try:
            for batch in host_batches(be, xs + ys, batch_size):
                outs = self._graph.forward(batch[:n_in], False, self._compile_loss.fused_nodes)
                data_loss, per_output, _, stats = self._compile_loss(be, outs, batch[n_in:])
                logs.add(batch[0].shape[0], data_loss, per_output, stats)
        finally:
            self._graph.clear()
        return logs

    def predict(self, x, batch_size=32, verbose=0):
        """Model outputs (softmax probabilities for a softmax layer) as host arrays (a list
        of them for a model with several outputs)."""
        op = "predict"
        batch_size = data_adapter.check_batch_size(op, batch_size)
        xs = data_adapter.check_x(self, op, x)
        comm = distributed.active()
        if comm is not None:
            # Each process predicts its consecutive share of the rows; every process gets all.
            n = xs[0].shape[0]
            lo, hi = distributed.share(0, n, comm.rank, comm.size)
            mine = self._predict_rows([a[lo:hi] for a in xs], -(-batch_size // comm.size))
            result = [comm.allgather_rows(m, n) for m in mine]
        else:
            result = self._predict_rows(xs, batch_size)
        return result[0] if self._single_output else result

    def _predict_rows(self, xs, batch_size):
        """Host outputs, one array per model output, for the rows of xs (which may be none)."""
        be = self.be
        outs = [[] for _ in self.outputs]
        try:
            for xb in host_batches(be, xs, batch_size):
                for acc, o in zip(outs, self._graph.forward(xb, False)):
                    acc.append(be.to_numpy(o))
        finally:
            self._graph.clear()
        if not outs[0]:   # no rows (a process of a data-parallel predict): empty outputs
            return [np.empty((0,) + tuple(t.per_sample_shape), self.dtype) for t in self.outputs]
        return [np.concatenate(o, axis=0) for o in outs]
