"""bench/report.py: the file names, the chart and the atomic writes of `numbanet bench --save`."""
import os
import re
import struct
import zlib

import pytest

from numbanet.bench import report


@pytest.mark.parametrize("cpu, gpu, want", [
    ("AMD EPYC", None, "amd-epyc"),
    ("Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz", None, "intel-xeon-platinum-8480"),
    ("AMD Ryzen 9 7950X 16-Core Processor", None, "amd-ryzen-9-7950x"),
    ("AMD EPYC", "NVIDIA H100 80GB HBM3", "amd-epyc-nvidia-h100-80gb-hbm3"),
    ("Apple M2", "", "apple-m2"),
    ("../../etc/passwd", None, "etc-passwd"),
    ("", None, "unknown-cpu"),
    ("(R)", "NVIDIA H200", "unknown-cpu-nvidia-h200"),
])
def test_slug_is_the_machine_in_safe_lowercase_words(cpu, gpu, want):
    assert report.machine_slug(cpu, gpu) == want


def test_a_run_compiled_for_another_cpu_is_named_apart():
    assert report.machine_slug("AMD EPYC", None, "haswell") == "amd-epyc-as-haswell"
    assert report.machine_slug("AMD EPYC", "NVIDIA H100", "haswell") == "amd-epyc-as-haswell-nvidia-h100"
    assert report.title({"cpu_model": "AMD EPYC", "target": "haswell"}) == "AMD EPYC (compiled for haswell)"
    assert report.title({"cpu_model": "AMD EPYC", "target": None}) == "AMD EPYC"


def test_slug_is_bounded_and_never_ends_in_a_dash():
    slug = report.machine_slug("Very Long Vendor " * 20, "GPU x" * 10)
    assert len(slug) <= 80 and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug)


def test_gpu_name_only_for_a_real_device():
    assert report.gpu_name("NVIDIA H100 80GB HBM3 (compute capability 9.0)") == "NVIDIA H100 80GB HBM3"
    assert report.gpu_name("Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1): kernels run as Python, for testing only") is None
    assert report.gpu_name("no NVIDIA driver found (libcuda is missing)") is None
    assert report.gpu_name(None) is None


def _rows():
    def row(impl, case, vs_numpy, vs_torch, ours=True):
        return {"op": "gemm", "case": case, "impl": impl, "ours": ours, "status": "ok",
                "vs_numpy": vs_numpy, "vs_torch": vs_torch}
    return [row("cpu", "256x256x256", 0.7, 1.5), row("numpy", "256x256x256", None, 2.1, ours=False),
            row("cpu", "1024x1024x1024", 0.9, None),
            {"op": "gemm", "case": "1024x1024x1024", "impl": "gpu", "ours": True, "status": "missing"}]


def _png_chunks(data):
    """(type, payload) of every chunk, each CRC checked: the PNG format read by hand."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, payload = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + payload) == crc, kind
        chunks.append((kind, payload))
        pos += 12 + length
    return chunks


def test_chart_is_a_valid_png():
    pytest.importorskip("matplotlib", reason="the chart needs the plot extra")
    chunks = _png_chunks(report.chart_png(_rows(), "test machine"))
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert width > 200 and height > 100
    pixels = zlib.decompress(b"".join(p for k, p in chunks if k == b"IDAT"))
    assert len(pixels) > width * height  # the image data inflates to at least a byte per pixel


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="the chart needs the plot extra")
    old = tmp_path / "amd-epyc.md"
    old.write_text("the previous run")

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        report.save(str(tmp_path), "amd-epyc", "# new page\n", _rows(), "t")
    assert [p.name for p in tmp_path.iterdir()] == ["amd-epyc.md"]  # no temp file, no half PNG
    assert old.read_text() == "the previous run"


def test_a_failed_chart_writes_nothing(tmp_path, monkeypatch):
    def broken(rows, title):
        raise RuntimeError("renderer failed")
    monkeypatch.setattr(report, "chart_png", broken)
    with pytest.raises(RuntimeError):
        report.save(str(tmp_path / "r"), "amd-epyc", "# page\n", _rows(), "t")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
