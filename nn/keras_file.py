""".keras files (Keras 3's model format): nn.models.load_model("m.keras") and
model.save("m.keras") come here (the writer is nn/keras_save.py); every other extension
stays numbanet's .npz.

A .keras file is a zip of config.json (the architecture, as Keras's serialized layer
configs, and the compile record), metadata.json and model.weights.h5 (the variables, laid
out as nn/keras_h5.py says). The layer table is nn/keras_layers.py, the compile record's
nn/keras_compile.py, Keras's serialized objects nn/keras_config.py.

Loading treats the file as hostile, with nn/saving.py's rules and errors (InvalidModelFile
through saving.bad_file): nothing is unpickled and no code runs (a Lambda layer or a class
the table lacks is refused by name); config.json is read only when the archive says it is
at most saving.MAX_CONFIG_BYTES; the architecture is rebuilt symbolically (no weight
allocated) and the weights it implies are summed and bounded (MAX_WEIGHTS_BYTES) before
model.weights.h5 is copied out of the archive, itself bounded by what those weights (and
an optimizer's slots) can take; every object in the HDF5 file is checked, and every
dataset's shape and dtype compared with the architecture's, before the model is built and
a byte of weight data is read. A compile record numbanet cannot honour (an optimizer or
loss it lacks) loads the model uncompiled, with a warning naming what is missing.
"""
import json
import os
import tempfile
import warnings

import numpy as np

from numbanet.nn import keras_compile
from numbanet.nn import keras_h5
from numbanet.nn import keras_layers
from numbanet.nn import keras_save
from numbanet.nn import saving
from numbanet.nn.keras_config import CONFIG, KEEP, WEIGHTS, Unsupported, map_tree, policy_name
from numbanet.nn.layers.base import calls_without_building
from numbanet.nn.layers.input_layer import Input, InputLayer, stack_input_dtype

# A bound on the weights a file may declare: far above what numbanet trains, far below a
# hostile config's numbers.
MAX_WEIGHTS_BYTES = 16 << 30
# model.weights.h5 may be this much larger than its weights and an optimizer's two slots
# per weight: HDF5's headers (Keras's files carry about 1 kB per group).
H5_SLACK_BYTES = 1 << 20
H5_SLACK_PER_LAYER = 64 << 10


def is_keras_path(filepath):
    return str(os.fspath(filepath)).lower().endswith(".keras")


def save_model(model, filepath):
    """model.save("m.keras"): nn/keras_save.py writes it."""
    keras_save.save_model(model, filepath)


# ====================================================================== loading
def load_model(filepath, backend=None, *, sequential, functional):
    """The model in the .keras file at filepath, compiled as its compile record says when
    numbanet can; `sequential` and `functional` are nn.models.Sequential and Model."""
    filepath = os.fspath(filepath)
    with saving.open_archive(filepath, "a .keras") as archive:
        config = _read_json(archive, CONFIG, saving.MAX_CONFIG_BYTES, filepath)
        try:
            plan = _Plan(config)
        except Unsupported as exc:
            raise saving.bad_file(filepath, str(exc)) from exc
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # any JSON can sit there
            raise saving.bad_file(filepath, f"its architecture cannot be rebuilt ({type(exc).__name__}: {exc})") \
                from exc
        with _weights_file(archive, plan, filepath) as reader:
            try:
                plan.check(reader)
                model = plan.build(sequential, functional, backend)
                plan.set_weights(model, reader)
            except (ValueError, TypeError) as exc:   # H5Error, Unsupported, a layer's own check
                raise saving.bad_file(filepath, str(exc)) from exc
            _compile(model, plan, reader, filepath)
    return model


def _read_json(archive, member, limit, filepath):
    """The JSON object in the archive's member, read only when the archive says it is at
    most limit bytes (and then at most limit bytes read)."""
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise saving.bad_file(filepath, f"it has no {member}") from None
    if info.file_size > limit:
        raise saving.bad_file(filepath, f"its {member} is {info.file_size} bytes, more than the {limit} allowed")
    try:
        with archive.open(info) as f:
            raw = f.read(limit + 1)
        if len(raw) > limit:
            raise ValueError(f"{member} holds more than {limit} bytes")
        data = json.loads(raw.decode("utf-8"))
    except Exception as exc:  # zip errors, UnicodeDecodeError, JSONDecodeError, RecursionError
        raise saving.bad_file(filepath, f"its {member} cannot be read as JSON ({type(exc).__name__}: {exc})") \
            from exc
    if not isinstance(data, dict):
        raise saving.bad_file(filepath, f"its {member} is not a JSON object")
    return data


