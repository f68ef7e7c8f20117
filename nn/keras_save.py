"""model.save("m.keras"): a numbanet model as the .keras file Keras 3 writes (the layout
nn/keras_file.py reads back): config.json with Keras's layer configs (nn/keras_layers.py)
and compile record (nn/keras_compile.py), metadata.json, and model.weights.h5
(nn/keras_h5.py), stored uncompressed as Keras stores them. Written through
utils.atomic_write, and only by the process that saving.writes_here names."""
import datetime
import json
import shutil
import tempfile
import zipfile

import numpy as np

from numbanet.nn import graph
from numbanet.nn import keras_compile
from numbanet.nn import keras_h5
from numbanet.nn import keras_layers
from numbanet.nn import saving
from numbanet.nn import utils
from numbanet.nn.keras_config import CONFIG, KEEP, METADATA, WEIGHTS, map_tree, policy
from numbanet.nn.layers.input_layer import InputLayer

# The Keras release whose .keras layout this writer follows, and that loaded numbanet's
# files in the by-hand check.
KERAS_VERSION = "3.15.1"


def save_model(model, filepath):
    filepath = str(filepath)
    if not saving.writes_here(model, filepath):
        return
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
    """Node arguments with every numbanet tensor replaced by Keras's reference to it."""
    return map_tree(value, lambda v: _tensor(v, index, dtype) if graph.is_symbolic(v) else KEEP)


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
    # Keras rebuilds padding masks itself when it calls the layers; where numbanet would
    # not apply one Keras does, refuse.
    keras_layers.mask_sources([(id(n), n.layer, n.inputs, n.outputs) for n in model._graph.nodes])
    sequential = model.get_config()["class_name"] == "Sequential"
    if sequential:
        shape = [None] + list(model.inputs[0].per_sample_shape)
        layers = [_input_entry(model.inputs[0], dtype)] + [_layer_entry(l, dtype) for l in model.layers]
        config = {"module": "keras", "class_name": "Sequential",
                  "config": {"name": model.name, "trainable": True, "dtype": policy(dtype),
                             "layers": layers, "build_input_shape": shape},
                  "registered_name": None, "build_config": {"input_shape": shape}}
        saved = model.layers
    else:
        index = model._graph.node_indices()
        layers = []
        for layer in model.layers:
            if isinstance(layer, InputLayer):
                e = _input_entry(layer.output, dtype)
                e.update(name=layer.name, inbound_nodes=[])
            else:
                e = _layer_entry(layer, dtype)
                call = keras_layers.entry_of(layer).call
                nodes = []
                for node in model._graph.nodes:
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
                  "config": {"name": model.name, "trainable": True, "dtype": policy(dtype),
                             "layers": layers, "input_layers": refs(model.inputs, model._single_input),
                             "output_layers": refs(model.outputs, model._single_output)},
                  "registered_name": "Functional", "build_config": {"input_shape": None}}
        saved = model.layers
    groups = keras_layers.group_names(saved)
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
