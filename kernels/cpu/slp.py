"""Compile a kernel with LLVM's SLP (straight-line) vectorizer switched on, and compile a
helper once per argument type rather than once per constant its callers pass.

Numba leaves the SLP vectorizer off by default. Kernels written as separate local
scalars per vector lane (the attention strip's 16 query lanes) need it: the loop
vectorizer only vectorizes along a loop, and these kernels vectorize across the unrolled
lanes of one iteration.

The dispatcher is lazy: each signature is compiled (or loaded from the cache) on first
use, whether called from Python or typed inside another kernel, with the switch on for
that compile only. A float32 program never compiles the float64 variants (each of these
kernels takes a second or more to compile per dtype). Arguments are compiled as their
plain types (`plain_types`), so one signature per dtype serves every caller.
"""
import numba

from numbanet.kernels import numba_internals


def plain_types(dispatcher):
    """Have `dispatcher` compile its arguments as their plain types: a constant `True` or
    `0` in a caller is typed bool / int64, not a literal of its own. Numba otherwise
    compiles a separate copy of a helper for each constant a caller passes (a flag, a
    panel width), each a compile of its own, and the callers' literals select among them. The
    constant's branch is then taken at run time instead of folded at compile time (a
    loop-invariant test LLVM hoists out of the loops); the arithmetic is the same.
    Without Numba's internals (kernels/numba_internals.py) the dispatcher is left as it is."""
    def compile_plain(compile_typed):
        def compile(sig):
            return compile_typed(numba_internals.unliteral(sig) if isinstance(sig, tuple) else sig)
        return compile

    numba_internals.wrap_compile(dispatcher, compile_plain)
    return dispatcher


def compile_slp(pyfunc, **options):
    """numba.njit(cache=True) of pyfunc, each signature compiled with LLVM's SLP vectorizer
    on and with plain argument types (plain_types)."""
    dispatcher = numba.njit(cache=True, boundscheck=False, **options)(pyfunc)

    def compile_with_slp(compile_):
        def compile(sig):
            with numba_internals.slp_vectorize():
                return compile_(sig)
        return compile

    numba_internals.wrap_compile(dispatcher, compile_with_slp)
    return plain_types(dispatcher)
