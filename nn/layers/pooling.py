"""MaxPooling2D and AveragePooling2D over NHWC activations."""
from numbanet.kernels import shapes
from numbanet.nn.layers.base import Layer


class _Pool(Layer):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        kind = type(self).__name__
        self.pool_size = shapes.pair(kind, "pool_size", pool_size)
        self.strides = self.pool_size if strides is None else shapes.pair(kind, "strides", strides)
        self.padding = shapes.check_padding(kind, padding, explicit=False)

    def compute_output_shape(self, input_shape):
        kind = type(self).__name__
        if len(input_shape) != 3:
            raise ValueError(f"layer '{self.name}' ({kind}) expects images of shape (height, width, channels), "
                             f"got per-sample shape {input_shape}")
        oh, ow = shapes.resolve_padding(f"layer '{self.name}' ({kind})", self.padding, input_shape[:2],
                                        self.pool_size, self.strides)[:2]
        return (oh, ow, input_shape[2])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(pool_size=list(self.pool_size), strides=list(self.strides), padding=self.padding)
        return cfg


class MaxPooling2D(_Pool):
    def forward(self, x, training=False, logits=False):
        y, self._saved_indices = self.be.max_pool2d(x, pool_size=self.pool_size, strides=self.strides,
                                                    padding=self.padding)
        self._saved_shape = tuple(x.shape)
        return y

    def backward(self, dy, logits=False):
        # The indices are this layer's own max_pool2d output for an x of _saved_shape, so
        # they are in range by construction: the op skips its range check (on the gpu a
        # device scan and a round trip per call). Its kernels still never write outside dx.
        return self.be.max_pool2d_backward(dy, self._saved_indices, self._saved_shape, _indices_checked=True)


class AveragePooling2D(_Pool):
    def forward(self, x, training=False, logits=False):
        self._saved_shape = tuple(x.shape)
        return self.be.avg_pool2d(x, pool_size=self.pool_size, strides=self.strides, padding=self.padding)

    def backward(self, dy, logits=False):
        return self.be.avg_pool2d_backward(dy, self._saved_shape, pool_size=self.pool_size, strides=self.strides,
                                           padding=self.padding)


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
