"""Conv1D, Conv2D and Conv2DTranspose over channels-last activations, with Keras's
kernels: Conv1D (K, C_in, filters), Conv2D (KH, KW, C_in, filters), Conv2DTranspose
(KH, KW, filters, C_in). Conv1D runs conv2d on a (N, 1, steps, C) view of its input."""
import numpy as np

from numbanet.kernels import shapes
from numbanet.kernels.ops.conv import check_output_padding, conv_geometry, transpose_geometry
from numbanet.nn.layers.arguments import channels_last, single
from numbanet.nn.layers.base import ActivationMixin, KernelBiasMixin, Layer


def _filters(kind, filters):
    if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters < 1:
        raise ValueError(f"{kind}: filters must be a positive int, got {filters!r}")
    return int(filters)



def _no_strided_dilation(kind, strides, dilation):
    # Keras refuses the combination too (its BaseConv), so a model built here loads there.
    if max(strides) > 1 and max(dilation) > 1:
        raise ValueError(f"{kind}: strides > 1 cannot be combined with dilation_rate > 1, got "
                         f"strides={strides} and dilation_rate={dilation}")



class Conv2D(KernelBiasMixin, ActivationMixin, Layer):
    """Keras's Conv2D over (height, width, channels) images; kernel (KH, KW, C_in, filters)."""
    fuses_activation = True

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None, dilation_rate=(1, 1),
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        channels_last("Conv2D", data_format)
        self.filters = _filters("Conv2D", filters)
        self.kernel_size = shapes.pair("Conv2D", "kernel_size", kernel_size)
        self.strides = shapes.pair("Conv2D", "strides", strides)
        self.dilation_rate = shapes.pair("Conv2D", "dilation_rate", dilation_rate)
        self.padding = shapes.check_padding("Conv2D", padding, explicit=False)
        _no_strided_dilation("Conv2D", self.strides, self.dilation_rate)
        self._init_kernel_bias(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                               bias_regularizer)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"layer '{self.name}' (Conv2D) expects images of shape (height, width, channels), "
                             f"got per-sample shape {input_shape}")
        oh, ow = conv_geometry(f"layer '{self.name}' (Conv2D)", self.padding, input_shape[:2], self.kernel_size,
                               self.strides, self.dilation_rate)[:2]
        return (oh, ow, self.filters)

    def build_weights(self, input_shape):
        self._add_kernel_bias(self.kernel_size + (input_shape[2], self.filters), self.filters)

    def forward(self, x, training=False, logits=False):
        self._saved_x = x
        z = self.be.conv2d(x, self.params["kernel"], self.params.get("bias"), strides=self.strides,
                           padding=self.padding, dilation_rate=self.dilation_rate, activation=self._epilogue(logits))
        return self._activate(z, logits)

    def backward(self, dy, logits=False):
        be = self.be
        # The activation conv2d applied is undone by conv2d_backward itself (activation=,
        # y=): no separate pass over dy and the saved output; any other goes first.
        fused = self._epilogue(logits)
        dz = dy if fused != "linear" else self._deactivate(dy, logits)
        dx, dw, db = be.conv2d_backward(self._saved_x, self.params["kernel"], dz, strides=self.strides,
                                        padding=self.padding, dilation_rate=self.dilation_rate,
                                        compute_dx=self.need_dx, grads=self.grad_buffer,
                                        activation=fused, y=self._saved_a if fused != "linear" else None)
        self._set_kernel_bias_grads(dw, db)
        return dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update(filters=self.filters, kernel_size=list(self.kernel_size), strides=list(self.strides),
                   padding=self.padding, dilation_rate=list(self.dilation_rate), **self._kernel_bias_config())
        return cfg


