"""kernels' backend registry: selection, the environment variable, and a quiet import."""
import os
import subprocess
import sys

import pytest

from numbanet import kernels

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_python(code, **env):
    """Run `code` in a fresh interpreter (imports and env vars act at start-up)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("NUMBANET_BACKEND", "NUMBA_ENABLE_CUDASIM")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True,
                          env=full_env, cwd=REPO, timeout=120)


def test_cpu_backend_is_always_available():
    assert kernels.available_backends()[0] == "cpu"
    be = kernels.get_backend("cpu")
    assert be.name == "cpu"
    assert kernels.get_backend("cpu") is be
    assert kernels.get_backend("CPU") is be


def test_available_backends_agrees_with_gpu_status():
    ok, detail = kernels.gpu_status()
    assert isinstance(detail, str) and detail
    assert ("gpu" in kernels.available_backends()) == ok


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        kernels.get_backend("tpu")


def test_set_backend_changes_the_default():
    before = kernels.get_backend()
    try:
        be = kernels.set_backend("cpu")
        assert be.name == "cpu"
        assert kernels.get_backend() is be
    finally:
        kernels.set_backend(before.name)


def test_import_is_quiet_and_lazy():
    r = run_python("import sys\nfrom numbanet import kernels\n"
                   "print(sorted(m for m in sys.modules if m.startswith('numba.cuda') or m == 'numba_cuda'))\n"
                   "print('numba' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["[]", "False"]
    assert r.stderr == ""


@pytest.mark.parametrize("env,want", [("cpu", "cpu"), ("CPU", "cpu")])
def test_env_var_picks_the_default(env, want):
    r = run_python("from numbanet import kernels; print(kernels.get_backend().name)", NUMBANET_BACKEND=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == want


def test_env_var_auto_follows_gpu_status():
    r = run_python("from numbanet import kernels; print(kernels.get_backend().name, kernels.gpu_status()[0])",
                   NUMBANET_BACKEND="auto")
    assert r.returncode == 0, r.stderr
    name, ok = r.stdout.split()
    assert name == ("gpu" if ok == "True" else "cpu")


def test_env_var_bad_value():
    r = run_python("from numbanet import kernels; kernels.get_backend()", NUMBANET_BACKEND="quantum")
    assert r.returncode != 0
    assert "unknown backend 'quantum'" in r.stderr


def test_simulator_makes_the_gpu_backend_available():
    r = run_python("from numbanet import kernels; print(kernels.available_backends()); print(kernels.gpu_status()[1])",
                   NUMBA_ENABLE_CUDASIM="1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "['cpu', 'gpu']"
    assert "simulator" in lines[1]


def test_gpu_unavailable_says_why_and_what_to_do():
    ok, detail = kernels.gpu_status()
    if ok:
        assert "gpu" in kernels.available_backends()
        assert kernels.get_backend("gpu").name == "gpu"
        return
    with pytest.raises(kernels.BackendUnavailable, match="gpu backend is unavailable") as info:
        kernels.get_backend("gpu")
    assert detail in str(info.value)
    if "driver" in detail and "libcuda" in detail:
        # No driver: the message names the fix and the simulator alternative.
        assert "install the NVIDIA driver" in str(info.value)
        assert "NUMBA_ENABLE_CUDASIM=1" in str(info.value)
    assert issubclass(kernels.BackendUnavailable, RuntimeError)


def test_gpu_request_without_a_driver_in_subprocess():
    # Hide any driver: a fresh process where libcuda cannot be found must refuse clearly.
    code = ("import ctypes.util, os\nfrom numbanet import kernels\n"
            "ctypes.util.find_library = lambda name: None\n"
            "os.path.exists = lambda p, _e=os.path.exists: False if p == '/dev/nvidiactl' else _e(p)\n"
            "try:\n"
            "    kernels.get_backend('gpu')\n"
            "except kernels.BackendUnavailable as e:\n"
            "    print(e)\n")
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert "no NVIDIA driver found" in r.stdout
    assert "install the NVIDIA driver" in r.stdout and "NUMBA_ENABLE_CUDASIM=1" in r.stdout


# A machine with a driver and a device but without NVVM/libdevice (numba-cuda installed
# without its cu12/cu13 extra), faked in a fresh process: auto must stay on the cpu and
# an explicit request must name the extra that matches the driver.
_NO_TOOLKIT = """
import ctypes.util, sys, types
import numba.cuda
from numba.cuda.cudadrv import driver as drv, nvvm
from numbanet import kernels
ctypes.util.find_library = lambda name: "libcuda.so.1"
numba.cuda.is_available = lambda: True
numba.cuda.get_current_device = lambda: types.SimpleNamespace(name=b"Fake H200", compute_capability=(9, 0))
drv.driver = types.SimpleNamespace(get_version=lambda: ({major}, 4))
def no_nvvm():
    raise OSError("libnvvm.so: cannot open shared object file")
nvvm.NVVM = no_nvvm
print(kernels.get_backend("auto").name)
try:
    kernels.get_backend("gpu")
except kernels.BackendUnavailable as e:
    print(e)
"""


@pytest.mark.parametrize("major,extra", [(12, "cu12"), (13, "cu13")])
def test_gpu_without_nvvm_falls_back_and_names_the_extra(major, extra):
    r = run_python(_NO_TOOLKIT.format(major=major))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "cpu"
    assert "Fake H200 found, but Numba cannot compile kernels for it: libNVVM was not found" in lines[1]
    assert f"pip install 'numbanet[{extra}]'" in lines[1]


def test_toolkit_problem_names_a_missing_libdevice():
    # In a fresh process without the simulator (whose stand-ins have no libdevice lookup).
    r = run_python("from numba.cuda.cudadrv import libs, nvvm\n"
                   "from numbanet import kernels\n"
                   "nvvm.NVVM = lambda: None\n"
                   "libs.get_libdevice = lambda: None\n"
                   "print(kernels.cuda_toolkit_problem())\n"
                   "libs.get_libdevice = lambda: kernels.__file__\n"
                   "print(kernels.cuda_toolkit_problem())\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["libdevice was not found", "None"]