class _weights_file:
    """with _weights_file(archive, plan, filepath) as reader: model.weights.h5 copied out of
    the archive into an anonymous temporary file (at most what the plan's weights allow)
    and opened by keras_h5.WeightsReader."""

    def __init__(self, archive, plan, filepath):
        self.archive, self.plan, self.filepath = archive, plan, filepath

    def __enter__(self):
        fp, plan = self.filepath, self.plan
        try:
            info = self.archive.getinfo(WEIGHTS)
        except KeyError:
            raise saving.bad_file(fp, f"it has no {WEIGHTS}") from None
        limit = 3 * plan.nbytes + H5_SLACK_BYTES + H5_SLACK_PER_LAYER * len(plan.layers)
        if info.file_size > limit:
            raise saving.bad_file(fp, f"its {WEIGHTS} is {info.file_size} bytes, more than the {limit} that its "
                                      f"architecture's {plan.nbytes} bytes of weights (with an optimizer's slots) "
                                      f"can take")
        self.tmp = tempfile.TemporaryFile()
        try:
            with self.archive.open(info) as src:
                copied = 0
                while True:
                    chunk = src.read(min(1 << 20, limit + 1 - copied))
                    if not chunk:
                        break
                    copied += len(chunk)
                    if copied > limit:
                        raise ValueError(f"{WEIGHTS} holds more than {limit} bytes")
                    self.tmp.write(chunk)
            self.tmp.seek(0)
            self.reader = keras_h5.WeightsReader(self.tmp)
        except keras_h5.H5Error as exc:
            self.tmp.close()
            raise saving.bad_file(fp, str(exc)) from exc
        except Exception as exc:  # zip CRC and format errors, zlib errors, encrypted members, ...
            self.tmp.close()
            raise saving.bad_file(fp, f"its {WEIGHTS} cannot be read ({type(exc).__name__}: {exc})") from exc
        return self.reader

    def __exit__(self, *exc):
        self.reader.__exit__(*exc)
        self.tmp.close()


def _history(ref, tensors, owner):
    """A Keras tensor reference -> the numbanet tensor it names."""
    if isinstance(ref, dict) and ref.get("class_name") == "__keras_tensor__":
        ref = ref.get("config", {}).get("keras_history")
    if not isinstance(ref, list) or len(ref) != 3:
        raise Unsupported(f"{owner}: {ref!r} is not a Keras tensor reference [layer, node, index]")
    key = tuple(ref)
    if key not in tensors:
        raise KeyError(key)
    return tensors[key]


def _substitute(value, tensors, owner):
    """Node arguments with every Keras tensor replaced by the numbanet tensor it names."""
    return map_tree(value, lambda v: _history(v, tensors, owner) if isinstance(v, dict) and
                     v.get("class_name") == "__keras_tensor__" else KEEP)


class _PaddingMask:
    """Keras's NotEqual(ids, 0) node in a functional graph: where ids is 0, a padded step."""

    def __init__(self, ids):
        self.ids = ids

    def __repr__(self):
        return f"the padding mask of {self.ids!r}"


