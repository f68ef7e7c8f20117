"""Writes kernels/cpu/_attention_lanes.py, the attention kernels' elementwise passes over a
score strip, unrolled over the strip's lanes.

    python -m numbanet.kernels.cpu._attention_lanes_gen > kernels/cpu/_attention_lanes.py

tests/kernels/test_unroll.py checks that the committed file is this script's output.

A strip holds 16 lanes per row: 16 queries per key row in the forward pass, 16 keys per
query row in the backward pass (kernels/cpu/attention.py). Each helper is written with
the 16 lanes unrolled into separate local scalars, and compiled with the SLP vectorizer
on (kernels/cpu/slp.py), which turns each group of 16 statements into one 512-bit
instruction (two for float64). A loop over the lanes instead compiles to scalar code:
numba leaves the SLP vectorizer off, and the loop vectorizer only sees the outer loop,
whose lanes differ. The helpers unroll these loops over the lanes c:

    max_lanes(s, n, mx):                   mx[c] = max(s[:n, c])
    exp2_lanes(s, n, mx, total, bits, fast):
        for j in range(n): s[j, c] = 2 ** (s[j, c] - mx[c]);  total[c] = sum(s[:n, c])
    exp2_rows(s, n, sub, bits, fast):      for j in range(n): s[j, c] = 2 ** (s[j, c] - sub[j])
    ds_rows(p, dp, n, delta):              for j in range(n): dp[j, c] = p[j, c] * (dp[j, c] - delta[j])

2 ** t comes from kernels/cpu/fastexp.py for float32 (`fast`; its exponent bits pass
through `bits`); float64 runs the plain loop with math.exp.
"""
from numbanet.kernels.cpu._unroll import header, joined, main

LANES = 16


def _lanes(indent, per_line, *fmts):
    """For each fmt in turn, one statement per lane (fmt(c) for lane c), per_line of them
    to a line."""
    return [line for fmt in fmts for line in joined(indent, [fmt(c) for c in range(LANES)], per_line)]


def _load(indent, name, src):
    """(name0, ..., name15) = (src[0], ..., src[15]): one row of the strip into lane scalars."""
    return ([f"{indent}({', '.join(f'{name}{c}' for c in range(LANES))}) = ("]
            + [f"{indent}    " + ", ".join(f"{src}[{c}]" for c in range(c0, c0 + 8))
               + ("," if c0 + 8 < LANES else ")") for c0 in range(0, LANES, 8)])


def _pow2_row(sub):
    """Row j's powers of two: y = 2 ** (x - sub(c)), its exponent bits stored through
    `brow`, read back as float32 lanes z (y's scale factor)."""
    return (_load("        ", "x", "row")
            + _lanes("        ", 2, lambda c: f"y{c}, b{c} = _pow2_parts(x{c} - {sub(c)})")
            + _lanes("        ", 4, lambda c: f"brow[{c}] = b{c}")
            + ["        # The exponent bits go out through memory and come back as float32 (a bit",
               "        # cast numba has no other way to write); LLVM forwards the store in registers.",
               "        prow = pow2[j]"]
            + _load("        ", "z", "prow"))


def _max_lanes():
    doc = (f"mx[c] = max(s[:n, c]) for the {LANES} lanes c, unrolled over the lanes (a NaN is passed\n"
           "    over here; its own exponential makes its lane NaN).")
    body = (["    row = s[0]"] + _load("    ", "m", "row")
            + ["    for j in range(1, n):", "        row = s[j]"] + _load("        ", "x", "row")
            + _lanes("        ", 2, lambda c: f"m{c} = x{c} if x{c} > m{c} else m{c}")
            + _lanes("    ", 4, lambda c: f"mx[{c}] = m{c}"))
    return doc, None, body


