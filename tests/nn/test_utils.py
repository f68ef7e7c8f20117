"""to_categorical, the library RNG, initializers, regularizer objects, activation names."""
import numpy as np
import pytest

from numbanet.nn import activations, initializers, regularizers, utils


def test_to_categorical_matches_eye():
    y = np.array([2, 0, 1, 2], dtype=np.uint8)
    np.testing.assert_array_equal(utils.to_categorical(y), np.eye(3, dtype="float32")[y])
    assert utils.to_categorical(y, num_classes=5).shape == (4, 5)
    np.testing.assert_array_equal(utils.to_categorical(y[:, None], 3), np.eye(3)[y])
    with pytest.raises(ValueError, match="class id 2 is out of range for num_classes=2"):
        utils.to_categorical(y, 2)
    with pytest.raises(ValueError, match="class ids must be >= 0, got -1"):
        utils.to_categorical(np.array([-1, 0]))


def test_set_random_seed_repeats_draws():
    utils.set_random_seed(5)
    a = initializers.initialize("glorot_uniform", (4, 3), "float32")
    utils.set_random_seed(5)
    b = initializers.initialize("glorot_uniform", (4, 3), "float32")
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        utils.set_random_seed(-1)


@pytest.mark.parametrize("shape,fan_in,fan_out", [((5, 7), 5, 7), ((3, 3, 2, 8), 18, 72)])
def test_fans_and_glorot_spread(shape, fan_in, fan_out):
    assert initializers.fans(shape) == (fan_in, fan_out)
    utils.set_random_seed(0)
    w = initializers.initialize("glorot_uniform", (200,) + shape[1:] if len(shape) == 2 else shape, "float64")
    fi, fo = initializers.fans(w.shape)
    lim = np.sqrt(6 / (fi + fo))
    assert np.abs(w).max() <= lim
    assert abs(w.std() - lim / np.sqrt(3)) < 0.15 * lim


def test_regularizer_defaults_and_lookup():
    assert (regularizers.l1().l1, regularizers.l1().l2) == (0.01, 0.0)
    assert (regularizers.l2().l1, regularizers.l2().l2) == (0.0, 0.01)
    r = regularizers.get("l1_l2")
    assert (r.l1, r.l2) == (0.01, 0.01)
    with pytest.raises(ValueError, match="regularizer must be None"):
        regularizers.get("l3")


def test_regularizer_penalty_and_gradient_match_numpy():
    from numbanet import kernels
    be = kernels.get_backend()
    w = np.random.default_rng(0).standard_normal((4, 3))
    r = regularizers.l1_l2(0.02, 0.03)
    assert np.isclose(r.penalty(be, be.asarray(w)), 0.02 * np.abs(w).sum() + 0.03 * (w ** 2).sum(), rtol=1e-12)
    dw = np.ones_like(w)
    r.add_gradient(be, be.asarray(w), dw)
    np.testing.assert_allclose(dw, 1 + 0.02 * np.sign(w) + 0.06 * w, rtol=1e-12)


def test_activation_names():
    assert activations.get(None) == "linear" and activations.get("ReLU") == "relu"
    with pytest.raises(ValueError, match="activation must be one of linear, relu, sigmoid, tanh, softmax, gelu"):
        activations.get("elu")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.bin"
    utils.atomic_write(target, lambda f: f.write(b"first"))
    assert target.read_bytes() == b"first"

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        utils.atomic_write(target, broken)
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]   # no temporary file left


def test_explicit_fans_override_the_shape():
    utils.set_random_seed(0)
    w = initializers.initialize("glorot_uniform", (64, 2, 8), "float64", fans=(64, 16))
    limit = np.sqrt(6 / 80)
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    assert initializers.fans((64, 2, 8)) == (128, 512)   # Keras's rule for rank 3 without axes
    u = initializers.initialize("uniform", (1000,), "float32")
    assert np.abs(u).max() <= 0.05 and np.abs(u).max() > 0.049


def test_list_of_reads_the_holder_s_own_list_or_an_empty_one():
    class Holder:
        def __init__(self, items):
            self.items = items

    class Owner:
        items = utils.list_of("_holder", "items")

    owner = Owner()
    owner._holder = None
    assert owner.items == []
    kept = [1, 2]
    owner._holder = Holder(kept)
    assert owner.items is kept   # the holder's list itself, not a copy
    with pytest.raises(AttributeError):
        owner.items = [3]        # read-only


@pytest.mark.parametrize("value,want", [(3, True), (np.int64(3), True), (np.uint8(0), True), (-2, True),
                                        (3.0, False), (np.float32(3), False), ("3", False), (None, False),
                                        (True, False), (np.bool_(True), False)])
def test_is_int_takes_integers_only(value, want):
    assert utils.is_int(value) is want
