"""By hand, not in CI: numbanet's BatchNormalization, RMSprop and Adagrad against real
Keras 3 on the same weights. Run from the repository root in an environment with
numbanet, keras and torch:

    KERAS_BACKEND=torch python tests/nn/data/check_bn_optimizers_in_keras.py

BatchNormalization (a Conv2D -> BN -> ReLU -> MaxPooling2D -> Flatten -> softmax CNN, and
a Dense -> BN(center=False) -> Dense model on (batch, features)): Keras's initial weights
copied into numbanet's model, then the forward in training mode (batch statistics) and
in inference mode (after moving statistics were set away from their initial values), the
weights (moving statistics included) after one SGD step, and after three Adam steps on
the same batch. RMSprop (plain, momentum, centered, centered with momentum) and Adagrad:
a small Dense model, three steps from the same weights, and the optimizer's variables.
Each line prints the worst absolute difference and the worst difference relative to the
largest magnitude of the Keras array it is compared with.
"""
import os

import numpy as np


def worst(a, b):
    pairs = [(np.asarray(p, np.float64), np.asarray(q, np.float64)) for p, q in zip(a, b)]
    assert len(pairs) == len(a) == len(b), (len(a), len(b))
    return (max(float(np.abs(p - q).max()) for p, q in pairs),
            max(float(np.abs(p - q).max() / max(np.abs(p).max(), 1e-30)) for p, q in pairs))


def report(what, keras_arrays, numbanet_arrays):
    abs_, rel = worst(keras_arrays, numbanet_arrays)
    print(f"{what:58s} worst |diff| {abs_:.3g}, relative {rel:.3g}")
    return rel


def bn_models(keras, which):
    from numbanet.nn import layers as nl
    from numbanet.nn.models import Sequential
    L = keras.layers
    if which == "cnn":
        k = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(4, (3, 3)), L.BatchNormalization(momentum=0.8),
                              L.Activation("relu"), L.MaxPooling2D(), L.Flatten(), L.Dense(3, activation="softmax")])
        n = Sequential([nl.Conv2D(4, (3, 3), input_shape=(6, 6, 2)), nl.BatchNormalization(momentum=0.8),
                        nl.Activation("relu"), nl.MaxPooling2D(), nl.Flatten(), nl.Dense(3, activation="softmax")])
        rng = np.random.default_rng(0)
        x = (rng.standard_normal((8, 6, 6, 2)) * 2 + 1).astype("float32")
        y = rng.integers(0, 3, 8)
    else:
        k = keras.Sequential([keras.Input((5,)), L.Dense(4), L.BatchNormalization(center=False, epsilon=1e-2),
                              L.Dense(3, activation="softmax")])
        n = Sequential([nl.Dense(4, input_shape=(5,)), nl.BatchNormalization(center=False, epsilon=1e-2),
                        nl.Dense(3, activation="softmax")])
        rng = np.random.default_rng(1)
        x = (rng.standard_normal((7, 5)) * 3 - 1).astype("float32")
        y = rng.integers(0, 3, 7)
    n.set_weights([np.asarray(w) for w in k.get_weights()])
    return k, n, x, y


def bn_layer(model):
    return next(layer for layer in model.layers if type(layer).__name__ == "BatchNormalization")


