"""The attention kernels' elementwise passes over a score strip, one vector lane per column.

A strip holds 16 lanes per row: 16 queries per key row in the forward pass, 16 keys per
query row in the backward pass (kernels/cpu/attention.py). Each helper below is written
with the 16 lanes unrolled into separate local scalars, and compiled with the SLP
vectorizer on (kernels/cpu/slp.py), which turns each group of 16 statements into one
512-bit instruction (two for float64). The plain loop each one unrolls is in its
docstring. A loop over the lanes instead compiles to scalar code: numba leaves the SLP
vectorizer off, and the loop vectorizer only sees the outer loop, whose lanes differ.

2 ** t comes from kernels/cpu/fastexp.py (float32; float64 calls math.exp).
"""
import math

import numpy as np

from numbanet.kernels.cpu import fastexp
from numbanet.kernels.cpu.slp import compile_slp

LN2 = fastexp.LN2
_pow2_parts = fastexp.pow2_parts


def _max_lanes_py(s, n, mx):
    """mx[c] = max(s[:n, c]) for the 16 lanes c, unrolled over the lanes (a NaN is passed
    over here; its own exponential makes its lane NaN)."""
    row = s[0]
    (m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15) = (
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
        row[8], row[9], row[10], row[11], row[12], row[13], row[14], row[15])
    for j in range(1, n):
        row = s[j]
        (x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15) = (
            row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
            row[8], row[9], row[10], row[11], row[12], row[13], row[14], row[15])
        m0 = x0 if x0 > m0 else m0; m1 = x1 if x1 > m1 else m1
        m2 = x2 if x2 > m2 else m2; m3 = x3 if x3 > m3 else m3
        m4 = x4 if x4 > m4 else m4; m5 = x5 if x5 > m5 else m5
        m6 = x6 if x6 > m6 else m6; m7 = x7 if x7 > m7 else m7
        m8 = x8 if x8 > m8 else m8; m9 = x9 if x9 > m9 else m9
        m10 = x10 if x10 > m10 else m10; m11 = x11 if x11 > m11 else m11
        m12 = x12 if x12 > m12 else m12; m13 = x13 if x13 > m13 else m13
        m14 = x14 if x14 > m14 else m14; m15 = x15 if x15 > m15 else m15
    mx[0] = m0; mx[1] = m1; mx[2] = m2; mx[3] = m3
    mx[4] = m4; mx[5] = m5; mx[6] = m6; mx[7] = m7
    mx[8] = m8; mx[9] = m9; mx[10] = m10; mx[11] = m11
    mx[12] = m12; mx[13] = m13; mx[14] = m14; mx[15] = m15


