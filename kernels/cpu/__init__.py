"""The cpu backend: @numba.njit kernels on NumPy arrays."""
import importlib
import importlib.abc
import importlib.machinery
import sys

import numpy as np

from numbanet.kernels import interop
from numbanet.kernels.backend import Backend


class _ShareOnImport(importlib.abc.MetaPathFinder):
    """Puts each kernel module of this package under kernels/cpu/precompile.py's cache lock
    (its cache misses start the background compile) as its import ends, however it is
    imported. A process that runs kernels without the backend (`numbanet tune`'s
    workers import gemm themselves) must save under the same index stamp as every other:
    a save under another stamp drops every entry of that function's index, so each kind
    of process compiled again what the other had saved."""

    def find_spec(self, name, path, target=None):
        if not name.startswith(__name__ + "."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _share(module)
        spec.loader.exec_module = exec_module
        return spec


_waiting = []   # modules loaded before precompile itself was
_install = []   # precompile.install, once imported


def _share(module):
    _waiting.append(module)
    _install_waiting()


def _install_waiting():
    if _install:
        modules = _waiting[:]
        del _waiting[:]
        _install[0](modules)


sys.meta_path.insert(0, _ShareOnImport())
from numbanet.kernels.cpu import precompile as _precompile   # noqa: E402  (after the hook)
_install.append(_precompile.install)
_install_waiting()


class CpuBackend(Backend):
    name = "cpu"

    def __init__(self):
        from numbanet.kernels.cpu.memory import keep_freed_memory
        keep_freed_memory()

    def __repr__(self):
        return "<numbanet cpu backend>"

    def _load_module(self, name):
        """kernels/cpu/<name>.py, imported here so that `import numbanet.kernels` compiles
        nothing (each module goes under the cache lock as it loads: _ShareOnImport)."""
        return importlib.import_module(f"numbanet.kernels.cpu.{name}")

    # ------------------------------------------------------------------ memory
    def asarray(self, array):
        """Any array -> a C-contiguous numpy.ndarray of the same dtype.

        Host memory (NumPy arrays, objects with __array_interface__, PyTorch CPU tensors
        and other host DLPack exports) is used in place, without a copy, when it is
        already C-contiguous; otherwise it is copied once into C order. GPU memory
        (__cuda_array_interface__: CuPy, PyTorch CUDA, Numba device arrays) is copied
        to the host once."""
        if interop.on_cuda_device(array):
            from numba import cuda
            return np.ascontiguousarray(cuda.as_cuda_array(array).copy_to_host())
        return np.ascontiguousarray(interop.host_view(array))

    def to_numpy(self, array, out=None):
        if out is not None:
            self._check_host_copy("to_numpy", array, out)
            if out is not array:
                np.copyto(out, array)
            return out
        return np.asarray(array)

    def copy_from_host(self, dst, host):
        self._check_host_copy("copy_from_host", dst, host)
        if dst is not host:
            np.copyto(dst, host)
        return dst

    def host_empty(self, shape, dtype="float32"):
        return np.empty(shape, dtype=dtype)

    def _allocate(self, shape, dtype="float32"):
        return np.empty(shape, dtype=dtype)

    def _assign(self, dst, src):
        np.copyto(dst, src)

    def _zero(self, arr):
        arr.fill(0)

    def zeros(self, shape, dtype="float32"):
        return np.zeros(shape, dtype=dtype)

    def copy(self, array):
        return np.array(array, copy=True)

    def synchronize(self):
        """CPU kernels finish before they return."""

    def _check_native(self, op, name, arr):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{op}: {name} must be a numpy.ndarray on the cpu backend, "
                            f"got {type(arr).__name__}")

    def _is_c_contiguous(self, arr):
        return arr.flags.c_contiguous

    def _writable(self, arr):
        return arr.flags.writeable

    def _overlaps(self, a, b):
        # Bounds only (no exact solve): a false alarm needs interleaved strided views,
        # which the ops' contiguous arguments never are.
        return isinstance(b, np.ndarray) and np.may_share_memory(a, b)

    def _extent(self, arr):
        # [first byte, one past the last): arr is C-contiguous (_check_written).
        start = arr.__array_interface__["data"][0]
        return start, start + arr.nbytes

    def _contiguous(self, arr):
        # A copy, never a cast: the kernels index C-ordered memory. A read-only input is
        # copied too: Numba types read-only arrays apart and would compile a second form of
        # every kernel for them (seconds per op and dtype), far more than the copy costs.
        if arr.flags.c_contiguous and arr.flags.writeable:
            return arr
        return np.array(arr, order="C", copy=True)
