"""Datasets, as in keras.datasets: mnist, and pydoc_topics (a character-level corpus)."""
from . import mnist, pydoc_topics

__all__ = ["mnist", "pydoc_topics"]
