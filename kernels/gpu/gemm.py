"""GEMM on the gpu: a shared-memory, register-tiled kernel, generic in where its operands
come from (plain matrices here; implicit im2col patches in kernels/gpu/conv.py).

Tiling. A block computes a BM x BN = 64 x 64 (or 128 x 128) tile of C with 16 x 16 = 256
threads, each owning TM x TN = 4 x 4 (or 8 x 8) outputs held in registers (cuda.local.array, unrolled by the
compiler since the sizes are constants). Per K-step of BK = 8 the block stages a 64 x 8
slice of op(A) and an 8 x 64 slice of op(B) in shared memory: 2 elements per thread per
operand. Each thread then does 8 x 4 x 4 = 128 FMAs from 8 x (4 + 4) shared loads, a 2:1
FMA:load ratio in place of the 1:2 of a naive kernel, which is what lets the kernel run
from registers instead of being bound by shared-memory bandwidth.

Thread-to-output mapping is strided: thread (ty, tx) owns rows ty + 16 r and columns
tx + 16 c. Consecutive tx then read consecutive words of the B tile (one bank each, no
conflicts) and write consecutive columns of C (coalesced 128-byte stores), while the A
tile reads are broadcasts (a warp spans only two ty values).

Global loads are coalesced by choosing, per operand layout, which tile index runs fastest
across the thread id: K fastest when K is the contiguous axis of A, M fastest when A is
transposed, and likewise for B. The A tile is stored K-major (As[k, i]) so the inner loop
reads a row; it is padded by 4 words so that the K-fastest stores (stride BM + 4) land in
distinct banks.

Edges: out-of-range elements are loaded as zero, so the inner loop never branches, and
every thread reaches every syncthreads() (no early return); only the final store is
guarded. Accumulators have the input's dtype (float32 for float32, float64 for float64):
one kernel specialization per dtype. Each output is summed by one thread over k in
increasing order, so results are bit-identical run to run (no atomics, no split-K).
"""
import numpy as np
from numba import cuda, float32, float64

from numbanet.kernels.gpu.launch import dummy

BK = 8
APAD = 4
# (BM, BN, TM, TN): block tile and per-thread register tile; both use 16 x 16 threads.
# SMALL suits the narrow products of a CNN (C_out of 32-64 would leave most of a 128-wide
# tile idle); BIG, 128 x 128 with 8 x 8 outputs per thread (64 accumulators + 16 operands
# in registers, 4 FMAs per shared load), is used when both M and N fill it.
SMALL = (64, 64, 4, 4)
BIG = (128, 128, 8, 8)


def config_for(m, n):
    return BIG if m >= BIG[0] and n >= BIG[1] else SMALL


def make_tiled_kernel(load_a, load_b, a_k_fast, b_n_fast, acc_t, config=SMALL):
    """A tiled-GEMM kernel out[i, j] = sum_p load_a(A, geo, i, p) * load_b(B, geo, p, j) (+ bias[j]).

    load_a / load_b are device functions reading one element (callers make sure the
    indices are in range); a_k_fast / b_n_fast say which tile index should run fastest
    across threads for coalesced loads. The tile sizes are closure constants, so the
    compiler sees literal sizes and fully unrolls the register-tile loops.
    """
    BM, BN, TM, TN = config
    TY, TX = BM // TM, BN // TN
    NT = TY * TX
    AS_COLS = BM + APAD
    LOADS_A = BM * BK // NT
    LOADS_B = BK * BN // NT

    @cuda.jit
    def kernel(A, B, bias, has_bias, out, M, N, K, geo):
        As = cuda.shared.array((BK, AS_COLS), acc_t)
        Bs = cuda.shared.array((BK, BN), acc_t)
        acc = cuda.local.array((TM, TN), acc_t)
        a_reg = cuda.local.array(TM, acc_t)
        b_reg = cuda.local.array(TN, acc_t)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * TX + tx
        row0 = cuda.blockIdx.y * BM
        col0 = cuda.blockIdx.x * BN
        for r in range(TM):
            for c in range(TN):
                acc[r, c] = 0
        for k0 in range(0, K, BK):
            for l in range(LOADS_A):
                e = tid + l * NT
                if a_k_fast:
                    kk = e % BK
                    ii = e // BK
                else:
                    ii = e % BM
                    kk = e // BM
                gi = row0 + ii
                gk = k0 + kk
                v = acc_t(0)
                if gi < M and gk < K:
                    v = load_a(A, geo, gi, gk)
                As[kk, ii] = v
            for l in range(LOADS_B):
                e = tid + l * NT
                if b_n_fast:
                    jj = e % BN
                    kk = e // BN
                else:
                    kk = e % BK
                    jj = e // BK
                gj = col0 + jj
                gk = k0 + kk
                v = acc_t(0)
                if gj < N and gk < K:
                    v = load_b(B, geo, gk, gj)
                Bs[kk, jj] = v
            cuda.syncthreads()
            for kk in range(BK):
                for r in range(TM):
                    a_reg[r] = As[kk, ty + TY * r]
                for c in range(TN):
                    b_reg[c] = Bs[kk, tx + TX * c]
                for r in range(TM):
                    for c in range(TN):
                        acc[r, c] += a_reg[r] * b_reg[c]
            # The next iteration overwrites the tiles: wait until every thread has read them.
            cuda.syncthreads()
        for r in range(TM):
            gi = row0 + ty + TY * r
            if gi < M:
                for c in range(TN):
                    gj = col0 + tx + TX * c
                    if gj < N:
                        v = acc[r, c]
                        if has_bias:
                            v += bias[gj]
                        out[gi, gj] = v
    return kernel


