"""nn.Input: shapes as Keras prints them, dtypes, and the refusals that keep models concrete."""
import numpy as np
import pytest

from numbanet import nn
from numbanet.nn.layers import Dense, Input, InputLayer


def test_shape_and_dtype():
    x = nn.Input((3, 4), name="pixels")
    assert x.shape == (None, 3, 4) and x.per_sample_shape == (3, 4) and x.ndim == 3
    assert isinstance(x.node.layer, InputLayer) and x.node.layer.name == "pixels"
    assert x.is_float
    ids = Input(5, dtype="int64")
    assert ids.shape == (None, 5) and ids.dtype == "int64" and not ids.is_float
    assert "shape=(None, 3, 4)" in repr(x)


def test_refusals():
    with pytest.raises(ValueError, match="has a None dimension"):
        Input((None, 4))
    with pytest.raises(ValueError, match="dtype must be None, 'float32', 'float64', 'int32' or 'int64'"):
        Input((3,), dtype="float16")
    with pytest.raises(ValueError, match="shape must hold positive ints"):
        Input((0, 2))
    x = Input((3,))
    with pytest.raises(TypeError, match="a KerasTensor is symbolic"):
        np.asarray(x)
    with pytest.raises(TypeError, match="no truth value"):
        bool(x)
    with pytest.raises(TypeError, match=r"layer 'dense.*' \(Dense\) was called on ndarray"):
        Dense(2)(np.zeros((1, 3)))


def test_declared_float_dtype_must_match_the_model():
    x = Input((3,), dtype="float64")
    with pytest.raises(ValueError, match="Input '.*' is declared float64 but the model runs in float32"):
        nn.Model(x, Dense(2)(x))
    assert nn.Model(x, Dense(2)(x), dtype="float64").dtype == np.float64
