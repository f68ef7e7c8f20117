"""nn.generate: greedy decoding against a loop written here, sampling rules, the padding rule
for a causal model, and bad arguments."""
import numpy as np
import pytest

from numbanet import nn
from numbanet.nn import charlm
from numbanet.nn.datasets.pydoc_topics import CharVocabulary


@pytest.fixture
def model(nnbe):
    nn.utils.set_random_seed(3)
    m = charlm.build_model(11, sequence_length=6, d_model=8, num_heads=2, num_layers=1)
    m.set_weights([w + np.random.default_rng(0).standard_normal(w.shape).astype(w.dtype) for w in m.get_weights()])
    return m


def greedy_ref(model, prompt, length, steps=6):
    ids = list(prompt)
    for _ in range(length):
        ctx = ids[-steps:]
        window = np.zeros((1, steps), np.int64)
        window[0, :len(ctx)] = ctx
        ids.append(int(np.argmax(model.predict(window)[0, len(ctx) - 1])))
    return np.array(ids[len(prompt):])


def test_temperature_zero_is_greedy_and_top_k_one_too(model):
    want = greedy_ref(model, [1, 2], 9)          # 9 steps: the context slides past 6
    np.testing.assert_array_equal(nn.generate(model, [1, 2], 9, temperature=0), want)
    np.testing.assert_array_equal(nn.generate(model, [1, 2], 9, top_k=1, seed=5), want)


def test_seeded_samples_repeat_and_stay_in_top_k(model):
    a = nn.generate(model, [3], 20, temperature=1.5, seed=1)
    b = nn.generate(model, [3], 20, temperature=1.5, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.int32 and a.shape == (20,) and a.min() >= 0 and a.max() < 11
    top2 = nn.generate(model, [3, 4, 5], 1, top_k=2, seed=2)[0]
    window = np.zeros((1, 6), np.int64)
    window[0, :3] = [3, 4, 5]
    assert top2 in np.argsort(model.predict(window)[0, 2])[-2:]


def test_causal_padding_does_not_change_the_next_token(model):
    a = nn.generate(model, [4, 1], 1, temperature=0, pad_id=0)
    b = nn.generate(model, [4, 1], 1, temperature=0, pad_id=7)
    assert a[0] == b[0]


def test_text_in_text_out(nnbe):
    vocab = CharVocabulary()
    m = charlm.build_model(vocab.size, sequence_length=8, d_model=8, num_heads=2, num_layers=1)
    out = nn.generate(m, "ab", 5, vocabulary=vocab, seed=0)
    assert isinstance(out, str) and len(out) == 5


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="a str prompt needs a vocabulary"):
        nn.generate(model, "hi", 3)
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        nn.generate(model, [1], 3, temperature=-1)
    with pytest.raises(ValueError, match="top_k must be None or a positive int"):
        nn.generate(model, [1], 3, top_k=0)
    with pytest.raises(ValueError, match="the prompt is empty"):
        nn.generate(model, [], 3)
    x = nn.Input((4,))
    with pytest.raises(ValueError, match="the model's input must be integer ids of shape"):
        nn.generate(nn.Model(x, nn.layers.Dense(3)(x)), [1], 2)
