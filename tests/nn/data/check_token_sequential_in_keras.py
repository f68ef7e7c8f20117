"""By hand, not in CI: numbanet's Sequential of token ids against real Keras 3, and every
layer kind's weights after its first symbolic call against Keras's. Run from the
repository root in an environment with numbanet, keras and torch:

    KERAS_BACKEND=torch python tests/nn/data/check_token_sequential_in_keras.py

For each way of writing the tutorial text classifier (Embedding, LSTM, softmax Dense) it
copies Keras's initial weights into numbanet's model and prints the worst absolute
difference of the predictions, of the weights after one SGD step and after three Adam
steps (the same batch), then trains both on a learnable toy task (the class is the first
token mod 3) from the same weights and prints their losses and accuracies. It also prints
what Keras does with float ids (it casts them), the InputLayer dtype Keras saves for
Embedding(input_shape=...), and compares the weight shapes of every entry of
tests/nn/layers/test_base.py's KINDS with Keras's layers called on keras.Input tensors.
"""
import json
import os
import sys
import tempfile
import warnings
import zipfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "layers"))


def keras_model(keras, how):
    L = keras.layers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # Keras 3 warns about input_shape and input_length
        first = {"input_shape": [L.Embedding(13, 8, input_shape=(6,))],
                 "input_length": [L.Embedding(13, 8, input_length=6)],
                 "int Input": [keras.Input((6,), dtype="int32"), L.Embedding(13, 8)]}[how]
        model = keras.Sequential(first + [L.LSTM(10), L.Dense(3, activation="softmax")])
    model.build((None, 6))
    return model


def numbanet_model(how):
    from numbanet import nn
    from numbanet.nn.layers import LSTM, Dense, Embedding
    from numbanet.nn.models import Sequential
    first = {"input_shape": [Embedding(13, 8, input_shape=(6,))],
             "input_length": [Embedding(13, 8, input_length=6)],
             "int Input": [nn.Input((6,), dtype="int32"), Embedding(13, 8)]}[how]
    return Sequential(first + [LSTM(10), Dense(3, activation="softmax")])


def worst(a, b):
    """The worst absolute difference over the arrays, and relative to each Keras array's
    largest magnitude."""
    pairs = [(np.asarray(p, np.float64), np.asarray(q, np.float64)) for p, q in zip(a, b)]
    return (max(float(np.abs(p - q).max()) for p, q in pairs),
            max(float(np.abs(p - q).max() / max(np.abs(p).max(), 1e-30)) for p, q in pairs))


