"""The `numbanet bench` runner, in-process on the toy case set (`--tiny`)."""
import argparse
import io
import json
import math
import os

import numpy as np
import pytest

from numbanet.bench import cases as C
from numbanet.bench import implementations
from numbanet.bench import report
from numbanet.bench import runner


def _args(*argv):
    return runner.add_arguments(argparse.ArgumentParser()).parse_args(list(argv))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "out.json"
    out = io.StringIO()
    rc = runner.main(_args("--tiny", "--repeats", "2", "--backends", "cpu,numpy,cupy", "--json", str(path)), out=out)
    return rc, out.getvalue(), json.loads(path.read_text())


def test_json_holds_every_op_with_numpy_beside_ours(tiny_run):
    rc, _, data = tiny_run
    assert rc == 0
    rows = data["results"]
    for case in C.tiny_cases():
        by_impl = {r["impl"]: r for r in rows if r["kind"] == case.kind and r["case"] == case.label}
        assert by_impl["cpu"]["status"] == "ok", (case, by_impl["cpu"].get("reason"))
        ours, ref = by_impl["cpu"], by_impl["numpy"]
        assert len(ours["times_s"]) == 2
        assert ours["q1_s"] <= ours["median_s"] <= ours["q3_s"]
        assert ours["min_s"] <= ours["median_s"] <= ours["max_s"]
        assert math.isclose(ours["rate"], case.work / ours["median_s"] / 1e9)
        assert ours["first_call_s"] > 0
        if "numpy" not in C.references_for(case):
            # measured against PyTorch only, and said so
            assert ref["status"] == "missing" and "PyTorch is its reference" in ref["reason"], ref
            continue
        assert ref["status"] == "ok", case
        assert math.isclose(ours["vs_numpy"], ref["median_s"] / ours["median_s"])
    assert {r["op"] for r in rows} == set(C.OPS)
    assert data["machine"]["logical_cpus"] == os.cpu_count()
    assert "corename" in data["machine"]["openblas"] or "config" in data["machine"]["openblas"]


def test_table_prints_one_table_per_op(tiny_run):
    _, text, _ = tiny_run
    for op in C.OPS:
        assert f"### {op} ({C.UNITS[op]})" in text
    table_lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    # every table row has the same columns as its header
    assert all(ln.count("|") == 10 for ln in table_lines)
    assert any("| cpu " in ln for ln in table_lines) and any("| numpy " in ln for ln in table_lines)
    assert "CPU:" in text and "GPU:" in text and "NumPy BLAS:" in text


def test_missing_reference_reported_not_failed(tiny_run, monkeypatch):
    rc, text, data = tiny_run
    import importlib.util
    if importlib.util.find_spec("cupy") is None:
        cupy_rows = [r for r in data["results"] if r["impl"] == "cupy"]
        assert cupy_rows and all(r["status"] == "missing" for r in cupy_rows)
        assert "missing (not failures):" in text and "cupy [" in text
        assert "| cupy" not in text  # missing everywhere: listed below the tables, not in them
    # a reference whose import fails is reported as missing, and the run still succeeds
    from numbanet.bench import references

    def gone(case, inp):
        raise C.Missing("PyTorch is not installed (test)")
    monkeypatch.setitem(references._PREPARE, "torch", gone)
    out = io.StringIO()
    rc = runner.main(_args("--tiny", "--repeats", "1", "--ops", "gemm", "--backends", "cpu,numpy,torch"), out=out)
    assert rc == 0
    assert "torch [gemm]: PyTorch is not installed (test)" in out.getvalue()
    assert "| torch" not in out.getvalue()


def test_error_in_an_implementation_fails_the_run(monkeypatch):
    from numbanet.bench import references

    def broken(case, inp):
        raise RuntimeError("boom")
    monkeypatch.setitem(references._PREPARE, "numpy", broken)
    out = io.StringIO()
    rc = runner.main(_args("--tiny", "--repeats", "1", "--ops", "optim", "--backends", "numpy,cpu"), out=out)
    assert rc == 1
    assert "| numpy   | error" in out.getvalue()


