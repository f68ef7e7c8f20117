"""kernels/cpu/tuning.py: the GEMM configuration in force.

Derived defaults are checked on made-up machines (feature sets, register files, FMA
units, cache sizes) against rules written out here; stored files are written by the
test (valid, corrupt, foreign, naming unknown candidates) and read back in this process
and in fresh ones."""
import json
import os
import re
import subprocess
import sys
import warnings

import pytest

from numbanet.kernels.cpu import machine, tuning
from numbanet.kernels.cpu.tiles import Tile, accumulators, fits

KIB = 1024


def fake(isa="avx512", cpu_name="testcore", fma=2, l1d=32 * KIB, l2=1024 * KIB, model="Test CPU 1"):
    lanes, registers = {"avx512": (16, 32), "avx2": (8, 16), "sse2": (4, 16), "neon": (4, 32)}[isa]
    return machine.Machine(model, cpu_name, frozenset(), isa, lanes, registers, fma, True, l1d, l2, 0)


@pytest.mark.parametrize("isa", ["avx512", "avx2", "sse2", "neon"])
@pytest.mark.parametrize("fma", [1, 2])
def test_derived_tile_fits_the_register_file_and_fills_the_fma_units(isa, fma):
    m = fake(isa, fma=fma)
    tile = tuning.derive(m).tile
    assert tile.nr % m.lanes == 0
    acc = tile.mr * tile.nr // m.lanes
    # accumulators + a row of B + one broadcast within the register file
    assert acc + tile.nr // m.lanes + 1 <= m.registers
    assert acc >= 2 * fma * 4 or all(t.mr * t.nr // m.lanes < 2 * fma * 4 for t in tuning.candidate_tiles(m))


def test_derived_tiles_follow_the_isa_not_one_machine():
    wide, narrow = tuning.derive(fake("avx512")).tile, tuning.derive(fake("avx2")).tile
    assert wide.nr % 16 == 0 and narrow.nr % 8 == 0
    assert accumulators(narrow, 8) <= 13 < accumulators(wide, 16)   # 16 ymm registers against 32 zmm


def test_derived_tile_ranks_fma_per_load():
    # Among the shapes with enough accumulators (2 x units x latency) and a power-of-two
    # NR, the most FMAs per value loaded each step of k (NR / lanes B vectors + MR
    # broadcasts), then the ones short of accumulators, most first; this is the plan's
    # order.
    m = fake("avx512", fma=2)
    ranked = tuning.candidate_tiles(m)
    ratio = [accumulators(t, 16) / (t.nr // 16 + t.mr) for t in ranked if accumulators(t, 16) >= 16]
    assert ratio == sorted(ratio, reverse=True) and len(ratio) >= 3
    assert ranked[:len(ratio)] == [t for t in ranked if accumulators(t, 16) >= 16]
    short = [accumulators(t, 16) for t in ranked[len(ratio):]]
    assert short == sorted(short, reverse=True)
    assert tuning.derive(m).tile == ranked[0]


def test_derived_tile_on_avx2_is_the_most_that_does_not_spill():
    # 6x16: 12 + 2 + 1 = 15 of 16 ymm registers (measured on the AMD EPYC compiled for
    # AVX2: 117 GFLOP/s in L1 against 109 for 4x16 and 38 for 8x16, which spills).
    assert tuning.derive(fake("avx2")).tile == Tile(6, 16)


def test_derived_blocking_follows_the_caches():
    tile = Tile(8, 32)
    kc, mc = tuning.derived_blocking(tile, fake(l1d=32 * KIB, l2=1024 * KIB))
    assert kc == 32 * KIB // (4 * 32)                      # a kc x NR float32 panel fills L1d
    assert mc == 1024 * KIB // 8 // (4 * kc) // 8 * 8      # an mc x kc block takes L2 / 8
    kc2, mc2 = tuning.derived_blocking(tile, fake(l1d=48 * KIB, l2=2048 * KIB))
    assert kc2 == 48 * KIB // (4 * 32) // 16 * 16 and kc2 > kc
    assert mc2 % tile.mr == 0 and mc2 != mc


def test_derived_blocking_is_clamped_and_a_multiple_of_mr():
    for l1d, l2 in ((4 * KIB, 16 * KIB), (4096 * KIB, 1 << 30), (0, 0)):
        for tile in tuning.all_tiles():
            kc, mc = tuning.derived_blocking(tile, fake(l1d=l1d, l2=l2))
            assert tuning.KC_RANGE[0] <= kc <= tuning.KC_RANGE[1]
            assert mc % tile.mr == 0 and mc >= tile.mr


def test_derived_thresholds_scale_with_the_vector_unit():
    s512, p512 = tuning.derived_thresholds(fake("avx512", fma=2))
    s256, p256 = tuning.derived_thresholds(fake("avx2", fma=2))
    assert s512 == 2 * s256 and p512 > s512 and p256 > s256


# --------------------------------------------------------------------------- stored files
def _machine():
    return machine.describe()


def _write(directory, doc, m=None):
    path = tuning.path_for(m or _machine(), str(directory))
    with open(path, "w") as f:
        f.write(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _valid(m=None, **choice):
    c = {"tile": "8x16", "kc": 192, "mc": 48, "serial_macs": 1 << 21, "prepack_macs": 1 << 26}
    c.update(choice)
    return {"format": tuning.FORMAT, "machine": tuning.machine_key(m or _machine()), "choice": c, "measured": {}}


def test_a_valid_file_is_loaded(tmp_path):
    path = _write(tmp_path, _valid())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = tuning.load(_machine(), path)
    assert (got.tile, got.kc, got.mc, got.serial_macs, got.prepack_macs) == (Tile(8, 16), 192, 48, 1 << 21, 1 << 26)
    assert got.source == "tuned" and got.where == path


def test_no_file_is_silent(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tuning.load(_machine(), str(tmp_path / "absent.json")) is None


@pytest.mark.parametrize("doc,reason", [
    ("{not json", r"Expecting property name"),
    ("[]", r"not a numbanet-gemm-tuning/1 document"),
    ('{"format": "numbanet-gemm-tuning/0"}', r"not a numbanet-gemm-tuning/1 document"),
    ("foreign", r"tuned for .*'Another CPU'"),
    ("unknown-tile", r"no candidate micro-kernel is 7x9; the candidates are"),
    ("bad-kc", r"kc must be an integer in \[64, 1024\], got 4"),
    ("bool-kc", r"kc must be an integer .* got True"),
    ("ragged-mc", r"mc=50 is not a multiple of the tile's 8 rows"),
    ("no-choice", r"no 'choice' object"),
])
def test_bad_files_are_ignored_with_one_warning_saying_why(tmp_path, doc, reason):
    m = _machine()
    docs = {"foreign": _valid(fake(model="Another CPU")), "unknown-tile": _valid(tile="7x9"),
            "bad-kc": _valid(kc=4), "bool-kc": _valid(kc=True), "ragged-mc": _valid(mc=50),
            "no-choice": dict(_valid(), choice=None)}
    path = _write(tmp_path, docs.get(doc, doc), m)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert tuning.load(m, path) is None
    assert len(caught) == 1 and caught[0].category is tuning.TuningWarning
    message = str(caught[0].message)
    assert path in message and "derived from the CPU's features" in message
    assert re.search(reason, message), message


def test_a_file_for_another_isa_is_never_this_ones(tmp_path):
    # Side by side: the AVX2 build's file does not serve the native build, nor the reverse.
    native = _machine()
    avx2 = machine.Machine(native.model, "haswell", frozenset(), "avx2", 8, 16, 2, True, 0, 0, 0)
    assert tuning.path_for(native, "d") != tuning.path_for(avx2, "d")


def test_location_follows_the_environment(monkeypatch, tmp_path):
    m = _machine()
    monkeypatch.delenv(tuning.DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert os.path.dirname(tuning.path_for(m)) == str(tmp_path / "xdg" / "numbanet")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert os.path.dirname(tuning.path_for(m)) == str(tmp_path / "home" / ".cache" / "numbanet")
    monkeypatch.setenv(tuning.DIR_ENV, str(tmp_path / "mine"))
    assert os.path.dirname(tuning.path_for(m)) == str(tmp_path / "mine")


_CURRENT = """
import json, warnings
import numpy as np
warnings.simplefilter("always")
from numbanet.kernels import get_backend
from numbanet.kernels.cpu import tuning
be = get_backend("cpu")
a = np.ones((3, 4), np.float32)
for _ in range(3):
    assert (be.matmul(a, a.T) == 4).all()
c = tuning.current()
print(json.dumps({"choice": c.as_dict(), "source": c.source, "where": c.where}))
"""


def _current_in_child(directory, **env):
    full = dict(os.environ, NUMBANET_TUNING_DIR=str(directory), NUMBANET_BACKGROUND_COMPILE="0", **env)
    proc = subprocess.run([sys.executable, "-c", _CURRENT], env=full, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1]), proc.stderr


def test_a_fresh_process_uses_the_stored_choice(tmp_path):
    path = _write(tmp_path, _valid())
    got, err = _current_in_child(tmp_path)
    assert got == {"choice": _valid()["choice"], "source": "tuned", "where": path}
    assert "TuningWarning" not in err
    # NUMBANET_TUNING=off: the derived defaults, file or not.
    got, _ = _current_in_child(tmp_path, NUMBANET_TUNING="off")
    assert got["source"] == "derived" and got["choice"] == tuning.derive(_machine()).as_dict()


def test_a_fresh_process_warns_once_about_a_corrupt_file(tmp_path):
    _write(tmp_path, "{")
    got, err = _current_in_child(tmp_path)
    assert got["source"] == "derived"
    assert err.count("TuningWarning") == 1 and "ignored" in err


def test_strip_tile_is_16_wide_and_splits_the_strip(monkeypatch):
    """Attention's 16-lane strips take a 16-wide tile whose MR divides 16: 8x16 where it
    fits the registers (AVX-512: 8 + 1 + 8 = 17 of 32; more FMAs per load than 4x16), 4x16
    on AVX2 (8x16 needs 26 of 16); a choice in force of that kind is used as it is."""
    from dataclasses import replace
    for isa, want in (("avx512", Tile(8, 16)), ("avx2", Tile(4, 16))):
        m = fake(isa)
        monkeypatch.setattr(tuning, "_current", [(tuning.derive(m), m)])
        monkeypatch.setattr(tuning, "_strip", {})
        assert tuning.strip_tile(16) == want
    m = fake("avx512")
    monkeypatch.setattr(tuning, "_current", [(replace(tuning.derive(m), tile=Tile(4, 16)), m)])
    monkeypatch.setattr(tuning, "_strip", {})
    assert tuning.strip_tile(16) == Tile(4, 16)


def test_short_tile_is_the_widest_fitting_tile_of_at_most_four_rows(monkeypatch):
    """Convolution's and the recurrence's tile (one base address per row in a general
    register; a batch's few rows split between threads): 4x64 under AVX-512 (16 + 4 + 4 =
    24 of 32 zmm) and 2x32 under AVX2 (8 + 4 + 2 = 14 of 16 ymm), whatever the GEMM's
    choice in force (a tuned 10x32 included)."""
    from dataclasses import replace
    for isa, want, in_force in (("avx512", Tile(4, 64), None), ("avx2", Tile(2, 32), None),
                                ("avx512", Tile(4, 64), Tile(10, 32))):
        m = fake(isa)
        choice = tuning.derive(m) if in_force is None else replace(tuning.derive(m), tile=in_force)
        monkeypatch.setattr(tuning, "_current", [(choice, m)])
        monkeypatch.setattr(tuning, "_strip", {})
        got = tuning.short_tile()
        assert got == want
        assert got.mr <= tuning.SHORT_MAX_MR and fits(got, m.lanes, m.registers)
