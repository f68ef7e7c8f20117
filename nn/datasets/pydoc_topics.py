"""Python's documentation topics as a character-level language-modelling corpus.

Every CPython installs `pydoc_data.topics` (what `help("assert")` prints): about 465,000
characters of English prose and code over 79 topics. No network needed. The text is the
topics joined in sorted order; its first 90% is the training split, the rest validation
(split at a character, so no window straddles the two).

The vocabulary is fixed, not counted from the text, so a model trained under one
Python version reads the same ids under another: id 0 is "unknown", then newline and the
95 printable ASCII characters. The typographic quotes and dashes of the topics fold into
their ASCII forms (one character each); the few characters left (an ellipsis, a degree
sign, a sharp s: 24 of 464,970 in CPython 3.11) become "unknown".

    (x_train, y_train), (x_val, y_val), vocab = pydoc_topics.load_data(sequence_length=128)
    # x: int32 windows of 128 ids; y: the same windows shifted by one character
"""
import numpy as np

UNKNOWN = "\ufffd"
_FOLD = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"}


class CharVocabulary:
    """Characters <-> int ids: "unknown" (0), newline, then printable ASCII."""

    def __init__(self):
        self.chars = [UNKNOWN, "\n"] + [chr(c) for c in range(32, 127)]
        self._index = {ch: i for i, ch in enumerate(self.chars)}

    @property
    def size(self):
        return len(self.chars)

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        """str -> int32 ids (folded quotes and dashes; other characters -> 0, unknown)."""
        if not isinstance(text, str):
            raise TypeError(f"CharVocabulary.encode: expected a str, got {type(text).__name__}")
        index = self._index
        return np.array([index.get(_FOLD.get(ch, ch), 0) for ch in text], dtype=np.int32)

    def decode(self, ids):
        """int ids -> str; ids outside the vocabulary are an error."""
        ids = np.asarray(ids)
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"CharVocabulary.decode: ids must be integers, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
            raise ValueError(f"CharVocabulary.decode: id {bad} is outside the vocabulary of {self.size}")
        return "".join(self.chars[int(i)] for i in ids.reshape(-1))


def load_text():
    """The corpus: every pydoc topic, in sorted topic order, joined as they are."""
    from pydoc_data.topics import topics
    return "".join(topics[key] for key in sorted(topics))


def split_text(text, validation_fraction=0.1):
    """-> (training text, validation text): the last fraction of the characters validates."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"pydoc_topics: validation_fraction must be in (0, 1), got {validation_fraction!r}")
    cut = int(len(text) * (1.0 - validation_fraction))
    return text[:cut], text[cut:]


def windows(ids, sequence_length, stride=None):
    """ids (1-D) -> (x, y): x[i] = ids[s:s + T], y[i] = ids[s + 1:s + T + 1] at s = i * stride."""
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or sequence_length < 1:
        raise ValueError(f"pydoc_topics: sequence_length must be a positive int, got {sequence_length!r}")
    stride = sequence_length if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"pydoc_topics: stride must be a positive int, got {stride!r}")
    count = (len(ids) - sequence_length - 1) // stride + 1
    if count < 1:
        raise ValueError(f"pydoc_topics: {len(ids)} characters are too few for one window of "
                         f"{sequence_length} + 1")
    starts = np.arange(count) * stride
    take = starts[:, None] + np.arange(sequence_length + 1)[None, :]
    both = np.asarray(ids, dtype=np.int32)[take]
    return np.ascontiguousarray(both[:, :-1]), np.ascontiguousarray(both[:, 1:])


def load_data(sequence_length=128, stride=None, validation_fraction=0.1):
    """-> ((x_train, y_train), (x_val, y_val), vocab): int32 windows of `sequence_length`
    character ids and their next characters. `stride` (default sequence_length: windows
    side by side) sets how far apart training windows start; validation windows never
    overlap."""
    vocab = CharVocabulary()
    train_text, val_text = split_text(load_text(), validation_fraction)
    train = windows(vocab.encode(train_text), sequence_length, stride)
    val = windows(vocab.encode(val_text), sequence_length)
    return train, val, vocab
