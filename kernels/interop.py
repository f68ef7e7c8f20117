"""Arrays from other libraries, taken without a copy where the memory already is where
the backend needs it ("import numbanet as a backend").

Three protocols are read, in this order:
  __cuda_array_interface__   memory on an NVIDIA GPU (CuPy arrays, PyTorch CUDA tensors,
                             Numba device arrays)
  __array_interface__ / __array__   host memory NumPy can view (NumPy, most CPU arrays)
  __dlpack__                 host memory exported by DLPack (PyTorch CPU tensors, JAX CPU)
A DLPack export of GPU memory without __cuda_array_interface__ is refused with the
reason: Numba cannot view it, and a silent trip through the host would hide a copy.
"""
import numpy as np

# DLPack device types (dlpack.h, DLDeviceType): the two this module tells apart.
_DLPACK_CPU, _DLPACK_CUDA_HOST = 1, 3


def on_cuda_device(obj):
    """True for an object whose memory is on an NVIDIA GPU, as its protocols say."""
    return hasattr(obj, "__cuda_array_interface__") and not isinstance(obj, np.ndarray)


def host_view(obj, op="asarray"):
    """A NumPy array over obj's host memory: no copy for an ndarray, an object with
    __array_interface__ or __array__, or a host DLPack export; other Python sequences
    are converted as NumPy converts them. The dtype is never changed."""
    if isinstance(obj, np.ndarray):
        return obj
    if hasattr(obj, "__array_interface__") or hasattr(obj, "__array_struct__"):
        return np.asarray(obj)
    if hasattr(obj, "__dlpack__"):
        device = obj.__dlpack_device__()[0] if hasattr(obj, "__dlpack_device__") else _DLPACK_CPU
        if device not in (_DLPACK_CPU, _DLPACK_CUDA_HOST):
            raise TypeError(f"{op}: {type(obj).__name__} exports device memory through DLPack "
                            f"(device type {device}) but not __cuda_array_interface__, which numbanet "
                            f"needs to use device memory without a copy; copy it to the host first")
        return np.from_dlpack(obj)
    return np.asarray(obj)