class Conv1D(KernelBiasMixin, ActivationMixin, Layer):
    """Keras's Conv1D: (steps, channels) in, padding "valid", "same" or "causal" (the
    window ends at its output's step: (K-1)*dilation_rate steps of zeros before the input)."""
    fuses_activation = True

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        channels_last("Conv1D", data_format)
        self.filters = _filters("Conv1D", filters)
        self.kernel_size = single("Conv1D", "kernel_size", kernel_size)
        self.strides = single("Conv1D", "strides", strides)
        self.dilation_rate = single("Conv1D", "dilation_rate", dilation_rate)
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same", "causal"):
            raise ValueError(f"Conv1D: padding must be 'valid', 'same' or 'causal', got {padding!r}")
        self.padding = padding.lower()
        _no_strided_dilation("Conv1D", (self.strides,), (self.dilation_rate,))
        self._init_kernel_bias(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                               bias_regularizer)

    def _conv_args(self):
        return dict(strides=(1, self.strides), padding=self.padding, dilation_rate=(1, self.dilation_rate))

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"layer '{self.name}' (Conv1D) expects sequences of shape (steps, channels), "
                             f"got per-sample shape {input_shape}")
        steps = conv_geometry(f"layer '{self.name}' (Conv1D)", self.padding, (1, input_shape[0]),
                              (1, self.kernel_size), (1, self.strides), (1, self.dilation_rate))[1]
        return (steps, self.filters)

    def build_weights(self, input_shape):
        self._add_kernel_bias((self.kernel_size, input_shape[1], self.filters), self.filters)

    def _image(self, a):
        return self.be.reshape(a, (a.shape[0], 1) + tuple(a.shape[1:]))

    def _kernel4(self):
        return self.be.reshape(self.params["kernel"], (1,) + tuple(self.params["kernel"].shape))

    def forward(self, x, training=False, logits=False):
        self._saved_x = x
        z = self.be.conv2d(self._image(x), self._kernel4(), self.params.get("bias"),
                           activation=self._epilogue(logits), **self._conv_args())
        return self._activate(self.be.reshape(z, (x.shape[0],) + self.output_shape), logits)

    def backward(self, dy, logits=False):
        be = self.be
        fused = self._epilogue(logits)
        dz = dy if fused != "linear" else self._deactivate(dy, logits)
        dx, dw, db = be.conv2d_backward(self._image(self._saved_x), self._kernel4(), self._image(dz),
                                        compute_dx=self.need_dx, grads=self.grad_buffer, activation=fused,
                                        y=self._image(self._saved_a) if fused != "linear" else None,
                                        **self._conv_args())
        self._set_kernel_bias_grads(be.reshape(dw, self.params["kernel"].shape), db)
        return None if dx is None else be.reshape(dx, self._saved_x.shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides, padding=self.padding,
                   dilation_rate=self.dilation_rate, **self._kernel_bias_config())
        return cfg


class Conv2DTranspose(KernelBiasMixin, ActivationMixin, Layer):
    """Keras's Conv2DTranspose: the input gradient of a Conv2D run forward, output size
    as Keras computes it (kernels/ops/conv.py transpose_geometry); kernel
    (KH, KW, filters, C_in)."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", output_padding=None, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, input_shape=None,
                 name=None):
        super().__init__(name=name, input_shape=input_shape)
        kind = "Conv2DTranspose"
        channels_last(kind, data_format)
        self.filters = _filters(kind, filters)
        self.kernel_size = shapes.pair(kind, "kernel_size", kernel_size)
        self.strides = shapes.pair(kind, "strides", strides)
        self.dilation_rate = shapes.pair(kind, "dilation_rate", dilation_rate)
        self.padding = shapes.check_padding(kind, padding, explicit=False)
        _no_strided_dilation(kind, self.strides, self.dilation_rate)
        self.output_padding = None if output_padding is None else check_output_padding(kind, output_padding)
        # The output_padding rule (smaller than the stride), checked here on a 1x1 input.
        transpose_geometry(kind, (1, 1), self.kernel_size, self.strides, self.padding, self.output_padding,
                           self.dilation_rate)
        self._init_kernel_bias(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                               bias_regularizer)

    @property
    def packs_grads(self):
        # conv2d_transpose_backward writes dw and db into buffers of its own.
        return False

    def _conv_args(self):
        return dict(strides=self.strides, padding=self.padding, output_padding=self.output_padding,
                    dilation_rate=self.dilation_rate)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"layer '{self.name}' (Conv2DTranspose) expects images of shape (height, width, "
                             f"channels), got per-sample shape {input_shape}")
        oh, ow = transpose_geometry(f"layer '{self.name}' (Conv2DTranspose)", input_shape[:2], self.kernel_size,
                                    self.strides, self.padding, self.output_padding, self.dilation_rate)[:2]
        return (oh, ow, self.filters)

    def build_weights(self, input_shape):
        self._add_kernel_bias(self.kernel_size + (self.filters, input_shape[2]), self.filters)

    def forward(self, x, training=False, logits=False):
        self._saved_x = x
        z = self.be.conv2d_transpose(x, self.params["kernel"], self.params.get("bias"), **self._conv_args())
        return self._activate(z, logits)

    def backward(self, dy, logits=False):
        dz = self._deactivate(dy, logits)
        dx, dw, db = self.be.conv2d_transpose_backward(self._saved_x, self.params["kernel"], dz,
                                                       compute_dx=self.need_dx, **self._conv_args())
        self._set_kernel_bias_grads(dw, db)
        return dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update(filters=self.filters, kernel_size=list(self.kernel_size), strides=list(self.strides),
                   padding=self.padding,
                   output_padding=None if self.output_padding is None else list(self.output_padding),
                   dilation_rate=list(self.dilation_rate), **self._kernel_bias_config())
        return cfg
