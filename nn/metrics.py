"""Metrics for compile(metrics=[...]): accuracy in its Keras forms.

"accuracy" (alias "acc") follows the loss, as in Keras 3: binary accuracy (prediction >
0.5 equals the 0/1 target) after binary_crossentropy, categorical accuracy (argmax
equals the label) otherwise. "binary_accuracy", "categorical_accuracy" and
"sparse_categorical_accuracy" pick one explicitly. Over a sequence output the count is
per position: a (batch, steps, classes) output has batch * steps predictions.
"""

_NAMES = {"accuracy": None, "acc": None, "categorical_accuracy": "categorical",
          "sparse_categorical_accuracy": "categorical", "binary_accuracy": "binary"}


def get(name):
    """-> the metric's name in the logs ("accuracy" for accuracy/acc, else the name given)."""
    if not isinstance(name, str) or name.lower() not in _NAMES:
        raise ValueError(f"metric must be one of {', '.join(sorted(_NAMES))}, got {name!r}")
    name = name.lower()
    return "accuracy" if name == "acc" else name


def kind(name, loss):
    """'binary' or 'categorical': how `name` counts hits for a model compiled with `loss`."""
    fixed = _NAMES[name]
    if fixed is not None:
        return fixed
    return "binary" if loss.kind == "binary" else "categorical"


def count(be, metric_kind, pred, target, from_logits=False):
    """(hits, predictions) for one batch; hits is a host int. Targets were checked on the
    host (Model does it before a batch reaches here), so the backend need not range-check
    the labels (on the gpu a check is a round trip)."""
    if metric_kind == "binary":
        # A logit above 0 is a probability above 0.5.
        return be.binary_accuracy(pred, target, threshold=0.0 if from_logits else 0.5), pred.size
    c = pred.shape[pred.ndim - 1]  # the CUDA simulator's shapes refuse negative indices
    rows = pred.size // c
    p2 = be.reshape(pred, (rows, c))
    t2 = be.reshape(target, (rows,) if target.ndim == pred.ndim - 1 else (rows, c))
    return be.accuracy(p2, t2, _labels_checked=True), rows
