"""kernels/cpu/microkernel.py: every candidate tile against float64 NumPy, and against the
plain loop nest it replaces, bit for bit; the type errors; the row split into vectors.

The vector code exists only with Numba's internals: without them micro_tile and
direct_tile are the reference loops (checked in a process told its Numba is untested),
and the bit-for-bit checks compare the references to themselves
(tests/kernels/test_numba_internals.py fails on a Numba where the internals are off)."""
import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from helpers import randn
from numbanet.kernels.cpu import microkernel
from numbanet.kernels.cpu._pack_rows import TILE_SHAPES
from numbanet.kernels.cpu.tiles import Tile

TILE_NAMES = [f"{mr}x{nr}" for mr, nr in TILE_SHAPES]


# The tiles as the kernels call them (tiles.py's tile.micro / tile.direct).
@numba.njit(cache=True)
def _micro(tile, ap, ac, bp, bc, kc, cp, cc):
    tile.micro(ap, ac, bp, bc, kc, cp, cc)


@numba.njit(cache=True)
def _direct(tile, xf, bases, offs, kdim, wp, b, out, row0, col0):
    tile.direct(xf, bases, offs, kdim, wp, b, out, row0, col0)


def _in_force():
    from numbanet.kernels.cpu import tuning
    return tuning.current().tile.name


def _dtypes(tile):
    # float64 too for one AVX-512 shape and the one in force: the others differ only in MR
    # and NR, which the float32 runs cover.
    return (np.float32, np.float64) if tile in ("8x32", _in_force()) else (np.float32,)


@pytest.mark.parametrize("tile", TILE_NAMES)
@pytest.mark.parametrize("kc,ac,bc,cc", [(0, 1, 2, 3), (1, 0, 0, 0), (2, 3, 5, 7), (255, 0, 0, 0), (256, 9, 33, 1)])
def test_micro_kernel(tile, kc, ac, bc, cc):
    """Operands read at column offsets, the product added onto cp's MR x NR block, nothing
    else touched (kc = 0 leaves cp as it was); the same bits as the reference loops."""
    t = Tile.parse(tile)
    for dtype in _dtypes(tile):
        ap = randn((kc + 3, ac + t.mr + 2), dtype, seed=kc)
        bp = randn((kc + 3, bc + t.nr + 2), dtype, seed=kc + 1)
        cp = randn((t.mr + 1, cc + t.nr + 3), dtype, seed=kc + 2)
        before = cp.copy()
        _micro(t, ap, ac, bp, bc, kc, cp, cc)
        want = before.astype(np.float64)
        product = ap[:kc, ac:ac + t.mr].T.astype(np.float64) @ bp[:kc, bc:bc + t.nr].astype(np.float64)
        want[:t.mr, cc:cc + t.nr] += product
        rtol, atol = (1e-4, 1e-5 * np.sqrt(kc)) if dtype == np.float32 else (1e-10, 1e-10 * np.sqrt(kc))
        np.testing.assert_allclose(cp, want, rtol=rtol, atol=atol)
        outside = np.ones(cp.shape, bool)
        outside[:t.mr, cc:cc + t.nr] = False
        np.testing.assert_array_equal(cp[outside], before[outside])
        ref = before.copy()
        microkernel.micro_reference(t.mr, t.nr, ap, ac, bp, bc, kc, ref, cc)
        np.testing.assert_array_equal(cp, ref)


@pytest.mark.parametrize("tile", TILE_NAMES)
def test_direct_tile(tile):
    """out[row0:row0 + MR, col0:col0 + NR] = b + the window sums read at bases[r] + offs[k],
    nothing else written; the same bits as the reference loops."""
    t = Tile.parse(tile)
    kdim, row0, col0 = 37, 2, 3
    rng = np.random.default_rng(t.mr * 100 + t.nr)
    for dtype in _dtypes(tile):
        xf = rng.standard_normal(500).astype(dtype)
        bases = rng.integers(0, 200, t.mr).astype(np.intp)
        offs = rng.permutation(250)[:kdim].astype(np.intp)    # cells in any order, as dilations give
        wp = rng.standard_normal((kdim, t.nr)).astype(dtype)
        b = rng.standard_normal(t.nr).astype(dtype)
        out = rng.standard_normal((row0 + t.mr + 2, col0 + t.nr + 1)).astype(dtype)
        before = out.copy()
        _direct(t, xf, bases, offs, kdim, wp, b, out, row0, col0)
        gathered = xf.astype(np.float64)[bases[:, None] + offs[None, :]]     # (MR, kdim)
        want = b.astype(np.float64) + gathered @ wp.astype(np.float64)
        tol = 1e-4 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(out[row0:row0 + t.mr, col0:col0 + t.nr], want, rtol=tol, atol=tol)
        outside = np.ones(out.shape, bool)
        outside[row0:row0 + t.mr, col0:col0 + t.nr] = False
        np.testing.assert_array_equal(out[outside], before[outside])
        ref = before.copy()
        microkernel.direct_reference(t.mr, t.nr, xf, bases, offs, kdim, wp, b, ref, row0, col0)
        np.testing.assert_array_equal(out, ref)


def test_direct_tile_with_no_cells_is_the_bias():
    t = Tile(4, 16)
    b = np.arange(16, dtype=np.float32)
    out = np.full((4, 16), np.nan, np.float32)
    _direct(t, np.zeros(1, np.float32), np.zeros(4, np.intp), np.zeros(0, np.intp), 0,
                       np.zeros((0, 16), np.float32), b, out, 0, 0)
    np.testing.assert_array_equal(out, np.broadcast_to(b, (4, 16)))


