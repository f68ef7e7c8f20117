"""The range rule for labels and indices on the gpu, written once: one device scan.

Bad entries are found on the device, so only the result crosses the bus: one int64 (the
first bad position, or the length when there is none) comes back, and the bad value only
when there is one. The buffer is set by a kernel rather than uploaded: a host-to-device
copy from pageable memory waits for the stream, a launch queues behind it.

A training step never calls this: Sequential checks labels on the host and builds its
batch and pooling indices itself (see Backend._check_range). The kernels that index
memory with data (pool.py's max backward, elementwise.py's take_rows) also test each
entry with `in_range` and skip a bad one, so even an unchecked call stays inside its
arrays.
"""
import numpy as np
from numba import cuda

from numbanet.kernels.gpu.launch import grid_1d, scratch
from numbanet.kernels.gpu.rules import in_range


@cuda.jit
def _set(first, value):
    first[0] = value


@cuda.jit
def _first_out_of_range(idx, n, first):
    # atomic.min on an int is order-independent: the result is the lowest bad position,
    # whichever thread gets there first.
    for i in range(cuda.grid(1), idx.shape[0], cuda.gridsize(1)):
        if not in_range(idx[i], n):
            cuda.atomic.min(first, 0, i)


def first_out_of_range(idx, n):
    """-> (position, value) of the first entry of the flat device array idx outside
    [0, n), or None."""
    size = idx.shape[0]
    first = scratch("first-out-of-range", (1,), np.int64)
    _set[1, 1](first, size)
    _first_out_of_range[grid_1d(size)](idx, n, first)
    at = int(first.copy_to_host()[0])
    if at == size:
        return None
    return at, int(idx[at:at + 1].copy_to_host()[0])
