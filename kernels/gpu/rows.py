"""Block-per-row building blocks for the gpu's row-wise kernels (softmax, layer norm), and
the fixed-order tree fold the whole-array reductions share with them.

A block of ROW_THREADS threads owns one row: consecutive threads read consecutive
elements (coalesced), each keeps a partial, and the block folds the partials with a tree
in shared memory whose pairing is fixed (stride halves; thread t adds t + stride), so a
row's result is the same bits on every run. Partials are float64 for both dtypes: the
folds are a small part of the work and the extra precision costs nothing there.
The CUDA simulator has no warp shuffles, so the folds use shared memory only; a kernel
declares the buffer as cuda.shared.array(ROW_THREADS, float64).
"""
from numba import cuda

from numbanet.kernels.gpu.launch import inlined

# One warp per row: rows run from 10 classes to a vocabulary, and a wider block would idle
# on the short ones. Measure: numbanet bench --backends gpu --ops train_step, at 32 and 128.
ROW_THREADS = 32


@inlined
def block_row(x):
    """(r, t, c): the row of the 2-D array x that this block owns, this thread's index in
    the block and the row's length."""
    return cuda.blockIdx.x, cuda.threadIdx.x, x.shape[1]


@cuda.jit(device=True)
def fold_sum(buf, t, n):
    """buf[0] = buf[0] + ... + buf[n - 1] (n a power of two) by a tree with a fixed pairing:
    stride halves, thread t adds t + stride. Called by the n threads after the barrier
    that follows their writes to buf."""
    s = n // 2
    while s > 0:
        if t < s:
            buf[t] += buf[t + s]
        cuda.syncthreads()
        s //= 2


@cuda.jit(device=True)
def block_sum(buf, t, v):
    """Sum of v over the block's ROW_THREADS threads, returned to every thread."""
    buf[t] = v
    cuda.syncthreads()
    fold_sum(buf, t, ROW_THREADS)
    total = buf[0]
    # Every thread reads buf[0] before the next fold overwrites buf.
    cuda.syncthreads()
    return total


@cuda.jit(device=True)
def block_max(buf, t, v):
    """Max of v over the block's threads (a NaN partial loses to any number; its own
    exponential still makes the row NaN)."""
    buf[t] = v
    cuda.syncthreads()
    s = ROW_THREADS // 2
    while s > 0:
        if t < s and buf[t + s] > buf[t]:
            buf[t] = buf[t + s]
        cuda.syncthreads()
        s //= 2
    m = buf[0]
    cuda.syncthreads()
    return m

