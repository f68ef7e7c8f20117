"""LayerNormalization over the last axis (Keras's defaults: epsilon=1e-3, center, scale)."""
from numbanet.nn import initializers, regularizers
from numbanet.nn.layers.base import Layer


class LayerNormalization(Layer):
    """y = (x - mean) / sqrt(var + epsilon) * gamma + beta, statistics over the last axis of
    each sample; weights gamma then beta (Keras's order), each (features,)."""
    supports_masking = True

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, input_shape=None,
                 name=None):
        super().__init__(name=name, input_shape=input_shape)
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise ValueError(f"LayerNormalization: axis must be the last axis (-1), got {axis!r}")
        if not float(epsilon) > 0.0:
            raise ValueError(f"LayerNormalization: epsilon must be > 0, got {epsilon!r}")
        self.axis = axis
        self.epsilon = float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)

    def compute_output_shape(self, input_shape):
        if self.axis not in (-1, len(input_shape)):
            raise ValueError(f"layer '{self.name}' (LayerNormalization): only the last axis is supported "
                             f"(axis=-1 or {len(input_shape)} for per-sample shape {tuple(input_shape)}), "
                             f"got axis={self.axis}")
        return tuple(input_shape)

    def initial_params(self, input_shape):
        p = {}
        if self.scale:
            p["gamma"] = initializers.initialize(self.gamma_initializer, (input_shape[-1],), self.dtype)
        if self.center:
            p["beta"] = initializers.initialize(self.beta_initializer, (input_shape[-1],), self.dtype)
        return p

    def forward(self, x, training=False, logits=False):
        y, mean, rstd = self.be.layer_norm(x, self.params.get("gamma"), self.params.get("beta"),
                                           epsilon=self.epsilon)
        self._saved_x, self._saved_mean, self._saved_rstd = x, mean, rstd
        return y

    def backward(self, dy, logits=False):
        be = self.be
        dx, dgamma, dbeta = be.layer_norm_backward(self._saved_x, self.params.get("gamma"), dy, self._saved_mean,
                                                   self._saved_rstd, center=self.center)
        self.grads = {}
        for key, d, reg in (("gamma", dgamma, self.gamma_regularizer), ("beta", dbeta, self.beta_regularizer)):
            if key in self.params:
                if reg is not None:
                    reg.add_gradient(be, self.params[key], d)
                self.grads[key] = d
        return dx if self.need_dx else None

    def regularization_penalty(self, into=None):
        total = 0.0
        for key, reg in (("gamma", self.gamma_regularizer), ("beta", self.beta_regularizer)):
            if key in self.params and reg is not None:
                total += reg.penalty(self.be, self.params[key], into)
        return total

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis, epsilon=self.epsilon, center=self.center, scale=self.scale,
                   beta_initializer=self.beta_initializer, gamma_initializer=self.gamma_initializer,
                   beta_regularizer=None if self.beta_regularizer is None else self.beta_regularizer.get_config(),
                   gamma_regularizer=None if self.gamma_regularizer is None else self.gamma_regularizer.get_config())
        return cfg
