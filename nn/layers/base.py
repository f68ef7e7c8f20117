"""The Layer base: called on symbolic tensors to wire a model, built on its first call
(where its input shapes become known, as in Keras), then forward(x, training) and
backward(dy).

Parameters and their gradients are backend arrays held in `self.params` and
`self.grads` (dicts in get_weights order: "kernel" then "bias", ...). A layer creates its
weights in build_weights with add_weight, as Keras's layers do; a weight created with a
regularizer is listed in `self.regularizers`, and the model adds every such penalty to
the loss and its gradient to the weight's (Model.add_penalties, add_penalty_gradients). A weight
created with trainable=False (BatchNormalization's moving statistics) is named in
`self.non_trainable`: the layer updates it itself, it has no gradient, and the optimizer
and the data-parallel gradient Allreduce leave it out. Activations are
kept between forward and backward only as backend arrays, in attributes whose names
start with `_saved` (clear() drops them; a model that calls one layer at two places
swaps them per call).

A layer with one input and one output implements forward(x, training, logits) and
backward(dy, logits) -> dx. A layer with several inputs or outputs sets `multi_input`
and/or overrides `run_node` / `backward_node`, which receive and return lists.
"""
import contextlib
import itertools
from collections import defaultdict

import numpy as np

from numbanet import kernels
from numbanet.kernels import shapes
from numbanet.nn import activations, graph, initializers, regularizers, utils
from numbanet.nn.layers.arguments import int_tuple

_counters = defaultdict(itertools.count)

# Above zero inside calls_without_building().
_wiring_only = 0


@contextlib.contextmanager
def calls_without_building():
    """Symbolic calls inside wire the graph but create no weights: a file's loader wires
    the architecture it reads and checks the sizes it declares before anything is
    allocated; the model built from it then builds its layers."""
    global _wiring_only
    _wiring_only += 1
    try:
        yield
    finally:
        _wiring_only -= 1


def _snake(name):
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and name[i - 1].islower():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _shape_tuple(owner, name, shape):
    shape = int_tuple(owner, name, shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"{owner}: {name} must be a non-empty tuple of positive ints, got {shape!r}")
    return shape


