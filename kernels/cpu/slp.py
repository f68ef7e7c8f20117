"""Compile a kernel with LLVM's SLP (straight-line) vectorizer switched on.

Numba leaves the SLP vectorizer off by default. Kernels written as separate local
scalars per vector lane (the GEMM micro-kernel's accumulators, the attention strip's 8
query lanes) need it: the loop vectorizer only vectorizes along a loop, and these kernels
vectorize across the unrolled lanes of one iteration.

The dispatcher is lazy: each signature is compiled (or loaded from the cache) on first
use, whether called from Python or typed inside another kernel, with the switch on for
that compile only. A float32 program never compiles the float64 variants (each of these
kernels takes a second or more to compile per dtype). Arguments are compiled as their
plain types (a constant `True` or `0` in the caller is typed bool / int64, not a literal
of its own), so one signature per dtype serves every caller.
"""
import numba
from numba.core import types


def compile_slp(pyfunc, **options):
    dispatcher = numba.njit(cache=True, boundscheck=False, **options)(pyfunc)
    compile_plain = dispatcher.compile

    def compile_with_slp(sig):
        if isinstance(sig, tuple):
            sig = tuple(types.unliteral(t) for t in sig)
        old = numba.config.SLP_VECTORIZE
        numba.config.SLP_VECTORIZE = 1
        try:
            return compile_plain(sig)
        finally:
            numba.config.SLP_VECTORIZE = old

    # Numba compiles through dispatcher.compile, both for calls from Python and when a
    # caller's type inference needs this function.
    dispatcher.compile = compile_with_slp
    return dispatcher
