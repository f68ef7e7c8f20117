"""scikit-learn's 8x8 handwritten digits, as a sequence task: each image read row by row,
8 steps of 8 pixel intensities.

1,797 digits (about 180 per class) from the UCI "Optical Recognition of Handwritten
Digits" set, shipped inside scikit-learn (no network needed; `pip install 'numbanet[data]'`
brings scikit-learn). Pixels are 0..16 and are scaled to [0, 1]. The split is a seeded
shuffle, stratified by class: the last `test_fraction` of each class is the test set.

    (x_train, y_train), (x_test, y_test) = digits.load_data()
    # x: float32 (N, 8, 8), y: int64 labels 0..9
"""
import numpy as np

TIMESTEPS = 8
FEATURES = 8


def load_data(test_fraction=0.2, seed=0):
    """-> (x_train, y_train), (x_test, y_test); x float32 (N, 8, 8) in [0, 1], y int64."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"digits.load_data: test_fraction must be in (0, 1), got {test_fraction!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise RuntimeError("digits.load_data: the 8x8 digits ship with scikit-learn, which is not installed; "
                           "pip install 'numbanet[data]'") from None
    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0)).reshape(-1, TIMESTEPS, FEATURES)
    y = np.asarray(bunch.target, dtype=np.int64)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(test_fraction * len(idx)))
        test.append(idx[len(idx) - n_test:])
        train.append(idx[:len(idx) - n_test])
    train = rng.permutation(np.concatenate(train))
    test = np.sort(np.concatenate(test))
    return (x[train], y[train]), (x[test], y[test])
