"""Model (Keras's functional API) and Sequential, its special case: layers wired into a
graph of nodes, trained through backend ops only.

    x = nn.Input((28, 28, 1))
    y = Dense(10, activation="softmax")(Flatten()(x))
    model = Model(x, y)

Model walks the graph back from its outputs (nn/graph.py), builds each layer on the
backend, and runs the nodes in order forward and in reverse order backward. A tensor
read by several layers (a fan-out: a residual branch) receives the sum of their
gradients; a layer called at several places (shared weights) accumulates its
gradients over its calls. Sequential builds the same graph from its list of layers.

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
from numbanet.nn import distributed
from numbanet.nn import graph
from numbanet.nn import keras_file
from numbanet.nn import layers as layers_mod
from numbanet.nn import losses as losses_mod
from numbanet.nn import metrics as metrics_mod
from numbanet.nn import optimizers as optimizers_mod
from numbanet.nn import saving
from numbanet.nn import utils
from numbanet.nn.layers.base import Layer, _counters
from numbanet.nn.layers.embedding import Embedding
from numbanet.nn.layers.input_layer import InputLayer
from numbanet.nn.packed import PackedParams
from numbanet.nn.progress import Progress

# Below this size the whole training set is uploaded once and batches are gathered on
# the backend with take_rows; above it, each batch is gathered on the host and uploaded.
_RESIDENT_BYTES = 2 << 30


def _auto_name(base):
    n = next(_counters[base])
    return base if n == 0 else f"{base}_{n}"


def _as_list(obj):
    return list(obj) if isinstance(obj, (list, tuple)) else [obj]


class Model:
    """Model(inputs, outputs): the layers between nn.Input tensors and output tensors."""

    def __init__(self, inputs=None, outputs=None, name=None, dtype=None):
        self.name = name if name is not None else _auto_name(self._default_name())
        self.dtype = np.dtype(utils.check_float_name(type(self).__name__,
                                                     utils.floatx() if dtype is None else dtype))
        self.built = False
        self.be = None
        self.optimizer = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._packed = None
        self._step_workspaces = {}   # train_on_batch's, by backend and batch shapes
        self._losses, self._loss_weights, self._metric_names = [], [], []
        self._graph_layers = []
        self._nodes = []
        self.inputs, self.outputs = [], []
        if inputs is not None or outputs is not None:
            if inputs is None or outputs is None:
                raise ValueError(f"{type(self).__name__}: pass both inputs and outputs")
            self._init_graph(inputs, outputs)
            self.build()

    @staticmethod
    def _default_name():
        return "functional"

    # ------------------------------------------------------------------ graph
    def _init_graph(self, inputs, outputs):
        owner = f"Model '{self.name}'"
        self._single_input = not isinstance(inputs, (list, tuple))
        self._single_output = not isinstance(outputs, (list, tuple))
        inputs, outputs = _as_list(inputs), _as_list(outputs)
        if not inputs or not outputs:
            raise ValueError(f"{owner}: needs at least one input and one output tensor")
        for t in inputs + outputs:
            if not graph.is_symbolic(t):
                raise TypeError(f"{owner}: inputs and outputs must be symbolic tensors (from nn.Input and layer "
                                f"calls), got {type(t).__name__}")
        for t in inputs:
            if not isinstance(t.node.layer, InputLayer):
                raise ValueError(f"{owner}: every input must come from nn.Input(...); {t!r} is a layer's output")
        if len({id(t) for t in inputs}) != len(inputs):
            raise ValueError(f"{owner}: an input tensor is listed twice")
        nodes, layers = graph.build_map(outputs)
        input_ids = {id(t) for t in inputs}
        for node in nodes:
            if node.is_input and id(node.outputs[0]) not in input_ids:
                raise ValueError(f"{owner}: the outputs depend on nn.Input '{node.layer.name}', which is not among "
                                 f"the model's inputs (graph disconnected)")
        for t in inputs:   # inputs that no output reads are kept (Keras keeps them), in input order
            if t.node.layer not in layers:
                layers.append(t.node.layer)
        names = [layer.name for layer in layers]
        for n in names:
            if names.count(n) > 1:
                raise ValueError(f"{owner}: the name '{n}' is used by {names.count(n)} layers; layer names must be "
                                 f"unique within a model")
        first_shape = {}
        for node in nodes:
            if node.is_input:
                continue
            shapes = [t.per_sample_shape for t in node.inputs]
            seen = first_shape.setdefault(id(node.layer), shapes)
            if seen != shapes:
                raise ValueError(f"{owner}: layer '{node.layer.name}' is called on inputs of shapes {seen} and "
                                 f"{shapes}; a shared layer needs the same shapes at every call")
        self.inputs, self.outputs = inputs, outputs
        self._graph_layers = layers
        self._nodes = [n for n in nodes if not n.is_input]
        uses = {}
        for node in self._nodes:
            for t in node.inputs:
                uses[id(t)] = uses.get(id(t), 0) + 1
        self._uses = uses
        self._calls = {}
        for node in self._nodes:
            self._calls[id(node.layer)] = self._calls.get(id(node.layer), 0) + 1
        self._input_ids = input_ids
        self.built = False

    @property
    def layers(self):
        return list(self._graph_layers)

    # Per-sample shapes (no batch axis), as numbanet's layers report them; t.shape of a
    # model input or output tensor gives Keras's (None, ...) form.
    @property
    def input_shape(self):
        if not self.inputs:
            return None
        shapes = [t.per_sample_shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        if not self.outputs:
            return None
        shapes = [t.per_sample_shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def build(self, backend=None):
        """Create every layer's parameters on the backend (the process default unless given)."""
        self.be = backend if backend is not None else (self.be or kernels.get_backend())
        be = self.be
        for t in self.inputs:
            t.node.layer.build(t.per_sample_shape, be, self.dtype)
        done = set()
        for node in self._nodes:
            layer = node.layer
            shapes = [t.per_sample_shape for t in node.inputs]
            arg = shapes if layer.multi_input else shapes[0]
            if id(layer) not in done:
                same = layer.built and layer.input_shape == arg and layer.dtype == self.dtype
                if same and layer.be is not be:
                    # Same shapes on another backend: keep the weights, move them.
                    layer.move_to(be)
                elif not same:
                    layer.build(arg, be, self.dtype)
                done.add(id(layer))
        self.built = True
        self._setup_fusion()

    def _params(self):
        """[(key, layer, param name)] in get_weights order."""
        return [(f"{i}/{k}", layer, k) for i, layer in enumerate(self.layers) for k in layer.params]

    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    @property
    def output_names(self):
        names = []
        for t in self.outputs:
            base = t.node.layer.name
            names.append(base if t.index == 0 else f"{base}_{t.index}")
        return names

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="adam", loss=None, metrics=None, loss_weights=None):
        if loss is None:
            raise ValueError("compile: loss is required (e.g. loss='categorical_crossentropy')")
        # Names are checked now, even when the model learns its outputs later (a Sequential
        # without an input shape resolves them per output when it is built).
        for l in (loss.values() if isinstance(loss, dict) else _as_list(loss)):
            losses_mod.get(l)
        flat = metrics.values() if isinstance(metrics, dict) else (metrics or [])
        for m in flat:
            for name in _as_list(m) if m is not None else []:
                metrics_mod.get(name)
        self.optimizer = optimizers_mod.get(optimizer)
        self._compile_args = (loss, metrics, loss_weights)
        self.compiled = True
        if self.outputs:
            self._resolve_compile()

    def _per_output(self, what, value, default):
        names = self.output_names
        n = len(names)
        if value is None:
            return [default] * n
        if isinstance(value, dict):
            unknown = set(value) - set(names)
            if unknown:
                raise ValueError(f"compile: {what} names {sorted(unknown)}, which are not outputs of the model "
                                 f"(outputs: {names})")
            return [value.get(name, default) for name in names]
        if isinstance(value, (list, tuple)) and what != "metrics":
            if len(value) != n:
                raise ValueError(f"compile: {what} has {len(value)} entries but the model has {n} outputs")
            return list(value)
        return [value] * n

    def _resolve_compile(self):
        loss, metrics, loss_weights = self._compile_args
        self._losses = [losses_mod.get(l) for l in self._per_output("loss", loss, None)]
        weights = self._per_output("loss_weights", loss_weights, 1.0)
        for w in weights:
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ValueError(f"compile: loss weights must be finite numbers >= 0, got {w!r}")
        self._loss_weights = [float(w) for w in weights]
        if isinstance(metrics, (list, tuple)) and metrics and all(isinstance(m, (list, tuple)) for m in metrics):
            if len(metrics) != len(self.outputs):
                raise ValueError(f"compile: metrics has {len(metrics)} lists but the model has "
                                 f"{len(self.outputs)} outputs")
            per = [list(m) for m in metrics]
        elif isinstance(metrics, dict):
            per = [_as_list(m) if m is not None else [] for m in self._per_output("metrics", metrics, None)]
        else:
            per = [list(metrics or [])] * len(self.outputs)
        self._metric_names = [[metrics_mod.get(m) for m in ms] for ms in per]
        self._metric_kinds = [[metrics_mod.kind(m, loss) for m in ms]
                              for ms, loss in zip(self._metric_names, self._losses)]
        self._setup_fusion()

    @property
    def loss(self):
        """The loss object (a list of them for a model with several outputs)."""
        if not self._losses:
            return None
        return self._losses[0] if len(self._losses) == 1 else list(self._losses)

    @property
    def metrics(self):
        """The metric names of the first output (Keras's compiled metric names)."""
        return list(self._metric_names[0]) if self._metric_names else []

    def _setup_fusion(self):
        # softmax + cross-entropy (sigmoid + binary cross-entropy): the output layer hands
        # its pre-activation to the fused kernel, when nothing else reads its output.
        self._fused_outputs = [False] * len(self.outputs)
        self._fused_nodes = set()
        if not (self.compiled and self._losses and self.outputs):
            return
        for i, (t, loss) in enumerate(zip(self.outputs, self._losses)):
            node, layer = t.node, t.node.layer
            ok = (loss.fuses_with is not None and not loss.from_logits and len(node.outputs) == 1
                  and getattr(layer, "activation", None) == loss.fuses_with and self._uses.get(id(t), 0) == 0
                  and self._calls.get(id(layer), 0) == 1 and sum(o is t for o in self.outputs) == 1)
            if ok:
                self._fused_outputs[i] = True
                self._fused_nodes.add(id(node))

    @property
    def _fused(self):
        return any(self._fused_outputs)

    def _log_names(self):
        """Keys of the logs: "loss", then per output "<name>_loss" (several outputs), then metrics."""
        if len(self.outputs) == 1:
            return ["loss"] + list(self._metric_names[0])
        names = ["loss"] + [f"{n}_loss" for n in self.output_names]
        for out, ms in zip(self.output_names, self._metric_names):
            names += [f"{out}_{m}" for m in ms]
        return names

    # ------------------------------------------------------------------ input checks
    def _ensure_built(self, xs):
        if not self.built:
            self.build()

    def _structure(self, op, what, data, tensors):
        """x (or y) as given -> a list with one array per model input (output)."""
        n = len(tensors)
        if isinstance(data, dict):
            names = [t.node.layer.name for t in tensors] if what == "x" else self.output_names
            unknown = set(data) - set(names)
            missing = [k for k in names if k not in data]
            if unknown or missing:
                raise ValueError(f"{op}: {what} is a dict with keys {sorted(data)} but the model's "
                                 f"{'inputs' if what == 'x' else 'outputs'} are {names}")
            return [data[k] for k in names]
        if n == 1 and isinstance(data, (list, tuple)) and len(data) == 1 and isinstance(data[0], np.ndarray):
            return [data[0]]
        if isinstance(data, (list, tuple)) and n > 1:
            if len(data) != n:
                raise ValueError(f"{op}: {what} has {len(data)} arrays but the model has {n} "
                                 f"{'inputs' if what == 'x' else 'outputs'}")
            return list(data)
        if n != 1:
            raise ValueError(f"{op}: the model has {n} {'inputs' if what == 'x' else 'outputs'}; pass {what} as a "
                             f"list or a dict of {n} arrays")
        return [data]

    def _first_reader(self, t):
        for node in self._nodes:
            if any(s is t for s in node.inputs):
                return node.layer
        return t.node.layer

    def _check_x(self, op, x):
        """-> a list of host arrays, one per input, checked and in the dtype the model reads."""
        if x is None:
            raise ValueError(f"{op}: x is required")
        if not self.inputs and isinstance(self, Sequential):
            self._build_from_data(op, x)
        xs = self._structure(op, "x", x, self.inputs)
        out = []
        n = None
        for i, (t, xi) in enumerate(zip(self.inputs, xs)):
            what = "x" if len(xs) == 1 else f"x[{i}]"
            out.append(self._check_one_input(op, what, t, xi))
            if n is None:
                n = xi.shape[0]
            elif xi.shape[0] != n:
                raise ValueError(f"{op}: the inputs have different lengths (x[0] has {n} samples, {what} has "
                                 f"{xi.shape[0]})")
        self._ensure_built(out)
        return out

    def _check_one_input(self, op, what, t, x):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{op}: {what} must be a numpy.ndarray, got {type(x).__name__}")
        layer = t.node.layer
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"{op}: {what} is empty or has no batch axis ({what}.shape={x.shape})")
        want = t.per_sample_shape
        if tuple(x.shape[1:]) != want:
            reader = self._first_reader(t)
            raise ValueError(f"{op}: {what} has per-sample shape {tuple(x.shape[1:])} but layer '{reader.name}' "
                             f"expects {want} ({what}.shape={x.shape}, expected (N, {', '.join(map(str, want))}))")
        if layer.is_int:
            if not np.issubdtype(x.dtype, np.integer):
                raise TypeError(f"{op}: {what} feeds the integer Input '{layer.name}' but has dtype {x.dtype}; "
                                f"pass integer token ids")
            self._check_ids(op, what, t, x)
            return np.ascontiguousarray(x, dtype=layer.input_dtype)
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"{op}: {what} has dtype {x.dtype} but the model runs in {self.dtype}; "
                            f"convert it first, e.g. {what}.astype('{self.dtype}') / 255")
        if x.dtype != self.dtype:
            raise TypeError(f"{op}: {what} has dtype {x.dtype} but the model runs in {self.dtype}; "
                            f"convert it with {what}.astype('{self.dtype}') (nothing is cast silently)")
        if not np.isfinite(x).all():
            bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
            raise ValueError(f"{op}: {what} holds {bad} NaN or infinite values; expected finite inputs")
        return x

    def _check_ids(self, op, what, t, x):
        """Token ids against every Embedding that reads them (on the host, once per call:
        the gpu then needs no range check, which would be a round trip per batch)."""
        lo, hi = int(x.min()), int(x.max())
        limit = np.iinfo(np.dtype(t.node.layer.input_dtype)).max
        if hi > limit:
            raise ValueError(f"{op}: {what} holds id {hi}, beyond the Input's {t.node.layer.input_dtype}")
        for node in self._nodes:
            if isinstance(node.layer, Embedding) and any(s is t for s in node.inputs):
                dim = node.layer.input_dim
                if lo < 0 or hi >= dim:
                    bad = lo if lo < 0 else hi
                    raise ValueError(f"{op}: {what} holds token id {bad}, out of range for layer "
                                     f"'{node.layer.name}' (Embedding with input_dim={dim}, ids in [0, {dim - 1}])")

    def _check_y(self, op, xs, y):
        """-> a list of host targets, one per output, ready for the loss kernels."""
        if y is None:
            raise ValueError(f"{op}: y is required")
        ys = self._structure(op, "y", y, self.outputs)
        n = xs[0].shape[0]
        out = []
        for i, (t, loss, yi) in enumerate(zip(self.outputs, self._losses, ys)):
            yi = np.asarray(yi)
            if yi.shape[:1] != (n,):
                raise ValueError(f"{op}: x and y have different lengths (x has {n} samples, y has "
                                 f"{yi.shape[0] if yi.ndim else 'no'} samples; x.shape={xs[0].shape}, "
                                 f"y.shape={yi.shape})")
            out.append(loss.check_targets(op, yi, t.per_sample_shape, self.dtype, t.node.layer.name))
        return out

    @staticmethod
    def _check_batch_size(op, batch_size):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"{op}: batch_size must be a positive int, got {batch_size!r}")
        return int(batch_size)

    def _require_compiled(self, op):
        if not self.compiled:
            raise RuntimeError(f"{op}: call model.compile(optimizer, loss, metrics) first")

    # ------------------------------------------------------------------ running the graph
    def _forward(self, xs, training, fuse=True):
        """xs: backend arrays, one per input -> backend outputs (logits for fused outputs)."""
        values = {id(t): x for t, x in zip(self.inputs, xs)}
        left = dict(self._uses)
        keep = {id(t) for t in self.outputs}
        self._node_states = {}
        masks = {}   # time-step masks, by tensor (Embedding(mask_zero=True) starts one)
        for node in self._nodes:
            layer = node.layer
            ins = [values[id(t)] for t in node.inputs]
            mask = masks.get(id(node.inputs[0])) if node.inputs else None
            kwargs = node.kwargs if mask is None else dict(node.kwargs, mask=mask)
            outs = layer.run_node(ins, training, fuse and id(node) in self._fused_nodes, kwargs)
            for t, m in zip(node.outputs, layer.output_masks(mask, ins, len(outs))):
                if m is not None:
                    masks[id(t)] = m
            if self._calls[id(layer)] > 1:
                self._node_states[id(node)] = layer.saved_state()
            for t, v in zip(node.outputs, outs):
                values[id(t)] = v
            for t in node.inputs:   # drop activations no later layer reads (layers keep what backward needs)
                left[id(t)] -= 1
                if left[id(t)] == 0 and id(t) not in keep:
                    values.pop(id(t), None)
        return [values[id(t)] for t in self.outputs]

    def _backward(self, douts):
        """Gradients from the outputs back through every node; parameter gradients land
        in each layer's `grads` (summed over the calls of a shared layer)."""
        be = self.be
        grads = {}
        owned = set()   # tensors whose gradient array the model allocated (safe to add into)

        def receive(t, d):
            key = id(t)
            if key not in grads:
                grads[key] = d
            elif key in owned:
                be.add(grads[key], d, out=grads[key])
            else:
                grads[key] = be.add(grads[key], d)
                owned.add(key)

        for t, d in zip(self.outputs, douts):
            receive(t, d)
        accumulated = {}
        for node in reversed(self._nodes):
            layer = node.layer
            dys = [grads.pop(id(t), None) for t in node.outputs]
            if id(node) in self._node_states:
                layer.restore_state(self._node_states[id(node)])
            layer.need_dx = any(id(t) not in self._input_ids and t.is_float for t in node.inputs)
            if all(d is None for d in dys):
                # Nothing downstream depends on this call (its output only sized another layer).
                layer.grads = {k: be.zeros(p.shape, p.dtype) for k, p in layer.params.items()}
                dxs = [None] * len(node.inputs)
            else:
                dxs = layer.backward_node(dys, id(node) in self._fused_nodes)
            if self._calls[id(layer)] > 1:
                if id(layer) in accumulated:
                    for k, g in layer.grads.items():
                        be.add(accumulated[id(layer)][k], g, out=accumulated[id(layer)][k])
                else:
                    accumulated[id(layer)] = {k: be.copy(g) for k, g in layer.grads.items()}
            for t, d in zip(node.inputs, dxs):
                if d is not None and id(t) not in self._input_ids:
                    receive(t, d)
        for layer in self.layers:
            if id(layer) in accumulated:
                layer.grads = accumulated[id(layer)]

    def _clear(self):
        for layer in self.layers:
            layer.clear()
        self._node_states = {}

    def _loss_terms(self, outs, ybs, penalty=True):
        """-> (loss, [per-output mean losses], [d output], [(hits, count) per metric]).

        loss is the weighted data losses (plus every regularization penalty, with penalty),
        summed on the backend and read back as one float: on the gpu one 8-byte download
        per step, not one per output and regularized array. Per-output means are read only
        for a model with several outputs (they are logged). Targets reached here through
        _check_y, which range-checked the labels on the host."""
        be = self.be
        if self._stats_fused():
            return self._fused_loss_terms(outs[0], ybs[0], penalty)
        # From the step's workspace (be.zeros would allocate every step), zeroed in place.
        total = be.empty((1,), np.float64)
        be.zero(total)
        several = len(self.outputs) > 1
        per_output, douts, stats = [], [], []
        for i, (out, yb, loss, w) in enumerate(zip(outs, ybs, self._losses, self._loss_weights)):
            fused = self._fused_outputs[i]
            compute = loss.compute_from_logits if fused else loss.compute
            losses, d = compute(be, out, yb, labels_checked=True)
            rows = losses.shape[0]
            be.sum(losses, into=total, scale=w / rows)
            if several:
                per_output.append(be.sum(losses) / rows)
            if w != 1.0:
                d = be.scale(d, w)
            douts.append(d)
            for kind in self._metric_kinds[i]:
                stats.append(metrics_mod.count(be, kind, out, yb, from_logits=fused))
        if penalty:
            for layer in self.layers:
                layer.regularization_penalty(into=total)
        return float(be.to_numpy(total)[0]), per_output, douts, stats

    def _stats_fused(self):
        """One output trained with softmax + cross-entropy (fused), weight 1, and only
        categorical accuracy as metrics: be.softmax_cross_entropy_stats gives the loss,
        its gradient, the mean and the hits in one op."""
        return (len(self.outputs) == 1 and self._fused_outputs[0] and self._losses[0].fuses_with == "softmax"
                and self._loss_weights[0] == 1.0 and all(k == "categorical" for k in self._metric_kinds[0]))

    def _fused_loss_terms(self, out, yb, penalty):
        """_loss_terms for _stats_fused models: one kernel on the gpu for the loss, gradient,
        mean loss and correct count; the penalties are added to the mean on the backend; one
        16-byte read."""
        be = self.be
        z2, t2 = self._losses[0]._rows(be, out, yb)
        _, d, stats = be.softmax_cross_entropy_stats(z2, t2, _labels_checked=True)
        if penalty:
            for layer in self.layers:
                layer.regularization_penalty(into=stats[0:1])
        mean, hits = (float(v) for v in be.to_numpy(stats))
        return mean, [], [be.reshape(d, out.shape)], [(int(hits), z2.shape[0]) for _ in self._metric_kinds[0]]

    def _penalty(self):
        return sum(layer.regularization_penalty() for layer in self.layers)

    def _update(self):
        params = [(key, layer.params[k], layer.grads[k], f"{layer.name}/{k}") for key, layer, k in self._params()]
        packed = self._packed
        if packed is not None and not packed.holds([(key, p, g) for key, p, g, _ in params]):
            packed = None
        self.optimizer.apply(self.be, params, packed=packed)

    # ------------------------------------------------------------------ packed parameters
    def _pack(self):
        """Put every weight in one flat backend array and have the layers write their
        gradients into a second one with the same layout, so that the optimizer can update
        every parameter with one kernel (nn/packed.py). Only for models whose layers with
        weights write packed gradients (Dense and Conv2D with a bias) and are called once
        (a shared layer's gradients are sums of copies); otherwise the optimizer steps each
        array. Arrays already in place stay; a weight replaced since (set_weights) is copied
        in again."""
        slots = self._params()
        layers = [layer for layer in self.layers if layer.params]
        if not slots or not all(getattr(layer, "packs_grads", False) and self._calls.get(id(layer), 0) == 1
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
        if xbs is not None:
            outs = self._forward(xbs, training=True)
            loss, per_output, douts, stats = self._loss_terms(outs, ybs)
        finite = math.isfinite(loss)
        for layer in self.layers:  # set again by each layer that writes packed gradients this step
            layer._grads_into = None
        if finite and douts is not None:
            self._backward(douts)
        if sync is not None:
            loss, per_output, stats = sync.reduce(loss, per_output, stats, have_grads=finite and douts is not None)
            finite = math.isfinite(loss)
        if not finite:
            # No update: non-finite gradients would overwrite the weights with NaN.
            return loss, per_output, stats, False
        self._update()
        return loss, per_output, stats, True

    def _batch_logs(self, loss, per_output, stats):
        values = [loss] + (per_output if len(self.outputs) > 1 else [])
        values += [hits / count for hits, count in stats]
        return dict(zip(self._log_names(), values))

    def compute_gradients(self, x, y):
        """(loss, [gradient of loss w.r.t. each array of get_weights()]) for one batch, as host
        NumPy, without updating anything. The loss is the training loss (weighted data losses
        plus regularization penalties); Dropout is active, as in training. For gradient checks."""
        op = "compute_gradients"
        self._require_compiled(op)
        xs = self._check_x(op, x)
        ys = self._check_y(op, xs, y)
        be = self.be
        try:
            outs = self._forward([be.asarray(a) for a in xs], training=True)
            loss, _, douts, _ = self._loss_terms(outs, [be.asarray(a) for a in ys])
            self._backward(douts)
            grads = [be.to_numpy(layer.grads[k]).copy() for _, layer, k in self._params()]
        finally:
            self._clear()
        return loss, grads

    def train_on_batch(self, x, y):
        """One optimizer step on (x, y); returns the loss (with metrics or several outputs:
        a list in evaluate's order). The step is fit's: the packed optimizer, and a workspace
        per batch shape (the model keeps the last few), so that from the second call of a
        shape on the step allocates nothing."""
        op = "train_on_batch"
        self._require_compiled(op)
        xs = self._check_x(op, x)
        ys = self._check_y(op, xs, y)
        be = self.be
        self._pack()
        try:
            with be.workspace(self._step_workspace(xs + ys)):
                loss, per_output, stats, ok = self._train_batch([be.asarray(a) for a in xs],
                                                                [be.asarray(a) for a in ys])
        finally:
            self._clear()
        if not ok:
            raise FloatingPointError(f"train_on_batch: the loss is {loss}; the weights were not updated")
        logs = self._batch_logs(loss, per_output, stats)
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    _STEP_WORKSPACES = 4   # batch shapes train_on_batch keeps a workspace for (a custom loop's full and last batch, ...)

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
        batch_size = self._check_batch_size(op, batch_size)
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"fit: epochs must be an int >= 0, got {epochs!r}")
        xs = self._check_x(op, x)
        ys = self._check_y(op, xs, y)
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split!r}")
        if validation_data is not None and validation_split:
            raise ValueError("fit: pass validation_data or validation_split, not both")
        n = xs[0].shape[0]
        if validation_split:
            # Keras holds out the last fraction, before any shuffling.
            split = int(n * (1.0 - float(validation_split)))
            if split == 0 or split == n:
                raise ValueError(f"fit: validation_split={validation_split} of {n} samples leaves "
                                 f"{split} for training and {n - split} for validation; both need >= 1")
            val = ([a[split:] for a in xs], [a[split:] for a in ys])
            xs, ys = [a[:split] for a in xs], [a[:split] for a in ys]
            n = split
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("fit: validation_data must be a pair (x_val, y_val)")
            vxs = self._check_x("fit (validation_data)", validation_data[0])
            val = (vxs, self._check_y("fit (validation_data)", vxs, validation_data[1]))
        else:
            val = None

        be = self.be
        # Several processes (distributed.init() under mpiexec): process 0's weights and
        # optimizer state everywhere, then each step on this process's share of the batch.
        comm = distributed.active()
        sync = distributed.FitSync(comm, self) if comm is not None else None
        if sync is not None:
            sync.begin()
            verbose = verbose if sync.chief else 0
        steps = (n + batch_size - 1) // batch_size
        arrays = xs + ys
        resident = sum(a.nbytes for a in arrays) <= _RESIDENT_BYTES
        if resident:
            on_device = [be.asarray(np.ascontiguousarray(a)) for a in arrays]

        history = callbacks_mod.History()
        cbs = list(callbacks or []) + [history]   # last, as in Keras: it sees what callbacks add to the logs
        for cb in cbs:
            cb.set_model(self)
        terminate_on_nan = any(isinstance(cb, callbacks_mod.TerminateOnNaN) for cb in cbs)
        progress = Progress(verbose, epochs, steps)
        self.stop_training = False
        self.history = history
        rng = utils.get_rng()
        names = self._log_names()
        n_in = len(xs)
        self._pack()
        workspaces = {}
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
                sums = [0.0] * (1 + (len(self.outputs) if len(self.outputs) > 1 else 0))
                hits = [[0, 0] for _ in range(len(names) - len(sums))]
                seen = 0
                for step in range(steps):
                    for cb in cbs:
                        cb.on_batch_begin(step)
                    lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
                    mine = (lo, hi) if sync is None else sync.share(lo, hi)
                    # One workspace per batch size (the last batch may be smaller): from the
                    # second step of a size on, the step's activations and gradients reuse
                    # its arrays and the step allocates nothing (kernels.backend.Workspace).
                    with be.workspace(workspaces.setdefault(hi - lo, Workspace())):
                        if mine[0] == mine[1]:
                            batch = [None] * (2 * n_in)   # no rows here this step (data parallel)
                        elif resident:
                            # order is a permutation of range(n): no range check (on the gpu,
                            # a round trip per call).
                            idx = order_dev[mine[0]:mine[1]]
                            batch = [be.take_rows(a, idx, _indices_checked=True) for a in on_device]
                        else:
                            idx = order[mine[0]:mine[1]]
                            batch = [be.asarray(a[idx]) for a in arrays]
                        loss, per_output, stats, ok = self._train_batch(batch[:n_in] if batch[0] is not None else None,
                                                                        batch[n_in:], sync)
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
                    seen += size
                    for j, v in enumerate([loss] + (per_output if len(sums) > 1 else [])):
                        sums[j] += v * size
                    for j, (h, c) in enumerate(stats):
                        hits[j][0] += h
                        hits[j][1] += c
                    running = dict(zip(names, [s / seen for s in sums] + [h / c for h, c in hits]))
                    progress.batch_end(step, running)
                    if self.stop_training:
                        break
                if seen == 0:
                    break
                logs = dict(running)
                if val is not None:
                    vals = self._evaluate_arrays(val[0], val[1], batch_size)
                    logs.update({f"val_{k}": v for k, v in zip(names, vals)})
                progress.epoch_end(epoch, logs)
                for cb in cbs:
                    cb.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:
            progress.close()
            self._clear()
            for cb in cbs:
                cb.on_train_end()
        return history

    # ------------------------------------------------------------------ evaluate, predict
    def _evaluate_arrays(self, xs, ys, batch_size):
        n = xs[0].shape[0]
        comm = distributed.active()
        if comm is None:
            sums, hits = self._evaluate_sums(xs, ys, batch_size)
        else:
            # Each process its consecutive share of the rows; the sums and counts added up.
            lo, hi = distributed.share(0, n, comm.rank, comm.size)
            sums, hits = self._evaluate_sums([a[lo:hi] for a in xs], [a[lo:hi] for a in ys],
                                             -(-batch_size // comm.size))
            sums, hits = comm.sum_counts(sums, hits)
        penalty = self._penalty()
        return [sums[0] / n + penalty] + [s / n for s in sums[1:]] + [h / c for h, c in hits]

    def _evaluate_sums(self, xs, ys, batch_size):
        """-> ([sum over rows of the data loss, then of each output's loss], [[hits, count]
        per metric]) over xs's rows (none: zeros)."""
        be = self.be
        n = xs[0].shape[0]
        names = self._log_names()
        n_losses = 1 + (len(self.outputs) if len(self.outputs) > 1 else 0)
        sums = [0.0] * n_losses
        hits = [[0, 0] for _ in range(len(names) - n_losses)]
        try:
            for lo in range(0, n, batch_size):
                xb = [be.asarray(np.ascontiguousarray(a[lo:lo + batch_size])) for a in xs]
                yb = [be.asarray(np.ascontiguousarray(a[lo:lo + batch_size])) for a in ys]
                size = xb[0].shape[0]
                outs = self._forward(xb, training=False)
                data_loss, per_output, _, stats = self._loss_terms(outs, yb, penalty=False)
                for j, v in enumerate([data_loss] + (per_output if n_losses > 1 else [])):
                    sums[j] += v * size
                for j, (h, c) in enumerate(stats):
                    hits[j][0] += h
                    hits[j][1] += c
        finally:
            self._clear()
        return sums, hits

    def evaluate(self, x=None, y=None, batch_size=32, verbose=1, return_dict=False):
        """[loss, *per-output losses, *metrics] (a float when that is just the loss)."""
        op = "evaluate"
        self._require_compiled(op)
        batch_size = self._check_batch_size(op, batch_size)
        xs = self._check_x(op, x)
        ys = self._check_y(op, xs, y)
        result = self._evaluate_arrays(xs, ys, batch_size)
        names = self._log_names()
        if verbose and distributed.is_chief():
            print(" - ".join(f"{k}: {v:.4f}" for k, v in zip(names, result)))
        if return_dict:
            return dict(zip(names, result))
        return result if len(result) > 1 else result[0]

    def predict(self, x, batch_size=32, verbose=0):
        """Model outputs (softmax probabilities for a softmax layer) as host arrays (a list
        of them for a model with several outputs)."""
        op = "predict"
        batch_size = self._check_batch_size(op, batch_size)
        xs = self._check_x(op, x)
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
            for lo in range(0, xs[0].shape[0], batch_size):
                xb = [be.asarray(np.ascontiguousarray(a[lo:lo + batch_size])) for a in xs]
                for acc, o in zip(outs, self._forward(xb, training=False, fuse=False)):
                    acc.append(be.to_numpy(o))
        finally:
            self._clear()
        if not outs[0]:   # no rows (a process of a data-parallel predict): empty outputs
            return [np.empty((0,) + tuple(t.per_sample_shape), self.dtype) for t in self.outputs]
        return [np.concatenate(o, axis=0) for o in outs]

    def __call__(self, x):
        if graph.is_symbolic(x) or (isinstance(x, (list, tuple)) and any(graph.is_symbolic(t) for t in x)):
            raise TypeError(f"model '{self.name}' cannot be called on symbolic tensors: nesting models is not "
                            f"supported; call its layers instead")
        return self.predict(x)

    # ------------------------------------------------------------------ weights
    def get_weights(self):
        if not self.built:
            return []
        return [self.be.to_numpy(layer.params[k]).copy() for _, layer, k in self._params()]

    def set_weights(self, weights):
        """Copies of the given arrays become the weights (Keras copies: training never writes
        into the caller's arrays)."""
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
        self._step_workspaces = {}
        self.be = new
        return self

    # ------------------------------------------------------------------ summary, config, saving
    def _connected_to(self, layer):
        parts = []
        index = self._node_indices()
        for node in self._nodes:
            if node.layer is layer:
                parts += [f"{t.node.layer.name}[{index[id(t.node)]}][{t.index}]" for t in node.inputs]
        return ", ".join(parts) or "-"

    def _node_indices(self):
        """Each node's position among its layer's calls in this model (Input nodes: 0)."""
        index, counts = {}, {}
        for t in self.inputs:
            index[id(t.node)] = 0
        for node in self._nodes:
            index[id(node)] = counts.get(id(node.layer), 0)
            counts[id(node.layer)] = index[id(node)] + 1
        return index

    def _summary_rows(self):
        rows = []
        for layer in self.layers:
            nodes = [n for n in self._nodes if n.layer is layer] or [t.node for t in self.inputs
                                                                      if t.node.layer is layer]
            shapes = [t.shape for t in nodes[0].outputs] if nodes else []
            shape = "?" if not shapes else ", ".join(map(str, shapes))
            params = str(layer.count_params()) if layer.built else "0 (unbuilt)"
            rows.append((f"{layer.name} ({type(layer).__name__})", shape, params, self._connected_to(layer)))
        return rows

    def summary(self, print_fn=None):
        print_fn = print_fn or print
        connected = not isinstance(self, Sequential)
        header = ("Layer (type)", "Output Shape", "Param #") + (("Connected to",) if connected else ())
        rows = [header] + [r if connected else r[:3] for r in self._summary_rows()]
        widths = (29, 26, 10) + ((30,) if connected else ())
        line = lambda r: "".join((c + " ").ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
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
        index = self._node_indices()

        def ref(t):
            return [t.node.layer.name, index[id(t.node)], t.index]

        return {"class_name": "Functional", "name": self.name, "dtype": self.dtype.name,
                "layers": [{"class_name": type(l).__name__, "config": l.get_config()} for l in self.layers],
                "nodes": [{"layer": n.layer.name, "inputs": [ref(t) for t in n.inputs], "kwargs": n.kwargs}
                          for n in self._nodes],
                "inputs": [ref(t) for t in self.inputs], "outputs": [ref(t) for t in self.outputs],
                "single_input": self._single_input, "single_output": self._single_output}

    @classmethod
    def from_config(cls, config, backend=None):
        """Rebuild a model (uncompiled, freshly initialized) from get_config()."""
        layers = {}
        tensors = {}
        for entry in config["layers"]:
            layer = layers_mod.from_config(entry["class_name"], entry["config"])
            if layer.name in layers:
                raise ValueError(f"two layers are named {layer.name!r}")
            layers[layer.name] = layer
            if isinstance(layer, InputLayer):
                tensors[(layer.name, 0, 0)] = layer.output
        calls = {}
        for node in config["nodes"]:
            layer = layers[node["layer"]]
            ins = [tensors[tuple(r)] for r in node["inputs"]]
            outs = _as_list(layer.call_from_node(ins, node["kwargs"]))
            k = calls.get(layer.name, 0)
            calls[layer.name] = k + 1
            for j, t in enumerate(outs):
                tensors[(layer.name, k, j)] = t
        inputs = [tensors[tuple(r)] for r in config["inputs"]]
        outputs = [tensors[tuple(r)] for r in config["outputs"]]
        model = cls.__new__(cls)
        Model.__init__(model, name=config["name"], dtype=config["dtype"])
        model._init_graph(inputs[0] if config.get("single_input") else inputs,
                          outputs[0] if config.get("single_output") else outputs)
        model.build(backend)
        return model

    def save(self, filepath):
        if keras_file.is_keras_path(filepath):
            return keras_file.save_model(self, filepath)
        saving.save_model(self, filepath)


class Sequential(Model):
    """A linear stack of layers: the functional graph Input -> layer 1 -> ... -> layer n."""

    def __init__(self, layers=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._stack = []
        self._declared_shape = None
        for layer in layers or []:
            self.add(layer)

    @staticmethod
    def _default_name():
        return "sequential"

    @property
    def layers(self):
        return list(self._stack)

    @property
    def input_shape(self):
        if self.inputs:
            return super().input_shape
        return self._declared_shape or (self._stack[0].input_shape if self._stack else None)

    def add(self, layer):
        if graph.is_symbolic(layer) and isinstance(layer.node.layer, InputLayer):
            if self._stack:
                raise ValueError("Sequential.add: an nn.Input can only come first")
            self._declared_shape = layer.per_sample_shape
            return
        if not isinstance(layer, Layer) or isinstance(layer, InputLayer):
            raise TypeError(f"Sequential.add: expected an nn.layers layer, got {type(layer).__name__}")
        if layer.multi_input:
            raise TypeError(f"Sequential.add: layer '{layer.name}' ({type(layer).__name__}) takes several inputs; "
                            f"use the functional API (nn.models.Model)")
        if layer.built:
            raise ValueError(f"Sequential.add: layer '{layer.name}' already belongs to a built model")
        if any(l.name == layer.name for l in self._stack):
            raise ValueError(f"Sequential.add: a layer named '{layer.name}' is already in the model")
        self._stack.append(layer)
        self.built = False
        self.inputs, self.outputs = [], []
        if self._declared_shape is not None or self._stack[0].input_shape is not None:
            self.build()

    def build(self, input_shape=None, backend=None):
        """Wire the stack on per-sample `input_shape` (the first layer's, or an added
        nn.Input's, unless given) and create every layer's parameters on the backend."""
        if not self._stack:
            raise ValueError("Sequential.build: the model has no layers")
        if input_shape is None:
            input_shape = self._declared_shape or self._stack[0].input_shape
        if input_shape is None:
            raise ValueError("Sequential.build: the first layer has no input_shape; pass input_shape=... "
                             "to it or call fit/predict so the model learns it from x")
        shape = tuple(int(s) for s in input_shape)
        first = self._stack[0]
        if first.input_shape is not None and first.input_shape != shape:
            raise ValueError(f"layer '{first.name}': declared input_shape={first.input_shape} but it receives {shape}")
        for layer in self._stack:
            layer.inbound_nodes = []   # the stack owns its layers: rewiring replaces their calls
        x = InputLayer(shape, name=_auto_name("input_layer")).output
        inp = x
        for i, layer in enumerate(self._stack):
            if i > 0 and layer.input_shape is not None and layer.input_shape != x.per_sample_shape:
                layer.input_shape = None   # a new input shape upstream: the layer is rebuilt
            x = layer(x)
        self._init_graph(inp, x)
        super().build(backend)
        if self.compiled:
            self._resolve_compile()

    def _build_from_data(self, op, x):
        if isinstance(x, np.ndarray) and x.ndim >= 2:
            if not self._stack:
                raise ValueError(f"{op}: the model has no layers")
            self.build(self._stack[0].input_shape or x.shape[1:])
        elif not self._stack:
            raise ValueError(f"{op}: the model has no layers")

    def get_config(self):
        return {"class_name": "Sequential", "name": self.name, "dtype": self.dtype.name,
                "layers": [{"class_name": type(l).__name__, "config": l.get_config()} for l in self._stack]}


def load_model(filepath, backend=None):
    """Rebuild a model saved by model.save (compiled, with its optimizer state, when it was).

    Any defect of the file raises nn.saving.InvalidModelFile (a ValueError) saying what is
    wrong; only the archive members the config names are read, each checked against the
    architecture before its data is read (see nn/saving.py)."""
    filepath = os.fspath(filepath)
    if keras_file.is_keras_path(filepath):
        return keras_file.load_model(filepath, backend, sequential=Sequential, functional=Model)
    be = kernels.get_backend(backend) if backend is not None else None
    with saving.open_model_file(filepath) as (config, archive):
        try:
            mcfg = config["model"]
            if mcfg.get("class_name", "Sequential") == "Sequential":
                model = Sequential(name=mcfg["name"], dtype=mcfg["dtype"])
                for entry in mcfg["layers"]:
                    model.add(layers_mod.from_config(entry["class_name"], entry["config"]))
                model.build(backend=be)
            elif mcfg["class_name"] == "Functional":
                model = Model.from_config(mcfg, backend=be)
            else:
                raise ValueError(f"unknown model class {mcfg['class_name']!r}")
        except Exception as exc:  # a config can hold any JSON: every failure is the file's
            raise saving.bad_file(filepath, f"its architecture cannot be rebuilt ({type(exc).__name__}: {exc})") \
                from exc
        return saving.restore_state(model, config, archive, filepath)
