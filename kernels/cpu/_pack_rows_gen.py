"""Writes kernels/cpu/_pack_rows.py: the GEMM's candidate micro-kernel shapes and, for each
distinct MR, the routine that packs MR rows of `a` into an MR-wide panel, unrolled.

    python -m numbanet.kernels.cpu._pack_rows_gen > kernels/cpu/_pack_rows.py

tests/kernels/test_unroll.py checks that the committed file is this script's output.
pack_rows_MR(a, r0, p0, kc, dst) copies a[r0:r0 + MR, p0:p0 + kc] into dst[p, r]:

    for p in range(kc):
        for r in range(MR):
            dst[p, r] = a[r0 + r, p0 + p]

with the MR rows taken as 1-D slices read side by side and each panel row written whole
(2.0x faster than element-wise 2-D indexing at MR = 8, measured at 1024 x 1024). The
micro-kernels themselves are kernels/cpu/microkernel.py, which writes any MR x NR;
kernels/cpu/tiles.py says which candidates fit which CPU and kernels/cpu/tuning.py picks
one per machine, measured (`numbanet tune`) or derived.
"""
from numbanet.kernels.cpu._unroll import header, main

# (MR, NR): NR is a multiple of the vector width, so each accumulator row is whole
# vectors. For AVX-512 (16 float32 lanes, 32 registers): 8x32, 4x64, 10x32, 12x32 (BLIS's
# Skylake-X shape, transposed), 14x16, 8x16; for AVX2 (8 lanes, 16 registers): 6x16
# (BLIS's Haswell shape), 4x16, 3x24, 2x32; 4x8 for 128-bit vectors (SSE, NEON).
# kernels/cpu/tiles.py's `fits` says which fit which register file; `numbanet tune`
# measures the best-ranked ones on the machine.
TILES = ((8, 32), (4, 64), (10, 32), (12, 32), (14, 16), (8, 16), (6, 16), (4, 16), (3, 24), (2, 32), (4, 8))


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
    rows = sorted({mr for mr, _ in tiles})
    parts = [header("The GEMM's candidate micro-kernel shapes and their row packers, unrolled.",
                    "_pack_rows_gen", "_pack_rows") + "import numba",
             f"TILE_SHAPES = {tuple(tiles)!r}"]
    parts += ["\n".join(_pack_lines(mr)) for mr in rows]
    parts.append("PACK_ROWS = {" + ", ".join(f"{mr}: pack_rows_{mr}" for mr in rows) + "}")
    return "\n\n\n".join(parts) + "\n"


if __name__ == "__main__":
    main(source)
