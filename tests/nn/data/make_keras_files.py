"""Writes the .keras files real Keras 3 makes, which tests/nn/test_keras_file.py loads with
numbanet and compares with Keras's own predictions, saved beside each file.

Keras is a reference here, never a dependency of numbanet; run by hand, from the
repository root, after `pip install keras h5py torch`:

    KERAS_BACKEND=torch python tests/nn/data/make_keras_files.py [name ...]

For each model of MODELS it writes tests/nn/data/<name>.keras (trained for two steps, so
that the file holds an optimizer's state; "recurrent" is only compiled, which keeps its
file small and gives a record whose optimizer was never built; "masked" is not compiled), <name>_x.npy (the input, a list of arrays
saved as <name>_x0.npy, <name>_x1.npy, ... for several inputs) and <name>_y.npy (Keras's
predictions for it; <name>_y0.npy, ... for several outputs). For the models of NEXT_STEP
(no Dropout: their step is deterministic) also <name>_t.npy, the targets, and
<name>_next.npy, every weight (get_weights order, flattened and joined) after one more
train_on_batch(x, t) from the saved state: numbanet's step from the loaded file must land
there too. Plain .npy arrays: the test reads them with allow_pickle=False.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def text_lstm(keras, L):
    """The tutorial text classifier: token ids -> Embedding -> LSTM -> softmax."""
    model = keras.Sequential([keras.Input((6,), dtype="int32"), L.Embedding(13, 8), L.LSTM(10),
                              L.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    rng = np.random.default_rng(1)
    x = rng.integers(0, 13, (8, 6)).astype("int32")
    return model, x, rng.integers(0, 3, 8)


def transformer(keras, L):
    """A small Transformer encoder block (functional): self-attention, residual adds,
    layer norms and a feed-forward pair, pooled into a softmax."""
    x = keras.Input((5, 8))
    attn = L.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    h = L.LayerNormalization()(L.Add()([x, attn]))
    ff = L.Dense(8)(L.Dense(16, activation="relu")(h))
    h = L.LayerNormalization(epsilon=1e-6)(L.Add()([h, ff]))
    y = L.Dense(3, activation="softmax")(L.GlobalAveragePooling1D()(h))
    model = keras.Model(x, y)
    model.compile(optimizer=keras.optimizers.AdamW(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    rng = np.random.default_rng(2)
    return model, rng.standard_normal((4, 5, 8)).astype("float32"), rng.integers(0, 3, 4)


def cnn(keras, L):
    """The article's CNN, small: Conv2D / MaxPooling2D twice, Flatten, Dropout, Dense."""
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, (3, 3), activation="relu"), L.MaxPooling2D(),
                              L.Conv2D(6, (2, 2), padding="same", activation="relu"),
                              L.AveragePooling2D(pool_size=(2, 2)), L.Flatten(), L.Dropout(0.25),
                              L.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    rng = np.random.default_rng(3)
    return model, rng.uniform(0, 1, (4, 8, 8, 1)).astype("float32"), np.eye(10)[rng.integers(0, 10, 4)]


def recurrent(keras, L):
    """The rest of numbanet's layers in one functional graph with two inputs and two
    outputs: SimpleRNN, GRU, a Bidirectional LSTM, a Bidirectional GRU with its own
    backward layer, an LSTM started from another's states, pooling, Reshape, Permute,
    Concatenate, Activation."""
    seq = keras.Input((5, 3), name="seq")
    img = keras.Input((4, 4, 2), name="img")
    a = L.SimpleRNN(4, return_sequences=True)(seq)
    b = L.GRU(4, return_sequences=True)(a)
    c = L.Bidirectional(L.LSTM(3, return_sequences=True))(b)
    _, h, s = L.LSTM(2, return_state=True)(c)
    d = L.LSTM(2, return_sequences=True)(c, initial_state=[h, s])
    e = L.Bidirectional(L.GRU(2), merge_mode="sum", backward_layer=L.GRU(2, go_backwards=True))(d)
    g = L.GlobalAveragePooling2D()(L.Conv2D(3, (2, 2), padding="same")(img))
    p = L.Permute((2, 1))(L.Reshape((2, 4))(L.Flatten()(L.MaxPooling2D()(img))))
    f = L.Concatenate()([e, g, L.GlobalAveragePooling1D()(p)])
    out1 = L.Activation("tanh")(L.Dense(3)(f))
    out2 = L.Dense(2, activation="sigmoid", name="flag")(f)
    model = keras.Model([seq, img], [out1, out2])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=["mse", "binary_crossentropy"],
                  loss_weights=[1.0, 0.5], metrics=[[], ["accuracy"]])
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((3, 5, 3)).astype("float32"), rng.standard_normal((3, 4, 4, 2)).astype("float32")]
    ys = [rng.standard_normal((3, 3)).astype("float32"), rng.integers(0, 2, (3, 2)).astype("float32")]
    return model, xs, ys


