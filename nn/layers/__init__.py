"""Keras-style layers: Dense, Conv2D, MaxPooling2D, AveragePooling2D, Flatten, Dropout, Activation."""
from numbanet.nn.layers.base import Layer
from numbanet.nn.layers.conv import Conv2D
from numbanet.nn.layers.core import Activation, Dropout, Flatten
from numbanet.nn.layers.dense import Dense
from numbanet.nn.layers.pooling import AveragePooling2D, AvgPool2D, MaxPool2D, MaxPooling2D

__all__ = ["Layer", "Dense", "Conv2D", "MaxPooling2D", "MaxPool2D", "AveragePooling2D", "AvgPool2D",
           "Flatten", "Dropout", "Activation"]

_REGISTRY = {cls.__name__: cls for cls in (Dense, Conv2D, MaxPooling2D, AveragePooling2D, Flatten, Dropout,
                                           Activation)}


def from_config(class_name, config):
    if class_name not in _REGISTRY:
        raise ValueError(f"unknown layer class {class_name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[class_name](**config)
