"""nn/layers/arguments.py: the constructor-argument rules the layers share."""
import numpy as np
import pytest

from numbanet.nn.layers import Dense, Permute, Reshape
from numbanet.nn.layers.arguments import int_tuple, single


def test_int_tuple_keeps_ints_and_numpy_integers():
    got = int_tuple("Reshape", "target_shape", [np.int64(2), 3, np.uint8(4)])
    assert got == (2, 3, 4) and all(type(v) is int for v in got)


@pytest.mark.parametrize("value", [(2.0, 3), (2.7,), ("2", 3), (None, 4), (True, 3), 6, None])
def test_int_tuple_refuses_what_is_not_a_sequence_of_ints(value):
    # A float is not truncated and a string not parsed: the layer says what it got.
    with pytest.raises(ValueError, match=r"Reshape: target_shape must be a tuple of ints, got "):
        int_tuple("Reshape", "target_shape", value)


@pytest.mark.parametrize("value,want", [(3, 3), ((5,), 5), ([np.int32(2)], 2)])
def test_single_takes_an_int_or_a_tuple_of_one(value, want):
    assert single("Conv1D", "kernel_size", value) == want


@pytest.mark.parametrize("value", [0, 2.0, (3, 3), "3", True])
def test_single_refuses_the_rest(value):
    with pytest.raises(ValueError, match="Conv1D: kernel_size must be a positive int or a tuple of one"):
        single("Conv1D", "kernel_size", value)


def test_the_layers_refuse_float_shapes():
    with pytest.raises(ValueError, match=r"input_shape must be a tuple of ints, got \(3\.7,\)"):
        Dense(4, input_shape=(3.7,))
    with pytest.raises(ValueError, match=r"Reshape: target_shape must be a tuple of ints, got \(2\.0, 3\)"):
        Reshape((2.0, 3))
    with pytest.raises(ValueError, match=r"Permute: dims must be a tuple of ints, got \(1\.0, 2\)"):
        Permute((1.0, 2))
