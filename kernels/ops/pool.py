"""The pool family on kernels/<backend>/pool.py, forward and backward: max and average
2-D pooling (the 1-D layers run them on height-1 images), global max pooling over the
steps of (N, steps, C), and nearest-neighbour 2-D upsampling."""
import math

import numpy as np

from numbanet.kernels import shapes
from numbanet.kernels.ops import cost
from numbanet.kernels.ops.declare import Family, Op, op_pair


def pool_shapes(op, x_shape, pool_size, strides, padding):
    """-> (pool_size, strides, (out_h, out_w, pt, pl, pb, pr))."""
    pool_size = shapes.pair(op, "pool_size", pool_size)
    strides = pool_size if strides is None else shapes.pair(op, "strides", strides)
    geometry = shapes.resolve_padding(op, padding, x_shape[1:3], pool_size, strides, explicit=False)
    return pool_size, strides, geometry


def check_x_shape(op, x_shape):
    """A shape the op allocates from: 4 positive ints (no floats that int() would
    truncate, no bools), small enough that N*H*W*C fits an int64 index."""
    return check_shape_ints(op, x_shape, 4, "(N, H, W, C)")


def check_shape_ints(op, x_shape, ndim, layout):
    """check_x_shape's rule for an x_shape of ndim axes named by layout."""
    try:
        shape = tuple(x_shape)
    except TypeError:
        raise ValueError(f"{op}: x_shape must be a tuple of {ndim} ints {layout}, got {x_shape!r}") from None
    if len(shape) != ndim or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape) \
            or min(shape) < 1:
        raise ValueError(f"{op}: x_shape must be {ndim} positive ints {layout}, got {x_shape!r}")
    shape = tuple(int(s) for s in shape)
    if math.prod(shape) >= 2 ** 62:
        raise ValueError(f"{op}: x_shape={shape} has more elements than an array can hold")
    return shape


def _float_nhwc(be, op, name, arr):
    """arr, prepared for the backend and checked: a non-empty NHWC float array."""
    arr = be._prepare(op, **{name: arr})
    shapes.check_float(op, name, arr)
    shapes.check_ndim(op, name, arr, 4, "NHWC")
    shapes.check_nonempty(op, name, arr)
    return arr


def _pool_forward(be, op, x, pool_size, strides, padding):
    """-> (x, y, (ph, pw, sh, sw, pt, pl)): x checked (NHWC floats), y allocated."""
    x = _float_nhwc(be, op, "x", x)
    (ph, pw), (sh, sw), (oh, ow, pt, pl, _, _) = pool_shapes(op, x.shape, pool_size, strides, padding)
    return x, be.empty((x.shape[0], oh, ow, x.shape[3]), x.dtype), (ph, pw, sh, sw, pt, pl)


def max_pool2d(be, x, *, pool_size=(2, 2), strides=None, padding="valid"):
    """-> (y, indices); indices (int32, y's shape) hold h * W + w of each max in x."""
    x, y, window = _pool_forward(be, "max_pool2d", x, pool_size, strides, padding)
    indices = be.empty(y.shape, np.int32)
    be.pool.max_pool2d_forward(x, y, indices, *window)
    return y, indices


def max_pool2d_backward(be, dy, indices, x_shape, *, _indices_checked=False):
    """dx (x_shape) with dy added at the cells indices name (h * W + w within each image
    and channel). Every index is checked against H * W before anything is written."""
    op = "max_pool2d_backward"
    dy, indices = be._prepare(op, dy=dy, indices=indices)
    x_shape = check_x_shape(op, x_shape)
    shapes.check_float(op, "dy", dy)
    shapes.check_ndim(op, "dy", dy, 4, "NHWC")
    shapes.check_nonempty(op, "dy", dy)
    shapes.check_int(op, "indices", indices)
    if np.dtype(indices.dtype) != np.int32:
        raise TypeError(f"{op}: indices must be the int32 array max_pool2d returned, got {indices.dtype}")
    shapes.check_shape(op, "indices", indices, dy.shape)
    n, h, w, c = x_shape
    if dy.shape[0] != n or dy.shape[3] != c or dy.shape[1] > h or dy.shape[2] > w:
        # A pooling output is never taller or wider than its input ("same" keeps the size).
        raise ValueError(f"{op}: dy.shape={tuple(dy.shape)} cannot be a max_pool2d output of an x of "
                         f"shape x_shape={x_shape} (batch and channels must match, height and width "
                         f"must not exceed x's)")
    if not _indices_checked:
        be._check_range(op, "indices", indices, h * w, f"x_shape={x_shape} ({h}x{w} = {h * w} cells "
                                                          f"per image)")
    dx = be.empty(x_shape, dy.dtype)
    be.pool.max_pool2d_backward(dy, indices, dx)
    return dx


