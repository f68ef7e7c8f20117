"""The charlm corpus: Python's pydoc topics, its split, the fixed vocabulary and the windows."""
import numpy as np
import pytest

from numbanet.nn.datasets import pydoc_topics


def test_corpus_is_every_topic_in_order():
    from pydoc_data.topics import topics
    text = pydoc_topics.load_text()
    assert len(text) == sum(len(v) for v in topics.values()) and len(text) > 400_000
    first = sorted(topics)[0]
    assert text.startswith(topics[first])


def test_vocabulary_round_trip_and_folding():
    vocab = pydoc_topics.CharVocabulary()
    assert vocab.size == len(vocab) == 97 and vocab.chars[0] == pydoc_topics.UNKNOWN and vocab.chars[1] == "\n"
    text = 'print("hi")\n\t~'
    ids = vocab.encode(text)
    assert ids.dtype == np.int32
    assert vocab.decode(ids) == text.replace("\t", pydoc_topics.UNKNOWN)
    assert vocab.decode(vocab.encode("\u201cit\u2019s\u201d \u2014 x")) == '"it\'s" - x'
    with pytest.raises(ValueError, match="id 97 is outside the vocabulary of 97"):
        vocab.decode([1, 97])


def test_the_real_corpus_is_nearly_all_in_the_vocabulary():
    vocab = pydoc_topics.CharVocabulary()
    ids = vocab.encode(pydoc_topics.load_text())
    assert np.count_nonzero(ids == 0) < 100


def test_windows_are_next_character_pairs():
    ids = np.arange(20)
    x, y = pydoc_topics.windows(ids, 6, stride=4)
    assert x.shape == y.shape == (4, 6) and x.dtype == np.int32
    np.testing.assert_array_equal(x[1], np.arange(4, 10))
    np.testing.assert_array_equal(y, x + 1)
    with pytest.raises(ValueError, match="too few for one window"):
        pydoc_topics.windows(ids[:5], 6)


def test_load_data_splits_without_overlap():
    (xt, yt), (xv, yv), vocab = pydoc_topics.load_data(sequence_length=64)
    text = pydoc_topics.load_text()
    train, val = pydoc_topics.split_text(text)
    assert len(train) == int(len(text) * 0.9) and train + val == text
    assert xt.shape == ((len(train) - 65) // 64 + 1, 64) and xv.shape[1] == 64
    assert vocab.decode(xt[0]) == vocab.decode(vocab.encode(train[:64]))
    np.testing.assert_array_equal(yt[0], vocab.encode(train[1:65]))
    assert vocab.decode(xv[0])[:20] == vocab.decode(vocab.encode(val[:20]))
