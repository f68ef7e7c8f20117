"""The record an op family declares itself with (kernels/ops/<family>.py).

Everything that lists ops reads these records instead of a list of its own: the backends
bind each op as a method and reach the family's compute module through `attr`
(kernels/backend.py), the background compile sends an op's backward and runs its warm-up
(kernels/cpu/precompile.py, compile_worker.py), the start-up bench calls every warm-up
(bench/startup.py) and the static gpu check takes the families' `hot` flags
(kernels/gpu_static.py). Adding an op means adding an `Op` to its family.
"""
from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class Op:
    """One backend op, be.<name>(...).

    impl      the method: (be, *args, **kwargs); it validates the arguments (the family's
              shape rules), allocates the outputs with be.empty and calls the compute module
    backward  the op that back-propagates through this one (the background compile starts
              compiling it when this op first misses the cache), or None
    warmup    (be, dtype) -> None: calls the op on tiny arrays of that float dtype, once per
              kernel path it has (a serial and a threaded size, each fused activation), so
              that every kernel it can run is compiled; a backward op calls its forward for
              its inputs
    cost      (*args, **kwargs) -> (flops, bytes moved), the op's cost from the shapes of
              the arguments it is called with, for a profiler; None where not written yet
    """
    name: str
    impl: Callable
    backward: Optional[str] = None
    warmup: Optional[Callable] = None
    cost: Optional[Callable] = None


def op_pair(forward, backward, warmups, costs):
    """The Ops of a forward op and of the op that back-propagates through it, named as their
    functions are; warmups and costs: (the forward's, the backward's)."""
    return (Op(forward.__name__, forward, backward=backward.__name__, warmup=warmups[0], cost=costs[0]),
            Op(backward.__name__, backward, warmup=warmups[1], cost=costs[1]))


@dataclass(frozen=True)
class Family:
    """One family: its ops and the compute module both backends implement them with.

    module  kernels/cpu/<module>.py and kernels/gpu/<module>.py
    attr    the backend attribute the ops reach that module by (be.<attr>), imported on
            first use
    hot     its gpu kernels carry the FLOPs: the static check allows them no register spill
    """
    name: str
    module: str
    attr: str
    ops: tuple
    hot: bool = False
