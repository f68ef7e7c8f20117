"""One-file model saving: a .npz holding a JSON config (as uint8), the weights and the
optimizer state. Written to a temporary file in the target's directory and renamed over
it, so an interrupted save leaves the previous file intact. Loaded with
allow_pickle=False: nothing is ever unpickled.
"""
import json
import os
import zipfile

import numpy as np

from numbanet.nn import losses as losses_mod
from numbanet.nn import optimizers as optimizers_mod
from numbanet.nn import utils

FORMAT = "numbanet-model"
VERSION = 1


def save_model(model, filepath):
    filepath = os.fspath(filepath)
    if not model.built:
        raise ValueError(f"save: the model is not built yet, nothing to save to {filepath}")
    weights = model.get_weights()
    config = {"format": FORMAT, "version": VERSION, "model": model.get_config(), "n_weights": len(weights)}
    arrays = {f"weight_{i:04d}": w for i, w in enumerate(weights)}
    if model.compiled:
        opt = model.optimizer
        state = opt.get_state(model.be)
        names = sorted(state)
        losses = [{"class_name": type(l).__name__, "config": l.get_config()} for l in model._losses]
        config["compile"] = {
            # One entry per output; "loss" and "metrics" repeat the first output's, the form
            # single-output files have always had.
            "loss": losses[0], "metrics": list(model._metric_names[0]),
            "losses": losses, "loss_weights": list(model._loss_weights),
            "output_metrics": [list(m) for m in model._metric_names],
            "optimizer": {"class_name": type(opt).__name__, "config": opt.get_config(),
                          "iterations": opt.iterations, "state": names},
        }
        arrays.update({f"opt_{i:04d}": state[k] for i, k in enumerate(names)})
    arrays["config"] = np.frombuffer(json.dumps(config).encode("utf-8"), dtype=np.uint8)
    utils.atomic_write(filepath, lambda f: np.savez(f, **arrays), suffix=".npz")


def bad_file(filepath, why):
    return ValueError(f"load_model: {filepath} is not a valid numbanet model file: {why}")


def read_model_file(filepath):
    """-> (config dict, {member name: array}) of a file written by save_model, checked
    for format and version; any defect raises a ValueError saying what is wrong."""
    filepath = os.fspath(filepath)
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"load_model: no such file: {filepath}")
    try:
        with np.load(filepath, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise bad_file(filepath, f"it cannot be read as an .npz archive ({type(exc).__name__}: {exc})") from None
    if "config" not in arrays or arrays["config"].dtype != np.uint8 or arrays["config"].ndim != 1:
        raise bad_file(filepath, "it holds no config record")
    try:
        config = json.loads(arrays["config"].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_file(filepath, f"its config is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise bad_file(filepath, f"its format is {config.get('format') if isinstance(config, dict) else None!r}, "
                                 f"expected {FORMAT!r}")
    if config.get("version") != VERSION:
        raise bad_file(filepath, f"format version {config.get('version')!r}, this numbanet reads {VERSION}")
    return config, arrays


def restore_state(model, config, arrays, filepath):
    """Put the saved weights, and the compile record with the optimizer state when there
    is one, into `model`: built from the same file's architecture, on its backend."""
    try:
        n = int(config["n_weights"])
        weights = [arrays[f"weight_{i:04d}"] for i in range(n)]
    except (KeyError, TypeError, ValueError) as exc:
        raise bad_file(filepath, f"its weights cannot be found ({type(exc).__name__}: {exc})") from None
    try:
        model.set_weights(weights)
    except (ValueError, TypeError) as exc:
        raise bad_file(filepath, f"its weights do not match its architecture ({exc})") from None
    for w, name in zip(weights, (f"weight_{i:04d}" for i in range(n))):
        if w.dtype != model.dtype:
            raise bad_file(filepath, f"{name} has dtype {w.dtype} but the model is {model.dtype}")
    if "compile" in config:
        try:
            c = config["compile"]
            ocfg = c["optimizer"]
            opt = optimizers_mod.from_config(ocfg["class_name"], ocfg["config"], ocfg["iterations"])
            entries = c.get("losses", [c["loss"]])
            loss = [losses_mod.from_config(e["class_name"], e["config"]) for e in entries]
            metrics = c.get("output_metrics", [c["metrics"]])
            if len(loss) != len(model.outputs) or len(metrics) != len(model.outputs):
                raise ValueError(f"{len(loss)} losses for {len(model.outputs)} outputs")
            model.compile(optimizer=opt, loss=loss if len(loss) > 1 else loss[0],
                          metrics=metrics if len(metrics) > 1 else metrics[0],
                          loss_weights=c.get("loss_weights"))
            state = {name: arrays[f"opt_{i:04d}"] for i, name in enumerate(ocfg["state"])}
        except (KeyError, TypeError, ValueError) as exc:
            raise bad_file(filepath, f"its compile record is broken ({type(exc).__name__}: {exc})") from None
        shapes = {key: tuple(layer.params[k].shape) for key, layer, k in model._params()}
        for name, arr in state.items():
            key = name.rsplit("/", 1)[0]
            if key not in shapes or tuple(arr.shape) != shapes[key] or arr.dtype != model.dtype:
                raise bad_file(filepath, f"optimizer state {name} (shape {arr.shape}, {arr.dtype}) matches no weight")
        opt.set_state(model.be, state)
    return model
