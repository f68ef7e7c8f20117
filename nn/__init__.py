"""numbanet's Keras-style training API over the kernel backends."""
from numbanet.nn import activations, callbacks, initializers, layers, losses, metrics, optimizers, regularizers, utils
from numbanet.nn.generation import generate
from numbanet.nn.layers import Input
from numbanet.nn.models import Model, Sequential, load_model

__all__ = ["Input", "Model", "Sequential", "load_model", "generate", "activations", "callbacks", "initializers",
           "layers", "losses", "metrics", "optimizers", "regularizers", "utils"]
