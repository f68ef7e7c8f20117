"""Writes kernels/cpu/_conv_direct.py, the register tile of conv's direct path, unrolled.

    python -m numbanet.kernels.cpu._conv_direct_gen > kernels/cpu/_conv_direct.py

tests/kernels/test_unroll.py checks that the committed file is this script's output.

For a shallow sum (small KH*KW*C_in) conv's forward pass skips the patch matrix: each
MR x NR tile of y (MR output pixels, NR output channels) keeps its accumulators in
registers, starts them at the bias b, adds x[pixel + cell offset] * w[cell, channels] for
every window cell, and is stored once, into out[row0:row0 + MR, col0:col0 + NR]. x is
read from a flat, zero-padded copy of one image (xf), so padding costs no branch in the
loop; each pixel's window starts at bases[r], each cell sits offs[k] further on. The tile
is the loop nest

    for k in range(kdim):
        for r in range(MR):
            for c in range(NR):
                acc[r][c] += xf[bases[r] + offs[k]] * wp[k, c]

with every accumulator a local scalar, compiled with the SLP vectorizer on (per dtype, on
first use), as _gemm_wide_gen.py does and for the same reason: a loop over a small
accumulator array keeps it in memory. conv's dW pass runs the same tile with the roles
swapped (MR window cells by NR output channels, summed over the image's pixels).
"""
from numbanet.kernels.cpu._unroll import header, joined, main

# The tile: MR output pixels by NR output channels; a row of NR float32 accumulators is
# one 512-bit vector (8x16 is also one of _gemm_wide_gen.TILES, for AVX-512).
MR = 8
NR = 16


def _tile_lines(mr, nr):
    out = []
    acc = [[f"c{r}_{c:02d}" for c in range(nr)] for r in range(mr)]
    ws = [f"w{c:02d}" for c in range(nr)]
    out.append("def _direct_tile_py(xf, bases, offs, kdim, wp, b, out, row0, col0):")
    out.append(f'    """out[row0 + r, col0 + c] = b[c] + sum_k xf[bases[r] + offs[k]] * wp[k, c] (r < {mr}, c < {nr})."""')
    out += joined("    ", [f"x{r} = bases[{r}]" for r in range(mr)], 8)
    for r in range(mr):
        out += joined("    ", [f"{acc[r][c]} = b[{c}]" for c in range(nr)], 8)
    out.append("    for k in range(kdim):")
    out.append("        o = offs[k]")
    out += joined("        ", [f"{ws[c]} = wp[k, {c}]" for c in range(nr)], 8)
    for r in range(mr):
        out.append(f"        a = xf[x{r} + o]")
        out += joined("        ", [f"{acc[r][c]} += a * {ws[c]}" for c in range(nr)], 8)
    for r in range(mr):
        out.append(f"    o = out[row0 + {r}, col0:col0 + NR]")
        out += joined("    ", [f"o[{c}] = {acc[r][c]}" for c in range(nr)], 8)
    return out


def source(mr=MR, nr=NR):
    parts = [header(f"conv's direct-path register tile, {mr} output pixels by {nr} output channels, unrolled.",
                    "_conv_direct_gen", "_conv_direct")
             + "from numbanet.kernels.cpu.slp import compile_slp\n\n"
             + f"MR = {mr}\nNR = {nr}",
             "\n".join(_tile_lines(mr, nr)),
             'direct_tile = compile_slp(_direct_tile_py, fastmath={"contract"})']
    return "\n\n\n".join(parts) + "\n"


if __name__ == "__main__":
    main(source)
