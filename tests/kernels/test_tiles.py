"""kernels/cpu/tiles.py: the micro-kernel shape as a type kernels are compiled for.

Checked: the shape's constants and kernels inside a jitted function, the register rule
against counts written out by hand, the errors, and that each shape's driver is its own
entry in Numba's on-disk cache, loaded (not compiled) by a second process."""
import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from numbanet.kernels.cpu._pack_rows import PACK_ROWS, TILE_SHAPES
from numbanet.kernels.cpu.tiles import Tile, accumulators, all_tiles, fits


def test_parse_and_errors():
    assert Tile.parse("8x32") == Tile(8, 32)
    assert Tile.parse("4X16").name == "4x16"
    with pytest.raises(ValueError, match=r"gemm tile: expected MRxNR such as '8x32', got 'eight'"):
        Tile.parse("eight")
    with pytest.raises(ValueError, match=r"gemm tile: no candidate micro-kernel is 7x9; the candidates are 8x32"):
        Tile(7, 9)
    assert [(t.mr, t.nr) for t in all_tiles()] == list(TILE_SHAPES)


@pytest.mark.parametrize("name,lanes,registers,acc,fit", [
    ("8x32", 16, 32, 16, True),    # 16 accumulators + 2 B vectors + 1 broadcast = 19 of 32
    ("10x32", 16, 32, 20, True),   # 20 + 2 + 1 = 23
    ("12x32", 16, 32, 24, True),   # 24 + 2 + 1 = 27
    ("14x16", 16, 32, 14, True),   # 14 + 1 + 1 = 16
    ("4x64", 16, 32, 16, True),    # 16 + 4 + 1 = 21
    ("6x16", 8, 16, 12, True),     # 12 + 2 + 1 = 15 of AVX2's 16
    ("4x16", 8, 16, 8, True),      # 8 + 2 + 1 = 11
    ("3x24", 8, 16, 9, True),      # 9 + 3 + 1 = 13
    ("8x16", 8, 16, 16, False),    # 16 + 2 + 1 = 19 > 16
    ("10x32", 8, 16, 40, False),
    ("4x8", 4, 16, 8, True),       # SSE: 8 + 2 + 1 = 11
    ("4x16", 4, 16, 16, False),    # SSE: 16 + 4 + 1 = 21 > 16
])
def test_register_rule(name, lanes, registers, acc, fit):
    tile = Tile.parse(name)
    assert accumulators(tile, lanes) == acc
    assert fits(tile, lanes, registers) is fit


def test_a_row_must_be_whole_vectors():
    assert not fits(Tile(3, 24), 16, 32)   # 24 float32 is one and a half zmm


@numba.njit(cache=True)
def _shape_and_product(tile, ap, bp, kc, cp):
    tile.micro(ap, 0, bp, 0, kc, cp, 0)
    return tile.mr, tile.nr


@numba.njit(cache=True)
def _packed(tile, a, kc, dst):
    tile.pack_rows(a, 1, 2, kc, dst)


@pytest.mark.parametrize("name", ["8x16", "4x16"])
def test_inside_a_kernel_the_tile_is_its_shape_and_kernels(name):
    tile = Tile.parse(name)
    kc = 5
    rng = np.random.default_rng(1)
    ap = rng.standard_normal((kc, tile.mr)).astype(np.float32)
    bp = rng.standard_normal((kc, tile.nr)).astype(np.float32)
    cp = np.zeros((tile.mr, tile.nr), np.float32)
    assert _shape_and_product(tile, ap, bp, kc, cp) == (tile.mr, tile.nr)
    np.testing.assert_allclose(cp, ap.T.astype(np.float64) @ bp, rtol=1e-5, atol=1e-5)
    a = rng.standard_normal((tile.mr + 2, 9)).astype(np.float32)
    dst = np.full((kc, tile.mr), np.nan, np.float32)
    _packed(tile, a, kc, dst)
    np.testing.assert_array_equal(dst, a[1:1 + tile.mr, 2:2 + kc].T)


def test_generated_tables_cover_every_shape():
    from numbanet.kernels.cpu._pack_rows_gen import TILES
    assert TILE_SHAPES == TILES
    assert set(PACK_ROWS) == {mr for mr, _ in TILE_SHAPES}


_DRIVER = """
import json, sys
import numpy as np
from numbanet.kernels.cpu import gemm
from numbanet.kernels.cpu.tiles import Tile
a = np.ones((9, 17), np.float32); b = np.ones((17, 20), np.float32)
for name in sys.argv[1:]:
    out = np.empty((9, 20), np.float32)
    gemm._wide_serial(Tile.parse(name), 64, 32, a, b, False, False, gemm.no_bias(np.float32), out)
    assert (out == 17).all()
stats = gemm._wide_rect.stats
print(json.dumps({"hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values())}))
"""


def test_each_shape_is_cached_apart_and_loaded_by_the_next_process(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), NUMBANET_BACKGROUND_COMPILE="0")

    def run(*names):
        proc = subprocess.run([sys.executable, "-c", _DRIVER, *names], env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.splitlines()[-1])

    assert run("8x16") == {"hits": 0, "misses": 1}
    # A second shape is a second compile (the first one's entry does not serve it) ...
    assert run("8x16", "4x16") == {"hits": 1, "misses": 1}
    # ... and then both load from the cache.
    assert run("4x16", "8x16") == {"hits": 2, "misses": 0}