def test_ratios_against_an_independent_computation():
    rows = [{"impl": i, "status": "ok", "median_s": t} for i, t in
            (("cpu", 2.0), ("gpu", 0.5), ("numpy", 4.0), ("torch", 1.0), ("cupy", 0.25))]
    runner._ratios(rows)
    r = {row["impl"]: row for row in rows}
    assert r["cpu"]["vs_numpy"] == 2.0 and r["cpu"]["vs_torch"] == 0.5
    assert r["gpu"]["gpu_over_cpu"] == 4.0 and r["cupy"]["gpu_over_cpu"] == 16.0
    assert r["numpy"]["vs_numpy"] is None and r["cpu"]["gpu_over_cpu"] is None


def test_round_robin_rotates_the_order(monkeypatch):
    order = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def run(self):
            order.append(self.name)

        def sync(self):
            pass
    case = C.tiny_cases()[0]
    monkeypatch.setattr(implementations, "prepare", lambda c, impl, seed=0: Fake(impl))
    rows = runner.run_case(case, ["cpu", "numpy", "torch"], repeats=3)
    timed = order[6:]  # first call and warm-up: two calls each, in impl order
    assert timed == ["cpu", "numpy", "torch", "numpy", "torch", "cpu", "torch", "cpu", "numpy"]
    assert all(len(r["times_s"]) == 3 for r in rows)



def test_warm_up_calls_until_its_time_has_passed_then_stops_at_the_cap(monkeypatch):
    calls = []

    class Fake:
        def run(self):
            calls.append("run")

        def sync(self):
            pass
    case = C.tiny_cases()[0]
    monkeypatch.setattr(implementations, "prepare", lambda c, impl, seed=0: Fake())
    # Every call "takes" 0.1 s: 0.35 s of warm-up is 4 calls (0.4 s), after the first call.
    monkeypatch.setattr(runner, "_time_call", lambda p: p.run() or 0.1)
    (row,) = runner.run_case(case, ["cpu"], repeats=2, warmup_s=0.35)
    assert row["warmup_calls"] == 4 and len(calls) == 1 + 4 + 2 and len(row["times_s"]) == 2
    calls.clear()
    monkeypatch.setattr(runner, "_time_call", lambda p: p.run() or 0.001)
    (row,) = runner.run_case(case, ["cpu"], repeats=1, warmup_s=5.0)
    assert row["warmup_calls"] == runner.WARMUP_MAX_CALLS and len(calls) == 1 + runner.WARMUP_MAX_CALLS + 1


def test_busy_case_times_its_repeats_beside_spinning_processes(monkeypatch):
    started = []
    real_start = runner.start_spinners
    monkeypatch.setattr(runner, "start_spinners", lambda n: started.extend(real_start(n)) or started)
    alive_at_call = []

    class Fake:
        def run(self):
            alive_at_call.append(sum(p.poll() is None for p in started))

        def sync(self):
            pass
    case = next(c for c in C.tiny_cases() if c.busy_cores)
    assert case.busy_cores == 1 and "1 core busy" in case.label
    monkeypatch.setattr(implementations, "prepare", lambda c, impl, seed=0: Fake())
    runner.run_case(case, ["cpu", "numpy"], repeats=3)
    # first call and warm-up of both impls alone, then every timed call beside one spinner
    assert alive_at_call == [0, 0, 0, 0] + [1] * 6
    assert len(started) == 1 and started[0].returncode is not None  # stopped and reaped


def test_bad_filters_are_rejected():
    err_out = io.StringIO()
    assert runner.main(_args("--tiny", "--ops", "gemm,nope"), out=err_out) == 2
    assert runner.main(_args("--tiny", "--backends", "cpu,blas"), out=err_out) == 2
    assert runner.main(_args("--tiny", "--repeats", "0"), out=err_out) == 2
    assert runner.main(_args("--tiny", "--warmup", "-1"), out=err_out) == 2
    assert runner.main(_args("--tiny", "--warmup", "nan"), out=err_out) == 2


