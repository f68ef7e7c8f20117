"""The Layer base: build on a known input shape, forward(x, training) and backward(dy).

Parameters and their gradients are backend arrays held in `self.params` and
`self.grads` (dicts keyed by "kernel" / "bias", in that order). Activations are kept
between forward and backward only as backend arrays.
"""
import itertools
from collections import defaultdict

import numpy as np

from numbanet.kernels import shapes
from numbanet.nn import activations

_counters = defaultdict(itertools.count)


def _snake(name):
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and name[i - 1].islower():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _shape_tuple(owner, name, shape):
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"{owner}: {name} must be a tuple of ints, got {shape!r}") from None
    if not shape or min(shape) < 1:
        raise ValueError(f"{owner}: {name} must be a non-empty tuple of positive ints, got {shape!r}")
    return shape


class Layer:
    def __init__(self, name=None, input_shape=None):
        base = _snake(type(self).__name__)
        if name is None:
            n = next(_counters[base])
            name = base if n == 0 else f"{base}_{n}"
        self.name = name
        self.input_shape = None if input_shape is None else _shape_tuple(self.name, "input_shape", input_shape)
        self.output_shape = None
        self.built = False
        self.be = None
        self.dtype = None
        self.params = {}
        self.grads = {}
        # A layer that feeds on the model's input needs no dx.
        self.need_dx = True
        # Where backward writes its weights' gradients when the model packs them (nn/packed.py).
        self.grad_buffer = None

    # ------------------------------------------------------------------ building
    def build(self, input_shape, be, dtype):
        """Check input_shape (without the batch axis), create parameters on `be`."""
        input_shape = _shape_tuple(self.name, "input shape", input_shape)
        if self.input_shape is not None and self.input_shape != input_shape:
            raise ValueError(f"layer '{self.name}': declared input_shape={self.input_shape} but it receives "
                             f"{input_shape}")
        self.input_shape = input_shape
        self.be, self.dtype = be, np.dtype(dtype)
        self.output_shape = self.compute_output_shape(input_shape)
        host = self.initial_params(input_shape)
        self.params = {k: be.asarray(v) for k, v in host.items()}
        self.grads = {}
        self.grad_buffer = None
        self.built = True
        return self.output_shape

    def compute_output_shape(self, input_shape):
        return input_shape

    def initial_params(self, input_shape):
        """Host NumPy initial values, {name: array}."""
        return {}

    def count_params(self):
        return int(sum(int(np.prod(p.shape)) for p in self.params.values()))

    # ------------------------------------------------------------------ running
    def forward(self, x, training=False, logits=False):
        raise TypeError(f"{type(self).__name__} must define forward")

    def backward(self, dy, logits=False):
        raise TypeError(f"{type(self).__name__} must define backward")

    def clear(self):
        """Drop the activations kept for backward."""
        for key in [k for k in vars(self) if k.startswith("_saved")]:
            setattr(self, key, None)

    def regularization_penalty(self, into=None):
        """Weight penalties: a host float, or added to the backend array into (see Dense)."""
        return 0.0

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
        if self.input_shape is not None:
            cfg["input_shape"] = list(self.input_shape)
        return cfg

    # ------------------------------------------------------------------ shared helpers
    @property
    def activation_name(self):
        return getattr(self, "activation", "linear")


class ActivationMixin:
    """Applies self.activation after the layer's linear part; `logits=True` skips it
    (the model then hands the pre-activation to the fused softmax cross-entropy).

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
            self._saved_a = z  # already activated by the op's epilogue
            return z
        a = activations.forward(self.be, self.activation, z)
        self._saved_a = a
        return a

    def _deactivate(self, dy, logits):
        if logits or self.activation == "linear":
            return dy
        return activations.backward(self.be, self.activation, self._saved_a, dy)
