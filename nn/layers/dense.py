"""Dense: y = activation(x @ kernel + bias), over the last axis of an input of any rank
(a (batch, time, features) sequence is one (batch * time, features) product)."""
from numbanet.nn import activations, initializers, regularizers
from numbanet.nn.layers.base import ActivationMixin, Layer


class Dense(ActivationMixin, Layer):
    supports_masking = True
    fuses_activation = True

    @property
    def packs_grads(self):
        """dw and db land in one buffer (grads=...): with a bias, they fill it exactly."""
        return self.use_bias

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 input_shape=None, name=None, input_dim=None):
        if input_shape is None and input_dim is not None:
            input_shape = (input_dim,)
        super().__init__(name=name, input_shape=input_shape)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"Dense: units must be a positive int, got {units!r}")
        self.units = units
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def build_weights(self, input_shape):
        self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer, self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer, self.bias_regularizer)

    def forward(self, x, training=False, logits=False):
        be = self.be
        rows = x.size // x.shape[x.ndim - 1]
        x2 = be.reshape(x, (rows, x.shape[x.ndim - 1]))
        self._saved_x = x2
        z = be.matmul(x2, self.params["kernel"], bias=self.params.get("bias"), activation=self._epilogue(logits))
        if x.ndim != 2:
            z = be.reshape(z, tuple(x.shape[:-1]) + (self.units,))
        return self._activate(z, logits)

    def backward(self, dy, logits=False):
        be = self.be
        dz = self._deactivate(dy, logits)
        shape = dz.shape
        dz = be.reshape(dz, (self._saved_x.shape[0], self.units))
        # dw and db from one op (one GEMM on the gpu), into the model's packed gradients
        # when it packs them (nn/packed.py); db is computed with or without a bias.
        dx, dw, db = be.dense_backward(self._saved_x, self.params["kernel"], dz, compute_dx=self.need_dx,
                                       grads=self.grad_buffer)
        self._grads_into = self.grad_buffer
        self.grads = {"kernel": dw, "bias": db} if self.use_bias else {"kernel": dw}
        if dx is None:
            return None
        return dx if len(shape) == 2 else be.reshape(dx, tuple(shape[:-1]) + (dx.shape[1],))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, activation=self.activation, use_bias=self.use_bias,
                   kernel_initializer=self.kernel_initializer, bias_initializer=self.bias_initializer,
                   kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
                   bias_regularizer=regularizers.serialize(self.bias_regularizer))
        return cfg
