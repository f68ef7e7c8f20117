""".keras files (Keras 3's model format), read and written: model.save("m.keras") and
nn.models.load_model("m.keras") come here; every other extension stays numbanet's .npz.

A .keras file is a zip of config.json (the architecture, as Keras's serialized layer
configs, and the compile record), metadata.json and model.weights.h5 (the variables, laid
out by nn/keras_h5.py). The layer table is nn/keras_layers.py, the compile record's
nn/keras_compile.py.

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

Writing goes through utils.atomic_write (a temporary file renamed into place), and only on
process 0 of a data-parallel run, as for .npz.
"""
import datetime
import json
import os
import shutil
import tempfile
import warnings
import zipfile

import numpy as np

from numbanet.nn import distributed
from numbanet.nn import graph
from numbanet.nn import keras_compile
from numbanet.nn import keras_h5
from numbanet.nn import keras_layers
from numbanet.nn import saving
from numbanet.nn import utils
from numbanet.nn.keras_layers import Unsupported
from numbanet.nn.layers.input_layer import Input, InputLayer

# The Keras release whose .keras layout the writer follows, and that loaded numbanet's
# files in the by-hand check.
KERAS_VERSION = "3.15.1"
CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"
MAX_METADATA_BYTES = 1 << 20
# A bound on the weights a file may declare: far above what numbanet trains, far below a
# hostile config's numbers.
MAX_WEIGHTS_BYTES = 16 << 30
# model.weights.h5 may be this much larger than its weights and an optimizer's two slots
# per weight: HDF5's headers (Keras's files carry about 1 kB per group).
H5_SLACK_BYTES = 1 << 20
H5_SLACK_PER_LAYER = 64 << 10


def is_keras_path(filepath):
    return str(os.fspath(filepath)).lower().endswith(".keras")


# ====================================================================== loading
def load_model(filepath, backend=None, *, sequential, functional):
    """The model in the .keras file at filepath, compiled as its compile record says when
    numbanet can; `sequential` and `functional` are nn.models.Sequential and Model."""
    filepath = os.fspath(filepath)
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"load_model: no such file: {filepath}")
    try:
        archive = zipfile.ZipFile(filepath)
    except Exception as exc:  # BadZipFile, OSError, ValueError, EOFError, ...
        raise saving.bad_file(filepath, f"it cannot be read as a .keras archive (a zip; "
                                        f"{type(exc).__name__}: {exc})") from exc
    with archive:
        config = _read_json(archive, CONFIG, saving.MAX_CONFIG_BYTES, filepath)
        if METADATA in archive.namelist():
            _read_json(archive, METADATA, MAX_METADATA_BYTES, filepath)
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
            except keras_h5.H5Error as exc:
                raise saving.bad_file(filepath, str(exc)) from exc
            _compile(model, plan, reader, filepath)
    return model


def _read_json(archive, member, limit, filepath):
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
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return _history(value, tensors, owner)
    if isinstance(value, list):
        return [_substitute(v, tensors, owner) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, tensors, owner) for k, v in value.items()}
    return value


