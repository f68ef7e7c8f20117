"""The cpu backend: @numba.njit kernels on NumPy arrays."""
import importlib

import numpy as np

from numbanet.kernels import interop
from numbanet.kernels.backend import Backend


def _share_cache():
    """Every kernel module loaded so far under kernels/cpu/precompile.py's cache lock (and
    its cache misses start the background compile), and its drivers priming their tiles'
    micro-kernels (kernels/cpu/tiles.py: install_priming)."""
    import sys
    from numbanet.kernels.cpu import precompile, tiles
    modules = [m for name, m in list(sys.modules.items()) if name.startswith("numbanet.kernels.cpu.") and m is not None]
    precompile.install(modules)
    tiles.install_priming(modules)


class CpuBackend(Backend):
    name = "cpu"

    def __init__(self):
        from numbanet.kernels.cpu.memory import keep_freed_memory
        keep_freed_memory()
        _share_cache()

    def __repr__(self):
        return "<numbanet cpu backend>"

    def _load_module(self, name):
        """kernels/cpu/<name>.py, imported here so that `import numbanet.kernels` compiles
        nothing; what it imported is put under the cache lock before any of it runs
        (attention compiles helpers as it loads)."""
        module = importlib.import_module(f"numbanet.kernels.cpu.{name}")
        _share_cache()
        return module

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

    def _contiguous(self, arr):
        # A copy, never a cast: the kernels index C-ordered memory. A read-only input is
        # copied too: Numba types read-only arrays apart and would compile a second form of
        # every kernel for them (seconds per op and dtype), far more than the copy costs.
        if arr.flags.c_contiguous and arr.flags.writeable:
            return arr
        return np.array(arr, order="C", copy=True)
