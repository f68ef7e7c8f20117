"""nn/mnist_cnn.py: the article's CNN builder and its narrower variants (tests/nn/test_article.py
ties the default to the article's own code)."""
import numpy as np
import pytest

from numbanet.nn import mnist_cnn


def test_default_is_the_articles_shapes():
    m = mnist_cnn.build_model()
    # conv 3x3x1x32, conv 3x3x32x64, dense (5*5*64)x128, dense 128x10, each with its bias
    assert [w.shape for w in m.get_weights()] == [(3, 3, 1, 32), (32,), (3, 3, 32, 64), (64,), (1600, 128), (128,),
                                                  (128, 10), (10,)]
    assert m.output_shape == (10,) and m.compiled


@pytest.mark.simulator
def test_narrow_variant_trains_on_small_images(nnbe):
    m = mnist_cnn.build_model(input_shape=(12, 12, 1), filters=(4, 8), units=16)
    # 12 -> conv 10 -> pool 5 -> conv 3 -> pool 1: 8 features into Dense(16)
    assert [w.shape for w in m.get_weights()] == [(3, 3, 1, 4), (4,), (3, 3, 4, 8), (8,), (8, 16), (16,), (16, 10),
                                                  (10,)]
    assert m.be is nnbe
    rng = np.random.default_rng(0)
    x = rng.random((16, 12, 12, 1), dtype=np.float32)
    y = rng.integers(0, 10, 16)
    before = m.get_weights()
    loss = m.train_on_batch(x, y)[0]
    assert np.isfinite(loss) and abs(loss - np.log(10)) < 0.5   # near chance at the start
    assert all(not np.array_equal(a, b) for a, b in zip(before, m.get_weights()))


def test_filters_must_name_both_convolutions():
    with pytest.raises(ValueError, match="mnist_cnn: filters must hold the two Conv2D"):
        mnist_cnn.build_model(filters=(32,))