class _Plan:
    """The architecture of config.json, wired symbolically: no weight allocated yet."""

    def __init__(self, config):
        cls = config.get("class_name")
        cfg = config.get("config")
        if cls not in ("Sequential", "Functional") or not isinstance(cfg, dict):
            raise Unsupported(f"its model class is {cls!r}; numbanet reads Sequential and Functional models "
                              f"(a subclassed model's call() is code)")
        self.kind, self.name = cls, cfg.get("name", cls.lower())
        self.dtype = policy_name("the model", cfg.get("dtype")) or "float32"
        if self.dtype not in ("float32", "float64"):
            raise Unsupported(f"its dtype policy is {self.dtype!r}; numbanet runs float32 or float64")
        self.compile_config = config.get("compile_config") or None
        entries = cfg.get("layers")
        if not isinstance(entries, list):
            raise Unsupported("its model config has no list of layers")
        with calls_without_building():   # sizes are checked (_expected) before any weight exists
            (self._wire_sequential if cls == "Sequential" else self._wire_functional)(entries, cfg)
        self._expected()

    # ------------------------------------------------------------------ wiring
    def _wire_sequential(self, entries, cfg):
        first = entries[0] if entries else None
        if isinstance(first, dict) and first.get("class_name") == "InputLayer":
            spec = keras_layers.make_layer(first, self.dtype)
            shape, in_dtype, entries = spec.shape, spec.input_dtype, entries[1:]
        elif cfg.get("build_input_shape"):
            shape, in_dtype = tuple(cfg["build_input_shape"][1:]), None
        else:
            raise Unsupported("its Sequential model was never built (no input shape): it holds no weights")
        self.layers = [keras_layers.make_layer(e, self.dtype) for e in entries]
        if not self.layers:
            raise Unsupported("its Sequential model has no layers")
        # Keras's float Input before an Embedding (it casts the ids) reads ids here.
        self.input = Input(shape, dtype=stack_input_dtype(in_dtype, self.layers[0]))
        x = self.input
        for layer in self.layers:
            x = layer(x)
        self.output = x
        keras_layers.mask_sources([(id(n), l, n.inputs, n.outputs) for l in self.layers for n in l.inbound_nodes])
        self.groups = keras_layers.group_names(self.layers)

    def _wire_functional(self, entries, cfg):
        layers, pending, tensors = [], [], {}
        self.nodes, self.keras_masks = [], {}
        for e in entries:
            if isinstance(e, dict) and e.get("class_name") == "NotEqual":
                self._mask_op(e, tensors)
                continue
            layer = keras_layers.make_layer(e, self.dtype)
            layers.append(layer)
            if isinstance(layer, InputLayer):
                tensors[(layer.name, 0, 0)] = layer.output
                continue
            nodes = e.get("inbound_nodes")
            if not isinstance(nodes, list) or not nodes:
                raise Unsupported(f"layer {layer.name!r} is not called in the model (no inbound_nodes)")
            pending.append([layer, nodes])
        names = [l.name for l in layers]
        for n in names:
            if names.count(n) > 1:
                raise Unsupported(f"two layers are named {n!r}")
        # Keras lists a layer's calls with the layer; a call may read a later layer's output,
        # so nodes run in rounds, each layer's in order, until none can run.
        while pending:
            progressed = False
            for item in pending:
                layer, nodes = item
                while nodes:
                    node = nodes[0]
                    owner = f"layer {layer.name!r}"
                    if not isinstance(node, dict) or not isinstance(node.get("args"), list):
                        raise Unsupported(f"{owner}: inbound node {node!r} is not Keras 3's {{args, kwargs}}")
                    try:
                        args = _substitute(node["args"], tensors, owner)
                        kwargs = _substitute(node.get("kwargs") or {}, tensors, owner)
                    except KeyError:
                        break
                    kwargs = {k: v for k, v in kwargs.items() if v is not None and k != "training"}
                    mask = kwargs.pop("mask", None)
                    if mask is not None and not isinstance(mask, _PaddingMask):
                        raise Unsupported(f"{owner}: its mask comes from {mask!r}; numbanet reads the padding masks "
                                          f"of Embedding(mask_zero=True) only")
                    index = len(layer.inbound_nodes)
                    outs = layer(*args, **kwargs)
                    outs = outs if isinstance(outs, tuple) else (outs,)
                    for j, t in enumerate(outs):
                        tensors[(layer.name, index, j)] = t
                    node = layer.inbound_nodes[-1]
                    self.nodes.append((id(node), layer, node.inputs, node.outputs))
                    self.keras_masks[id(node)] = None if mask is None else mask.ids
                    nodes.pop(0)
                    progressed = True
            pending = [item for item in pending if item[1]]
            if pending and not progressed:
                raise Unsupported(f"layer {pending[0][0].name!r} reads tensors no layer produces")
        self.layers = [l for l in layers if not isinstance(l, InputLayer)]
        self.inputs = self._refs(cfg.get("input_layers"), tensors)
        self.outputs = self._refs(cfg.get("output_layers"), tensors)
        self.groups = keras_layers.group_names(layers)
        # Keras writes each padding mask a layer receives as its mask argument; numbanet's
        # layers receive them from the graph: the two must agree node for node.
        ours = keras_layers.mask_sources(self.nodes)
        for node_id, layer, _, _ in self.nodes:
            theirs = self.keras_masks[node_id]
            if ours[node_id] is not theirs and (theirs is not None or isinstance(layer, keras_layers.MASK_APPLYING)):
                raise Unsupported(f"layer '{layer.name}' gets {'no' if self.keras_masks[node_id] is None else 'a'} "
                                  f"padding mask in Keras's graph but {'no' if ours[node_id] is None else 'one'} in "
                                  f"numbanet's")

    @staticmethod
    def _mask_op(entry, tensors):
        """Keras's NotEqual(ids, 0): the padding mask of an Embedding(mask_zero=True), which
        numbanet's graph carries by itself; any other use of the op is refused."""
        nodes = entry.get("inbound_nodes")
        name = entry.get("config", {}).get("name", entry.get("name"))
        for index, node in enumerate(nodes if isinstance(nodes, list) else []):
            args = node.get("args") if isinstance(node, dict) else None
            if not isinstance(args, list) or len(args) != 2 or args[1] != 0 or node.get("kwargs"):
                raise Unsupported(f"operation {name!r} (NotEqual) compares {args!r}; numbanet reads it only as "
                                  f"an Embedding(mask_zero=True) padding mask, ids != 0")
            ids = _history(args[0], tensors, f"operation {name!r}")
            tensors[(name, index, 0)] = _PaddingMask(ids)

    @staticmethod
    def _refs(value, tensors):
        if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
            return _history(value, tensors, "the model's inputs/outputs")
        if not isinstance(value, list) or not value:
            raise Unsupported(f"the model's input_layers/output_layers {value!r} name no tensors")
        return [_history(v, tensors, "the model's inputs/outputs") for v in value]

    # ------------------------------------------------------------------ weights
    def _expected(self):
        """self.variables: [(layer, h5 path, [(param, shape)])]; self.nbytes their total."""
        itemsize = np.dtype(self.dtype).itemsize
        self.variables, total = [], 0
        for layer in self.layers:
            node = layer.inbound_nodes[-1]
            shapes = [t.per_sample_shape for t in node.inputs]
            entry = keras_layers.entry_of(layer)
            for sub, params in entry.variables(layer, shapes if layer.multi_input else shapes[0]):
                path = f"layers/{self.groups[layer.name]}" + (f"/{sub}" if sub else "")
                self.variables.append((layer, path, params))
                for _, shape in params:
                    n = itemsize
                    for d in shape:
                        n *= int(d)
                    total += n
        if total > MAX_WEIGHTS_BYTES:
            raise Unsupported(f"its architecture declares {total} bytes of weights, more than the "
                              f"{MAX_WEIGHTS_BYTES} numbanet reads")
        self.nbytes = total

    def check(self, reader):
        """Every weight dataset's shape and dtype against the architecture (no data read)."""
        for layer, path, params in self.variables:
            paths = reader.variables(path)
            if len(paths) != len(params):
                raise keras_h5.H5Error(f"model.weights.h5 holds {len(paths)} variables for layer '{layer.name}' "
                                       f"at {path!r}, its architecture {len(params)}")
            for p, (param, shape) in zip(paths, params):
                have = reader.datasets[p]
                if have != (tuple(shape), np.dtype(self.dtype)):
                    raise keras_h5.H5Error(f"model.weights.h5: {p!r} (layer '{layer.name}' {param}) has shape "
                                           f"{have[0]} and dtype {have[1]}; the architecture expects {tuple(shape)} "
                                           f"{self.dtype}")

    def build(self, sequential, functional, backend):
        from numbanet import kernels
        be = kernels.get_backend(backend) if backend is not None else None
        if self.kind == "Sequential":
            model = sequential(name=self.name, dtype=self.dtype)
            model.add(self.input)
            for layer in self.layers:
                model.add(layer)
            model.build(backend=be)
            return model
        model = functional(name=self.name, dtype=self.dtype)
        model._init_graph(self.inputs, self.outputs)
        model.build(be)
        return model

    def set_weights(self, model, reader):
        arrays = {}
        for layer, path, params in self.variables:
            for p, (param, shape) in zip(reader.variables(path), params):
                have = tuple(layer.params[param].shape)
                if have != tuple(shape):
                    raise Unsupported(f"layer '{layer.name}': numbanet built {param} with shape {have}, the "
                                      f".keras table says {tuple(shape)}")
                arrays[(layer.name, param)] = reader.read(p, shape, self.dtype)
        model.set_weights([arrays[(layer.name, k)] for _, layer, k in model._params()])