def test_json_write_is_atomic_and_complete(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")
    runner.write_json(str(path), {"a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_plot_written_or_clear_message(tmp_path):
    rows = [{"op": "gemm", "status": "ok", "case": f"{n}x{n}x{n}", "size": n, "impl": "cpu", "rate": float(n)}
            for n in (32, 64)]
    path = tmp_path / "p.png"
    problem = runner.write_plot(str(path), rows)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "pip install" in problem and "matplotlib" in problem
        assert not path.exists()
    else:
        assert problem is None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_openblas_env_note_printed_only_when_set():
    info = {"cpu_model": "x", "logical_cpus": 2, "numba_threads": 2, "gpu": "none", "numpy": np.__version__,
            "numba": "0", "openblas": {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": None,
                                       "corename": "Haswell", "source": "t"}}
    assert "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE numbanet bench" in runner.format_header(info)
    info["openblas"]["OPENBLAS_CORETYPE"] = None
    assert "env -u" not in runner.format_header(info)


def _cli_bench_header(env_overrides, *more):
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY", "NUMBANET_BENCH_ENV")}
    env.update(env_overrides)
    proc = subprocess.run([sys.executable, "-m", "numbanet.cli", "bench", "--tiny", "--repeats", "1", "--ops", "optim",
                           "--backends", "cpu,numpy", *more], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_command_line_restarts_with_quiet_blas_threads():
    # From a command line, `numbanet bench` restarts itself with the settings that stop
    # OpenBLAS and OpenMP threads spinning (they must be set before NumPy loads).
    assert "OMP_WAIT_POLICY=PASSIVE, OPENBLAS_THREAD_TIMEOUT=4" in _cli_bench_header({})


def test_command_line_keeps_the_users_blas_settings():
    out = _cli_bench_header({"OPENBLAS_THREAD_TIMEOUT": "9", "OMP_WAIT_POLICY": "ACTIVE"})
    assert "OMP_WAIT_POLICY=ACTIVE, OPENBLAS_THREAD_TIMEOUT=9" in out


def test_header_names_the_isa_and_the_gemm_choice_in_force():
    info = {"cpu_model": "x", "logical_cpus": 2, "numba_threads": 2, "gpu": "none", "numpy": np.__version__,
            "numba": "0", "openblas": {"corename": "Haswell", "source": "t"},
            "gemm": {"isa": "avx2", "cpu_name": "haswell", "summary": "6x16 micro-kernel, KC 512, MC 64",
                     "origin": "tuned file /t/gemm.json"}}
    header = runner.format_header(info)
    assert "ISA: avx2 (numba compiles for haswell); CPU GEMM: 6x16 micro-kernel, KC 512, MC 64, tuned file " \
           "/t/gemm.json" in header
    info.update(torch="2.13.0+cpu", torch_threads=2, torch_isa="AVX2")
    assert "torch 2.13.0+cpu (AVX2 kernels)" in runner.format_header(info)


def test_command_line_header_and_json_tell_the_machine_apart(tmp_path):
    """An AVX2-only run (Numba told to compile for Haswell) with a tuned file for that
    target: the header and the JSON name the ISA, the target and the stored choice."""
    import json
    from numbanet.kernels.cpu import machine, tuning
    from numbanet.kernels.cpu.tiles import Tile
    features = "+avx,+avx2,+fma,+sse2,+sse4.2,-avx512f"
    target = machine.describe(target=("haswell", machine.parse_features(features)))
    doc = tuning.record(tuning.Choice(Tile(4, 16), 320, 40, 1 << 22, 1 << 27), target, {})
    path = tuning.path_for(target, str(tmp_path))
    with open(path, "w") as f:
        json.dump(doc, f)
    out = _cli_bench_header({"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": features,
                             "NUMBANET_TUNING_DIR": str(tmp_path), "NUMBANET_BACKGROUND_COMPILE": "0"},
                            "--json", str(tmp_path / "b.json"))
    assert "ISA: avx2 (numba compiles for haswell); CPU GEMM: 4x16 micro-kernel, KC 320, MC 40" in out
    assert f"tuned file {path}" in out
    assert "; conv/rnn tile 2x32" in out   # AVX2's widest tile of at most 4 rows, whatever the GEMM's choice
    with open(tmp_path / "b.json") as f:
        machine_facts = json.load(f)["machine"]
    gemm = machine_facts["gemm"]
    assert (gemm["isa"], gemm["cpu_name"], gemm["source"], gemm["file"]) == ("avx2", "haswell", "tuned", path)
    assert machine_facts["target"] == "haswell"   # --save names its files apart (bench/report.py)
    assert gemm["choice"] == doc["choice"]


def _markdown_rows(text):
    """{(op, shape, backend): cells} from the saved page's tables, read as a reader would."""
    rows, op = {}, None
    for line in text.splitlines():
        if line.startswith("### "):
            op = line[4:].split(" (")[0]
        elif line.startswith("| ") and op is not None:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] != "shape":
                rows[(op, cells[0], cells[1])] = cells
    return rows


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("saved")
    out = io.StringIO()
    rc = runner.main(_args("--tiny", "--repeats", "2", "--ops", "gemm,optim", "--backends", "cpu,numpy",
                           "--json", str(d / "run.json"), "--save", str(d / "results")), out=out)
    return rc, out.getvalue(), json.loads((d / "run.json").read_text()), d / "results"


def test_save_writes_the_runs_rows_as_a_markdown_table(saved_run):
    rc, text, data, folder = saved_run
    assert rc == 0
    from numbanet.kernels.cpu.machine import cpu_model
    (md,) = folder.glob("*.md")
    assert md.name == report.machine_slug(cpu_model()) + ".md"  # no GPU here: the CPU alone names it
    assert f"wrote {md}" in text
    table = _markdown_rows(md.read_text())
    ran = [r for r in data["results"] if r["status"] == "ok"]
    assert set(table) == {(r["op"], r["case"], r["impl"]) for r in ran}
    for r in ran:
        cells = table[(r["op"], r["case"], r["impl"])]
        assert abs(float(cells[2]) - r["median_s"] * 1e3) <= 5e-4 + 1e-9
        assert abs(float(cells[4]) - r["rate"]) <= 0.05 + 1e-9
        want = "" if r["vs_numpy"] is None else f"{r['vs_numpy']:.2f}x"
        assert cells[5] == want


def test_saved_page_carries_the_machine_facts(saved_run):
    _, _, data, folder = saved_run
    (md,) = folder.glob("*.md")
    page = md.read_text()
    m = data["machine"]
    for fact in (m["cpu_model"], f"ISA: {m['gemm']['isa']}", m["gemm"]["summary"], f"numba {m['numba']}",
                 f"numpy {m['numpy']}", "GPU: ", "threads: ", "load average", data["date_utc"][:10],
                 "command: numbanet bench --ops gemm,optim --backends cpu,numpy --repeats 2 --tiny"):
        assert fact in page, fact
    from importlib.metadata import version
    assert f"numbanet {version('numbanet')}" in page


def test_save_writes_a_png_chart(saved_run):
    _, _, _, folder = saved_run
    (png,) = folder.glob("*.png")
    assert png.stem == next(folder.glob("*.md")).stem
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in folder.iterdir()) == sorted([png.name, png.stem + ".md"])  # no temp files


def test_save_without_matplotlib_says_so_before_running(tmp_path, monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    out = io.StringIO()
    rc = runner.main(_args("--tiny", "--ops", "optim", "--backends", "cpu", "--save", str(tmp_path / "r")), out=out)
    assert rc == 2
    assert "matplotlib" in capsys.readouterr().err and "pip install" in report.PLOT_MISSING
    assert out.getvalue() == ""  # nothing ran
    assert not (tmp_path / "r").exists()
