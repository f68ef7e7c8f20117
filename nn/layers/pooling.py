"""MaxPooling2D, AveragePooling2D and GlobalAveragePooling1D/2D over channels-last activations."""
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


class _GlobalAveragePooling(Layer):
    """Mean over the spatial (or time) axes, channels last. Runs as one average-pooling
    window covering the whole input, so it shares avg_pool2d's kernels forward and back."""
    rank = None

    def __init__(self, data_format=None, keepdims=False, input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{type(self).__name__}: only data_format='channels_last' is supported "
                             f"(numbanet is NHWC), got {data_format!r}")
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != self.rank + 1:
            layout = "(steps, channels)" if self.rank == 1 else "(height, width, channels)"
            raise ValueError(f"layer '{self.name}' ({type(self).__name__}) expects per-sample shape {layout}, "
                             f"got {tuple(input_shape)}")
        return (1,) * self.rank + (input_shape[-1],) if self.keepdims else (input_shape[-1],)

    def _as_image(self, shape):
        # (N, T, C) -> (N, T, 1, C); (N, H, W, C) stays.
        return tuple(shape) if self.rank == 2 else (shape[0], shape[1], 1, shape[2])

    def forward(self, x, training=False, logits=False):
        be = self.be
        image = self._as_image(x.shape)
        self._saved_shape = image
        y = be.avg_pool2d(be.reshape(x, image), pool_size=image[1:3], padding="valid")
        return be.reshape(y, (x.shape[0],) + tuple(self.output_shape))

    def backward(self, dy, logits=False):
        be = self.be
        image = self._saved_shape
        dx = be.avg_pool2d_backward(be.reshape(dy, (image[0], 1, 1, image[3])), image, pool_size=image[1:3],
                                    padding="valid")
        return be.reshape(dx, (image[0],) + tuple(self.input_shape))

    def get_config(self):
        cfg = super().get_config()
        cfg["keepdims"] = self.keepdims
        return cfg


class GlobalAveragePooling1D(_GlobalAveragePooling):
    rank = 1


class GlobalAveragePooling2D(_GlobalAveragePooling):
    rank = 2


GlobalAvgPool1D = GlobalAveragePooling1D
GlobalAvgPool2D = GlobalAveragePooling2D