def masked(keras, L):
    """Padded token sequences: Embedding(mask_zero=True), whose mask Keras writes into the
    graph as a NotEqual(ids, 0) node feeding the recurrent layers' mask arguments, through
    a Dense that passes it on."""
    tok = keras.Input((6,), dtype="int32")
    e = L.Embedding(9, 4, mask_zero=True)(tok)
    h = L.Dense(5, activation="tanh")(L.LSTM(3, return_sequences=True)(e))
    y = L.Dense(2, activation="softmax")(L.Bidirectional(L.GRU(2))(h))
    model = keras.Model(tok, y)
    x = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 1], [0, 0, 2, 3, 0, 5], [3, 0, 0, 0, 0, 0]], "int32")
    return model, x, None


def cnn_bn(keras, L):
    """The CNN staple: Conv2D, BatchNormalization, ReLU, MaxPooling2D, Flatten, softmax,
    trained by a centered RMSprop with momentum (every RMSprop slot in the file). A
    momentum of 0.8 moves the moving statistics visibly in two steps, so predictions
    (which use them) tell whether they came over."""
    model = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(4, (3, 3)), L.BatchNormalization(momentum=0.8),
                              L.Activation("relu"), L.MaxPooling2D(), L.Flatten(), L.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(5)
    return model, (rng.standard_normal((6, 6, 6, 2)) * 2 + 1).astype("float32"), rng.integers(0, 3, 6)


MODELS = {"text_lstm": text_lstm, "transformer": transformer, "cnn": cnn, "recurrent": recurrent, "masked": masked,
          "cnn_bn": cnn_bn}
NEXT_STEP = ("text_lstm", "transformer", "cnn_bn")


def _save(name, what, arrays):
    if isinstance(arrays, list):
        for i, a in enumerate(arrays):
            np.save(os.path.join(HERE, f"{name}_{what}{i}.npy"), a, allow_pickle=False)
    else:
        np.save(os.path.join(HERE, f"{name}_{what}.npy"), arrays, allow_pickle=False)


def main():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    # The models named on the command line (all without): each seeded on its own, so one
    # file can be remade without changing the others.
    names = sys.argv[1:] or list(MODELS)
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; the models are {list(MODELS)}")
    for name in names:
        keras.utils.set_random_seed(0)
        model, x, y = MODELS[name](keras, keras.layers)
        if y is not None and name != "recurrent":
            model.fit(x, y, batch_size=len(y), epochs=2, verbose=0)
        model.save(os.path.join(HERE, f"{name}.keras"))
        _save(name, "x", x)
        pred = model.predict(x, verbose=0)
        _save(name, "y", [np.asarray(p) for p in pred] if isinstance(pred, list) else np.asarray(pred))
        if name in NEXT_STEP:
            _save(name, "t", np.asarray(y))
            model.train_on_batch(x, y)
            _save(name, "next", np.concatenate([np.asarray(w).ravel() for w in model.get_weights()]))
        print("wrote", name, os.path.getsize(os.path.join(HERE, f"{name}.keras")), "bytes")


if __name__ == "__main__":
    main()
