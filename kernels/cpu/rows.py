"""Row building blocks the cpu kernels share, each numba.njit(inline="always"): compiled
into the loop that calls it, so LLVM sees the same loop as if it were written out there."""
import numba


@numba.njit(cache=True, inline="always")
def copy_or_zero(dst, src, n, have):
    """dst[:n] = src[:n] where `have`, else zeros (src is not read). A store of int 0
    casts to dst's dtype; a float32/int conditional expression would compute in float64."""
    if have:
        for c in range(n):
            dst[c] = src[c]
    else:
        for c in range(n):
            dst[c] = 0
