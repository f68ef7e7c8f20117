"""The GEMM's register tile and its convolution twin, written as LLVM vector code.

An MR x NR micro-kernel keeps an MR x NR block of op(a) @ op(b) in registers while it
runs along K:

    for p in range(kc):
        for r in range(MR):
            for c in range(NR):
                cp[r, cc + c] += ap[p, ac + r] * bp[p, bc + c]

Numba cannot hold an array in registers, and the same loop nest unrolled into MR x NR
local scalars (for LLVM's SLP vectorizer to pack back into vectors) cost 3 to 6 CPU-s of
compile per shape and dtype, three quarters of it Numba typing and lowering ~700
statements, and LLVM's vectorized form loaded all MR broadcasts of A before the step's
FMAs, so tiles past the register file spilled. Here each row of the tile is one LLVM
vector value from the start: the step loads the row of B once, and for each row of A
broadcasts one value and adds its product into that row's vector. LLVM splits the vectors
into the machine's registers (a 32-wide float32 row is two zmm with AVX-512, four ymm with
AVX2), and each broadcast lives only until its row's FMAs. The code is a few dozen LLVM
instructions whatever the shape: it compiles in a few milliseconds, inside the kernel that
uses it (`tile.micro`, kernels/cpu/tiles.py), as if written there.

Each product is added with `contract`, so it becomes an FMA where the CPU has one, in k
order, as the plain loop nest compiled with fastmath={"contract"} adds it: the same bits
as micro_reference below (tests/kernels/test_microkernel.py checks each candidate shape).

Operands and result are C-contiguous 2-D arrays read from a column offset (ac, bc, cc),
so the same code reads a packed panel (offset 0) or the caller's own array in place: a
row of `a` (trans_a) holds MR neighbouring rows of op(a), a row of `b` NR neighbouring
columns of op(b), and `cp` may be `out[r0:r0 + MR]` itself, so a full tile is accumulated
straight into the output. The accumulators start from cp (the caller writes zeros or the
bias there before the first KC slice; later slices add to the running sum).

direct is the same register tile with op(a) read in place of a packed panel, for
convolution (kernels/cpu/conv.py): MR output pixels by NR output channels, the
accumulators starting at the bias b, adding x[pixel + cell offset] * w[cell, channels]
for every window cell, stored once into out[row0:row0 + MR, col0:col0 + NR]. x is a
flat, zero-padded copy of one image (xf), so padding costs no branch in the loop; each
pixel's window starts at bases[r], each cell sits offs[k] further on:

    for k in range(kdim):
        for r in range(MR):
            for c in range(NR):
                out[row0 + r, col0 + c] += xf[bases[r] + offs[k]] * wp[k, c]   (out starting at b)

conv's dW pass runs the same tile with the roles swapped (MR window cells by NR output
channels, summed over the pixels).

Nothing here checks bounds: the drivers call a tile only where all of it lies inside the
arrays (edge tiles go through a scratch tile). The result's rows are read once before
the K loop and written once after it, so they must not overlap the operands (the
drivers write into their own output, which the backend checks overlaps no input).
Without Numba's internals (kernels/numba_internals.py) the tiles run as the reference
loops, with the same results.
"""
import numba
from numba import types

from numbanet.kernels import numba_internals


# ------------------------------------------------------------------------ the references

@numba.njit(cache=True, fastmath={"contract"})
def micro_reference(mr, nr, ap, ac, bp, bc, kc, cp, cc):
    """cp[:mr, cc:cc + nr] += ap[:kc, ac:ac + mr].T @ bp[:kc, bc:bc + nr], term by term in k order."""
    for p in range(kc):
        for r in range(mr):
            a = ap[p, ac + r]
            for c in range(nr):
                cp[r, cc + c] += a * bp[p, bc + c]


@numba.njit(cache=True, fastmath={"contract"})
def direct_reference(mr, nr, xf, bases, offs, kdim, wp, b, out, row0, col0):
    """out[row0 + r, col0 + c] = b[c] + sum_k xf[bases[r] + offs[k]] * wp[k, c], term by term in k order."""
    for r in range(mr):
        for c in range(nr):
            out[row0 + r, col0 + c] = b[c]
    for k in range(kdim):
        for r in range(mr):
            x = xf[bases[r] + offs[k]]
            for c in range(nr):
                out[row0 + r, col0 + c] += x * wp[k, c]


def vector_widths(nr):
    """A row of nr lanes as LLVM vectors of power-of-two widths, widest first: LLVM splits
    a power-of-two vector into whole registers of any width, where a 24-wide one is widened
    and shuffled (measured: 3x24 at a seventh of the speed of its split 16 + 8)."""
    widths = []
    while nr:
        w = 1 << (nr.bit_length() - 1)
        widths.append(w)
        nr -= w
    return widths


