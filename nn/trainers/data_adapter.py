"""The checks x and y pass before a batch of them reaches the backend (Keras 3:
keras/src/trainers/data_adapters/): one host array per model input and output, every
input in the model's dtype or integer token ids in range, targets in the form the
output's loss reads. Nothing is cast, broadcast or truncated silently."""
import numpy as np

from numbanet.nn.layers.embedding import Embedding


def check_batch_size(op, batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"{op}: batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def check_epochs(op, epochs):
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"{op}: epochs must be an int >= 0, got {epochs!r}")
    return int(epochs)


def _structure(model, op, what, data, tensors):
    """x (or y) as given -> a list with one array per model input (output)."""
    n = len(tensors)
    side = "inputs" if what == "x" else "outputs"
    if isinstance(data, dict):
        names = [t.node.layer.name for t in tensors] if what == "x" else model.output_names
        unknown = set(data) - set(names)
        missing = [k for k in names if k not in data]
        if unknown or missing:
            raise ValueError(f"{op}: {what} is a dict with keys {sorted(data)} but the model's {side} are {names}")
        return [data[k] for k in names]
    if n == 1 and isinstance(data, (list, tuple)) and len(data) == 1 and isinstance(data[0], np.ndarray):
        return [data[0]]
    if isinstance(data, (list, tuple)) and n > 1:
        if len(data) != n:
            raise ValueError(f"{op}: {what} has {len(data)} arrays but the model has {n} {side}")
        return list(data)
    if n != 1:
        raise ValueError(f"{op}: the model has {n} {side}; pass {what} as a list or a dict of {n} arrays")
    return [data]


def check_x(model, op, x):
    """-> a list of host arrays, one per input, checked and in the dtype the model reads.
    A model not built yet is built here (a Sequential on x's per-sample shape)."""
    if x is None:
        raise ValueError(f"{op}: x is required")
    model._build_for_data(op, x)
    xs = _structure(model, op, "x", x, model.inputs)
    out = []
    n = None
    for i, (t, xi) in enumerate(zip(model.inputs, xs)):
        what = "x" if len(xs) == 1 else f"x[{i}]"
        out.append(_check_input(model, op, what, t, xi))
        if n is None:
            n = xi.shape[0]
        elif xi.shape[0] != n:
            raise ValueError(f"{op}: the inputs have different lengths (x[0] has {n} samples, {what} has "
                             f"{xi.shape[0]})")
    if not model.built:
        model.build()
    return out


def _check_input(model, op, what, t, x):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op}: {what} must be a numpy.ndarray, got {type(x).__name__}")
    layer = t.node.layer
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"{op}: {what} is empty or has no batch axis ({what}.shape={x.shape})")
    want = t.per_sample_shape
    if tuple(x.shape[1:]) != want:
        readers = model._graph.readers(t)
        reader = readers[0] if readers else layer
        raise ValueError(f"{op}: {what} has per-sample shape {tuple(x.shape[1:])} but layer '{reader.name}' "
                         f"expects {want} ({what}.shape={x.shape}, expected (N, {', '.join(map(str, want))}))")
    if layer.is_int:
        if not np.issubdtype(x.dtype, np.integer):
            # Keras casts float ids to int32 in Embedding; numbanet casts nothing.
            readers = ", ".join(f"'{r.name}' ({type(r).__name__})" for r in model._graph.readers(t))
            raise TypeError(f"{op}: {what} feeds the integer Input '{layer.name}' (read by {readers or 'no layer'}) "
                            f"but has dtype {x.dtype}; pass integer token ids (any integer dtype), e.g. "
                            f"{what}.astype('int32') once they hold whole numbers")
        _check_ids(model, op, what, t, x)
        return np.ascontiguousarray(x, dtype=layer.input_dtype)
    dtype = model.dtype
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{op}: {what} has dtype {x.dtype} but the model runs in {dtype}; "
                        f"convert it first, e.g. {what}.astype('{dtype}') / 255")
    if x.dtype != dtype:
        raise TypeError(f"{op}: {what} has dtype {x.dtype} but the model runs in {dtype}; "
                        f"convert it with {what}.astype('{dtype}') (nothing is cast silently)")
    if not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ValueError(f"{op}: {what} holds {bad} NaN or infinite values; expected finite inputs")
    return x


def _check_ids(model, op, what, t, x):
    """Token ids against every Embedding that reads them (on the host, once per call:
    the gpu then needs no range check, which would be a round trip per batch)."""
    lo, hi = int(x.min()), int(x.max())
    for layer in model._graph.readers(t):
        if isinstance(layer, Embedding):
            dim = layer.input_dim
            if lo < 0 or hi >= dim:
                bad = lo if lo < 0 else hi
                raise ValueError(f"{op}: {what} holds token id {bad}, out of range for layer '{layer.name}' "
                                 f"(Embedding with input_dim={dim}, ids in [0, {dim - 1}])")
    # The cast to the Input's dtype below must keep every id: an Input no Embedding reads
    # is bounded by its dtype alone.
    info = np.iinfo(np.dtype(t.node.layer.input_dtype))
    if lo < info.min or hi > info.max:
        raise ValueError(f"{op}: {what} holds id {lo if lo < info.min else hi}, beyond the Input's "
                         f"{t.node.layer.input_dtype}")


def check_y(model, op, xs, y):
    """-> a list of host targets, one per output, ready for the loss kernels."""
    if y is None:
        raise ValueError(f"{op}: y is required")
    ys = _structure(model, op, "y", y, model.outputs)
    n = xs[0].shape[0]
    out = []
    for t, loss, yi in zip(model.outputs, model._compile_loss.losses, ys):
        yi = np.asarray(yi)
        if yi.shape[:1] != (n,):
            raise ValueError(f"{op}: x and y have different lengths (x has {n} samples, y has "
                             f"{yi.shape[0] if yi.ndim else 'no'} samples; x.shape={xs[0].shape}, "
                             f"y.shape={yi.shape})")
        out.append(loss.check_targets(op, yi, t.per_sample_shape, model.dtype, t.node.layer.name))
    return out


def train_validation_split(xs, ys, validation_split):
    """Keras's rule: the last fraction of the rows, before any shuffling, is held out.
    -> (xs, ys, (validation xs, validation ys))."""
    n = xs[0].shape[0]
    split = int(n * (1.0 - float(validation_split)))
    if split == 0 or split == n:
        raise ValueError(f"fit: validation_split={validation_split} of {n} samples leaves "
                         f"{split} for training and {n - split} for validation; both need >= 1")
    return [a[:split] for a in xs], [a[:split] for a in ys], ([a[split:] for a in xs], [a[split:] for a in ys])


def check_validation(model, x_val_y_val):
    """validation_data -> (checked xs, checked ys)."""
    if not isinstance(x_val_y_val, (tuple, list)) or len(x_val_y_val) != 2:
        raise ValueError("fit: validation_data must be a pair (x_val, y_val)")
    op = "fit (validation_data)"
    vxs = check_x(model, op, x_val_y_val[0])
    return vxs, check_y(model, op, vxs, x_val_y_val[1])
