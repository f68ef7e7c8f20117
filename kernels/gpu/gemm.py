"""GEMM on the gpu: a warp-tiled, double-buffered shared-memory kernel, generic in where its
operands come from (plain matrices here; implicit im2col patches in kernels/gpu/conv.py),
with bias and relu applied in its epilogue and a deterministic split-K for products
whose output is too small to fill the GPU.

Tiling (the warp-tiled SGEMM design of CUTLASS's SIMT path and of siboehm's "SGEMM_CUDA"
kernel 10, in numba). A block of WARPS warps computes a BM x BN tile of C. Each warp owns
a WM x WN sub-tile, and inside it each lane owns WMITER x WNITER fragments of TM x TN = 4 x 4
outputs, spaced one warp-fragment apart (lanes as 4 rows x 8 columns, the column fastest):

    BIG    128 x 128 block, 8 warps of 32 x 64, 8 x 8 outputs per lane (2 x 2 fragments)
    SMALL   64 x  64 block, 8 warps of 16 x 32, 4 x 4 outputs per lane
    NARROW 128 x  32 block, 8 warps of 16 x 32, 4 x 4 outputs per lane (N <= 32: conv layers)

Per K-step of BK = 8 each lane reads, for every k, its WMITER fragments of A and WNITER of B
as runs of 4 consecutive words (4-aligned, in shared arrays aligned to 16 bytes, so they
can be one 128-bit LDS each) and does RM x RN FMAs: 64 FMAs per 4 loads in BIG. In a warp's
load, the 8 lanes of a quarter-warp (one row of lanes) read 8 consecutive 16-byte runs of
B (no bank conflict) and one run of A (a broadcast).

Latency hiding: the shared tiles are double-buffered. While the FMAs of step k run on one
buffer, the global loads of step k + 1 are already issued into registers (they are only
consumed after the FMAs, so their latency overlaps the arithmetic) and then stored into
the other buffer; one syncthreads per step instead of two.

Global loads are coalesced by choosing, per operand layout, which tile index runs fastest
across the thread id: K fastest when K is the contiguous axis of A, M fastest when A is
transposed, and likewise for B. Both tiles are padded by 4 words per row so that the
K-fastest (transposing) stores land in distinct banks while rows stay 16-byte aligned.

Edges: out-of-range elements are loaded as exact zeros, so the inner loop never branches,
and every thread reaches every syncthreads() (no early return); only the final store is
guarded. Accumulators have the input's dtype: one kernel specialization per dtype; float64
uses the SMALL/NARROW shapes (8 x 8 doubles per lane would take 128 registers for the
accumulators alone). Each output is summed by one thread over k in increasing order.

Split-K: when the M x N tiles number fewer than two blocks per SM (a conv layer's dw is
9 x 32 outputs summed over 86,528 positions), blockIdx.z splits K into chunks, each block
writes its partial tile into a scratch buffer of shape (splits * M, N), and a second
kernel adds the partials in split order and applies bias and activation. The split count
depends only on the shapes, so results stay bit-identical run to run (no atomics).
"""
import numpy as np
from numba import config, cuda

from numbanet.kernels import rules
from numbanet.kernels.gpu import rules as R
from numbanet.kernels.gpu.launch import ACC, dummy, grid_1d, inlined, kernel_family, load4, scratch

BK = 8
PAD = 4
TM = TN = 4                  # a lane's fragment: 4 x 4 outputs, 4-word shared loads
LANES_M, LANES_N = 4, 8      # a warp as 4 x 8 lanes, column fastest
FRAG_M, FRAG_N = LANES_M * TM, LANES_N * TN   # 16 x 32: one warp-fragment

# name -> (BM, BN, WM, WN): block tile and warp tile; all use 8 warps (256 threads).
CONFIGS = {
    "big": (128, 128, 32, 64),
    "small": (64, 64, 16, 32),
    "narrow": (128, 32, 16, 32),
}
# A K chunk shorter than SPLIT_MIN_K does not pay for writing and re-reading its partial
# tile; TARGET_BLOCKS: two resident blocks on each of an H200's 132 SMs. Measure: the conv
# layers' dw in numbanet bench --backends gpu --ops conv, at a few values.
SPLIT_MIN_K = 256
TARGET_BLOCKS = 2 * 132

TILE_ACTIVATIONS = ("linear", "relu")   # the ones the tile kernel's epilogue applies (launch_tiled)
# 16-byte aligned shared tiles for launch.load4; the simulator refuses the argument (its
# NumPy arrays are aligned anyway and load4 is plain indexing there).
SHARED_ALIGN = None if config.ENABLE_CUDASIM else 16


