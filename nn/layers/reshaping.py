"""Reshape and Permute (Keras's reshaping layers), on the per-sample axes."""
import numpy as np

from numbanet.nn.layers.arguments import int_tuple
from numbanet.nn.layers.base import Layer


class Reshape(Layer):
    """Reshape(target_shape): per-sample shape -> target_shape (one entry may be -1). A view
    of the same memory on both backends: no copy forward or backward."""

    def __init__(self, target_shape, input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        target = int_tuple("Reshape", "target_shape", target_shape)
        if not target or any(s == 0 or s < -1 for s in target) or target.count(-1) > 1:
            raise ValueError(f"Reshape: target_shape must hold positive ints and at most one -1, got {target_shape!r}")
        self.target_shape = target

    def compute_output_shape(self, input_shape):
        size = int(np.prod(input_shape))
        known = int(np.prod([s for s in self.target_shape if s != -1]))
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(f"layer '{self.name}' (Reshape): cannot reshape per-sample shape {tuple(input_shape)} "
                                 f"({size} values) to {self.target_shape}")
            return tuple(size // known if s == -1 else s for s in self.target_shape)
        if known != size:
            raise ValueError(f"layer '{self.name}' (Reshape): cannot reshape per-sample shape {tuple(input_shape)} "
                             f"({size} values) to {self.target_shape} ({known} values)")
        return self.target_shape

    def forward(self, x, training=False, logits=False):
        self._saved_shape = tuple(x.shape)
        return self.be.reshape(x, (x.shape[0],) + tuple(self.output_shape))

    def backward(self, dy, logits=False):
        return self.be.reshape(dy, self._saved_shape)

    def get_config(self):
        cfg = super().get_config()
        cfg["target_shape"] = list(self.target_shape)
        return cfg


class Permute(Layer):
    """Permute(dims): reorder the per-sample axes; dims counts them from 1, as Keras does
    (Permute((2, 1)) swaps the two axes of a (batch, time, features) input)."""

    def __init__(self, dims, input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        dims = int_tuple("Permute", "dims", dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"Permute: dims must be a permutation of 1..{len(dims)} (axis 0 is the batch), "
                             f"got {dims!r}")
        self.dims = dims

    def compute_output_shape(self, input_shape):
        if len(input_shape) != len(self.dims):
            raise ValueError(f"layer '{self.name}' (Permute): dims {self.dims} need a per-sample shape of "
                             f"{len(self.dims)} axes, got {tuple(input_shape)}")
        return tuple(input_shape[d - 1] for d in self.dims)

    def forward(self, x, training=False, logits=False):
        return self.be.transpose(x, (0,) + self.dims)

    def backward(self, dy, logits=False):
        inverse = [0] * (len(self.dims) + 1)
        for i, d in enumerate((0,) + self.dims):
            inverse[d] = i
        return self.be.transpose(dy, tuple(inverse))

    def get_config(self):
        cfg = super().get_config()
        cfg["dims"] = list(self.dims)
        return cfg
