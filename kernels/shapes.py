"""Shape arithmetic and input validation, written once for every backend.

The backends only compute: `kernels.backend.Backend` calls these checks before it
hands arrays to `kernels/cpu/*` or `kernels/gpu/*`. Every error names the op, what it
expected and what it got, and nothing here casts, broadcasts or truncates.
"""
import math

import numpy as np

from numbanet.kernels import rules

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# The activations a GEMM applies to its output in the same pass (its epilogue), which nn's
# Dense and Conv2D layers hand to their op; softmax needs a whole row and stays a
# separate op. A family may fuse more (kernels/ops/conv.py: FUSED_ACTIVATIONS).
EPILOGUE_ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh")


def pair(op, name, value, minimum=1):
    """An int or a pair of ints -> a tuple of two ints >= minimum (positive by default)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}") from None
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            what = "positive ints" if minimum == 1 else f"ints >= {minimum}"
            raise ValueError(f"{op}: {name} must hold {what}, got {value!r}")
    return int(a), int(b)


def check_float(op, name, arr):
    """arr must be a float32 or float64 array (no silent casts of ints or float16)."""
    dtype = getattr(arr, "dtype", None)
    if dtype is None:
        raise TypeError(f"{op}: {name} must be an array, got {type(arr).__name__}")
    if np.dtype(dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32 or float64, got {np.dtype(dtype)} "
                        f"({name}.shape={tuple(arr.shape)})")
    return np.dtype(dtype)


def check_int(op, name, arr):
    dtype = getattr(arr, "dtype", None)
    if dtype is None or np.dtype(dtype).kind not in "iu":
        got = np.dtype(dtype) if dtype is not None else type(arr).__name__
        raise TypeError(f"{op}: {name} must be an integer array, got {got}")
    if not np.dtype(dtype).isnative:
        # Numba compiles for native byte order only; refusing here beats its TypingError.
        raise TypeError(f"{op}: {name} must be in native byte order, got {np.dtype(dtype).str}")
    return np.dtype(dtype)


def check_activation(op, activation, allowed=EPILOGUE_ACTIVATIONS):
    """None or one of `allowed` (names of kernels/rules.py's ACTIVATIONS) -> its name
    ("linear" for None)."""
    if activation is None:
        return "linear"
    if not isinstance(activation, str) or activation not in allowed:
        raise ValueError(f"{op}: activation must be None or one of {', '.join(allowed)}, got {activation!r}")
    return activation


def check_float_or_int(op, name, arr):
    """float32, float64 or a native integer array (data that is only copied, like labels)."""
    dtype = getattr(arr, "dtype", None)
    if dtype is not None and np.dtype(dtype).kind in "iu":
        return check_int(op, name, arr)
    return check_float(op, name, arr)


def int_scalar(op, name, value, lo=None, hi=None):
    """A Python or NumPy integer (not a bool, not a float that int() would truncate) -> int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value >= hi):
        raise ValueError(f"{op}: {name} must be in [{lo}, {hi}), got {value}")
    return value


def float_scalar(op, name, value):
    """A finite real number (int, float, NumPy scalar) -> float; anything else is refused
    here rather than by float() or by Numba's typing."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{op}: {name} must be finite, got {value}")
    return value


def flag(op, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be True or False, got {value!r}")
    return bool(value)


# --------------------------------------------------------------------------- index ranges

def first_out_of_range(idx, n):
    """(position, value) of the first entry of the host integer array idx (any shape, flat
    order) outside [0, n), or None. The range rule for labels and indices on the host: the
    cpu backend and nn's input checks call this; the gpu backend applies the same rule on
    the device (kernels/gpu/checks.py)."""
    flat = np.asarray(idx).reshape(-1)
    bad = np.flatnonzero((flat < 0) | (flat >= n))
    if bad.size == 0:
        return None
    return int(bad[0]), int(flat[bad[0]])


def out_of_range_error(op, name, position, value, n, of):
    """The error for an entry outside [0, n); `of` says what n counts ("4 classes")."""
    return ValueError(f"{op}: {name}[{position}]={value} is out of range for {of} "
                      f"(expected values in [0, {n}))")


def check_ndim(op, name, arr, ndim, layout=None):
    if arr.ndim != ndim:
        what = f"{ndim}-D" + (f" {layout}" if layout else "")
        raise ValueError(f"{op}: {name} must be {what}, got {arr.ndim}-D ({name}.shape={tuple(arr.shape)})")


def check_same_dtype(op, named):
    """named: list of (name, array); all must share the first one's dtype."""
    first_name, first = named[0]
    for name, arr in named[1:]:
        if arr is not None and np.dtype(arr.dtype) != np.dtype(first.dtype):
            raise TypeError(f"{op}: {name} is {np.dtype(arr.dtype)} but {first_name} is "
                            f"{np.dtype(first.dtype)}; pass arrays of one dtype")


