"""The NaN rule of every max and argmax on the gpu, written once: the twin of
kernels/cpu/order.py (a NaN is larger than everything, the first NaN wins among NaNs,
otherwise the first maximum), used by argmax, accuracy and max pooling's window.
"""
from numbanet.kernels.gpu.launch import inlined


@inlined
def beats(v, best):
    """True when v replaces the running maximum best (v comes later): v is larger, or v
    is the first NaN."""
    return v > best or (v != v and best == best)


@inlined
def row_argmax(x, r):
    """Index of the maximum of row r of the 2-D array x (first NaN, else first maximum),
    the rule of `beats` with the running maximum in a register and an exit at the first NaN."""
    m = x[r, 0]
    if m != m:
        return 0
    best = 0
    for k in range(1, x.shape[1]):
        v = x[r, k]
        if v > m:
            m = v
            best = k
        elif v != v:
            return k
    return best