def avg_pool2d(be, x, *, pool_size=(2, 2), strides=None, padding="valid"):
    """Average over the window's cells inside x ("same" padding cells are not counted)."""
    x, y, window = _pool_forward(be, "avg_pool2d", x, pool_size, strides, padding)
    be.pool.avg_pool2d_forward(x, y, *window)
    return y


def avg_pool2d_backward(be, dy, x_shape, *, pool_size=(2, 2), strides=None, padding="valid"):
    op = "avg_pool2d_backward"
    dy = be._prepare(op, dy=dy)
    x_shape = check_x_shape(op, x_shape)
    shapes.check_float(op, "dy", dy)
    shapes.check_ndim(op, "dy", dy, 4, "NHWC")
    (ph, pw), (sh, sw), (oh, ow, pt, pl, _, _) = pool_shapes(op, x_shape, pool_size, strides, padding)
    shapes.check_shape(op, "dy", dy, (x_shape[0], oh, ow, x_shape[3]))
    dx = be.empty(x_shape, dy.dtype)
    be.pool.avg_pool2d_backward(dy, dx, ph, pw, sh, sw, pt, pl)
    return dx


def global_max_pool(be, x):
    """(N, steps, C) x -> (y, indices), both (N, C): the maximum over the steps per
    (sample, channel) and its step (int32; the first maximum, or the first NaN)."""
    op = "global_max_pool"
    x = be._prepare(op, x=x)
    shapes.check_float(op, "x", x)
    shapes.check_ndim(op, "x", x, 3, "(N, steps, C)")
    shapes.check_nonempty(op, "x", x)
    y = be.empty((x.shape[0], x.shape[2]), x.dtype)
    indices = be.empty(y.shape, np.int32)
    be.pool.global_max_pool_forward(x, y, indices)
    return y, indices


def global_max_pool_backward(be, dy, indices, x_shape, *, _indices_checked=False):
    """dx (x_shape = (N, steps, C)): dy[n, c] at step indices[n, c], zero elsewhere. Every
    index is checked against steps before anything is written."""
    op = "global_max_pool_backward"
    dy, indices = be._prepare(op, dy=dy, indices=indices)
    x_shape = check_shape_ints(op, x_shape, 3, "(N, steps, C)")
    shapes.check_float(op, "dy", dy)
    shapes.check_ndim(op, "dy", dy, 2, "(N, C)")
    shapes.check_int(op, "indices", indices)
    if np.dtype(indices.dtype) != np.int32:
        raise TypeError(f"{op}: indices must be the int32 array global_max_pool returned, got {indices.dtype}")
    shapes.check_shape(op, "dy", dy, (x_shape[0], x_shape[2]))
    shapes.check_shape(op, "indices", indices, tuple(dy.shape))
    if not _indices_checked:
        be._check_range(op, "indices", indices, x_shape[1], f"x_shape={x_shape} ({x_shape[1]} steps)")
    dx = be.empty(x_shape, dy.dtype)
    be.pool.global_max_pool_backward(dy, indices, dx)
    return dx


def upsample2d(be, x, *, size=(2, 2)):
    """NHWC x -> (N, H*sh, W*sw, C): each pixel repeated into an sh x sw block (Keras's
    UpSampling2D, interpolation "nearest")."""
    op = "upsample2d"
    x = _float_nhwc(be, op, "x", x)
    sh, sw = shapes.pair(op, "size", size)
    n, h, w, c = x.shape
    if n * h * sh * w * sw * c >= 2 ** 62:
        raise ValueError(f"{op}: size={(sh, sw)} makes an output of more elements than an array can hold "
                         f"(x.shape={tuple(x.shape)})")
    y = be.empty((n, h * sh, w * sw, c), x.dtype)
    be.pool.upsample2d_forward(x, y, sh, sw)
    return y


