"""Embedding lookup (a row gather) and its gradient (a deterministic scatter-add) on the gpu.

forward: one thread per output element, consecutive threads on consecutive columns of a
row (coalesced reads of the table row and writes of the output row).

backward: the positions are sorted by id with a stable LSD radix sort (8-bit digits, as
many passes as the table's row count needs: one for up to 255 rows, two up to 65,535),
then one thread per table element (row r, column k) sums dout[i, k] over row r's run
of positions, in increasing i. Each element has one writer and a fixed order: no float
atomics, the same bits run to run and the same order (so the same bits) as the cpu
backend's counting sort. A pass of the sort, per tile of SORT_THREADS positions:
    _digit_hist      the tile's count of each digit (integer atomics in shared memory:
                     exact, whatever their order);
    _exclusive_scan  the counts, digit-major then tile, into each (digit, tile)'s first
                     output slot (one block, a fixed order);
    _digit_scatter   each position to its slot plus its rank among the tile's earlier
                     positions with the same digit: stable.
Row r's run starts at the first sorted id >= r (a binary search per row).
The backend range-checks the ids before these run (Backend._check_range) unless the
caller vouches for them (_ids_checked); an out-of-range id still never reaches memory
outside the arrays: its output row is 0, and the sort files it under the key V, after
every row's run, so its gradient is dropped.
"""
import numpy as np
from numba import cuda, int32, int64

from numbanet.kernels.gpu.checks import in_range
from numbanet.kernels.gpu.launch import fixed_block, grid_1d, inlined, rows_1d, scratch, unravel2

RADIX_BITS = 8
RADIX = 1 << RADIX_BITS
SORT_THREADS = 128   # positions per tile
SCAN_THREADS = 256


@cuda.jit
def _gather(table, ids, out):
    v, d = table.shape
    for t in range(cuda.grid(1), out.shape[0] * d, cuda.gridsize(1)):
        i, k = unravel2(t, d)
        r = ids[i]
        if in_range(r, v):
            out[i, k] = table[r, k]
        else:
            out[i, k] = 0


def embedding_forward(table, ids, out):
    _gather[grid_1d(out.size)](table, ids, out)


@cuda.jit
def _iota(a):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = i


@inlined
def _key(keys, i, v):
    """The sort key of position i: its id, or v (after every row) for an id outside [0, v)."""
    r = keys[i]
    return r if in_range(r, v) else v


@fixed_block(SORT_THREADS)


@cuda.jit
def _digit_hist(keys, v, shift, hist):
    counts = cuda.shared.array(RADIX, int32)
    t = cuda.threadIdx.x
    tile = cuda.blockIdx.x
    ntiles = cuda.gridDim.x
    for g in range(t, RADIX, SORT_THREADS):
        counts[g] = 0
    cuda.syncthreads()
    i = tile * SORT_THREADS + t
    if i < keys.shape[0]:
        cuda.atomic.add(counts, (_key(keys, i, v) >> shift) & (RADIX - 1), 1)
    cuda.syncthreads()
    for g in range(t, RADIX, SORT_THREADS):
        hist[g * ntiles + tile] = counts[g]


@cuda.jit
def _exclusive_scan(a, out):
    """out[i] = a[0] + ... + a[i - 1], one block: each thread sums a contiguous chunk, thread
    0 scans the chunk sums, each thread writes its chunk's prefixes."""
    sums = cuda.shared.array(SCAN_THREADS, int64)
    t = cuda.threadIdx.x
    n = a.shape[0]
    chunk = (n + SCAN_THREADS - 1) // SCAN_THREADS
    lo = min(n, t * chunk)
    hi = min(n, lo + chunk)
    s = 0
    for i in range(lo, hi):
        s += a[i]
    sums[t] = s
    cuda.syncthreads()
    if t == 0:
        run = 0
        for u in range(SCAN_THREADS):
            v = sums[u]
            sums[u] = run
            run += v
    cuda.syncthreads()
    run = sums[t]
    for i in range(lo, hi):
        v = a[i]
        out[i] = run
        run += v


@fixed_block(SORT_THREADS)


@cuda.jit
def _digit_scatter(keys, vals, v, shift, offsets, keys_out, vals_out):
    digits = cuda.shared.array(SORT_THREADS, int32)
    t = cuda.threadIdx.x
    tile = cuda.blockIdx.x
    ntiles = cuda.gridDim.x
    i = tile * SORT_THREADS + t
    digit = -1
    key = 0
    if i < keys.shape[0]:
        key = _key(keys, i, v)
        digit = (key >> shift) & (RADIX - 1)
    digits[t] = digit
    cuda.syncthreads()
    if i < keys.shape[0]:
        rank = 0
        for u in range(t):
            if digits[u] == digit:
                rank += 1
        dst = offsets[digit * ntiles + tile] + rank
        keys_out[dst] = key
        vals_out[dst] = vals[i]


@cuda.jit
def _run_starts(sorted_keys, starts):
    """starts[r] = the first index of sorted_keys holding a key >= r, for r in 0 .. V."""
    r = cuda.grid(1)
    if r < starts.shape[0]:
        lo = 0
        hi = sorted_keys.shape[0]
        while lo < hi:
            mid = (lo + hi) // 2
            if sorted_keys[mid] < r:
                lo = mid + 1
            else:
                hi = mid
        starts[r] = lo


@cuda.jit
def _run_sums(dout, order, starts, dtable):
    d = dtable.shape[1]
    zero = dout.dtype.type(0)
    for t in range(cuda.grid(1), dtable.shape[0] * d, cuda.gridsize(1)):
        r, k = unravel2(t, d)
        acc = zero
        for e in range(starts[r], starts[r + 1]):
            acc += dout[order[e], k]
        dtable[r, k] = acc


def sort_by_id(ids, v):
    """-> (order, starts) on the device: order lists the positions by id (stable), and
    order[starts[r]:starts[r + 1]] are the positions holding id r."""
    n = ids.shape[0]
    ntiles = -(-n // SORT_THREADS)
    # Scratch buffers (launch.scratch): a training step's sort allocates nothing. The keys
    # and values ping-pong between two buffers each, so each has two names.
    keys = ids
    vals = scratch("sort-vals-a", (n,), np.int64)
    _iota[grid_1d(n)](vals)
    keys_out = scratch("sort-keys-a", (n,), ids.dtype)
    vals_out = scratch("sort-vals-b", (n,), np.int64)
    hist = scratch("sort-hist", (RADIX * ntiles,), np.int32)
    offsets = scratch("sort-offsets", (RADIX * ntiles,), np.int64)
    shift = 0
    while True:
        _digit_hist[ntiles, SORT_THREADS](keys, v, shift, hist)
        _exclusive_scan[1, SCAN_THREADS](hist, offsets)
        _digit_scatter[ntiles, SORT_THREADS](keys, vals, v, shift, offsets, keys_out, vals_out)
        if keys is ids:
            keys = scratch("sort-keys-b", (n,), ids.dtype)
        keys, keys_out = keys_out, keys
        vals, vals_out = vals_out, vals
        shift += RADIX_BITS
        if v >> shift == 0:  # keys go up to v
            break
    starts = scratch("sort-starts", (v + 1,), np.int64)
    _run_starts[rows_1d(v + 1)](keys, starts)
    return vals, starts


def embedding_backward(ids, dout, dtable):
    order, starts = sort_by_id(ids, dtable.shape[0])
    _run_sums[grid_1d(dtable.size)](dout, order, starts, dtable)
