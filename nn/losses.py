"""Losses by name, as classes and as Keras-style functions.

Each loss object checks a model's targets on the host (`check_targets`), and computes on
the backend (`compute(be, pred, target, labels_checked=False)`) the per-row losses and
the gradient of their mean; labels_checked=True says the caller range-checked integer
labels on the host (Model does, in check_targets), so the backend need not (on the gpu a
check is a round trip). Outputs of any rank work: a (batch, steps, classes) sequence is batch * steps rows
of a cross-entropy, so the loss is the mean over every predicted position, as Keras's
"sum_over_batch_size" reduction gives. A softmax output followed by a cross-entropy (or
a sigmoid output followed by binary cross-entropy) runs the fused, stable kernel on the
logits instead (`compute_from_logits`; the model arranges it). The functions
(`categorical_crossentropy(y_true, y_pred)`) are for host NumPy use and name the loss in
compile().
"""
import numpy as np

from numbanet import kernels
from numbanet.kernels import shapes


def _check_finite(op, y):
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise ValueError(f"{op}: y holds NaN or infinite values")


class Loss:
    name = "loss"
    # "categorical" (argmax accuracy over rows), "binary" (thresholded), "regression"
    kind = "regression"
    # The output activation whose pre-activation (logits) this loss can take instead.
    fuses_with = None

    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)

    def get_config(self):
        return {"from_logits": self.from_logits}

    def check_targets(self, op, y, out_shape, dtype, layer_name):
        """Host targets for a model output of per-sample shape out_shape -> an array ready
        for the kernels, or a ValueError/TypeError saying what is wrong."""
        if tuple(y.shape[1:]) != tuple(out_shape):
            raise ValueError(f"{op}: y has per-sample shape {tuple(y.shape[1:])} but layer "
                             f"'{layer_name}' outputs {tuple(out_shape)}")
        if not np.issubdtype(y.dtype, np.floating) and not np.issubdtype(y.dtype, np.integer):
            raise TypeError(f"{op}: y must be numeric, got dtype {y.dtype}")
        _check_finite(op, y)
        return np.ascontiguousarray(y, dtype=dtype)

    def compute_from_logits(self, be, logits, target, labels_checked=False):
        raise TypeError(f"{type(self).__name__} has no fused form")

    def __call__(self, y_true, y_pred):
        """Mean loss of host arrays (on the process's default backend)."""
        be = kernels.get_backend()
        pred = be.asarray(np.asarray(y_pred))
        labels = be.asarray(np.asarray(y_true))
        losses, _ = self.compute(be, pred, labels)
        return be.sum(losses) / losses.shape[0]


