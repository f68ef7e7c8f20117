"""nn/trainers/data_adapter.py: what x and y must be; every refusal names the op and says
what was expected and what came (run on the gpu model too, under the simulator)."""
import numpy as np
import pytest

from numbanet import nn
from numbanet.nn.layers import Dense
from toy_models import cnn, images


def _compiled_cnn_data():
    return cnn(), images()


@pytest.mark.simulator
def test_wrong_image_shape():
    m, (x, y) = _compiled_cnn_data()
    with pytest.raises(ValueError, match=r"fit: x has per-sample shape \(6, 6\) but layer 'conv2d.*' expects "
                                         r"\(6, 6, 1\)"):
        m.fit(x[..., 0], y, verbose=0)
    with pytest.raises(ValueError, match=r"predict: x has per-sample shape \(5, 6, 1\)"):
        m.predict(x[:, :5])


@pytest.mark.simulator
def test_lengths_differ():
    m, (x, y) = _compiled_cnn_data()
    with pytest.raises(ValueError, match="x and y have different lengths \\(x has 8 samples, y has 7 samples"):
        m.fit(x, y[:7], verbose=0)


@pytest.mark.simulator
def test_label_out_of_range():
    m, (x, y) = _compiled_cnn_data()
    y = y.copy()
    y[2] = 3
    with pytest.raises(ValueError, match=r"label 3 in y is out of range: layer 'dense.*' has 3 classes, "
                                         r"expected labels in \[0, 2\]"):
        m.evaluate(x, y, verbose=0)
    y[2] = -1
    with pytest.raises(ValueError, match="label -1 in y is out of range"):
        m.fit(x, y, verbose=0)


@pytest.mark.simulator
@pytest.mark.parametrize("bs", [0, -4, 2.5])
def test_bad_batch_size(bs):
    m, (x, y) = _compiled_cnn_data()
    with pytest.raises(ValueError, match=f"fit: batch_size must be a positive int, got {bs}"):
        m.fit(x, y, batch_size=bs, verbose=0)
    with pytest.raises(ValueError, match="predict: batch_size must be a positive int"):
        m.predict(x, batch_size=bs)


@pytest.mark.simulator
def test_empty_data():
    m, (x, y) = _compiled_cnn_data()
    with pytest.raises(ValueError, match=r"fit: x is empty .*x.shape=\(0, 6, 6, 1\)"):
        m.fit(x[:0], y[:0], verbose=0)


@pytest.mark.simulator
def test_nan_in_x():
    m, (x, y) = _compiled_cnn_data()
    x = x.copy()
    x[1, 2, 3, 0] = np.nan
    x[4, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="fit: x holds 2 NaN or infinite values"):
        m.fit(x, y, verbose=0)


@pytest.mark.simulator
def test_wrong_dtypes_are_refused_not_cast():
    m, (x, y) = _compiled_cnn_data()
    with pytest.raises(TypeError, match="fit: x has dtype float64 but the model runs in float32"):
        m.fit(x.astype("float64"), y, verbose=0)
    with pytest.raises(TypeError, match="predict: x has dtype uint8 but the model runs in float32"):
        m.predict((x * 255).astype(np.uint8))
    with pytest.raises(TypeError, match="class labels y must be integers, got dtype float32"):
        m.fit(x, y.astype("float32"), verbose=0)


def test_int_inputs_keep_their_dtype_and_are_checked():
    from numbanet.nn.layers import Embedding, Input
    ids = Input((3,), dtype="int32")
    m = nn.Model(ids, Dense(2)(Embedding(5, 4)(ids)))
    x64 = np.array([[0, 4, 2]], dtype=np.int64)
    assert m.predict(x64).shape == (1, 3, 2)
    with pytest.raises(ValueError, match=r"holds token id 4294967296, out of range for layer .embedding"):
        m.predict(np.array([[0, 2 ** 32, 1]]))
    # An integer input no Embedding reads is bounded by its own dtype (the cast must keep every id).
    unused, x = Input((2,), dtype="int32"), Input((3,))
    m2 = nn.Model([unused, x], Dense(2)(x))
    ok = np.zeros((1, 3), np.float32)
    with pytest.raises(ValueError, match=r"x\[0\] holds id -2147483649, beyond the Input's int32"):
        m2.predict([np.array([[0, -2 ** 31 - 1]]), ok])
    assert m2.predict([np.array([[0, 2 ** 31 - 1]]), ok]).shape == (1, 2)
