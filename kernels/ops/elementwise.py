"""The elementwise family: bias add, dropout (kernels/rules.py's counter hash), the L1/L2
penalty and its gradient, scaling, addition, concatenate / split / transpose copies and the
row gather, on kernels/<backend>/elementwise.py."""
import math

import numpy as np

from numbanet.kernels import shapes
from numbanet.kernels.ops import cost
from numbanet.kernels.ops.declare import Family, Op, op_pair


def bias_add(be, x, b):
    """y = x + b over the last axis (b has x.shape[-1] entries)."""
    op = "bias_add"
    x, b = be._prepare(op, x=x, b=b)
    shapes.check_float(op, "x", x)
    shapes.check_float(op, "b", b)
    shapes.check_same_dtype(op, [("x", x), ("b", b)])
    if x.ndim < 1:
        raise ValueError(f"{op}: x must have a last (channel) axis, got a 0-D array")
    shapes.check_nonempty(op, "x", x)
    shapes.check_shape(op, "b", b, (x.shape[x.ndim - 1],))
    y = be.empty(x.shape, x.dtype)
    c = x.shape[x.ndim - 1]  # the CUDA simulator's shapes refuse negative indices
    be.elementwise.bias_add(be.reshape(x, (x.size // c, c)), b, be.reshape(y, (x.size // c, c)))
    return y


def dropout(be, x, rate, seed):
    """-> (y, mask): mask is 0 or 1 / (1 - rate), drawn from a counter-based hash of
    (seed, element index), so both backends draw the same mask for the same seed."""
    op = "dropout"
    x = be._unary(op, x)
    rate = shapes.float_scalar(op, "rate", rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{op}: rate must be in [0, 1), got {rate}")
    seed = shapes.int_scalar(op, "seed", seed, 0, 2 ** 63)
    y = be.empty(x.shape, x.dtype)
    mask = be.empty(x.shape, x.dtype)
    be.elementwise.dropout_forward(be._flat(x), be._flat(y), be._flat(mask), rate, seed)
    return y, mask


def dropout_backward(be, dy, mask):
    op = "dropout_backward"
    dy, mask = be._prepare(op, dy=dy, mask=mask)
    shapes.check_alike(op, [("dy", dy), ("mask", mask)])
    dx = be.empty(dy.shape, dy.dtype)
    be.elementwise.multiply(be._flat(dy), be._flat(mask), be._flat(dx))
    return dx


def l1_l2_grad(be, w, dw, *, l1=0.0, l2=0.0):
    """In place: dw += l1 * sign(w) + 2 * l2 * w (the gradient of Keras's l1_l2 penalty)."""
    op = "l1_l2_grad"
    l1, l2 = shapes.float_scalar(op, "l1", l1), shapes.float_scalar(op, "l2", l2)
    be._check_native(op, "w", w)
    if not be._is_c_contiguous(w):
        raise ValueError(f"{op}: w must be C-contiguous")
    be._check_written(op, "dw", dw, [("w", w)])
    shapes.check_alike(op, [("w", w), ("dw", dw)])
    be.elementwise.l1_l2_grad(be._flat(w), be._flat(dw), l1, l2)


def l1_l2_penalty(be, w, *, l1=0.0, l2=0.0, into=None):
    """l1 * sum|w| + l2 * sum(w^2), a Python float; or, with `into` (a float64 array of
    shape (1,) on this backend), added to into[0] on the backend and into returned: a
    training step sums its penalties there and reads one number back, not one per array."""
    op = "l1_l2_penalty"
    l1, l2 = shapes.float_scalar(op, "l1", l1), shapes.float_scalar(op, "l2", l2)
    w = be._prepare(op, w=w)
    shapes.check_float(op, "w", w)
    if into is None:
        return float(be.elementwise.l1_l2_penalty(be._flat(w), l1, l2))
    be._check_into(op, into)
    be.elementwise.l1_l2_penalty_into(be._flat(w), l1, l2, into)
    return into


def scale(be, x, alpha, *, out=None):
    """y = alpha * x; out may be x (in place: data-parallel training scales its packed
    gradients so, nn/distributed.py)."""
    op = "scale"
    x = be._unary(op, x)
    if out is None:
        out = be.empty(x.shape, x.dtype)
    else:
        # Elementwise: out may BE x, but not overlap it any other way.
        be._check_written(op, "out", out, [] if out is x else [("x", x)])
        shapes.check_same_dtype(op, [("out", out), ("x", x)])
        shapes.check_same_shape(op, [("out", out), ("x", x)])
    be.elementwise.scale(be._flat(x), shapes.float_scalar(op, "alpha", alpha), be._flat(out))
    return out


def add(be, a, b, *, out=None):
    """a + b of one shape and dtype (nothing is broadcast); out may be a or b, for
    in-place accumulation (a layer's gradients summed over the branches of a fan-out)."""
    op = "add"
    a, b = be._prepare(op, a=a, b=b)
    shapes.check_alike(op, [("a", a), ("b", b)])
    shapes.check_nonempty(op, "a", a)
    if out is None:
        out = be.empty(a.shape, a.dtype)
    else:
        # out may BE a or b (each element is read before it is written), but not overlap
        # them any other way (a shifted view would read values already written).
        be._check_written(op, "out", out, [(n, arr) for n, arr in (("a", a), ("b", b)) if arr is not out])
        shapes.check_same_dtype(op, [("out", out), ("a", a)])
        shapes.check_same_shape(op, [("out", out), ("a", a)])
    be.elementwise.add(be._flat(a), be._flat(b), be._flat(out))
    return out


def _axis(op, axis, ndim):
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis must be an int in [{-ndim}, {ndim}), got {axis!r}")
    return int(axis) % ndim


def concatenate(be, arrays, axis=-1):
    """Join arrays along `axis`; every other dimension must agree."""
    op = "concatenate"
    if not isinstance(arrays, (list, tuple)) or not arrays:
        raise ValueError(f"{op}: expected a non-empty list of arrays, got {arrays!r}")
    arrays = [be._prepare(op, **{f"arrays[{i}]": a}) for i, a in enumerate(arrays)]
    for i, a in enumerate(arrays):
        shapes.check_float(op, f"arrays[{i}]", a)
        shapes.check_nonempty(op, f"arrays[{i}]", a)
    shapes.check_same_dtype(op, [(f"arrays[{i}]", a) for i, a in enumerate(arrays)])
    first = arrays[0]
    axis = _axis(op, axis, first.ndim)
    for i, a in enumerate(arrays[1:], 1):
        if a.ndim != first.ndim or any(a.shape[d] != first.shape[d] for d in range(a.ndim) if d != axis):
            raise ValueError(f"{op}: arrays[{i}].shape={tuple(a.shape)} does not match "
                             f"arrays[0].shape={tuple(first.shape)} outside axis {axis}")
    out_shape = list(first.shape)
    out_shape[axis] = sum(a.shape[axis] for a in arrays)
    out = be.empty(tuple(out_shape), first.dtype)
    outer = math.prod(first.shape[:axis])
    out2 = be.reshape(out, (outer, out.size // outer))
    offset = 0
    for a in arrays:
        width = a.size // outer
        be.elementwise.copy_into_columns(be.reshape(a, (outer, width)), out2, offset)
        offset += width
    return out


def split(be, x, sizes, axis=-1):
    """The inverse of concatenate: pieces of x along `axis` with the given sizes (summing to x.shape[axis])."""
    op = "split"
    x = be._unary(op, x)
    axis = _axis(op, axis, x.ndim)
    try:
        sizes = [int(s) for s in sizes]
    except TypeError:
        raise ValueError(f"{op}: sizes must be a list of ints, got {sizes!r}") from None
    if not sizes or min(sizes) < 1 or sum(sizes) != x.shape[axis]:
        raise ValueError(f"{op}: sizes {sizes} must be positive and sum to x.shape[{axis}]={x.shape[axis]} "
                         f"(x.shape={tuple(x.shape)})")
    outer = math.prod(x.shape[:axis])
    x2 = be.reshape(x, (outer, x.size // outer))
    inner = x.size // outer // x.shape[axis]
    pieces, offset = [], 0
    for size in sizes:
        shape = x.shape[:axis] + (size,) + x.shape[axis + 1:]
        piece = be.empty(shape, x.dtype)
        be.elementwise.copy_from_columns(x2, be.reshape(piece, (outer, size * inner)), offset)
        pieces.append(piece)
        offset += size * inner
    return pieces


def transpose(be, x, axes):
    """A C-contiguous copy of x with its axes permuted (NumPy's x.transpose(axes)); rank <= 6."""
    op = "transpose"
    x = be._unary(op, x)
    try:
        axes = tuple(int(a) for a in axes)
    except TypeError:
        raise ValueError(f"{op}: axes must be a permutation of range({x.ndim}), got {axes!r}") from None
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"{op}: axes must be a permutation of range({x.ndim}), got {axes} "
                         f"(x.shape={tuple(x.shape)})")
    if x.ndim > 6:
        raise ValueError(f"{op}: x has {x.ndim} dimensions; at most 6 are supported")
    element_strides = [math.prod(x.shape[d + 1:]) for d in range(x.ndim)]
    out_shape = tuple(x.shape[a] for a in axes)
    pad = 6 - x.ndim
    shape6 = (1,) * pad + out_shape
    strides6 = (0,) * pad + tuple(element_strides[a] for a in axes)
    y = be.empty(out_shape, x.dtype)
    be.elementwise.transpose(be._flat(x), be._flat(y), shape6, strides6)
    return y


def take_rows(be, x, indices, *, _indices_checked=False):
    """y[i] = x[indices[i]] along axis 0 (batches drawn from a device-resident dataset)."""
    op = "take_rows"
    x, indices = be._prepare(op, x=x, indices=indices)
    shapes.check_float_or_int(op, "x", x)  # float rows or int32 class labels (fit's y)
    shapes.check_int(op, "indices", indices)
    shapes.check_ndim(op, "indices", indices, 1)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{op}: x must have at least one row, got shape {tuple(x.shape)}")
    if not _indices_checked:
        be._check_range(op, "indices", indices, x.shape[0], f"x with {x.shape[0]} rows")
    rest = x.size // x.shape[0]
    y = be.empty((indices.shape[0],) + tuple(x.shape[1:]), x.dtype)
    be.elementwise.take_rows(be.reshape(x, (x.shape[0], rest)), indices,
                             be.reshape(y, (indices.shape[0], rest)))
    return y



# --------------------------------------------------------------------------- warm-ups

def _warm_bias_add(be, dt):
    be.bias_add(be.zeros((4, 10), dt), be.zeros((10,), dt))


def _warm_dropout(be, dt):
    be.dropout(be.zeros((3, 4), dt), 0.5, 7)


def _warm_dropout_backward(be, dt):
    d, mask = be.dropout(be.zeros((3, 4), dt), 0.5, 7)
    be.dropout_backward(d, mask)


def _warm_l1_l2_grad(be, dt):
    be.l1_l2_grad(be.zeros((4, 10), dt), be.zeros((4, 10), dt), l1=0.01, l2=0.01)


def _warm_l1_l2_penalty(be, dt):
    w = be.zeros((4, 10), dt)
    be.l1_l2_penalty(w, l1=0.01, l2=0.01)
    be.l1_l2_penalty(w, l1=0.01, l2=0.01, into=be.zeros((1,), np.float64))


def _warm_scale(be, dt):
    x = be.zeros((4, 10), dt)
    be.scale(x, 0.5)
    be.scale(x, 0.5, out=x)


def _warm_add(be, dt):
    # A size on each side of the cpu's threading threshold (kernels/cpu/threads.py: SERIAL_MAX).
    for shape in ((4, 10), (1 << 17,)):
        a = be.zeros(shape, dt)
        be.add(a, be.zeros(shape, dt), out=a)


def _warm_concatenate(be, dt):
    be.concatenate([be.zeros((2, 3), dt), be.zeros((2, 4), dt)], axis=-1)


def _warm_split(be, dt):
    be.split(be.zeros((2, 7), dt), [3, 4], axis=-1)


def _warm_transpose(be, dt):
    be.transpose(be.zeros((2, 3, 4), dt), (0, 2, 1))


def _warm_take_rows(be, dt):
    rows = be.asarray(np.array([3, 0], dtype=np.int32))
    be.take_rows(be.zeros((4, 10), dt), rows)
    be.take_rows(be.asarray(np.arange(4, dtype=np.int32)), rows)   # fit's integer labels


# --------------------------------------------------------------------------- costs (Op.cost)

def _cost_bias_add(x, b):
    return cost.size(x), 2 * cost.nbytes(x) + cost.nbytes(b)


def _cost_l1_l2_grad(w, dw, *, l1=0.0, l2=0.0):
    # dw += l1 * sign(w) + 2 * l2 * w: the sign, two multiplies, two adds and the doubling; dw read and written.
    return 6 * cost.size(w), 3 * cost.nbytes(w)


def _cost_l1_l2_penalty(w, *, l1=0.0, l2=0.0, into=None):
    # |w| added, w * w added (a multiply-add).
    return 4 * cost.size(w), cost.nbytes(w)


def _cost_copy(x, *args, **kwargs):
    """An op that only moves x's elements: read once, written once."""
    return 0, 2 * cost.nbytes(x)


def _cost_concatenate(arrays, axis=-1):
    return 0, 2 * cost.nbytes(*arrays)


def _cost_take_rows(x, indices, *, _indices_checked=False):
    row = cost.size(x) // x.shape[0] * cost.itemsize(x)
    return 0, cost.nbytes(indices) + 2 * indices.shape[0] * row


_cost_dropout = cost.elementwise(2, 1, 2)            # the hash's draw compared, x scaled; y and mask written
_cost_dropout_backward = cost.elementwise(1, 2, 1)   # dy * mask
_cost_scale = cost.elementwise(1, 1, 1)
_cost_add = cost.elementwise(1, 2, 1)
_cost_split = _cost_copy
_cost_transpose = _cost_copy


FAMILY = Family("elementwise", module="elementwise", attr="elementwise", ops=(
    Op("bias_add", bias_add, warmup=_warm_bias_add, cost=_cost_bias_add),
    *op_pair(dropout, dropout_backward, (_warm_dropout, _warm_dropout_backward),
             (_cost_dropout, _cost_dropout_backward)),
    Op("l1_l2_grad", l1_l2_grad, warmup=_warm_l1_l2_grad, cost=_cost_l1_l2_grad),
    Op("l1_l2_penalty", l1_l2_penalty, warmup=_warm_l1_l2_penalty, cost=_cost_l1_l2_penalty),
    Op("scale", scale, warmup=_warm_scale, cost=_cost_scale),
    Op("add", add, warmup=_warm_add, cost=_cost_add),
    Op("concatenate", concatenate, backward="split", warmup=_warm_concatenate, cost=_cost_concatenate),
    Op("split", split, backward="concatenate", warmup=_warm_split, cost=_cost_split),
    Op("transpose", transpose, warmup=_warm_transpose, cost=_cost_transpose),
    Op("take_rows", take_rows, warmup=_warm_take_rows, cost=_cost_take_rows),
))
