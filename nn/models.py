"""Model (Keras's functional API) and Sequential, its special case: layers wired into a
graph of nodes, trained through backend ops only.

    x = nn.Input((28, 28, 1))
    y = Dense(10, activation="softmax")(Flatten()(x))
    model = Model(x, y)

Where each job lives:
  nn/graph.py               the graph: the nodes from the inputs to the outputs, run
                            forward in order and backward in reverse order
  nn/trainers/trainer.py    compile, fit, evaluate, predict, train_on_batch (Model inherits
                            them); trainers/data_adapter.py checks x and y,
                            trainers/epoch_iterator.py takes batches to the backend
  nn/compile_utils.py       what compile resolves: losses, loss weights and metrics per
                            output, fused outputs, the step's loss terms
  nn/summary_utils.py       summary()
  nn/saving.py              the .npz file behind save() and load_model()
This module: building the layers on a backend, weights, regularization penalties,
moving between backends, config, and Sequential's stack.
"""
import os

import numpy as np

from numbanet import kernels
from numbanet.nn import graph
from numbanet.nn import keras_file
from numbanet.nn import layers as layers_mod
from numbanet.nn import saving, summary_utils, utils
from numbanet.nn.graph import as_list
from numbanet.nn.layers.base import Layer, _counters
from numbanet.nn.layers.input_layer import InputLayer, stack_input_dtype
from numbanet.nn.trainers.trainer import Trainer


def _auto_name(base):
    n = next(_counters[base])
    return base if n == 0 else f"{base}_{n}"


def _per_sample_shapes(tensors):
    """The one tensor's per-sample shape, a list of them for several, None for none."""
    shapes = [t.per_sample_shape for t in tensors]
    return None if not shapes else shapes[0] if len(shapes) == 1 else shapes


