"""By hand, not in CI: numbanet's .keras files loaded by real Keras 3 predict as numbanet
does, and one more training step in Keras from the file lands where numbanet's own next
step does (the optimizer state came over). Run from the repository root in an
environment with numbanet, keras, h5py and torch:

    KERAS_BACKEND=torch python tests/nn/data/check_numbanet_files_in_keras.py

The models are the round-trip models of tests/nn/keras_cases.py (every layer kind), plus
a masked token model. The transformer holds keras_hub's PositionEmbedding: Keras loads
it only where keras_hub imports; without it that model is reported as skipped.
"""
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # tests/nn: keras_cases


def _masked():
    from numbanet.nn import layers as L
    from numbanet.nn.models import Model
    tok = L.Input((6,), dtype="int32")
    e = L.Embedding(9, 4, mask_zero=True)(tok)
    h = L.Dense(5, activation="tanh")(L.LSTM(3, return_sequences=True)(e))
    model = Model(tok, L.Dense(2, activation="softmax")(L.Bidirectional(L.GRU(2))(h)))
    return model, np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 1], [0, 0, 2, 3, 0, 5]], "int32"), None


def _flat(weights):
    return np.concatenate([np.asarray(w).ravel() for w in weights])


def main():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    from keras_cases import ROUND_TRIP
    from numbanet.nn import utils
    try:
        import keras_hub  # noqa: F401  (Keras imports its PositionEmbedding from there)
        have_hub = True
    except ImportError:
        have_hub = False
    utils.set_random_seed(0)
    cases = dict(ROUND_TRIP, masked=_masked)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in cases.items():
            model, x, y = make()
            if y is not None:
                model.fit(x, y, batch_size=len(y[0]) if isinstance(y, list) else len(y), epochs=2, verbose=0)
            path = os.path.join(tmp, f"{name}.keras")
            model.save(path)
            if name == "transformer" and not have_hub:
                print(f"{name}: skipped (keras_hub does not import here; the file holds its PositionEmbedding)")
                continue
            theirs = keras.models.load_model(path)
            want = model.predict(x)
            got = theirs.predict(x, verbose=0)
            want, got = (w if isinstance(w, list) else [w] for w in (want, got))
            diff = max(float(np.abs(np.asarray(g) - w).max()) for g, w in zip(got, want))
            worst = max(worst, diff)
            line = f"{name}: predictions max |keras - numbanet| = {diff:.3g}"
            if y is not None and name != "cnn":   # cnn: its Dropout draws different masks in each library
                model.train_on_batch(x, y)
                theirs.train_on_batch(x, y)
                step = float(np.abs(_flat(model.get_weights()) - _flat(theirs.get_weights())).max())
                line += f"; one more step, max weight difference {step:.3g}"
            print(line)
    print(f"worst prediction difference {worst:.3g}")


if __name__ == "__main__":
    main()
