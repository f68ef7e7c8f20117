"""Symbolic tensors and the nodes that connect layers in a functional model.

`nn.Input(shape)` makes a KerasTensor; calling a layer on KerasTensors records a Node
(the layer, its input tensors, its call arguments) and returns new KerasTensors. Nothing
is computed; a layer creates its weights at its first call, as in Keras
(nn/layers/base.py). `nn.models.Model(inputs, outputs)` walks the nodes back from its
outputs, orders them as Keras does, takes every layer's weights onto its backend and
runs them.
"""
from numbanet.nn.utils import is_int

# numbanet.profiler's Recorder while a profile is on, else None: Graph wraps each layer's
# call with it (numbanet/profiler/hooks.py) to attribute the kernels to the layer and pass.
profiler = None

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
    if is_int(shape):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"{owner}: shape must be a tuple of ints (without the batch axis), got {shape!r}") from None
    for d in dims:
        if d is None:
            raise ValueError(f"{owner}: shape {shape!r} has a None dimension; numbanet models need every "
                             f"per-sample dimension (e.g. the sequence length) to be known")
        if not is_int(d) or d < 1:
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


def as_list(obj):
    return list(obj) if isinstance(obj, (list, tuple)) else [obj]


class Graph:
    """The nodes between a model's input and output tensors, and running them (Keras's
    Function): forward through the nodes in order, backward in reverse order.

    A tensor read by several layers (a fan-out: a residual branch) receives the sum of
    their gradients; a layer called at several places (shared weights) accumulates its
    gradients over its calls. Activations are backend arrays; a layer keeps what its
    backward needs, and an activation no later node reads is dropped as soon as it can be.
    """

    def __init__(self, inputs, outputs, owner):
        inputs, outputs = as_list(inputs), as_list(outputs)
        if not inputs or not outputs:
            raise ValueError(f"{owner}: needs at least one input and one output tensor")
        for t in inputs + outputs:
            if not is_symbolic(t):
                raise TypeError(f"{owner}: inputs and outputs must be symbolic tensors (from nn.Input and layer "
                                f"calls), got {type(t).__name__}")
        for t in inputs:
            if t.node is None or not t.node.is_input:
                raise ValueError(f"{owner}: every input must come from nn.Input(...); {t!r} is a layer's output")
        if len({id(t) for t in inputs}) != len(inputs):
            raise ValueError(f"{owner}: an input tensor is listed twice")
        nodes, layers = build_map(outputs)
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
        self.layers = layers
        self.nodes = [n for n in nodes if not n.is_input]
        self.uses = {}    # readers of each tensor, by id
        self.calls = {}   # calls of each layer, by id
        for node in self.nodes:
            self.calls[id(node.layer)] = self.calls.get(id(node.layer), 0) + 1
            for t in node.inputs:
                self.uses[id(t)] = self.uses.get(id(t), 0) + 1
        self.input_ids = input_ids
        self._run_layers = list({id(node.layer): node.layer for node in self.nodes}.values())
        self._node_states = {}   # a shared layer's saved activations, by node

    # ------------------------------------------------------------------ reading the graph
    def readers(self, t):
        """The layers that read tensor t, in the order they run."""
        return [node.layer for node in self.nodes if any(s is t for s in node.inputs)]

    def node_indices(self):
        """Each node's position among its layer's calls (Input nodes: 0), by node id."""
        index, counts = {}, {}
        for t in self.inputs:
            index[id(t.node)] = 0
        for node in self.nodes:
            index[id(node)] = counts.get(id(node.layer), 0)
            counts[id(node.layer)] = index[id(node)] + 1
        return index

    # ------------------------------------------------------------------ running it
    def forward(self, xs, training, fused_nodes=frozenset()):
        """xs: backend arrays, one per input -> backend outputs. The nodes in fused_nodes
        return their pre-activation (logits), for a loss that applies the activation."""
        values = {id(t): x for t, x in zip(self.inputs, xs)}
        left = dict(self.uses)
        keep = {id(t) for t in self.outputs}
        self._node_states = {}
        masks = {}   # time-step masks, by tensor (Embedding(mask_zero=True) starts one)
        for node in self.nodes:
            layer = node.layer
            ins = [values[id(t)] for t in node.inputs]
            mask = masks.get(id(node.inputs[0])) if node.inputs else None
            kwargs = node.kwargs if mask is None else dict(node.kwargs, mask=mask)
            run = layer.run_node if profiler is None else profiler.layer(layer.name, "forward", layer.run_node)
            outs = run(ins, training, id(node) in fused_nodes, kwargs)
            for t, m in zip(node.outputs, layer.output_masks(mask, ins, len(outs))):
                if m is not None:
                    masks[id(t)] = m
            if self.calls[id(layer)] > 1:
                self._node_states[id(node)] = layer.saved_state()
            for t, v in zip(node.outputs, outs):
                values[id(t)] = v
            for t in node.inputs:   # drop activations no later layer reads (layers keep what backward needs)
                left[id(t)] -= 1
                if left[id(t)] == 0 and id(t) not in keep:
                    values.pop(id(t), None)
        return [values[id(t)] for t in self.outputs]

    def backward(self, be, douts, fused_nodes=frozenset()):
        """Gradients from the outputs back through every node; parameter gradients land
        in each layer's `grads` (summed over the calls of a shared layer)."""
        grads = {}
        owned = set()   # tensors whose gradient array the graph allocated (safe to add into)

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
        accumulated = {}   # a shared layer's gradient sums: {layer id: (layer, {name: array})}
        for node in reversed(self.nodes):
            layer = node.layer
            dys = [grads.pop(id(t), None) for t in node.outputs]
            if id(node) in self._node_states:
                layer.restore_state(self._node_states[id(node)])
            layer.need_dx = any(id(t) not in self.input_ids and t.is_float for t in node.inputs)
            if all(d is None for d in dys):
                # Nothing downstream depends on this call (its output only sized another layer).
                layer.grads = {k: be.zeros(p.shape, p.dtype) for k, p in layer.params.items()
                               if k not in layer.non_trainable}
                dxs = [None] * len(node.inputs)
            else:
                run = layer.backward_node if profiler is None else profiler.layer(layer.name, "backward",
                                                                                  layer.backward_node)
                dxs = run(dys, id(node) in fused_nodes)
            if self.calls[id(layer)] > 1:
                if id(layer) in accumulated:
                    for k, g in layer.grads.items():
                        total = accumulated[id(layer)][1][k]
                        be.add(total, g, out=total)
                else:
                    accumulated[id(layer)] = (layer, {k: be.copy(g) for k, g in layer.grads.items()})
            for t, d in zip(node.inputs, dxs):
                if d is not None and id(t) not in self.input_ids:
                    receive(t, d)
        for layer, sums in accumulated.values():
            layer.grads = sums

    def clear(self):
        """Drop every activation kept for backward."""
        for layer in self._run_layers:
            layer.clear()
        self._node_states = {}