def _exp2_lanes_py(s, n, mx, total, bits, fast):
    """s[j, c] = 2 ** (s[j, c] - mx[c]) and total[c] = sum(s[:n, c]) for j < n and the 16
    lanes c, unrolled over the lanes."""
    if not fast:
        for c in range(16):
            acc = s.dtype.type(0)
            for j in range(n):
                s[j, c] = math.exp((s[j, c] - mx[c]) * LN2)
                acc += s[j, c]
            total[c] = acc
        return
    (m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15) = (
        mx[0], mx[1], mx[2], mx[3], mx[4], mx[5], mx[6], mx[7],
        mx[8], mx[9], mx[10], mx[11], mx[12], mx[13], mx[14], mx[15])
    pow2 = bits.view(np.float32)
    zero = s.dtype.type(0)
    l0 = zero; l1 = zero; l2 = zero; l3 = zero
    l4 = zero; l5 = zero; l6 = zero; l7 = zero
    l8 = zero; l9 = zero; l10 = zero; l11 = zero
    l12 = zero; l13 = zero; l14 = zero; l15 = zero
    for j in range(n):
        row = s[j]
        brow = bits[j]
        (x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15) = (
            row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
            row[8], row[9], row[10], row[11], row[12], row[13], row[14], row[15])
        y0, b0 = _pow2_parts(x0 - m0); y1, b1 = _pow2_parts(x1 - m1)
        y2, b2 = _pow2_parts(x2 - m2); y3, b3 = _pow2_parts(x3 - m3)
        y4, b4 = _pow2_parts(x4 - m4); y5, b5 = _pow2_parts(x5 - m5)
        y6, b6 = _pow2_parts(x6 - m6); y7, b7 = _pow2_parts(x7 - m7)
        y8, b8 = _pow2_parts(x8 - m8); y9, b9 = _pow2_parts(x9 - m9)
        y10, b10 = _pow2_parts(x10 - m10); y11, b11 = _pow2_parts(x11 - m11)
        y12, b12 = _pow2_parts(x12 - m12); y13, b13 = _pow2_parts(x13 - m13)
        y14, b14 = _pow2_parts(x14 - m14); y15, b15 = _pow2_parts(x15 - m15)
        brow[0] = b0; brow[1] = b1; brow[2] = b2; brow[3] = b3
        brow[4] = b4; brow[5] = b5; brow[6] = b6; brow[7] = b7
        brow[8] = b8; brow[9] = b9; brow[10] = b10; brow[11] = b11
        brow[12] = b12; brow[13] = b13; brow[14] = b14; brow[15] = b15
        # The exponent bits go out through memory and come back as float32 (a bit
        # cast numba has no other way to write); LLVM forwards the store in registers.
        prow = pow2[j]
        (z0, z1, z2, z3, z4, z5, z6, z7, z8, z9, z10, z11, z12, z13, z14, z15) = (
            prow[0], prow[1], prow[2], prow[3], prow[4], prow[5], prow[6], prow[7],
            prow[8], prow[9], prow[10], prow[11], prow[12], prow[13], prow[14], prow[15])
        y0 *= z0; y1 *= z1; y2 *= z2; y3 *= z3
        y4 *= z4; y5 *= z5; y6 *= z6; y7 *= z7
        y8 *= z8; y9 *= z9; y10 *= z10; y11 *= z11
        y12 *= z12; y13 *= z13; y14 *= z14; y15 *= z15
        row[0] = y0; row[1] = y1; row[2] = y2; row[3] = y3
        row[4] = y4; row[5] = y5; row[6] = y6; row[7] = y7
        row[8] = y8; row[9] = y9; row[10] = y10; row[11] = y11
        row[12] = y12; row[13] = y13; row[14] = y14; row[15] = y15
        l0 += y0; l1 += y1; l2 += y2; l3 += y3
        l4 += y4; l5 += y5; l6 += y6; l7 += y7
        l8 += y8; l9 += y9; l10 += y10; l11 += y11
        l12 += y12; l13 += y13; l14 += y14; l15 += y15
    total[0] = l0; total[1] = l1; total[2] = l2; total[3] = l3
    total[4] = l4; total[5] = l5; total[6] = l6; total[7] = l7
    total[8] = l8; total[9] = l9; total[10] = l10; total[11] = l11
    total[12] = l12; total[13] = l13; total[14] = l14; total[15] = l15


