"""Every layer with parameters, checked by finite differences in float64 through the model API,
plus shapes, configs and the layers' own input checks."""
import numpy as np
import pytest

from gradcheck import check_model_gradients
from numbanet.nn import regularizers
from numbanet.nn.layers import Activation, AveragePooling2D, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from numbanet.nn.models import Sequential


def _data(shape, classes, n=6, seed=0, onehot=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + shape)
    y = rng.integers(0, classes, n)
    if onehot:
        y = np.eye(classes)[y]
    return x, y


def test_dense_with_bias_softmax_crossentropy_gradients():
    m = Sequential([Dense(5, activation="tanh", input_shape=(4,)), Dense(3, activation="softmax")], dtype="float64")
    m.compile("sgd", "categorical_crossentropy")
    x, y = _data((4,), 3)
    assert check_model_gradients(m, x, y) == 4 * 5 + 5 + 5 * 3 + 3


def test_dense_without_bias_with_regularizers_mse_gradients():
    m = Sequential([Dense(4, activation="sigmoid", use_bias=False, kernel_regularizer=regularizers.l1_l2(0.01, 0.02),
                          input_shape=(3,)),
                    Dense(2, kernel_regularizer=regularizers.l2(0.05), bias_regularizer=regularizers.l1(0.03))],
                   dtype="float64")
    m.compile("sgd", "mse")
    x = np.random.default_rng(1).standard_normal((5, 3))
    y = np.random.default_rng(2).standard_normal((5, 2))
    check_model_gradients(m, x, y)
    # the penalty is part of the reported loss, as in Keras
    w = m.get_weights()
    pen = 0.01 * np.abs(w[0]).sum() + 0.02 * (w[0] ** 2).sum() + 0.05 * (w[1] ** 2).sum() + 0.03 * np.abs(w[2]).sum()
    plain = Sequential([Dense(4, activation="sigmoid", use_bias=False, input_shape=(3,)), Dense(2)], dtype="float64")
    plain.compile("sgd", "mse")
    plain.set_weights(w)
    assert np.isclose(m.evaluate(x, y, verbose=0), plain.evaluate(x, y, verbose=0) + pen, rtol=1e-12)


def test_conv_with_bias_maxpool_gradients():
    m = Sequential([Conv2D(3, (3, 3), activation="relu", input_shape=(6, 6, 2)), MaxPooling2D((2, 2)), Flatten(),
                    Dense(3, activation="softmax")], dtype="float64")
    m.compile("adam", "sparse_categorical_crossentropy")
    x, y = _data((6, 6, 2), 3)
    check_model_gradients(m, x, y)


def test_two_convs_fused_and_separate_activation_gradients():
    """conv2d_backward undoes the activation conv2d applied (sigmoid here, on a layer that
    needs dx); an activation conv2d cannot apply (gelu) still takes the separate pass."""
    m = Sequential([Conv2D(3, 3, padding="same", activation="gelu", input_shape=(6, 5, 2)),
                    Conv2D(4, 3, strides=(2, 1), activation="sigmoid"), Flatten(),
                    Dense(3, activation="softmax")], dtype="float64")
    m.compile("sgd", "sparse_categorical_crossentropy")
    x, y = _data((6, 5, 2), 3, seed=7)
    check_model_gradients(m, x, y)


def test_conv_same_strided_no_bias_regularized_avgpool_gradients():
    m = Sequential([Conv2D(2, 3, strides=2, padding="same", activation="tanh", use_bias=False,
                           kernel_regularizer=regularizers.l2(0.1), input_shape=(7, 7, 1)),
                    AveragePooling2D((2, 2), padding="same"), Flatten(), Dense(2)], dtype="float64")
    m.compile("sgd", "mean_squared_error")
    assert m.layers[0].output_shape == (4, 4, 2) and m.layers[1].output_shape == (2, 2, 2)
    x = np.random.default_rng(3).standard_normal((4, 7, 7, 1))
    y = np.random.default_rng(4).standard_normal((4, 2))
    check_model_gradients(m, x, y)


@pytest.mark.simulator
def test_dense_output_shape_and_forward_match_numpy():
    m = Sequential([Dense(3, activation="relu", input_shape=(4,))], dtype="float64")
    x = np.random.default_rng(5).standard_normal((7, 4))
    w, b = m.get_weights()
    b = np.array([0.1, -0.2, 0.3])
    m.set_weights([w, b])
    np.testing.assert_allclose(m.predict(x), np.maximum(x @ w + b, 0), rtol=1e-12)


