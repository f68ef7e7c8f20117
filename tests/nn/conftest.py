"""nn tests: the library RNG reseeded and float32 restored around every test."""
import pytest


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    from numbanet.nn import utils
    utils.set_random_seed(1234)
    utils.set_floatx("float32")
    yield
    utils.set_floatx("float32")


@pytest.fixture
def nnbe(be, monkeypatch):
    """The backend under test made the process default while the test runs, so that models
    built in it (Model(...), Sequential with an input shape) land on it."""
    from numbanet import kernels
    monkeypatch.setattr(kernels, "_default", kernels._default)
    kernels.set_backend(be.name)
    return be