class _Plan:
    """The architecture of config.json, wired symbolically: no weight allocated yet."""

    def __init__(self, config):
        cls = config.get("class_name")
        cfg = config.get("config")
        if cls not in ("Sequential", "Functional") or not isinstance(cfg, dict):
            raise Unsupported(f"its model class is {cls!r}; numbanet reads Sequential and Functional models "
                              f"(a subclassed model's call() is code)")
        self.kind, self.name = cls, cfg.get("name", cls.lower())
        self.dtype = keras_layers.policy_name("the model", cfg.get("dtype")) or "float32"
        if self.dtype not in ("float32", "float64"):
            raise Unsupported(f"its dtype policy is {self.dtype!r}; numbanet runs float32 or float64")
        self.compile_config = config.get("compile_config") or None
        entries = cfg.get("layers")
        if not isinstance(entries, list):
            raise Unsupported("its model config has no list of layers")
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
        self.input = Input(shape, dtype=in_dtype)
        x = self.input
        for layer in self.layers:
            x = layer(x)
        self.output = x
        self.tokens = in_dtype in graph.INT_DTYPES
        self.groups = self._group_names(self.layers)

    def _wire_functional(self, entries, cfg):
        layers, pending, tensors = [], [], {}
        for e in entries:
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
                    index = len(layer.inbound_nodes)
                    outs = layer(*args, **kwargs)
                    for j, t in enumerate(outs if isinstance(outs, tuple) else (outs,)):
                        tensors[(layer.name, index, j)] = t
                    nodes.pop(0)
                    progressed = True
            pending = [item for item in pending if item[1]]
            if pending and not progressed:
                raise Unsupported(f"layer {pending[0][0].name!r} reads tensors no layer produces")
        self.layers = [l for l in layers if not isinstance(l, InputLayer)]
        self.inputs = self._refs(cfg.get("input_layers"), tensors)
        self.outputs = self._refs(cfg.get("output_layers"), tensors)
        self.groups = self._group_names(layers)

    @staticmethod
    def _refs(value, tensors):
        if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
            return _history(value, tensors, "the model's inputs/outputs")
        if not isinstance(value, list) or not value:
            raise Unsupported(f"the model's input_layers/output_layers {value!r} name no tensors")
        return [_history(v, tensors, "the model's inputs/outputs") for v in value]

    @staticmethod
    def _group_names(layers):
        """{layer name: its group in model.weights.h5}: Keras names them by class, in model
        order (dense, dense_1, ...), not by the layer's own name."""
        used, out = {}, {}
        for layer in layers:
            base = keras_layers.snake_case(keras_layers.entry_of(layer).keras_name)
            used[base] = used.get(base, -1) + 1
            out[layer.name] = base if used[base] == 0 else f"{base}_{used[base]}"
        return out

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
        if self.kind == "Sequential" and not self.tokens:
            model = sequential(name=self.name, dtype=self.dtype)
            model.add(Input(self.input.per_sample_shape))
            for layer in self.layers:
                model.add(layer)
            model.build(backend=be)
            return model
        # A Sequential reading token ids loads as the same stack in the functional API,
        # which takes integer inputs.
        inputs, outputs = (self.input, self.output) if self.kind == "Sequential" else (self.inputs, self.outputs)
        model = functional(name=self.name, dtype=self.dtype)
        model._init_graph(inputs, outputs)
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


# ====================================================================== saving
def save_model(model, filepath):
    filepath = os.fspath(filepath)
    if not model.built:
        raise ValueError(f"save: the model is not built yet, nothing to save to {filepath}")
    if not distributed.is_chief():
        return   # data parallel: every process holds the same model; process 0 writes it
    config, objects = _serialize(model)
    metadata = {"keras_version": KERAS_VERSION, "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                "saved_by": "numbanet"}

    def write(f):
        with tempfile.TemporaryFile() as h5:
            keras_h5.write_weights(h5, objects)
            h5.seek(0)
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
                z.writestr(METADATA, json.dumps(metadata))
                z.writestr(CONFIG, json.dumps(config))
                with z.open(WEIGHTS, "w", force_zip64=True) as out:
                    shutil.copyfileobj(h5, out)

    utils.atomic_write(filepath, write, suffix=".keras")


def _tensor(t, index, dtype):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": [None] + list(t.per_sample_shape), "dtype": dtype if t.is_float else t.dtype,
                       "keras_history": [t.node.layer.name, index[id(t.node)], t.index]}}


def _tensors_in(value, index, dtype):
    if graph.is_symbolic(value):
        return _tensor(value, index, dtype)
    if isinstance(value, list):
        return [_tensors_in(v, index, dtype) for v in value]
    if isinstance(value, dict):
        return {k: _tensors_in(v, index, dtype) for k, v in value.items()}
    return value


