"""kernels/rules.py compiled for the cpu: each rule as numba.njit(inline="always"), so that
it is part of the loop that calls it (vectorized with it) rather than a call per element.

gate_tanh and gate_sigmoid are the recurrent cells' tanh and sigmoid: the rational forms
of kernels/rules.py for float32 (they vectorize across a tile's lanes; libm's tanhf is a
scalar call), math.tanh and the exp form for float64, the gradient-check dtype. They are
compiled with FMA contraction always (the recurrence kernels', which call them): an
overload left to inherit its flags takes those of whichever caller compiles it first,
and its cached copy then serves every caller, so its bits would depend on that order.
"""
import math

import numba
from numba import types
from numba.extending import overload

from numbanet.kernels import rules

# Every rule of kernels/rules.py under its own name here.
globals().update(rules.compile_rules(numba.njit(inline="always")))


def gate_tanh(x):
    return math.tanh(x)


def gate_sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@overload(gate_tanh, jit_options={"fastmath": {"contract"}})
def _gate_tanh(x):
    if x == types.float32:
        return lambda x: tanh_rational(x)   # noqa: F821 (compiled above)
    return lambda x: math.tanh(x)


@overload(gate_sigmoid, jit_options={"fastmath": {"contract"}})
def _gate_sigmoid(x):
    if x == types.float32:
        return lambda x: sigmoid_rational(x)   # noqa: F821
    return lambda x: sigmoid(x, 1.0)   # noqa: F821
