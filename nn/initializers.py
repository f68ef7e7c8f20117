"""Weight initializers (Keras's names and fan rules), drawn from the library RNG on the host.

Fans: a Dense kernel (in, out) has fan_in=in, fan_out=out; a Conv2D kernel
(KH, KW, C_in, C_out) has fan_in = KH*KW*C_in and fan_out = KH*KW*C_out.
"""
import numpy as np

from numbanet.nn import utils


def fans(shape):
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 4:
        receptive = shape[0] * shape[1]
        return receptive * shape[2], receptive * shape[3]
    n = int(np.prod(shape))
    return n, n


def zeros(shape, dtype):
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype):
    return np.ones(shape, dtype=dtype)


def glorot_uniform(shape, dtype):
    fan_in, fan_out = fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return utils.get_rng().uniform(-limit, limit, size=shape).astype(dtype)


def glorot_normal(shape, dtype):
    fan_in, fan_out = fans(shape)
    return _truncated_normal(shape, np.sqrt(2.0 / (fan_in + fan_out)), dtype)


def he_uniform(shape, dtype):
    limit = np.sqrt(6.0 / fans(shape)[0])
    return utils.get_rng().uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(shape, dtype):
    return _truncated_normal(shape, np.sqrt(2.0 / fans(shape)[0]), dtype)


def _truncated_normal(shape, stddev, dtype):
    # Keras truncates at two standard deviations and rescales so the spread stays stddev.
    rng = utils.get_rng()
    scale = stddev / 0.87962566103423978
    out = rng.standard_normal(size=shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(size=int(bad.sum()))
        bad = np.abs(out) > 2.0
    return (out * scale).astype(dtype)


_TABLE = {f.__name__: f for f in (zeros, ones, glorot_uniform, glorot_normal, he_uniform, he_normal)}


def get(name):
    if not isinstance(name, str) or name.lower() not in _TABLE:
        raise ValueError(f"initializer must be one of {', '.join(sorted(_TABLE))}, got {name!r}")
    return name.lower()


def initialize(name, shape, dtype):
    return _TABLE[name](tuple(int(s) for s in shape), dtype)
