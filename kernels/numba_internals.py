"""Everything numbanet takes from Numba and numba-cuda beyond their public API, in one place.

What is private here, and what it serves:
  - a CPU dispatcher's `compile` method replaced by a wrapper (wrap_compile): the SLP
    vectorizer switched on for one kernel's compile and arguments compiled as their plain
    types (kernels/cpu/slp.py); the cache lock held across a compile (precompile.py);
  - Numba's on-disk cache internals: the dispatcher's `_cache`, its `_cache_file`'s class
    swapped for one that locks and orders its writes (`_index_path`, `_load_index`,
    `_save_index`, `_save_data`, `_data_name`, `_source_stamp` widened to the files a
    kernel compiles in), `load_overload` wrapped to see misses,
    `global_compiler_lock`, `CPUDispatcher` (lock_cache, compiler_lock, is_cpu_dispatcher);
  - numba.config.SLP_VECTORIZE set for the length of a compile (slp_vectorize);
  - a compiled function's entry point and its calling convention, called through an
    address from an intrinsic's code generation (kernels/cpu/apart.py, which makes plain
    linked calls without the internals);
  - the target context and cgutils that write the GEMM's register tiles as LLVM vector
    code (kernels/cpu/microkernel.py, whose tiles are its reference loops without them);
  - numba-cuda's one-pass PTX compile for several architectures and its device query,
    patched for a compile without a driver (kernels/gpu_static.py), the cgutils that an
    intrinsic's code generation needs (kernels/gpu/launch.py: load4), and its driver and
    NVVM / libdevice loaders, asked whether a GPU can be used (kernels/__init__.py).

These names change between releases without notice, so they are used only on the Numba
versions this was written and tested against (TESTED_NUMBA, the same caps as
pyproject.toml). On another version, or where one of them is missing, `available()` is
False, numbanet says so once (a NumbaInternalsWarning) and runs without them: no
background compile and no cache lock (kernels/cpu/precompile.py), kernels compiled
without the SLP vectorizer and once per literal argument (slower to compile and to run
in attention's lane helpers, the same results), the register tiles as plain loops (far
slower GEMMs, convolutions, attention and recurrences, the same results), the parallel drivers' workers linked into
each driver again (kernels/cpu/apart.py: longer compiles), the static gpu check on
numba-cuda's public compile_ptx. tests/kernels/test_numba_internals.py fails on an untested version.
"""
import contextlib
import threading
import warnings

# The oldest and the newest Numba minor versions numbanet's use of the names above was
# tested on; raise the newest (and pyproject.toml's caps) after the suite passes on it.
TESTED_NUMBA = ((0, 60), (0, 68))

_state = {}
_warned = []


class NumbaInternalsWarning(UserWarning):
    """numbanet runs without Numba's internals (an untested Numba version, or names gone)."""


def numba_version():
    """(major, minor) of the installed Numba."""
    import numba
    return _parse(numba.__version__)


def _parse(version):
    parts = []
    for piece in str(version).split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit()) if piece else ""
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (2 - len(parts)))


def problem():
    """None when the internals can be used, else why not (a sentence)."""
    if "problem" not in _state:
        _state["problem"] = _find_problem()
    return _state["problem"]


def _find_problem():
    import numba
    low, high = TESTED_NUMBA
    version = numba_version()
    if not low <= version <= high:
        return (f"Numba {numba.__version__} is outside the versions numbanet was tested with "
                f"({low[0]}.{low[1]} to {high[0]}.{high[1]})")
    try:
        from numba.core import compiler_lock
        from numba.core.callconv import CPUCallConv
        from numba.core.caching import IndexDataCacheFile
        from numba.core import cgutils
        from numba.core.base import BaseContext
        from numba.core.codegen import JITCodeLibrary
        from numba.core.pythonapi import PythonAPI
        from numba.core.registry import CPUDispatcher
    except ImportError as exc:
        return f"Numba {numba.__version__} lacks what numbanet uses of its internals ({exc})"
    if not hasattr(compiler_lock, "global_compiler_lock"):
        return f"Numba {numba.__version__} has no global_compiler_lock"
    for cls, names in ((IndexDataCacheFile, ("_load_index", "_save_index", "_save_data", "_data_name")),
                       (CPUDispatcher, ("compile",)),
                       # kernels/cpu/apart.py's code generation
                       (PythonAPI, ("serialize_object", "unserialize", "call_function_objargs", "long_as_voidptr",
                                    "gil_ensure", "gil_release", "decref")),
                       (CPUCallConv, ("get_function_type", "call_function", "return_status_propagate", "return_exc")),
                       (JITCodeLibrary, ("get_pointer_to_function",)),
                       # kernels/cpu/microkernel.py's code generation
                       (BaseContext, ("make_array", "get_value_type", "get_abi_sizeof", "cast", "get_dummy_value")),
                       (cgutils, ("unpack_tuple", "intp_t"))):
        missing = [n for n in names if not hasattr(cls, n)]
        if missing:
            return f"Numba {numba.__version__}'s {cls.__name__} has no {', '.join(missing)}"
    if not hasattr(numba.config, "SLP_VECTORIZE"):
        return f"Numba {numba.__version__} has no config.SLP_VECTORIZE"
    return None


