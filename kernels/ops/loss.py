"""The loss family: losses with their gradients in one pass (softmax + cross-entropy fused,
cross-entropy of probabilities, mean squared error, binary cross-entropy) and the
accuracy counts, on kernels/<backend>/loss.py."""
import numpy as np

from numbanet.kernels import shapes
from numbanet.kernels.ops import cost
from numbanet.kernels.ops.declare import Family, Op


def check_labels(op, logits, labels):
    """Integer class labels (N,) or one-hot / probability rows (N, C). -> True if one-hot."""
    n, c = logits.shape
    if labels.ndim == 1:
        shapes.check_int(op, "labels", labels)
        if labels.shape[0] != n:
            raise ValueError(f"{op}: labels has {labels.shape[0]} rows but logits has {n} "
                             f"(labels.shape={tuple(labels.shape)}, logits.shape={tuple(logits.shape)})")
        return False
    if labels.ndim == 2:
        shapes.check_float(op, "labels", labels)
        shapes.check_same_dtype(op, [("logits", logits), ("labels", labels)])
        if tuple(labels.shape) != (n, c):
            raise ValueError(f"{op}: one-hot labels must have shape {(n, c)}, got {tuple(labels.shape)}")
        return True
    raise ValueError(f"{op}: labels must be integer class ids (N,) or one-hot rows (N, C), "
                     f"got shape {tuple(labels.shape)}")


def _loss_inputs(be, op, pred, labels, labels_checked):
    pred, labels = be._prepare(op, pred=pred, labels=labels)
    shapes.check_float(op, "logits", pred)
    shapes.check_ndim(op, "logits", pred, 2, "(N, C)")
    shapes.check_nonempty(op, "logits", pred)
    onehot = check_labels(op, pred, labels)
    if not onehot and not labels_checked:
        c = pred.shape[1]
        be._check_range(op, "labels", labels, c, f"{c} classes")
    return pred, labels, onehot


def softmax_cross_entropy(be, logits, labels, *, _labels_checked=False):
    """Fused softmax + cross-entropy: -> (losses (N,), dlogits = (softmax - onehot) / N).

    labels are integer class ids (N,) or one-hot rows (N, C). Stable for huge logits
    (the row max is subtracted before exp).
    """
    op = "softmax_cross_entropy"
    logits, labels, onehot = _loss_inputs(be, op, logits, labels, _labels_checked)
    losses = be.empty((logits.shape[0],), logits.dtype)
    dlogits = be.empty(logits.shape, logits.dtype)
    be.loss.softmax_cross_entropy(logits, labels, onehot, losses, dlogits)
    return losses, dlogits


def softmax_cross_entropy_stats(be, logits, labels, *, _labels_checked=False):
    """softmax_cross_entropy and the batch's statistics in one pass: -> (losses, dlogits,
    stats), stats a float64 (2,) backend array holding the mean loss and the number of
    rows whose logits' argmax (the rule of be.argmax) is the label. On the gpu one
    kernel writes all of it; a training step adds its penalties to stats[0:1] (their
    `into=`) and reads the 16 bytes back once."""
    op = "softmax_cross_entropy"
    logits, labels, onehot = _loss_inputs(be, op, logits, labels, _labels_checked)
    losses = be.empty((logits.shape[0],), logits.dtype)
    dlogits = be.empty(logits.shape, logits.dtype)
    stats = be.empty((2,), np.float64)
    be.loss.softmax_cross_entropy_stats(logits, labels, onehot, losses, dlogits, stats)
    return losses, dlogits, stats