@pytest.mark.simulator
def test_conv_forward_matches_loop_reference():
    m = Sequential([Conv2D(2, (2, 3), input_shape=(4, 5, 3))], dtype="float64")
    w, _ = m.get_weights()
    b = np.array([0.5, -1.0])
    m.set_weights([w, b])
    x = np.random.default_rng(6).standard_normal((2, 4, 5, 3))
    want = np.zeros((2, 3, 3, 2))
    for i in range(3):
        for j in range(3):
            want[:, i, j] = np.einsum("nabc,abcf->nf", x[:, i:i + 2, j:j + 3], w) + b
    np.testing.assert_allclose(m.predict(x), want, rtol=1e-12)
    assert w.shape == (2, 3, 3, 2)


def test_pooling_and_flatten_shapes():
    m = Sequential([MaxPooling2D(pool_size=(2, 2), input_shape=(5, 5, 3)), Flatten()])
    assert m.layers[0].output_shape == (2, 2, 3) and m.output_shape == (12,)
    x = np.random.default_rng(7).standard_normal((2, 5, 5, 3)).astype("float32")
    want = x[:, :4, :4].reshape(2, 2, 2, 2, 2, 3).max(axis=(2, 4)).reshape(2, 12)
    np.testing.assert_array_equal(m.predict(x), want)


@pytest.mark.parametrize("name,ref", [("relu", lambda z: np.maximum(z, 0)), ("sigmoid", lambda z: 1 / (1 + np.exp(-z))),
                                      ("tanh", np.tanh), ("linear", lambda z: z),
                                      ("softmax", lambda z: np.exp(z) / np.exp(z).sum(1, keepdims=True))])
def test_activation_layer_forward(name, ref):
    m = Sequential([Activation(name, input_shape=(4,))], dtype="float64")
    x = np.random.default_rng(8).standard_normal((3, 4))
    np.testing.assert_allclose(m.predict(x), ref(x), rtol=1e-12, atol=1e-15)


def test_activation_layer_softmax_output_gradients():
    m = Sequential([Dense(3, input_shape=(4,)), Activation("softmax")], dtype="float64")
    m.compile("sgd", "categorical_crossentropy")
    assert m._fused
    x, y = _data((4,), 3, onehot=True)
    check_model_gradients(m, x, y)


@pytest.mark.simulator
def test_dropout_is_identity_at_inference_and_scales_in_training():
    m = Sequential([Dropout(0.5, input_shape=(500,))])
    be, layer = m.be, m.layers[0]
    x = np.ones((2, 500), dtype="float32")
    np.testing.assert_array_equal(m.predict(x), x)
    y = be.to_numpy(layer.forward(be.asarray(x), training=True))
    kept = y != 0
    assert 0.4 < kept.mean() < 0.6
    np.testing.assert_allclose(y[kept], 2.0)
    dx = be.to_numpy(layer.backward(be.asarray(np.ones_like(x))))
    np.testing.assert_array_equal(dx, y)
    # a fresh seed per step: the next mask differs
    assert not np.array_equal(be.to_numpy(layer.forward(be.asarray(x), training=True)), y)


@pytest.mark.simulator
def test_layer_argument_errors():
    with pytest.raises(ValueError, match="units must be a positive int, got 0"):
        Dense(0)
    with pytest.raises(ValueError, match="activation must be one of"):
        Dense(3, activation="elu")
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        Conv2D(2, 3, padding="full")
    with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\), got 1.5"):
        Dropout(1.5)
    with pytest.raises(ValueError, match="initializer must be one of"):
        Dense(2, kernel_initializer="nope")


def test_dense_on_images_acts_on_the_last_axis():
    # Keras's rule: Dense maps the last axis of an input of any rank.
    m = Sequential([Conv2D(1, 1, input_shape=(4, 4, 1)), Dense(2)])
    assert m.output_shape == (4, 4, 2)


def test_conv_window_larger_than_input():
    with pytest.raises(ValueError, match="window 5x5 does not fit the 3x3 input"):
        Sequential([Conv2D(1, 5, input_shape=(3, 3, 1))])


