"""Activation functions by name, each a forward and a backward through backend ops.

The backward takes the forward's output y (every one of these derivatives is a
function of y), so layers keep only their outputs.
"""

NAMES = ("linear", "relu", "sigmoid", "tanh", "softmax")


def _softmax_forward(be, x):
    # The kernel works on (N, C); a conv layer's softmax runs over its channel axis.
    c = x.shape[x.ndim - 1]  # the CUDA simulator's shapes refuse negative indices
    y = be.softmax(be.reshape(x, (x.size // c, c)))
    return be.reshape(y, x.shape)


def _softmax_backward(be, y, dy):
    c = y.shape[y.ndim - 1]
    dx = be.softmax_backward(be.reshape(y, (y.size // c, c)), be.reshape(dy, (dy.size // c, c)))
    return be.reshape(dx, y.shape)


_TABLE = {
    "linear": (lambda be, x: x, lambda be, y, dy: dy),
    "relu": (lambda be, x: be.relu(x), lambda be, y, dy: be.relu_backward(y, dy)),
    "sigmoid": (lambda be, x: be.sigmoid(x), lambda be, y, dy: be.sigmoid_backward(y, dy)),
    "tanh": (lambda be, x: be.tanh(x), lambda be, y, dy: be.tanh_backward(y, dy)),
    "softmax": (_softmax_forward, _softmax_backward),
}


def get(name):
    """'relu' | 'sigmoid' | 'tanh' | 'softmax' | 'linear' | None -> the canonical name."""
    if name is None:
        return "linear"
    if not isinstance(name, str) or name.lower() not in _TABLE:
        raise ValueError(f"activation must be one of {', '.join(NAMES)} or None, got {name!r}")
    return name.lower()


def forward(be, name, x):
    return _TABLE[name][0](be, x)


def backward(be, name, y, dy):
    return _TABLE[name][1](be, y, dy)
