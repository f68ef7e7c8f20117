"""Add and Concatenate: layers called on a list of tensors."""
from numbanet.nn.layers.base import Layer


class _Merge(Layer):
    multi_input = True

    def parse_call(self, *args, **kwargs):
        tensors, kw = super().parse_call(*args, **kwargs)
        if len(tensors) < 2:
            raise ValueError(f"layer '{self.name}' ({type(self).__name__}) needs a list of at least 2 tensors, "
                             f"got {len(tensors)}")
        return tensors, kw


class Add(_Merge):
    """Elementwise sum of tensors of one shape (nothing is broadcast)."""

    def compute_output_shape(self, input_shape):
        first = tuple(input_shape[0])
        for i, s in enumerate(input_shape[1:], 1):
            if tuple(s) != first:
                raise ValueError(f"layer '{self.name}' (Add): input {i} has per-sample shape {tuple(s)} but input 0 "
                                 f"has {first}; Add needs tensors of one shape")
        return first

    def run_node(self, inputs, training, logits, kwargs):
        be = self.be
        out = be.add(inputs[0], inputs[1])
        for x in inputs[2:]:
            be.add(out, x, out=out)
        return [out]

    def backward_node(self, douts, logits):
        # The same gradient reaches every input; the model never writes into it in place.
        return [douts[0]] * len(self.input_shape)


class Concatenate(_Merge):
    """Concatenate(axis=-1): join tensors along a per-sample axis."""

    def __init__(self, axis=-1, name=None):
        super().__init__(name=name)
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise ValueError(f"Concatenate: axis must be a non-zero int (axis 0 is the batch), got {axis!r}")
        self.axis = axis

    def _sample_axis(self, rank):
        """The axis within a per-sample shape of `rank` axes (the batch axis excluded)."""
        axis = self.axis - 1 if self.axis > 0 else rank + self.axis
        if not 0 <= axis < rank:
            raise ValueError(f"layer '{self.name}' (Concatenate): axis {self.axis} is out of range for inputs of "
                             f"{rank + 1} dimensions (batch included)")
        return axis

    def compute_output_shape(self, input_shape):
        first = tuple(input_shape[0])
        axis = self._sample_axis(len(first))
        for i, s in enumerate(input_shape[1:], 1):
            s = tuple(s)
            if len(s) != len(first) or any(a != b for d, (a, b) in enumerate(zip(s, first)) if d != axis):
                raise ValueError(f"layer '{self.name}' (Concatenate): input {i} has per-sample shape {s}, which "
                                 f"does not match input 0's {first} outside axis {self.axis}")
        out = list(first)
        out[axis] = sum(s[axis] for s in input_shape)
        return tuple(out)

    def run_node(self, inputs, training, logits, kwargs):
        return [self.be.concatenate(inputs, axis=self._sample_axis(len(self.input_shape[0])) + 1)]

    def backward_node(self, douts, logits):
        axis = self._sample_axis(len(self.input_shape[0]))
        return self.be.split(douts[0], [s[axis] for s in self.input_shape], axis=axis + 1)

    def get_config(self):
        cfg = super().get_config()
        cfg["axis"] = self.axis
        return cfg
