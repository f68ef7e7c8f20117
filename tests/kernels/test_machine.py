"""kernels/cpu/machine.py: what the CPU kernels are compiled for, read from Numba's own
settings (child processes with NUMBA_CPU_NAME / NUMBA_CPU_FEATURES set), from fake
feature sets, and from a fake sysfs cache directory."""
import json
import os
import subprocess
import sys

import pytest

from numbanet.kernels.cpu import machine

HASWELL_FEATURES = "+avx,+avx2,+fma,+sse2,+sse4.2,-avx512f"


def test_parse_features_keeps_only_the_ones_switched_on():
    assert machine.parse_features("+avx2,-avx512f,+fma,,sse") == {"avx2", "fma"}
    assert machine.parse_features("") == frozenset()


@pytest.mark.parametrize("features,expected", [
    ({"avx512f", "avx2", "fma", "avx"}, ("avx512", 16, 32)),
    ({"avx2", "fma", "avx"}, ("avx2", 8, 16)),
    ({"avx2", "avx"}, ("avx", 8, 16)),          # AVX2 without FMA: plain AVX arithmetic
    ({"avx"}, ("avx", 8, 16)),
    ({"sse2"}, ("sse2", 4, 16)),
])
def test_vector_unit_from_features_on_x86(features, expected):
    assert machine.vector_unit(frozenset(features), "x86_64") == expected


def test_vector_unit_on_arm():
    assert machine.vector_unit(frozenset({"neon"}), "aarch64") == ("neon", 4, 32)


@pytest.mark.parametrize("name,isa,units,known", [
    ("znver4", "avx512", 1, True),        # 512-bit FMAs as two halves
    ("znver4", "avx2", 2, True),          # the same core's 256-bit FMAs at full rate
    ("sapphirerapids", "avx512", 2, True),
    ("icelake-client", "avx512", 1, True),
    ("haswell", "avx2", 2, True),
    ("znver1", "avx2", 1, True),
    ("some-future-core", "avx512", 2, False),
])
def test_fma_units_where_known(name, isa, units, known):
    assert machine.fma_units(name, isa) == (units, known)


def test_implied_features_by_cpu_name():
    assert "avx512f" in machine.implied_features("skylake-avx512")
    hsw = machine.implied_features("haswell")
    assert {"avx2", "fma"} <= hsw and "avx512f" not in hsw
    assert "avx2" not in machine.implied_features("sandybridge")


def test_cache_sizes_from_a_fake_sysfs(tmp_path):
    for i, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"),
                                             (3, "Unified", "105M")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(kind + "\n")
        (d / "size").write_text(size + "\n")
    assert machine.cache_sizes(str(tmp_path)) == (48 * 1024, 2048 * 1024, 105 * 1024 * 1024)


def test_describe_from_given_parts():
    m = machine.describe(model="Test CPU", target=("haswell", frozenset({"avx2", "fma", "avx"})),
                         caches=(32768, 262144, 0))
    assert (m.model, m.cpu_name, m.isa, m.lanes, m.registers, m.fma_units) == ("Test CPU", "haswell", "avx2", 8, 16, 2)
    assert (m.l1d, m.l2, m.l3) == (32768, 262144, 0)
    text = m.describe()
    assert "Test CPU" in text and "haswell" in text and "L1d 32 KiB" in text and "L2 256 KiB" in text


_TARGET = "import json; from numbanet.kernels.cpu import machine; n, f = machine.numba_target(); " \
          "print(json.dumps([n, sorted(f)]))"


def _target_in_child(**env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU_")}
    full.update(env)
    proc = subprocess.run([sys.executable, "-c", _TARGET], env=full, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_numba_target_honours_numba_cpu_name_and_features():
    name, features = _target_in_child(NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=HASWELL_FEATURES)
    assert name == "haswell"
    assert set(features) == {"avx", "avx2", "fma", "sse2", "sse4.2"}


def test_numba_target_by_name_alone_takes_the_names_features():
    # NUMBA_CPU_FEATURES="" with a name: LLVM compiles for that CPU's own features.
    name, features = _target_in_child(NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="")
    assert name == "haswell" and "avx2" in features and "avx512f" not in features


def test_numba_target_of_the_host_is_llvms():
    import llvmlite.binding as ll
    name, features = _target_in_child()
    assert name == ll.get_host_cpu_name()
    host = {k for k, on in ll.get_host_cpu_features().items() if on}
    assert set(features) == host
