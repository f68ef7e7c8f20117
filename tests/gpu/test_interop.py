"""Zero-copy exchange with PyTorch and CuPy on a real GPU, both ways, through
__cuda_array_interface__. The CUDA simulator has no device memory to share, so these
run only on a real device (bench/gpu_check.sh runs tests/gpu there)."""
import importlib.util
import os

import numpy as np
import pytest

from numbanet import kernels

real_gpu = (os.environ.get("NUMBA_ENABLE_CUDASIM", "0") in ("", "0")) and "gpu" in kernels.available_backends()


def _torch_cuda():
    if importlib.util.find_spec("torch") is None:
        return None
    import torch
    return torch if torch.cuda.is_available() else None


@pytest.mark.skipif(not real_gpu or _torch_cuda() is None, reason="needs a real CUDA device and PyTorch with CUDA")
def test_torch_cuda_tensor_both_ways_without_a_copy():
    torch = _torch_cuda()
    be = kernels.get_backend("gpu")
    t = torch.arange(12, dtype=torch.float32, device="cuda").reshape(3, 4)
    d = be.asarray(t)
    assert d.__cuda_array_interface__["data"][0] == t.data_ptr()
    back = torch.as_tensor(d, device="cuda")
    assert back.data_ptr() == t.data_ptr()
    y = be.matmul(d, be.asarray(t.T.contiguous()))
    np.testing.assert_allclose(be.to_numpy(y), (t @ t.T).cpu().numpy(), rtol=1e-5)


@pytest.mark.skipif(not real_gpu or importlib.util.find_spec("cupy") is None,
                    reason="needs a real CUDA device and CuPy")
def test_cupy_array_both_ways_without_a_copy():
    import cupy as cp
    be = kernels.get_backend("gpu")
    c = cp.arange(12, dtype=cp.float32).reshape(3, 4)
    d = be.asarray(c)
    assert d.__cuda_array_interface__["data"][0] == c.data.ptr
    assert cp.asarray(d).data.ptr == c.data.ptr
    strided = be.asarray(c.T)  # not C-contiguous: one copy on the device, in C order
    assert strided.is_c_contiguous()
    np.testing.assert_array_equal(be.to_numpy(strided), cp.asnumpy(c.T))
