"""Launch-configuration helpers shared by the gpu compute modules, and the names by which
every kernel can be found again outside the process that launched it."""
import functools

from numba import cuda, float32, float64


def _inline_options():
    """cuda.jit's options for a device function inlined into each kernel that calls it.
    forceinline (NVVM inlines it: the alwaysinline attribute) types and lowers the function
    once per argument types in a process; inline="always" (Numba inlines it) types and
    lowers its body again at every call site. Compiling every launch kernels/gpu/signatures
    .json records for sm_80 and sm_90 in one process: 107 CPU-s with Numba's inlining, 68
    with forceinline (AMD EPYC); a kernel's first launch on a GPU pays the same compile. The
    PTX keeps its spills (none) and occupancy; registers move by a few either way (ptxas
    -v, kernels/gpu_static.py). NVVM before CUDA 12.3 could hang on alwaysinline
    (numba-cuda's pull request 246): the cu12 extra asks for a later one. The simulator's
    jit has no forceinline and gets inline="always" (it inlines nothing: the option only
    has to be accepted), as does a numba-cuda from before forceinline."""
    import inspect
    if "forceinline" in inspect.signature(cuda.jit).parameters:
        return {"forceinline": True}
    return {"inline": "always"}


def inlined(fn):
    """@cuda.jit(device=True) inlined into each kernel that calls it (_inline_options: how)."""
    return cuda.jit(device=True, **_INLINE)(fn)


_INLINE = _inline_options()

# A kernel family's dtype argument (a name: see kernel_family) -> the numba type it computes in.
ACC = {"float32": float32, "float64": float64}

# 256 threads = 8 warps per block: enough warps per SM to hide global-memory latency
# while leaving room for several resident blocks (registers are the limiter on H100/H200).
THREADS_1D = 256

# Grid-stride loops cover any size; capping the grid keeps launch overhead constant for
# huge arrays (132 SMs x 16 blocks of 256 threads saturate an H200). Measure: the
# optimizer step in numbanet bench --backends gpu --ops optim, at a few caps.
MAX_BLOCKS_1D = 132 * 16


