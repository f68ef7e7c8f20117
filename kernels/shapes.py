"""Shape arithmetic and input validation, written once for every backend.

The backends only compute: `kernels.backend.Backend` calls these checks before it
hands arrays to `kernels/cpu/*` or `kernels/gpu/*`. Every error names the op, what it
expected and what it got, and nothing here casts, broadcasts or truncates.
"""
import math

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# The activations a GEMM or convolution applies to its output in the same pass (the gpu
# kernels' epilogue); softmax needs a whole row and stays a separate op.
EPILOGUE_ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh")


def pair(op, name, value):
    """An int or a pair of ints -> a tuple of two positive ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}") from None
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{op}: {name} must hold positive ints, got {value!r}")
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


def check_activation(op, activation):
    """None or one of EPILOGUE_ACTIVATIONS -> its name ("linear" for None)."""
    if activation is None:
        return "linear"
    if not isinstance(activation, str) or activation not in EPILOGUE_ACTIVATIONS:
        raise ValueError(f"{op}: activation must be None or one of {', '.join(EPILOGUE_ACTIVATIONS)}, "
                         f"got {activation!r}")
    return activation


def check_activation_output(op, activation, y, dy):
    """y, the forward output an activation's gradient is taken from: given exactly when
    activation is not "linear", then of dy's shape and dtype."""
    if activation == "linear":
        if y is not None:
            raise ValueError(f"{op}: y is only read to back-propagate through an activation; pass it with "
                             f"activation='relu', 'sigmoid' or 'tanh', not with activation=None")
        return
    if y is None:
        raise TypeError(f"{op}: activation={activation!r} needs y, the activated forward output "
                        f"(the array conv2d returned), got None")
    check_float(op, "y", y)
    check_same_dtype(op, [("dy", dy), ("y", y)])
    check_shape(op, "y", y, tuple(dy.shape))


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


# --------------------------------------------------------------------------- per-op checks

def matmul_shapes(a, b, trans_a, trans_b, bias, out):
    op = "matmul"
    check_float(op, "a", a)
    check_float(op, "b", b)
    check_ndim(op, "a", a, 2)
    check_ndim(op, "b", b, 2)
    check_same_dtype(op, [("a", a), ("b", b), ("bias", bias), ("out", out)])
    m, ka = (a.shape[1], a.shape[0]) if trans_a else a.shape
    kb, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if ka != kb:
        raise ValueError(f"{op}: inner dimensions differ: op(a) is {m}x{ka}, op(b) is {kb}x{n} "
                         f"(a.shape={tuple(a.shape)}, trans_a={trans_a}, b.shape={tuple(b.shape)}, trans_b={trans_b})")
    if m == 0 or n == 0 or ka == 0:
        raise ValueError(f"{op}: empty operand (a.shape={tuple(a.shape)}, b.shape={tuple(b.shape)})")
    if bias is not None:
        check_float(op, "bias", bias)
        check_shape(op, "bias", bias, (n,))
    if out is not None:
        check_float(op, "out", out)
        check_shape(op, "out", out, (m, n))
    return m, n, ka


def conv2d_shapes(op, x, w, strides, padding):
    """-> (strides, (out_h, out_w, pt, pl, pb, pr))."""
    check_float(op, "x", x)
    check_float(op, "w", w)
    check_ndim(op, "x", x, 4, "NHWC")
    check_ndim(op, "w", w, 4, "(KH, KW, C_in, C_out)")
    check_same_dtype(op, [("x", x), ("w", w)])
    check_nonempty(op, "x", x)
    check_nonempty(op, "w", w)
    if x.shape[3] != w.shape[2]:
        raise ValueError(f"{op}: x has {x.shape[3]} channels but w expects {w.shape[2]} "
                         f"(x.shape={tuple(x.shape)}, w.shape={tuple(w.shape)})")
    strides = pair(op, "strides", strides)
    geometry = resolve_padding(op, padding, x.shape[1:3], w.shape[0:2], strides)
    return strides, geometry


def pool_shapes(op, x_shape, pool_size, strides, padding):
    """-> (pool_size, strides, (out_h, out_w, pt, pl, pb, pr))."""
    pool_size = pair(op, "pool_size", pool_size)
    strides = pool_size if strides is None else pair(op, "strides", strides)
    geometry = resolve_padding(op, padding, x_shape[1:3], pool_size, strides, explicit=False)
    return pool_size, strides, geometry


def check_x_shape(op, x_shape):
    """A shape the op allocates from: 4 positive ints (no floats that int() would
    truncate, no bools), small enough that N*H*W*C fits an int64 index."""
    try:
        shape = tuple(x_shape)
    except TypeError:
        raise ValueError(f"{op}: x_shape must be a tuple of 4 ints (N, H, W, C), got {x_shape!r}") from None
    if len(shape) != 4 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape) \
            or min(shape) < 1:
        raise ValueError(f"{op}: x_shape must be 4 positive ints (N, H, W, C), got {x_shape!r}")
    shape = tuple(int(s) for s in shape)
    if math.prod(shape) >= 2 ** 62:
        raise ValueError(f"{op}: x_shape={shape} has more elements than an array can hold")
    return shape