def _input_entry(t, dtype):
    layer = t.node.layer
    return {"module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": [None] + list(t.per_sample_shape),
                       "dtype": layer.input_dtype if layer.is_int else dtype, "sparse": False, "ragged": False,
                       "name": layer.name, "optional": False}, "registered_name": None}


def _layer_entry(layer, dtype):
    entry = keras_layers.entry_of(layer)
    out = keras_layers.serialize(layer, dtype)
    build = entry.build_config(layer)
    if build is not None:
        out["build_config"] = build
    return out


def _serialize(model):
    """-> (config.json's dict, model.weights.h5's [(path, name, arrays)])."""
    dtype = model.dtype.name
    be = model.be
    sequential = model.get_config()["class_name"] == "Sequential"
    if sequential:
        shape = [None] + list(model.inputs[0].per_sample_shape)
        layers = [_input_entry(model.inputs[0], dtype)] + [_layer_entry(l, dtype) for l in model.layers]
        config = {"module": "keras", "class_name": "Sequential",
                  "config": {"name": model.name, "trainable": True, "dtype": keras_layers.policy(dtype),
                             "layers": layers, "build_input_shape": shape},
                  "registered_name": None, "build_config": {"input_shape": shape}}
        saved = model.layers
    else:
        index = model._node_indices()
        layers = []
        for layer in model.layers:
            if isinstance(layer, InputLayer):
                e = _input_entry(layer.output, dtype)
                e.update(name=layer.name, inbound_nodes=[])
            else:
                e = _layer_entry(layer, dtype)
                call = keras_layers.entry_of(layer).call
                nodes = []
                for node in model._nodes:
                    if node.layer is layer:
                        args, kwargs = call(node.inputs, node.kwargs)
                        nodes.append({"args": _tensors_in(args, index, dtype),
                                      "kwargs": _tensors_in(kwargs, index, dtype)})
                e.update(name=layer.name, inbound_nodes=nodes)
            layers.append(e)

        def refs(tensors, single):
            out = [[t.node.layer.name, index[id(t.node)], t.index] for t in tensors]
            return out[0] if single else out

        config = {"module": "keras.src.models.functional", "class_name": "Functional",
                  "config": {"name": model.name, "trainable": True, "dtype": keras_layers.policy(dtype),
                             "layers": layers, "input_layers": refs(model.inputs, model._single_input),
                             "output_layers": refs(model.outputs, model._single_output)},
                  "registered_name": "Functional", "build_config": {"input_shape": None}}
        saved = model.layers
    groups = _Plan._group_names(saved)
    objects = [("", model.name, [])]
    for layer in saved:
        path = f"layers/{groups[layer.name]}"
        objects.append((path, layer.name, []))
        if isinstance(layer, InputLayer):
            continue
        for sub, params in keras_layers.entry_of(layer).variables(layer, layer.input_shape):
            arrays = [be.to_numpy(layer.params[p]) for p, _ in params]
            objects.append((f"{path}/{sub}" if sub else path, sub.rsplit("/", 1)[-1] or layer.name, arrays))
    if model.compiled:
        config["compile_config"] = keras_compile.write_compile(model)
        objects.append(("optimizer", keras_compile.write_optimizer(model.optimizer)["config"]["name"],
                        _optimizer_arrays(model)))
    return config, objects


def _optimizer_arrays(model):
    """Keras's optimizer variables for the model's optimizer state (zeros for slots it has
    not made yet: Keras builds them at load and would otherwise skip the whole record)."""
    opt = model.optimizer
    state = opt.get_state(model.be)
    out = []
    for name, shape in keras_compile.variable_layout(model):
        if name == "iterations":
            out.append(np.array(opt.iterations, np.int64))
        elif name == "learning_rate":
            out.append(np.array(opt.current_learning_rate(), np.float32))
        else:
            out.append(state[name] if name in state else np.zeros(shape, model.dtype))
    return out
