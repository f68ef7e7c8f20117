"""Datasets, as in keras.datasets."""
from . import mnist

__all__ = ["mnist"]