def check_batch_norm(keras, which, results):
    import torch
    from numbanet import nn
    k, n, x, y = bn_models(keras, which)
    assert [w.shape for w in k.get_weights()] == [w.shape for w in n.get_weights()]
    kbn, nbn = bn_layer(k), bn_layer(n)
    # Training-mode forward of the model (batch statistics; Keras updates its moving
    # statistics as a side effect, as numbanet does).
    with torch.no_grad():
        want = np.asarray(k(x, training=True))
    got = n._graph.forward([n.be.asarray(x)], True, ())[0]
    results[f"BatchNormalization {which}: forward, training"] = report(
        f"BatchNormalization {which}: forward, training", [want], [n.be.to_numpy(got)])
    n._graph.clear()
    results[f"BatchNormalization {which}: moving stats after a training call"] = report(
        f"BatchNormalization {which}: moving stats after a training call",
        [np.asarray(v) for v in kbn.get_weights()[-2:]], nbn.get_weights()[-2:])
    # Inference: moving statistics away from zeros and ones, in both.
    rng = np.random.default_rng(7)
    stats = [rng.standard_normal(kbn.get_weights()[-1].shape).astype("float32"),
             rng.uniform(0.5, 2.0, kbn.get_weights()[-1].shape).astype("float32")]
    kbn.set_weights(kbn.get_weights()[:-2] + stats)
    n.set_weights([np.asarray(w) for w in k.get_weights()])
    results[f"BatchNormalization {which}: forward, inference"] = report(
        f"BatchNormalization {which}: forward, inference", [k.predict(x, verbose=0)], [n.predict(x, verbose=0)])
    start = [np.asarray(w) for w in k.get_weights()]
    for opt, steps in (("sgd", 1), ("adam", 3)):
        k.set_weights(start)
        k.compile(optimizer=keras.optimizers.SGD(0.1) if opt == "sgd" else keras.optimizers.Adam(0.01),
                  loss="sparse_categorical_crossentropy")
        n.compile(nn.optimizers.SGD(0.1) if opt == "sgd" else nn.optimizers.Adam(0.01),
                  "sparse_categorical_crossentropy")
        n.set_weights(start)
        for _ in range(steps):
            k.train_on_batch(x, y)
            n.train_on_batch(x, y)
        # Per layer. The bias of the layer before BatchNormalization has a zero gradient in
        # exact arithmetic (the normalization subtracts any per-channel shift), so both
        # libraries step it by rounding noise: SGD moves it by ~1e-9, and Adam, which
        # divides by sqrt(v), by up to lr in a random direction. It is reported apart, in
        # absolute terms only.
        got, want = n.get_weights(), [np.asarray(w) for w in k.get_weights()]
        i = 0
        for layer in n.layers:
            count = len(layer.params)
            names = list(layer.params)
            if count:
                pairs = [(want[i + j], got[i + j]) for j in range(count)]
                at = n.layers.index(layer)
                before_bn = at + 1 < len(n.layers) and n.layers[at + 1] is nbn
                if before_bn:
                    bias = pairs.pop(names.index("bias"))
                    print(f"  ({layer.name} bias before BatchNormalization, zero gradient: worst |diff| "
                          f"{float(np.abs(bias[0] - bias[1]).max()):.3g})")
                what = f"BN {which}: {layer.name} after {steps} {opt} step(s)"
                results[what] = report(what, [p for p, _ in pairs], [q for _, q in pairs])
            i += count


def check_optimizer(keras, name, results):
    from numbanet import nn
    from numbanet.nn import layers as nl
    from numbanet.nn.models import Sequential
    L = keras.layers
    configs = {"RMSprop plain": ("RMSprop", dict(learning_rate=0.01)),
               "RMSprop momentum": ("RMSprop", dict(learning_rate=0.01, momentum=0.9)),
               "RMSprop centered": ("RMSprop", dict(learning_rate=0.01, centered=True)),
               "RMSprop centered + momentum": ("RMSprop", dict(learning_rate=0.01, rho=0.8, momentum=0.5,
                                                               centered=True)),
               "Adagrad": ("Adagrad", dict(learning_rate=0.05, initial_accumulator_value=0.2))}
    cls, kwargs = configs[name]
    k = keras.Sequential([keras.Input((4,)), L.Dense(5, activation="tanh"), L.Dense(2)])
    n = Sequential([nl.Dense(5, activation="tanh", input_shape=(4,)), nl.Dense(2)])
    n.set_weights([np.asarray(w) for w in k.get_weights()])
    k.compile(optimizer=getattr(keras.optimizers, cls)(**kwargs), loss="mse")
    n.compile(getattr(nn.optimizers, cls)(**kwargs), "mse")
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((6, 4)).astype("float32"), rng.standard_normal((6, 2)).astype("float32")
    for _ in range(3):
        k.train_on_batch(x, y)
        n.train_on_batch(x, y)
    results[f"{name}: weights after 3 steps"] = report(f"{name}: weights after 3 steps",
                                                        [np.asarray(w) for w in k.get_weights()], n.get_weights())
    # The optimizer's variables, in Keras's order (iterations, learning rate, then slots).
    from numbanet.nn.keras_compile import variable_layout
    layout = [v for v in variable_layout(n) if v[0] not in ("iterations", "learning_rate")]
    state = n.optimizer.get_state(n.be)
    kvars = [np.asarray(v) for v in k.optimizer.variables[2:]]
    assert [tuple(v.shape) for v in kvars] == [s for _, s in layout], "slot layout differs from Keras's"
    results[f"{name}: optimizer variables"] = report(f"{name}: optimizer variables", kvars,
                                                     [state[key] for key, _ in layout])


def main():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    keras.utils.set_random_seed(0)
    print(f"keras {keras.__version__} ({keras.backend.backend()} backend)")
    results = {}
    for which in ("cnn", "dense"):
        check_batch_norm(keras, which, results)
    for name in ("RMSprop plain", "RMSprop momentum", "RMSprop centered", "RMSprop centered + momentum", "Adagrad"):
        check_optimizer(keras, name, results)
    print(f"worst relative difference over all checks: {max(results.values()):.3g}")


if __name__ == "__main__":
    main()
