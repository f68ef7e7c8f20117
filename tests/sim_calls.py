"""Device-function calls and shared and local arrays of numba-cuda's CUDA simulator,
without the per-call work that is most of its time once its blocks run as greenlets
(tests/sim_blocks.py).

The stock simulator, per call:
- of a device function: enters swapped_cuda_module, which imports numba.cuda, takes two
  locks and counts the function's module in, swapping the simulated cuda module into that
  module's globals if it is the first user, and counts it out again, through a
  generator-based context manager;
- of cuda.shared.array: formats the whole Python stack (traceback.extract_stack, which
  stats every source file on it) to key the block's allocation by its caller's file and
  line;
- of cuda.local.array (and shared): converts the Numba type to a NumPy dtype again.
On a simulator test of conv2d's backward these were 40% of the run.

install() keeps each rule and drops the repeated work. A launch holds the swap of every
module whose device functions it calls, from the first call to the launch's end (the
stock launch already holds its kernel's module so): a device call then calls the function
directly, with the simulated module in place as the stock call would have it. Holding to
the end, not per call, is what keeps that true with greenlets: a thread that waits at a
barrier inside a device function must not find the module swapped back when it resumes.
The allocation key is the caller's frame's file and line, read from the frame; each
dtype is converted once. tests/conftest.py installs this in the simulator run only;
tests/test_sim_calls.py runs kernels through the stock paths and these and compares.
"""
import contextlib
import sys

import numpy as np


def install():
    """Replace the three; -> False (and nothing changed) where this numba-cuda's simulator
    is not built the way this module expects."""
    from numba.cuda.simulator import kernel, kernelapi
    if getattr(kernel.FakeCUDAKernel.__call__, "sim_calls", False):
        return True   # a second conftest import: in place already
    if not all(hasattr(kernel, name) for name in ("swapped_cuda_module", "_get_kernel_context", "FakeCUDAKernel")) \
            or not all(hasattr(kernelapi, name) for name in ("FakeCUDAShared", "FakeCUDALocal")):
        return False
    kernel.FakeCUDAKernel.__call__ = kernel_call(kernel)
    kernelapi.FakeCUDAShared.array = shared_array(kernelapi.FakeCUDAShared.array)
    kernelapi.FakeCUDALocal.array = local_array(kernelapi.FakeCUDALocal.array)
    return True


def kernel_call(kernel):
    """FakeCUDAKernel.__call__ of the simulator's module `kernel`: a launch holds the module
    swaps its calls need until it ends; a call within a launch calls the function."""
    stock = kernel.FakeCUDAKernel.__call__
    swapped = kernel.swapped_cuda_module
    launch = []   # while a launch runs: [ids of the globals it holds swapped, the ExitStack holding them]

    def __call__(self, *args):
        ctx = kernel._get_kernel_context()
        if ctx is None:
            if self._device:
                return stock(self, *args)   # a device function called outside any kernel
            with contextlib.ExitStack() as held:
                launch[:] = [{id(self.fn.__globals__)}, held]
                try:
                    return stock(self, *args)
                finally:
                    launch.clear()
        if not launch:
            return stock(self, *args)
        gids, held = launch
        gid = id(self.fn.__globals__)
        if gid not in gids:
            held.enter_context(swapped(self.fn, ctx))
            gids.add(gid)
        return self.fn(*args)

    __call__.sim_calls = True
    return __call__


def shared_array(stock):
    """FakeCUDAShared.array keyed by its caller's frame (file, line), as the stock one is,
    without formatting the stack. Dynamic shared memory (shape 0) and an alignment (which
    the simulator refuses) go to the stock one."""
    dtype_of = _dtype_cache()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:
            return stock(self, shape, dtype, alignment)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        res = self._allocations.get(caller)
        if res is None:
            res = self._allocations[caller] = np.empty(shape, dtype_of(dtype))
        return res

    return array


def local_array(stock):
    """FakeCUDALocal.array: a new array per call, as the stock one, its dtype converted once."""
    dtype_of = _dtype_cache()

    def array(self, shape, dtype, alignment=None):
        if alignment is not None:
            return stock(self, shape, dtype, alignment)
        return np.empty(shape, dtype_of(dtype))

    return array


def _dtype_cache():
    """Numba type (or NumPy dtype) -> NumPy dtype, as numpy_support.as_dtype, remembered."""
    from numba.core import types
    from numba.np import numpy_support
    seen = {}   # id(type) -> (type, dtype): a Numba type hashes slowly, and this runs per simulated thread

    def dtype_of(dtype):
        hit = seen.get(id(dtype))
        if hit is not None and hit[0] is dtype:
            return hit[1]
        if not isinstance(dtype, types.Type):
            return dtype
        seen[id(dtype)] = (dtype, numpy_support.as_dtype(dtype))
        return seen[id(dtype)][1]

    return dtype_of