def config_for(m, n, dtype):
    """The tile shape for an M x N product: BIG where both fill it (float32 only), NARROW
    for thin outputs (N <= 32, many rows), SMALL otherwise."""
    if n <= 32 and m >= 128:
        return "narrow"
    if np.dtype(dtype) == np.float32 and m >= 128 and n >= 128:
        return "big"
    return "small"


def split_for(m, n, k, config):
    """(splits, k_chunk): split K only when the M x N tiles leave SMs idle and every chunk
    keeps at least SPLIT_MIN_K terms; chunks are whole BK steps."""
    bm, bn, _, _ = CONFIGS[config]
    tiles = -(-m // bm) * -(-n // bn)
    splits = max(1, min(-(-TARGET_BLOCKS // tiles), k // SPLIT_MIN_K))
    if splits == 1:
        return 1, k
    chunk = -(-(-(-k // splits)) // BK) * BK
    return -(-k // chunk), chunk


# Resident 256-thread blocks per SM that each tile shape is compiled for (launch bounds):
# ptxas then keeps to 128 registers (2 blocks) or 80 (3 blocks) per thread. The big tile's
# 64 accumulators need the 128; the 16 of the small and narrow tiles fit 80, and their
# lower per-thread ILP gains more from the third block's warps. Measure: numbanet info
# --gpu-kernels (registers, spills) and numbanet bench --backends gpu --ops gemm.
MIN_BLOCKS = {("big", "float32"): 2, ("small", "float32"): 3, ("narrow", "float32"): 3,
              ("small", "float64"): 2, ("narrow", "float64"): 2, ("big", "float64"): 1}


def tile_jit_options(threads, min_blocks):
    """launch_bounds = (threads, min_blocks), so a tile kernel never loses a resident block
    for a few registers too many; the static test checks that this costs no spill. Left
    out where unsupported: the simulator, numba-cuda releases without it."""
    import inspect
    if config.ENABLE_CUDASIM or "launch_bounds" not in inspect.signature(cuda.jit).parameters:
        return {}
    return {"launch_bounds": (threads, min_blocks)}


def _make_operand(load, k_fast, k_first, EXT, LOADS, NT):
    """(fetch, stash) for one operand of the tile kernel, whose tile per K step is BK x EXT
    (A: BK x BM, B: BK x BN) and which each of the NT threads moves LOADS elements of.

    k_fast: k runs fastest across threads (coalesced when K is the operand's contiguous
    axis); k_first: load takes (k, x) (B) rather than (x, k) (A)."""
    COLS = EXT + PAD

    @inlined
    def place(e):
        """(k, x) of element e of the step's tile in thread order."""
        if k_fast:
            return e % BK, e // BK
        return e // EXT, e % EXT

    @inlined
    def fetch(X, geo, lim, k_end, x0, k0, tid, stage, zero):
        """Global -> registers: this thread's elements of the step at k0; rows x0 + x >= lim
        and k >= k_end are zeros."""
        for l in range(LOADS):
            kk, xx = place(tid + l * NT)
            v = zero
            if x0 + xx < lim and k0 + kk < k_end:
                if k_first:
                    v = load(X, geo, k0 + kk, x0 + xx, zero)
                else:
                    v = load(X, geo, x0 + xx, k0 + kk, zero)
            stage[l] = v

    @inlined
    def stash(S, buf, tid, stage):
        """Registers -> shared buffer buf, K-major: S[(buf * BK + k) * COLS + x]."""
        for l in range(LOADS):
            kk, xx = place(tid + l * NT)
            S[(buf * BK + kk) * COLS + xx] = stage[l]
    return fetch, stash


def make_tiled_kernel(load_a, load_b, a_k_fast, b_n_fast, acc_t, config, activation):
    """A kernel out[s*M + i, j] = act(sum_{p in chunk s} load_a(A, geo, i, p, 0) * load_b(B, geo, p, j, 0)
    (+ bias[j])), s = blockIdx.z.

    load_a / load_b read one element (callers keep the indices in range; they return the
    given zero for a padding position); a_k_fast / b_n_fast say which tile index runs
    fastest across threads for coalesced loads. Tile sizes and the activation are closure
    constants, so the compiler sees literal sizes and unrolls the register loops.
    """
    if activation not in TILE_ACTIVATIONS:
        raise ValueError(f"make_tiled_kernel: the epilogue applies {TILE_ACTIVATIONS}, not {activation!r}")
    BM, BN, WM, WN = CONFIGS[config]
    WARPS_N = BN // WN
    WARPS_N_LOG2 = WARPS_N.bit_length() - 1
    LANES_N_LOG2 = LANES_N.bit_length() - 1
    WARPS = (BM // WM) * WARPS_N
    NT = 32 * WARPS
    WMITER, WNITER = WM // FRAG_M, WN // FRAG_N
    RM, RN = WMITER * TM, WNITER * TN
    AS_COLS, BS_COLS = BM + PAD, BN + PAD
    A_SIZE, B_SIZE = 2 * BK * AS_COLS, 2 * BK * BS_COLS
    LOADS_A, LOADS_B = BM * BK // NT, BK * BN // NT
    ACT = rules.CODES[activation]

    fetch_a, stash_a = _make_operand(load_a, a_k_fast, False, BM, LOADS_A, NT)
    fetch_b, stash_b = _make_operand(load_b, not b_n_fast, True, BN, LOADS_B, NT)

    @cuda.jit(**tile_jit_options(NT, MIN_BLOCKS[config, str(acc_t)]))
    def kernel(A, B, bias, has_bias, out, M, N, K, k_chunk, geo):
        # Two buffers of BK rows each, flat: As[(buf * BK + k) * AS_COLS + i].
        As = cuda.shared.array(A_SIZE, acc_t, alignment=SHARED_ALIGN)
        Bs = cuda.shared.array(B_SIZE, acc_t, alignment=SHARED_ALIGN)
        acc = cuda.local.array((RM, RN), acc_t)
        a_frag = cuda.local.array(RM, acc_t)
        b_frag = cuda.local.array(RN, acc_t)
        a_stage = cuda.local.array(LOADS_A, acc_t)
        b_stage = cuda.local.array(LOADS_B, acc_t)
        zero = acc_t(0)
        # Masked to their launch ranges, which tells the compiler they are >= 0 (below).
        lane = cuda.threadIdx.x & 31
        warp = cuda.threadIdx.y & (WARPS - 1)
        tid = warp * 32 + lane
        # First row / column of this lane's first fragment inside the block tile. Shifts
        # and masks, not // and %: numba's floor division and modulo carry sign fix-ups
        # that hide from the compiler that these indices are >= 0, and every shared load
        # then pays a negative-index wraparound select and cannot be merged into one
        # 128-bit load.
        m0 = (warp >> WARPS_N_LOG2) * WM + (lane >> LANES_N_LOG2) * TM
        n0 = (warp & (WARPS_N - 1)) * WN + (lane & (LANES_N - 1)) * TN
        row0 = cuda.blockIdx.y * BM
        col0 = cuda.blockIdx.x * BN
        k_begin = cuda.blockIdx.z * k_chunk
        k_end = min(K, k_begin + k_chunk)
        steps = (k_end - k_begin + BK - 1) // BK
        for r in range(RM):
            for c in range(RN):
                acc[r, c] = zero
        fetch_a(A, geo, M, k_end, row0, k_begin, tid, a_stage, zero)
        fetch_b(B, geo, N, k_end, col0, k_begin, tid, b_stage, zero)
        stash_a(As, 0, tid, a_stage)
        stash_b(Bs, 0, tid, b_stage)
        cuda.syncthreads()
        for t in range(steps):
            cur = t & 1
            more = t + 1 < steps
            if more:
                # Issued now, used after the FMAs below: the loads' latency overlaps them.
                fetch_a(A, geo, M, k_end, row0, k_begin + (t + 1) * BK, tid, a_stage, zero)
                fetch_b(B, geo, N, k_end, col0, k_begin + (t + 1) * BK, tid, b_stage, zero)
            for k in range(BK):
                kk = k & (BK - 1)  # == k; the mask proves kk >= 0 where the loop is not unrolled
                # Flat offsets, multiples of 4 words from a 16-byte-aligned base: each
                # fragment is one 128-bit shared load (launch.load4).
                a_at = (cur * BK + kk) * AS_COLS + m0
                b_at = (cur * BK + kk) * BS_COLS + n0
                for s in range(WMITER):
                    a0, a1, a2, a3 = load4(As, a_at + s * FRAG_M)
                    a_frag[s * TM], a_frag[s * TM + 1], a_frag[s * TM + 2], a_frag[s * TM + 3] = a0, a1, a2, a3
                for s in range(WNITER):
                    b0, b1, b2, b3 = load4(Bs, b_at + s * FRAG_N)
                    b_frag[s * TN], b_frag[s * TN + 1], b_frag[s * TN + 2], b_frag[s * TN + 3] = b0, b1, b2, b3
                for r in range(RM):
                    for c in range(RN):
                        acc[r, c] += a_frag[r] * b_frag[c]
            if more:
                # The other buffer was last read in step t - 1, before that step's barrier.
                stash_a(As, 1 - cur, tid, a_stage)
                stash_b(Bs, 1 - cur, tid, b_stage)
            cuda.syncthreads()
        out_row0 = cuda.blockIdx.z * M
        # Two flat loops over the lane's RM x RN outputs, as in the FMA loop above: the
        # compiler unrolls them fully, so acc stays in registers (a loop it kept would
        # index acc at run time and put it in local memory).
        for r in range(RM):
            gi = row0 + m0 + (r // TM) * FRAG_M + r % TM
            if gi < M:
                for c in range(RN):
                    gj = col0 + n0 + (c // TN) * FRAG_N + c % TN
                    if gj < N:
                        v = acc[r, c]
                        if has_bias:
                            v += bias[gj]
                        out[out_row0 + gi, gj] = R.activate(ACT, v, acc_t(1))
    return kernel


@kernel_family
def split_reduce(dtype, activation):
    """out[i, j] = act(sum_s partial[s*M + i, j] (+ bias[j])), s in increasing order: the
    second kernel of a split-K product, and with splits = 1 and partial = out the in-place
    sigmoid / tanh pass after an unsplit one (launch_tiled)."""
    ACT = rules.CODES[activation]
    acc_t = ACC[dtype]

    @cuda.jit
    def kernel(partial, splits, bias, has_bias, out):
        m, n = out.shape
        one = acc_t(1)
        for t in range(cuda.grid(1), m * n, cuda.gridsize(1)):
            i = t // n
            j = t - i * n
            v = partial[i, j]
            for s in range(1, splits):
                v += partial[s * m + i, j]
            if has_bias:
                v += bias[j]
            out[i, j] = R.activate(ACT, v, one)
    return kernel


def launch_tiled(kernel_for, A, B, bias, out, M, N, K, geo, activation="linear"):
    """Run out = act(op(A) @ op(B) + bias) through kernel_for(config, activation), split
    over K when the output tiles are too few; bias None -> a dummy and has_bias=0.

    relu is applied in the tile kernel's epilogue. sigmoid and tanh are not: their
    libdevice code, repeated for each of a lane's 16 or 64 outputs, is more than the
    compiler will unroll, and a rolled epilogue indexes the accumulators at run time,
    which moves them to local memory (the static compile shows a 128-512 byte stack
    frame). They run as an in-place elementwise pass over the output instead."""
    has_bias = bias is not None
    if not has_bias:
        bias = dummy(out.dtype)
    dtype = np.dtype(out.dtype).name
    config = config_for(M, N, out.dtype)
    bm, bn, wm, wn = CONFIGS[config]
    block = (32, (bm // wm) * (bn // wn))
    splits, chunk = split_for(M, N, K, config)
    grid = (-(-N // bn), -(-M // bm), splits)
    if splits > 1:
        partial = scratch("split-k", (splits * M, N), out.dtype)
        kernel_for(config, "linear")[grid, block](A, B, bias, False, partial, M, N, K, chunk, geo)
        split_reduce(dtype, activation)[grid_1d(M * N)](partial, splits, bias, has_bias, out)
    elif activation in TILE_ACTIVATIONS:
        kernel_for(config, activation)[grid, block](A, B, bias, has_bias, out, M, N, K, chunk, geo)
    else:
        kernel_for(config, "linear")[grid, block](A, B, bias, has_bias, out, M, N, K, chunk, geo)
        # One split, read and written in place: each element by the thread that owns it.
        split_reduce(dtype, activation)[grid_1d(M * N)](out, 1, bias, False, out)


@inlined
def element(X, geo, r, c, zero):
    """X[r, c]: a plain operand's loader (A as (M, K), B as (K, N))."""
    return X[r, c]


@inlined
def element_t(X, geo, r, c, zero):
    """X[c, r]: a transposed operand's loader."""
    return X[c, r]


@inlined
def _a_t_ones(A, geo, i, p, zero):
    """op(A) = A^T with a row of ones appended (row A.shape[1]): the extra output row of
    A^T @ B is then B's column sums, a Dense layer's db beside its dw."""
    if i == A.shape[1]:
        return zero + 1
    return A[p, i]


@kernel_family
def matmul_kernel(trans_a, trans_b, dtype, config, activation, ones_row):
    # K is contiguous in A unless A is transposed; N is contiguous in B unless B is.
    load_a = (_a_t_ones if ones_row else element_t) if trans_a else element
    return make_tiled_kernel(load_a, element_t if trans_b else element, not trans_a, not trans_b, ACC[dtype],
                             config, activation)


NO_GEO = (0,) * 12


def matmul(a, b, trans_a, trans_b, bias, out, activation="linear"):
    """out = act(op(a) @ op(b) (+ bias over rows)); arrays validated and C-contiguous."""
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    dtype = np.dtype(out.dtype).name
    launch_tiled(lambda config, act: matmul_kernel(bool(trans_a), bool(trans_b), dtype, config, act, False),
                 a, b, bias, out, m, n, k, NO_GEO, activation)


def dense_backward(x, w, dy, dx, dwdb):
    """dwdb = [x 1]^T @ dy: rows 0..in-1 are dw, row `in` is db (one GEMM); dx = dy @ w^T
    unless None."""
    n, fan_in = x.shape
    units = w.shape[1]
    dtype = np.dtype(x.dtype).name
    launch_tiled(lambda config, act: matmul_kernel(True, False, dtype, config, act, True),
                 x, dy, None, dwdb, fan_in + 1, units, n, NO_GEO)
    if dx is not None:
        matmul(dy, w, False, True, None, dx)


# --------------------------------------------------------------------------- batched
# A batch of products in one launch, blockIdx.x selecting the product: attention-shaped
# batches are many small matrices (B * H of them), where a launch per product would cost
# more than the product. A 32 x 32 tile of C per block of 16 x 16 threads, 2 x 2 outputs
# each, staged through shared memory BBK = 16 deep, with the same strided thread-to-output
# mapping, zero-filled edges and fixed summation order (bit-identical runs) as above.
BB = 32
BBK = 16
BT = 16
BPAD = BB + 1  # shared sizes must be literal constants to compile for a device


@inlined
def _stage_batched(X, z, k_fast, x0, lim, k0, k, e, S, zero):
    """S[kk, xx] = op(X[z])[x0 + xx, k0 + kk] (zero outside lim x k) for element e, in
    thread order, of a BBK x BB step; k_fast: K is X's contiguous axis (X[z] is (rows, K)),
    and then runs fastest across threads so that the loads coalesce."""
    if k_fast:
        kk = e % BBK
        xx = e // BBK
    else:
        xx = e % BB
        kk = e // BB
    v = zero
    if x0 + xx < lim and k0 + kk < k:
        v = X[z, x0 + xx, k0 + kk] if k_fast else X[z, k0 + kk, x0 + xx]
    S[kk, xx] = v


@kernel_family
def batched_kernel(dtype):
    acc_t = ACC[dtype]

    @cuda.jit
    def kernel(a, b, trans_a, trans_b, out):
        As = cuda.shared.array((BBK, BPAD), acc_t)
        Bs = cuda.shared.array((BBK, BB), acc_t)
        acc = cuda.local.array((2, 2), acc_t)
        m = out.shape[1]
        n = out.shape[2]
        ncol = (n + BB - 1) // BB
        z = cuda.blockIdx.x // ncol
        col0 = (cuda.blockIdx.x - z * ncol) * BB
        row0 = cuda.blockIdx.y * BB
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * BT + tx
        k = a.shape[1] if trans_a else a.shape[2]
        zero = acc_t(0)
        for r in range(2):
            for c in range(2):
                acc[r, c] = 0
        for k0 in range(0, k, BBK):
            # 32 x 16 elements of each operand, 2 per thread; the fastest index follows
            # each operand's contiguous axis (coalesced loads).
            for l in range(2):
                e = tid + l * BT * BT
                _stage_batched(a, z, not trans_a, row0, m, k0, k, e, As, zero)
                _stage_batched(b, z, trans_b, col0, n, k0, k, e, Bs, zero)
            cuda.syncthreads()
            for kk in range(BBK):
                a0 = As[kk, ty]
                a1 = As[kk, ty + BT]
                b0 = Bs[kk, tx]
                b1 = Bs[kk, tx + BT]
                acc[0, 0] += a0 * b0
                acc[0, 1] += a0 * b1
                acc[1, 0] += a1 * b0
                acc[1, 1] += a1 * b1
            cuda.syncthreads()
        for r in range(2):
            gi = row0 + ty + BT * r
            for c in range(2):
                gj = col0 + tx + BT * c
                if gi < m and gj < n:
                    out[z, gi, gj] = acc[r, c]
    return kernel


def batched_matmul(a, b, trans_a, trans_b, out):
    """out[z] = op(a[z]) @ op(b[z]) for 3-D (Z, ., .) device arrays, validated and C-contiguous."""
    nz, m, n = out.shape
    # (product, column tile) along x, row tiles along y: grid y and z stop at 65,535.
    grid = (-(-n // BB) * nz, -(-m // BB))
    batched_kernel(np.dtype(out.dtype).name)[grid, (BT, BT)](a, b, trans_a, trans_b, out)
