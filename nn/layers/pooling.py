"""Max and average pooling 1D/2D, global average and global max pooling 1D/2D over
channels-last activations. The 1-D layers run the 2-D kernels on (N, 1, steps, C) views."""
import numpy as np

from numbanet.kernels import shapes
from numbanet.nn.layers.arguments import channels_last, single
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


class _Pool1D(Layer):
    """pool_size, strides: an int or a tuple of one; the window runs along the steps."""

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        kind = type(self).__name__
        channels_last(kind, data_format)
        self.pool_size = single(kind, "pool_size", pool_size)
        self.strides = self.pool_size if strides is None else single(kind, "strides", strides)
        self.padding = shapes.check_padding(kind, padding, explicit=False)

    def _window(self):
        return dict(pool_size=(1, self.pool_size), strides=(1, self.strides), padding=self.padding)

    def compute_output_shape(self, input_shape):
        kind = type(self).__name__
        if len(input_shape) != 2:
            raise ValueError(f"layer '{self.name}' ({kind}) expects sequences of shape (steps, channels), "
                             f"got per-sample shape {input_shape}")
        steps = shapes.resolve_padding(f"layer '{self.name}' ({kind})", self.padding, (1, input_shape[0]),
                                       (1, self.pool_size), (1, self.strides))[1]
        return (steps, input_shape[1])

    def _image(self, a):
        return self.be.reshape(a, (a.shape[0], 1) + tuple(a.shape[1:]))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(pool_size=self.pool_size, strides=self.strides, padding=self.padding)
        return cfg


class MaxPooling1D(_Pool1D):
    def forward(self, x, training=False, logits=False):
        self._saved_shape = (x.shape[0], 1) + tuple(x.shape[1:])
        y, self._saved_indices = self.be.max_pool2d(self._image(x), **self._window())
        return self.be.reshape(y, (x.shape[0],) + self.output_shape)

    def backward(self, dy, logits=False):
        # In range by construction (this layer's own max_pool2d output): see MaxPooling2D.
        dx = self.be.max_pool2d_backward(self._image(dy), self._saved_indices, self._saved_shape,
                                         _indices_checked=True)
        return self.be.reshape(dx, (dy.shape[0],) + self.input_shape)


class AveragePooling1D(_Pool1D):
    def forward(self, x, training=False, logits=False):
        self._saved_shape = (x.shape[0], 1) + tuple(x.shape[1:])
        return self.be.reshape(self.be.avg_pool2d(self._image(x), **self._window()), (x.shape[0],) + self.output_shape)

    def backward(self, dy, logits=False):
        dx = self.be.avg_pool2d_backward(self._image(dy), self._saved_shape, **self._window())
        return self.be.reshape(dx, (dy.shape[0],) + self.input_shape)


MaxPool1D = MaxPooling1D
AvgPool1D = AveragePooling1D


class _GlobalPooling(Layer):
    """A reduction over the spatial (or time) axes, channels last."""
    rank = None

    def __init__(self, data_format=None, keepdims=False, input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        channels_last(type(self).__name__, data_format)
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != self.rank + 1:
            layout = "(steps, channels)" if self.rank == 1 else "(height, width, channels)"
            raise ValueError(f"layer '{self.name}' ({type(self).__name__}) expects per-sample shape {layout}, "
                             f"got {tuple(input_shape)}")
        return (1,) * self.rank + (input_shape[-1],) if self.keepdims else (input_shape[-1],)

    def get_config(self):
        cfg = super().get_config()
        cfg["keepdims"] = self.keepdims
        return cfg


class _GlobalAveragePooling(_GlobalPooling):
    """The mean, as one average-pooling window covering the whole input, so it shares
    avg_pool2d's kernels forward and back."""

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


def _per_rank(base, reduction):
    """The 1-D and 2-D layers of one global reduction (Global<reduction>Pooling1D, ...2D):
    they differ in rank only."""
    return tuple(type(f"Global{reduction}Pooling{rank}D", (base,), {"rank": rank, "__module__": __name__})
                 for rank in (1, 2))


GlobalAveragePooling1D, GlobalAveragePooling2D = _per_rank(_GlobalAveragePooling, "Average")
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D


class _GlobalMaxPooling(_GlobalPooling):
    """The maximum per (sample, channel) over the (N, steps, C) view: global_max_pool,
    whose argmax backward sends the gradient to."""

    def forward(self, x, training=False, logits=False):
        be = self.be
        steps = int(np.prod(self.input_shape[:-1]))
        self._saved_shape = (x.shape[0], steps, self.input_shape[-1])
        y, self._saved_indices = be.global_max_pool(be.reshape(x, self._saved_shape))
        return be.reshape(y, (x.shape[0],) + tuple(self.output_shape))

    def backward(self, dy, logits=False):
        be = self.be
        n, _, c = self._saved_shape
        # The indices are this layer's own global_max_pool output: in range by construction.
        dx = be.global_max_pool_backward(be.reshape(dy, (n, c)), self._saved_indices, self._saved_shape,
                                         _indices_checked=True)
        return be.reshape(dx, (n,) + tuple(self.input_shape))


GlobalMaxPooling1D, GlobalMaxPooling2D = _per_rank(_GlobalMaxPooling, "Max")
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D
