"""Dense: y = activation(x @ kernel + bias), over the last axis of an input of any rank
(a (batch, time, features) sequence is one (batch * time, features) product)."""
from numbanet.nn.layers.base import ActivationMixin, KernelBiasMixin, Layer


class Dense(KernelBiasMixin, ActivationMixin, Layer):
    supports_masking = True
    fuses_activation = True

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 input_shape=None, name=None, input_dim=None):
        if input_shape is None and input_dim is not None:
            input_shape = (input_dim,)
        super().__init__(name=name, input_shape=input_shape)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"Dense: units must be a positive int, got {units!r}")
        self.units = units
        self._init_kernel_bias(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                               bias_regularizer)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def build_weights(self, input_shape):
        self._add_kernel_bias((input_shape[-1], self.units), self.units)

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
        # when it packs them (nn/packed.py).
        dx, dw, db = be.dense_backward(self._saved_x, self.params["kernel"], dz, compute_dx=self.need_dx,
                                       grads=self.grad_buffer)
        self._set_kernel_bias_grads(dw, db)
        if dx is None:
            return None
        return dx if len(shape) == 2 else be.reshape(dx, tuple(shape[:-1]) + (dx.shape[1],))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, **self._kernel_bias_config())
        return cfg
