"""tests/sim_calls.py: device calls, shared and local arrays of the simulator compute what
the stock ones compute, with the blocks run as greenlets (tests/sim_blocks.py) as in the
simulator run: device functions of another module that wait at barriers, shared arrays
by call site, local arrays, an exception in a device function. Both run in this process:
the simulator's kernel class runs a plain Python function with a simulated `cuda` module
swapped in, whatever NUMBA_ENABLE_CUDASIM says."""
import sys
import textwrap
import types

import numpy as np
import pytest
from numba import cuda

import sim_blocks
import sim_calls

from numba.cuda.simulator import kernel, kernelapi

STOCK = {"call": kernel.FakeCUDAKernel.__call__, "shared": kernelapi.FakeCUDAShared.array,
         "local": kernelapi.FakeCUDALocal.array}
REAL_CUDA = sys.modules["numba.cuda"]
FAST = {"call": sim_calls.kernel_call(kernel), "shared": sim_calls.shared_array(STOCK["shared"]),
        "local": sim_calls.local_array(STOCK["local"])}

# Device functions in a module of their own, as kernels/gpu/launch.py's are to the kernels
# that call them: that module's `cuda` must be the simulated one while they run, also after
# a barrier inside them has let the block's other threads run.
OTHER = types.ModuleType("sim_calls_other")
exec(textwrap.dedent("""
    import numpy as np
    from numba import cuda, float32

    def exchange(sh, x):
        t = cuda.threadIdx.x
        sh[t] = x[t]
        cuda.syncthreads()
        v = sh[(t + 1) % cuda.blockDim.x]
        cuda.syncthreads()
        return v + cuda.threadIdx.x

    def local_sum(x):
        tmp = cuda.local.array(3, float32)
        t = cuda.threadIdx.x
        for i in range(3):
            tmp[i] = x[(t + i) % cuda.blockDim.x]
        return tmp[0] + tmp[1] + tmp[2]

    def fails(x):
        return x[cuda.threadIdx.x * 100]
"""), OTHER.__dict__)
for _name in ("exchange", "local_sum", "fails"):
    setattr(OTHER, _name, kernel.FakeCUDAKernel(getattr(OTHER, _name), device=True))


def exchange_through_another_module(x, out):
    """Two shared arrays (two call sites) and a device function of another module with
    barriers inside; its result read after a barrier of the kernel."""
    sh = cuda.shared.array(32, np.float32)
    sh2 = cuda.shared.array(32, np.float32)
    t = cuda.threadIdx.x
    v = OTHER.exchange(sh, x)
    sh2[t] = v + OTHER.local_sum(x)
    cuda.syncthreads()
    out[t] = sh2[(t + 3) % cuda.blockDim.x] + cuda.blockIdx.x


def one_calls_a_failing_device_function(x, out):
    out[cuda.threadIdx.x] = OTHER.fails(x)


def launch(paths, fn, grid, block, *args, monkeypatch):
    """fn[grid, block](*args) with the greenlet blocks and `paths` (STOCK or FAST);
    -> the exception the launch raised, or None."""
    monkeypatch.setattr(kernel, "BlockManager", sim_blocks.greenlet_block_manager(kernel))
    monkeypatch.setattr(kernelapi, "threading", sim_blocks._threading_of_greenlets())
    monkeypatch.setattr(kernel.FakeCUDAKernel, "__call__", paths["call"])
    monkeypatch.setattr(kernelapi.FakeCUDAShared, "array", paths["shared"])
    monkeypatch.setattr(kernelapi.FakeCUDALocal, "array", paths["local"])
    try:
        kernel.FakeCUDAKernel(fn, device=False)[grid, block](*args)
    except Exception as exc:   # noqa: BLE001 - handed to the test
        return exc
    return None


def test_device_functions_of_another_module_across_barriers_as_stock(monkeypatch):
    x = np.random.default_rng(0).integers(-9, 9, 32).astype(np.float32)
    outs = {}
    for name, paths in (("stock", STOCK), ("fast", FAST)):
        outs[name] = np.full(32, np.nan, np.float32)
        assert launch(paths, exchange_through_another_module, 2, 32, x, outs[name], monkeypatch=monkeypatch) is None
        # Back to the real module once the launch is over, as after a stock launch.
        assert OTHER.cuda is REAL_CUDA and globals()["cuda"] is REAL_CUDA
    t = np.arange(32)
    v = x[(t + 1) % 32] + t + x[t] + x[(t + 1) % 32] + x[(t + 2) % 32]
    np.testing.assert_array_equal(outs["fast"], v[(t + 3) % 32] + 1)   # block 1 wrote last
    np.testing.assert_array_equal(outs["fast"], outs["stock"])


def test_an_error_in_a_device_function_raises_and_restores_the_module(monkeypatch):
    errors = [launch(paths, one_calls_a_failing_device_function, 1, 4, np.zeros(8, np.float32),
                     np.zeros(4, np.float32), monkeypatch=monkeypatch) for paths in (STOCK, FAST)]
    assert all(isinstance(e, IndexError) for e in errors), errors
    assert str(errors[1]).startswith("tid=[1, 0, 0]"), str(errors[1])
    assert OTHER.cuda is REAL_CUDA


def test_shared_arrays_are_one_per_call_site(monkeypatch):
    from numba import float32
    monkeypatch.setattr(kernelapi.FakeCUDAShared, "array", FAST["shared"])
    shared = kernelapi.FakeCUDAShared(0)
    a = [shared.array(4, np.float32) for _ in range(2)]             # one site, called twice
    b = shared.array(4, np.float32)
    assert a[0] is a[1] and b is not a[0]
    dyn = kernelapi.FakeCUDAShared(16).array(0, float32)          # dynamic: the launch's bytes
    assert dyn.shape == (4,) and dyn.dtype == np.float32
    with pytest.raises(RuntimeError, match="alignment"):
        shared.array(4, np.float32, alignment=16)


def test_local_arrays_are_new_per_call_of_the_numba_dtype(monkeypatch):
    from numba import float64
    monkeypatch.setattr(kernelapi.FakeCUDALocal, "array", FAST["local"])
    local = kernelapi.FakeCUDALocal()
    a, b = local.array((2, 3), float64), local.array((2, 3), float64)
    assert a is not b and a.dtype == np.float64 and a.shape == (2, 3)


def test_install_replaces_the_three(monkeypatch):
    for cls, attr, key in ((kernel.FakeCUDAKernel, "__call__", "call"), (kernelapi.FakeCUDAShared, "array", "shared"),
                           (kernelapi.FakeCUDALocal, "array", "local")):
        monkeypatch.setattr(cls, attr, STOCK[key])
    assert sim_calls.install()
    assert kernel.FakeCUDAKernel.__call__.sim_calls
    assert kernelapi.FakeCUDAShared.array is not STOCK["shared"]
    assert kernelapi.FakeCUDALocal.array is not STOCK["local"]
