"""Writes kernels/cpu/_gemm_wide.py, the GEMM's candidate micro-kernels, unrolled.

    python -m numbanet.kernels.cpu._gemm_wide_gen > kernels/cpu/_gemm_wide.py

tests/kernels/test_unroll.py checks that the committed file is this script's output. Each
candidate MR x NR kernel (an MR x NR block of op(a) @ op(b), accumulated in registers)
is this loop nest with every accumulator a local scalar:

    for p in range(kc):
        for r in range(MR):
            for c in range(NR):
                cp[r, cc + c] += ap[p, ac + r] * bp[p, bc + c]

and each distinct MR gets a packing routine that copies MR rows of `a` into an MR-wide
panel (pack_rows_MR). kernels/cpu/tiles.py says which candidates fit which CPU;
kernels/cpu/tuning.py picks one per machine, measured (`numbanet tune`) or derived.

LLVM's SLP vectorizer (switched on per kernel by kernels/cpu/slp.py) packs each row of
local accumulators into NR/lanes vector registers; each step loads one row of B (NR/lanes
vectors) and broadcasts MR values of A.

Operands and result are C-contiguous 2-D arrays read from a column offset (ac, bc, cc),
so the same compiled kernel reads a packed panel (offset 0) or the caller's own array in
place: a row of `a` (trans_a) holds MR neighbouring rows of op(a), a row of `b` NR
neighbouring columns of op(b), and `cp` may be `out[r0:r0 + MR]` itself, so a full tile
is accumulated straight into the output, with no tile buffer to copy. Each row is taken
as a 1-D slice (`bp[p, bc:]`) and indexed by constants: LLVM then sees the NR loads of
a row as one contiguous vector, where `bp[p, bc + c]` gets a negative-index check per
element. The accumulators start from cp (the caller writes zeros or the bias there
before the first KC slice; later slices add to the running sum): no zero-or-load
branch with a second copy of the initialisations. Each kernel compiles (per dtype, on
first use) only when a driver compiled for its shape calls it.

pack_rows_MR(a, r0, p0, kc, dst) copies a[r0:r0 + MR, p0:p0 + kc] into dst[p, r]: MR
rows read side by side, each panel row written whole (2.0x faster than element-wise
2-D indexing at MR = 8, measured at 1024 x 1024).

direct_MRxNR is the same register tile with op(a) read in place of a packed panel, for
convolution (kernels/cpu/conv.py): MR output pixels by NR output channels, the
accumulators starting at the bias b, adding x[pixel + cell offset] * w[cell, channels]
for every window cell, stored once into out[row0:row0 + MR, col0:col0 + NR]. x is a
flat, zero-padded copy of one image (xf), so padding costs no branch in the loop; each
pixel's window starts at bases[r], each cell sits offs[k] further on:

    for k in range(kdim):
        for r in range(MR):
            for c in range(NR):
                acc[r][c] += xf[bases[r] + offs[k]] * wp[k, c]

with wp's row read as a 1-D slice, as the micro-kernel reads its panels' rows. Each output
is b + its terms added in k order, as the packed product adds them: the same bits as the
patch matrix times the weights. conv's dW pass runs the same tile with the roles swapped
(MR window cells by NR output channels, summed over the pixels).
"""
from numbanet.kernels.cpu._unroll import header, joined, main

# (MR, NR): NR is a multiple of the vector width, so each accumulator row is whole
# vectors. For AVX-512 (16 float32 lanes, 32 registers): 8x32, 4x64, 10x32, 14x16, 8x16;
# for AVX2 (8 lanes, 16 registers): 4x16, 3x24, 2x32; 4x8 for 128-bit vectors (SSE,
# NEON). kernels/cpu/tiles.py's `fits` says which fit which register file.
TILES = ((8, 32), (4, 64), (10, 32), (14, 16), (8, 16), (4, 16), (3, 24), (2, 32), (4, 8))

IMPORTS = "import numba\n\nfrom numbanet.kernels.cpu.slp import compile_slp\n"


def _accumulators(mr, nr):
    return [[f"c{r}_{c:02d}" for c in range(nr)] for r in range(mr)]


def _rank1_lines(acc, bs, a_of_row):
    """One k-step of an MR x NR tile: each row's A value broadcast into its NR accumulators."""
    out = []
    for r, row in enumerate(acc):
        out.append(f"        a = {a_of_row(r)}")
        out += joined("        ", [f"{row[c]} += a * {bs[c]}" for c in range(len(bs))], 8)
    return out


