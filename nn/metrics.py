"""Metrics for compile(metrics=[...]): 'accuracy' (alias 'acc')."""

_NAMES = {"accuracy": "accuracy", "acc": "accuracy", "categorical_accuracy": "accuracy",
          "sparse_categorical_accuracy": "accuracy"}


def get(name):
    if not isinstance(name, str) or name.lower() not in _NAMES:
        raise ValueError(f"metric must be one of {', '.join(sorted(_NAMES))}, got {name!r}")
    return name.lower()


def correct(be, pred, labels):
    """Number of rows whose argmax matches the label (a host int)."""
    return be.accuracy(pred, labels)
