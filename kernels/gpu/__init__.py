"""The gpu backend: hand-written numba.cuda kernels on Numba device arrays.

Importing this package imports numba.cuda; kernels/__init__.py does so only when the gpu
backend is asked for. Under NUMBA_ENABLE_CUDASIM=1 the same kernels run on Numba's CUDA
simulator (Python per thread: for tests on tiny shapes only).
"""
import importlib

import numpy as np
from numba import cuda

from numbanet.kernels import interop
from numbanet.kernels.backend import Backend
from numbanet.kernels.gpu.checks import first_out_of_range
from numbanet.kernels.gpu.launch import grid_1d, unravel4


@cuda.jit
def _fill_zero(a):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = 0


class GpuBackend(Backend):
    name = "gpu"

    def __repr__(self):
        return "<numbanet gpu backend>"

    def _load_module(self, name):
        return importlib.import_module(f"numbanet.kernels.gpu.{name}")

    # ------------------------------------------------------------------ memory
    def asarray(self, array):
        """Any array -> a Numba device array of the same dtype.

        GPU memory (Numba device arrays, and through __cuda_array_interface__ CuPy arrays
        and PyTorch CUDA tensors) is used in place, without a copy, when it is
        C-contiguous; otherwise it is copied once into C order on the device. Host memory
        (NumPy, __array_interface__, host DLPack exports such as PyTorch CPU tensors) is
        copied to the device once. The result shares the caller's memory in the first
        case: writes through either are seen by both."""
        if _is_device_array(array):
            return self._contiguous(array)
        if interop.on_cuda_device(array):
            return self._contiguous(cuda.as_cuda_array(array))
        return cuda.to_device(np.ascontiguousarray(interop.host_view(array)))

    def to_numpy(self, array, out=None):
        if out is not None:
            self._check_host_copy("to_numpy", array, out)
            array.copy_to_host(out)
            return out
        if isinstance(array, np.ndarray):
            return array
        return array.copy_to_host()

    def copy_from_host(self, dst, host):
        self._check_host_copy("copy_from_host", dst, host)
        dst.copy_to_device(host)
        return dst

    def host_empty(self, shape, dtype="float32"):
        # Page-locked: the copies to and from it run at the bus's speed, without the
        # driver's extra copy through its own staging buffer.
        return cuda.pinned_array(shape, dtype=np.dtype(dtype))

    def _allocate(self, shape, dtype="float32"):
        return cuda.device_array(shape, dtype=np.dtype(dtype))

    def _assign(self, dst, src):
        dst.copy_to_device(src)  # device to device

    def zeros(self, shape, dtype="float32"):
        a = cuda.device_array(shape, dtype=np.dtype(dtype))
        self._zero(a)
        return a

    def _zero(self, arr):
        if arr.size:
            _fill_zero[grid_1d(arr.size)](arr.reshape(arr.size))

    def copy(self, array):
        out = cuda.device_array(array.shape, dtype=array.dtype)
        out.copy_to_device(self._contiguous(array))
        return out

    def synchronize(self):
        cuda.synchronize()

    def _check_native(self, op, name, arr):
        if not _is_device_array(arr):
            raise TypeError(f"{op}: {name} must be a numba device array on the gpu backend, "
                            f"got {type(arr).__name__}; upload host arrays with be.asarray(...)")

    def _is_c_contiguous(self, arr):
        return arr.is_c_contiguous()

    def _first_out_of_range(self, idx, n):
        return first_out_of_range(idx, n)

    def _overlaps(self, a, b):
        if not _is_device_array(b):
            return False
        (a0, a1), (b0, b1) = self._extent(a), self._extent(b)
        return a0 < b1 and b0 < a1

    def _extent(self, arr):
        return _extent(arr)

    def _contiguous(self, arr):
        if arr.is_c_contiguous():
            return arr
        # A device-side copy into C order: a host round trip would cost two PCIe transfers.
        out = cuda.device_array(arr.shape, dtype=arr.dtype)
        _copy_strided(arr, out)
        return out


def _is_device_array(arr):
    # numba.cuda.is_cuda_array is missing on the simulator; device arrays (real or fake)
    # are the objects with copy_to_host that are not host ndarrays.
    return hasattr(arr, "copy_to_host") and not isinstance(arr, np.ndarray)


def _extent(arr):
    """[first byte, one past the last byte) that arr's elements occupy. The simulator's
    device arrays hold a NumPy array (_ary); real ones describe themselves through
    __cuda_array_interface__ (no copy: it only reads the pointer)."""
    if arr.size == 0:
        return 0, 0
    host = getattr(arr, "_ary", None)
    if isinstance(host, np.ndarray):
        start = host.__array_interface__["data"][0]
    else:
        start = arr.__cuda_array_interface__["data"][0]
    lo = hi = start
    for n, s in zip(arr.shape, arr.strides):
        if s < 0:
            lo += (n - 1) * s
        else:
            hi += (n - 1) * s
    return lo, hi + arr.dtype.itemsize


def _copy_strided(src, dst):
    """dst (C-contiguous) = src (any strides), element by element on the device."""
    if src.ndim not in _COPY:
        raise ValueError(f"gpu backend: cannot make a {src.ndim}-D non-contiguous array contiguous "
                         "(1-D to 4-D supported)")
    if dst.size:
        _COPY[src.ndim][grid_1d(dst.size)](src, dst)


@cuda.jit
def _copy1(src, dst):
    for t in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        dst[t] = src[t]


@cuda.jit
def _copy2(src, dst):
    b = dst.shape[1]
    for t in range(cuda.grid(1), dst.shape[0] * b, cuda.gridsize(1)):
        dst[t // b, t % b] = src[t // b, t % b]


@cuda.jit
def _copy3(src, dst):
    b, c = dst.shape[1], dst.shape[2]
    for t in range(cuda.grid(1), dst.shape[0] * b * c, cuda.gridsize(1)):
        k = t % c
        r = t // c
        dst[r // b, r % b, k] = src[r // b, r % b, k]


@cuda.jit
def _copy4(src, dst):
    a, b, c, d = dst.shape
    for t in range(cuda.grid(1), a * b * c * d, cuda.gridsize(1)):
        i, j, k, l = unravel4(t, b, c, d)
        dst[i, j, k, l] = src[i, j, k, l]


_COPY = {1: _copy1, 2: _copy2, 3: _copy3, 4: _copy4}
