"""UpSampling2D: repeats against NumPy, gradients by finite differences, bilinear refused."""
import numpy as np
import pytest

from gradcheck import check_model_gradients
from numbanet.nn.layers import Conv2D, Dense, Flatten, Input, UpSampling2D
from numbanet.nn.models import Sequential


@pytest.mark.simulator
@pytest.mark.parametrize("size", [(2, 2), (1, 3), 2])
def test_forward_repeats_each_pixel(nnbe, size):
    m = Sequential([Input((2, 3, 2)), UpSampling2D(size)], dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 2))
    sh, sw = (size, size) if isinstance(size, int) else size
    want = np.repeat(np.repeat(x, sh, axis=1), sw, axis=2)
    assert m.output_shape == want.shape[1:]
    np.testing.assert_array_equal(m.predict(x, verbose=0), want)


@pytest.mark.simulator
def test_gradients(nnbe):
    m = Sequential([Input((3, 2, 2)), Conv2D(2, 2, activation="tanh"), UpSampling2D((2, 3)), Flatten(), Dense(2)],
                   dtype="float64")
    m.compile("sgd", "mse")
    rng = np.random.default_rng(1)
    check_model_gradients(m, rng.standard_normal((3, 3, 2, 2)), rng.standard_normal((3, 2)))


def test_bad_arguments(nnbe):
    with pytest.raises(ValueError, match=r"UpSampling2D: only interpolation='nearest' is supported, got 'bilinear'"):
        UpSampling2D(interpolation="bilinear")
    with pytest.raises(ValueError, match=r"UpSampling2D: size must hold positive ints, got \(0, 2\)"):
        UpSampling2D((0, 2))
    with pytest.raises(ValueError, match=r"UpSampling2D: only data_format='channels_last' is supported"):
        UpSampling2D(data_format="channels_first")
    with pytest.raises(ValueError, match=r"layer 'u' \(UpSampling2D\) expects images of shape"):
        UpSampling2D(name="u")(Input((4, 1)))
