"""kernels.info: what `numbanet info` collects and prints."""
import importlib.metadata
import os

import numba
import pytest

from numbanet.kernels import info as kinfo


@pytest.fixture(scope="module")
def collected():
    return kinfo.collect()


def test_versions_come_from_installed_metadata(collected):
    versions = collected["versions"]
    assert set(versions) == {"numbanet", "numba", "llvmlite", "numpy", "numba-cuda"}
    for dist, got in versions.items():
        try:
            want = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            want = "not installed"
        assert got == want, dist
    assert versions["numba"] == numba.__version__
    import numpy
    assert versions["numpy"] == numpy.__version__


def test_cpu_model_and_threading(collected):
    cpu = collected["cpu"]
    assert cpu["model"] and cpu["model"] == kinfo.cpu_model()
    assert cpu["logical_cpus"] == os.cpu_count()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            assert cpu["model"] == names[0]
    layer = collected["threading"]["layer"]
    assert layer in ("tbb", "omp", "workqueue")
    assert collected["threading"]["threads"] == numba.get_num_threads()


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
