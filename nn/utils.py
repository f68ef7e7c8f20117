"""Small helpers: the integer rule of sizes and shapes, the library-owned RNG, the default
float type, one-hot labels, atomic writes, a property over an optional part of an object."""
import contextlib

import numpy as np

from numbanet.kernels import shapes

_FLOAT_NAMES = ("float32", "float64")
_floatx = "float32"
# One generator for initializers, shuffling and dropout seeds, so that one call to
# set_random_seed makes the weights and the whole training run repeat exactly.
_rng = np.random.default_rng()


def is_int(value):
    """An int or a NumPy integer, and not a bool: what a shape entry, a size or a seed may
    be. Floats (even 3.0) and strings are refused rather than converted, as Keras refuses
    them in shapes; a bool is an int to Python but never meant as a size."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def list_of(holder, name):
    """A read-only property: self.<holder>.<name> (the holder's own list: no copy), or []
    while self.<holder> is None."""
    def get(self):
        held = getattr(self, holder)
        return getattr(held, name) if held is not None else []
    return property(get)


def set_random_seed(seed):
    """Reseed the library's RNG (initial weights, shuffling, dropout masks)."""
    global _rng
    if not is_int(seed) or seed < 0:
        raise ValueError(f"set_random_seed: seed must be a non-negative int, got {seed!r}")
    _rng = np.random.default_rng(int(seed))


def get_rng():
    return _rng


@contextlib.contextmanager
def rng_at(state):
    """Draws inside come from a generator at `state` (an earlier get_rng().bit_generator.state),
    so they repeat the draws made from that state; the library RNG is left where it is."""
    global _rng
    kept = _rng
    bits = getattr(np.random, state["bit_generator"])()
    bits.state = state
    _rng = np.random.Generator(bits)
    try:
        yield
    finally:
        _rng = kept


# Data-parallel training (nn/distributed.py) gives every process the same generator, so
# that they shuffle alike; each process's rank, mixed into the seeds it draws for dropout
# masks, keeps the processes from dropping the same units. 0: a single process.
_seed_stream = 0


def set_seed_stream(stream):
    global _seed_stream
    _seed_stream = int(stream)


def draw_seed():
    """A seed for a dropout mask, from the library's RNG (one draw per call)."""
    seed = int(_rng.integers(0, 2 ** 63 - 1))
    if _seed_stream:
        seed = (seed + _seed_stream * 0x9E3779B97F4A7C15) % (2 ** 63 - 1)
    return seed


def floatx():
    """The dtype new models use when none is given ("float32" unless set_floatx changed it)."""
    return _floatx


def set_floatx(dtype):
    global _floatx
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in _FLOAT_NAMES:
        raise ValueError(f"set_floatx: dtype must be 'float32' or 'float64', got {dtype!r}")
    _floatx = name


def check_float_name(owner, dtype):
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = repr(dtype)
    if name not in _FLOAT_NAMES:
        raise ValueError(f"{owner}: dtype must be 'float32' or 'float64', got {dtype!r}")
    return name


def to_categorical(y, num_classes=None, dtype="float32"):
    """Integer class ids (N,) or (N, 1) -> one-hot rows (N, num_classes)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"to_categorical: y must be class ids of shape (N,) or (N, 1), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if y.size and not np.all(np.equal(np.mod(y, 1), 0)):
            raise TypeError(f"to_categorical: y must hold integer class ids, got dtype {y.dtype} with fractions")
        y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical: class ids must be >= 0, got {int(y.min())}")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    bad = shapes.first_out_of_range(y, int(num_classes))  # the one range rule
    if bad is not None:
        raise ValueError(f"to_categorical: class id {bad[1]} is out of range for num_classes={num_classes}")
    out = np.zeros((y.shape[0], int(num_classes)), dtype=dtype)
    out[np.arange(y.shape[0]), y] = 1
    return out


def atomic_write(filepath, write, suffix=""):
    """Call write(binary file) on a temporary file beside filepath, flush it to disk and
    rename it over filepath: an error leaves any previous file intact (a killed process may
    leave its .tmp-* file beside it)."""
    import os
    import tempfile
    filepath = os.fspath(filepath)
    directory = os.path.dirname(os.path.abspath(filepath))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
        _fsync_directory(directory)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return filepath


def _fsync_directory(directory):
    # The rename is durable only once the directory entry is on disk too.
    import os
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