def crossentropy(be, probs, labels, *, eps=1e-7, _labels_checked=False):
    """Cross-entropy of probabilities (Keras clips them to [eps, 1 - eps]).

    -> (losses (N,), dprobs); dprobs is the mean-loss gradient, zero where clipped.
    """
    op = "crossentropy"
    eps = shapes.float_scalar(op, "eps", eps)
    if not 0.0 < eps < 0.5:
        raise ValueError(f"{op}: eps must be in (0, 0.5), got {eps}")
    probs, labels, onehot = _loss_inputs(be, op, probs, labels, _labels_checked)
    losses = be.empty((probs.shape[0],), probs.dtype)
    dprobs = be.empty(probs.shape, probs.dtype)
    be.loss.crossentropy(probs, labels, onehot, eps, losses, dprobs)
    return losses, dprobs


def mse(be, pred, target):
    """Mean squared error per sample: -> (losses (N,), dpred of the mean over samples)."""
    op = "mse"
    pred, target = be._prepare(op, pred=pred, target=target)
    shapes.check_alike(op, [("pred", pred), ("target", target)])
    if pred.ndim < 1:
        raise ValueError(f"{op}: pred must have a batch axis, got a 0-D array")
    shapes.check_nonempty(op, "pred", pred)
    n = pred.shape[0]
    p2 = be.reshape(pred, (n, pred.size // n))
    t2 = be.reshape(target, (n, pred.size // n))
    losses = be.empty((n,), pred.dtype)
    dpred = be.empty(p2.shape, pred.dtype)
    be.loss.mse(p2, t2, losses, dpred)
    return losses, be.reshape(dpred, pred.shape)


def _binary_inputs(be, op, pred, target):
    pred, target = be._prepare(op, pred=pred, target=target)
    shapes.check_alike(op, [("pred", pred), ("target", target)])
    shapes.check_nonempty(op, "pred", pred)
    if pred.ndim < 1:
        raise ValueError(f"{op}: pred needs a batch axis, got a 0-D array")
    return pred, target


def binary_crossentropy(be, pred, target, *, from_logits=False, eps=1e-7):
    """Binary cross-entropy of probabilities (clipped to [eps, 1 - eps], as Keras) or of
    logits (the stable max(z, 0) - z t + log(1 + exp(-|z|))), averaged over every axis but
    the first: -> (losses (N,), dpred of the mean over all elements)."""
    op = "binary_crossentropy"
    pred, target = _binary_inputs(be, op, pred, target)
    eps = shapes.float_scalar(op, "eps", eps)
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"{op}: eps must be in [0, 0.5), got {eps}")
    n = pred.shape[0]
    p2 = be.reshape(pred, (n, pred.size // n))
    losses = be.empty((n,), pred.dtype)
    dpred = be.empty(p2.shape, pred.dtype)
    be.loss.binary_crossentropy(p2, be.reshape(target, p2.shape), shapes.flag(op, "from_logits", from_logits),
                                eps, losses, dpred)
    return losses, be.reshape(dpred, pred.shape)


def binary_accuracy(be, pred, target, *, threshold=0.5):
    """Number of elements where (pred > threshold) equals the 0/1 target (an int on the host)."""
    op = "binary_accuracy"
    pred, target = _binary_inputs(be, op, pred, target)
    threshold = shapes.float_scalar(op, "threshold", threshold)
    return int(be.loss.binary_accuracy(be._flat(pred), be._flat(target), threshold))


def accuracy(be, scores, labels, *, _labels_checked=False):
    """Number of rows whose argmax equals the label (an int on the host)."""
    op = "accuracy"
    scores, labels, onehot = _loss_inputs(be, op, scores, labels, _labels_checked)
    return int(be.loss.accuracy(scores, labels, onehot))



# --------------------------------------------------------------------------- warm-ups
# Each label form: integer class ids and one-hot rows.

def _labels(be, dt):
    ids = be.asarray(np.array([1, 0, 3, 9], dtype=np.int32))
    onehot = be.asarray(np.eye(10, dtype=dt)[[1, 0, 3, 9]])
    return ids, onehot


def _warm_with_labels(name, **kwargs):
    def warm(be, dt):
        for labels in _labels(be, dt):
            getattr(be, name)(be.zeros((4, 10), dt), labels, _labels_checked=True, **kwargs)
    return warm


def _warm_mse(be, dt):
    be.mse(be.zeros((4, 3), dt), be.zeros((4, 3), dt))


def _warm_binary_crossentropy(be, dt):
    for from_logits in (False, True):
        be.binary_crossentropy(be.zeros((4, 3), dt), be.zeros((4, 3), dt), from_logits=from_logits)


def _warm_binary_accuracy(be, dt):
    be.binary_accuracy(be.zeros((4, 3), dt), be.zeros((4, 3), dt))


# --------------------------------------------------------------------------- costs (Op.cost)

def _cost_softmax_cross_entropy(logits, labels, *, _labels_checked=False):
    # Per element the row's max, x - max, exp, the sum, the probability and the gradient
    # (p - onehot) / N (2); per row a log and the loss (2). losses and dlogits written.
    n, c = logits.shape
    return 7 * n * c + 2 * n, cost.nbytes(logits, labels, logits) + n * cost.itemsize(logits)


def _cost_softmax_cross_entropy_stats(logits, labels, *, _labels_checked=False):
    # The argmax's comparison per element besides; the 16 bytes of statistics.
    flops, moved = _cost_softmax_cross_entropy(logits, labels)
    return flops + cost.size(logits), moved + 16


def _cost_crossentropy(probs, labels, *, eps=1e-7, _labels_checked=False):
    # Per element the clip (2), the divide and the mean's scale of the gradient; per row a log.
    n, c = probs.shape
    return 4 * n * c + n, cost.nbytes(probs, labels, probs) + n * cost.itemsize(probs)


def _cost_mse(pred, target):
    # The difference, its square added (2), the gradient 2 d / N (2).
    n = pred.shape[0]
    return 5 * cost.size(pred), cost.nbytes(pred, target, pred) + n * cost.itemsize(pred)


def _cost_binary_crossentropy(pred, target, *, from_logits=False, eps=1e-7):
    # logits: max(z, 0) - z t + log(1 + exp(-|z|)) (9) and the gradient (sigmoid(z) - t) / n (6);
    # probabilities: the clip (2), t log p + (1 - t) log(1 - p) (8) and (p - t) / (p (1 - p)) / n (6).
    n = pred.shape[0]
    per = 15 if from_logits else 16
    return per * cost.size(pred), cost.nbytes(pred, target, pred) + n * cost.itemsize(pred)


def _cost_binary_accuracy(pred, target, *, threshold=0.5):
    # pred > threshold, == target, counted.
    return 3 * cost.size(pred), cost.nbytes(pred, target)


def _cost_accuracy(scores, labels, *, _labels_checked=False):
    # The row's argmax (a comparison per element) against its label.
    return cost.size(scores), cost.nbytes(scores, labels)


FAMILY = Family("loss", module="loss", attr="loss", ops=(
    Op("softmax_cross_entropy", softmax_cross_entropy, warmup=_warm_with_labels("softmax_cross_entropy"),
       cost=_cost_softmax_cross_entropy),
    Op("softmax_cross_entropy_stats", softmax_cross_entropy_stats,
       warmup=_warm_with_labels("softmax_cross_entropy_stats"), cost=_cost_softmax_cross_entropy_stats),
    Op("crossentropy", crossentropy, warmup=_warm_with_labels("crossentropy"), cost=_cost_crossentropy),
    Op("mse", mse, warmup=_warm_mse, cost=_cost_mse),
    Op("binary_crossentropy", binary_crossentropy, warmup=_warm_binary_crossentropy, cost=_cost_binary_crossentropy),
    Op("binary_accuracy", binary_accuracy, warmup=_warm_binary_accuracy, cost=_cost_binary_accuracy),
    Op("accuracy", accuracy, warmup=_warm_with_labels("accuracy"), cost=_cost_accuracy),
))