def available():
    """True when the internals can be used; the first False warns, once per process."""
    why = problem()
    if why is not None and not _warned:
        _warned.append(why)
        warnings.warn(f"numbanet: {why}; running without the background compile, the cache lock, the SLP "
                      "vectorizer, the register tiles' vector code and the calls apart of the parallel kernels "
                      "(slower first steps, GEMMs and convolutions, the same results)", NumbaInternalsWarning,
                      stacklevel=2)
    return why is None


# ----------------------------------------------------------------------------- dispatchers

def is_cpu_dispatcher(obj):
    if problem() is not None:
        return False
    from numba.core.registry import CPUDispatcher
    return isinstance(obj, CPUDispatcher)


def wrap_compile(dispatcher, wrapper):
    """dispatcher.compile = wrapper(the compile it had): Numba compiles each signature through
    that method, for a call from Python and when a caller's type inference needs the
    function. -> False (nothing done) without the internals."""
    if not available():
        return False
    dispatcher.compile = wrapper(dispatcher.compile)
    return True


@contextlib.contextmanager
def slp_vectorize():
    """LLVM's SLP vectorizer on for what compiles inside (Numba leaves it off)."""
    import numba
    old = numba.config.SLP_VECTORIZE
    numba.config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        numba.config.SLP_VECTORIZE = old


def unliteral(sig):
    """A signature with each literal type (a caller's constant True, 0) as its plain type."""
    from numba import types
    return tuple(types.unliteral(t) for t in sig)


# ----------------------------------------------------------------------------- the cache

_fallback_lock = threading.RLock()


def compiler_lock():
    """Numba's process-wide compile lock (a context manager), or a lock of our own without
    the internals."""
    if problem() is not None:
        return _fallback_lock
    from numba.core.compiler_lock import global_compiler_lock
    return global_compiler_lock


def locked_cache_file_class(lock):
    """Numba's index/data cache file with the index read-modify-write under lock(index path)
    and the data written before the index entry that names it; None without the internals."""
    if not available():
        return None
    if lock in _state.setdefault("classes", {}):
        return _state["classes"][lock]
    import itertools

    from numba.core.caching import IndexDataCacheFile

    class LockedIndexDataCacheFile(IndexDataCacheFile):
        def save(self, key, data):
            with lock(self._index_path):
                overloads = self._load_index()
                data_name = overloads.get(key)
                if data_name is None:
                    existing = set(overloads.values())
                    data_name = next(n for n in map(self._data_name, itertools.count(1)) if n not in existing)
                self._save_data(data_name, data)
                overloads[key] = data_name
                self._save_index(overloads)

        def load(self, key):
            with lock(self._index_path):
                return super().load(key)

    _state["classes"][lock] = LockedIndexDataCacheFile
    return LockedIndexDataCacheFile


