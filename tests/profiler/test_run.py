"""`numbanet profile`: the table, the check against unprofiled steps, the trace and the chart."""
import json

from numbanet import cli
from numbanet.profiler import limits as limits_mod

FAKE = {"peak_gflops": 20.0, "isa_gflops": 80.0, "bandwidth_gbs": 5.0}


def test_profile_command_writes_table_trace_and_chart(tmp_path, monkeypatch, capsys):
    # The machine's limits are measured once per machine by design; here a fixed stand-in.
    monkeypatch.setattr(limits_mod, "cpu_limits", lambda refresh=False, directory=None: FAKE)
    code = cli.main(["profile", "--model", "cnn", "--steps", "2", "--batch-size", "4", "--backend", "cpu",
                     "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "backend cpu: 2 steps" in out and "roofs: GEMM 20.0 GFLOP/s (ISA 80.0), triad 5.0 GB/s" in out
    for kernel in ("conv2d ", "conv2d_backward", "max_pool2d", "matmul", "dense_backward", "adam_step",
                   "softmax_cross_entropy_stats", "python overhead"):
        assert kernel in out, kernel
    assert "cpu: train_on_batch profiled" in out and "the step's rows" in out
    assert "unprofiled (median of 2, interleaved)" in out
    with open(tmp_path / "profile_cnn_cpu.json") as f:
        names = {e["name"] for e in json.load(f)["traceEvents"]}
    assert {"conv2d", "adam_step", "step 0", "step 1"} <= names
    assert (tmp_path / "profile_cnn.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_arguments_name_what_is_wrong(capsys):
    assert cli.main(["profile", "--backend", "tpu"]) == 2
    assert "--backend takes cpu, gpu or cpu,gpu, got 'tpu'" in capsys.readouterr().err
    assert cli.main(["profile", "--steps", "0", "--backend", "cpu"]) == 2
    assert "--steps must be at least 1, got 0" in capsys.readouterr().err
