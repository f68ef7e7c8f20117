"""summary.py: rows from calls (made by hand here), the overhead row, a missing cost
shown "-", the roofline share at a row's intensity."""
from numbanet.profiler import summary
from numbanet.profiler.hooks import Step
from numbanet.profiler.recorder import Call

LIMITS = {"cpu": {"peak_gflops": 100.0, "bandwidth_gbs": 10.0, "isa_gflops": 200.0}}


def call(name, step, ns, flops, moved, layer="dense", phase="forward", kind="kernel"):
    c = Call()
    c.name, c.kind, c.backend, c.layer, c.phase, c.step = name, kind, "cpu", layer, phase, step
    c.start, c.end, c.self_ns, c.device_ns = 0, ns, ns, None
    c.flops, c.bytes = flops, moved
    return c


def calls():
    return [call("matmul", 0, 1000, 4000, 400), call("matmul", 1, 3000, 4000, 400),
            call("newop", 0, 500, None, None, layer="norm"),
            call("asarray", None, 200, 0, 800, layer="(outside a step)", phase="-", kind="transfer")]


STEPS = [Step(0, "cpu", 0, 2000, 100), Step(1, "cpu", 10_000, 14_000, 0)]   # net 1900 + 4000 ns


def test_rows_and_the_overhead_row():
    rows = {(r.name, r.layer): r for r in summary.summarize(calls(), STEPS)}
    mm = rows[("matmul", "dense")]
    assert (mm.calls, mm.total_ns, mm.median_ns, mm.flops, mm.bytes) == (2, 4000, 2000, 8000, 800)
    assert mm.gflops == 2.0 and mm.gbs == 0.2 and mm.intensity == 10.0
    # The steps' 5900 ns less the calls inside them (4000 + 500): 1400 ns of Python.
    over = rows[(summary.OVERHEAD, "")]
    assert over.total_ns == 1400 and over.calls == 2
    assert sum(r.total_ns for r in rows.values() if r.in_steps) == 5900
    between = rows[("asarray", summary.BETWEEN)]
    assert not between.in_steps and between.bytes == 800


def test_by_op_merges_layers():
    more = calls() + [call("matmul", 1, 1000, 2000, 100, layer="dense_1")]
    rows = {r.name: r for r in summary.summarize(more, STEPS, by="op") if r.in_steps}
    assert rows["matmul"].calls == 3 and rows["matmul"].flops == 10000


def test_roofline_share():
    rows = {r.name: r for r in summary.summarize(calls(), STEPS)}
    # matmul: 10 FLOP/B x 10 GB/s = 100 GFLOP/s attainable (the peak too); it runs at 2.
    assert abs(summary.roofline_share(rows["matmul"], LIMITS["cpu"]) - 0.02) < 1e-12
    # a copy (no FLOPs) against the bandwidth: 800 B in 200 ns = 4 GB/s of 10.
    assert abs(summary.roofline_share(rows["asarray"], LIMITS["cpu"]) - 0.4) < 1e-12
    assert summary.roofline_share(rows["newop"], LIMITS["cpu"]) is None


def test_table_shows_a_dash_for_an_op_without_a_cost():
    text = summary.table(summary.summarize(calls(), STEPS), STEPS, LIMITS)
    line = next(l for l in text.splitlines() if l.startswith("newop"))
    # Its time and share (500 of 5900 ns) are known; GFLOP, MB, GFLOP/s, GB/s, F/B and % roof are not.
    assert line.split()[-7:] == ["8.5"] + ["-"] * 6
    assert "python overhead" in text and "2 steps" in text
