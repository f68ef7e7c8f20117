"""Accuracy in its Keras forms: the kind follows the loss, counts per prediction."""
import numpy as np
import pytest

from numbanet.nn import losses, metrics


def test_names_and_kinds():
    assert metrics.get("acc") == "accuracy" and metrics.get("Binary_Accuracy") == "binary_accuracy"
    bce, cce = losses.BinaryCrossentropy(), losses.CategoricalCrossentropy()
    assert metrics.kind("accuracy", bce) == "binary" and metrics.kind("accuracy", cce) == "categorical"
    assert metrics.kind("categorical_accuracy", bce) == "categorical"
    assert metrics.kind("binary_accuracy", cce) == "binary"
    with pytest.raises(ValueError, match="metric must be one of"):
        metrics.get("auc")


def test_counts_per_position_and_per_element(nnbe):
    be = nnbe
    scores = np.array([[[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]], np.float32)     # (1, 3, 2)
    labels = np.array([[1, 1, 1]], np.int32)
    hits, count = metrics.count(be, "categorical", be.asarray(scores), be.asarray(labels))
    assert (hits, count) == (2, 3)
    probs = np.array([[0.2, 0.7], [0.6, 0.4]], np.float32)
    target = np.array([[0, 1], [0, 0]], np.float32)
    assert metrics.count(be, "binary", be.asarray(probs), be.asarray(target)) == (3, 4)
    # from logits the line is at 0
    assert metrics.count(be, "binary", be.asarray(probs - 0.5), be.asarray(target), from_logits=True) == (3, 4)