def check_same_shape(op, named):
    first_name, first = named[0]
    for name, arr in named[1:]:
        if tuple(arr.shape) != tuple(first.shape):
            raise ValueError(f"{op}: {name}.shape={tuple(arr.shape)} differs from "
                             f"{first_name}.shape={tuple(first.shape)}")


def check_labels(op, logits, labels):
    """Integer class labels (N,) or one-hot / probability rows (N, C). -> True if one-hot."""
    n, c = logits.shape
    if labels.ndim == 1:
        check_int(op, "labels", labels)
        if labels.shape[0] != n:
            raise ValueError(f"{op}: labels has {labels.shape[0]} rows but logits has {n} "
                             f"(labels.shape={tuple(labels.shape)}, logits.shape={tuple(logits.shape)})")
        return False
    if labels.ndim == 2:
        check_float(op, "labels", labels)
        check_same_dtype(op, [("logits", logits), ("labels", labels)])
        if tuple(labels.shape) != (n, c):
            raise ValueError(f"{op}: one-hot labels must have shape {(n, c)}, got {tuple(labels.shape)}")
        return True
    raise ValueError(f"{op}: labels must be integer class ids (N,) or one-hot rows (N, C), "
                     f"got shape {tuple(labels.shape)}")


# --------------------------------------------------------------------------- transformer ops
# batched_matmul, softmax over any rank, attention, layer_norm, embedding (issue 12).

def batched_matmul_shapes(a, b, trans_a, trans_b, out):
    """-> (lead, m, n, k): op(a) (..., M, K) @ op(b) (..., K, N) with identical leading dims."""
    op = "batched_matmul"
    check_float(op, "a", a)
    check_float(op, "b", b)
    check_same_dtype(op, [("a", a), ("b", b), ("out", out)])
    for name, arr in (("a", a), ("b", b)):
        if arr.ndim < 3:
            raise ValueError(f"{op}: {name} must have rank >= 3 (..., rows, cols), got {arr.ndim}-D "
                             f"({name}.shape={tuple(arr.shape)}); use matmul for 2-D operands")
    if tuple(a.shape[:-2]) != tuple(b.shape[:-2]):
        raise ValueError(f"{op}: leading dimensions differ: a.shape={tuple(a.shape)}, b.shape={tuple(b.shape)} "
                         "(they must be identical; nothing is broadcast)")
    nd = a.ndim
    m, ka = (a.shape[nd - 1], a.shape[nd - 2]) if trans_a else (a.shape[nd - 2], a.shape[nd - 1])
    kb, n = (b.shape[nd - 1], b.shape[nd - 2]) if trans_b else (b.shape[nd - 2], b.shape[nd - 1])
    if ka != kb:
        raise ValueError(f"{op}: inner dimensions differ: op(a) is {m}x{ka}, op(b) is {kb}x{n} "
                         f"(a.shape={tuple(a.shape)}, trans_a={trans_a}, b.shape={tuple(b.shape)}, trans_b={trans_b})")
    check_nonempty(op, "a", a)
    check_nonempty(op, "b", b)
    lead = tuple(int(s) for s in a.shape[:-2])
    if out is not None:
        check_float(op, "out", out)
        check_shape(op, "out", out, lead + (m, n))
    return lead, int(m), int(n), int(ka)


def check_min_ndim(op, name, arr, ndim, layout):
    if arr.ndim < ndim:
        raise ValueError(f"{op}: {name} must have at least {ndim} dimensions {layout}, got {arr.ndim}-D "
                         f"({name}.shape={tuple(arr.shape)})")


def attention_shapes(op, q, k, v, scale):
    """q (B, Tq, H, D), k (B, Tk, H, D), v (B, Tk, H, Dv) -> (B, Tq, Tk, H, D, Dv, scale);
    scale None -> 1 / sqrt(D)."""
    for name, arr in (("q", q), ("k", k), ("v", v)):
        check_float(op, name, arr)
        check_ndim(op, name, arr, 4, "(batch, time, heads, head_dim)")
        check_nonempty(op, name, arr)
    check_same_dtype(op, [("q", q), ("k", k), ("v", v)])
    bsz, tq, h, d = (int(s) for s in q.shape)
    shapes = f"(q.shape={tuple(q.shape)}, k.shape={tuple(k.shape)}, v.shape={tuple(v.shape)})"
    if k.shape[0] != bsz or v.shape[0] != bsz:
        raise ValueError(f"{op}: q, k and v must have the same batch size {shapes}")
    if k.shape[2] != h or v.shape[2] != h:
        raise ValueError(f"{op}: q, k and v must have the same number of heads {shapes}")
    if k.shape[3] != d:
        raise ValueError(f"{op}: q and k must have the same head dimension {shapes}")
    if v.shape[1] != k.shape[1]:
        raise ValueError(f"{op}: k and v must have the same number of keys (axis 1) {shapes}")
    scale = 1.0 / math.sqrt(d) if scale is None else float_scalar(op, "scale", scale)
    return bsz, tq, int(k.shape[1]), h, d, int(v.shape[3]), scale


