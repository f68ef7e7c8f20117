"""Writes the CSV files real Keras 3 writes for scripted epoch logs, which
tests/nn/test_callbacks.py compares numbanet's callbacks with.

Keras is a reference here, never a dependency of numbanet; run by hand, from the
repository root, after `pip install keras torch`:

    KERAS_BACKEND=torch python tests/nn/data/make_keras_callback_logs.py

Each case drives Keras's callbacks by hand (on_train_begin, on_epoch_begin, on_epoch_end,
on_train_end) with the logs of CALLBACK_CASES, the same table the test replays through
numbanet's fit, and writes tests/nn/data/keras_<case>.csv.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def halve_after_first(epoch, lr):
    return lr if epoch == 0 else lr * 0.5


def one_argument(epoch):
    return 0.05 / (epoch + 1)


def main():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    with open(os.path.join(HERE, "callback_cases.json")) as f:
        cases = json.load(f)
    schedules = {"halve_after_first": halve_after_first, "one_argument": one_argument}
    for name, case in cases.items():
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(case["learning_rate"]), "mse")
        path = os.path.join(HERE, f"keras_{name}.csv")
        if os.path.exists(path):
            os.remove(path)
        for run in case["runs"]:
            cbs = []
            for kind, args in run["callbacks"]:
                if kind == "CSVLogger":
                    cbs.append(keras.callbacks.CSVLogger(path, **args))
                elif kind == "ReduceLROnPlateau":
                    cbs.append(keras.callbacks.ReduceLROnPlateau(**args))
                elif kind == "LearningRateScheduler":
                    cbs.append(keras.callbacks.LearningRateScheduler(schedules[args["schedule"]]))
                else:
                    sys.exit(f"unknown callback {kind}")
            for cb in cbs:
                cb.set_model(model)
                cb.on_train_begin()
            for epoch, logs in enumerate(run["logs"]):
                logs = dict(logs)
                for cb in cbs:
                    cb.on_epoch_begin(epoch, logs)
                for cb in cbs:
                    cb.on_epoch_end(epoch, logs)
            for cb in cbs:
                cb.on_train_end()
        print("wrote", path)


if __name__ == "__main__":
    main()
