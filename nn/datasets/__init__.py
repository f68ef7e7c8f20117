"""Datasets, as in keras.datasets: mnist, pydoc_topics (a character-level corpus) and
digits (scikit-learn's 8x8 digits, read row by row as sequences)."""
from . import digits, mnist, pydoc_topics

__all__ = ["digits", "mnist", "pydoc_topics"]
