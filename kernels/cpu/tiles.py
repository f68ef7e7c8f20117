"""The GEMM micro-kernel shape as a value the kernels are compiled for.

A micro-kernel's shape (MR rows of op(a) by NR columns of op(b)) has to be known when a
kernel is compiled: it unrolls into MR x NR register accumulators. The drivers in
gemm.py take a `Tile` as their first argument; its Numba type, TileType(MR, NR), carries
the shape, so each shape is a separate compiled (and separately cached: the type is part
of the cache key) specialisation of the same driver source, and a process compiles only
the drivers of the shapes it calls. Inside a kernel:

    tile.mr, tile.nr                              compile-time constants
    tile.micro(ap, ac, bp, bc, kc, cp, cc)        the shape's micro-kernel (_gemm_wide.py)
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

from numbanet.kernels.cpu._gemm_wide import DIRECT, MICRO, PACK_ROWS, TILE_SHAPES


class Tile:
    """A micro-kernel shape, MR x NR, one of _gemm_wide.TILE_SHAPES."""
    __slots__ = ("mr", "nr", "numba_type")

    def __init__(self, mr, nr):
        if (mr, nr) not in MICRO:
            raise ValueError(f"gemm tile: no generated micro-kernel is {mr}x{nr}; the candidates are "
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
    B and all MR broadcasts of A held at once. The broadcasts count because LLVM keeps
    every one of them live across the step's FMAs (it hoists the loads): measured in L1,
    one thread, 12x32 (24 + 2 + 12 = 38 of 32 zmm) and 14x32 on AVX-512 and 6x16 (12 + 2 +
    6 = 20 of 16 ymm), 4x24 and 8x16 on AVX2 spill and run at a third to a half of their
    neighbours that fit (10x32: 20 + 2 + 10 = 32; 4x16: 8 + 2 + 4 = 14)."""
    if tile.nr % lanes:
        return False
    return accumulators(tile, lanes) + tile.nr // lanes + tile.mr <= registers


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
    kernel = MICRO[(tile.mr, tile.nr)]

    def impl(tile, ap, ac, bp, bc, kc, cp, cc):
        kernel(ap, ac, bp, bc, kc, cp, cc)
    return impl


@overload_method(TileType, "direct")
def _tile_direct(tile, xf, bases, offs, kdim, wp, b, out, row0, col0):
    kernel = DIRECT[(tile.mr, tile.nr)]

    def impl(tile, xf, bases, offs, kdim, wp, b, out, row0, col0):
        kernel(xf, bases, offs, kdim, wp, b, out, row0, col0)
    return impl


@overload_method(TileType, "pack_rows")
def _tile_pack_rows(tile, a, r0, p0, kc, dst):
    pack = PACK_ROWS[tile.mr]

    def impl(tile, a, r0, p0, kc, dst):
        pack(a, r0, p0, kc, dst)
    return impl


# --------------------------------------------------------------------------- compile order
# A micro-kernel compiled while Numba is typing a driver that calls it takes several times
# as long as the same signature compiled on its own (Numba's SSA pass runs the same
# statements several times slower there). So a driver's new signature compiles its tiles'
# micro-kernels first, from outside its own compile. Measure: the CPU time of
# ops.get("matmul").warmup(kernels.get_backend("cpu"), numpy.float32) in a fresh process
# with an empty NUMBA_CACHE_DIR, with and without install_priming (on the AMD EPYC with the
# 4x64 tile: 38.6 s without, 16.2 s with).

_primed = set()


def prime(tile, dtype):
    """Compile (or load from the cache) tile's micro-kernel for float dtype (a numba type),
    at the argument types every driver passes: 2-D C-contiguous panels, int64 offsets."""
    key = (tile.mr, tile.nr, dtype)
    if key in _primed:
        return
    panel = types.Array(dtype, 2, "C")
    MICRO[tile.mr, tile.nr].compile((panel, types.int64, panel, types.int64, types.int64, panel, types.int64))
    _primed.add(key)


def _prime_for(sig):
    tiles = [t for t in sig if isinstance(t, TileType)]
    dtype = next((t.dtype for t in sig if isinstance(t, types.Array) and t.dtype in (types.float32, types.float64)),
                 None)
    if dtype is not None:
        for t in tiles:
            prime(Tile(t.mr, t.nr), dtype)


def install_priming(modules):
    """Have every kernel in `modules` that takes a Tile prime its tiles (above) before it
    compiles a new signature. Idempotent; nothing without Numba's internals."""
    from numbanet.kernels import numba_internals

    def priming(compile_):
        def compile(sig):
            if isinstance(sig, tuple):
                _prime_for(sig)
            return compile_(sig)
        return compile

    for module in modules:
        for obj in list(vars(module).values()):
            if numba_internals.is_cpu_dispatcher(obj) and not getattr(obj, "_numbanet_priming", False):
                if numba_internals.wrap_compile(obj, priming):
                    obj._numbanet_priming = True