def _compile(model, plan, reader, filepath):
    if not plan.compile_config:
        return
    try:
        model.compile(**keras_compile.read_compile(plan.compile_config))
    except (Unsupported, ValueError, TypeError) as exc:
        warnings.warn(f"load_model: {filepath} is loaded uncompiled: {exc}; call model.compile() before training",
                      stacklevel=4)
        return
    if "optimizer" not in reader.groups:
        return
    layout = keras_compile.variable_layout(model)
    paths = reader.variables("optimizer")
    if len(paths) != len(layout):
        warnings.warn(f"load_model: {filepath}: the optimizer's {len(paths)} saved variables do not match the "
                      f"{len(layout)} that {type(model.optimizer).__name__} has for this model (the file's "
                      f"optimizer was never built?); it starts fresh", stacklevel=4)
        return
    state, iterations = {}, 0
    try:
        for p, (name, shape) in zip(paths, layout):
            if name == "iterations":
                kind = reader.datasets[p][1]
                value = reader.read(p, (), kind if kind.kind == "i" else np.int64)
                iterations = int(value)
                if iterations < 0:
                    raise keras_h5.H5Error(f"model.weights.h5: the optimizer's iterations is {iterations}")
            elif name != "learning_rate":
                state[name] = reader.read(p, shape, model.dtype)
    except keras_h5.H5Error as exc:
        raise saving.bad_file(filepath, str(exc)) from exc
    model.optimizer.iterations = iterations
    model.optimizer.set_state(model.be, state)
