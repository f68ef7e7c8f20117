"""bias_add, scale, multiply (dropout_backward), dropout's counter hash, take_rows, L1/L2."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import simulated
from helpers import check_op, randn

HYPOTHESIS = settings(max_examples=4 if simulated() else 15, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])

M64 = (1 << 64) - 1


def counter_uniform_ref(seed, i):
    """The dropout hash in Python ints (splitmix64 of seed + (i + 1) * golden ratio)."""
    z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    z ^= z >> 31
    return (z >> 11) * 2.0 ** -53


def dropout_ref(x, rate, seed):
    flat = x.reshape(-1)
    keep = np.array([counter_uniform_ref(seed, i) >= rate for i in range(flat.size)])
    mask = np.where(keep, 1.0 / (1.0 - rate), 0.0).astype(x.dtype).reshape(x.shape)
    return x * mask, mask


@pytest.mark.parametrize("seed", [0, 1, 12345, 2 ** 63 - 1])
def test_counter_uniform_matches_python_ints(seed):
    from numbanet.kernels.cpu.rules import counter_uniform   # kernels/rules.py's, compiled for the cpu
    for i in (0, 1, 2, 1000, 2 ** 31 + 7):
        assert counter_uniform(seed, i) == counter_uniform_ref(seed, i)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.75])
def test_dropout_mask_is_the_hash(be, dtype, rate):
    x = randn((6, 7), dtype)
    check_op(be, lambda be, x, rate, seed: be.dropout(x, rate, seed), [x, rate, 99], dropout_ref)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_kept_fraction(be, small, rate):
    n = 2000 if small else 200_000
    _, mask = be.dropout(be.asarray(np.ones(n, np.float32)), rate, 7)
    mask = be.to_numpy(mask)
    kept = np.count_nonzero(mask) / n
    # Binomial standard deviation sqrt(r(1-r)/n): 5 sigma is never hit by chance.
    assert abs(kept - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n)
    np.testing.assert_allclose(mask[mask != 0], 1 / (1 - rate), rtol=1e-6)


def test_dropout_seeds_differ_and_repeat(be):
    x = be.asarray(np.ones(1000, np.float32))
    a = be.to_numpy(be.dropout(x, 0.5, 1)[1])
    b = be.to_numpy(be.dropout(x, 0.5, 1)[1])
    c = be.to_numpy(be.dropout(x, 0.5, 2)[1])
    np.testing.assert_array_equal(a, b)
    assert np.count_nonzero(a != c) > 100


def test_dropout_backward(be):
    dy = randn((4, 5), np.float32)
    mask = dropout_ref(np.ones((4, 5), np.float32), 0.4, 3)[1]
    check_op(be, lambda be, dy, m: be.dropout_backward(dy, m), [dy, mask], lambda dy, m: dy * m)


@HYPOTHESIS
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), dtype=st.sampled_from([np.float32, np.float64]))
def test_bias_add_and_scale(be, shape, dtype):
    x = randn(tuple(shape), dtype)
    b = randn((shape[-1],), dtype, seed=1)
    check_op(be, lambda be, x, b: be.bias_add(x, b), [x, b], lambda x, b: x + b)
    check_op(be, lambda be, x: be.scale(x, 0.37), [x], lambda x: (x.astype(np.float64) * 0.37).astype(dtype))


@HYPOTHESIS
@given(rows=st.integers(1, 12), rest=st.lists(st.integers(1, 5), max_size=2), k=st.integers(0, 15),
       idx_dtype=st.sampled_from([np.int32, np.int64]))
def test_take_rows(be, rows, rest, k, idx_dtype):
    x = randn((rows,) + tuple(rest), np.float32)
    idx = np.random.default_rng(k).integers(0, rows, k).astype(idx_dtype)
    got = be.to_numpy(be.take_rows(be.asarray(x), be.asarray(idx)))
    np.testing.assert_array_equal(got, x[idx])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_l1_l2(be, dtype):
    w = randn((5, 4), dtype)
    w[0, 0] = 0.0  # sign(0) = 0
    dw = randn((5, 4), dtype, seed=1)
    want = (dw.astype(np.float64) + 0.01 * np.sign(w) + 2 * 0.02 * w).astype(dtype)
    ddw = be.asarray(dw.copy())
    be.l1_l2_grad(be.asarray(w), ddw, l1=0.01, l2=0.02)
    np.testing.assert_allclose(be.to_numpy(ddw), want, rtol=1e-6)
    got = be.l1_l2_penalty(be.asarray(w), l1=0.01, l2=0.02)
    w64 = w.astype(np.float64)
    np.testing.assert_allclose(got, 0.01 * np.abs(w64).sum() + 0.02 * (w64 ** 2).sum(), rtol=1e-12)


def test_l1_l2_grad_is_the_penalty_gradient(be):
    w = randn((3, 3), np.float64)
    dw = be.asarray(np.zeros((3, 3)))
    be.l1_l2_grad(be.asarray(w), dw, l1=0.3, l2=0.7)
    num = np.empty(9)
    for i in range(9):
        wp, wm = w.copy().reshape(-1), w.copy().reshape(-1)
        wp[i] += 1e-6
        wm[i] -= 1e-6
        num[i] = (be.l1_l2_penalty(be.asarray(wp), l1=0.3, l2=0.7)
                  - be.l1_l2_penalty(be.asarray(wm), l1=0.3, l2=0.7)) / 2e-6
    np.testing.assert_allclose(be.to_numpy(dw).reshape(-1), num, rtol=1e-6)


def test_bad_input(be):
    f32 = be.asarray(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="bias_add"):
        be.bias_add(f32, be.asarray(np.zeros(2, np.float32)))
    with pytest.raises(TypeError, match="bias_add"):
        be.bias_add(f32, be.asarray(np.zeros(3, np.float64)))
    with pytest.raises(TypeError, match="bias_add"):
        be.bias_add(be.asarray(np.zeros((2, 3), np.int32)), be.asarray(np.zeros(3, np.int32)))
    with pytest.raises(ValueError, match="bias_add"):
        be.bias_add(be.asarray(np.zeros((0, 3), np.float32)), be.asarray(np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match="dropout"):
        be.dropout(f32, 1.0, 0)
    with pytest.raises(ValueError, match="dropout"):
        be.dropout(f32, 0.5, -1)
    with pytest.raises(TypeError, match="dropout"):
        be.dropout(be.asarray(np.zeros(3, np.float16)), 0.5, 0)
    with pytest.raises(ValueError, match="dropout_backward"):
        be.dropout_backward(f32, be.asarray(np.zeros((3, 2), np.float32)))
    with pytest.raises(TypeError, match="scale"):
        be.scale(be.asarray(np.zeros(3, np.int64)), 2.0)
    with pytest.raises(ValueError, match="take_rows"):
        be.take_rows(f32, be.asarray(np.array([0, 2])))
    with pytest.raises(ValueError, match="take_rows"):
        be.take_rows(f32, be.asarray(np.array([-1])))
    with pytest.raises(TypeError, match="take_rows"):
        be.take_rows(f32, be.asarray(np.array([0.0])))
    with pytest.raises(ValueError, match="take_rows"):
        be.take_rows(f32, be.asarray(np.zeros((1, 1), np.int32)))
    with pytest.raises(ValueError, match="l1_l2_grad"):
        be.l1_l2_grad(f32, be.asarray(np.zeros((3, 2), np.float32)), l1=0.1)
    with pytest.raises(TypeError, match="l1_l2_grad"):
        be.l1_l2_grad(f32, be.asarray(np.zeros((2, 3), np.float64)), l1=0.1)
    with pytest.raises(TypeError, match="l1_l2_penalty"):
        be.l1_l2_penalty(be.asarray(np.zeros(3, np.int32)), l1=0.1)


# --------------------------------------------------------------------------- add, concatenate, split, transpose

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_and_in_place_accumulation(be, dtype):
    a, b = randn((3, 4, 5), dtype), randn((3, 4, 5), dtype, seed=1)
    check_op(be, lambda be, a, b: be.add(a, b), [a, b], lambda a, b: a + b)
    da, db = be.asarray(a.copy()), be.asarray(b)
    out = be.add(da, db, out=da)
    assert out is da
    np.testing.assert_array_equal(be.to_numpy(da), a + b)


def test_add_bad_input(be):
    f = be.asarray(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"add: b.shape=\(3, 2\) differs from a.shape=\(2, 3\)"):
        be.add(f, be.asarray(np.zeros((3, 2), np.float32)))
    with pytest.raises(ValueError, match=r"add: b.shape=\(3,\) differs"):  # no broadcasting
        be.add(f, be.asarray(np.zeros(3, np.float32)))
    with pytest.raises(TypeError, match="add: b is float64 but a is float32"):
        be.add(f, be.asarray(np.zeros((2, 3), np.float64)))
    with pytest.raises(ValueError, match=r"add: a.shape=\(2, 3\) differs from out.shape=\(3, 2\)"):
        be.add(f, f, out=be.asarray(np.zeros((3, 2), np.float32)))
    big = be.asarray(np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="add: out shares memory with a"):
        be.add(big[:4], big[4:], out=big[1:5])


@HYPOTHESIS
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), sizes=st.lists(st.integers(1, 4), min_size=1,
       max_size=3), data=st.data(), dtype=st.sampled_from([np.float32, np.float64]))
def test_concatenate_and_split_invert_each_other(be, shape, sizes, data, dtype):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    parts = []
    for i, s in enumerate(sizes):
        sh = list(shape)
        sh[axis] = s
        parts.append(randn(tuple(sh), dtype, seed=i))
    got = be.concatenate([be.asarray(p) for p in parts], axis=axis)
    want = np.concatenate(parts, axis=axis)
    np.testing.assert_array_equal(be.to_numpy(got), want)
    back = be.split(got, sizes, axis=axis)
    assert len(back) == len(parts)
    for g, p in zip(back, parts):
        np.testing.assert_array_equal(be.to_numpy(g), p)


def test_concatenate_split_bad_input(be):
    a = be.asarray(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"concatenate: arrays\[1\].shape=\(3, 3\) does not match arrays\[0\]"
                                         r".shape=\(2, 3\) outside axis 1"):
        be.concatenate([a, be.asarray(np.zeros((3, 3), np.float32))], axis=1)
    with pytest.raises(TypeError, match=r"concatenate: arrays\[1\] is float64"):
        be.concatenate([a, be.asarray(np.zeros((2, 3), np.float64))])
    with pytest.raises(ValueError, match=r"concatenate: axis must be an int in \[-2, 2\), got 2"):
        be.concatenate([a, a], axis=2)
    with pytest.raises(ValueError, match="concatenate: expected a non-empty list"):
        be.concatenate([])
    with pytest.raises(ValueError, match=r"split: sizes \[1, 1\] must be positive and sum to x.shape\[1\]=3"):
        be.split(a, [1, 1], axis=1)


@HYPOTHESIS
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=6), data=st.data(),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_transpose_any_permutation(be, shape, data, dtype):
    axes = data.draw(st.permutations(range(len(shape))))
    x = randn(tuple(shape), dtype)
    got = be.transpose(be.asarray(x), axes)
    np.testing.assert_array_equal(be.to_numpy(got), np.ascontiguousarray(x.transpose(axes)))


def test_transpose_attention_layout(be, small):
    # (B, T, H, D) <-> (B, H, T, D), the non-fused attention path's transposes.
    x = randn((2, 3, 2, 4) if small else (4, 33, 4, 16), np.float32)
    y = be.transpose(be.asarray(x), (0, 2, 1, 3))
    np.testing.assert_array_equal(be.to_numpy(y), x.transpose(0, 2, 1, 3))
    np.testing.assert_array_equal(be.to_numpy(be.transpose(y, (0, 2, 1, 3))), x)


def test_transpose_bad_input(be):
    x = be.asarray(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"transpose: axes must be a permutation of range\(2\), got \(0, 0\)"):
        be.transpose(x, (0, 0))
    with pytest.raises(ValueError, match="transpose: x has 7 dimensions; at most 6"):
        be.transpose(be.asarray(np.zeros((1,) * 7, np.float32)), range(7))
    with pytest.raises(TypeError, match="transpose"):
        be.transpose(be.asarray(np.zeros((2, 3), np.int32)), (1, 0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scale_in_place_and_into_out(be, dtype):
    x = randn((5, 7), dtype, seed=3)
    a = be.asarray(x.copy())
    assert be.scale(a, 0.25, out=a) is a
    np.testing.assert_array_equal(be.to_numpy(a), x * np.asarray(0.25, dtype))
    flat = be.asarray(np.arange(12, dtype=dtype))
    head = flat[:8]   # a view of a packed buffer, scaled in place (nn/distributed.py)
    be.scale(head, 2.0, out=head)
    np.testing.assert_array_equal(be.to_numpy(flat), np.r_[np.arange(8) * 2.0, np.arange(8, 12)].astype(dtype))
    out = be.zeros((5, 7), dtype)
    be.scale(be.asarray(x), -1.5, out=out)
    np.testing.assert_array_equal(be.to_numpy(out), x * np.asarray(-1.5, dtype))


def test_scale_out_bad_input(be):
    x = be.asarray(np.arange(8, dtype=np.float32))
    with pytest.raises(ValueError, match="scale: out shares memory with x"):
        be.scale(x[:4], 2.0, out=x[2:6])
    with pytest.raises(ValueError, match="scale"):
        be.scale(x, 2.0, out=be.zeros((4,), "float32"))
    with pytest.raises(TypeError, match="scale"):
        be.scale(x, 2.0, out=be.zeros((8,), "float64"))
