"""LayerNormalization over the last axis and BatchNormalization over every axis but the last
(Keras's defaults: epsilon=1e-3, center, scale; BatchNormalization's momentum=0.99)."""
import numbers

from numbanet.nn.layers.base import Layer


_WEIGHTS = ("beta", "gamma")


def _number(kind, what, value):
    """A real number (NumPy's too), as a float; a string or a bool is refused, not cast."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{kind}: {what} must be a number, got {value!r}")
    return float(value)


class _Normalization(Layer):
    """The arguments, checks, trainable weights (gamma then beta, Keras's order, each
    (features,)) and their gradients that both normalizations share; the statistics are
    over the last axis only (`_axis_rule` says so in the errors)."""
    _axis_rule = None

    def __init__(self, axis, epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                 gamma_regularizer, input_shape, name):
        super().__init__(name=name, input_shape=input_shape)
        kind = type(self).__name__
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise ValueError(f"{kind}: axis must be {self._axis_rule[0]} (-1), got {axis!r}")
        if not _number(kind, "epsilon", epsilon) > 0.0:
            raise ValueError(f"{kind}: epsilon must be > 0, got {epsilon!r}")
        self.axis = axis
        self.epsilon = float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self._set_weight_args(beta_initializer=beta_initializer, gamma_initializer=gamma_initializer,
                              beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer)

    def compute_output_shape(self, input_shape):
        if self.axis not in (-1, len(input_shape)):
            raise ValueError(f"layer '{self.name}' ({type(self).__name__}): only {self._axis_rule[1]} is supported "
                             f"(axis=-1 or {len(input_shape)} for per-sample shape {tuple(input_shape)}), "
                             f"got axis={self.axis}")
        return tuple(input_shape)

    def build_weights(self, input_shape):
        if self.scale:
            self.add_weight("gamma", (input_shape[-1],), self.gamma_initializer, self.gamma_regularizer)
        if self.center:
            self.add_weight("beta", (input_shape[-1],), self.beta_initializer, self.beta_regularizer)

    def _set_grads(self, dgamma, dbeta):
        self.grads = {key: d for key, d in (("gamma", dgamma), ("beta", dbeta)) if key in self.params}


class LayerNormalization(_Normalization):
    """y = (x - mean) / sqrt(var + epsilon) * gamma + beta, statistics over the last axis of
    each sample; weights gamma then beta (Keras's order), each (features,)."""
    supports_masking = True
    _axis_rule = ("the last axis", "the last axis")

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, input_shape=None,
                 name=None):
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer, input_shape, name)

    def forward(self, x, training=False, logits=False):
        y, mean, rstd = self.be.layer_norm(x, self.params.get("gamma"), self.params.get("beta"),
                                           epsilon=self.epsilon)
        self._saved_x, self._saved_mean, self._saved_rstd = x, mean, rstd
        return y

    def backward(self, dy, logits=False):
        be = self.be
        dx, dgamma, dbeta = be.layer_norm_backward(self._saved_x, self.params.get("gamma"), dy, self._saved_mean,
                                                   self._saved_rstd, center=self.center)
        self._set_grads(dgamma, dbeta)
        return dx if self.need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis, epsilon=self.epsilon, center=self.center, scale=self.scale,
                   **self._weight_args_config(_WEIGHTS))
        return cfg


class BatchNormalization(_Normalization):
    """Keras 3's BatchNormalization, channels last: per-channel statistics over every axis
    but the last. Training (fit, train_on_batch) normalizes with the batch's mean and
    biased variance and updates moving_mean / moving_variance
    (moving = moving * momentum + batch * (1 - momentum)); inference (predict, evaluate)
    normalizes with the moving ones. Weights gamma, beta (trainable), then moving_mean,
    moving_variance (non-trainable: no gradient, no optimizer step), each (channels,)."""
    _axis_rule = ("the channels axis, the last one", "the channels-last axis")

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, input_shape=None, name=None):
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer, input_shape, name)
        if not 0.0 <= _number("BatchNormalization", "momentum", momentum) <= 1.0:
            raise ValueError(f"BatchNormalization: momentum must be in [0, 1], got {momentum!r}")
        self.momentum = float(momentum)
        self._set_weight_args(moving_mean_initializer=moving_mean_initializer,
                              moving_variance_initializer=moving_variance_initializer)

    def build_weights(self, input_shape):
        super().build_weights(input_shape)
        c = (input_shape[-1],)
        self.add_weight("moving_mean", c, self.moving_mean_initializer, trainable=False)
        self.add_weight("moving_variance", c, self.moving_variance_initializer, trainable=False)

    def forward(self, x, training=False, logits=False):
        p = self.params
        if not training:
            self._saved_x = self._saved_mean = self._saved_rstd = None
            return self.be.batch_norm_inference(x, p.get("gamma"), p.get("beta"), p["moving_mean"],
                                                p["moving_variance"], epsilon=self.epsilon)
        y, mean, rstd = self.be.batch_norm_train(x, p.get("gamma"), p.get("beta"), p["moving_mean"],
                                                 p["moving_variance"], momentum=self.momentum, epsilon=self.epsilon)
        self._saved_x, self._saved_mean, self._saved_rstd = x, mean, rstd
        return y

    def backward(self, dy, logits=False):
        if self._saved_x is None:
            raise RuntimeError(f"layer '{self.name}' (BatchNormalization): backward needs a forward in training "
                               f"mode first")
        dx, dgamma, dbeta = self.be.batch_norm_backward(self._saved_x, self.params.get("gamma"), dy,
                                                        self._saved_mean, self._saved_rstd, center=self.center)
        self._set_grads(dgamma, dbeta)
        return dx if self.need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis, momentum=self.momentum, epsilon=self.epsilon, center=self.center,
                   scale=self.scale, **self._weight_args_config(_WEIGHTS, ("moving_mean", "moving_variance")))
        return cfg
