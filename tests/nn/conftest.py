"""nn tests run on the process's cpu backend; while kernels/cpu is still missing compute
modules, on the NumPy reference backend in numpy_backend.py (same op API and checks)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


def _install_backend():
    import kernels
    try:
        kernels.set_backend("cpu")
        return "cpu kernels"
    except ImportError:
        from numpy_backend import NumpyBackend
        kernels._instances["cpu"] = NumpyBackend()
        kernels.set_backend("cpu")
        return "numpy reference"


BACKEND_KIND = _install_backend()


def pytest_report_header(config):
    return f"nn tests backend: {BACKEND_KIND}"


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    from nn import utils
    utils.set_random_seed(1234)
    utils.set_floatx("float32")
    yield
    utils.set_floatx("float32")
