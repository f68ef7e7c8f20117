"""The GEMM micro-kernel shape as a value the kernels are compiled for.

A micro-kernel's shape (MR rows of op(a) by NR columns of op(b)) has to be known when a
kernel is compiled: it unrolls into MR x NR register accumulators. The drivers in
gemm.py take a `Tile` as their first argument; its Numba type, TileType(MR, NR), carries
the shape, so each shape is a separate compiled (and separately cached: the type is part
of the cache key) specialisation of the same driver source, and a process compiles only
the drivers of the shapes it calls. Inside a kernel:

    tile.mr, tile.nr                              compile-time constants
    tile.micro(ap, ac, bp, bc, kc, cp, cc)        the shape's micro-kernel (microkernel.py)
    tile.pack_rows(a, r0, p0, kc, dst)            MR rows of a into an MR-wide panel
    tile.direct(xf, bases, offs, kdim, wp, b, out, row0, col0)
                                                  the same tile reading a convolution's
                                                  image in place (conv.py's register tiles)

Which shapes suit a CPU is `fits` (its register file) and kernels/cpu/tuning.py (the
choice in force: measured by `numbanet tune`, else derived from the CPU's features).
"""
from numba import types
from numba.extending import (NativeValue, models, overload_attribute, overload_method, register_model,
                             typeof_impl, unbox)

from numbanet.kernels.cpu._pack_rows import PACK_ROWS, TILE_SHAPES
from numbanet.kernels.cpu.microkernel import direct_tile, micro_tile


class Tile:
    """A micro-kernel shape, MR x NR, one of _pack_rows.TILE_SHAPES."""
    __slots__ = ("mr", "nr", "numba_type")

    def __init__(self, mr, nr):
        if (mr, nr) not in TILE_SHAPES:
            raise ValueError(f"gemm tile: no candidate micro-kernel is {mr}x{nr}; the candidates are "
                             + ", ".join(f"{m}x{n}" for m, n in TILE_SHAPES))
        self.mr, self.nr = mr, nr
        # Made once: the dispatcher types every argument on every call.
        self.numba_type = TileType(mr, nr)

    @classmethod
    def parse(cls, name):
        """'8x32' -> Tile(8, 32); ValueError naming the candidates for anything else."""
        try:
            mr, nr = (int(v) for v in str(name).lower().split("x"))
        except ValueError:
            raise ValueError(f"gemm tile: expected MRxNR such as '8x32', got {name!r}") from None
        return cls(mr, nr)

    @property
    def name(self):
        return f"{self.mr}x{self.nr}"

    def __repr__(self):
        return f"Tile({self.mr}, {self.nr})"

    def __eq__(self, other):
        return isinstance(other, Tile) and (self.mr, self.nr) == (other.mr, other.nr)

    def __hash__(self):
        return hash((self.mr, self.nr))


def all_tiles():
    return [Tile(mr, nr) for mr, nr in TILE_SHAPES]


def accumulators(tile, lanes):
    """Vector registers the accumulators take: MR rows of NR / lanes vectors."""
    return tile.mr * (tile.nr // lanes)


def fits(tile, lanes, registers):
    """Whether `tile` runs without spilling on a vector unit of `lanes` float32 lanes and
    `registers` vector registers: whole vectors per row, and the accumulators, one row of
    B and one broadcast of A held at once (kernels/cpu/microkernel.py adds each row's
    products as soon as its broadcast is made). Measured in L1, one thread, on the AMD EPYC
    (Zen 4): on AVX-512, 14x32 (28 + 2 + 1 = 31 of 32 zmm) and 6x64 (24 + 4 + 1 = 29) run
    as fast as 8x32, 16x32 (35) and 8x64 (37) at half its speed; compiled for AVX2, 6x16
    (12 + 2 + 1 = 15 of 16 ymm) and 4x24 (16) as fast as 4x16, 7x16 (17), 3x32 (17) and
    8x16 (19) at a third to a half."""
    if tile.nr % lanes:
        return False
    return accumulators(tile, lanes) + tile.nr // lanes + 1 <= registers


class TileType(types.Type):
    def __init__(self, mr, nr):
        self.mr, self.nr = mr, nr
        super().__init__(name=f"Tile({mr}x{nr})")


@typeof_impl.register(Tile)
def _typeof_tile(val, c):
    return val.numba_type


# The value carries nothing at run time: everything is in its type.
register_model(TileType)(models.OpaqueModel)


@unbox(TileType)
def _unbox_tile(typ, obj, c):
    return NativeValue(c.context.get_constant_null(typ))


@overload_attribute(TileType, "mr")
def _tile_mr(tile):
    mr = tile.mr
    return lambda tile: mr


@overload_attribute(TileType, "nr")
def _tile_nr(tile):
    nr = tile.nr
    return lambda tile: nr


@overload_method(TileType, "micro")
def _tile_micro(tile, ap, ac, bp, bc, kc, cp, cc):
    def impl(tile, ap, ac, bp, bc, kc, cp, cc):
        micro_tile(tile, ap, ac, bp, bc, kc, cp, cc)
    return impl


@overload_method(TileType, "direct")
def _tile_direct(tile, xf, bases, offs, kdim, wp, b, out, row0, col0):
    def impl(tile, xf, bases, offs, kdim, wp, b, out, row0, col0):
        direct_tile(tile, xf, bases, offs, kdim, wp, b, out, row0, col0)
    return impl


@overload_method(TileType, "pack_rows")
def _tile_pack_rows(tile, a, r0, p0, kc, dst):
    pack = PACK_ROWS[tile.mr]

    def impl(tile, a, r0, p0, kc, dst):
        pack(a, r0, p0, kc, dst)
    return impl
