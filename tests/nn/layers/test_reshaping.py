"""Reshape and Permute: values against NumPy, gradients by finite differences, Keras's 1-based dims."""
import numpy as np
import pytest

from gradcheck import check_model_gradients
from numbanet.nn.layers import Dense, Input, Permute, Reshape
from numbanet.nn.models import Model


@pytest.mark.simulator
def test_reshape_with_inferred_axis(nnbe):
    x = Input((2, 6))
    r = Reshape((3, -1))
    m = Model(x, r(x), dtype="float64")
    assert m.output_shape == (3, 4)
    xs = np.arange(24.0).reshape(2, 2, 6)
    np.testing.assert_array_equal(m.predict(xs), xs.reshape(2, 3, 4))


@pytest.mark.simulator
def test_permute_is_numpy_transpose_with_batch_first(nnbe):
    x = Input((2, 3, 4))
    m = Model(x, Permute((3, 1, 2))(x), dtype="float64")
    xs = np.random.default_rng(0).standard_normal((5, 2, 3, 4))
    np.testing.assert_array_equal(m.predict(xs), xs.transpose(0, 3, 1, 2))


@pytest.mark.simulator
def test_gradients(nnbe):
    x = Input((2, 3))
    h = Permute((2, 1))(Dense(4)(x))             # (4, 2)
    h = Reshape((8,))(h)
    m = Model(x, Dense(2)(h), dtype="float64")
    m.compile("sgd", "mse")
    rng = np.random.default_rng(1)
    check_model_gradients(m, rng.standard_normal((3, 2, 3)), rng.standard_normal((3, 2)))


def test_bad_arguments(nnbe):
    with pytest.raises(ValueError, match=r"cannot reshape per-sample shape \(2, 3\) \(6 values\) to \(4,\)"):
        Reshape((4,))(Input((2, 3)))
    with pytest.raises(ValueError, match="at most one -1"):
        Reshape((-1, -1))
    with pytest.raises(ValueError, match="Reshape: target_shape must be a tuple of ints, got 6"):
        Reshape(6)
    with pytest.raises(ValueError, match=r"Permute: dims must be a tuple of ints, got \[None, 1\]"):
        Permute([None, 1])
    with pytest.raises(ValueError, match=r"dims must be a permutation of 1..2 \(axis 0 is the batch\), got \(0, 1\)"):
        Permute((0, 1))
    with pytest.raises(ValueError, match=r"dims \(2, 1\) need a per-sample shape of 2 axes, got \(2, 3, 4\)"):
        Permute((2, 1))(Input((2, 3, 4)))