def blocks_1d(n, threads=THREADS_1D):
    return max(1, min(MAX_BLOCKS_1D, -(-int(n) // threads)))


@cuda.jit(device=True)
def unravel4(t, n1, n2, n3):
    """(i0, i1, i2, i3) of flat index t in a C-ordered 4-D array (., n1, n2, n3): an NHWC
    element, the channel fastest, so consecutive threads touch consecutive channels."""
    i3 = t % n3
    r = t // n3
    i2 = r % n2
    r //= n2
    return r // n1, r % n1, i2, i3


@inlined
def unravel2(t, n1):
    """(i0, i1) of flat index t >= 0 in a C-ordered 2-D array (., n1): a (row, column)
    element, the column fastest. t - i0 * n1 rather than %: no sign fix-up."""
    i0 = t // n1
    return i0, t - i0 * n1


@inlined
def thread_cell(a):
    """(i0, i1, inside) of this thread's element a[i0, i1] in a launch with a thread per
    element of the 2-D array a and no grid-stride loop (rows_1d): inside is False for the
    threads past the end, whose i0, i1 must not be used."""
    rows, cols = a.shape
    i = cuda.grid(1)
    i0, i1 = unravel2(i, cols)
    return i0, i1, i < rows * cols


@inlined
def unravel3(t, n1, n2):
    """(i0, i1, i2) of flat index t >= 0 in a C-ordered 3-D array (., n1, n2), as unravel2."""
    i0 = t // (n1 * n2)
    i1, i2 = unravel2(t - i0 * (n1 * n2), n2)
    return i0, i1, i2


_dummies = {}


def dummy(dtype):
    """A one-element device array standing in for an optional argument (None)."""
    import numpy as np
    key = np.dtype(dtype).str
    if key not in _dummies:
        _dummies[key] = cuda.device_array(1, dtype=dtype)
    return _dummies[key]


def _load4_reference(array, i):
    return array[i], array[i + 1], array[i + 2], array[i + 3]


def _make_load4():
    """load4(array, i) -> (array[i], ..., array[i + 3]) as one 128-bit vector load.

    Numba has no float4: an element load is one scalar instruction, and LLVM merges four
    of them into one ld.v4 only when it can prove the address 16-byte aligned, which it
    often cannot through numba's index arithmetic. This intrinsic emits the vector load
    itself (an LLVM <4 x T> load, align 16; two 16-byte loads for float64). The caller
    guarantees what the align claims: a 1-D C-contiguous array with a 16-byte aligned
    base (cuda.shared.array(..., alignment=16)), i >= 0 a multiple of 4 and i + 3 in
    range; no bounds or negative-index handling is emitted. Under the simulator it is the
    plain Python reference above."""
    from llvmlite import ir
    from numba import config, types

    from numbanet.kernels import numba_internals
    if config.ENABLE_CUDASIM:
        return _load4_reference
    tools = numba_internals.cuda_intrinsic_tools()
    if tools is None:
        # Without intrinsics: four scalar loads, which the compiler may or may not merge.
        return inlined(_load4_reference)
    intrinsic, cgutils = tools

    @intrinsic
    def load4(typingctx, array, i):
        if not (isinstance(array, types.Array) and array.ndim == 1 and isinstance(i, types.Integer)):
            return None
        sig = types.UniTuple(array.dtype, 4)(array, i)

        def codegen(context, builder, signature, args):
            aryty, idxty = signature.args
            ary = context.make_array(aryty)(context, builder, value=args[0])
            index = context.cast(builder, args[1], idxty, types.intp)
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [index], wraparound=False)
            vecty = ir.VectorType(context.get_data_type(aryty.dtype), 4)
            vec = builder.load(builder.bitcast(ptr, vecty.as_pointer(ptr.type.addrspace)), align=16)
            items = [builder.extract_element(vec, ir.Constant(ir.IntType(32), k)) for k in range(4)]
            return context.make_tuple(builder, signature.return_type, items)
        return sig, codegen
    return load4


load4 = _make_load4()


_scratch = {}


def scratch(name, shape, dtype):
    """A temporary device array for one op (split-K partials, reduction partials), taken
    from a buffer kept per (name, dtype) and grown when too small, so a training step does
    not allocate device memory for its temporaries. Every kernel runs on the default
    stream, in launch order, so the next op to take the same buffer starts only after the
    last kernel reading it has finished; two temporaries alive in one op need two names."""
    import numpy as np
    size = 1
    for s in shape:
        size *= int(s)
    key = (name, np.dtype(dtype).str)
    buf = _scratch.get(key)
    if buf is None or buf.size < size:
        buf = cuda.device_array(max(size, 1), dtype=dtype)
        _scratch[key] = buf
    return buf[:size].reshape(tuple(int(s) for s in shape))


def grid_1d(n):
    """(blocks, threads) for a grid-stride kernel over n items: whole warps, no more
    threads than items for small arrays (a 10-element bias needs one warp, not 8)."""
    n = max(1, int(n))
    threads = min(THREADS_1D, 32 * -(-n // 32))
    return blocks_1d(n, threads), threads


def rows_1d(n):
    """(blocks, threads) for a kernel with one thread per item and no grid-stride loop."""
    n = max(1, int(n))
    threads = min(THREADS_1D, 32 * -(-n // 32))
    return -(-n // threads), threads


def fixed_block(threads):
    """Mark a kernel as launched with a block of `threads` threads whatever the data's size
    (a block per row, a tile of its own), unlike grid_1d's, which shrinks for small arrays:
    the launch recorder notes it, and the static check (kernels/gpu_static.py) then shows
    the kernel's occupancy at that block rather than THREADS_1D."""
    def mark(kernel):
        kernel.numbanet_block = int(threads)
        return kernel
    return mark


def kernel_family(build):
    """Memoize a kernel factory by its arguments and name each kernel it builds.

    Kernels made inside a function (one per tile configuration, dtype or label layout)
    are not module attributes, so nothing outside this process could find them again.
    The static compile (kernels/gpu_static.py) rebuilds every kernel the simulator tests
    launched: it finds a module-level kernel by its name and a family member by calling
    the family with the same arguments. The arguments must therefore be plain values
    (str, int, bool, tuples of those), never functions or dtypes objects.
    """
    cache = {}

    @functools.wraps(build)
    def family(*args):
        kernel = cache.get(args)
        if kernel is None:
            kernel = build(*args)
            kernel.numbanet_family = (f"{build.__module__}:{build.__qualname__}", args)
            cache[args] = kernel
        return kernel
    family.cache = cache
    return family


def kernel_id(kernel):
    """-> (name, args): "module:attribute" and () for a module-level kernel, "module:family"
    and the family's arguments for a family member; None when the kernel cannot be found
    again by name (a kernel built in a function outside kernel_family)."""
    import importlib
    fam = getattr(kernel, "numbanet_family", None)
    if fam is not None:
        return fam
    fn = getattr(kernel, "py_func", None) or getattr(kernel, "fn", None)
    if fn is None or "<locals>" in fn.__qualname__:
        return None
    module = importlib.import_module(fn.__module__)
    if getattr(module, fn.__qualname__, None) is not kernel:
        return None
    return f"{fn.__module__}:{fn.__qualname__}", ()
