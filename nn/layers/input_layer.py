"""nn.Input and the InputLayer behind it: where a functional model's data comes in."""
import numpy as np

from numbanet.nn import graph
from numbanet.nn.layers.base import Layer


def _input_dtype(owner, dtype):
    """None (the model's float type), "float32"/"float64", or "int32"/"int64" for token ids."""
    if dtype is None:
        return None
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = repr(dtype)
    if name in ("float32", "float64") or name in graph.INT_DTYPES:
        return name
    raise ValueError(f"{owner}: dtype must be None, 'float32', 'float64', 'int32' or 'int64', got {dtype!r}")


class InputLayer(Layer):
    def __init__(self, shape, dtype=None, name=None):
        super().__init__(name=name)
        self.shape = graph.check_shape(f"Input '{self.name}'", shape)
        self.input_dtype = _input_dtype(f"Input '{self.name}'", dtype)
        self.input_shape = self.output_shape = self.shape
        tensor_dtype = self.input_dtype if self.input_dtype in graph.INT_DTYPES else graph.FLOAT
        node = graph.Node(self, [], {})
        node.outputs = [graph.KerasTensor(self.shape, tensor_dtype, node, 0, name=self.name)]
        self.inbound_nodes.append(node)
        self.output = node.outputs[0]

    @property
    def is_int(self):
        return self.input_dtype in graph.INT_DTYPES

    def __call__(self, *args, **kwargs):
        raise TypeError(f"InputLayer '{self.name}' is not called; use its tensor (nn.Input(...) returns it)")

    def build(self, input_shape, be, dtype):
        if self.input_dtype in ("float32", "float64") and np.dtype(dtype).name != self.input_dtype:
            raise ValueError(f"Input '{self.name}' is declared {self.input_dtype} but the model runs in "
                             f"{np.dtype(dtype).name}; give the model dtype='{self.input_dtype}' or drop the "
                             f"Input's dtype")
        self.be, self.dtype = be, np.dtype(dtype)
        self.built = True
        return self.shape

    def get_config(self):
        return {"name": self.name, "shape": list(self.shape), "dtype": self.input_dtype}


def Input(shape, dtype=None, name=None):
    """A symbolic input of per-sample `shape` (no batch axis), as keras.Input: float data
    of the model's dtype by default, or dtype="int32"/"int64" for token ids."""
    return InputLayer(shape, dtype=dtype, name=name).output


def stack_input_dtype(declared, first):
    """The input dtype of a stack (a Sequential) whose first layer is `first`: the dtype
    its nn.Input declared, else token ids when the first layer reads them (an Embedding:
    int32, Keras's integer Input dtype), else None (the model's float type)."""
    if declared is None and first.reads_ids:
        return "int32"
    return declared
