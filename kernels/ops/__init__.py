"""Every op of the backends, declared once per family (kernels/ops/<family>.py).

    from numbanet.kernels import ops
    ops.FAMILIES            # the families, in this order
    ops.get("conv2d")       # an Op: name, impl, backward, warmup, cost (kernels/ops/declare.py)
    ops.all_ops()           # every Op

A family module holds its ops' argument rules (shapes, dtypes, the op's own shape
arithmetic), the ops themselves as functions of the backend, and its declaration FAMILY.
kernels/backend.py binds every op as a method of each backend; the rest of the package
reads the declarations (see declare.py).
"""
import sys

from numbanet.kernels.ops import (activation, attention, batchnorm, conv, elementwise, embedding, gemm, layernorm,
                                  loss, optim, pool, reduce, rnn)

FAMILIES = tuple(m.FAMILY for m in (gemm, conv, pool, optim, activation, loss, elementwise, reduce, attention,
                                    layernorm, embedding, rnn, batchnorm))
_BY_NAME = {op.name: op for family in FAMILIES for op in family.ops}
_BY_CODE = {op.impl.__code__: op for op in _BY_NAME.values()}


def all_ops():
    return tuple(_BY_NAME.values())


def get(name):
    """The Op called `name`; KeyError names the ops there are."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no op {name!r}; the ops are {', '.join(sorted(_BY_NAME))}") from None


def family_of(name):
    return next(f for f in FAMILIES if any(op.name == name for op in f.ops))


def running_op():
    """The outermost op being called on this thread's stack (the one a caller called), or
    None. Read from the stack, so an op call costs nothing for it; the background compile
    asks on a cache miss, which is rare."""
    frame, found = sys._getframe(1), None
    while frame is not None:
        op = _BY_CODE.get(frame.f_code)
        if op is not None:
            found = op
        frame = frame.f_back
    return found
