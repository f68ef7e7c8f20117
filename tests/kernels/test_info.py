"""kernels.info: what `numbanet info` collects and prints, each field checked against a
source info.py does not use (module __version__ attributes, pyproject.toml, /proc/cpuinfo,
a child process started with NUMBA_NUM_THREADS and NUMBA_THREADING_LAYER set)."""
import json
import os
import subprocess
import re
import sys

import llvmlite
import numba
import numpy
import pytest

from numbanet.kernels import info as kinfo

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def collected():
    return kinfo.collect()


def test_versions_match_the_imported_modules(collected):
    versions = collected["versions"]
    assert set(versions) == {"numbanet", "numba", "llvmlite", "numpy", "numba-cuda"}
    with open(os.path.join(ROOT, "pyproject.toml")) as f:  # tomllib is 3.11+; the package runs on 3.10
        assert versions["numbanet"] == re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)
    assert versions["numba"] == numba.__version__
    assert versions["numpy"] == numpy.__version__
    assert versions["llvmlite"] == llvmlite.__version__
    try:
        import numba_cuda
    except ImportError:
        assert versions["numba-cuda"] == "not installed"
    else:
        assert versions["numba-cuda"] == numba_cuda.__version__


def test_cpu_model_and_count(collected):
    cpu = collected["cpu"]
    assert cpu["model"]
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        if names:
            assert cpu["model"] == names[0]
        processors = [line for line in lines if line.split(":")[0].strip() == "processor"]
        if processors:
            assert cpu["logical_cpus"] == len(processors)


def test_threading_reports_what_the_environment_chose():
    """A child process told to use one thread and the workqueue layer reports exactly that."""
    code = ("import json; from numbanet.kernels import info; c = info.collect(); "
            "print(json.dumps(c['threading']))")
    env = dict(os.environ, NUMBA_NUM_THREADS="1", NUMBA_THREADING_LAYER="workqueue")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"layer": "workqueue", "threads": 1}


def test_backends_section(collected):
    from numbanet import kernels
    assert collected["backends"]["cpu"] == "available"
    ok, detail = kernels.gpu_status()
    assert collected["backends"]["gpu"] == ("available: " if ok else "unavailable: ") + detail
    assert collected["default_backend"] == os.environ.get("NUMBANET_BACKEND", "auto")


def test_format_info_shows_every_field(collected):
    text = kinfo.format_info(collected)
    for dist, ver in collected["versions"].items():
        assert any(line.split() == [dist, *ver.split()] for line in text.splitlines()), dist
    assert collected["cpu"]["model"] in text
    assert f"layer       {collected['threading']['layer']}" in text
    assert f"threads     {collected['threading']['threads']}" in text
    assert collected["backends"]["gpu"] in text


def test_format_info_on_a_made_up_dict():
    made_up = {
        "versions": {"numbanet": "9.9", "numba": "1.2.3"}, "python": "3.99.0",
        "backends": {"cpu": "available", "gpu": "unavailable: because"}, "default_backend": "cpu",
        "cpu": {"model": "Test CPU 3000", "llvm_cpu_name": "testcore", "features": "avx9", "logical_cpus": 77},
        "threading": {"layer": "omp", "threads": 5},
    }
    text = kinfo.format_info(made_up)
    assert text.splitlines()[0] == "numbanet 9.9 on Python 3.99.0"
    for piece in ("1.2.3", "unavailable: because", "NUMBANET_BACKEND=cpu", "Test CPU 3000", "testcore",
                  "avx9", "77", "omp"):
        assert piece in text


def test_cli_info_prints_the_report(capsys, collected):
    from numbanet.cli import main
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("numbanet ")
    assert f"numba       {numba.__version__}" in out
    assert collected["cpu"]["model"] in out