def lock_cache(dispatcher, lock, on_miss, depends_on=()):
    """Put a cached CPU dispatcher's on-disk cache under lock(index path): its loads, its
    compiles (cache lookup, compile and save) and its saves, the data written before the
    index entry; on_miss(signature) is called when a signature is not in the cache.
    depends_on: a stamp of the other source files whose code a kernel compiles in (the
    rules it inlines, the kernels it calls): Numba checks only the kernel's own file, so
    without it an edit there would leave cached kernels running the old code.
    -> False where there is nothing to lock (no on-disk cache) or no internals."""
    if not available():
        return False
    from numba.core.caching import IndexDataCacheFile
    cache = dispatcher._cache
    cache_file = getattr(cache, "_cache_file", None)
    if type(cache_file) is not IndexDataCacheFile:
        return False   # not cached (cache=False): nothing on disk to share
    cache_file.__class__ = locked_cache_file_class(lock)
    if depends_on:
        # The index is read back only while this stamp equals the one it was saved with.
        cache_file._source_stamp = (cache_file._source_stamp, tuple(depends_on))
    index_path = cache_file._index_path
    load_overload = cache.load_overload

    def compile_locked(compile_):
        def compile(sig):
            # Held across the cache lookup, the compile and the save, so that a process
            # needing this function while another compiles it waits and then loads it.
            with lock(index_path):
                return compile_(sig)
        return compile

    def load_overload_noting_misses(sig, target_context):
        cres = load_overload(sig, target_context)
        if cres is None:
            on_miss(sig)
        return cres

    wrap_compile(dispatcher, compile_locked)
    cache.load_overload = load_overload_noting_misses
    return True


# ----------------------------------------------------------------------------- numba-cuda

def cuda_driver_version():
    """(major, minor) of the CUDA driver, from numba-cuda's driver binding."""
    from numba.cuda.cudadrv.driver import driver
    return tuple(driver.get_version())


def cuda_toolkit_problem():
    """None when numba-cuda finds NVVM and libdevice, else what is missing."""
    import os

    def first_line(exc):
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    try:
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
    except Exception as exc:  # numba-cuda raises its own errors and the loader's
        return f"libNVVM was not found ({first_line(exc)})"
    try:
        from numba.cuda.cudadrv.libs import get_libdevice
        path = get_libdevice()
    except Exception as exc:
        return f"libdevice was not found ({first_line(exc)})"
    if not path or not os.path.isfile(path):
        return "libdevice was not found"
    return None


def cuda_intrinsic_tools():
    """(intrinsic, cgutils) for writing a CUDA intrinsic, or None where they are missing."""
    try:
        try:  # numba-cuda
            from numba.cuda import cgutils
            from numba.cuda.extending import intrinsic
        except ImportError:  # numba's own, older cuda target
            from numba.core import cgutils
            from numba.core.extending import intrinsic
    except ImportError:
        return None
    return intrinsic, cgutils


@contextlib.contextmanager
def cuda_device_without_a_driver(cc):
    """A kernel that calls a device function declared without inline makes numba-cuda
    compile that function separately, for the current device's compute capability, which
    it asks the driver for: without a driver the compile fails. Inside, the "current
    device" is one of compute capability cc."""
    import types
    try:
        from numba.cuda import dispatcher
    except ImportError:
        yield
        return
    real = getattr(dispatcher, "get_current_device", None)
    if real is None:
        yield
        return
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=cc)
    try:
        yield
    finally:
        dispatcher.get_current_device = real


def cuda_compile_ptx(pyfunc, signature, ccs, fastmath, launch_bounds):
    """{cc: PTX} of a kernel for several architectures, typed and lowered once (numba-cuda's
    private one-pass compile; two thirds of the time is typing and lowering), or by the
    public compile_ptx once per architecture where that is missing."""
    from numba import cuda
    kwargs = {"fastmath": fastmath, "launch_bounds": launch_bounds}
    with cuda_device_without_a_driver(min(ccs)):
        try:
            from numba.cuda.compiler import _compile_pyfunc_with_fixup
            lib, _ = _compile_pyfunc_with_fixup(pyfunc, tuple(signature), debug=None, lineinfo=False, device=False,
                                                cc=min(ccs), opt=None, abi="numba", abi_info=None,
                                                forceinline=False, lto=False, **kwargs)
        except (ImportError, TypeError):
            return {cc: cuda.compile_ptx(pyfunc, tuple(signature), cc=cc, **kwargs)[0] for cc in ccs}
    out = {}
    for cc in ccs:
        (ptx,) = lib.get_asm_strs(cc=cc)
        out[cc] = ptx
    return out