class CategoricalCrossentropy(Loss):
    """Integer class ids (the output's shape without its class axis) or one-hot rows (the
    output's shape)."""
    name = "categorical_crossentropy"
    kind = "categorical"
    fuses_with = "softmax"
    sparse = False

    def check_targets(self, op, y, out_shape, dtype, layer_name):
        classes, lead = out_shape[-1], tuple(out_shape[:-1])
        if np.issubdtype(y.dtype, np.integer) and y.shape[1:] == lead + (1,):
            y = y.reshape(y.shape[:-1])
        ids_shape = "(N" + "".join(f", {d}" for d in lead) + ")"
        if y.shape[1:] == lead:
            if not np.issubdtype(y.dtype, np.integer):
                raise TypeError(f"{op}: class labels y must be integers, got dtype {y.dtype}")
            bad = shapes.first_out_of_range(y, classes)   # the one range rule
            if bad is not None:
                where = np.unravel_index(bad[0], y.shape)
                raise ValueError(f"{op}: label {bad[1]} in y is out of range: layer '{layer_name}' has {classes} "
                                 f"classes, expected labels in [0, {classes - 1}] "
                                 f"(y[{', '.join(str(int(i)) for i in where)}])")
            return np.ascontiguousarray(y, dtype=np.int32)
        if self.sparse:
            raise ValueError(f"{op}: sparse_categorical_crossentropy needs integer class ids of shape {ids_shape}, "
                             f"got y.shape={y.shape}")
        if y.shape[1:] == tuple(out_shape) and np.issubdtype(y.dtype, np.floating):
            _check_finite(op, y)
            return np.ascontiguousarray(y, dtype=dtype)
        if y.ndim == 2 and not lead and np.issubdtype(y.dtype, np.floating):
            raise ValueError(f"{op}: one-hot y has {y.shape[1]} columns but layer '{layer_name}' has {classes} "
                             f"classes (y.shape={y.shape})")
        raise ValueError(f"{op}: y must be integer class ids {ids_shape} or one-hot float rows "
                         f"(N, {', '.join(map(str, out_shape))}), got y.shape={y.shape}, dtype {y.dtype}")

    @staticmethod
    def _rows(be, pred, target):
        c = pred.shape[pred.ndim - 1]  # the CUDA simulator's shapes refuse negative indices
        rows = pred.size // c
        p2 = be.reshape(pred, (rows, c))
        t2 = be.reshape(target, (rows,) if target.ndim == pred.ndim - 1 else (rows, c))
        return p2, t2

    def compute(self, be, pred, target, labels_checked=False):
        if self.from_logits:
            return self.compute_from_logits(be, pred, target, labels_checked)
        p2, t2 = self._rows(be, pred, target)
        losses, d = be.crossentropy(p2, t2, _labels_checked=labels_checked)
        return losses, be.reshape(d, pred.shape)

    def compute_from_logits(self, be, logits, target, labels_checked=False):
        z2, t2 = self._rows(be, logits, target)
        losses, d = be.softmax_cross_entropy(z2, t2, _labels_checked=labels_checked)
        return losses, be.reshape(d, logits.shape)


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Integer class ids only."""
    name = "sparse_categorical_crossentropy"
    sparse = True


class BinaryCrossentropy(Loss):
    """Targets in [0, 1] of the output's shape (a (N,) vector for a (N, 1) output is taken
    as its column); the mean over every element."""
    name = "binary_crossentropy"
    kind = "binary"
    fuses_with = "sigmoid"

    def check_targets(self, op, y, out_shape, dtype, layer_name):
        if tuple(out_shape) == (1,) and y.ndim == 1:
            y = y.reshape(-1, 1)
        return super().check_targets(op, y, out_shape, dtype, layer_name)

    def compute(self, be, pred, target, labels_checked=False):
        return be.binary_crossentropy(pred, target, from_logits=self.from_logits)

    def compute_from_logits(self, be, logits, target, labels_checked=False):
        return be.binary_crossentropy(logits, target, from_logits=True)


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def __init__(self):
        super().__init__(from_logits=False)

    def get_config(self):
        return {}

    def compute(self, be, pred, target, labels_checked=False):
        return be.mse(pred, target)


def categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample losses (host NumPy) of probabilities (or logits) against labels."""
    return _per_sample(CategoricalCrossentropy(from_logits), y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    return _per_sample(SparseCategoricalCrossentropy(from_logits), y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample losses (the mean over every axis but the first), host NumPy."""
    return _per_sample(BinaryCrossentropy(from_logits), y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    return _per_sample(MeanSquaredError(), y_true, y_pred)


def _per_sample(loss, y_true, y_pred):
    be = kernels.get_backend()
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    losses, _ = loss.compute(be, be.asarray(y_pred), be.asarray(y_true))
    out = be.to_numpy(losses)
    # A cross-entropy has one loss per predicted row: Keras's shape, the output's without its class axis.
    return out.reshape(y_pred.shape[:-1]) if isinstance(loss, CategoricalCrossentropy) else out


mse = MSE = mean_squared_error

_CLASSES = (CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy, MeanSquaredError)
_BY_NAME = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
}
_BY_FUNCTION = {
    categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    binary_crossentropy: BinaryCrossentropy,
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
    classes = {c.__name__: c for c in _CLASSES}
    if class_name not in classes:
        raise ValueError(f"unknown loss class {class_name!r}")
    return classes[class_name](**config)
