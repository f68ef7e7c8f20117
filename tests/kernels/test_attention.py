"""attention / attention_backward against a NumPy reference, finite differences, and bad input."""
import numpy as np
import pytest

from conftest import simulated
from helpers import assert_close, check_grad, check_op, randn


def attention_ref(q, k, v, causal=False, scale=None):
    """Plain NumPy scaled-dot-product attention in float64 -> (out, lse), q (B, Tq, H, D)."""
    dtype = q.dtype
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    scale = 1.0 / np.sqrt(q.shape[3]) if scale is None else scale
    s = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if causal:
        keep = np.arange(q.shape[1])[:, None] >= np.arange(k.shape[1])[None, :]
        s = np.where(keep, s, -np.inf)
    m = s.max(-1, keepdims=True)
    e = np.exp(s - m)
    total = e.sum(-1, keepdims=True)
    out = np.einsum("bhqk,bkhd->bqhd", e / total, v)
    return out.astype(dtype), (m + np.log(total))[..., 0].astype(dtype)


def attention_op(be, q, k, v, causal=False, scale=None):
    return be.attention(q, k, v, causal=causal, scale=scale)


def operands(b, tq, tk, h, d, dv, dtype, seed=0):
    return (randn((b, tq, h, d), dtype, seed), randn((b, tk, h, d), dtype, seed + 1),
            randn((b, tk, h, dv), dtype, seed + 2))


# (B, Tq, Tk, H, D, Dv): self-attention shapes, cross-attention with Tq != Tk both ways,
# single rows and keys, head dims that are not multiples of a vector, and lengths crossing
# the cpu kernel's 8- and 16-row panels, its 128-key backward blocks and the gpu's 32 x 32
# tiles and 32-feature chunks. Under the simulator (a Python thread per CUDA thread, 128
# per block) a few shapes that still cross the gpu's tile and chunk edges.
SHAPES = ([(1, 1, 1, 1, 1, 1), (2, 5, 7, 2, 3, 4), (1, 40, 35, 1, 3, 2), (1, 6, 5, 1, 33, 34)] if simulated() else
          [(1, 1, 1, 1, 1, 1), (2, 5, 7, 2, 3, 4), (2, 7, 5, 3, 8, 8), (1, 17, 17, 2, 16, 16),
           (2, 33, 40, 1, 32, 24), (1, 130, 130, 2, 32, 32), (1, 70, 300, 1, 20, 7), (1, 200, 9, 2, 9, 33)])