class Layer:
    # Several input tensors (a list of shapes at build time, a list of arrays at run time).
    multi_input = False
    # The layer reads integer token ids (an Embedding), never floats; every other layer
    # reads floats only.
    reads_ids = False

    def __init__(self, name=None, input_shape=None):
        base = _snake(type(self).__name__)
        if name is None:
            n = next(_counters[base])
            name = base if n == 0 else f"{base}_{n}"
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"{type(self).__name__}: name must be a non-empty string without '/', got {name!r}")
        self.name = name
        self.input_shape = None if input_shape is None else _shape_tuple(self.name, "input_shape", input_shape)
        self.output_shape = None
        self.built = False
        self.be = None
        self.dtype = None
        self.params = {}
        self.grads = {}
        # {weight name: regularizer} of the weights add_weight created with one.
        self.regularizers = {}
        # Names of the weights add_weight created with trainable=False.
        self.non_trainable = ()
        # A layer that feeds on the model's input needs no dx.
        self.need_dx = True
        # Where backward writes its weights' gradients when the model packs them (nn/packed.py).
        self.grad_buffer = None
        self.inbound_nodes = []
        # The library RNG's state before the weights were drawn at a symbolic call, kept
        # until a model takes the layer (see build_for_model).
        self._drawn_from = None

    # ------------------------------------------------------------------ wiring (symbolic calls)
    def __call__(self, *args, **kwargs):
        tensors, call_kwargs = self.parse_call(*args, **kwargs)
        for t in tensors:
            if not graph.is_symbolic(t):
                raise TypeError(f"layer '{self.name}' ({type(self).__name__}) was called on {type(t).__name__}; "
                                f"layers are called on symbolic tensors (nn.Input(...) or another layer's output) "
                                f"to build a model, then model.predict(x) computes values")
        if not tensors:
            raise ValueError(f"layer '{self.name}': called without an input tensor")
        for t in tensors:
            if not t.is_float and not self.reads_ids:
                raise TypeError(f"layer '{self.name}' ({type(self).__name__}) needs float inputs, got a {t.dtype} "
                                f"tensor {t.shape}; integer token ids go through an Embedding first")
            if t.is_float and self.reads_ids:
                raise TypeError(f"layer '{self.name}' ({type(self).__name__}) reads integer token ids, got a float "
                                f"tensor {t.shape}; declare the input as nn.Input(shape, dtype='int32') (float ids "
                                f"are not cast)")
        shapes = [t.per_sample_shape for t in tensors]
        arg = shapes if self.multi_input else shapes[0]
        out_shapes = self.output_shapes(arg, call_kwargs)
        if self.built and self.input_shape != arg:
            # Its weights were made for the first call's shapes (Keras refuses such a call too).
            raise ValueError(f"layer '{self.name}' ({type(self).__name__}) was built on input shape(s) "
                             f"{self.input_shape} and is now called on {arg}; a layer keeps the shapes of its "
                             f"first call (make a new layer for other shapes)")
        if not self.built and not _wiring_only:
            self._build_on_call(arg)
        node = graph.Node(self, tensors, call_kwargs)
        node.outputs = [graph.KerasTensor(s, graph.FLOAT, node, i) for i, s in enumerate(out_shapes)]
        self.inbound_nodes.append(node)
        return node.outputs[0] if len(node.outputs) == 1 else tuple(node.outputs)

    def parse_call(self, *args, **kwargs):
        """The call's arguments -> (input tensors, JSON keyword arguments for the node)."""
        if len(args) != 1 or kwargs:
            extra = f" and keyword arguments {sorted(kwargs)}" if kwargs else ""
            raise TypeError(f"layer '{self.name}' ({type(self).__name__}) takes one input tensor, "
                            f"got {len(args)} positional argument(s){extra}")
        x = args[0]
        if self.multi_input:
            if not isinstance(x, (list, tuple)):
                raise TypeError(f"layer '{self.name}' ({type(self).__name__}) is called on a list of tensors, "
                                f"got {type(x).__name__}")
            return list(x), {}
        return [x], {}

    def call_from_node(self, tensors, kwargs):
        """Re-make a saved node: call the layer on `tensors` with the node's kwargs."""
        return self(list(tensors) if self.multi_input else tensors[0], **kwargs)

    def output_shapes(self, input_shape, kwargs):
        """A list of per-sample output shapes for the given input shape(s) and call kwargs."""
        return [self.compute_output_shape(input_shape)]

    # ------------------------------------------------------------------ building
    def build(self, input_shape, be, dtype):
        """Check input_shape (without the batch axis; a list of them for multi-input layers),
        create the parameters on `be`."""
        if self.multi_input:
            input_shape = [_shape_tuple(self.name, "input shape", s) for s in input_shape]
        else:
            input_shape = _shape_tuple(self.name, "input shape", input_shape)
            if self.input_shape is not None and self.input_shape != input_shape:
                raise ValueError(f"layer '{self.name}': declared input_shape={self.input_shape} but it receives "
                                 f"{input_shape}")
        self.input_shape = input_shape
        self.be, self.dtype = be, np.dtype(dtype)
        self._drawn_from = None
        self.output_shape = self.compute_output_shape(input_shape)
        self.params, self.regularizers, self.non_trainable = {}, {}, ()
        self.build_weights(input_shape)
        self.grads = {}
        self.grad_buffer = None
        self.built = True
        return self.output_shape

    def _build_on_call(self, input_shape):
        """Keras's rule: a layer builds on its first symbolic call, so its weights exist (in
        Keras's shapes) before any model does. They go to the process default backend in
        floatx(); build_for_model moves them to the model's backend and float type."""
        state = utils.get_rng().bit_generator.state
        self.build(input_shape, kernels.get_backend(), utils.floatx())
        self._drawn_from = state

    def build_for_model(self, input_shape, be, dtype):
        """Model.build: the layer's weights become the model's (a layer built at its call
        keeps the weights it drew there; no second initialisation). Another float type
        draws them again from the RNG state they were drawn from: initializers draw in
        float64 and cast, so a float64 model gets exactly the values a float64 build would
        have drawn. Weights a model already trained are never cast to another type."""
        dtype = np.dtype(dtype)
        if not self.built:   # wired by calls_without_building
            self.build(input_shape, be, dtype)
        elif self.dtype != dtype:
            if self._drawn_from is None:
                raise ValueError(f"layer '{self.name}' holds {self.dtype.name} weights that a model has already "
                                 f"taken; a {dtype.name} model cannot share them (numbanet casts nothing): build "
                                 f"both models in one float type")
            with utils.rng_at(self._drawn_from):
                self.build(input_shape, be, dtype)
        elif self.be is not be:
            self.move_to(be)
        self._drawn_from = None

    def compute_output_shape(self, input_shape):
        return input_shape

    def build_weights(self, input_shape):
        """Create the layer's weights with add_weight, in get_weights order."""

    def add_weight(self, name, shape, initializer, regularizer=None, fans=None, trainable=True):
        """A new weight on the layer's backend (Keras's add_weight). initializer: a name
        from numbanet.nn.initializers (fans=(fan_in, fan_out) overriding the shape's fans), or the
        initial values as a host array of `shape`. A regularizer's penalty joins the
        model's loss. trainable=False: a state the layer updates itself (no gradient, no
        optimizer step, no regularizer)."""
        shape = tuple(int(s) for s in shape)
        if isinstance(initializer, np.ndarray):
            if initializer.shape != shape:
                raise ValueError(f"layer '{self.name}': the initial value of {name} has shape {initializer.shape}, "
                                 f"expected {shape}")
            value = np.ascontiguousarray(initializer, dtype=self.dtype)
        else:
            value = initializers.initialize(initializer, shape, self.dtype, fans=fans)
        self.params[name] = self.be.asarray(value)
        if not trainable:
            if regularizer is not None:
                raise ValueError(f"layer '{self.name}': the non-trainable weight {name} cannot have a regularizer")
            self.non_trainable += (name,)
        if regularizer is not None:
            self.regularizers[name] = regularizer
        return self.params[name]

    def count_params(self):
        return int(sum(int(np.prod(p.shape)) for p in self.params.values()))

    def count_non_trainable_params(self):
        return int(sum(int(np.prod(self.params[k].shape)) for k in self.non_trainable))

    def get_weights(self):
        """The layer's parameters as host NumPy arrays, in Keras's order."""
        return [self.be.to_numpy(p).copy() for p in self.params.values()]

    # ------------------------------------------------------------------ running
    def forward(self, x, training=False, logits=False):
        raise TypeError(f"{type(self).__name__} must define forward")

    def backward(self, dy, logits=False):
        raise TypeError(f"{type(self).__name__} must define backward")

    def run_node(self, inputs, training, logits, kwargs):
        """inputs: list of backend arrays -> list of outputs."""
        return [self.forward(inputs[0], training=training, logits=logits)]

    def backward_node(self, douts, logits):
        """douts: list (one per output; None where no gradient arrives) -> list of d(inputs)
        (None where an input needs none)."""
        return [self.backward(douts[0], logits=logits)]

    # Layers that pass a time-step mask on unchanged (Keras's supports_masking): Dense,
    # Dropout, Activation, LayerNormalization. Others drop it.
    supports_masking = False

    def output_masks(self, mask, inputs, n_outputs):
        """The masks of this call's outputs, given the mask of its first input (None: no
        mask): a (batch, steps) backend array whose zero entries mark padded steps."""
        return [mask if self.supports_masking else None] * n_outputs

    def clear(self):
        """Drop the activations kept for backward."""
        for key in [k for k in vars(self) if k.startswith("_saved")]:
            setattr(self, key, None)

    def saved_state(self):
        return {k: v for k, v in vars(self).items() if k.startswith("_saved")}

    def restore_state(self, state):
        for k, v in state.items():
            setattr(self, k, v)

    # ------------------------------------------------------------------ moving, config
    def move_to(self, be):
        old = self.be
        self.params = {k: be.asarray(old.to_numpy(v)) for k, v in self.params.items()}
        self.grads = {}
        self.grad_buffer = None
        self.clear()
        self.be = be

    def get_config(self):
        cfg = {"name": self.name}
        if self.input_shape is not None and not self.multi_input:
            cfg["input_shape"] = list(self.input_shape)
        return cfg

    # ------------------------------------------------------------------ shared helpers
    @property
    def activation_name(self):
        return activations.name_of(getattr(self, "activation", "linear"))

    def _set_weight_args(self, **args):
        """Keras's per-weight arguments `<weight>_initializer=` and `<weight>_regularizer=` ->
        attributes of the same names, resolved by initializers.get / regularizers.get."""
        for key, value in args.items():
            get = {"initializer": initializers.get, "regularizer": regularizers.get}[key.rsplit("_", 1)[-1]]
            setattr(self, key, get(value))

    def _weight_args_config(self, names, stats=()):
        """get_config's entries for them: the initializers of the weights `names` and of the
        non-trainable `stats`, then the regularizers of `names`, serialized."""
        cfg = {f"{n}_initializer": getattr(self, f"{n}_initializer") for n in names + stats}
        cfg.update({f"{n}_regularizer": regularizers.serialize(getattr(self, f"{n}_regularizer")) for n in names})
        return cfg