def _check(op, tile, dtype_of, arrays, outputs, indices):
    """TypingError naming the op and tile for anything the code cannot read as rows of
    one float dtype: `arrays` {name: (type, ndim, element kind)}, `outputs` the names
    written, `indices` {name: type} of the integer arguments."""
    where = f"{op} {tile.mr}x{tile.nr}"
    for name, (arr, ndim, kind) in arrays.items():
        if not (isinstance(arr, types.Array) and arr.ndim == ndim and arr.layout == "C"):
            raise numba.errors.TypingError(f"{where}: {name} must be a {ndim}-D C-contiguous array, got {arr}")
        if not isinstance(arr.dtype, kind):
            raise numba.errors.TypingError(f"{where}: {name} must hold {kind.__name__.lower()}s, got {arr.dtype}")
    floats = {name: arrays[name][0].dtype for name in dtype_of}
    if len(set(floats.values())) != 1:
        raise numba.errors.TypingError(f"{where}: {', '.join(floats)} must share a dtype, got "
                                       + ", ".join(str(d) for d in floats.values()))
    for name in outputs:
        if not arrays[name][0].mutable:
            raise numba.errors.TypingError(f"{where}: {name} is written, got a read-only array")
    for name, t in indices.items():
        if not isinstance(t, types.Integer):
            raise numba.errors.TypingError(f"{where}: {name} must be an integer, got {t}")


