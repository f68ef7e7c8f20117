"""The `numbanet train --model lstm` data: scikit-learn's 8x8 digits as 8 rows of 8 pixels,
their stratified split, and the message without scikit-learn."""
import sys

import numpy as np
import pytest

from numbanet.nn.datasets import digits


def test_digits_are_sklearn_images_row_by_row():
    from sklearn.datasets import load_digits
    (xt, yt), (xv, yv) = digits.load_data()
    assert xt.shape == (1438, 8, 8) and xv.shape == (359, 8, 8)   # a fifth of each class, rounded
    assert xt.dtype == np.float32 and yt.dtype == np.int64
    assert 0.0 <= xt.min() and xt.max() == 1.0
    # Every sample is one of sklearn's flat 64-pixel rows / 16, time step t = image row t.
    flat = load_digits().data.astype(np.float32) / 16
    index = {row.tobytes(): i for i, row in enumerate(flat)}
    target = load_digits().target
    seen = set()
    for x, y in ((xt, yt), (xv, yv)):
        for sample, label in zip(x, y):
            i = index[sample.reshape(64).tobytes()]
            assert target[i] == label
            np.testing.assert_array_equal(sample[2], flat[i, 16:24])
            seen.add(i)
    assert len(seen) == 1797   # each digit once, in one split only


def test_split_is_stratified_and_seeded():
    (_, yt), (_, yv) = digits.load_data(test_fraction=0.25, seed=3)
    counts_t, counts_v = np.bincount(yt, minlength=10), np.bincount(yv, minlength=10)
    assert np.all(np.abs(counts_v / (counts_t + counts_v) - 0.25) < 0.01)
    (xa, _), _ = digits.load_data(seed=1)
    (xb, _), _ = digits.load_data(seed=1)
    (xc, _), _ = digits.load_data(seed=2)
    assert np.array_equal(xa, xb) and not np.array_equal(xa, xc)
    with pytest.raises(ValueError, match=r"digits.load_data: test_fraction must be in \(0, 1\), got 1.0"):
        digits.load_data(test_fraction=1.0)


def test_without_scikit_learn_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(RuntimeError, match=r"pip install 'numbanet\[data\]'"):
        digits.load_data()