def check_ids(op, name, ids):
    """Integer token ids: int32 or int64 (other integer types are refused, not cast)."""
    dtype = check_int(op, name, ids)
    if dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        raise TypeError(f"{op}: {name} must be int32 or int64, got {dtype}")
    check_nonempty(op, name, ids)


# --------------------------------------------------------------------------- recurrent ops
# rnn and rnn_backward: SimpleRNN, LSTM and GRU cells (issue 13).

RNN_CELLS = {"simple": 0, "lstm": 1, "gru": 2}
RNN_GATES = {"simple": 1, "lstm": 4, "gru": 3}
RNN_WORKSPACE = {"simple": 1, "lstm": 6, "gru": 5}   # workspace columns per unit (kernels/cpu/rnn.py)
RNN_ACTIVATIONS = {"linear": 0, "tanh": 1, "sigmoid": 2, "relu": 3}


def rnn_cell(op, cell):
    if not isinstance(cell, str) or cell not in RNN_CELLS:
        raise ValueError(f"{op}: cell must be one of {sorted(RNN_CELLS)}, got {cell!r}")
    return cell


def rnn_activation(op, name, value):
    """An activation the recurrent kernels compute (by name) -> its code."""
    if not isinstance(value, str) or value not in RNN_ACTIVATIONS:
        raise ValueError(f"{op}: {name} must be one of {sorted(RNN_ACTIVATIONS)}, got {value!r}")
    return RNN_ACTIVATIONS[value]


def rnn_bias_shape(cell, units):
    """Keras's bias shapes: (units,), (4 * units,), GRU with reset_after: (2, 3 * units)."""
    g = RNN_GATES[cell]
    return (2, g * units) if cell == "gru" else (g * units,)


def rnn_shapes(op, cell, x, kernel, recurrent_kernel, bias):
    """x (batch, timesteps, features), kernel (features, G * units), recurrent_kernel
    (units, G * units), bias (see rnn_bias_shape) or None -> (B, T, I, H, G)."""
    for name, arr in (("x", x), ("kernel", kernel), ("recurrent_kernel", recurrent_kernel)):
        check_float(op, name, arr)
    check_ndim(op, "x", x, 3, "(batch, timesteps, features)")
    check_ndim(op, "kernel", kernel, 2, "(features, gates * units)")
    check_ndim(op, "recurrent_kernel", recurrent_kernel, 2, "(units, gates * units)")
    check_nonempty(op, "x", x)
    check_nonempty(op, "recurrent_kernel", recurrent_kernel)
    check_same_dtype(op, [("x", x), ("kernel", kernel), ("recurrent_kernel", recurrent_kernel), ("bias", bias)])
    g = RNN_GATES[cell]
    h = int(recurrent_kernel.shape[0])
    if tuple(recurrent_kernel.shape) != (h, g * h):
        raise ValueError(f"{op}: a {cell} cell's recurrent_kernel must have shape (units, {g} * units), got "
                         f"{tuple(recurrent_kernel.shape)}")
    b_count, t_count, features = (int(s) for s in x.shape)
    if tuple(kernel.shape) != (features, g * h):
        raise ValueError(f"{op}: kernel must have shape (features, {g} * units) = {(features, g * h)} for x with "
                         f"{features} features and {h} units, got {tuple(kernel.shape)} (x.shape={tuple(x.shape)})")
    if bias is not None:
        check_float(op, "bias", bias)
        check_shape(op, "bias", bias, rnn_bias_shape(cell, h))
    return b_count, t_count, features, h, g


def check_rnn_state(op, name, arr, dtype, batch, units):
    check_float(op, name, arr)
    if np.dtype(arr.dtype) != dtype:
        raise TypeError(f"{op}: {name} is {np.dtype(arr.dtype)} but x is {dtype}; pass arrays of one dtype")
    check_shape(op, name, arr, (batch, units))


def check_rnn_mask(op, mask, batch, steps):
    """A (batch, timesteps) bool or integer array; a step is kept where it is non-zero."""
    dtype = getattr(mask, "dtype", None)
    if dtype is None or (np.dtype(dtype).kind not in "iub"):
        got = np.dtype(dtype) if dtype is not None else type(mask).__name__
        raise TypeError(f"{op}: mask must be a bool or integer array (True/non-zero keeps a step), got {got}")
    if not np.dtype(dtype).isnative:
        raise TypeError(f"{op}: mask must be in native byte order, got {np.dtype(dtype).str}")
    if tuple(mask.shape) != (batch, steps):
        raise ValueError(f"{op}: mask must have shape (batch, timesteps) = {(batch, steps)}, got "
                         f"{tuple(mask.shape)}")
