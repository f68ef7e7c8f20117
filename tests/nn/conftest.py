"""nn tests: the library RNG reseeded and float32 restored around every test."""
import pytest


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    from numbanet.nn import utils
    utils.set_random_seed(1234)
    utils.set_floatx("float32")
    yield
    utils.set_floatx("float32")
