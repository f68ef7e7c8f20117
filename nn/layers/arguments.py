"""Constructor-argument rules the layers share."""
import numpy as np


def channels_last(kind, data_format):
    """Keras's data_format: numbanet is NHWC, so channels_last (or None) only."""
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{kind}: only data_format='channels_last' is supported (numbanet is NHWC), "
                         f"got {data_format!r}")


def int_tuple(kind, name, value):
    """A sequence of ints (a shape, Permute's dims) -> a tuple of ints."""
    try:
        return tuple(int(v) for v in value)
    except TypeError:
        raise ValueError(f"{kind}: {name} must be a tuple of ints, got {value!r}") from None


def single(kind, name, value):
    """An int or a tuple of one (Keras's 1-D arguments) -> a positive int."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{kind}: {name} must be a positive int or a tuple of one, got {value!r}")
    return int(value)
