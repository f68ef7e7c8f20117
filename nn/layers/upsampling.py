"""UpSampling2D: each pixel repeated into a size[0] x size[1] block (Keras's "nearest")."""
from numbanet.kernels import shapes
from numbanet.nn.layers.arguments import channels_last
from numbanet.nn.layers.base import Layer


class UpSampling2D(Layer):
    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        channels_last("UpSampling2D", data_format)
        if interpolation != "nearest":
            raise ValueError(f"UpSampling2D: only interpolation='nearest' is supported, got {interpolation!r} "
                             f"(a bilinear upsampling is not implemented in numbanet)")
        self.size = shapes.pair("UpSampling2D", "size", size)
        self.interpolation = interpolation

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"layer '{self.name}' (UpSampling2D) expects images of shape (height, width, channels), "
                             f"got per-sample shape {input_shape}")
        return (input_shape[0] * self.size[0], input_shape[1] * self.size[1], input_shape[2])

    def forward(self, x, training=False, logits=False):
        return self.be.upsample2d(x, size=self.size)

    def backward(self, dy, logits=False):
        return self.be.upsample2d_backward(dy, size=self.size)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(size=list(self.size), interpolation=self.interpolation)
        return cfg