def check_shape(op, name, arr, shape):
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {tuple(arr.shape)}")


def check_nonempty(op, name, arr):
    if arr.size == 0:
        raise ValueError(f"{op}: {name} is empty ({name}.shape={tuple(arr.shape)}); "
                         "every dimension must be at least 1")


# --------------------------------------------------------------------------- padding

def check_padding(op, padding, explicit=True):
    """The padding-mode rule, written once: -> "valid", "same" (any case) or, when explicit
    is True, a pair (ph, pw) of ints >= 0 (an int p means (p, p))."""
    if isinstance(padding, str):
        if padding.lower() in ("valid", "same"):
            return padding.lower()
    elif explicit:
        if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
            padding = (padding, padding)
        try:
            ph, pw = padding
            if all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) and p >= 0 for p in (ph, pw)):
                return int(ph), int(pw)
        except (TypeError, ValueError):
            pass
    allowed = "'valid', 'same', an int or a pair of ints >= 0" if explicit else "'valid' or 'same'"
    raise ValueError(f"{op}: padding must be {allowed}, got {padding!r}")


def resolve_padding(op, padding, in_hw, kernel_hw, strides, explicit=True):
    """-> (out_h, out_w, pad_top, pad_left, pad_bottom, pad_right).

    "valid": no padding; "same": TensorFlow's rule, total = max((ceil(H/s)-1)*s + K - H, 0),
    the smaller half on top/left; an int p or a pair (ph, pw): symmetric explicit padding
    (refused when explicit is False, as pooling does).
    """
    (h, w), (kh, kw), (sh, sw) = in_hw, kernel_hw, strides
    mode = check_padding(op, padding, explicit)
    if mode == "valid":
        pads = (0, 0, 0, 0)
    elif mode == "same":
        th = max((math.ceil(h / sh) - 1) * sh + kh - h, 0)
        tw = max((math.ceil(w / sw) - 1) * sw + kw - w, 0)
        pads = (th // 2, tw // 2, th - th // 2, tw - tw // 2)
    else:
        ph, pw = mode
        pads = (ph, pw, ph, pw)
    pt, pl, pb, pr = pads
    out_h = (h + pt + pb - kh) // sh + 1
    out_w = (w + pl + pr - kw) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{op}: window {kh}x{kw} does not fit the {h}x{w} input with padding "
                         f"{padding!r} (output would be {out_h}x{out_w})")
    return out_h, out_w, pt, pl, pb, pr


# --------------------------------------------------------------------------- more checks

def check_same_shape(op, named):
    first_name, first = named[0]
    for name, arr in named[1:]:
        if tuple(arr.shape) != tuple(first.shape):
            raise ValueError(f"{op}: {name}.shape={tuple(arr.shape)} differs from "
                             f"{first_name}.shape={tuple(first.shape)}")


def check_alike(op, named):
    """(name, array) pairs of float arrays of one dtype and one shape: the operands of an
    elementwise op."""
    for name, arr in named:
        check_float(op, name, arr)
    check_same_dtype(op, named)
    check_same_shape(op, named)


def check_min_ndim(op, name, arr, ndim, layout):
    if arr.ndim < ndim:
        raise ValueError(f"{op}: {name} must have at least {ndim} dimensions {layout}, got {arr.ndim}-D "
                         f"({name}.shape={tuple(arr.shape)})")


# --------------------------------------------------------------------------- recurrent layers
# What nn's recurrent layers read; the op's own rules are kernels/ops/rnn.py's.

RNN_GATES = dict(zip(rules.CELLS, rules.GATES))
# The activations the recurrent cells compute, by name -> kernels/rules.py's code.
RNN_ACTIVATIONS = {name: rules.CODES[name] for name in ("linear", "tanh", "sigmoid", "relu")}


def rnn_bias_shape(cell, units):
    """Keras's bias shapes: (units,), (4 * units,), GRU with reset_after: (2, 3 * units)."""
    g = RNN_GATES[cell]
    return (2, g * units) if cell == "gru" else (g * units,)


