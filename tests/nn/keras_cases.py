"""Shared by the .keras tests (test_keras_*.py): the files real Keras 3 wrote
(tests/nn/data, made by make_keras_files.py) and what they hold, numbanet models with
every layer kind for round trips, and a way to edit a .keras file into a hostile one."""
import json
import os
import warnings
import zipfile

import h5py
import numpy as np
import pytest

from numbanet import nn
from numbanet.nn import layers as L
from numbanet.nn import saving
from numbanet.nn.models import Model, Sequential, load_model

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def arrays(prefix):
    """<prefix>.npy, or <prefix>0.npy, <prefix>1.npy, ... as a list."""
    one = os.path.join(DATA, f"{prefix}.npy")
    if os.path.exists(one):
        return [np.load(one, allow_pickle=False)]
    out, i = [], 0
    while os.path.exists(os.path.join(DATA, f"{prefix}{i}.npy")):
        out.append(np.load(os.path.join(DATA, f"{prefix}{i}.npy"), allow_pickle=False))
        i += 1
    return out


def load_keras_made(name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(os.path.join(DATA, f"{name}.keras"))
    return model, [str(w.message) for w in caught]


def flat(weights):
    return np.concatenate([np.asarray(w).ravel() for w in weights])


def h5_layout(path, prefix="layers/"):
    """{dataset path: (shape, dtype)} of a .keras file's weights under prefix."""
    with zipfile.ZipFile(path) as z, z.open("model.weights.h5") as f, h5py.File(f, "r") as h:
        out = {}
        h.visititems(lambda n, o: out.__setitem__(n, (o.shape, o.dtype.str)) if isinstance(o, h5py.Dataset)
                     and n.startswith(prefix) else None)
    return out


KERAS_MADE = {
    # name: (numbanet model class, optimizer class, optimizer iterations, losses, metrics per output)
    "text_lstm": (Sequential, nn.optimizers.Adam, 2, ["sparse_categorical_crossentropy"], [["accuracy"]]),
    "transformer": (Model, nn.optimizers.AdamW, 2, ["sparse_categorical_crossentropy"], [["accuracy"]]),
    "cnn": (Sequential, nn.optimizers.SGD, 2, ["categorical_crossentropy"], [["accuracy"]]),
    "recurrent": (Model, nn.optimizers.Adam, 0, ["mean_squared_error", "binary_crossentropy"], [[], ["accuracy"]]),
    "masked": (Model, None, None, None, None),   # not compiled
    "cnn_bn": (Sequential, nn.optimizers.RMSprop, 2, ["sparse_categorical_crossentropy"], [["accuracy"]]),
}



# Models with every layer kind numbanet writes to .keras files, trained by the tests.
def cnn():
    m = Sequential([L.Conv2D(4, (3, 3), activation="relu", input_shape=(8, 8, 1),
                             kernel_regularizer=nn.regularizers.l2(0.01)), L.MaxPooling2D(),
                    L.Conv2D(3, (2, 2), padding="same", activation="sigmoid", kernel_initializer="he_normal"),
                    L.AveragePooling2D(padding="same"), L.Flatten(), L.Dropout(0.3),
                    L.Dense(5, activation="softmax")])
    m.compile(nn.optimizers.SGD(0.05, momentum=0.9, nesterov=True), "categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    return m, rng.uniform(0, 1, (6, 8, 8, 1)).astype("float32"), rng.integers(0, 5, 6)


def transformer():
    tok = L.Input((6,), dtype="int32")
    e = L.Embedding(20, 8, embeddings_regularizer=nn.regularizers.l1_l2(0.001, 0.002))(tok)
    e = L.Add()([e, L.PositionEmbedding(8)(e)])
    a = L.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=5, output_shape=8)(e, e)
    h = L.LayerNormalization()(L.Add()([e, a]))
    q = L.MultiHeadAttention(num_heads=1, key_dim=4, use_bias=False)(h, e, key=h, use_causal_mask=True)
    h2 = L.LayerNormalization(center=False, epsilon=1e-5)(L.Add()([h, q]))
    out = L.Dense(3, activation="softmax")(L.GlobalAveragePooling1D()(L.Dense(8, activation="gelu")(h2)))
    m = Model(tok, out)
    m.compile(nn.optimizers.AdamW(nn.optimizers.schedules.CosineDecay(0.01, 10, warmup_target=0.02,
                                                                        warmup_steps=2), clipnorm=1.0),
              "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(1)
    return m, rng.integers(0, 20, (5, 6)).astype("int32"), rng.integers(0, 3, 5)


def recurrent():
    seq, img = L.Input((5, 3)), L.Input((4, 4, 2))
    a = L.SimpleRNN(4, return_sequences=True, activation="relu")(seq)
    b = L.GRU(4, return_sequences=True)(a)
    c = L.Bidirectional(L.LSTM(3, return_sequences=True, unit_forget_bias=False))(b)
    _, h, s = L.LSTM(2, return_state=True)(c)
    d = L.LSTM(2, return_sequences=True, go_backwards=True)(c, initial_state=[h, s])
    e = L.Bidirectional(L.GRU(2), merge_mode="ave", backward_layer=L.GRU(2, go_backwards=True))(d)
    g = L.GlobalAveragePooling2D(keepdims=False)(L.Conv2D(3, (2, 2), padding="same", strides=(2, 1))(img))
    p = L.Permute((2, 1))(L.Reshape((2, 4))(L.Flatten()(L.MaxPooling2D()(img))))
    shared = L.Dense(2, activation="relu")   # called twice: two nodes, one set of weights
    f = L.Concatenate()([shared(e), g, shared(L.GlobalAveragePooling1D()(p))])
    out1 = L.Activation("tanh")(L.Dense(3)(f))
    out2 = L.Dense(2, name="flag")(f)
    m = Model([seq, img], [out1, out2])
    m.compile(nn.optimizers.Adam(0.01, beta_1=0.8, global_clipnorm=2.0),
              ["mse", nn.losses.BinaryCrossentropy(from_logits=True)], loss_weights=[1.0, 0.5],
              metrics=[[], ["binary_accuracy"]])
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((3, 5, 3)).astype("float32"), rng.standard_normal((3, 4, 4, 2)).astype("float32")]
    return m, xs, [rng.standard_normal((3, 3)).astype("float32"), rng.integers(0, 2, (3, 2)).astype("float32")]


def token_sequential():
    """The tutorial text classifier as a Sequential: its input reads int32 token ids."""
    m = Sequential([L.Embedding(13, 8, input_shape=(6,)), L.LSTM(10), L.Dense(3, activation="softmax")])
    m.compile(nn.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(4)
    return m, rng.integers(0, 13, (5, 6)).astype("int32"), rng.integers(0, 3, 5)


def float64_uncompiled():
    m = Sequential([L.Dense(4, activation="silu", input_shape=(3,)), L.Dense(2, activation="leaky_relu")],
                   dtype="float64")
    return m, np.random.default_rng(3).standard_normal((4, 3)), None


def batch_norm_cnn():
    """BatchNormalization between a convolution and its activation, trained by a centered
    RMSprop with momentum: the moving statistics and all three RMSprop slots round-trip."""
    m = Sequential([L.Conv2D(3, (2, 2), input_shape=(5, 5, 2), use_bias=False), L.BatchNormalization(momentum=0.8),
                    L.Activation("relu"), L.MaxPooling2D(), L.Flatten(), L.Dense(3, activation="softmax")])
    m.compile(nn.optimizers.RMSprop(0.01, momentum=0.5, centered=True), "sparse_categorical_crossentropy",
              metrics=["accuracy"])
    rng = np.random.default_rng(5)
    return m, rng.standard_normal((6, 5, 5, 2)).astype("float32"), rng.integers(0, 3, 6)


def batch_norm_dense():
    """BatchNormalization on (batch, features) without beta, trained by Adagrad."""
    m = Sequential([L.Dense(4, input_shape=(3,)), L.BatchNormalization(center=False, epsilon=1e-2),
                    L.Dense(2, activation="sigmoid")])
    m.compile(nn.optimizers.Adagrad(0.05, initial_accumulator_value=0.2), "binary_crossentropy")
    rng = np.random.default_rng(6)
    return m, rng.standard_normal((5, 3)).astype("float32"), rng.integers(0, 2, (5, 2)).astype("float32")


ROUND_TRIP = {"cnn": cnn, "transformer": transformer, "recurrent": recurrent, "tokens": token_sequential,
              "float64": float64_uncompiled, "batchnorm_cnn": batch_norm_cnn, "batchnorm_dense": batch_norm_dense}


def small_file(tmp_path, compiled=True):
    m = Sequential([L.Dense(3, input_shape=(4,)), L.Dense(2, activation="softmax")])
    if compiled:
        m.compile("adam", "categorical_crossentropy")
        m.fit(np.zeros((2, 4), "float32"), np.array([0, 1]), verbose=0)
    path = tmp_path / "good.keras"
    m.save(path)
    return path


def rewrite(src, dst, config=None, weights=None, extra=None, drop=()):
    """A copy of the .keras file src with config.json edited by config(dict) and/or
    model.weights.h5 edited by weights(h5py.File), members dropped or added."""
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist() if n not in drop}
    if config is not None:
        cfg = json.loads(members["config.json"])
        config(cfg)
        members["config.json"] = json.dumps(cfg).encode()
    if weights is not None:
        tmp = str(dst) + ".h5"
        with open(tmp, "wb") as f:
            f.write(members["model.weights.h5"])
        with h5py.File(tmp, "a") as h:
            weights(h)
        with open(tmp, "rb") as f:
            members["model.weights.h5"] = f.read()
        os.remove(tmp)
    members.update(extra or {})
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    return dst


def layer_entry(cfg, i):
    return cfg["config"]["layers"][i]


def refused(path, match):
    with pytest.raises(saving.InvalidModelFile, match=match):
        load_model(path)


def conv_family():
    """Conv1D (causal, dilated), the 1-D and global max poolings, UpSampling2D and
    Conv2DTranspose, each in a model that trains."""
    seq, img = L.Input((10, 3)), L.Input((4, 4, 2))
    a = L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu")(seq)
    a = L.MaxPooling1D(2)(a)
    a = L.Conv1D(3, 2, strides=2, padding="same", use_bias=False)(L.AveragePooling1D(2, strides=1, padding="same")(a))
    b = L.Conv2DTranspose(3, (3, 3), strides=(2, 2), padding="same", activation="tanh")(img)
    b = L.Conv2DTranspose(2, 2, output_padding=(0, 1), strides=2)(L.UpSampling2D((1, 2))(b))
    f = L.Concatenate()([L.GlobalMaxPooling1D()(a), L.GlobalMaxPooling2D()(b)])
    m = Model([seq, img], L.Dense(2, activation="softmax")(f))
    m.compile(nn.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((3, 10, 3)).astype("float32"), rng.standard_normal((3, 4, 4, 2)).astype("float32")]
    return m, xs, rng.integers(0, 2, 3)


ROUND_TRIP["conv_family"] = conv_family
