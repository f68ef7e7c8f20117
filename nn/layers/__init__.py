"""Keras-style layers: Dense, Conv1D, Conv2D, Conv2DTranspose, pooling, UpSampling2D, Flatten,
Dropout, Activation, Reshape, Permute, Add, Concatenate, Embedding, PositionEmbedding, LayerNormalization,
BatchNormalization, MultiHeadAttention, SimpleRNN, LSTM, GRU, Bidirectional, and the InputLayer behind nn.Input."""
from numbanet.nn.layers.attention import MultiHeadAttention
from numbanet.nn.layers.base import Layer
from numbanet.nn.layers.conv import Conv1D, Conv2D, Conv2DTranspose
from numbanet.nn.layers.core import Activation, Dropout, Flatten
from numbanet.nn.layers.dense import Dense
from numbanet.nn.layers.embedding import Embedding, PositionEmbedding
from numbanet.nn.layers.input_layer import Input, InputLayer
from numbanet.nn.layers.merging import Add, Concatenate
from numbanet.nn.layers.normalization import BatchNormalization, LayerNormalization
from numbanet.nn.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN
from numbanet.nn.layers.pooling import (AveragePooling2D, AvgPool2D, GlobalAveragePooling1D, GlobalAveragePooling2D,
                                        GlobalAvgPool1D, GlobalAvgPool2D, MaxPool2D, MaxPooling2D)
from numbanet.nn.layers.reshaping import Permute, Reshape
from numbanet.nn.layers.pooling import (AveragePooling1D, AvgPool1D, GlobalMaxPool1D, GlobalMaxPool2D,
                                        GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPool1D, MaxPooling1D)
from numbanet.nn.layers.upsampling import UpSampling2D

__all__ = ["Layer", "Input", "InputLayer", "Dense", "Conv2D", "MaxPooling2D", "MaxPool2D", "AveragePooling2D",
           "AvgPool2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAvgPool1D", "GlobalAvgPool2D",
           "Flatten", "Dropout", "Activation", "Reshape", "Permute", "Add", "Concatenate", "Embedding",
           "PositionEmbedding", "LayerNormalization", "MultiHeadAttention", "SimpleRNN", "LSTM", "GRU", "Bidirectional",
           "BatchNormalization"]
__all__ += ["Conv1D", "Conv2DTranspose", "MaxPooling1D", "MaxPool1D", "AveragePooling1D", "AvgPool1D",
            "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPool1D", "GlobalMaxPool2D", "UpSampling2D"]

_REGISTRY = {cls.__name__: cls for cls in (
    InputLayer, Dense, Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling1D, GlobalAveragePooling2D,
    Flatten, Dropout, Activation, Reshape, Permute, Add, Concatenate, Embedding, PositionEmbedding,
    LayerNormalization, MultiHeadAttention, SimpleRNN, LSTM, GRU, Bidirectional, BatchNormalization)}
_REGISTRY.update({cls.__name__: cls for cls in (
    Conv1D, Conv2DTranspose, MaxPooling1D, AveragePooling1D, GlobalMaxPooling1D, GlobalMaxPooling2D, UpSampling2D)})


def from_config(class_name, config):
    if class_name not in _REGISTRY:
        raise ValueError(f"unknown layer class {class_name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[class_name](**config)
