"""Compile a kernel with LLVM's SLP (straight-line) vectorizer switched on.

Numba leaves the SLP vectorizer off by default. Kernels written as separate local
scalars per vector lane (the GEMM micro-kernel's accumulators, the attention strip's 8
query lanes) need it: the loop vectorizer only vectorizes along a loop, and these kernels
vectorize across the unrolled lanes of one iteration. Compiled eagerly, for the given
signatures, while the switch is on; cached like every other kernel.
"""
import numba


def compile_slp(pyfunc, signatures, **options):
    old = numba.config.SLP_VECTORIZE
    numba.config.SLP_VECTORIZE = 1
    try:
        return numba.njit(signatures, cache=True, boundscheck=False, **options)(pyfunc)
    finally:
        numba.config.SLP_VECTORIZE = old
