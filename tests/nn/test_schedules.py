"""CosineDecay against Keras's formula written out in NumPy (warm-up, decay, the floor)."""
import math

import numpy as np
import pytest

from numbanet.nn import optimizers
from numbanet.nn.schedules import CosineDecay, deserialize, serialize


def keras_cosine_decay(step, initial, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
    """keras.optimizers.schedules.CosineDecay.__call__, transcribed."""
    def decay(s, start):
        cosine = 0.5 * (1.0 + math.cos(math.pi * s / decay_steps))
        return start * ((1 - alpha) * cosine + alpha)
    if warmup_target is None:
        return decay(min(step, decay_steps), initial)
    step = min(step, decay_steps + warmup_steps)
    if step < warmup_steps:
        return (warmup_target - initial) * step / warmup_steps + initial
    return decay(step - warmup_steps, warmup_target)


@pytest.mark.parametrize("kw", [dict(initial=0.1, decay_steps=10),
                                dict(initial=0.1, decay_steps=10, alpha=0.2),
                                dict(initial=0.0, decay_steps=20, alpha=0.1, warmup_target=3e-3, warmup_steps=5)])
def test_matches_keras_formula(kw):
    s = CosineDecay(kw["initial"], kw["decay_steps"], alpha=kw.get("alpha", 0.0),
                    warmup_target=kw.get("warmup_target"), warmup_steps=kw.get("warmup_steps", 0))
    for step in range(0, 40):
        assert np.isclose(s(step), keras_cosine_decay(step, **kw), rtol=1e-15, atol=0)


def test_shape_of_the_curve():
    s = CosineDecay(0.0, 100, alpha=0.1, warmup_target=1.0, warmup_steps=10)
    assert s(0) == 0.0 and s(5) == 0.5 and s(10) == 1.0
    assert np.isclose(s(60), 0.1 + 0.9 * 0.5) and np.isclose(s(110), 0.1) and s(500) == s(110)
    assert optimizers.schedules is not None and optimizers.schedules.CosineDecay is CosineDecay


def test_serialization_and_errors():
    s = CosineDecay(0.5, 7, alpha=0.3, warmup_target=1.0, warmup_steps=2)
    again = deserialize(serialize(s))
    assert again.get_config() == s.get_config() and again(3) == s(3)
    with pytest.raises(ValueError, match="decay_steps must be a positive int, got 0"):
        CosineDecay(0.1, 0)
    with pytest.raises(ValueError, match="warmup_target must be > 0.0"):
        CosineDecay(0.1, 5, warmup_target=0.0)
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        deserialize({"class_name": "PiecewiseConstantDecay", "config": {}})
