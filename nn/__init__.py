"""numbanet's Keras-style training API over the kernel backends."""
from numbanet.nn import activations, callbacks, initializers, layers, losses, metrics, optimizers, regularizers, utils
from numbanet.nn.models import Sequential, load_model

__all__ = ["Sequential", "load_model", "activations", "callbacks", "initializers", "layers", "losses", "metrics",
           "optimizers", "regularizers", "utils"]