class ActivationMixin:
    """Applies self.activation after the layer's linear part; `logits=True` skips it
    (the model then hands the pre-activation to a fused loss: softmax + cross-entropy,
    sigmoid + binary cross-entropy).

    relu, sigmoid and tanh are applied by the GEMM / convolution itself, as it writes its
    output (`_epilogue` names the one to pass to be.matmul / be.conv2d): one pass over the
    output instead of two, and one kernel launch less. Layers whose op takes the
    activation set fuses_activation = True."""
    fuses_activation = False

    def _epilogue(self, logits):
        if logits or not self.fuses_activation or self.activation not in shapes.EPILOGUE_ACTIVATIONS:
            return "linear"
        return self.activation

    def _activate(self, z, logits):
        if logits or self.activation == "linear":
            self._saved_a = None
            return z
        if self._epilogue(logits) != "linear":
            self._saved_a = z  # already activated by the op's epilogue (relu, sigmoid, tanh: y is saved)
            return z
        a = activations.forward(self.be, self.activation, z)
        self._saved_a = z if activations.needs_input(self.activation) else a
        return a

    def _deactivate(self, dy, logits):
        if logits or self.activation == "linear":
            return dy
        return activations.backward(self.be, self.activation, self._saved_a, dy)


class KernelBiasMixin:
    """A kernel and an optional bias with Keras's arguments (Dense, Conv2D), whose
    gradients the backend op writes into one buffer when the model packs them."""

    def _init_kernel_bias(self, activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                          bias_regularizer):
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self._set_weight_args(kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                              kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer)

    @property
    def packs_grads(self):
        """dw and db land in one buffer (grads=...): with a bias, they fill it exactly."""
        return self.use_bias

    def _add_kernel_bias(self, kernel_shape, units):
        self.add_weight("kernel", kernel_shape, self.kernel_initializer, self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (units,), self.bias_initializer, self.bias_regularizer)

    def _set_kernel_bias_grads(self, dw, db):
        """The backend op computed db with or without a bias; grads_into: see nn/packed.py."""
        self._grads_into = self.grad_buffer
        self.grads = {"kernel": dw, "bias": db} if self.use_bias else {"kernel": dw}

    def _kernel_bias_config(self):
        return dict(activation=self.activation, use_bias=self.use_bias,
                    **self._weight_args_config(("kernel", "bias")))