FD_SHAPES = ([(1, 5, 7, 2, 3, 4)] if simulated() else
             [(2, 5, 7, 2, 3, 4), (1, 6, 4, 1, 2, 3), (1, 19, 19, 1, 4, 5)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_attention_forward(be, small, shape, causal, dtype):
    b, tq, tk, h, d, dv = shape
    q, k, v = operands(b, tq, tk, h, d, dv, dtype, seed=tq + tk)
    check_op(be, attention_op, [q, k, v], attention_ref, kwargs={"causal": causal}, k=max(tk, d))


# The simulator checks the masked case only: each sample is two forward passes there.
@pytest.mark.parametrize("causal", [True] if simulated() else [False, True])
@pytest.mark.parametrize("shape", FD_SHAPES)
def test_attention_backward_finite_differences(be, small, shape, causal):
    b, tq, tk, h, d, dv = shape
    q, k, v = operands(b, tq, tk, h, d, dv, np.float64, seed=3)
    r = randn((b, tq, h, dv), np.float64, seed=9)

    def loss(be, q, k, v, r):
        out, _ = be.attention(q, k, v, causal=causal, scale=0.7)
        return float(np.sum(be.to_numpy(out) * be.to_numpy(r)))

    def backward(be, q, k, v, r):
        out, lse = be.attention(q, k, v, causal=causal, scale=0.7)
        return be.attention_backward(q, k, v, out, r, lse, causal=causal, scale=0.7)

    check_grad(be, loss, backward, [q, k, v, r], wrt=[0, 1, 2], samples=4 if small else 30)


def attention_backward_ref(q, k, v, dout, causal, scale):
    """The gradients written out by hand (dS = P * (dP - rowsum(dout * out)))."""
    q, k, v, dout = (a.astype(np.float64) for a in (q, k, v, dout))
    s = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if causal:
        keep = np.arange(q.shape[1])[:, None] >= np.arange(k.shape[1])[None, :]
        s = np.where(keep, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    dv = np.einsum("bhqk,bqhd->bkhd", p, dout)
    dp = np.einsum("bqhd,bkhd->bhqk", dout, v)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    return (np.einsum("bhqk,bkhd->bqhd", ds, k) * scale, np.einsum("bhqk,bqhd->bkhd", ds, q) * scale, dv)


# float32 backward on the gpu is also compared with the cpu in tests/gpu/test_cross_backend.py;
# the simulator runs the reference check in float64 only (two backward kernels per call).
@pytest.mark.parametrize("dtype", [np.float64] if simulated() else [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_attention_backward_reference(be, small, shape, causal, dtype):
    b, tq, tk, h, d, dv = shape
    q, k, v = operands(b, tq, tk, h, d, dv, dtype, seed=7)
    dout = randn((b, tq, h, dv), dtype, seed=8)
    scale = 0.3
    out, lse = attention_ref(q, k, v, causal, scale)
    got = check_op(be, lambda be, *a: be.attention_backward(*a, causal=causal, scale=scale),
                   [q, k, v, out, dout, lse],
                   lambda q, k, v, out, dout, lse: tuple(g.astype(dtype) for g in
                                                         attention_backward_ref(q, k, v, dout, causal, scale)),
                   k=max(tq, tk, d, dv), scale=3.0)
    assert len(got) == 3


def test_attention_default_scale_is_one_over_sqrt_d(be):
    q, k, v = operands(1, 4, 5, 2, 9, 3, np.float64, seed=1)
    got = be.to_numpy(be.attention(*[be.asarray(a) for a in (q, k, v)])[0])
    want = be.to_numpy(be.attention(*[be.asarray(a) for a in (q, k, v)], scale=1 / 3)[0])
    np.testing.assert_array_equal(got, want)
    assert_close(got, attention_ref(q, k, v, scale=1 / 3)[0], np.float64, k=9)


def test_attention_causal_first_row_is_first_value(be):
    """Query 0 sees only key 0 under the causal mask: its output is v[:, 0] and its lse is
    its only scaled score."""
    q, k, v = operands(2, 6, 6, 3, 4, 5, np.float64, seed=2)
    out, lse = (be.to_numpy(a) for a in be.attention(*[be.asarray(a) for a in (q, k, v)], causal=True, scale=0.5))
    np.testing.assert_allclose(out[:, 0], v[:, 0], rtol=1e-12)
    np.testing.assert_allclose(lse[:, :, 0], 0.5 * np.einsum("bhd,bhd->bh", q[:, 0], k[:, 0]), rtol=1e-12)


def test_attention_causal_ignores_future_keys(be, small):
    """Masked keys get probability exactly 0: huge future keys and values change no bit of
    the outputs or the gradients of the rows that cannot see them."""
    b, t, h, d = (1, 6, 1, 3) if small else (2, 40, 2, 16)
    q, k, v = operands(b, t, t, h, d, d, np.float32, seed=4)
    dout = randn((b, t, h, d), np.float32, seed=5)
    k2, v2 = k.copy(), v.copy()
    k2[:, t // 2:] = 1e15
    v2[:, t // 2:] = -1e15
    results = []
    for kk, vv in ((k, v), (k2, v2)):
        args = [be.asarray(a) for a in (q, kk, vv)]
        out, lse = be.attention(*args, causal=True)
        dq, dk, dv = be.attention_backward(*args, out, be.asarray(dout), lse, causal=True)
        results.append([be.to_numpy(a) for a in (out, lse, dq, dk, dv)])
    (o1, l1, dq1, dk1, dv1), (o2, l2, dq2, dk2, dv2) = results
    rows = slice(0, t // 2)
    np.testing.assert_array_equal(o1[:, rows], o2[:, rows])
    np.testing.assert_array_equal(l1[:, :, rows], l2[:, :, rows])
    np.testing.assert_array_equal(dq1[:, rows], dq2[:, rows])


def test_attention_is_deterministic(be, small):
    b, t, h, d = (1, 7, 2, 3) if small else (3, 150, 2, 32)
    q, k, v = (be.asarray(a) for a in operands(b, t, t, h, d, d, np.float32, seed=6))
    dout = be.asarray(randn((b, t, h, d), np.float32, seed=7))
    first = None
    for _ in range(3):
        out, lse = be.attention(q, k, v, causal=True)
        grads = be.attention_backward(q, k, v, out, dout, lse, causal=True)
        got = [be.to_numpy(a).tobytes() for a in (out, lse) + tuple(grads)]
        if first is None:
            first = got
        assert got == first


def test_attention_stable_for_large_scores(be):
    """Scores of +-1e4 neither overflow nor lose the lse: the row max is taken out first."""
    q = np.full((1, 2, 1, 1), 100.0, np.float32)
    k = np.array([100.0, -100.0, 99.9], np.float32).reshape(1, 3, 1, 1)
    v = np.array([1.0, 2.0, 3.0], np.float32).reshape(1, 3, 1, 1)
    out, lse = (be.to_numpy(a) for a in be.attention(*[be.asarray(a) for a in (q, k, v)], scale=1.0))
    want_out, want_lse = attention_ref(q.astype(np.float64), k, v, scale=1.0)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(lse))
    np.testing.assert_allclose(out, want_out, rtol=1e-4)
    np.testing.assert_allclose(lse, want_lse, rtol=1e-6)


# --------------------------------------------------------------------------- bad input

def on(be, *arrays):
    return [be.asarray(a) for a in arrays]


@pytest.mark.parametrize("qs,ks,vs,match", [
    ((2, 3, 1, 4), (2, 5, 1, 4), (2, 4, 1, 4), r"attention: k and v must have the same number of keys"),
    ((2, 3, 1, 4), (1, 5, 1, 4), (1, 5, 1, 4), r"attention: q, k and v must have the same batch size"),
    ((2, 3, 2, 4), (2, 5, 1, 4), (2, 5, 1, 4), r"attention: q, k and v must have the same number of heads"),
    ((2, 3, 1, 4), (2, 5, 1, 3), (2, 5, 1, 4), r"attention: q and k must have the same head dimension"),
    ((2, 3, 4), (2, 5, 1, 4), (2, 5, 1, 4), r"attention: q must be 4-D \(batch, time, heads, head_dim\)"),
    ((2, 0, 1, 4), (2, 5, 1, 4), (2, 5, 1, 4), r"attention: q is empty"),
])
def test_attention_rejects_bad_shapes(be, qs, ks, vs, match):
    q, k, v = on(be, *(np.ones(s, np.float32) for s in (qs, ks, vs)))
    with pytest.raises(ValueError, match=match):
        be.attention(q, k, v)


def test_attention_rejects_bad_dtypes_and_scale(be):
    q, k, v = on(be, *(np.ones((1, 2, 1, 3), np.float32) for _ in range(3)))
    with pytest.raises(TypeError, match=r"attention: q must be float32 or float64, got int32"):
        be.attention(be.asarray(np.ones((1, 2, 1, 3), np.int32)), k, v)
    with pytest.raises(TypeError, match=r"attention: v is float64 but q is float32"):
        be.attention(q, k, be.asarray(np.ones((1, 2, 1, 3), np.float64)))
    with pytest.raises(ValueError, match=r"attention: scale must be finite, got nan"):
        be.attention(q, k, v, scale=float("nan"))
    with pytest.raises(TypeError, match=r"attention: scale must be a real number, got '0.5'"):
        be.attention(q, k, v, scale="0.5")
    with pytest.raises(TypeError, match=r"attention: causal must be True or False, got 1"):
        be.attention(q, k, v, causal=1)


def test_attention_backward_rejects_bad_shapes(be):
    q, k, v = on(be, *(np.ones((1, 2, 1, 3), np.float32) for _ in range(3)))
    out, lse = be.attention(q, k, v)
    with pytest.raises(ValueError, match=r"attention_backward: dout must have shape \(1, 2, 1, 3\), got \(1, 2, 3\)"):
        be.attention_backward(q, k, v, out, be.asarray(np.ones((1, 2, 3), np.float32)), lse)
    with pytest.raises(ValueError, match=r"attention_backward: lse must have shape \(1, 1, 2\), got \(1, 2, 1\)"):
        be.attention_backward(q, k, v, out, out, be.asarray(np.ones((1, 2, 1), np.float32)))
    with pytest.raises(TypeError, match=r"attention_backward: lse is float64 but q is float32"):
        be.attention_backward(q, k, v, out, out, be.asarray(np.ones((1, 1, 2), np.float64)))
    with pytest.raises(ValueError, match=r"attention_backward: k and v must have the same number of keys"):
        be.attention_backward(q, k, be.asarray(np.ones((1, 3, 1, 3), np.float32)), out, out, lse)
