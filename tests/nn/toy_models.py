"""Small models and data shared by the tests of nn/models.py, nn/graph.py, nn/trainers/,
nn/summary_utils.py and the gpu training and profiling tests."""
import numpy as np

from numbanet import kernels, nn
from numbanet.nn.layers import Conv2D, Dense, Flatten, MaxPooling2D
from numbanet.nn.models import Sequential


def blobs(n=200, seed=0):
    """Two Gaussian blobs in 2-D, linearly separable."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.uint8)
    x = rng.standard_normal((n, 2)) * 0.5 + np.where(y[:, None] == 1, 2.0, -2.0)
    return x.astype("float32"), y


def mlp(**kw):
    m = Sequential([Dense(8, activation="relu", input_shape=(2,)), Dense(2, activation="softmax")], **kw)
    return m


def images(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 6, 6, 1)).astype("float32"), rng.integers(0, 3, n)


def cnn():
    m = Sequential()
    m.add(Conv2D(2, kernel_size=(3, 3), activation="relu", input_shape=(6, 6, 1)))
    m.add(MaxPooling2D(pool_size=(2, 2)))
    m.add(Flatten())
    m.add(Dense(3, activation="softmax"))
    m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return m


def residual_model(dtype="float64"):
    from numbanet.nn.layers import Add, Input
    x = Input((2,))
    h = Dense(4, activation="tanh")(x)
    y = Add()([h, Dense(4, activation="relu")(h)])   # h fans out to Add and the inner Dense
    return nn.Model(x, Dense(2, activation="softmax")(y), dtype=dtype)


def tiny_cnn(weights=None):
    """cnn() with Adam(0.05), built on the cpu backend (optionally with `weights`): the
    model the gpu tests train and profile, so the simulator's launch records are one set."""
    m = cnn()
    m.compile(optimizer=nn.optimizers.Adam(learning_rate=0.05), loss="categorical_crossentropy",
              metrics=["accuracy"])
    m.build((6, 6, 1), backend=kernels.get_backend("cpu"))
    if weights is not None:
        m.set_weights(weights)
    return m
