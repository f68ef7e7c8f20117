"""The cpu backend: @numba.njit kernels on NumPy arrays."""
import numpy as np

from kernels.backend import Backend


class CpuBackend(Backend):
    name = "cpu"

    def __init__(self):
        # Imported here so that `import kernels` compiles nothing until a backend is used.
        from kernels.cpu import activation, conv, elementwise, gemm, loss, optim, pool, reduce
        from kernels.cpu.memory import keep_freed_memory
        keep_freed_memory()
        self.gemm, self.conv, self.pool, self.optim = gemm, conv, pool, optim
        self.activation, self.loss, self.elementwise, self.reduce = activation, loss, elementwise, reduce

    def __repr__(self):
        return "<numbanet cpu backend>"

    # ------------------------------------------------------------------ memory
    def asarray(self, host_array):
        """Host -> backend: the same array when it is already C-contiguous (no dtype change)."""
        return np.ascontiguousarray(host_array)

    def to_numpy(self, array):
        return np.asarray(array)

    def empty(self, shape, dtype="float32"):
        return np.empty(shape, dtype=dtype)

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

    def _contiguous(self, arr):
        # A copy, never a cast: the kernels index C-ordered memory.
        return np.ascontiguousarray(arr)