if numba_internals.available():
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic

    _CONTRACT = ("contract",)

    class _Emitter:
        """LLVM vector code for one tile: row loads and stores, and the rank-1 update."""

        def __init__(self, context, builder, dtype, nr):
            self.context, self.builder = context, builder
            self.elem = context.get_value_type(dtype)
            self.align = self.alignment(dtype)
            self.widths = vector_widths(nr)

        def alignment(self, dtype):
            """An element's own alignment (an index array's may be narrower than the floats')."""
            return self.context.get_abi_sizeof(self.context.get_data_type(dtype))

        def index(self, value, numba_type):
            return self.context.cast(self.builder, value, numba_type, types.intp)

        def element(self, arr_type, arr, row, col):
            """A pointer to arr[row, col] (arr[col] for 1-D): C-contiguous, so a row is shape[1] elements."""
            a = self.context.make_array(arr_type)(self.context, self.builder, arr)
            if arr_type.ndim == 2:
                ncols = cgutils.unpack_tuple(self.builder, a.shape, 2)[1]
                col = self.builder.add(self.builder.mul(row, ncols), col)
            return self.builder.gep(a.data, [col])

        def scalar(self, arr_type, arr, i):
            return self.builder.load(self.element(arr_type, arr, None, i), align=self.alignment(arr_type.dtype))

        def load_row(self, ptr):
            """The nr elements at ptr, as vectors of self.widths."""
            out, at = [], 0
            for w in self.widths:
                vec = ir.VectorType(self.elem, w)
                p = self.builder.bitcast(self.builder.gep(ptr, [cgutils.intp_t(at)]), vec.as_pointer())
                out.append(self.builder.load(p, align=self.align))
                at += w
            return out

        def store_row(self, row, ptr):
            at = 0
            for w, v in zip(self.widths, row):
                p = self.builder.bitcast(self.builder.gep(ptr, [cgutils.intp_t(at)]), v.type.as_pointer())
                self.builder.store(v, p, align=self.align)
                at += w

        def add_product(self, acc, a, brow):
            """acc + broadcast(a) * brow, each vector of the row."""
            out = []
            for v, b in zip(acc, brow):
                w = v.type.count
                splat = self.builder.insert_element(ir.Constant(v.type, ir.Undefined), a, ir.IntType(32)(0))
                splat = self.builder.shuffle_vector(splat, ir.Constant(v.type, ir.Undefined),
                                                    ir.Constant(ir.VectorType(ir.IntType(32), w), [0] * w))
                out.append(self.builder.fadd(v, self.builder.fmul(splat, b, flags=_CONTRACT), flags=_CONTRACT))
            return out

        def k_loop(self, count, init, step):
            """The accumulators after `count` steps of acc = step(k, acc) from init (a list
            of rows, each a list of vectors): one loop, the rows carried in registers."""
            b = self.builder
            flat = [v for row in init for v in row]
            pre = b.block
            loop = b.append_basic_block("tile.k")
            done = b.append_basic_block("tile.done")
            b.cbranch(b.icmp_signed(">", count, cgutils.intp_t(0)), loop, done)
            b.position_at_end(loop)
            k = b.phi(cgutils.intp_t)
            k.add_incoming(cgutils.intp_t(0), pre)
            carried = [b.phi(v.type) for v in flat]
            for phi, v in zip(carried, flat):
                phi.add_incoming(v, pre)
            new = step(k, _rows(carried, init))
            flat_new = [v for row in new for v in row]
            end = b.block
            k_next = b.add(k, cgutils.intp_t(1))
            k.add_incoming(k_next, end)
            for phi, v in zip(carried, flat_new):
                phi.add_incoming(v, end)
            b.cbranch(b.icmp_signed("<", k_next, count), loop, done)
            b.position_at_end(done)
            result = [b.phi(v.type) for v in flat]
            for phi, before, after in zip(result, flat, flat_new):
                phi.add_incoming(before, pre)
                phi.add_incoming(after, end)
            return _rows(result, init)

    def _rows(flat, shape_like):
        out, at = [], 0
        for row in shape_like:
            out.append(flat[at:at + len(row)])
            at += len(row)
        return out

    @intrinsic
    def _micro_ir(typingctx, tile, ap, ac, bp, bc, kc, cp, cc):
        _check("micro-kernel", tile, ("ap", "bp", "cp"),
               {"ap": (ap, 2, types.Float), "bp": (bp, 2, types.Float), "cp": (cp, 2, types.Float)}, ("cp",),
               {"ac": ac, "bc": bc, "kc": kc, "cc": cc})
        sig = types.void(tile, ap, ac, bp, bc, kc, cp, cc)

        def codegen(context, builder, signature, args):
            _, ap_t, ac_t, bp_t, bc_t, kc_t, cp_t, cc_t = signature.args
            _, ap_v, ac_v, bp_v, bc_v, kc_v, cp_v, cc_v = args
            e = _Emitter(context, builder, ap_t.dtype, tile.nr)
            ac_v, bc_v, kc_v, cc_v = (e.index(v, t) for v, t in ((ac_v, ac_t), (bc_v, bc_t), (kc_v, kc_t),
                                                                  (cc_v, cc_t)))
            rows = [e.element(cp_t, cp_v, cgutils.intp_t(r), cc_v) for r in range(tile.mr)]

            def step(p, acc):
                arow = e.element(ap_t, ap_v, p, ac_v)
                brow = e.load_row(e.element(bp_t, bp_v, p, bc_v))
                return [e.add_product(acc[r], builder.load(builder.gep(arow, [cgutils.intp_t(r)]), align=e.align),
                                      brow) for r in range(tile.mr)]

            acc = e.k_loop(kc_v, [e.load_row(ptr) for ptr in rows], step)
            for row, ptr in zip(acc, rows):
                e.store_row(row, ptr)
            return context.get_dummy_value()
        return sig, codegen

    @intrinsic
    def _direct_ir(typingctx, tile, xf, bases, offs, kdim, wp, b, out, row0, col0):
        _check("direct tile", tile, ("xf", "wp", "b", "out"),
               {"xf": (xf, 1, types.Float), "bases": (bases, 1, types.Integer), "offs": (offs, 1, types.Integer),
                "wp": (wp, 2, types.Float), "b": (b, 1, types.Float), "out": (out, 2, types.Float)}, ("out",),
               {"kdim": kdim, "row0": row0, "col0": col0})
        sig = types.void(tile, xf, bases, offs, kdim, wp, b, out, row0, col0)

        def codegen(context, builder, signature, args):
            _, xf_t, bases_t, offs_t, kdim_t, wp_t, b_t, out_t, row0_t, col0_t = signature.args
            _, xf_v, bases_v, offs_v, kdim_v, wp_v, b_v, out_v, row0_v, col0_v = args
            e = _Emitter(context, builder, xf_t.dtype, tile.nr)
            kdim_v, row0_v, col0_v = (e.index(v, t) for v, t in ((kdim_v, kdim_t), (row0_v, row0_t),
                                                                  (col0_v, col0_t)))
            starts = [e.index(e.scalar(bases_t, bases_v, cgutils.intp_t(r)), bases_t.dtype) for r in range(tile.mr)]
            bias = e.load_row(e.element(b_t, b_v, None, cgutils.intp_t(0)))

            def step(k, acc):
                o = e.index(e.scalar(offs_t, offs_v, k), offs_t.dtype)
                wrow = e.load_row(e.element(wp_t, wp_v, k, cgutils.intp_t(0)))
                return [e.add_product(acc[r], e.scalar(xf_t, xf_v, builder.add(starts[r], o)), wrow)
                        for r in range(tile.mr)]

            acc = e.k_loop(kdim_v, [list(bias) for _ in range(tile.mr)], step)
            for r, row in enumerate(acc):
                e.store_row(row, e.element(out_t, out_v, builder.add(row0_v, cgutils.intp_t(r)), col0_v))
            return context.get_dummy_value()
        return sig, codegen

    micro_tile, direct_tile = _micro_ir, _direct_ir

else:
    @numba.njit(cache=True)
    def micro_tile(tile, ap, ac, bp, bc, kc, cp, cc):
        micro_reference(tile.mr, tile.nr, ap, ac, bp, bc, kc, cp, cc)

    @numba.njit(cache=True)
    def direct_tile(tile, xf, bases, offs, kdim, wp, b, out, row0, col0):
        direct_reference(tile.mr, tile.nr, xf, bases, offs, kdim, wp, b, out, row0, col0)
