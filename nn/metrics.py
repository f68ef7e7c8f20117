"""Metrics for compile(metrics=[...]): 'accuracy' (alias 'acc')."""

_NAMES = {"accuracy": "accuracy", "acc": "accuracy", "categorical_accuracy": "accuracy",
          "sparse_categorical_accuracy": "accuracy"}


def get(name):
    if not isinstance(name, str) or name.lower() not in _NAMES:
        raise ValueError(f"metric must be one of {', '.join(sorted(_NAMES))}, got {name!r}")
    return name.lower()


def correct(be, pred, labels, labels_checked=False):
    """Number of rows whose argmax matches the label (a host int). labels_checked=True:
    the caller has checked integer labels against the class count (Sequential does, on
    the host), so the backend need not (on the gpu a check is a round trip)."""
    return be.accuracy(pred, labels, _labels_checked=labels_checked)
