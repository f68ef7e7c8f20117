"""By hand, not in CI: Conv1D, MaxPooling1D, AveragePooling1D, GlobalMaxPooling1D/2D,
UpSampling2D and Conv2DTranspose against real Keras 3. Run from the repository root in an
environment with numbanet, keras and torch:

    KERAS_BACKEND=torch python tests/nn/data/check_layers_in_keras.py

Each case is a small model, the same layers built by Keras and by numbanet (the classes
and arguments are spelled the same), ending in Flatten and Dense and trained on mean
squared error. numbanet's model takes Keras's initial weights (biases set to random
values, so that they matter); the script checks the weight shapes are equal, then prints
the worst difference relative to the largest Keras value of the predictions, of the
weights after one SGD step and after three Adam steps on the same batch, of the
predictions of Keras's model saved by Keras to a .keras file and loaded by numbanet
("keras file"), and, per layer class, the worst over its cases.
"""
import os
import tempfile

import numpy as np

CASES = [
    # name, per-sample input shape, [(class, args, kwargs), ...] before Flatten + Dense(2)
    ("Conv1D valid", (9, 3), [("Conv1D", (4, 3), {})]),
    ("Conv1D same stride 2 relu", (9, 3), [("Conv1D", (4, 3), dict(strides=2, padding="same", activation="relu"))]),
    ("Conv1D causal dilation 2", (9, 3), [("Conv1D", (4, 3), dict(padding="causal", dilation_rate=2,
                                                                      activation="tanh"))]),
    ("Conv1D deep same dilation 3", (12, 24), [("Conv1D", (20, 3), dict(padding="same", dilation_rate=3))]),
    ("MaxPooling1D", (9, 3), [("Conv1D", (4, 2), {}), ("MaxPooling1D", (2,), {})]),
    ("MaxPooling1D same stride 2", (9, 3), [("Conv1D", (4, 2), {}), ("MaxPooling1D", (3,), dict(strides=2,
                                                                                               padding="same"))]),
    ("AveragePooling1D", (9, 3), [("Conv1D", (4, 2), {}), ("AveragePooling1D", (2,), {})]),
    ("AveragePooling1D same stride 1", (9, 3), [("Conv1D", (4, 2), {}), ("AveragePooling1D", (3,),
                                                                         dict(strides=1, padding="same"))]),
    ("GlobalMaxPooling1D", (9, 3), [("Conv1D", (4, 2), {}), ("GlobalMaxPooling1D", (), {})]),
    ("GlobalMaxPooling1D keepdims", (9, 3), [("Conv1D", (4, 2), {}), ("GlobalMaxPooling1D", (),
                                                                      dict(keepdims=True))]),
    ("GlobalMaxPooling2D", (6, 5, 2), [("Conv2D", (4, 2), {}), ("GlobalMaxPooling2D", (), {})]),
    ("UpSampling2D", (4, 3, 2), [("Conv2D", (3, 2), {}), ("UpSampling2D", ((2, 3),), {})]),
    ("Conv2DTranspose valid stride 2", (3, 4, 2), [("Conv2DTranspose", (3, 3), dict(strides=2))]),
    ("Conv2DTranspose same stride 2", (3, 4, 2), [("Conv2DTranspose", (3, 3), dict(strides=2, padding="same",
                                                                                   activation="relu"))]),
    ("Conv2DTranspose same stride 1", (3, 4, 2), [("Conv2DTranspose", (3, (2, 3)), dict(padding="same"))]),
    ("Conv2DTranspose output_padding", (3, 3, 2), [("Conv2DTranspose", (3, 3), dict(strides=2, padding="same",
                                                                                    output_padding=(1, 0)))]),
    ("Conv2DTranspose valid kernel < stride", (3, 3, 2), [("Conv2DTranspose", (2, 2), dict(strides=3))]),
    ("Conv2DTranspose valid output_padding", (3, 3, 2), [("Conv2DTranspose", (2, 3), dict(strides=2,
                                                                                         output_padding=1))]),
]


def build(L, model_cls, input_layer, shape, spec):
    x = input_layer(shape)
    h = x
    for cls, args, kwargs in spec:
        h = getattr(L, cls)(*args, **kwargs)(h)
    return model_cls(x, L.Dense(2)(L.Flatten()(h)))


def relative(a, b):
    return max(float(np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)).max()
                     / max(np.abs(np.asarray(p, np.float64)).max(), 1e-30)) for p, q in zip(a, b))


def run_case(keras, shape, spec, seed):
    from numbanet import nn
    from numbanet.nn import layers as NL
    from numbanet.nn.models import Model, load_model
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4,) + shape).astype("float32")
    y = rng.standard_normal((4, 2)).astype("float32")
    out = {}
    for opt, steps in (("sgd", 1), ("adam", 3)):
        keras.utils.set_random_seed(seed)
        km = build(keras.layers, keras.Model, keras.Input, shape, spec)
        weights = [w if w.ndim > 1 else rng.standard_normal(w.shape).astype("float32") * 0.3
                   for w in km.get_weights()]
        km.set_weights(weights)
        nm = build(NL, Model, nn.Input, shape, spec)
        got = [w.shape for w in nm.get_weights()]
        want = [w.shape for w in km.get_weights()]
        assert got == want, f"weight shapes differ: numbanet {got}, Keras {want}"
        nm.set_weights(weights)
        if opt == "sgd":
            km.compile(keras.optimizers.SGD(0.05), "mse")
            nm.compile(nn.optimizers.SGD(0.05), "mse")
            assert km.output_shape == (None,) + tuple(nm.output_shape)
            out["predict"] = relative([km.predict(x, verbose=0)], [nm.predict(x, verbose=0)])
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "m.keras")
                km.save(path)
                loaded = load_model(path)
            out["keras file"] = relative([km.predict(x, verbose=0)], [loaded.predict(x, verbose=0)])
        else:
            km.compile(keras.optimizers.Adam(0.01), "mse")
            nm.compile(nn.optimizers.Adam(0.01), "mse")
        for _ in range(steps):
            km.train_on_batch(x, y)
            nm.train_on_batch(x, y)
        out[f"{opt} x{steps}"] = relative(km.get_weights(), nm.get_weights())
    return out


def main():
    import keras
    assert keras.backend.backend() == "torch", "run with KERAS_BACKEND=torch"
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}")
    per_class = {}
    for i, (name, shape, spec) in enumerate(CASES):
        res = run_case(keras, shape, spec, seed=i)
        print(f"{name:40s} " + "  ".join(f"{k} {v:.1e}" for k, v in res.items()))
        cls = spec[-1][0]
        per_class[cls] = max(per_class.get(cls, 0.0), max(res.values()))
    print("\nworst relative difference per layer class (predict, SGD x1, Adam x3, keras file):")
    for cls, v in per_class.items():
        print(f"  {cls:20s} {v:.1e}")


if __name__ == "__main__":
    main()
