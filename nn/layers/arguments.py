"""Constructor-argument rules the layers share."""
from numbanet.nn.utils import is_int


def channels_last(kind, data_format):
    """Keras's data_format: numbanet is NHWC, so channels_last (or None) only."""
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{kind}: only data_format='channels_last' is supported (numbanet is NHWC), "
                         f"got {data_format!r}")


def int_tuple(kind, name, value):
    """A sequence of ints (a shape, Permute's dims) -> a tuple of ints. An entry that is
    not an int (a float, a string, None) is refused, never truncated or parsed."""
    try:
        entries = tuple(value)
    except TypeError:
        entries = None
    if entries is None or not all(is_int(v) for v in entries):
        raise ValueError(f"{kind}: {name} must be a tuple of ints, got {value!r}")
    return tuple(int(v) for v in entries)


def single(kind, name, value):
    """An int or a tuple of one (Keras's 1-D arguments) -> a positive int."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if not is_int(value) or value < 1:
        raise ValueError(f"{kind}: {name} must be a positive int or a tuple of one, got {value!r}")
    return int(value)