def _compiled_line(name):
    return ["", "", f'{name} = compile_slp(_{name}_py, fastmath={{"contract"}})']


def _micro_lines(mr, nr):
    out = []
    w = out.append
    acc = _accumulators(mr, nr)
    bs = [f"b{c:02d}" for c in range(nr)]

    w(f"def _micro_{mr}x{nr}_py(ap, ac, bp, bc, kc, cp, cc):")
    w(f'    """cp[:{mr}, cc:cc + {nr}] += ap[:kc, ac:ac + {mr}].T @ bp[:kc, bc:bc + {nr}]."""')
    for r in range(mr):
        w(f"    c{r} = cp[{r}, cc:]")
    for r in range(mr):
        out += joined("    ", [f"{acc[r][c]} = c{r}[{c}]" for c in range(nr)], 8)
    w("    for p in range(kc):")
    w("        arow = ap[p, ac:]")
    w("        brow = bp[p, bc:]")
    for c0 in range(0, nr, 8):
        w(f"        {', '.join(bs[c0:c0 + 8])} = ("
          + ", ".join(f"brow[{c}]" for c in range(c0, min(c0 + 8, nr))) + ")")
    out += _rank1_lines(acc, bs, lambda r: f"arow[{r}]")
    for r in range(mr):
        out += joined("    ", [f"c{r}[{c}] = {acc[r][c]}" for c in range(nr)], 8)
    return out + _compiled_line(f"micro_{mr}x{nr}")


def _direct_lines(mr, nr):
    out = []
    w = out.append
    acc = _accumulators(mr, nr)
    ws = [f"w{c:02d}" for c in range(nr)]
    w(f"def _direct_{mr}x{nr}_py(xf, bases, offs, kdim, wp, b, out, row0, col0):")
    w(f'    """out[row0 + r, col0 + c] = b[c] + sum_k xf[bases[r] + offs[k]] * wp[k, c] (r < {mr}, c < {nr})."""')
    out += joined("    ", [f"x{r} = bases[{r}]" for r in range(mr)], 8)
    for r in range(mr):
        out += joined("    ", [f"{acc[r][c]} = b[{c}]" for c in range(nr)], 8)
    w("    for k in range(kdim):")
    w("        o = offs[k]")
    w("        wrow = wp[k]")
    out += joined("        ", [f"{ws[c]} = wrow[{c}]" for c in range(nr)], 8)
    out += _rank1_lines(acc, ws, lambda r: f"xf[x{r} + o]")
    for r in range(mr):
        w(f"    o = out[row0 + {r}, col0:col0 + {nr}]")
        out += joined("    ", [f"o[{c}] = {acc[r][c]}" for c in range(nr)], 8)
    return out + _compiled_line(f"direct_{mr}x{nr}")


def _pack_lines(mr):
    out = []
    w = out.append
    w("@numba.njit(cache=True)")
    w(f"def pack_rows_{mr}(a, r0, p0, kc, dst):")
    w(f'    """a[r0:r0 + {mr}, p0:p0 + kc] -> dst[p, r] (kc x {mr})."""')
    for r in range(mr):
        w(f"    s{r} = a[r0 + {r}, p0:p0 + kc]")
    w("    for p in range(kc):")
    w("        d = dst[p]")
    for r in range(mr):
        w(f"        d[{r}] = s{r}[p]")
    return out


def source(tiles=TILES):
    parts = [header("The GEMM's candidate micro-kernels, MR x NR blocks of op(a) @ op(b) in registers, their\n"
                    "convolution twins and their row packers, unrolled.", "_gemm_wide_gen", "_gemm_wide") + IMPORTS,
             f"TILE_SHAPES = {tuple(tiles)!r}"]
    for mr, nr in tiles:
        parts.append("\n".join(_micro_lines(mr, nr)))
    for mr, nr in tiles:
        parts.append("\n".join(_direct_lines(mr, nr)))
    for mr in sorted({mr for mr, _ in tiles}):
        parts.append("\n".join(_pack_lines(mr)))
    micro = ", ".join(f"({mr}, {nr}): micro_{mr}x{nr}" for mr, nr in tiles)
    direct = ", ".join(f"({mr}, {nr}): direct_{mr}x{nr}" for mr, nr in tiles)
    pack = ", ".join(f"{mr}: pack_rows_{mr}" for mr in sorted({mr for mr, _ in tiles}))
    parts.append(f"MICRO = {{{micro}}}\nDIRECT = {{{direct}}}\nPACK_ROWS = {{{pack}}}")
    return "\n\n\n".join(parts) + "\n"


if __name__ == "__main__":
    main(source)
