"""The reduce family: column sums (bias gradients), a scalar sum (to the host, or added to a
backend cell) and the row-wise argmax, on kernels/<backend>/reduce.py."""
import numpy as np

from numbanet.kernels import shapes
from numbanet.kernels.ops import cost
from numbanet.kernels.ops.declare import Family, Op


def column_sum(be, x):
    """Sum over every axis but the last (a bias gradient): (..., C) -> (C,)."""
    op = "column_sum"
    x = be._unary(op, x)
    if x.ndim < 1:
        raise ValueError(f"{op}: x must have a last (column) axis, got a 0-D array")
    c = x.shape[x.ndim - 1]  # the CUDA simulator's shapes refuse negative indices
    out = be.empty((c,), x.dtype)
    be.reduce.column_sum(be.reshape(x, (x.size // c, c)), out)
    return out


def sum(be, x, *, into=None, scale=1.0):
    """Sum of every element, a Python float; or, with `into` (a float64 array of shape
    (1,) on this backend), scale * sum added to into[0] on the backend and into returned
    (no host round trip: see l1_l2_penalty)."""
    op = "sum"
    x = be._unary(op, x)
    if into is None:
        return float(be.reduce.sum(be._flat(x)))
    be._check_into(op, into)
    be.reduce.sum_into(be._flat(x), shapes.float_scalar(op, "scale", scale), into)
    return into


def argmax(be, x):
    """Row-wise argmax of a 2-D (N, C) array -> int32 (N,)."""
    op = "argmax"
    x = be._unary(op, x)
    shapes.check_ndim(op, "x", x, 2, "(N, C)")
    out = be.empty((x.shape[0],), np.int32)
    be.reduce.argmax(x, out)
    return out



# --------------------------------------------------------------------------- warm-ups

def _warm_column_sum(be, dt):
    # One block of rows and several (kernels/cpu/reduce.py sums blocks in parallel).
    for rows in (5, 5000):
        be.column_sum(be.zeros((rows, 3), dt))


def _warm_sum(be, dt):
    x = be.zeros((4, 10), dt)
    be.sum(x)
    be.sum(x, into=be.zeros((1,), np.float64), scale=0.5)


def _warm_argmax(be, dt):
    be.argmax(be.zeros((4, 10), dt))


# --------------------------------------------------------------------------- costs (Op.cost)

def _cost_column_sum(x):
    c = x.shape[x.ndim - 1]
    return cost.size(x), cost.nbytes(x) + c * cost.itemsize(x)


def _cost_sum(x, *, into=None, scale=1.0):
    return cost.size(x), cost.nbytes(x)


def _cost_argmax(x):
    # A comparison per element; an int32 per row written.
    return cost.size(x), cost.nbytes(x) + 4 * x.shape[0]


FAMILY = Family("reduce", module="reduce", attr="reduce", ops=(
    Op("column_sum", column_sum, warmup=_warm_column_sum, cost=_cost_column_sum),
    Op("sum", sum, warmup=_warm_sum, cost=_cost_sum),
    Op("argmax", argmax, warmup=_warm_argmax, cost=_cost_argmax),
))
