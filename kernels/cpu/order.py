"""The NaN rule of every max and argmax on the cpu, written once (kernels/gpu/order.py is
its gpu twin): NumPy's and PyTorch's, where a NaN is larger than everything, the first
NaN wins among NaNs and otherwise the first maximum wins (ties keep the earlier one).

argmax, accuracy and max pooling's window all go through `beats`, so they agree with
each other, with NumPy and with the gpu backend on rows that hold a NaN.
"""
import numba


@numba.njit(cache=True, inline="always")
def beats(v, best):
    """True when v replaces the running maximum best (v comes later in the row): v is
    larger, or v is the row's first NaN. Branch-free, so channel loops still vectorize."""
    return (v > best) | ((v != v) & (best == best))


@numba.njit(cache=True, inline="always")
def row_argmax(x, r):
    """Index of the maximum of row r of the 2-D array x (first NaN, else first maximum).

    `beats` split in two passes: the first maximum by '>' (a NaN never wins it) with the
    running maximum in a register and selects instead of branches, noting whether a NaN
    went by; only then, for a row that had one, a scan for the first NaN: a compare and a
    branch per element would keep the loop from vectorizing."""
    m = x[r, 0]
    best = 0
    nan = m != m
    for k in range(1, x.shape[1]):
        v = x[r, k]
        take = v > m
        best = k if take else best
        m = v if take else m
        nan |= v != v
    if nan:
        for k in range(x.shape[1]):
            if x[r, k] != x[r, k]:
                return k
    return best
