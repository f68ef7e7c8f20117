"""Conv2D over NHWC activations with a (KH, KW, C_in, filters) kernel."""
from numbanet.kernels import shapes
from numbanet.nn.layers.base import ActivationMixin, KernelBiasMixin, Layer


class Conv2D(KernelBiasMixin, ActivationMixin, Layer):
    fuses_activation = True

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"Conv2D: filters must be a positive int, got {filters!r}")
        self.filters = filters
        self.kernel_size = shapes.pair("Conv2D", "kernel_size", kernel_size)
        self.strides = shapes.pair("Conv2D", "strides", strides)
        self.padding = shapes.check_padding("Conv2D", padding, explicit=False)
        self._init_kernel_bias(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                               bias_regularizer)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"layer '{self.name}' (Conv2D) expects images of shape (height, width, channels), "
                             f"got per-sample shape {input_shape}")
        oh, ow = shapes.resolve_padding(f"layer '{self.name}' (Conv2D)", self.padding, input_shape[:2],
                                        self.kernel_size, self.strides)[:2]
        return (oh, ow, self.filters)

    def build_weights(self, input_shape):
        self._add_kernel_bias(self.kernel_size + (input_shape[2], self.filters), self.filters)

    def forward(self, x, training=False, logits=False):
        self._saved_x = x
        z = self.be.conv2d(x, self.params["kernel"], self.params.get("bias"), strides=self.strides,
                           padding=self.padding, activation=self._epilogue(logits))
        return self._activate(z, logits)

    def backward(self, dy, logits=False):
        be = self.be
        # The activation conv2d applied is undone by conv2d_backward itself (activation=,
        # y=): no separate pass over dy and the saved output; any other goes first.
        fused = self._epilogue(logits)
        dz = dy if fused != "linear" else self._deactivate(dy, logits)
        dx, dw, db = be.conv2d_backward(self._saved_x, self.params["kernel"], dz, strides=self.strides,
                                        padding=self.padding, compute_dx=self.need_dx, grads=self.grad_buffer,
                                        activation=fused, y=self._saved_a if fused != "linear" else None)
        self._set_kernel_bias_grads(dw, db)
        return dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update(filters=self.filters, kernel_size=list(self.kernel_size), strides=list(self.strides),
                   padding=self.padding, **self._kernel_bias_config())
        return cfg
