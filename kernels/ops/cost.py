"""What the families' cost formulas (Op.cost) share: sizes and bytes of the arguments.

An op's cost is (flops, bytes) from the shapes of the arguments it is called with, for the
profiler (numbanet/profiler/). The counting rule, the same for every op:

  flops  a multiply-add is 2; every other arithmetic operation, comparison, and each
         transcendental (exp, log, tanh, erf, sqrt) is 1; copies and gathers are 0
  bytes  the least the op must move: every array it reads once, every array it writes
         once (an array updated in place counts twice); cache effects are not counted

Arrays are NumPy or Numba device arrays: only .shape, .size and .dtype are read.
"""
import numpy as np


def size(arr):
    """Elements of arr; 0 for None."""
    return 0 if arr is None else int(arr.size)


def nbytes(*arrays):
    """Bytes of the arrays together (None entries count 0)."""
    return sum(int(a.size) * np.dtype(a.dtype).itemsize for a in arrays if a is not None)


def itemsize(arr):
    return np.dtype(arr.dtype).itemsize


def elementwise(flops_per_element, reads, writes):
    """The cost of an op over x's elements: (x, ...) -> flops_per_element per element,
    `reads` arrays of x's size read and `writes` written."""
    def cost(x, *args, **kwargs):
        return flops_per_element * size(x), (reads + writes) * nbytes(x)
    return cost


# FLOPs per element of an activation applied in an op's epilogue (the counting rule above:
# sigmoid is a negation, an exp, an add and a divide; gelu's exact form x * (1 + erf(x /
# sqrt 2)) / 2 four operations and an erf).
ACTIVATION_FLOPS = {None: 0, "linear": 0, "relu": 1, "leaky_relu": 2, "tanh": 1, "sigmoid": 4, "gelu": 5,
                    "silu": 5}


def activation_flops(activation):
    """FLOPs per element of a fused activation (by name; None or "linear": 0)."""
    return ACTIVATION_FLOPS[activation]
