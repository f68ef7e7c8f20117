"""2 ** t for float32 in arithmetic LLVM can vectorize (libm's expf is a scalar call).

2 ** t = 2 ** f * 2 ** k with k = round(t) and f = t - k in [-0.5, 0.5]: a degree-6
polynomial for 2 ** f (a near-minimax fit, relative error 9.6e-8 in float32 arithmetic,
below float32's epsilon) and 2 ** k made from its exponent bits, which go out through an
int32 scratch array and come back through a float32 view of it (numba has no bit cast;
LLVM forwards the store in registers). t below -127 gives 0, as -inf (a masked score)
must; NaN stays NaN (its polynomial is NaN). Used by the attention strips
(kernels/cpu/_attention_lanes.py) and softmax (kernels/cpu/activation.py); float64 keeps
math.exp there: it is the gradient-check dtype.
"""
import math

import numba
import numpy as np

LN2 = 0.6931471805599453
LOG2E = 1.4426950408889634

# 2 ** f on [-0.5, 0.5], coefficients from degree 0 to 6.
_C0, _C1, _C2, _C3, _C4, _C5, _C6 = (np.float32(c) for c in (
    1.0, 0.6931471824645996, 0.24022646248340607, 0.05550328642129898, 0.009618489071726799,
    0.0013399930903688073, 0.00015345810970757157))
_ROUND = np.float32(12582912.0)  # 1.5 * 2 ** 23: (t + _ROUND) - _ROUND rounds t to an integer
_LOWEST = np.float32(-127.0)


@numba.njit(inline="always")
def pow2_parts(t):
    """(2 ** f, the int32 bits of the float 2 ** k) for t = k + f: their product is 2 ** t."""
    t = _LOWEST if t < _LOWEST else t
    k = (t + _ROUND) - _ROUND
    f = t - k
    p = _C6 * f + _C5
    p = p * f + _C4
    p = p * f + _C3
    p = p * f + _C2
    p = p * f + _C1
    return p * f + _C0, (np.int32(k) + np.int32(127)) << np.int32(23)


@numba.njit(cache=True, fastmath={"contract"})
def exp_shifted(x, shift, y, bits, fast):
    """y[k] = exp(x[k] - shift) for the 1-D arrays x, y (bits: an int32 scratch as long);
    returns the sum of y, added in index order. fast: float32 arrays (the polynomial)."""
    n = x.shape[0]
    if fast:
        log2e = np.float32(LOG2E)
        pow2 = bits.view(np.float32)
        for k in range(n):
            p, b = pow2_parts((x[k] - shift) * log2e)
            y[k] = p
            bits[k] = b
        for k in range(n):
            y[k] *= pow2[k]
    else:
        for k in range(n):
            y[k] = math.exp(x[k] - shift)
    total = y.dtype.type(0)
    for k in range(n):
        total += y[k]
    return total