def compare_steps(keras, how, x, y):
    from numbanet import nn
    out = {}
    for opt, steps in (("sgd", 1), ("adam", 3)):
        km, nm = keras_model(keras, how), numbanet_model(how)
        nm.set_weights(km.get_weights())
        if opt == "sgd":
            km.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
            nm.compile(nn.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        else:
            km.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
            nm.compile(nn.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        if opt == "sgd":
            out["predict"] = worst([km.predict(x, verbose=0)], [nm.predict(x, verbose=0)])
        for _ in range(steps):
            km.train_on_batch(x, y)
            nm.train_on_batch(x, y)
        out[f"{opt} x{steps}"] = worst(km.get_weights(), nm.get_weights())
    return out


def train_both(keras, x, y):
    from numbanet import nn
    km, nm = keras_model(keras, "int Input"), numbanet_model("int Input")
    nm.set_weights(km.get_weights())
    km.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    nm.compile(nn.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    rows = []
    for name, m in (("keras", km), ("numbanet", nm)):
        before = m.evaluate(x[500:], y[500:], verbose=0)
        hist = m.fit(x[:500], y[:500], batch_size=32, epochs=12, shuffle=False, verbose=0).history
        after = m.evaluate(x[500:], y[500:], verbose=0)
        rows.append(f"  {name:9s} train loss {hist['loss'][0]:.4f} -> {hist['loss'][-1]:.4f}; held-out loss "
                    f"{before[0]:.4f} -> {after[0]:.4f}, accuracy {before[1]:.3f} -> {after[1]:.3f}")
    return rows


def float_ids(keras):
    emb = keras.layers.Embedding(5, 2)
    ids = np.array([[1.0, 3.0]], "float32")
    got = keras.ops.convert_to_numpy(emb(ids))
    table = keras.ops.convert_to_numpy(emb.embeddings)
    return np.array_equal(got, table[[[1, 3]]])


def saved_input_dtype(keras):
    m = keras_model(keras, "input_shape")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.keras")
        m.save(path)
        with zipfile.ZipFile(path) as z:
            cfg = json.loads(z.read("config.json"))
    return cfg["config"]["layers"][0]["class_name"], cfg["config"]["layers"][0]["config"]["dtype"]


def keras_shapes(keras):
    """KINDS' layers, built by Keras on keras.Input tensors of the same shapes."""
    from test_base import KINDS
    L = keras.layers
    made = {"Dense": lambda: L.Dense(3), "Conv2D": lambda: L.Conv2D(2, (2, 3)),
            "MaxPooling2D": lambda: L.MaxPooling2D(), "AveragePooling2D": lambda: L.AveragePooling2D((2, 2)),
            "GlobalAveragePooling1D": lambda: L.GlobalAveragePooling1D(),
            "GlobalAveragePooling2D": lambda: L.GlobalAveragePooling2D(), "Flatten": lambda: L.Flatten(),
            "Dropout": lambda: L.Dropout(0.5), "Activation": lambda: L.Activation("relu"),
            "Reshape": lambda: L.Reshape((3, 2)), "Permute": lambda: L.Permute((2, 1)), "Add": lambda: L.Add(),
            "Concatenate": lambda: L.Concatenate(), "Embedding": lambda: L.Embedding(7, 4),
            "LayerNormalization": lambda: L.LayerNormalization(),
            "BatchNormalization": lambda: L.BatchNormalization(),
            "MultiHeadAttention": lambda: L.MultiHeadAttention(num_heads=2, key_dim=3),
            "SimpleRNN": lambda: L.SimpleRNN(3), "LSTM": lambda: L.LSTM(3), "GRU": lambda: L.GRU(3),
            "Bidirectional": lambda: L.Bidirectional(L.LSTM(3))}
    ins = {"Add": [[(4,), (4,)]], "Concatenate": [[(4,), (2,)]], "MultiHeadAttention": [(4, 5), (3, 6)]}
    rows, bad = [], 0
    for kind, (_, make_inputs, _, want) in sorted(KINDS.items()):
        if kind not in made:
            rows.append(f"  {kind}: not a Keras core layer (keras_hub's), not compared")
            continue
        shapes = ins.get(kind)
        if shapes is None:
            shapes = [tuple(t.per_sample_shape) for t in make_inputs()]
        args = [[keras.Input(s) for s in a] if isinstance(a, list) else
                keras.Input(a, dtype="int32" if kind == "Embedding" else "float32") for a in shapes]
        layer = made[kind]()
        layer(*args)
        got = [tuple(w.shape) for w in layer.get_weights()]
        bad += got != want
        rows.append(f"  {kind}: keras {got} {'==' if got == want else '!='} numbanet's table")
    return rows, bad


def main():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 13, (600, 6)).astype("int32")
    y = x[:, 0] % 3
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}")
    print("same weights (worst absolute difference, float32; relative: to the largest |value| of Keras's array):")
    for how in ("input_shape", "input_length", "int Input"):
        diffs = compare_steps(keras, how, x[:16], y[:16])
        print(f"  {how:13s} " + ", ".join(f"{k} {a:.2e} (relative {r:.2e})" for k, (a, r) in diffs.items()))
    print("training on the toy task from the same weights (12 epochs, Adam(0.01), batch 32, no shuffle):")
    print("\n".join(train_both(keras, x, y)))
    print(f"Keras's Embedding on float32 ids gives the rows of the ids cast to int: {float_ids(keras)}")
    print(f"Keras saves Sequential([Embedding(13, 8, input_shape=(6,)), ...]) with input {saved_input_dtype(keras)}")
    rows, bad = keras_shapes(keras)
    print("weights after the first symbolic call:")
    print("\n".join(rows))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