def _exp2_lanes():
    doc = (f"s[j, c] = 2 ** (s[j, c] - mx[c]) and total[c] = sum(s[:n, c]) for j < n and the {LANES}\n"
           "    lanes c, unrolled over the lanes.")
    exact = [f"        for c in range({LANES}):",
             "            acc = s.dtype.type(0)",
             "            for j in range(n):",
             "                s[j, c] = math.exp((s[j, c] - mx[c]) * LN2)",
             "                acc += s[j, c]",
             "            total[c] = acc"]
    body = (_load("    ", "m", "mx")
            + ["    pow2 = bits.view(np.float32)", "    zero = s.dtype.type(0)"]
            + _lanes("    ", 4, lambda c: f"l{c} = zero")
            + ["    for j in range(n):", "        row = s[j]", "        brow = bits[j]"]
            + _pow2_row(lambda c: f"m{c}")
            + _lanes("        ", 4, lambda c: f"y{c} *= z{c}", lambda c: f"row[{c}] = y{c}", lambda c: f"l{c} += y{c}")
            + _lanes("    ", 4, lambda c: f"total[{c}] = l{c}"))
    return doc, exact, body


def _exp2_rows():
    doc = f"s[j, c] = 2 ** (s[j, c] - sub[j]) for j < n and the {LANES} lanes c, unrolled over the lanes."
    exact = ["        for j in range(n):",
             f"            for c in range({LANES}):",
             "                s[j, c] = math.exp((s[j, c] - sub[j]) * LN2)"]
    body = (["    pow2 = bits.view(np.float32)",
             "    for j in range(n):", "        row = s[j]", "        brow = bits[j]", "        m = sub[j]"]
            + _pow2_row(lambda c: "m")
            + _lanes("        ", 4, lambda c: f"row[{c}] = y{c} * z{c}"))
    return doc, exact, body


def _ds_rows():
    doc = f"dp[j, c] = p[j, c] * (dp[j, c] - delta[j]) for j < n and the {LANES} lanes c, unrolled over the lanes."
    body = (["    for j in range(n):", "        prow = p[j]", "        drow = dp[j]", "        d = delta[j]"]
            + _load("        ", "x", "prow") + _load("        ", "y", "drow")
            + _lanes("        ", 4, lambda c: f"drow[{c}] = x{c} * (y{c} - d)"))
    return doc, None, body


# (name, arguments, compile options, the builder of its docstring, exact path and body)
HELPERS = (("max_lanes", "s, n, mx", "", _max_lanes),
           ("exp2_lanes", "s, n, mx, total, bits, fast", ', fastmath={"contract"}', _exp2_lanes),
           ("exp2_rows", "s, n, sub, bits, fast", ', fastmath={"contract"}', _exp2_rows),
           ("ds_rows", "p, dp, n, delta", ', fastmath={"contract"}', _ds_rows))


def _function(name, args, build):
    """The helper's Python function: its docstring, then (given an exact path) the float64
    loop taken when not `fast`, then its unrolled body."""
    doc, exact, body = build()
    lines = [f"def _{name}_py({args}):", f'    """{doc}"""']
    if exact is not None:
        lines += ["    if not fast:"] + exact + ["        return"]
    return "\n".join(lines + body)


def source():
    parts = [header(f"The attention kernels' elementwise passes over a score strip, one vector lane per\n"
                    f"column, unrolled over the strip's {LANES} lanes.", "_attention_lanes_gen", "_attention_lanes")
             + "import math\n\nimport numpy as np\n\n"
             "from numbanet.kernels.cpu import fastexp\n"
             "from numbanet.kernels.cpu.slp import compile_slp\n\n"
             f"LANES = {LANES}\n"
             "LN2 = fastexp.LN2\n"
             "_pow2_parts = fastexp.pow2_parts"]
    parts += [_function(name, args, build) for name, args, _, build in HELPERS]
    parts.append("\n".join(f"{name} = compile_slp(_{name}_py{options})" for name, _, options, _ in HELPERS))
    return "\n\n\n".join(parts) + "\n"


if __name__ == "__main__":
    main(source)