@pytest.mark.parametrize("nr,widths", [(64, [64]), (32, [32]), (24, [16, 8]), (8, [8]), (48, [32, 16]), (7, [4, 2, 1])])
def test_a_row_is_split_into_power_of_two_vectors(nr, widths):
    assert microkernel.vector_widths(nr) == widths


def _refused(call, message):
    with pytest.raises(numba.errors.TypingError, match=message):
        call()


def test_what_the_micro_kernel_cannot_read_as_rows_is_refused_at_compile_time():
    t = Tile(4, 16)
    ap, bp, cp = np.zeros((3, 8), np.float32), np.zeros((3, 16), np.float32), np.zeros((4, 16), np.float32)
    _refused(lambda: _micro(t, ap, 0, np.zeros((16, 3), np.float32).T, 0, 3, cp, 0),
             r"micro-kernel 4x16: bp must be a 2-D C-contiguous array, got array\(float32, 2d, F\)")
    _refused(lambda: _micro(t, ap, 0, np.zeros((3, 16)), 0, 3, cp, 0),
             r"micro-kernel 4x16: ap, bp, cp must share a dtype, got float32, float64, float32")
    _refused(lambda: _micro(t, ap.astype(np.int64), 0, bp, 0, 3, cp, 0),
             r"micro-kernel 4x16: ap must hold floats, got int64")
    frozen = cp.copy()
    frozen.flags.writeable = False
    _refused(lambda: _micro(t, ap, 0, bp, 0, 3, frozen, 0), r"micro-kernel 4x16: cp is written, got a read-only array")
    _refused(lambda: _micro(t, ap, 0.5, bp, 0, 3, cp, 0), r"micro-kernel 4x16: ac must be an integer, got float64")


def test_what_the_direct_tile_cannot_read_is_refused_at_compile_time():
    t = Tile(4, 16)
    xf, idx = np.zeros(40, np.float32), np.zeros(4, np.intp)
    wp, b, out = np.zeros((4, 16), np.float32), np.zeros(16, np.float32), np.zeros((4, 16), np.float32)
    _refused(lambda: _direct(t, xf, idx.astype(np.float32), idx, 4, wp, b, out, 0, 0),
             r"direct tile 4x16: bases must hold integers, got float32")
    _refused(lambda: _direct(t, xf, idx, idx, 4, wp, b.astype(np.float64), out, 0, 0),
             r"direct tile 4x16: xf, wp, b, out must share a dtype, got float32, float32, float64, float32")
    _refused(lambda: _direct(t, xf, idx, idx, 4, wp, b, np.zeros((16, 4), np.float32).T, 0, 0),
             r"direct tile 4x16: out must be a 2-D C-contiguous array, got array\(float32, 2d, F\)")
    _refused(lambda: _direct(t, xf, idx, idx, 4.0, wp, b, out, 0, 0),
             r"direct tile 4x16: kdim must be an integer, got float64")


def test_narrow_index_arrays_read_as_their_own_type():
    """bases and offs of any integer type (here int16 and uint8 beside float64 values)."""
    t = Tile(4, 16)
    rng = np.random.default_rng(3)
    xf = rng.standard_normal(300)
    bases, offs = np.array([0, 7, 30, 101], np.int16), np.array([1, 5, 9, 200], np.uint8)
    wp, b = rng.standard_normal((4, 16)), rng.standard_normal(16)
    out = np.empty((4, 16))
    _direct(t, xf, bases, offs, 4, wp, b, out, 0, 0)
    ref = np.empty((4, 16))
    microkernel.direct_reference(4, 16, xf, bases.astype(np.intp), offs.astype(np.intp), 4, wp, b, ref, 0, 0)
    np.testing.assert_array_equal(out, ref)


_TILES_RUN = """
import json, sys, warnings
from numbanet.kernels import numba_internals
if sys.argv[1] == "plain":
    numba_internals.TESTED_NUMBA = ((0, 0), (0, 1))   # what the installed Numba is not
    warnings.simplefilter("ignore")
import numpy as np
import numba
from numbanet.kernels.cpu.tiles import Tile
from numbanet.kernels.cpu import microkernel
@numba.njit
def micro(tile, ap, ac, bp, bc, kc, cp, cc):
    tile.micro(ap, ac, bp, bc, kc, cp, cc)
@numba.njit
def direct(tile, xf, bases, offs, kdim, wp, b, out, row0, col0):
    tile.direct(xf, bases, offs, kdim, wp, b, out, row0, col0)
t = Tile(4, 16)
rng = np.random.default_rng(5)
ap, bp = rng.standard_normal((7, 4)).astype(np.float32), rng.standard_normal((7, 16)).astype(np.float32)
cp = np.ones((4, 16), np.float32)
micro(t, ap, 0, bp, 0, 7, cp, 0)
xf = rng.standard_normal(40).astype(np.float32)
out = np.zeros((4, 16), np.float32)
direct(t, xf, np.arange(4) * 3, np.arange(5) * 2, 5, bp[:5].copy(), bp[6].copy(), out, 0, 0)
print(json.dumps({"vector_code": hasattr(microkernel, "_micro_ir"), "micro": cp.tolist(), "direct": out.tolist()}))
"""


def test_without_the_internals_the_tiles_are_the_reference_loops(tmp_path):
    """The same operands in a process told its Numba is untested (the reference loops) and
    in one that is not (the vector code): the same bits."""
    def run(kind):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / kind), NUMBANET_BACKGROUND_COMPILE="0")
        proc = subprocess.run([sys.executable, "-c", _TILES_RUN, kind], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.splitlines()[-1])

    plain, vector = run("plain"), run("vector")
    assert plain["vector_code"] is False and vector["vector_code"] is True
    assert plain["micro"] == vector["micro"] and plain["direct"] == vector["direct"]