def _exp2_rows_py(s, n, sub, bits, fast):
    """s[j, c] = 2 ** (s[j, c] - sub[j]) for j < n and the 16 lanes c, unrolled over the lanes."""
    if not fast:
        for j in range(n):
            for c in range(16):
                s[j, c] = math.exp((s[j, c] - sub[j]) * LN2)
        return
    pow2 = bits.view(np.float32)
    for j in range(n):
        row = s[j]
        brow = bits[j]
        m = sub[j]
        (x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15) = (
            row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
            row[8], row[9], row[10], row[11], row[12], row[13], row[14], row[15])
        y0, b0 = _pow2_parts(x0 - m); y1, b1 = _pow2_parts(x1 - m)
        y2, b2 = _pow2_parts(x2 - m); y3, b3 = _pow2_parts(x3 - m)
        y4, b4 = _pow2_parts(x4 - m); y5, b5 = _pow2_parts(x5 - m)
        y6, b6 = _pow2_parts(x6 - m); y7, b7 = _pow2_parts(x7 - m)
        y8, b8 = _pow2_parts(x8 - m); y9, b9 = _pow2_parts(x9 - m)
        y10, b10 = _pow2_parts(x10 - m); y11, b11 = _pow2_parts(x11 - m)
        y12, b12 = _pow2_parts(x12 - m); y13, b13 = _pow2_parts(x13 - m)
        y14, b14 = _pow2_parts(x14 - m); y15, b15 = _pow2_parts(x15 - m)
        brow[0] = b0; brow[1] = b1; brow[2] = b2; brow[3] = b3
        brow[4] = b4; brow[5] = b5; brow[6] = b6; brow[7] = b7
        brow[8] = b8; brow[9] = b9; brow[10] = b10; brow[11] = b11
        brow[12] = b12; brow[13] = b13; brow[14] = b14; brow[15] = b15
        prow = pow2[j]
        (z0, z1, z2, z3, z4, z5, z6, z7, z8, z9, z10, z11, z12, z13, z14, z15) = (
            prow[0], prow[1], prow[2], prow[3], prow[4], prow[5], prow[6], prow[7],
            prow[8], prow[9], prow[10], prow[11], prow[12], prow[13], prow[14], prow[15])
        row[0] = y0 * z0; row[1] = y1 * z1; row[2] = y2 * z2; row[3] = y3 * z3
        row[4] = y4 * z4; row[5] = y5 * z5; row[6] = y6 * z6; row[7] = y7 * z7
        row[8] = y8 * z8; row[9] = y9 * z9; row[10] = y10 * z10; row[11] = y11 * z11
        row[12] = y12 * z12; row[13] = y13 * z13; row[14] = y14 * z14; row[15] = y15 * z15


def _ds_rows_py(p, dp, n, delta):
    """dp[j, c] = p[j, c] * (dp[j, c] - delta[j]) for j < n and the 16 lanes c, unrolled over the lanes."""
    for j in range(n):
        prow = p[j]
        drow = dp[j]
        d = delta[j]
        (x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15) = (
            prow[0], prow[1], prow[2], prow[3], prow[4], prow[5], prow[6], prow[7],
            prow[8], prow[9], prow[10], prow[11], prow[12], prow[13], prow[14], prow[15])
        (y0, y1, y2, y3, y4, y5, y6, y7, y8, y9, y10, y11, y12, y13, y14, y15) = (
            drow[0], drow[1], drow[2], drow[3], drow[4], drow[5], drow[6], drow[7],
            drow[8], drow[9], drow[10], drow[11], drow[12], drow[13], drow[14], drow[15])
        drow[0] = x0 * (y0 - d); drow[1] = x1 * (y1 - d); drow[2] = x2 * (y2 - d); drow[3] = x3 * (y3 - d)
        drow[4] = x4 * (y4 - d); drow[5] = x5 * (y5 - d); drow[6] = x6 * (y6 - d); drow[7] = x7 * (y7 - d)
        drow[8] = x8 * (y8 - d); drow[9] = x9 * (y9 - d); drow[10] = x10 * (y10 - d); drow[11] = x11 * (y11 - d)
        drow[12] = x12 * (y12 - d); drow[13] = x13 * (y13 - d); drow[14] = x14 * (y14 - d); drow[15] = x15 * (y15 - d)



max_lanes = compile_slp(_max_lanes_py)
exp2_lanes = compile_slp(_exp2_lanes_py, fastmath={"contract"})
exp2_rows = compile_slp(_exp2_rows_py, fastmath={"contract"})
ds_rows = compile_slp(_ds_rows_py, fastmath={"contract"})