def test_glorot_uniform_limits_and_zero_bias():
    m = Sequential([Conv2D(32, (3, 3), input_shape=(28, 28, 1)), Flatten(), Dense(50)])
    k, b, dk, db = m.get_weights()
    lim_conv = np.sqrt(6 / (9 * 1 + 9 * 32))
    assert np.abs(k).max() <= lim_conv and np.abs(k).max() > 0.9 * lim_conv
    lim_dense = np.sqrt(6 / (26 * 26 * 32 + 50))
    assert np.abs(dk).max() <= lim_dense and np.abs(dk).max() > 0.9 * lim_dense
    assert not b.any() and not db.any()
    assert k.dtype == np.float32


# --------------------------------------------------------------------------- Dense on N-D, global average pooling

@pytest.mark.simulator
def test_dense_maps_the_last_axis_of_a_sequence():
    from numbanet.nn.layers import Input
    from numbanet.nn.models import Model
    x = Input((3, 4))
    m = Model(x, Dense(5, activation="tanh")(x), dtype="float64")
    rng = np.random.default_rng(0)
    w = [rng.standard_normal((4, 5)), rng.standard_normal(5)]
    m.set_weights(w)
    xs = rng.standard_normal((2, 3, 4))
    np.testing.assert_allclose(m.predict(xs), np.tanh(np.einsum("btd,du->btu", xs, w[0]) + w[1]), rtol=1e-12)
    m2 = Model(x, Dense(2)(Dense(5, activation="relu")(x)), dtype="float64")
    m2.compile("sgd", "mse")
    check_model_gradients(m2, xs, rng.standard_normal((2, 3, 2)))


@pytest.mark.simulator
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_average_pooling_1d_and_2d(keepdims):
    from numbanet.nn.layers import GlobalAveragePooling1D, GlobalAveragePooling2D, Input
    from numbanet.nn.models import Model
    rng = np.random.default_rng(1)
    seq, img = Input((5, 3)), Input((4, 2, 3))
    g1, g2 = GlobalAveragePooling1D(keepdims=keepdims)(seq), GlobalAveragePooling2D(keepdims=keepdims)(img)
    m = Model([seq, img], [g1, g2], dtype="float64")
    xs, xi = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 4, 2, 3))
    a, b = m.predict([xs, xi])
    np.testing.assert_allclose(a, xs.mean(1, keepdims=keepdims), rtol=1e-12)
    np.testing.assert_allclose(b, xi.mean((1, 2), keepdims=keepdims), rtol=1e-12)
    grad = Model(seq, Dense(2)(GlobalAveragePooling1D()(Dense(3)(seq))), dtype="float64")
    grad.compile("sgd", "mse")
    check_model_gradients(grad, xs, rng.standard_normal((2, 2)))


def test_global_average_pooling_refuses_other_layouts():
    from numbanet.nn.layers import GlobalAveragePooling1D, GlobalAveragePooling2D, Input
    with pytest.raises(ValueError, match="only data_format='channels_last'"):
        GlobalAveragePooling2D(data_format="channels_first")
    with pytest.raises(ValueError, match=r"expects per-sample shape \(steps, channels\), got \(4, 2, 3\)"):
        GlobalAveragePooling1D()(Input((4, 2, 3)))


def test_add_weight_records_regularizers_by_weight_name(nnbe):
    from numbanet.nn.layers import LSTM, Bidirectional, Input
    from numbanet.nn.models import Model
    reg = regularizers.l2(0.1)
    d = Dense(3, kernel_regularizer=reg)
    x = Input((4, 2))
    b = Bidirectional(LSTM(2, recurrent_regularizer=reg, bias_regularizer=reg))
    Model(x, d(b(x)))
    assert d.regularizers == {"kernel": reg}
    # (Bidirectional rebuilds its halves from the layer's config: equal regularizers, new objects)
    assert {k: r.get_config() for k, r in b.regularizers.items()} == {
        k: {"l1": 0.0, "l2": 0.1} for k in ("forward/recurrent_kernel", "forward/bias", "backward/recurrent_kernel",
                                            "backward/bias")}
    assert set(b.regularizers) <= set(b.params)
    # LSTM's bias starts from a host array (the forget gate's ones), passed as the initializer
    f_bias = b.be.to_numpy(b.params["forward/bias"])
    assert np.array_equal(f_bias, np.r_[np.zeros(2), np.ones(2), np.zeros(4)].astype(f_bias.dtype))


def test_add_weight_refuses_an_initial_value_of_another_shape(nnbe):
    layer = Dense(2)
    layer.be, layer.dtype = nnbe, np.dtype("float32")
    with pytest.raises(ValueError, match=r"layer 'dense\w*': the initial value of w has shape \(3,\), expected \(2,\)"):
        layer.add_weight("w", (2,), np.zeros(3))
