"""numbanet's kernel library: the backend registry and run-time backend selection.

    from numbanet import kernels
    kernels.available_backends()     # ["cpu"] or ["cpu", "gpu"]
    be = kernels.get_backend()       # the process default (NUMBANET_BACKEND=auto|cpu|gpu)
    kernels.set_backend("gpu")

Importing this module compiles nothing, prints nothing and does not import numba.cuda:
the gpu backend is probed only when it is asked for.
"""
import ctypes.util
import importlib.util
import os

__all__ = ["BackendUnavailable", "available_backends", "get_backend", "set_backend", "gpu_status",
           "cuda_toolkit_problem"]

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
            import numba.cuda  # noqa: F401  (older numba ships its own cuda target)
        except ImportError:
            return False, "numba-cuda is not installed: pip install 'numbanet[cu12]' (or [cu13] for a CUDA 13 driver)"
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
        from numbanet.kernels import numba_internals
        driver_major = numba_internals.cuda_driver_version()[0]
    except Exception as exc:  # the driver's own error says the most
        return False, f"CUDA initialisation failed: {exc}"
    missing = cuda_toolkit_problem()
    if missing is not None:
        extra = "cu13" if driver_major >= 13 else "cu12"
        return False, (f"{name} found, but Numba cannot compile kernels for it: {missing}; "
                       f"install the CUDA compiler libraries with pip install 'numbanet[{extra}]' "
                       f"(the extra that matches this CUDA {driver_major} driver)")
    return True, f"{name} (compute capability {cc})"


def cuda_toolkit_problem():
    """None when numba-cuda finds NVVM and libdevice, without which no kernel compiles for
    a real GPU (numba-cuda alone does not bring them), else what is missing."""
    from numbanet.kernels import numba_internals
    return numba_internals.cuda_toolkit_problem()


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
            from numbanet.kernels.gpu import GpuBackend
            _instances["gpu"] = GpuBackend()
        else:
            from numbanet.kernels.cpu import CpuBackend
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
