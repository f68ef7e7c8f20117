"""numbanet's kernel library: the backend registry and run-time backend selection.

    import kernels
    kernels.available_backends()     # ["cpu"] or ["cpu", "gpu"]
    be = kernels.get_backend()       # the process default (NUMBANET_BACKEND=auto|cpu|gpu)
    kernels.set_backend("gpu")

Importing this module compiles nothing, prints nothing and does not import numba.cuda:
the gpu backend is probed only when it is asked for.
"""
import ctypes.util
import importlib.util
import os

__all__ = ["BackendUnavailable", "available_backends", "get_backend", "set_backend", "gpu_status"]

_NAMES = ("cpu", "gpu")
_instances = {}
_default = None


class BackendUnavailable(RuntimeError):
    """The asked-for backend cannot run here; the message says why and what to do."""


def _simulator_on():
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def gpu_status():
    """-> (usable: bool, detail: str). detail says which device, or why there is none."""
    if importlib.util.find_spec("numba_cuda") is None:
        try:
            from numba import cuda  # noqa: F401  (older numba ships its own cuda target)
        except ImportError:
            return False, "numba-cuda is not installed: pip install numba-cuda"
    if _simulator_on():
        return True, "Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1): kernels run as Python, for testing only"
    if ctypes.util.find_library("cuda") is None and not os.path.exists("/dev/nvidiactl"):
        return False, ("no NVIDIA driver found (libcuda is missing): install the NVIDIA driver, "
                       "or set NUMBA_ENABLE_CUDASIM=1 to run the gpu backend on the simulator")
    from numba import cuda
    try:
        if not cuda.is_available():
            return False, "the NVIDIA driver is present but no usable CUDA device was found"
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        cc = ".".join(str(v) for v in dev.compute_capability)
        return True, f"{name} (compute capability {cc})"
    except Exception as exc:  # the driver's own error says the most
        return False, f"CUDA initialisation failed: {exc}"


def available_backends():
    names = ["cpu"]
    if gpu_status()[0]:
        names.append("gpu")
    return names


def _resolve(name):
    if name is None:
        name = os.environ.get("NUMBANET_BACKEND", "auto")
    name = str(name).lower()
    if name == "auto":
        return "gpu" if gpu_status()[0] else "cpu"
    if name not in _NAMES:
        raise ValueError(f"unknown backend {name!r}: expected 'auto', 'cpu' or 'gpu'")
    return name


def get_backend(name=None):
    """The backend called `name` ("cpu", "gpu", "auto"), or the process default when None."""
    global _default
    if name is None and _default is not None:
        return _instances[_default]
    resolved = _resolve(name)
    if resolved not in _instances:
        if resolved == "gpu":
            ok, why = gpu_status()
            if not ok:
                raise BackendUnavailable(f"the gpu backend is unavailable: {why}")
            from kernels.gpu import GpuBackend
            _instances["gpu"] = GpuBackend()
        else:
            from kernels.cpu import CpuBackend
            _instances["cpu"] = CpuBackend()
    if name is None:
        _default = resolved
    return _instances[resolved]


def set_backend(name):
    """Make `name` the process default; returns the backend."""
    global _default
    backend = get_backend(name)
    _default = backend.name
    return backend
