"""MaxPooling1D, AveragePooling1D and GlobalMaxPooling1D/2D: values against loops written
here, gradients by finite differences, arguments refused with the layer's name, and the
global poolings' Keras class names and ranks."""
import re

import numpy as np
import pytest

from gradcheck import check_model_gradients
from numbanet.nn.layers import (AveragePooling1D, Conv1D, Conv2D, Dense, Flatten, GlobalAveragePooling1D,
                                GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D, Input, MaxPooling1D)
from numbanet.nn.models import Model, Sequential


def pool1d_ref(x, pool, stride, padding, kind):
    """Windows along the steps; "same" pads TensorFlow's way and averages the cells inside."""
    n, steps, c = x.shape
    if padding == "same":
        out = -(-steps // stride)
        before = max((out - 1) * stride + pool - steps, 0) // 2
    else:
        out, before = (steps - pool) // stride + 1, 0
    y = np.empty((n, out, c))
    for t in range(out):
        lo, hi = max(t * stride - before, 0), min(t * stride - before + pool, steps)
        y[:, t] = x[:, lo:hi].max(axis=1) if kind == "max" else x[:, lo:hi].mean(axis=1)
    return y


@pytest.mark.simulator
@pytest.mark.parametrize("cls,kind", [(MaxPooling1D, "max"), (AveragePooling1D, "avg")])
@pytest.mark.parametrize("pool,strides,padding", [(2, None, "valid"), (3, 1, "same"), (3, 2, "same"), ((2,), (3,),
                                                                                                          "valid")])
def test_pool1d_forward(nnbe, cls, kind, pool, strides, padding):
    m = Sequential([Input((7, 3)), cls(pool, strides=strides, padding=padding)], dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, 7, 3))
    p = pool[0] if isinstance(pool, tuple) else pool
    s = p if strides is None else (strides[0] if isinstance(strides, tuple) else strides)
    want = pool1d_ref(x, p, s, padding, kind)
    assert m.output_shape == want.shape[1:]
    np.testing.assert_allclose(m.predict(x, verbose=0), want, rtol=1e-12, atol=1e-12)


@pytest.mark.simulator
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_max_pooling_forward(nnbe, keepdims):
    seq, img = Input((5, 3)), Input((3, 4, 2))
    m = Model([seq, img], [GlobalMaxPooling1D(keepdims=keepdims)(seq), GlobalMaxPooling2D(keepdims=keepdims)(img)],
              dtype="float64")
    rng = np.random.default_rng(1)
    xs, xi = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 3, 4, 2))
    ys, yi = m.predict([xs, xi], verbose=0)
    want_s = np.array([[max(xs[n, t, c] for t in range(5)) for c in range(3)] for n in range(2)])
    want_i = np.array([[max(xi[n, h, w, c] for h in range(3) for w in range(4)) for c in range(2)] for n in range(2)])
    if keepdims:
        want_s, want_i = want_s[:, None, :], want_i[:, None, None, :]
    np.testing.assert_array_equal(ys, want_s)
    np.testing.assert_array_equal(yi, want_i)


@pytest.mark.simulator
def test_gradients(nnbe):
    seq, img = Input((8, 2)), Input((4, 4, 1))
    a = MaxPooling1D(2)(Conv1D(3, 2, padding="causal", activation="tanh")(seq))
    a = GlobalMaxPooling1D()(AveragePooling1D(3, strides=1, padding="same")(a))
    b = GlobalMaxPooling2D()(Conv2D(2, 2, activation="tanh")(img))
    m = Model([seq, img], [Dense(2)(a), Dense(1)(b)], dtype="float64")
    m.compile("sgd", ["mse", "mse"])
    rng = np.random.default_rng(2)
    check_model_gradients(m, [rng.standard_normal((3, 8, 2)), rng.standard_normal((3, 4, 4, 1))],
                          [rng.standard_normal((3, 2)), rng.standard_normal((3, 1))])


def test_bad_arguments(nnbe):
    with pytest.raises(ValueError, match=r"MaxPooling1D: pool_size must be a positive int or a tuple of one, got 0"):
        MaxPooling1D(0)
    with pytest.raises(ValueError, match=r"AveragePooling1D: padding must be 'valid' or 'same', got 'causal'"):
        AveragePooling1D(padding="causal")
    with pytest.raises(ValueError, match=r"MaxPooling1D: only data_format='channels_last' is supported"):
        MaxPooling1D(data_format="channels_first")
    with pytest.raises(ValueError, match=r"layer 'p' \(MaxPooling1D\) expects sequences of shape \(steps, channels\)"):
        MaxPooling1D(name="p")(Input((4, 4, 1)))
    with pytest.raises(ValueError, match=r"layer 'q' \(AveragePooling1D\): window 1x5 does not fit the 1x4 input"):
        AveragePooling1D(5, name="q")(Input((4, 1)))
    with pytest.raises(ValueError, match=r"layer 'g' \(GlobalMaxPooling2D\) expects per-sample shape \(height, width, "
                                         r"channels\), got \(4, 1\)"):
        GlobalMaxPooling2D(name="g")(Input((4, 1)))
    with pytest.raises(ValueError, match=r"GlobalMaxPooling1D: only data_format='channels_last' is supported"):
        GlobalMaxPooling1D(data_format="channels_first")


@pytest.mark.parametrize("cls,name,snake,rank", [
    (GlobalMaxPooling1D, "GlobalMaxPooling1D", "global_max_pooling1d", 1),
    (GlobalMaxPooling2D, "GlobalMaxPooling2D", "global_max_pooling2d", 2),
    (GlobalAveragePooling1D, "GlobalAveragePooling1D", "global_average_pooling1d", 1),
    (GlobalAveragePooling2D, "GlobalAveragePooling2D", "global_average_pooling2d", 2)])
def test_global_pooling_classes_carry_keras_s_names_and_their_rank(cls, name, snake, rank):
    # Keras's class name picks the .keras entry, and its snake case the default layer name.
    assert cls.__name__ == name and cls.__module__ == "numbanet.nn.layers.pooling"
    assert re.fullmatch(snake + r"(_\d+)?", cls().name)
    per_sample = (4,) * rank + (3,)
    assert cls().compute_output_shape(per_sample) == (3,)
    assert cls(keepdims=True).compute_output_shape(per_sample) == (1,) * rank + (3,)
    with pytest.raises(ValueError, match=r"\(steps, channels\)" if rank == 1 else r"\(height, width, channels\)"):
        cls().compute_output_shape((4,) * (3 - rank) + (3,))
