"""limits.py: the roofline's arithmetic, the ISA figure, the cpu facts read from the OS,
and the cache: measured once per machine key, written atomically, read back after."""
import json
import os

from numbanet.kernels.cpu import machine as machine_info
from numbanet.profiler import limits

LIM = {"peak_gflops": 50.0, "bandwidth_gbs": 20.0}


def test_attainable_is_the_lower_roof():
    assert limits.attainable(LIM, 0.5) == 10.0        # memory-bound: 0.5 FLOP/B x 20 GB/s
    assert limits.attainable(LIM, 100.0) == 50.0      # compute-bound: the peak
    assert limits.attainable(LIM, None) == 20.0       # a copy: the bandwidth itself
    assert limits.attainable({"peak_gflops": 50.0, "bandwidth_gbs": None}, 1.0) is None


def test_isa_figure():
    # 2 cores x 2.5 GHz x 2 FMA units x 8 lanes (AVX2) x 2 FLOPs = 160 GFLOP/s.
    m = machine_info.describe(model="test", target=("haswell", {"avx2", "fma", "avx"}), caches=(32768, 0, 0))
    assert limits.isa_gflops(m, 2, 2.5) == 160.0
    assert limits.isa_gflops(m, 2, None) is None


def test_cores_and_clock_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nphysical id\t: 0\ncore id\t: 0\ncpu MHz\t\t: 2400.0\n\n"
                    "processor\t: 1\nphysical id\t: 0\ncore id\t: 0\ncpu MHz\t\t: 2600.5\n\n"
                    "processor\t: 2\nphysical id\t: 0\ncore id\t: 1\ncpu MHz\t\t: 2500.0\n")
    assert limits.physical_cores(str(info)) == 2   # two hyperthreads of core 0 count once
    assert limits.cpu_ghz(str(info), str(tmp_path / "no-cpufreq")) == 2.6005
    freq = tmp_path / "max_freq"
    freq.write_text("3500000\n")                   # kHz
    assert limits.cpu_ghz(str(info), str(freq)) == 3.5


def test_measured_once_then_read_from_the_cache(tmp_path):
    runs = []

    def measure():
        runs.append(1)
        return {"peak_gflops": 1.0 + len(runs), "bandwidth_gbs": 3.0}

    key = {"name": "cpu-test", "threads": 2}
    first = limits.cached(key, measure, False, str(tmp_path))
    again = limits.cached(key, measure, False, str(tmp_path))
    assert first == again == {"peak_gflops": 2.0, "bandwidth_gbs": 3.0} and len(runs) == 1
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].startswith("limits-cpu-test-") and files[0].endswith(".json")
    with open(tmp_path / files[0]) as f:
        assert json.load(f)["key"] == key
    # Another machine key, or refresh: measured again.
    assert limits.cached(dict(key, threads=4), measure, False, str(tmp_path))["peak_gflops"] == 3.0
    assert limits.cached(key, measure, True, str(tmp_path))["peak_gflops"] == 4.0


def test_a_broken_cache_file_is_measured_again(tmp_path):
    key = {"name": "cpu-test"}
    limits.cached(key, lambda: {"peak_gflops": 1.0, "bandwidth_gbs": 1.0}, False, str(tmp_path))
    (path,) = [tmp_path / n for n in os.listdir(tmp_path)]
    path.write_text("{not json")
    assert limits.cached(key, lambda: {"peak_gflops": 9.0, "bandwidth_gbs": 1.0}, False, str(tmp_path)) == \
        {"peak_gflops": 9.0, "bandwidth_gbs": 1.0}
