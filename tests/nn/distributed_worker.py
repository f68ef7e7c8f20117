"""One process of tests/nn/test_distributed.py's MPI job (`mpiexec -n 2 python
distributed_worker.py OUT SCENARIO`), and the models and data both sides build.

Scenario "train": data-parallel fits of the article's CNN (its layer types, narrower and
on 12x12 images) and of a two-output functional model, a resumed fit after process 1's
weights and optimizer state were spoiled, evaluate, predict, save and ModelCheckpoint;
each process writes what it ended with to OUT/<what>_rank<r>.npz. Scenario "fail":
process 1 raises during fit.
"""
import os
import sys

import numpy as np

EPOCHS = 2
GLOBAL_BATCH = 128
# 301 rows: steps of 128, 128 and 45; the last splits 23 + 22, so the processes hold
# unequal shares of it.
N_ROWS = 301


def cnn_data():
    rng = np.random.default_rng(11)
    x = rng.random((N_ROWS, 12, 12, 1), dtype=np.float32)
    y = rng.integers(0, 10, N_ROWS)
    return x, y


def build_cnn():
    """The article's CNN (nn/mnist_cnn.py), narrower and on 12x12 inputs."""
    from numbanet.nn.mnist_cnn import build_model
    return build_model(input_shape=(12, 12, 1), filters=(4, 8), units=16)


def functional_data():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((N_ROWS, 6)).astype(np.float32)
    return x, [rng.integers(0, 3, N_ROWS), rng.standard_normal((N_ROWS, 2)).astype(np.float32)]


def build_functional():
    """A fan-out into two branches joined by Add, and two outputs with their own losses
    (weighted) and a metric."""
    from numbanet import nn
    from numbanet.nn.layers import Add, Dense
    from numbanet.nn.optimizers import SGD
    x = nn.Input((6,))
    a = Dense(8, activation="relu")(x)
    b = Dense(8, activation="tanh")(x)
    h = Add()([a, b])
    out1 = Dense(3, activation="softmax", name="classes")(h)
    out2 = Dense(2, name="values")(h)
    model = nn.Model(x, [out1, out2])
    model.compile(optimizer=SGD(0.05, momentum=0.9), loss=["categorical_crossentropy", "mse"],
                  loss_weights=[1.0, 0.5], metrics=[["accuracy"], []])
    return model


BN_ROWS = 10


def batch_norm_data():
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((BN_ROWS, 4)) * [1, 2, 3, 4] + [0, 1, -2, 5]).astype(np.float32)
    return x, rng.integers(0, 2, BN_ROWS)


def build_batch_norm():
    """BatchNormalization first, so its batch statistics are the data's."""
    from numbanet import nn
    from numbanet.nn.layers import BatchNormalization, Dense
    model = nn.Sequential([BatchNormalization(momentum=0.5, input_shape=(4,)), Dense(2, activation="softmax")])
    model.compile(optimizer=nn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    return model


def _save(out, what, rank, **arrays):
    np.savez(os.path.join(out, f"{what}_rank{rank}.npz"), **arrays)


def _weights(model):
    return {f"w{i}": w for i, w in enumerate(model.get_weights())}


def train(out):
    from numbanet.nn import distributed
    from numbanet.nn.callbacks import ModelCheckpoint
    from numbanet.nn.utils import set_random_seed
    distributed.init()
    rank = distributed.rank()
    assert distributed.size() == 2

    # Process 1 draws different initial weights: fit must start from process 0's.
    set_random_seed(0 if rank == 0 else 99)
    x, y = cnn_data()
    model = build_cnn()
    ckpt = ModelCheckpoint(os.path.join(out, f"ckpt_rank{rank}_{{epoch}}.npz"))
    history = model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=EPOCHS, verbose=2, callbacks=[ckpt])
    _save(out, "cnn", rank, loss=history.history["loss"], accuracy=history.history["accuracy"],
          iterations=model.optimizer.iterations, **_weights(model))

    # Resume: process 1's weights, Adam state and step count spoiled; fit must restore
    # process 0's before the first step.
    if rank == 1:
        model.set_weights([np.full_like(w, 0.5) for w in model.get_weights()])
        model.optimizer.set_state(model.be, {k: np.ones_like(v) for k, v in
                                             model.optimizer.get_state(model.be).items()})
        model.optimizer.iterations = 999
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, verbose=0)
    _save(out, "resumed", rank, iterations=model.optimizer.iterations, **_weights(model))

    result = model.evaluate(x[:101], y[:101], batch_size=32, verbose=0)
    probs = model.predict(x[:101], batch_size=32)
    _save(out, "evaluate", rank, result=np.array(result), probs=probs)
    model.save(os.path.join(out, f"saved_rank{rank}.npz"))

    # One step over BN_ROWS rows, 5 per process: each updates the moving statistics from
    # its own rows, then they are averaged.
    set_random_seed(2)
    bx, by = batch_norm_data()
    bmodel = build_batch_norm()
    bmodel.fit(bx, by, batch_size=BN_ROWS, epochs=1, verbose=0, shuffle=False)
    _save(out, "batchnorm", rank, **_weights(bmodel))

    set_random_seed(1)
    fx, fy = functional_data()
    fmodel = build_functional()
    history = fmodel.fit(fx, fy, batch_size=GLOBAL_BATCH, epochs=EPOCHS, verbose=0)
    _save(out, "functional", rank, loss=history.history["loss"], classes_loss=history.history["classes_loss"],
          values_loss=history.history["values_loss"], classes_accuracy=history.history["classes_accuracy"],
          **_weights(fmodel))


def fail(out):
    from numbanet.nn import distributed
    from numbanet.nn.callbacks import Callback
    from numbanet.nn.utils import set_random_seed
    distributed.init()
    rank = distributed.rank()

    class Explode(Callback):
        def on_batch_begin(self, batch, logs=None):
            if rank == 1 and batch == 1:
                raise RuntimeError("process one gives up at step 2")

    set_random_seed(0)
    x, y = cnn_data()
    build_cnn().fit(x, y, batch_size=GLOBAL_BATCH, epochs=50, verbose=0, callbacks=[Explode()])
    open(os.path.join(out, f"finished_rank{rank}"), "w").close()   # never reached


if __name__ == "__main__":
    {"train": train, "fail": fail}[sys.argv[2]](sys.argv[1])
