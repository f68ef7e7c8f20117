"""Test configuration: which backends the kernel tests run on.

NUMBANET_TEST_BACKENDS (comma-separated, default "cpu") picks them. The gpu backend is
tested in its own pytest process with NUMBA_ENABLE_CUDASIM=1 set before numba.cuda is
imported (see .ci/run), since the simulator must be chosen at import time.
"""
import os

import pytest

BACKENDS = [b.strip() for b in os.environ.get("NUMBANET_TEST_BACKENDS", "cpu").split(",") if b.strip()]


def simulated():
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


@pytest.fixture(params=BACKENDS)
def be(request):
    from numbanet import kernels
    return kernels.get_backend(request.param)


@pytest.fixture
def small(be):
    """True where shapes must stay tiny: the CUDA simulator runs Python per thread."""
    return be.name == "gpu" and simulated()
