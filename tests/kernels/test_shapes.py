"""kernels.shapes: padding arithmetic (TensorFlow's "same" rule) and validation messages."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from numbanet.kernels import shapes


def same_ref(h, k, s):
    """TensorFlow: out = ceil(h / s); total pad = max((out - 1) * s + k - h, 0), less on top."""
    out = -(-h // s)
    total = max((out - 1) * s + k - h, 0)
    return out, total // 2, total - total // 2


@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), kh=st.integers(1, 7), kw=st.integers(1, 7),
       sh=st.integers(1, 4), sw=st.integers(1, 4))
def test_same_padding_matches_tensorflow(h, w, kh, kw, sh, sw):
    oh, ow, pt, pl, pb, pr = shapes.resolve_padding("op", "same", (h, w), (kh, kw), (sh, sw))
    assert (oh, pt, pb) == same_ref(h, kh, sh)
    assert (ow, pl, pr) == same_ref(w, kw, sw)


@settings(max_examples=100, deadline=None)
@given(h=st.integers(1, 30), k=st.integers(1, 6), s=st.integers(1, 4), p=st.integers(0, 3))
def test_valid_and_explicit_padding(h, k, s, p):
    if h + 2 * p < k:
        with pytest.raises(ValueError, match="does not fit"):
            shapes.resolve_padding("op", p, (h, h), (k, k), (s, s))
        return
    oh, ow, pt, pl, pb, pr = shapes.resolve_padding("op", p, (h, h), (k, k), (s, s))
    assert (oh, ow) == ((h + 2 * p - k) // s + 1,) * 2
    assert (pt, pl, pb, pr) == (p, p, p, p)
    if p == 0:
        assert shapes.resolve_padding("op", "valid", (h, h), (k, k), (s, s)) == (oh, ow, 0, 0, 0, 0)


def test_same_padding_known_case():
    # 28x28, 3x3 kernel, stride 2: 14 outputs, total pad 1: 0 on top, 1 at the bottom.
    assert shapes.resolve_padding("conv2d", "SAME", (28, 28), (3, 3), (2, 2)) == (14, 14, 0, 0, 1, 1)


@pytest.mark.parametrize("padding", ["full", -1, (1, 2, 3), 1.5, True, None])
def test_bad_padding_names_the_op(padding):
    with pytest.raises(ValueError, match=r"^myop: padding"):
        shapes.resolve_padding("myop", padding, (5, 5), (3, 3), (1, 1))


def test_window_larger_than_input():
    with pytest.raises(ValueError, match=r"myop: window 5x5 does not fit the 3x3 input"):
        shapes.resolve_padding("myop", "valid", (3, 3), (5, 5), (1, 1))


@pytest.mark.parametrize("value,want", [(3, (3, 3)), ((2, 5), (2, 5)), (np.int64(4), (4, 4))])
def test_pair(value, want):
    assert shapes.pair("op", "strides", value) == want


@pytest.mark.parametrize("value", [0, -2, (1,), (1, 0), "2", 2.0, True, (True, 1)])
def test_pair_rejects(value):
    with pytest.raises(ValueError, match=r"^op: strides"):
        shapes.pair("op", "strides", value)


def test_check_float_and_int_messages():
    with pytest.raises(TypeError, match=r"^op: x must be float32 or float64, got int32 \(x.shape=\(2, 3\)\)"):
        shapes.check_float("op", "x", np.zeros((2, 3), np.int32))
    with pytest.raises(TypeError, match=r"op: x must be an array, got list"):
        shapes.check_float("op", "x", [1.0])
    with pytest.raises(TypeError, match=r"op: i must be an integer array, got float32"):
        shapes.check_int("op", "i", np.zeros(2, np.float32))
    assert shapes.check_float("op", "x", np.zeros(1, np.float64)) == np.float64


def test_check_shape_dtype_ndim_messages():
    a = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"op: a must be 4-D NHWC, got 2-D \(a.shape=\(2, 3\)\)"):
        shapes.check_ndim("op", "a", a, 4, "NHWC")
    with pytest.raises(TypeError, match=r"op: b is float64 but a is float32"):
        shapes.check_same_dtype("op", [("a", a), ("b", np.zeros(3))])
    with pytest.raises(ValueError, match=r"op: b.shape=\(3, 2\) differs from a.shape=\(2, 3\)"):
        shapes.check_same_shape("op", [("a", a), ("b", np.zeros((3, 2), np.float32))])
    with pytest.raises(ValueError, match=r"op: a must have shape \(3,\), got \(2, 3\)"):
        shapes.check_shape("op", "a", a, (3,))
    with pytest.raises(ValueError, match=r"op: e is empty"):
        shapes.check_nonempty("op", "e", np.zeros((0, 3)))
