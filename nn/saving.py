"""One-file model saving: a .npz holding a JSON config (as uint8), the weights and the
optimizer state. Written to a temporary file in the target's directory, flushed to disk
and renamed over it, so an interrupted or killed save leaves the previous file intact (a
killed one may leave its .tmp-*.npz beside it). Nothing is ever unpickled.

Loading treats the file as hostile. Every defect raises InvalidModelFile, a ValueError
whose message names the file and the reason, never a built-in error from deep inside
(zipfile, json, NumPy). Only the members the config names are opened: the config first,
at most MAX_CONFIG_BYTES; then each weight and optimizer slot, whose .npy header is read
from the archive member (read_npy_header) and checked against the shape and dtype the
rebuilt architecture expects before a byte of its data is read or inflated.
"""
import json
import math
import os
import zipfile
from contextlib import contextmanager

import numpy as np

from numbanet.nn import distributed
from numbanet.nn import losses as losses_mod
from numbanet.nn import optimizers as optimizers_mod
from numbanet.nn import utils

FORMAT = "numbanet-model"
VERSION = 1
# A config is a few kB of JSON; anything far larger is not one of ours.
MAX_CONFIG_BYTES = 16 << 20
# numpy.lib.format's own bound on a header (a dict literal of a few dozen bytes).
MAX_HEADER_BYTES = 10000


class InvalidModelFile(ValueError):
    """load_model's one error for a file it cannot load; the message says why."""


def writes_here(model, filepath):
    """Whether this process writes the model's file (.npz or .keras): refuses an unbuilt
    model; in a data-parallel run every process holds the same model and process 0 writes."""
    if not model.built:
        raise ValueError(f"save: the model is not built yet, nothing to save to {os.fspath(filepath)}")
    return distributed.is_chief()


def save_model(model, filepath):
    filepath = os.fspath(filepath)
    if not writes_here(model, filepath):
        return
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
    return InvalidModelFile(f"load_model: {filepath} is not a valid numbanet model file: {why}")


def read_npy_header(f, what="member"):
    """-> (shape, dtype, fortran_order) from the .npy header at the start of the binary
    stream f (an archive member), reading the header only: f is left at the first data
    byte. Raises ValueError (read_member adds the file's name) for a missing magic, an
    unknown version, an oversized or malformed header, or an object dtype (nothing is
    unpickled)."""
    try:
        major, minor = np.lib.format.read_magic(f)
        if (major, minor) == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=MAX_HEADER_BYTES)
        elif (major, minor) in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=MAX_HEADER_BYTES)
        else:
            raise ValueError(f"unknown .npy format version {major}.{minor}")
    except Exception as exc:  # NumPy raises ValueError, SyntaxError, EOFError...: all mean a bad header
        raise ValueError(f"{what} has no valid .npy header ({type(exc).__name__}: {exc})") from exc
    if dtype.hasobject:
        raise ValueError(f"{what} holds Python objects (dtype {dtype}); nothing is unpickled")
    return shape, dtype, fortran


def open_archive(filepath, kind="an .npz"):
    """The zip archive at filepath (.npz, .keras), open for reading: FileNotFoundError when
    there is no file, InvalidModelFile when it is not a zip."""
    filepath = os.fspath(filepath)
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"load_model: no such file: {filepath}")
    try:
        return zipfile.ZipFile(filepath)
    except Exception as exc:  # BadZipFile, OSError, ValueError, EOFError, ...
        raise bad_file(filepath, f"it cannot be read as {kind} archive ({type(exc).__name__}: {exc})") from exc


@contextmanager
def open_model_file(filepath):
    """with open_model_file(path) as (config, archive): the checked config dict and the
    open zipfile.ZipFile for read_member. Any defect raises InvalidModelFile."""
    filepath = os.fspath(filepath)
    with open_archive(filepath) as archive:
        yield _read_config(archive, filepath), archive


def _read_config(archive, filepath):
    if "config.npy" not in archive.namelist():
        raise bad_file(filepath, "it holds no config record")
    raw = read_member(archive, "config", None, np.uint8, filepath, max_bytes=MAX_CONFIG_BYTES)
    if raw.ndim != 1:
        raise bad_file(filepath, "it holds no config record (config is not a 1-D byte array)")
    try:
        config = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad_file(filepath, f"its config is not valid JSON ({type(exc).__name__}: {exc})") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise bad_file(filepath, f"its format is {config.get('format') if isinstance(config, dict) else None!r}, "
                                 f"expected {FORMAT!r}")
    if config.get("version") != VERSION:
        raise bad_file(filepath, f"format version {config.get('version')!r}, this numbanet reads {VERSION}")
    return config


