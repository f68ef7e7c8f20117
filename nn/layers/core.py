"""Flatten, Dropout and Activation: layers without parameters."""
from numbanet.nn import activations, utils
from numbanet.nn.layers.base import ActivationMixin, Layer


class Flatten(Layer):
    def compute_output_shape(self, input_shape):
        n = 1
        for s in input_shape:
            n *= s
        return (n,)

    def forward(self, x, training=False, logits=False):
        self._saved_shape = tuple(x.shape)
        return self.be.reshape(x, (x.shape[0], x.size // x.shape[0]))

    def backward(self, dy, logits=False):
        return self.be.reshape(dy, self._saved_shape)


class Dropout(Layer):
    """Zeroes a fraction `rate` of activations while training and scales the rest by
    1 / (1 - rate); the identity at inference. Each training step draws a fresh seed
    from the library RNG for the backend's counter-based mask."""
    supports_masking = True

    def __init__(self, rate, input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout: rate must be a number in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def forward(self, x, training=False, logits=False):
        if not training or self.rate == 0.0:
            self._saved_mask = None
            return x
        seed = utils.draw_seed()
        y, self._saved_mask = self.be.dropout(x, self.rate, seed)
        return y

    def backward(self, dy, logits=False):
        if self._saved_mask is None:
            return dy
        return self.be.dropout_backward(dy, self._saved_mask)

    def get_config(self):
        cfg = super().get_config()
        cfg["rate"] = self.rate
        return cfg


class Activation(ActivationMixin, Layer):
    supports_masking = True
    def __init__(self, activation, input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        self.activation = activations.get(activation)

    def forward(self, x, training=False, logits=False):
        return self._activate(x, logits)

    def backward(self, dy, logits=False):
        return self._deactivate(dy, logits)

    def get_config(self):
        cfg = super().get_config()
        cfg["activation"] = self.activation
        return cfg
