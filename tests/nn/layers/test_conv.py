"""Conv1D, Conv2D's dilation and Conv2DTranspose: Keras's weight shapes, values against the
loops of tests/conv_references.py, gradients by finite differences, and arguments refused
with the layer's name."""
import numpy as np
import pytest

from conv_references import dilated_geometry, dilated_ref, transpose_ref
from gradcheck import check_model_gradients
from numbanet.nn.layers import Conv1D, Conv2D, Conv2DTranspose, Dense, Flatten, Input
from numbanet.nn.models import Model, Sequential, load_model


def conv1d_ref(x, kernel, bias, stride, dilation, padding):
    """Keras's Conv1D: the shared 2-D reference on a height-1 image."""
    oh, ow, pt, pl = dilated_geometry(1, x.shape[1], 1, kernel.shape[0], (1, stride), (1, dilation), padding)
    return dilated_ref(x[:, None], kernel[None], bias, (1, stride), (1, dilation), pt, pl, oh, ow)[:, 0]


@pytest.mark.simulator
@pytest.mark.parametrize("padding,stride,dilation", [("valid", 1, 1), ("same", 2, 1), ("causal", 1, 2),
                                                     ("causal", 2, 1), ("same", 1, 3)])
def test_conv1d_forward(nnbe, padding, stride, dilation):
    layer = Conv1D(4, 3, strides=stride, padding=padding, dilation_rate=dilation, activation="relu")
    m = Sequential([Input((9, 2)), layer], dtype="float64")
    kernel, bias = layer.get_weights()
    assert kernel.shape == (3, 2, 4) and bias.shape == (4,)
    rng = np.random.default_rng(0)
    bias = rng.standard_normal(4)
    layer_weights = [kernel, bias]
    m.set_weights(layer_weights)
    x = rng.standard_normal((2, 9, 2))
    want = np.maximum(conv1d_ref(x, kernel, bias, stride, dilation, padding), 0)
    assert m.output_shape == want.shape[1:]
    np.testing.assert_allclose(m.predict(x, verbose=0), want, rtol=1e-12, atol=1e-12)


@pytest.mark.simulator
@pytest.mark.parametrize("padding", ["causal", "same"])
def test_conv1d_gradients(nnbe, padding):
    m = Sequential([Input((7, 3)), Conv1D(3, 3, padding=padding, dilation_rate=2, activation="tanh"),
                    Conv1D(2, 2, strides=2, activation="relu"), Flatten(), Dense(2)], dtype="float64")
    m.compile("sgd", "mse")
    rng = np.random.default_rng(1)
    check_model_gradients(m, rng.standard_normal((3, 7, 3)), rng.standard_normal((3, 2)))


@pytest.mark.simulator
@pytest.mark.parametrize("padding,dilation", [("valid", (2, 2)), ("same", (2, 1)), ("same", (1, 3))])
def test_conv2d_dilation_forward(nnbe, padding, dilation):
    layer = Conv2D(3, (3, 2), padding=padding, dilation_rate=dilation, activation="relu")
    m = Sequential([Input((7, 6, 2)), layer], dtype="float64")
    rng = np.random.default_rng(4)
    kernel, bias = layer.get_weights()[0], rng.standard_normal(3)
    m.set_weights([kernel, bias])
    x = rng.standard_normal((2, 7, 6, 2))
    oh, ow, pt, pl = dilated_geometry(7, 6, 3, 2, (1, 1), dilation, padding)
    want = np.maximum(dilated_ref(x, kernel, bias, (1, 1), dilation, pt, pl, oh, ow), 0)
    assert m.output_shape == want.shape[1:]
    np.testing.assert_allclose(m.predict(x, verbose=0), want, rtol=1e-12, atol=1e-12)


@pytest.mark.simulator
def test_conv2d_dilation_gradients(nnbe):
    m = Sequential([Input((6, 6, 2)), Conv2D(3, 3, padding="same", dilation_rate=(2, 1), activation="tanh"),
                    Conv2D(2, 2, dilation_rate=2), Flatten(), Dense(2)], dtype="float64")
    m.compile("sgd", "mse")
    rng = np.random.default_rng(5)
    check_model_gradients(m, rng.standard_normal((2, 6, 6, 2)), rng.standard_normal((2, 2)))


def test_conv2d_dilation_survives_a_keras_file(tmp_path):
    m = Sequential([Input((6, 6, 1)), Conv2D(2, 3, dilation_rate=(2, 1), name="dilated")])
    path = str(tmp_path / "m.keras")
    m.save(path)
    back = load_model(path)
    assert back.get_layer("dilated").dilation_rate == (2, 1)
    x = np.random.default_rng(6).standard_normal((2, 6, 6, 1)).astype("float32")
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))


