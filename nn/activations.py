"""Activation functions by name, each a forward and a backward through backend ops.

An activation is named by a string ("relu", "gelu", ...) or, when it takes a parameter
other than its default, by a dict {"name": "gelu", "approximate": True}: both are JSON,
so layers save them as they are. The functions below (nn.activations.gelu, ...) run on
host arrays with the default backend, as Keras's do on tensors; passing one, or a
functools.partial of one, as a layer's `activation` names it:

    Dense(64, activation="gelu")                                        # erf form, Keras's default
    Dense(64, activation=functools.partial(nn.activations.gelu, approximate=True))
    Dense(64, activation={"name": "leaky_relu", "negative_slope": 0.1})

relu, sigmoid, tanh and softmax differentiate from their output y; gelu, silu and
leaky_relu from their input x (their derivatives are not functions of y): layers keep
whichever `needs_input(spec)` says.
"""
import functools

import numpy as np

from numbanet import kernels

NAMES = ("linear", "relu", "sigmoid", "tanh", "softmax", "gelu", "silu", "swish", "leaky_relu")


def _softmax_forward(be, x):
    # The kernel works on (N, C); a conv layer's softmax runs over its channel axis.
    c = x.shape[x.ndim - 1]  # the CUDA simulator's shapes refuse negative indices
    y = be.softmax(be.reshape(x, (x.size // c, c)))
    return be.reshape(y, x.shape)


def _softmax_backward(be, y, dy):
    c = y.shape[y.ndim - 1]
    dx = be.softmax_backward(be.reshape(y, (y.size // c, c)), be.reshape(dy, (dy.size // c, c)))
    return be.reshape(dx, y.shape)


# name -> (forward(be, x, **params), backward(be, saved, dy, **params), backward needs x, default params)
_TABLE = {
    "linear": (lambda be, x: x, lambda be, y, dy: dy, False, {}),
    "relu": (lambda be, x: be.relu(x), lambda be, y, dy: be.relu_backward(y, dy), False, {}),
    "sigmoid": (lambda be, x: be.sigmoid(x), lambda be, y, dy: be.sigmoid_backward(y, dy), False, {}),
    "tanh": (lambda be, x: be.tanh(x), lambda be, y, dy: be.tanh_backward(y, dy), False, {}),
    "softmax": (_softmax_forward, _softmax_backward, False, {}),
    "gelu": (lambda be, x, approximate: be.gelu(x, approximate=approximate),
             lambda be, x, dy, approximate: be.gelu_backward(x, dy, approximate=approximate), True,
             {"approximate": False}),
    "silu": (lambda be, x: be.silu(x), lambda be, x, dy: be.silu_backward(x, dy), True, {}),
    "leaky_relu": (lambda be, x, negative_slope: be.leaky_relu(x, negative_slope=negative_slope),
                   lambda be, x, dy, negative_slope: be.leaky_relu_backward(x, dy, negative_slope=negative_slope),
                   True, {"negative_slope": 0.2}),
}
_ALIASES = {"swish": "silu"}


def _split(spec):
    """A canonical spec -> (name, params with defaults filled in)."""
    if isinstance(spec, dict):
        name = spec["name"]
        params = dict(_TABLE[name][3])
        params.update({k: v for k, v in spec.items() if k != "name"})
        return name, params
    return spec, dict(_TABLE[spec][3])


def _canonical(owner_msg, name, params):
    name = _ALIASES.get(name, name)
    defaults = _TABLE[name][3]
    unknown = set(params) - set(defaults)
    if unknown:
        raise ValueError(f"activation {name!r} takes {sorted(defaults) or 'no parameters'}, "
                         f"got {sorted(unknown)}{owner_msg}")
    clean = {}
    for k, v in params.items():
        if k == "approximate":
            if not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"activation gelu: approximate must be True or False, got {v!r}")
            v = bool(v)
        elif k == "negative_slope":
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not np.isfinite(v):
                raise ValueError(f"activation leaky_relu: negative_slope must be a finite number, got {v!r}")
            v = float(v)
        if v != defaults[k]:
            clean[k] = v
    return {"name": name, **clean} if clean else name


def get(obj):
    """None, a name, a {"name": ..., **params} dict, one of this module's functions or a
    functools.partial of one -> the canonical spec (a name, or a dict when a parameter
    differs from its default)."""
    if obj is None:
        return "linear"
    if isinstance(obj, str):
        key = obj.lower()
        if _ALIASES.get(key, key) not in _TABLE:
            raise ValueError(f"activation must be one of {', '.join(NAMES)} or None, got {obj!r}")
        return _ALIASES.get(key, key)
    if isinstance(obj, dict):
        name = obj.get("name")
        if not isinstance(name, str) or _ALIASES.get(name.lower(), name.lower()) not in _TABLE:
            raise ValueError(f"activation dict needs a 'name' among {', '.join(NAMES)}, got {obj!r}")
        return _canonical("", name.lower(), {k: v for k, v in obj.items() if k != "name"})
    if isinstance(obj, functools.partial) and obj.func in _FUNCTIONS and not obj.args:
        return _canonical(" (functools.partial keywords)", _FUNCTIONS[obj.func], dict(obj.keywords))
    if callable(obj) and obj in _FUNCTIONS:
        return _FUNCTIONS[obj]
    raise ValueError(f"activation must be one of {', '.join(NAMES)}, None, an nn.activations function "
                     f"(or a functools.partial of one) or a {{'name': ...}} dict, got {obj!r}")


def name_of(spec):
    return _split(spec)[0]


def needs_input(spec):
    """True when the backward needs the forward's input x rather than its output y."""
    return _TABLE[_split(spec)[0]][2]


def forward(be, spec, x):
    name, params = _split(spec)
    return _TABLE[name][0](be, x, **params)


def backward(be, spec, saved, dy):
    """saved: the forward's input x if needs_input(spec), else its output y."""
    name, params = _split(spec)
    return _TABLE[name][1](be, saved, dy, **params)


# ---------------------------------------------------------------------- host functions
def _apply(spec, x):
    be = kernels.get_backend()
    x = np.asarray(x)
    return be.to_numpy(forward(be, spec, be.asarray(x)))


def linear(x):
    return np.asarray(x)


def relu(x):
    return _apply("relu", x)


def sigmoid(x):
    return _apply("sigmoid", x)


def tanh(x):
    return _apply("tanh", x)


def softmax(x):
    """Softmax over the last axis."""
    return _apply("softmax", x)


def gelu(x, approximate=False):
    return _apply(get({"name": "gelu", "approximate": approximate}), x)


def silu(x):
    return _apply("silu", x)


def leaky_relu(x, negative_slope=0.2):
    return _apply(get({"name": "leaky_relu", "negative_slope": negative_slope}), x)


swish = silu
_FUNCTIONS = {linear: "linear", relu: "relu", sigmoid: "sigmoid", tanh: "tanh", softmax: "softmax", gelu: "gelu",
              silu: "silu", leaky_relu: "leaky_relu"}
