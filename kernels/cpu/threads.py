"""Threads: Numba's threading layer (only known after a parallel kernel has run once), and
the dynamic hand-out of prange iterations that keeps a busy machine from stalling a call."""
import numba
import numpy as np
from numba import prange


@numba.njit(parallel=True, cache=True)
def _touch(a):
    for i in prange(a.shape[0]):
        a[i] = i


def threading_layer():
    _touch(np.empty(numba.get_num_threads(), dtype=np.int64))
    return numba.threading_layer()


# Elementwise kernels run on the calling thread for arrays up to this many elements (a
# Dense layer's 128 x 128 output: 16384): a parallel region costs more to start and join
# than one thread needs for them, and a busy machine's descheduled thread cannot hold them
# up. Measure: relu of 2**14 to 2**18 float32 through activation.forward with SERIAL_MAX
# above and below the size (timeit, numba's default threading layer).
SERIAL_MAX = 1 << 16

# Kernels whose prange items are coarse (an image, a run of images) split their work into
# this many items per thread and run under `dynamic`: enough that a thread which loses its
# core leaves most of its share to the others. Measure: numbanet bench --ops train_step
# with one core busy, at a few values.
CHUNKS_PER_THREAD = 8


@numba.njit(cache=True, inline="always")
def chunk(k, chunks, n):
    """(lo, hi) of the k-th of `chunks` contiguous runs that split range(n): a prange over
    chunks whose bodies run a serial loop (which LLVM vectorizes) on their run."""
    size = (n + chunks - 1) // chunks
    lo = min(k * size, n)
    return lo, min(lo + size, n)


def dynamic(kernel, *args):
    """Run a prange kernel with its iterations handed out one at a time (chunk size 1)
    instead of split evenly up front. With even splits, each thread owns half of the items
    and the call ends when the slower half does: on a machine where another process holds
    a core, the thread that shares it finishes its half late and the other thread waits.
    Handed out one at a time, the thread that keeps its core takes more of the items. For
    kernels whose items are coarse only (an image, a run of rows): with chunk size 1 an
    elementwise loop would be handed out one element at a time. Which thread runs an item
    changes no result."""
    previous = numba.set_parallel_chunksize(1)
    try:
        return kernel(*args)
    finally:
        numba.set_parallel_chunksize(previous)


def work_items(count):
    """How many items to split `count` units of work into for `dynamic`: CHUNKS_PER_THREAD
    per thread, at most one per unit. Read here, not in a kernel: numba.get_num_threads()
    inside @njit defeats cache=True."""
    return max(1, min(count, CHUNKS_PER_THREAD * numba.get_num_threads()))
