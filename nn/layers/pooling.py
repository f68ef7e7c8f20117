"""MaxPooling2D and AveragePooling2D over NHWC activations."""
from numbanet.kernels import shapes
from numbanet.nn.layers.base import Layer


class _Pool(Layer):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        kind = type(self).__name__
        self.pool_size = shapes.pair(kind, "pool_size", pool_size)
        self.strides = self.pool_size if strides is None else shapes.pair(kind, "strides", strides)
        if isinstance(padding, str):
            padding = padding.lower()
        if padding not in ("valid", "same"):
            raise ValueError(f"{kind}: padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding

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
        return self.be.max_pool2d_backward(dy, self._saved_indices, self._saved_shape)


class AveragePooling2D(_Pool):
    def forward(self, x, training=False, logits=False):
        self._saved_shape = tuple(x.shape)
        return self.be.avg_pool2d(x, pool_size=self.pool_size, strides=self.strides, padding=self.padding)

    def backward(self, dy, logits=False):
        return self.be.avg_pool2d_backward(dy, self._saved_shape, pool_size=self.pool_size, strides=self.strides,
                                           padding=self.padding)


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
