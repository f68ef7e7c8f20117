"""Weight initializers (Keras's names and fan rules), drawn from the library RNG on the host.

Fans (Keras's compute_fans): a Dense kernel (in, out) has fan_in=in, fan_out=out; a
kernel of rank >= 3 counts its leading axes as a receptive field, so a Conv2D kernel
(KH, KW, C_in, C_out) has fan_in = KH*KW*C_in and fan_out = KH*KW*C_out. A layer may name
its own (fan_in, fan_out), as Keras's EinsumDense does through input and output axes: a
MultiHeadAttention query kernel (d, heads, key_dim) is a d -> heads*key_dim map.
"""
import numpy as np

from numbanet.nn import utils


def fans(shape):
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return receptive * shape[-2], receptive * shape[-1]


def zeros(shape, dtype):
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype):
    return np.ones(shape, dtype=dtype)


def random_uniform(shape, dtype):
    """Keras's RandomUniform() defaults: U(-0.05, 0.05) (Embedding's "uniform")."""
    return utils.get_rng().uniform(-0.05, 0.05, size=shape).astype(dtype)


def random_normal(shape, dtype):
    """Keras's RandomNormal() defaults: N(0, 0.05^2)."""
    return (utils.get_rng().standard_normal(size=shape) * 0.05).astype(dtype)


def glorot_uniform(shape, dtype, fan=None):
    fan_in, fan_out = fan or fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return utils.get_rng().uniform(-limit, limit, size=shape).astype(dtype)


def glorot_normal(shape, dtype, fan=None):
    fan_in, fan_out = fan or fans(shape)
    return _truncated_normal(shape, np.sqrt(2.0 / (fan_in + fan_out)), dtype)


def he_uniform(shape, dtype, fan=None):
    limit = np.sqrt(6.0 / (fan or fans(shape))[0])
    return utils.get_rng().uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(shape, dtype, fan=None):
    return _truncated_normal(shape, np.sqrt(2.0 / (fan or fans(shape))[0]), dtype)


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


def orthogonal(shape, dtype):
    """Keras's Orthogonal() (gain 1): the Q of a QR decomposition of a normal draw, signs fixed
    by R's diagonal, over the shape flattened to (prod(shape[:-1]), shape[-1]): the default
    recurrent_initializer of SimpleRNN, LSTM and GRU."""
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    cols = shape[-1]
    a = utils.get_rng().standard_normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape).astype(dtype)


_TABLE = {f.__name__: f for f in (zeros, ones, random_uniform, random_normal, glorot_uniform, glorot_normal,
                                   he_uniform, he_normal, orthogonal)}
_ALIASES = {"uniform": "random_uniform", "normal": "random_normal"}


def get(name):
    if isinstance(name, str) and name.lower() in _ALIASES:
        return _ALIASES[name.lower()]
    if not isinstance(name, str) or name.lower() not in _TABLE:
        raise ValueError(f"initializer must be one of {', '.join(sorted(set(_TABLE) | set(_ALIASES)))}, "
                         f"got {name!r}")
    return name.lower()


_FAN_BASED = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal")


def initialize(name, shape, dtype, fans=None):
    """Initial values of `shape`; fans=(fan_in, fan_out) overrides the shape's fans."""
    name = get(name)
    shape = tuple(int(s) for s in shape)
    if name in _FAN_BASED:
        return _TABLE[name](shape, dtype, fans)
    return _TABLE[name](shape, dtype)