def read_member(archive, name, shape, dtype, filepath, max_bytes=None):
    """The array stored as `name`.npy in the open archive, after its header has been read
    from the member and checked: dtype exactly `dtype`, C order, shape `shape` (any when
    None, then at most max_bytes of data), and the member exactly as long as the header
    says. Only then are its bytes read (and inflated, for a compressed member)."""
    member = f"{name}.npy"
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise bad_file(filepath, f"it has no member {member}") from None
    try:
        with archive.open(info) as f:
            got_shape, got_dtype, fortran = read_npy_header(f, member)
            if got_dtype != np.dtype(dtype):
                raise ValueError(f"{member} has dtype {got_dtype}, expected {np.dtype(dtype)}")
            if fortran and len(got_shape) > 1:
                raise ValueError(f"{member} is stored in Fortran order; numbanet writes C order")
            if shape is not None and tuple(got_shape) != tuple(shape):
                raise ValueError(f"{member} has shape {tuple(got_shape)} but the architecture expects "
                                 f"{tuple(shape)}")
            nbytes = math.prod(int(d) for d in got_shape) * got_dtype.itemsize  # Python ints: no overflow
            if max_bytes is not None and nbytes > max_bytes:
                raise ValueError(f"{member} declares {nbytes} bytes, more than the {max_bytes} allowed")
            header_end = f.tell()
            if info.file_size != header_end + nbytes:
                raise ValueError(f"{member} is {info.file_size} bytes long but its header declares "
                                 f"{header_end} + {nbytes}")
            buf = bytearray(nbytes)
            view = memoryview(buf)
            got = 0
            while got < nbytes:
                k = f.readinto(view[got:])
                if not k:
                    raise ValueError(f"{member} ends after {got} of its {nbytes} data bytes")
                got += k
            if f.read(1):
                raise ValueError(f"{member} is longer than its header declares")
    except InvalidModelFile:
        raise
    except Exception as exc:  # zipfile's CRC and format errors, zlib errors, encrypted members, ...
        raise bad_file(filepath, f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)) \
            from exc
    return np.frombuffer(buf, dtype=got_dtype).reshape(got_shape)


def _state_shapes(model, names):
    """{saved state name: expected shape} for the optimizer slots `names` ("key/slot"),
    checked against the model's weights and the optimizer's slot names."""
    shapes = {key: tuple(layer.params[k].shape) for key, layer, k in model._params()}
    slots = set(model.optimizer.needed_slots())
    out = {}
    for name in names:
        # "layer index/weight name/slot"; a weight's name may hold slashes ("query/kernel")
        if not isinstance(name, str) or name.count("/") < 2:
            raise ValueError(f"optimizer state name {name!r} is not 'layer/weight/slot'")
        key, slot = name.rsplit("/", 1)
        if key not in shapes or slot not in slots:
            raise ValueError(f"optimizer state {name!r} matches no weight and slot of this model")
        out[name] = shapes[key]
    return out


def restore_state(model, config, archive, filepath):
    """Put the saved weights, and the compile record with the optimizer state when there
    is one, into `model`: built from the same file's architecture, on its backend. Reads
    only the members the config names, each checked before its data is read."""
    slots = model._params()
    n = config.get("n_weights")
    if isinstance(n, bool) or not isinstance(n, int) or n != len(slots):
        raise bad_file(filepath, f"its weights do not match its architecture (n_weights={n!r}, the "
                                 f"architecture has {len(slots)} weight arrays)")
    weights = [read_member(archive, f"weight_{i:04d}", tuple(layer.params[k].shape), model.dtype, filepath)
               for i, (_, layer, k) in enumerate(slots)]
    model.set_weights(weights)
    if "compile" in config:
        try:
            c = config["compile"]
            ocfg = c["optimizer"]
            iterations = ocfg["iterations"]
            if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
                raise ValueError(f"iterations must be an int >= 0, got {iterations!r}")
            opt = optimizers_mod.from_config(ocfg["class_name"], ocfg["config"], iterations)
            # One loss (and metric list) per output; files written before models had several
            # outputs hold only "loss" and "metrics".
            entries = c.get("losses", [c["loss"]])
            loss = [losses_mod.from_config(e["class_name"], e["config"]) for e in entries]
            metrics = c.get("output_metrics", [c["metrics"]])
            if len(loss) != len(model.outputs) or len(metrics) != len(model.outputs):
                raise ValueError(f"{len(loss)} losses and {len(metrics)} metric lists for {len(model.outputs)} "
                                 f"outputs")
            model.compile(optimizer=opt, loss=loss if len(loss) > 1 else loss[0],
                          metrics=metrics if len(metrics) > 1 else metrics[0],
                          loss_weights=c.get("loss_weights"))
            names = ocfg["state"]
            if not isinstance(names, list):
                raise ValueError(f"state must be a list of names, got {type(names).__name__}")
            expected = _state_shapes(model, names)
        except Exception as exc:  # any JSON can sit here: every failure is the file's
            raise bad_file(filepath, f"its compile record is broken ({type(exc).__name__}: {exc})") from exc
        state = {name: read_member(archive, f"opt_{i:04d}", expected[name], model.dtype, filepath)
                 for i, name in enumerate(names)}
        opt.set_state(model.be, state)
    return model
