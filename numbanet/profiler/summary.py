"""A profile's calls summed into rows, and the table printed from them.

One row per (backend, op, layer, pass) (by="layer") or per (backend, op) (by="op"):
calls, total and median time of its own (children's less; the device's on the gpu),
share of the steps' time, FLOPs and bytes (Op.cost; None where an op has none, shown
"-"), GFLOP/s, GB/s, arithmetic intensity and the share of the roofline at that
intensity (limits.py). Per backend one more row, "python overhead": the steps' time the
calls do not cover (the Python between kernels; on the gpu also the device's idle time).
A step's time is its wall time less the recorder's own bookkeeping (recorder.py), so
the rows of the calls inside steps and the overhead row add up to it.
"""
import statistics
from dataclasses import dataclass

from numbanet.profiler import limits as limits_mod

OVERHEAD = "python overhead"
BETWEEN = "(between steps)"


@dataclass
class Row:
    backend: str
    name: str
    kind: str
    layer: str
    phase: str
    calls: int
    total_ns: int
    median_ns: float
    flops: object    # int, or None when the op declares no cost
    bytes: object
    in_steps: bool

    @property
    def gflops(self):
        return None if not self.flops or not self.total_ns else self.flops / self.total_ns

    @property
    def gbs(self):
        return None if self.bytes is None or not self.total_ns else self.bytes / self.total_ns

    @property
    def intensity(self):
        return None if not self.flops or not self.bytes else self.flops / self.bytes


def _add(a, b):
    return None if a is None or b is None else a + b


def summarize(calls, steps, by="layer"):
    """-> rows, most time first (the overhead rows among them)."""
    if by not in ("layer", "op"):
        raise ValueError(f"profile: by must be 'layer' or 'op', got {by!r}")
    groups = {}
    for call in calls:
        inside = call.step is not None
        layer, phase = (call.layer, call.phase) if inside or call.layer != "(outside a step)" else (BETWEEN, "-")
        key = (call.backend, call.name, call.kind) + ((layer, phase) if by == "layer" else ("", "")) + (inside,)
        groups.setdefault(key, []).append(call)
    rows = []
    for (backend, name, kind, layer, phase, inside), group in groups.items():
        times = [c.duration() for c in group]
        flops, moved = 0, 0
        for c in group:
            flops, moved = _add(flops, c.flops), _add(moved, c.bytes)
        rows.append(Row(backend, name, kind, layer, phase, len(group), sum(times), statistics.median(times), flops,
                        moved, inside))
    for backend in sorted({s.backend for s in steps}):
        step_ns = sum(s.net_ns for s in steps if s.backend == backend)
        covered = sum(r.total_ns for r in rows if r.backend == backend and r.in_steps)
        n = sum(1 for s in steps if s.backend == backend)
        rows.append(Row(backend, OVERHEAD, "python", "", "", n, step_ns - covered, (step_ns - covered) / n, None,
                        None, True))
    rows.sort(key=lambda r: -r.total_ns)
    return rows


def step_ns(steps, backend):
    return sum(s.net_ns for s in steps if s.backend == backend)


def roofline_share(row, limits):
    """The row's share of the roofline at its intensity (GB/s against the bandwidth for
    an op without FLOPs), or None where the limits or the cost are not known."""
    if limits is None or row.bytes is None or not row.total_ns:
        return None
    attainable = limits_mod.attainable(limits, row.intensity)
    if attainable is None:
        return None
    achieved = row.gflops if row.flops else row.gbs
    return achieved / attainable if achieved is not None else None


def _fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def table(rows, steps, limits=None, top=None, book_ns=None):
    """The rows as text, one block per backend; limits: {backend: limits dict} (or None);
    book_ns: the profiler's own time, for the last line."""
    out = []
    for backend in sorted({r.backend for r in rows}):
        mine = [r for r in rows if r.backend == backend]
        n = sum(1 for s in steps if s.backend == backend)
        total = step_ns(steps, backend)
        lim = (limits or {}).get(backend)
        out.append(f"backend {backend}: {n} steps, {total / 1e6 / max(n, 1):.2f} ms per step (median "
                   f"{_median_step(steps, backend) / 1e6:.2f} ms)" + (f"; {limits_mod.describe(lim)}" if lim else ""))
        head = (f"{'kernel':<28} {'layer':<18} {'pass':<9} {'calls':>6} {'total ms':>9} {'median us':>10} "
                f"{'% step':>6} {'GFLOP':>8} {'MB':>9} {'GFLOP/s':>8} {'GB/s':>7} {'F/B':>6} {'% roof':>6}")
        out += [head, "-" * len(head)]
        shown = mine if top is None else mine[:top]
        for r in shown:
            share = 100 * r.total_ns / total if total and r.in_steps else None
            roof = roofline_share(r, lim) if r.kind != "python" else None
            name = r.name if r.kind == "kernel" or r.kind == "python" else f"{r.name} [{r.kind}]"
            out.append(f"{name[:28]:<28} {r.layer[:18]:<18} {r.phase[:9]:<9} {r.calls:>6} {r.total_ns / 1e6:>9.2f} "
                       f"{r.median_ns / 1e3:>10.1f} {_fmt(share, '6.1f'):>6} {_fmt(_div(r.flops, 1e9), '8.3f'):>8} "
                       f"{_fmt(_div(r.bytes, 1e6), '9.2f'):>9} {_fmt(r.gflops, '8.2f'):>8} {_fmt(r.gbs, '7.2f'):>7} "
                       f"{_fmt(r.intensity, '6.1f'):>6} {_fmt(_mul(roof, 100), '6.1f'):>6}")
        if top is not None and len(mine) > top:
            rest = mine[top:]
            out.append(f"... {len(rest)} more rows, {sum(r.total_ns for r in rest) / 1e6:.2f} ms")
        inside = sum(r.total_ns for r in mine if r.in_steps)
        out.append(f"rows inside steps: {inside / 1e6:.2f} ms = {100 * inside / total if total else 0:.1f}% of the "
                   f"steps' {total / 1e6:.2f} ms (each step's wall time less the profiler's own bookkeeping)")
        out.append("")
    if book_ns is not None:
        out.append(f"profiler bookkeeping: {book_ns / 1e6:.2f} ms over the profile, kept out of every time above")
    return "\n".join(out)


def _median_step(steps, backend):
    times = [s.net_ns for s in steps if s.backend == backend]
    return statistics.median(times) if times else 0


def _div(a, b):
    return None if a is None else a / b


def _mul(a, b):
    return None if a is None else a * b