def upsample2d_backward(be, dy, *, size=(2, 2)):
    """dx (N, H, W, C) of upsample2d: the sum of dy over each sh x sw block."""
    op = "upsample2d_backward"
    dy = _float_nhwc(be, op, "dy", dy)
    sh, sw = shapes.pair(op, "size", size)
    n, h, w, c = dy.shape
    if h % sh or w % sw:
        raise ValueError(f"{op}: dy.shape={tuple(dy.shape)} is not an upsample2d output of size={(sh, sw)} "
                         f"(height and width must be multiples of it)")
    dx = be.empty((n, h // sh, w // sw, c), dy.dtype)
    be.pool.upsample2d_backward(dy, dx, sh, sw)
    return dx



# --------------------------------------------------------------------------- warm-ups

def _warm_max_pool2d(be, dt):
    # The 2x2 window and a general one, each with few channels and with many
    # (kernels/cpu/pool.py picks its loops by both).
    for channels in (3, 9):
        for window, padding in (((2, 2), "valid"), ((3, 3), "same")):
            be.max_pool2d(be.zeros((2, 5, 5, channels), dt), pool_size=window, padding=padding)


def _warm_max_pool2d_backward(be, dt):
    # Zero indices (valid ones) rather than max_pool2d's: the forward need not run first.
    be.max_pool2d_backward(be.zeros((2, 2, 2, 3), dt), be.zeros((2, 2, 2, 3), np.int32), (2, 4, 4, 3))


def _warm_avg_pool2d(be, dt):
    for padding in ("valid", "same"):
        be.avg_pool2d(be.zeros((2, 5, 5, 3), dt), padding=padding)


def _warm_avg_pool2d_backward(be, dt):
    for padding, side in (("valid", 2), ("same", 3)):
        be.avg_pool2d_backward(be.zeros((2, side, side, 3), dt), (2, 5, 5, 3), padding=padding)


def _warm_global_max_pool(be, dt):
    be.global_max_pool(be.zeros((2, 5, 3), dt))


def _warm_global_max_pool_backward(be, dt):
    be.global_max_pool_backward(be.zeros((2, 3), dt), be.zeros((2, 3), np.int32), (2, 5, 3))


def _warm_upsample2d(be, dt):
    be.upsample2d(be.zeros((2, 3, 3, 3), dt))


def _warm_upsample2d_backward(be, dt):
    be.upsample2d_backward(be.zeros((2, 6, 6, 3), dt))


# --------------------------------------------------------------------------- costs (Op.cost)

def _pool_sizes(op, x_shape, pool_size, strides, padding):
    """(output elements, cells per window)."""
    (ph, pw), _, (oh, ow, _, _, _, _) = pool_shapes(op, x_shape, pool_size, strides, padding)
    return x_shape[0] * oh * ow * x_shape[3], ph * pw


def _cost_max_pool2d(x, *, pool_size=(2, 2), strides=None, padding="valid"):
    # One comparison per window cell; y and its int32 indices written.
    outs, cells = _pool_sizes("max_pool2d", tuple(x.shape), pool_size, strides, padding)
    return outs * cells, cost.nbytes(x) + outs * (cost.itemsize(x) + 4)


def _cost_max_pool2d_backward(dy, indices, x_shape, *, _indices_checked=False):
    # dx written whole (zeros where no maximum was), one add per dy element.
    return cost.size(dy), cost.nbytes(dy, indices) + int(np.prod(x_shape)) * cost.itemsize(dy)


def _cost_avg_pool2d(x, *, pool_size=(2, 2), strides=None, padding="valid"):
    # The window's cells added, the sum scaled once.
    outs, cells = _pool_sizes("avg_pool2d", tuple(x.shape), pool_size, strides, padding)
    return outs * cells, cost.nbytes(x) + outs * cost.itemsize(x)


def _cost_avg_pool2d_backward(dy, x_shape, *, pool_size=(2, 2), strides=None, padding="valid"):
    # Each dy element scaled once and added to its window's cells.
    outs, cells = _pool_sizes("avg_pool2d_backward", tuple(x_shape), pool_size, strides, padding)
    return outs * (cells + 1), cost.nbytes(dy) + int(np.prod(x_shape)) * cost.itemsize(dy)


# A compare or an add per element read; int32 indices 4 bytes each.

def _cost_global_max_pool(x):
    n, steps, c = x.shape
    return x.size, (x.size + n * c) * x.dtype.itemsize + 4 * n * c


def _cost_global_max_pool_backward(dy, indices, x_shape, **_):
    size = math.prod(x_shape)
    return 0, (dy.size + size) * dy.dtype.itemsize + 4 * indices.size


def _cost_upsample2d(x, *, size=(2, 2)):
    sh, sw = shapes.pair("upsample2d", "size", size)
    return 0, x.size * (1 + sh * sw) * x.dtype.itemsize


def _cost_upsample2d_backward(dy, *, size=(2, 2)):
    sh, sw = shapes.pair("upsample2d_backward", "size", size)
    return dy.size, (dy.size + dy.size // (sh * sw)) * dy.dtype.itemsize


FAMILY = Family("pool", module="pool", attr="pool", ops=(
    *op_pair(max_pool2d, max_pool2d_backward, (_warm_max_pool2d, _warm_max_pool2d_backward),
             (_cost_max_pool2d, _cost_max_pool2d_backward)),
    *op_pair(avg_pool2d, avg_pool2d_backward, (_warm_avg_pool2d, _warm_avg_pool2d_backward),
             (_cost_avg_pool2d, _cost_avg_pool2d_backward)),
    *op_pair(global_max_pool, global_max_pool_backward, (_warm_global_max_pool, _warm_global_max_pool_backward),
             (_cost_global_max_pool, _cost_global_max_pool_backward)),
    *op_pair(upsample2d, upsample2d_backward, (_warm_upsample2d, _warm_upsample2d_backward),
             (_cost_upsample2d, _cost_upsample2d_backward)),
))
