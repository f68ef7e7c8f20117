"""Add and Concatenate: values against NumPy, gradients through fan-out by finite differences."""
import numpy as np
import pytest

from gradcheck import check_model_gradients
from numbanet.nn.layers import Add, Concatenate, Dense, Input
from numbanet.nn.models import Model


@pytest.mark.simulator
def test_add_sums_any_number_of_inputs(nnbe):
    a, b, c = Input((2, 3)), Input((2, 3)), Input((2, 3))
    m = Model([a, b, c], Add()([a, b, c]), dtype="float64")
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((4, 2, 3)) for _ in range(3)]
    np.testing.assert_array_equal(m.predict(xs), xs[0] + xs[1] + xs[2])


@pytest.mark.simulator
@pytest.mark.parametrize("axis", [-1, 1, 2, -2])
def test_concatenate_axes(nnbe, axis):
    a, b = Input((2, 3)), Input((2, 3))
    m = Model([a, b], Concatenate(axis=axis)([a, b]), dtype="float64")
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((4, 2, 3)) for _ in range(2)]
    np.testing.assert_array_equal(m.predict(xs), np.concatenate(xs, axis=axis))


@pytest.mark.simulator
def test_gradients_through_residual_and_concatenation(nnbe):
    x = Input((3,))
    h = Dense(3, activation="tanh")(x)
    r = Add()([h, Dense(3)(h)])                  # h is read twice: its gradient is the sum
    c = Concatenate()([r, Dense(2, activation="sigmoid")(h)])
    m = Model(x, Dense(2)(c), dtype="float64")
    m.compile("sgd", "mse")
    rng = np.random.default_rng(2)
    assert check_model_gradients(m, rng.standard_normal((5, 3)), rng.standard_normal((5, 2))) > 0


def test_bad_merges(nnbe):
    a = Input((2, 3))
    with pytest.raises(ValueError, match=r"input 1 has per-sample shape \(3, 2\) but input 0 has \(2, 3\)"):
        Add()([a, Input((3, 2))])
    with pytest.raises(ValueError, match="needs a list of at least 2 tensors, got 1"):
        Add()([a])
    with pytest.raises(TypeError, match="is called on a list of tensors, got KerasTensor"):
        Add()(a)
    with pytest.raises(ValueError, match=r"input 1 has per-sample shape \(3, 3\), which does not match input 0's "
                                         r"\(2, 3\) outside axis -1"):
        Concatenate()([a, Input((3, 3))])
    with pytest.raises(ValueError, match="axis must be a non-zero int"):
        Concatenate(axis=0)