def launch_tiled(kernel_for, A, B, bias, out, M, N, K, geo):
    """Grid over (column tiles, row tiles) of the config fitting (M, N); kernel_for(config)
    gives the kernel; bias None -> a dummy and has_bias=0."""
    has_bias = bias is not None
    if not has_bias:
        bias = dummy(out.dtype)
    bm, bn, tm, tn = config = config_for(M, N)
    grid = (-(-N // bn), -(-M // bm))
    kernel_for(config)[grid, (bn // tn, bm // tm)](A, B, bias, has_bias, out, M, N, K, geo)


@cuda.jit(device=True, inline=True)
def _a_n(A, geo, i, p):
    return A[i, p]


@cuda.jit(device=True, inline=True)
def _a_t(A, geo, i, p):
    return A[p, i]


@cuda.jit(device=True, inline=True)
def _b_n(B, geo, p, j):
    return B[p, j]


@cuda.jit(device=True, inline=True)
def _b_t(B, geo, p, j):
    return B[j, p]


_ACC = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}
_kernels = {}


def _matmul_kernel(dtype, trans_a, trans_b, config=SMALL):
    key = (np.dtype(dtype), trans_a, trans_b, config)
    if key not in _kernels:
        # K is contiguous in A unless A is transposed; N is contiguous in B unless B is.
        _kernels[key] = make_tiled_kernel(_a_t if trans_a else _a_n, _b_t if trans_b else _b_n,
                                          not trans_a, not trans_b, _ACC[key[0]], config)
    return _kernels[key]


NO_GEO = (0,) * 12


def matmul(a, b, trans_a, trans_b, bias, out):
    """out = op(a) @ op(b) (+ bias over rows); arrays validated and C-contiguous."""
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    launch_tiled(lambda config: _matmul_kernel(out.dtype, trans_a, trans_b, config), a, b, bias, out,
                 m, n, k, NO_GEO)


# --------------------------------------------------------------------------- batched (issue 12)
# A batch of products in one launch, blockIdx.x selecting the product: attention-shaped
# batches are many small matrices (B * H of them), where a launch per product would cost
# more than the product. A 32 x 32 tile of C per block of 16 x 16 threads, 2 x 2 outputs
# each, staged through shared memory BBK = 16 deep, with the same strided thread-to-output
# mapping, zero-filled edges and fixed summation order (bit-identical runs) as above.
BB = 32
BBK = 16
BT = 16
BPAD = BB + 1  # shared sizes must be literal constants to compile for a device


def _make_batched(acc_t):
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
        for r in range(2):
            for c in range(2):
                acc[r, c] = 0
        for k0 in range(0, k, BBK):
            # 32 x 16 elements of each operand, 2 per thread; the fastest index follows
            # each operand's contiguous axis (coalesced loads).
            for l in range(2):
                e = tid + l * BT * BT
                if trans_a:
                    ii = e % BB
                    kk = e // BB
                else:
                    kk = e % BBK
                    ii = e // BBK
                gi = row0 + ii
                gk = k0 + kk
                v = acc_t(0)
                if gi < m and gk < k:
                    v = a[z, gk, gi] if trans_a else a[z, gi, gk]
                As[kk, ii] = v
                if trans_b:
                    kk = e % BBK
                    jj = e // BBK
                else:
                    jj = e % BB
                    kk = e // BB
                gj = col0 + jj
                gk = k0 + kk
                v = acc_t(0)
                if gj < n and gk < k:
                    v = b[z, gj, gk] if trans_b else b[z, gk, gj]
                Bs[kk, jj] = v
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


_batched = {}


def batched_matmul(a, b, trans_a, trans_b, out):
    """out[z] = op(a[z]) @ op(b[z]) for 3-D (Z, ., .) device arrays, validated and C-contiguous."""
    nz, m, n = out.shape
    key = np.dtype(out.dtype)
    if key not in _batched:
        _batched[key] = _make_batched(_ACC[key])
    # (product, column tile) along x, row tiles along y: grid y and z stop at 65,535.
    grid = (-(-n // BB) * nz, -(-m // BB))
    _batched[key][grid, (BT, BT)](a, b, trans_a, trans_b, out)