@pytest.mark.simulator
@pytest.mark.parametrize("kernel_size,strides,padding,output_padding", [
    ((3, 3), (2, 2), "same", None), ((3, 2), (2, 2), "valid", None), ((2, 2), (3, 3), "valid", None),
    ((3, 3), (2, 2), "same", (1, 0)), ((4, 4), (2, 2), "same", None), ((3, 3), (1, 1), "valid", (0, 0))])
def test_conv2d_transpose_forward(nnbe, kernel_size, strides, padding, output_padding):
    layer = Conv2DTranspose(4, kernel_size, strides=strides, padding=padding, output_padding=output_padding)
    m = Sequential([Input((3, 2, 2)), layer], dtype="float64")
    kernel, bias = layer.get_weights()
    assert kernel.shape == kernel_size + (4, 2) and bias.shape == (4,)
    rng = np.random.default_rng(2)
    bias = rng.standard_normal(4)
    m.set_weights([kernel, bias])
    x = rng.standard_normal((2, 3, 2, 2))
    want = transpose_ref(x, kernel, bias, strides, padding, output_padding, (1, 1))
    assert m.output_shape == want.shape[1:]
    np.testing.assert_allclose(m.predict(x, verbose=0), want, rtol=1e-12, atol=1e-12)


@pytest.mark.simulator
def test_conv2d_transpose_gradients(nnbe):
    x = Input((3, 3, 2))
    h = Conv2DTranspose(3, 3, strides=2, padding="same", activation="sigmoid")(x)
    h = Conv2DTranspose(2, (2, 3), output_padding=1, strides=2, use_bias=False)(h)
    m = Model(x, Dense(2)(Flatten()(h)), dtype="float64")
    m.compile("sgd", "mse")
    rng = np.random.default_rng(3)
    check_model_gradients(m, rng.standard_normal((2, 3, 3, 2)), rng.standard_normal((2, 2)))


def test_bad_arguments(nnbe):
    with pytest.raises(ValueError, match=r"Conv1D: padding must be 'valid', 'same' or 'causal', got 'full'"):
        Conv1D(2, 3, padding="full")
    with pytest.raises(ValueError, match=r"Conv1D: kernel_size must be a positive int or a tuple of one, got \(3, 3\)"):
        Conv1D(2, (3, 3))
    with pytest.raises(ValueError, match=r"Conv1D: strides > 1 cannot be combined with dilation_rate > 1"):
        Conv1D(2, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match=r"Conv1D: only data_format='channels_last' is supported"):
        Conv1D(2, 3, data_format="channels_first")
    with pytest.raises(ValueError, match=r"Conv1D: filters must be a positive int, got 0"):
        Conv1D(0, 3)
    with pytest.raises(ValueError, match=r"layer 'c1' \(Conv1D\) expects sequences of shape \(steps, channels\)"):
        Conv1D(2, 3, name="c1")(Input((4, 4, 1)))
    with pytest.raises(ValueError, match=r"layer 'c2' \(Conv1D\): window 1x5 does not fit the 1x4 input"):
        Conv1D(2, 3, dilation_rate=2, name="c2")(Input((4, 1)))
    with pytest.raises(ValueError, match=r"Conv2D: strides > 1 cannot be combined with dilation_rate > 1"):
        Conv2D(2, 3, strides=(1, 2), dilation_rate=2)
    with pytest.raises(ValueError, match=r"Conv2D: only data_format='channels_last' is supported"):
        Conv2D(2, 3, data_format="channels_first")
    with pytest.raises(ValueError, match=r"layer 'c3' \(Conv2D\): window 5x1 does not fit the 4x4 input"):
        Conv2D(2, (3, 1), dilation_rate=2, name="c3")(Input((4, 4, 1)))
    with pytest.raises(ValueError, match=r"Conv2DTranspose: output_padding must be smaller than the stride"):
        Conv2DTranspose(2, 3, strides=2, output_padding=2)
    with pytest.raises(ValueError, match=r"Conv2DTranspose: padding must be 'valid' or 'same', got 'causal'"):
        Conv2DTranspose(2, 3, padding="causal")
    with pytest.raises(ValueError, match=r"layer 't' \(Conv2DTranspose\) expects images of shape"):
        Conv2DTranspose(2, 3, name="t")(Input((4, 1)))
