"""Compile a kernel with LLVM's SLP (straight-line) vectorizer switched on, and compile a
helper once per argument type rather than once per constant its callers pass.

Numba leaves the SLP vectorizer off by default. Kernels written as separate local
scalars per vector lane (the GEMM micro-kernel's accumulators, the attention strip's 8
query lanes) need it: the loop vectorizer only vectorizes along a loop, and these kernels
vectorize across the unrolled lanes of one iteration.

The dispatcher is lazy: each signature is compiled (or loaded from the cache) on first
use, whether called from Python or typed inside another kernel, with the switch on for
that compile only. A float32 program never compiles the float64 variants (each of these
kernels takes a second or more to compile per dtype). Arguments are compiled as their
plain types (`plain_types`), so one signature per dtype serves every caller.
"""
import numba
from numba.core import types


def plain_types(dispatcher):
    """Have `dispatcher` compile its arguments as their plain types: a constant `True` or
    `0` in a caller is typed bool / int64, not a literal of its own. Numba otherwise
    compiles a separate copy of a helper for each constant a caller passes (a flag, a
    panel width: 0.1-0.4 s each), and the callers' literals then select among them. The
    constant's branch is then taken at run time instead of folded at compile time (a
    loop-invariant test LLVM hoists out of the loops); the arithmetic is the same."""
    compile_typed = dispatcher.compile

    def compile_plain(sig):
        if isinstance(sig, tuple):
            sig = tuple(types.unliteral(t) for t in sig)
        return compile_typed(sig)

    # Numba compiles through dispatcher.compile, both for calls from Python and when a
    # caller's type inference needs this function.
    dispatcher.compile = compile_plain
    return dispatcher


def compile_slp(pyfunc, **options):
    dispatcher = numba.njit(cache=True, boundscheck=False, **options)(pyfunc)
    compile_plain = dispatcher.compile

    def compile_with_slp(sig):
        old = numba.config.SLP_VECTORIZE
        numba.config.SLP_VECTORIZE = 1
        try:
            return compile_plain(sig)
        finally:
            numba.config.SLP_VECTORIZE = old

    dispatcher.compile = compile_with_slp
    return plain_types(dispatcher)
