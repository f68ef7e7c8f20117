"""The GEMM micro-kernel: an MR x NR tile of op(a) @ op(b) from one packed panel of each.

The loop nest below, unrolled (by a throwaway script) into straight-line source so that
every accumulator is its own local scalar:

    for p in range(kc):
        for r in range(MR):
            for c in range(NR):
                acc[r][c] += ap[p, r] * bp[p, c]

Local scalars are what LLVM keeps in registers; its SLP vectorizer then packs each row
of NR scalars into one 512-bit (float32) or two (float64) FMA registers. Numba leaves the
SLP vectorizer off by default, so this one function is compiled, per float dtype on first
use, with it switched on by kernels/cpu/slp.py (a loop over a small array instead
keeps the tile in memory and ran about 3x slower here).
"""
from numbanet.kernels.cpu.slp import compile_slp

MR = 8
NR = 16


def _micro_py(ap, bp, kc, tile):
    """tile[:, :] = ap[:kc].T @ bp[:kc] for packed panels ap (>= kc, MR) and bp (>= kc, NR)."""
    # The first step initialises the accumulators from a product, not from a literal 0:
    # float32 * int would type them as float64.
    b00, b01, b02, b03, b04, b05, b06, b07, b08, b09, b10, b11, b12, b13, b14, b15 = (
        bp[0, 0], bp[0, 1], bp[0, 2], bp[0, 3],
        bp[0, 4], bp[0, 5], bp[0, 6], bp[0, 7],
        bp[0, 8], bp[0, 9], bp[0, 10], bp[0, 11],
        bp[0, 12], bp[0, 13], bp[0, 14], bp[0, 15],
    )
    a = ap[0, 0]
    c0_00 = a * b00; c0_01 = a * b01; c0_02 = a * b02; c0_03 = a * b03
    c0_04 = a * b04; c0_05 = a * b05; c0_06 = a * b06; c0_07 = a * b07
    c0_08 = a * b08; c0_09 = a * b09; c0_10 = a * b10; c0_11 = a * b11
    c0_12 = a * b12; c0_13 = a * b13; c0_14 = a * b14; c0_15 = a * b15
    a = ap[0, 1]
    c1_00 = a * b00; c1_01 = a * b01; c1_02 = a * b02; c1_03 = a * b03
    c1_04 = a * b04; c1_05 = a * b05; c1_06 = a * b06; c1_07 = a * b07
    c1_08 = a * b08; c1_09 = a * b09; c1_10 = a * b10; c1_11 = a * b11
    c1_12 = a * b12; c1_13 = a * b13; c1_14 = a * b14; c1_15 = a * b15
    a = ap[0, 2]
    c2_00 = a * b00; c2_01 = a * b01; c2_02 = a * b02; c2_03 = a * b03
    c2_04 = a * b04; c2_05 = a * b05; c2_06 = a * b06; c2_07 = a * b07
    c2_08 = a * b08; c2_09 = a * b09; c2_10 = a * b10; c2_11 = a * b11
    c2_12 = a * b12; c2_13 = a * b13; c2_14 = a * b14; c2_15 = a * b15
    a = ap[0, 3]
    c3_00 = a * b00; c3_01 = a * b01; c3_02 = a * b02; c3_03 = a * b03
    c3_04 = a * b04; c3_05 = a * b05; c3_06 = a * b06; c3_07 = a * b07
    c3_08 = a * b08; c3_09 = a * b09; c3_10 = a * b10; c3_11 = a * b11
    c3_12 = a * b12; c3_13 = a * b13; c3_14 = a * b14; c3_15 = a * b15
    a = ap[0, 4]
    c4_00 = a * b00; c4_01 = a * b01; c4_02 = a * b02; c4_03 = a * b03
    c4_04 = a * b04; c4_05 = a * b05; c4_06 = a * b06; c4_07 = a * b07
    c4_08 = a * b08; c4_09 = a * b09; c4_10 = a * b10; c4_11 = a * b11
    c4_12 = a * b12; c4_13 = a * b13; c4_14 = a * b14; c4_15 = a * b15
    a = ap[0, 5]
    c5_00 = a * b00; c5_01 = a * b01; c5_02 = a * b02; c5_03 = a * b03
    c5_04 = a * b04; c5_05 = a * b05; c5_06 = a * b06; c5_07 = a * b07
    c5_08 = a * b08; c5_09 = a * b09; c5_10 = a * b10; c5_11 = a * b11
    c5_12 = a * b12; c5_13 = a * b13; c5_14 = a * b14; c5_15 = a * b15
    a = ap[0, 6]
    c6_00 = a * b00; c6_01 = a * b01; c6_02 = a * b02; c6_03 = a * b03
    c6_04 = a * b04; c6_05 = a * b05; c6_06 = a * b06; c6_07 = a * b07
    c6_08 = a * b08; c6_09 = a * b09; c6_10 = a * b10; c6_11 = a * b11
    c6_12 = a * b12; c6_13 = a * b13; c6_14 = a * b14; c6_15 = a * b15
    a = ap[0, 7]
    c7_00 = a * b00; c7_01 = a * b01; c7_02 = a * b02; c7_03 = a * b03
    c7_04 = a * b04; c7_05 = a * b05; c7_06 = a * b06; c7_07 = a * b07
    c7_08 = a * b08; c7_09 = a * b09; c7_10 = a * b10; c7_11 = a * b11
    c7_12 = a * b12; c7_13 = a * b13; c7_14 = a * b14; c7_15 = a * b15
    for p in range(1, kc):
        b00, b01, b02, b03, b04, b05, b06, b07, b08, b09, b10, b11, b12, b13, b14, b15 = (
            bp[p, 0], bp[p, 1], bp[p, 2], bp[p, 3],
            bp[p, 4], bp[p, 5], bp[p, 6], bp[p, 7],
            bp[p, 8], bp[p, 9], bp[p, 10], bp[p, 11],
            bp[p, 12], bp[p, 13], bp[p, 14], bp[p, 15],
        )
        a = ap[p, 0]
        c0_00 += a * b00; c0_01 += a * b01; c0_02 += a * b02; c0_03 += a * b03
        c0_04 += a * b04; c0_05 += a * b05; c0_06 += a * b06; c0_07 += a * b07
        c0_08 += a * b08; c0_09 += a * b09; c0_10 += a * b10; c0_11 += a * b11
        c0_12 += a * b12; c0_13 += a * b13; c0_14 += a * b14; c0_15 += a * b15
        a = ap[p, 1]
        c1_00 += a * b00; c1_01 += a * b01; c1_02 += a * b02; c1_03 += a * b03
        c1_04 += a * b04; c1_05 += a * b05; c1_06 += a * b06; c1_07 += a * b07
        c1_08 += a * b08; c1_09 += a * b09; c1_10 += a * b10; c1_11 += a * b11
        c1_12 += a * b12; c1_13 += a * b13; c1_14 += a * b14; c1_15 += a * b15
        a = ap[p, 2]
        c2_00 += a * b00; c2_01 += a * b01; c2_02 += a * b02; c2_03 += a * b03
        c2_04 += a * b04; c2_05 += a * b05; c2_06 += a * b06; c2_07 += a * b07
        c2_08 += a * b08; c2_09 += a * b09; c2_10 += a * b10; c2_11 += a * b11
        c2_12 += a * b12; c2_13 += a * b13; c2_14 += a * b14; c2_15 += a * b15
        a = ap[p, 3]
        c3_00 += a * b00; c3_01 += a * b01; c3_02 += a * b02; c3_03 += a * b03
        c3_04 += a * b04; c3_05 += a * b05; c3_06 += a * b06; c3_07 += a * b07
        c3_08 += a * b08; c3_09 += a * b09; c3_10 += a * b10; c3_11 += a * b11
        c3_12 += a * b12; c3_13 += a * b13; c3_14 += a * b14; c3_15 += a * b15
        a = ap[p, 4]
        c4_00 += a * b00; c4_01 += a * b01; c4_02 += a * b02; c4_03 += a * b03
        c4_04 += a * b04; c4_05 += a * b05; c4_06 += a * b06; c4_07 += a * b07
        c4_08 += a * b08; c4_09 += a * b09; c4_10 += a * b10; c4_11 += a * b11
        c4_12 += a * b12; c4_13 += a * b13; c4_14 += a * b14; c4_15 += a * b15
        a = ap[p, 5]
        c5_00 += a * b00; c5_01 += a * b01; c5_02 += a * b02; c5_03 += a * b03
        c5_04 += a * b04; c5_05 += a * b05; c5_06 += a * b06; c5_07 += a * b07
        c5_08 += a * b08; c5_09 += a * b09; c5_10 += a * b10; c5_11 += a * b11
        c5_12 += a * b12; c5_13 += a * b13; c5_14 += a * b14; c5_15 += a * b15
        a = ap[p, 6]
        c6_00 += a * b00; c6_01 += a * b01; c6_02 += a * b02; c6_03 += a * b03
        c6_04 += a * b04; c6_05 += a * b05; c6_06 += a * b06; c6_07 += a * b07
        c6_08 += a * b08; c6_09 += a * b09; c6_10 += a * b10; c6_11 += a * b11
        c6_12 += a * b12; c6_13 += a * b13; c6_14 += a * b14; c6_15 += a * b15
        a = ap[p, 7]
        c7_00 += a * b00; c7_01 += a * b01; c7_02 += a * b02; c7_03 += a * b03
        c7_04 += a * b04; c7_05 += a * b05; c7_06 += a * b06; c7_07 += a * b07
        c7_08 += a * b08; c7_09 += a * b09; c7_10 += a * b10; c7_11 += a * b11
        c7_12 += a * b12; c7_13 += a * b13; c7_14 += a * b14; c7_15 += a * b15
    tile[0, 0] = c0_00; tile[0, 1] = c0_01; tile[0, 2] = c0_02; tile[0, 3] = c0_03
    tile[0, 4] = c0_04; tile[0, 5] = c0_05; tile[0, 6] = c0_06; tile[0, 7] = c0_07
    tile[0, 8] = c0_08; tile[0, 9] = c0_09; tile[0, 10] = c0_10; tile[0, 11] = c0_11
    tile[0, 12] = c0_12; tile[0, 13] = c0_13; tile[0, 14] = c0_14; tile[0, 15] = c0_15
    tile[1, 0] = c1_00; tile[1, 1] = c1_01; tile[1, 2] = c1_02; tile[1, 3] = c1_03
    tile[1, 4] = c1_04; tile[1, 5] = c1_05; tile[1, 6] = c1_06; tile[1, 7] = c1_07
    tile[1, 8] = c1_08; tile[1, 9] = c1_09; tile[1, 10] = c1_10; tile[1, 11] = c1_11
    tile[1, 12] = c1_12; tile[1, 13] = c1_13; tile[1, 14] = c1_14; tile[1, 15] = c1_15
    tile[2, 0] = c2_00; tile[2, 1] = c2_01; tile[2, 2] = c2_02; tile[2, 3] = c2_03
    tile[2, 4] = c2_04; tile[2, 5] = c2_05; tile[2, 6] = c2_06; tile[2, 7] = c2_07
    tile[2, 8] = c2_08; tile[2, 9] = c2_09; tile[2, 10] = c2_10; tile[2, 11] = c2_11
    tile[2, 12] = c2_12; tile[2, 13] = c2_13; tile[2, 14] = c2_14; tile[2, 15] = c2_15
    tile[3, 0] = c3_00; tile[3, 1] = c3_01; tile[3, 2] = c3_02; tile[3, 3] = c3_03
    tile[3, 4] = c3_04; tile[3, 5] = c3_05; tile[3, 6] = c3_06; tile[3, 7] = c3_07
    tile[3, 8] = c3_08; tile[3, 9] = c3_09; tile[3, 10] = c3_10; tile[3, 11] = c3_11
    tile[3, 12] = c3_12; tile[3, 13] = c3_13; tile[3, 14] = c3_14; tile[3, 15] = c3_15
    tile[4, 0] = c4_00; tile[4, 1] = c4_01; tile[4, 2] = c4_02; tile[4, 3] = c4_03
    tile[4, 4] = c4_04; tile[4, 5] = c4_05; tile[4, 6] = c4_06; tile[4, 7] = c4_07
    tile[4, 8] = c4_08; tile[4, 9] = c4_09; tile[4, 10] = c4_10; tile[4, 11] = c4_11
    tile[4, 12] = c4_12; tile[4, 13] = c4_13; tile[4, 14] = c4_14; tile[4, 15] = c4_15
    tile[5, 0] = c5_00; tile[5, 1] = c5_01; tile[5, 2] = c5_02; tile[5, 3] = c5_03
    tile[5, 4] = c5_04; tile[5, 5] = c5_05; tile[5, 6] = c5_06; tile[5, 7] = c5_07
    tile[5, 8] = c5_08; tile[5, 9] = c5_09; tile[5, 10] = c5_10; tile[5, 11] = c5_11
    tile[5, 12] = c5_12; tile[5, 13] = c5_13; tile[5, 14] = c5_14; tile[5, 15] = c5_15
    tile[6, 0] = c6_00; tile[6, 1] = c6_01; tile[6, 2] = c6_02; tile[6, 3] = c6_03
    tile[6, 4] = c6_04; tile[6, 5] = c6_05; tile[6, 6] = c6_06; tile[6, 7] = c6_07
    tile[6, 8] = c6_08; tile[6, 9] = c6_09; tile[6, 10] = c6_10; tile[6, 11] = c6_11
    tile[6, 12] = c6_12; tile[6, 13] = c6_13; tile[6, 14] = c6_14; tile[6, 15] = c6_15
    tile[7, 0] = c7_00; tile[7, 1] = c7_01; tile[7, 2] = c7_02; tile[7, 3] = c7_03
    tile[7, 4] = c7_04; tile[7, 5] = c7_05; tile[7, 6] = c7_06; tile[7, 7] = c7_07
    tile[7, 8] = c7_08; tile[7, 9] = c7_09; tile[7, 10] = c7_10; tile[7, 11] = c7_11
    tile[7, 12] = c7_12; tile[7, 13] = c7_13; tile[7, 14] = c7_14; tile[7, 15] = c7_15


micro = compile_slp(_micro_py, fastmath={"contract"})
