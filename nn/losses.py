"""Losses by name, as classes and as Keras-style functions.

Each loss object's `compute(be, pred, labels, labels_checked=False)` returns (per-sample
losses, dpred of the mean loss) as backend arrays; labels_checked=True says the caller has
range-checked integer labels on the host (Sequential does), so the backend need not (on
the gpu a check is a round trip). A softmax output followed by a cross-entropy runs the
fused, stable be.softmax_cross_entropy on the logits instead (the model arranges it).
The functions (`categorical_crossentropy(y_true, y_pred)`) are for host NumPy use and
name the loss in compile().
"""
import numpy as np

from numbanet import kernels


class Loss:
    name = "loss"
    crossentropy = False

    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)

    def get_config(self):
        return {"from_logits": self.from_logits}

    def __call__(self, y_true, y_pred):
        """Mean loss of host arrays (on the process's default backend)."""
        be = kernels.get_backend()
        pred = be.asarray(np.asarray(y_pred))
        labels = be.asarray(np.asarray(y_true))
        losses, _ = self.compute(be, pred, labels)
        return be.sum(losses) / pred.shape[0]


class CategoricalCrossentropy(Loss):
    """Integer class ids (N,) or one-hot rows (N, C)."""
    name = "categorical_crossentropy"
    crossentropy = True

    def compute(self, be, pred, labels, labels_checked=False):
        if self.from_logits:
            return be.softmax_cross_entropy(pred, labels, _labels_checked=labels_checked)
        return be.crossentropy(pred, labels, _labels_checked=labels_checked)


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Integer class ids (N,) only."""
    name = "sparse_categorical_crossentropy"


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def compute(self, be, pred, target, labels_checked=False):
        return be.mse(pred, target)


def categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample losses (host NumPy) of probabilities (or logits) against labels."""
    return _per_sample(CategoricalCrossentropy(from_logits), y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    return _per_sample(SparseCategoricalCrossentropy(from_logits), y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    return _per_sample(MeanSquaredError(), y_true, y_pred)


def _per_sample(loss, y_true, y_pred):
    be = kernels.get_backend()
    losses, _ = loss.compute(be, be.asarray(np.asarray(y_pred)), be.asarray(np.asarray(y_true)))
    return be.to_numpy(losses)


mse = MSE = mean_squared_error

_BY_NAME = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
}
_BY_FUNCTION = {
    categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    mean_squared_error: MeanSquaredError,
}


def get(obj):
    """A name, a loss function above, a Loss class or instance -> a Loss instance."""
    if isinstance(obj, Loss):
        return obj
    if isinstance(obj, type) and issubclass(obj, Loss) and obj is not Loss:
        return obj()
    if isinstance(obj, str) and obj.lower() in _BY_NAME:
        return _BY_NAME[obj.lower()]()
    if callable(obj) and obj in _BY_FUNCTION:
        return _BY_FUNCTION[obj]()
    raise ValueError(f"loss must be one of {', '.join(sorted(_BY_NAME))}, an nn.losses function or class, "
                     f"got {obj!r}")


def from_config(class_name, config):
    classes = {c.__name__: c for c in (CategoricalCrossentropy, SparseCategoricalCrossentropy, MeanSquaredError)}
    if class_name not in classes:
        raise ValueError(f"unknown loss class {class_name!r}")
    return classes[class_name](**config)
