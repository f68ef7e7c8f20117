"""Symbolic tensors and the nodes that connect layers in a functional model.

`nn.Input(shape)` makes a KerasTensor; calling a layer on KerasTensors records a Node
(the layer, its input tensors, its call arguments) and returns new KerasTensors. Nothing
is computed and no weight is created: `nn.models.Model(inputs, outputs)` walks the nodes
back from its outputs, orders them as Keras does, builds every layer on its backend and
runs them.
"""
import numpy as np

FLOAT = "float"   # the dtype of a float tensor: the model's float type, fixed when the model is built
INT_DTYPES = ("int32", "int64")


class KerasTensor:
    """A symbolic tensor: a per-sample shape, a dtype, and the node that produces it."""

    def __init__(self, shape, dtype, node=None, index=0, name=None):
        self.per_sample_shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        self.node = node
        self.index = index
        self.name = name

    @property
    def shape(self):
        """Keras's shape: (None, *per-sample shape); None is the batch axis."""
        return (None,) + self.per_sample_shape

    @property
    def ndim(self):
        return len(self.per_sample_shape) + 1

    @property
    def is_float(self):
        return self.dtype == FLOAT or self.dtype in ("float32", "float64")

    def __repr__(self):
        where = f", produced by '{self.node.layer.name}'" if self.node is not None else ""
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}{where}>"

    # Keras tensors are graph handles, not arrays: refuse the array protocol loudly.
    def __array__(self, *args, **kwargs):
        raise TypeError("a KerasTensor is symbolic (it has no values); build a Model(inputs, outputs) and call "
                        "model.predict(x) to compute it")

    def __bool__(self):
        raise TypeError("a KerasTensor has no truth value; it is a symbolic placeholder")


class Node:
    """One call of a layer: inputs -> outputs, with the call's keyword arguments (JSON)."""

    def __init__(self, layer, inputs, kwargs):
        self.layer = layer
        self.inputs = list(inputs)
        self.kwargs = dict(kwargs)
        self.outputs = []

    @property
    def is_input(self):
        return not self.inputs

    def __repr__(self):
        return f"<Node {self.layer.name}({', '.join(t.node.layer.name if t.node else '?' for t in self.inputs)})>"


def is_symbolic(obj):
    return isinstance(obj, KerasTensor)


def check_shape(owner, shape):
    """Input shapes: a tuple of positive ints without the batch axis."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"{owner}: shape must be a tuple of ints (without the batch axis), got {shape!r}") from None
    for d in dims:
        if d is None:
            raise ValueError(f"{owner}: shape {shape!r} has a None dimension; numbanet models need every "
                             f"per-sample dimension (e.g. the sequence length) to be known")
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ValueError(f"{owner}: shape must hold positive ints, got {shape!r}")
    if not dims:
        raise ValueError(f"{owner}: shape must have at least one dimension besides the batch axis, got {shape!r}")
    return tuple(int(d) for d in dims)


def build_map(outputs):
    """Keras's map_graph: the nodes reaching `outputs`, in a depth-first post-order (a
    topological order, inputs first), and the layers ordered as Keras orders them (by
    decreasing depth from the outputs, ties broken by first traversal): that order is
    the order of get_weights()."""
    finished, in_progress = set(), set()
    nodes, layer_index = [], {}

    def visit(tensor):
        node = tensor.node
        if node is None:
            raise ValueError(f"Model: {tensor!r} was not produced by a layer or nn.Input")
        if id(node) in finished:
            return
        if id(node) in in_progress:
            raise ValueError(f"Model: the graph has a cycle through layer '{node.layer.name}'")
        layer_index.setdefault(id(node.layer), (len(layer_index), node.layer))
        in_progress.add(id(node))
        for t in node.inputs:
            visit(t)
        in_progress.discard(id(node))
        finished.add(id(node))
        nodes.append(node)

    for t in outputs:
        visit(t)

    node_depth, layer_depth = {}, {}
    for node in reversed(nodes):
        depth = node_depth.setdefault(id(node), 0)
        depth = max(depth, layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth
        node_depth[id(node)] = depth
        for t in node.inputs:
            parent = t.node
            node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    ordered = sorted(layer_index.values(), key=lambda il: (-layer_depth[id(il[1])], il[0]))
    return nodes, [layer for _, layer in ordered]
