"""kernels.interop and be.asarray: arrays from other libraries, in place where possible."""
import importlib.util

import numpy as np
import pytest

from numbanet.kernels import interop


class OnlyArrayInterface:
    """A foreign host array that NumPy can view only through __array_interface__."""

    def __init__(self, a):
        self._a = a
        self.__array_interface__ = a.__array_interface__


class OnlyDLPack:
    """A foreign host array exported only through DLPack (as PyTorch CPU tensors are)."""

    def __init__(self, a, device=(1, 0)):
        self._a, self._device = a, device

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._device


def _host(n=12, dtype=np.float32):
    return np.arange(n, dtype=dtype).reshape(3, n // 3)


@pytest.mark.parametrize("wrap", [lambda a: a, OnlyArrayInterface, OnlyDLPack], ids=["ndarray", "array_interface", "dlpack"])
def test_host_view_is_the_callers_memory(wrap):
    a = _host()
    view = interop.host_view(wrap(a))
    assert np.shares_memory(view, a) and view.dtype == a.dtype


@pytest.mark.parametrize("wrap", [lambda a: a, OnlyArrayInterface, OnlyDLPack], ids=["ndarray", "array_interface", "dlpack"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_asarray_takes_every_host_protocol_and_keeps_the_dtype(be, wrap, dtype):
    a = _host(dtype=dtype)
    got = be.asarray(wrap(a))
    host = be.to_numpy(got)
    assert host.dtype == dtype and host.shape == a.shape
    np.testing.assert_array_equal(host, a)
    if be.name == "cpu":
        assert np.shares_memory(got, a), "a C-contiguous host array is used in place on the cpu backend"


def test_asarray_copies_a_strided_array_into_c_order(be):
    a = _host(24).T  # Fortran order
    got = be.asarray(OnlyArrayInterface(a))
    host = be.to_numpy(got)
    assert host.flags.c_contiguous
    np.testing.assert_array_equal(host, a)
    assert not np.shares_memory(host, a)


def test_device_memory_exported_only_by_dlpack_is_refused_with_the_reason(be):
    foreign = OnlyDLPack(_host(), device=(2, 0))  # kDLCUDA
    with pytest.raises(TypeError, match=r"asarray: OnlyDLPack exports device memory through DLPack.*copy it to the host"):
        be.asarray(foreign)


def test_device_array_is_returned_in_place(be):
    d = be.asarray(_host())
    assert be.asarray(d) is d


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="PyTorch is not installed (a reference for hand runs, never a dependency; CI has none)")
def test_torch_cpu_tensor_is_used_in_place_on_the_cpu_backend():
    import torch

    from numbanet import kernels
    be = kernels.get_backend("cpu")
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    a = be.asarray(t)
    assert a.ctypes.data == t.data_ptr() and a.dtype == np.float32
    t[0, 0] = 42.0
    assert a[0, 0] == 42.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_to_numpy_into_a_host_array_and_copy_from_host(be, dtype):
    """The staging copies of a data-parallel step (nn/distributed.py): backend -> a given
    host array (host_empty: pinned on the gpu), and back, through views of packed buffers."""
    src = np.arange(10, dtype=dtype)
    dev = be.asarray(src.copy())
    host = be.host_empty((12,), dtype)
    assert isinstance(host, np.ndarray) and host.shape == (12,) and host.dtype == np.dtype(dtype)
    host[:] = -1
    assert be.to_numpy(dev[:6], out=host[:6]) is not None
    np.testing.assert_array_equal(host, np.r_[src[:6], [-1] * 6].astype(dtype))
    host[:6] *= 3
    be.copy_from_host(dev[:6], host[:6])
    np.testing.assert_array_equal(be.to_numpy(dev), np.r_[src[:6] * 3, src[6:]].astype(dtype))


def test_host_copies_refuse_mismatched_arrays(be):
    dev = be.asarray(np.zeros(6, np.float32))
    with pytest.raises(ValueError, match=r"to_numpy: the host array is float64 \(6,\) but the backend array is "
                                         r"float32 \(6,\)"):
        be.to_numpy(dev, out=np.zeros(6, np.float64))
    with pytest.raises(ValueError, match="copy_from_host: the host array is float32 \\(5,\\)"):
        be.copy_from_host(dev, np.zeros(5, np.float32))
    with pytest.raises(TypeError, match="copy_from_host: the host array must be a numpy.ndarray"):
        be.copy_from_host(dev, [0.0] * 6)
    with pytest.raises(ValueError, match="C-contiguous"):
        be.to_numpy(dev, out=np.zeros(12, np.float32)[::2])