class Model(Trainer):
    """Model(inputs, outputs): the layers between nn.Input tensors and output tensors."""

    def __init__(self, inputs=None, outputs=None, name=None, dtype=None):
        self.name = name if name is not None else _auto_name(self._default_name())
        self.dtype = np.dtype(utils.check_float_name(type(self).__name__,
                                                     utils.floatx() if dtype is None else dtype))
        self.built = False
        self.be = None
        self._graph = None   # nn/graph.Graph, once the inputs and outputs are known
        self._single_input = self._single_output = True
        self._init_trainer()
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
        self._single_input = not isinstance(inputs, (list, tuple))
        self._single_output = not isinstance(outputs, (list, tuple))
        self._graph = graph.Graph(inputs, outputs, f"Model '{self.name}'")
        self.built = False

    # The graph's own lists (read every step: no copy), empty before the graph exists.
    inputs = utils.list_of("_graph", "inputs")
    outputs = utils.list_of("_graph", "outputs")

    @property
    def layers(self):
        return list(self._graph.layers) if self._graph is not None else []

    # Per-sample shapes (no batch axis), as numbanet's layers report them; t.shape of a
    # model input or output tensor gives Keras's (None, ...) form.
    @property
    def input_shape(self):
        return _per_sample_shapes(self.inputs)

    @property
    def output_shape(self):
        return _per_sample_shapes(self.outputs)

    @property
    def output_names(self):
        names = []
        for t in self.outputs:
            base = t.node.layer.name
            names.append(base if t.index == 0 else f"{base}_{t.index}")
        return names

    def build(self, backend=None):
        """Every layer's parameters on the backend (the process default unless given), in
        the model's float type: the weights its layers made at their symbolic calls, moved
        there, or made now for a layer wired without them (Layer.build_for_model)."""
        self.be = backend if backend is not None else (self.be or kernels.get_backend())
        be = self.be
        for t in self.inputs:
            t.node.layer.build(t.per_sample_shape, be, self.dtype)
        done = set()
        for node in self._graph.nodes:
            layer = node.layer
            if id(layer) not in done:
                shapes = [t.per_sample_shape for t in node.inputs]
                layer.build_for_model(shapes if layer.multi_input else shapes[0], be, self.dtype)
                done.add(id(layer))
        self.built = True
        if self.compiled:
            self._resolve_compile()

    def _build_for_data(self, op, x):
        """Called with fit/evaluate/predict's x before it is checked: a Sequential without an
        input shape learns it here."""

    def __call__(self, x):
        if graph.is_symbolic(x) or (isinstance(x, (list, tuple)) and any(graph.is_symbolic(t) for t in x)):
            raise TypeError(f"model '{self.name}' cannot be called on symbolic tensors: nesting models is not "
                            f"supported; call its layers instead")
        return self.predict(x)

    def _params(self):
        """[(key, layer, param name)] in get_weights order."""
        return [(f"{i}/{k}", layer, k) for i, layer in enumerate(self.layers) for k in layer.params]

    def _trainable_params(self):
        """_params() without the non-trainable weights (the ones with gradients and an
        optimizer step), in the same order."""
        return [(key, layer, k) for key, layer, k in self._params() if k not in layer.non_trainable]

    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    def get_layer(self, name=None, index=None):
        """The layer named `name`, or the one at `index` of `layers` (Keras's Model.get_layer)."""
        if (name is None) == (index is None):
            raise ValueError(f"model '{self.name}': get_layer takes a name or an index, not {'both' if name else 'neither'}")
        layers = self.layers
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int) or not -len(layers) <= index < len(layers):
                raise ValueError(f"model '{self.name}': layer index {index!r} out of range; the model has "
                                 f"{len(layers)} layers")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"model '{self.name}': no layer named {name!r}; its layers are "
                         f"{[layer.name for layer in layers]}")

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

    # ------------------------------------------------------------------ regularization
    # Keras's way: a weight created with a regularizer (Layer.add_weight) adds its penalty
    # to the training loss, and the penalty's gradient to the weight's gradient; the model
    # collects both from its weights, once per weight (a shared layer's too).
    def _regularized(self):
        """[(regularizer, layer, weight name)] of every weight created with a regularizer."""
        return [(reg, layer, k) for layer in self.layers for k, reg in layer.regularizers.items()]

    def _penalty_adder(self, regularized):
        """-> add(into): every penalty added to the backend float64 (1,) array into (no
        download per weight); None when no weight has a regularizer."""
        if not regularized:
            return None

        def add(into):
            for reg, layer, k in regularized:
                reg.penalty(self.be, layer.params[k], into)
        return add

    def _penalty(self):
        """The sum of the penalties, a host float."""
        return sum(reg.penalty(self.be, layer.params[k]) for reg, layer, k in self._regularized())

    def _add_penalty_gradients(self, regularized):
        """Each penalty's gradient added into its weight's gradient (in place)."""
        for reg, layer, k in regularized:
            reg.add_gradient(self.be, layer.params[k], layer.grads[k])

    # ------------------------------------------------------------------ summary, config, saving
    def summary(self, print_fn=None):
        summary_utils.print_summary(self, print_fn or print, connections=not isinstance(self, Sequential))

    def get_config(self):
        index = self._graph.node_indices()

        def ref(t):
            return [t.node.layer.name, index[id(t.node)], t.index]

        return {"class_name": "Functional", "name": self.name, "dtype": self.dtype.name,
                "layers": [{"class_name": type(l).__name__, "config": l.get_config()} for l in self.layers],
                "nodes": [{"layer": n.layer.name, "inputs": [ref(t) for t in n.inputs], "kwargs": n.kwargs}
                          for n in self._graph.nodes],
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
            outs = as_list(layer.call_from_node(ins, node["kwargs"]))
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
        self._declared_shape = None   # an added nn.Input's per-sample shape and dtype
        self._declared_dtype = None
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
            self._declared_dtype = layer.node.layer.input_dtype
            return
        if not isinstance(layer, Layer) or isinstance(layer, InputLayer):
            raise TypeError(f"Sequential.add: expected an nn.layers layer, got {type(layer).__name__}")
        if layer.multi_input:
            raise TypeError(f"Sequential.add: layer '{layer.name}' ({type(layer).__name__}) takes several inputs; "
                            f"use the functional API (nn.models.Model)")
        if any(l.name == layer.name for l in self._stack):
            raise ValueError(f"Sequential.add: a layer named '{layer.name}' is already in the model")
        self._stack.append(layer)
        self.built = False
        self._graph = None
        if self._declared_shape is not None or self._stack[0].input_shape is not None:
            self.build()

    def build(self, input_shape=None, backend=None):
        """Wire the stack on per-sample `input_shape` (the first layer's, or an added
        nn.Input's, unless given) and create every layer's parameters on the backend. The
        input reads token ids when the first layer does (an Embedding), floats otherwise."""
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
        dtype = stack_input_dtype(self._declared_dtype, first)
        x = InputLayer(shape, dtype=dtype, name=_auto_name("input_layer")).output
        inp = x
        for i, layer in enumerate(self._stack):
            if i > 0 and not layer.built and layer.input_shape not in (None, x.per_sample_shape):
                layer.input_shape = None   # Keras reads input_shape on the first layer only
            x = layer(x)
        self._init_graph(inp, x)
        super().build(backend)

    def _build_for_data(self, op, x):
        if self._graph is not None:
            return
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
