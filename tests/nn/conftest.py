"""nn tests: the library RNG reseeded and float32 restored around every test."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    from nn import utils
    utils.set_random_seed(1234)
    utils.set_floatx("float32")
    yield
    utils.set_floatx("float32")
