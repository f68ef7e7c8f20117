"""Row building blocks the cpu kernels share, each numba.njit(inline="always"): compiled
into the loop that calls it, so LLVM sees the same loop as if it were written out there."""
import numba


@numba.njit(cache=True, inline="always")
def copy_row(dst, src, n):
    """dst[:n] = src[:n]."""
    for c in range(n):
        dst[c] = src[c]


@numba.njit(cache=True, inline="always")
def zero_row(dst, n):
    """dst[:n] = 0. A store of int 0 casts to dst's dtype; a float32/int conditional
    expression would compute in float64."""
    for c in range(n):
        dst[c] = 0
