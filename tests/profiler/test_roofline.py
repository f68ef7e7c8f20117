"""roofline.py: one PNG with both backends' roofs and points."""
from numbanet.profiler import roofline, summary


def row(backend, name, ns, flops, moved):
    return summary.Row(backend, name, "kernel", "", "", 1, ns, ns, flops, moved, True)


def test_chart_with_cpu_and_gpu(tmp_path):
    rows = [row("cpu", "conv2d", 1000, 20_000, 1000), row("cpu", "adam_step", 1000, 100, 500),
            row("cpu", "transpose", 1000, 0, 800), row("gpu", "conv2d", 100, 20_000, 1000)]
    lims = {"cpu": {"peak_gflops": 50.0, "isa_gflops": 150.0, "bandwidth_gbs": 10.0},
            "gpu": {"peak_gflops": 40_000.0, "isa_gflops": None, "bandwidth_gbs": 3000.0}}
    path = roofline.save(tmp_path / "roof.png", rows, lims)
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roof.png"]   # no temporary file left
