"""softmax_cross_entropy, crossentropy, mse and accuracy against NumPy references."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import simulated
from helpers import check_grad, check_op, randn
from numbanet.kernels.ops import loss as family

HYPOTHESIS = settings(max_examples=4 if simulated() else 15, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def onehot(labels, c, dtype):
    y = np.zeros((labels.shape[0], c), dtype)
    y[np.arange(labels.shape[0]), labels] = 1
    return y


def as_rows(labels, c, dtype):
    return onehot(labels, c, np.float64) if labels.ndim == 1 else labels.astype(np.float64)


def softmax_ce_ref(z, labels):
    z64 = z.astype(np.float64)
    y = as_rows(labels, z.shape[1], z.dtype)
    mx = z64.max(1, keepdims=True)
    # sum_k y_k (lse - z_k) with lse - z_k as (max - z_k) + log(sum): near the float limit
    # the max itself would swallow log(sum) (3e38 + log 2 is 3e38 in float64 too).
    # A class without target weight adds nothing, even where max - z_k passes the float64
    # limit (rows at +-1.5e308).
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(z64 - mx)
        terms = np.where(y != 0, y * (mx - z64), 0.0)
    s = e.sum(1)
    losses = terms.sum(1) + y.sum(1) * np.log(s)
    soft = e / s[:, None]
    return losses.astype(z.dtype), ((soft - y) / z.shape[0]).astype(z.dtype)


def crossentropy_ref(p, labels, eps=1e-7):
    y = as_rows(labels, p.shape[1], p.dtype)
    p64 = p.astype(np.float64)
    pc = np.clip(p64, eps, 1 - eps)
    losses = -(y * np.log(pc)).sum(1)
    inside = (p64 >= eps) & (p64 <= 1 - eps)
    d = np.where(inside, -y / pc / p.shape[0], 0.0)
    return losses.astype(p.dtype), d.astype(p.dtype)


def mse_ref(p, t):
    n = p.shape[0]
    d = (p.astype(np.float64) - t).reshape(n, -1)
    return (d * d).mean(1).astype(p.dtype), (2 * d / d.size).reshape(p.shape).astype(p.dtype)


def labels_for(n, c, seed=0):
    return np.random.default_rng(seed).integers(0, c, n)


@HYPOTHESIS
@given(n=st.integers(1, 12), c=st.integers(1, 11), dtype=st.sampled_from([np.float32, np.float64]),
       int_dtype=st.sampled_from([np.int32, np.int64, np.uint8]), scale=st.sampled_from([1.0, 30.0]))
def test_softmax_cross_entropy(be, n, c, dtype, int_dtype, scale):
    z = randn((n, c), dtype, scale=scale)
    labels = labels_for(n, c).astype(int_dtype)
    check_op(be, lambda be, z, l: be.softmax_cross_entropy(z, l), [z, labels], softmax_ce_ref, k=c, scale=scale)
    y = onehot(labels, c, dtype)
    check_op(be, lambda be, z, l: be.softmax_cross_entropy(z, l), [z, y], softmax_ce_ref, k=c, scale=scale)


def test_int_labels_and_onehot_agree(be):
    z = randn((6, 4), np.float32)
    labels = labels_for(6, 4)
    a = [be.to_numpy(r) for r in be.softmax_cross_entropy(be.asarray(z), be.asarray(labels))]
    b = [be.to_numpy(r) for r in be.softmax_cross_entropy(be.asarray(z), be.asarray(onehot(labels, 4, np.float32)))]
    for u, w in zip(a, b):
        np.testing.assert_allclose(u, w, rtol=1e-6, atol=1e-7)


def test_soft_labels(be):
    z = randn((5, 3), np.float64)
    y = np.random.default_rng(1).dirichlet(np.ones(3), 5)
    check_op(be, lambda be, z, y: be.softmax_cross_entropy(z, y), [z, y], softmax_ce_ref, k=3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_huge_logits(be, dtype):
    z = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4 - 2.0], [-1e4, -1e4, -1e4]], dtype)
    labels = np.array([0, 2, 1])
    losses, dz = (be.to_numpy(r) for r in be.softmax_cross_entropy(be.asarray(z), be.asarray(labels)))
    assert np.all(np.isfinite(losses)) and np.all(np.isfinite(dz))
    want_l, want_d = softmax_ce_ref(z, labels)
    np.testing.assert_allclose(losses, want_l, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dz, want_d, rtol=1e-5, atol=1e-6)
    # Row 1: the label's logit is 2 below the max and the third is e^-1e4 away from
    # mattering, so the loss is log(1 + e^2) to full precision.
    np.testing.assert_allclose(losses[1], np.log1p(np.exp(2.0)), rtol=1e-6)


def _limit_rows(dtype):
    """Logits at the float type's limit, a finite float64 loss for each row's label, and
    one ordinary row: (z, labels)."""
    big = np.finfo(dtype).max / 1.2   # 2.8e38 in float32: max - (-max) overflows, max itself does not
    z = np.array([[big, -big, 0.0], [0.0, big, -big], [big, -big, big], [-big, 0.0, big], [1.0, 2.0, 3.0]], dtype)
    return z, np.array([0, 1, 2, 2, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("form", ["int", "onehot"])
def test_softmax_cross_entropy_at_the_float_limit(be, dtype, form):
    """Logits of +-max/1.2 (the issue's [3e38, -3e38, 0]): finite losses and gradients
    equal to the float64 reference, 0 where the label has the largest logit (PyTorch's
    answer too), on softmax_cross_entropy and its _stats variant."""
    z, labels = _limit_rows(dtype)
    y = labels if form == "int" else onehot(labels, 3, dtype)
    want_l, want_d = softmax_ce_ref(z, y)
    assert np.all(np.isfinite(want_l)) and want_l[0] == 0 and want_l[1] == 0 and want_l[3] == 0
    np.testing.assert_allclose(want_l[2], np.log(2.0), rtol=1e-6)
    for got in (be.softmax_cross_entropy(be.asarray(z), be.asarray(y)),
                be.softmax_cross_entropy_stats(be.asarray(z), be.asarray(y))):
        losses, dz = be.to_numpy(got[0]), be.to_numpy(got[1])
        assert np.all(np.isfinite(losses)) and np.all(np.isfinite(dz)), (losses, dz)
        np.testing.assert_allclose(losses, want_l, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(dz, want_d, rtol=1e-6, atol=1e-7)
    stats = be.to_numpy(got[2])
    np.testing.assert_allclose(stats[0], want_l.astype(np.float64).mean(), rtol=1e-6)
    assert stats[1] == int((z.argmax(1) == labels).sum())


def test_softmax_cross_entropy_a_nan_row_stays_in_its_row(be):
    """A NaN logit makes its own row's loss and gradient NaN, and no other row's; the
    _stats mean is NaN (a mean of a NaN) while its correct count still counts the others."""
    z, labels = _limit_rows(np.float32)
    z[1, 0] = np.nan
    want_l, want_d = softmax_ce_ref(np.delete(z, 1, axis=0), np.delete(labels, 1))
    for got in (be.softmax_cross_entropy(be.asarray(z), be.asarray(labels)),
                be.softmax_cross_entropy_stats(be.asarray(z), be.asarray(labels))):
        losses, dz = be.to_numpy(got[0]), be.to_numpy(got[1])
        assert np.isnan(losses[1])
        # Each row's gradient is divided by the batch size: the reference's has one row less.
        np.testing.assert_allclose(np.delete(losses, 1), want_l, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(np.delete(dz, 1, axis=0), want_d * 4 / 5, rtol=1e-6, atol=1e-7)
    stats = be.to_numpy(got[2])
    assert np.isnan(stats[0])
    assert stats[1] == int((np.delete(z, 1, axis=0).argmax(1) == np.delete(labels, 1)).sum())


def test_softmax_cross_entropy_gradient_finite_differences(be):
    z = randn((4, 5), np.float64, scale=2.0)
    labels = labels_for(4, 5)
    check_grad(be, lambda be, z: float(np.mean(be.to_numpy(be.softmax_cross_entropy(z, be.asarray(labels))[0]))),
               lambda be, z: be.softmax_cross_entropy(z, be.asarray(labels))[1], [z], wrt=[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("form", ["int", "onehot"])
@pytest.mark.parametrize("n", [1, 7, 300])
def test_softmax_cross_entropy_stats(be, small, n, form, dtype):
    """Loss, gradient, mean loss and correct count in one op (one kernel on the gpu): the
    rows as softmax_cross_entropy computes them, the mean and count of NumPy. 300 rows
    pass the gpu kernel's 256 threads, so a thread folds more than one row."""
    if small and n == 300:
        n = 260
    c = 4
    z = randn((n, c), dtype, seed=n, scale=3.0)
    labels = labels_for(n, c, seed=n)
    labels[: n // 3] = z[: n // 3].argmax(1)   # some rows right, whatever the draw
    y = labels if form == "int" else onehot(labels, c, dtype)
    losses, dz, stats = be.softmax_cross_entropy_stats(be.asarray(z), be.asarray(y))
    want_losses, want_dz = softmax_ce_ref(z, y)
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-14)
    np.testing.assert_allclose(be.to_numpy(losses), want_losses, rtol=rtol, atol=atol)
    np.testing.assert_allclose(be.to_numpy(dz), want_dz, rtol=rtol, atol=atol)
    stats = be.to_numpy(stats)
    assert stats.dtype == np.float64 and stats.shape == (2,)
    np.testing.assert_allclose(stats[0], want_losses.astype(np.float64).mean(), rtol=rtol * 10)
    assert stats[1] == int((z.argmax(1) == labels).sum())


def test_softmax_cross_entropy_stats_takes_penalties_into_its_mean(be):
    """stats[0:1] is a valid `into` for the penalties: a step adds them on the backend."""
    z, labels = randn((4, 3), np.float64, seed=5), np.array([0, 2, 1, 1])
    w = randn((5,), np.float64, seed=6)
    losses, _, stats = be.softmax_cross_entropy_stats(be.asarray(z), be.asarray(labels))
    be.l1_l2_penalty(be.asarray(w), l1=0.1, l2=0.2, into=stats[0:1])
    want = softmax_ce_ref(z, labels)[0].mean() + 0.1 * np.abs(w).sum() + 0.2 * (w * w).sum()
    np.testing.assert_allclose(be.to_numpy(stats)[0], want, rtol=1e-12)


@pytest.mark.parametrize("op", ["softmax_cross_entropy", "crossentropy", "accuracy"])
def test_label_out_of_range(be, op):
    z = be.asarray(np.full((3, 4), 0.25, np.float32))
    for bad in (4, -1):
        with pytest.raises(ValueError, match=rf"{op}.*{bad}"):
            getattr(be, op)(z, be.asarray(np.array([0, bad, 1])))


@HYPOTHESIS
@given(n=st.integers(1, 10), c=st.integers(2, 9), dtype=st.sampled_from([np.float32, np.float64]))
def test_crossentropy(be, n, c, dtype):
    rng = np.random.default_rng(n * 10 + c)
    p = rng.dirichlet(np.ones(c), n).astype(dtype)
    p[0, 0] = 0.0  # clipped at eps: zero gradient there
    labels = labels_for(n, c)
    labels[0] = 0  # the clipped cell is the label's: the loss is -log(eps), not a small number
    # dprobs reaches 1 / (n * eps) = 1e7 / n in the clipped row (before the clip's zero),
    # so its large entries are held to rtol, the small ones to the usual atol of k terms:
    # no tolerance scaled by the largest value.
    check_op(be, lambda be, p, l: be.crossentropy(p, l), [p, labels], crossentropy_ref, k=c)
    y = onehot(labels, c, dtype)
    check_op(be, lambda be, p, l: be.crossentropy(p, l), [p, y], crossentropy_ref, k=c)


def test_crossentropy_gradient_finite_differences(be):
    p = np.random.default_rng(3).dirichlet(np.ones(5), 4)
    labels = labels_for(4, 5)
    check_grad(be, lambda be, p: float(np.mean(be.to_numpy(be.crossentropy(p, be.asarray(labels))[0]))),
               lambda be, p: be.crossentropy(p, be.asarray(labels))[1], [p], wrt=[0])


@HYPOTHESIS
@given(shape=st.lists(st.integers(1, 8), min_size=1, max_size=3), dtype=st.sampled_from([np.float32, np.float64]))
def test_mse(be, shape, dtype):
    p = randn(tuple(shape), dtype)
    t = randn(tuple(shape), dtype, seed=1)
    check_op(be, lambda be, p, t: be.mse(p, t), [p, t], mse_ref, k=int(np.prod(shape)), scale=4.0)


def test_mse_gradient_finite_differences(be):
    p = randn((3, 4), np.float64)
    t = randn((3, 4), np.float64, seed=1)
    check_grad(be, lambda be, p, t: float(np.mean(be.to_numpy(be.mse(p, t)[0]))),
               lambda be, p, t: be.mse(p, t)[1], [p, t], wrt=[0])


def test_accuracy(be):
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0], [0.0, 0.1, 0.9], [0.3, 0.3, 0.4]], np.float32)
    labels = np.array([1, 1, 2, 0])
    # Row 1 ties: the first max (class 0) counts, so it misses label 1.
    want = sum(int(np.argmax(s) == l) for s, l in zip(scores, labels))
    assert want == 2
    assert be.accuracy(be.asarray(scores), be.asarray(labels)) == want
    assert be.accuracy(be.asarray(scores), be.asarray(onehot(labels, 3, np.float32))) == want


@pytest.mark.parametrize("op", ["softmax_cross_entropy", "crossentropy", "accuracy"])
def test_bad_input(be, op):
    f = getattr(be, op)
    z = be.asarray(np.zeros((3, 4), np.float32))
    lab = be.asarray(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=op):
        f(be.asarray(np.zeros((3, 4, 1), np.float32)), lab)
    with pytest.raises(TypeError, match=op):
        f(be.asarray(np.zeros((3, 4), np.int32)), lab)
    with pytest.raises(TypeError, match=op):
        f(be.asarray(np.zeros((3, 4), np.float16)), lab)
    with pytest.raises(ValueError, match=op):
        f(be.asarray(np.zeros((0, 4), np.float32)), be.asarray(np.zeros(0, np.int64)))
    with pytest.raises(ValueError, match=op):
        f(z, be.asarray(np.array([0, 1])))
    with pytest.raises(TypeError, match=op):
        f(z, be.asarray(np.array([0.0, 1.0, 2.0], np.float32)))
    with pytest.raises(TypeError, match=op):
        f(z, be.asarray(np.zeros((3, 4), np.float64)))
    with pytest.raises(ValueError, match=op):
        f(z, be.asarray(np.zeros((3, 5), np.float32)))


def test_mse_bad_input(be):
    p = be.asarray(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="mse"):
        be.mse(p, be.asarray(np.zeros((4, 3), np.float32)))
    with pytest.raises(TypeError, match="mse"):
        be.mse(p, be.asarray(np.zeros((3, 4), np.float64)))
    with pytest.raises(TypeError, match="mse"):
        be.mse(be.asarray(np.zeros((3, 4), np.int32)), p)
    with pytest.raises(ValueError, match="mse"):
        be.mse(be.asarray(np.zeros((0, 4), np.float32)), be.asarray(np.zeros((0, 4), np.float32)))


# --------------------------------------------------------------------------- binary cross-entropy, binary accuracy

def bce_ref(p, t, from_logits=False, eps=1e-7):
    """Per-sample losses (mean over every axis but the first) and the gradient of their mean."""
    p64, t64 = p.astype(np.float64), t.astype(np.float64)
    n, d = p.shape[0], p.size // p.shape[0]
    if from_logits:
        l = np.maximum(p64, 0) - p64 * t64 + np.log1p(np.exp(-np.abs(p64)))
        g = (1 / (1 + np.exp(-p64)) - t64) / (n * d)
    else:
        c = np.clip(p64, eps, 1 - eps)
        l = -(t64 * np.log(c) + (1 - t64) * np.log(1 - c))
        g = np.where((p64 >= eps) & (p64 <= 1 - eps), (-t64 / c + (1 - t64) / (1 - c)) / (n * d), 0.0)
    return l.reshape(n, d).mean(1).astype(p.dtype), g.astype(p.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("shape", [(4, 1), (3, 5), (2, 3, 4)])
def test_binary_crossentropy(be, dtype, from_logits, shape):
    r = np.random.default_rng(3)
    p = (randn(shape, dtype, scale=3.0) if from_logits else r.uniform(0.02, 0.98, shape).astype(dtype))
    t = r.integers(0, 2, shape).astype(dtype)
    t.reshape(-1)[0] = 0.3   # soft targets are allowed
    check_op(be, lambda be, p, t: be.binary_crossentropy(p, t, from_logits=from_logits), [p, t],
             lambda p, t: bce_ref(p, t, from_logits), k=int(np.prod(shape[1:])))


def test_binary_crossentropy_clips_probabilities_and_logits_are_stable(be):
    p = np.array([[0.0, 1.0, 0.5]], np.float64)
    t = np.array([[1.0, 1.0, 0.0]], np.float64)
    losses, dp = be.binary_crossentropy(be.asarray(p), be.asarray(t), eps=1e-7)
    want = -(np.log(1e-7) + np.log(1 - 1e-7) + np.log(0.5)) / 3
    np.testing.assert_allclose(be.to_numpy(losses), [want], rtol=1e-12)
    np.testing.assert_array_equal(be.to_numpy(dp)[0, :2], [0.0, 0.0])   # clipped: no gradient
    z = np.array([[-1e4, 1e4, 30.0]], np.float32)
    losses, dz = be.binary_crossentropy(be.asarray(z), be.asarray(np.array([[0, 0, 1]], np.float32)),
                                        from_logits=True)
    np.testing.assert_allclose(be.to_numpy(losses), [(0.0 + 1e4 + np.log1p(np.exp(-30.0))) / 3], rtol=1e-6)
    assert np.all(np.isfinite(be.to_numpy(dz)))


@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_crossentropy_gradient_finite_differences(be, from_logits):
    r = np.random.default_rng(5)
    p = randn((3, 4), np.float64, scale=2.0) if from_logits else r.uniform(0.05, 0.95, (3, 4))
    t = r.uniform(0, 1, (3, 4))

    def loss(be, p, t):
        losses, _ = be.binary_crossentropy(p, t, from_logits=from_logits)
        return float(np.mean(be.to_numpy(losses)))

    check_grad(be, loss, lambda be, p, t: be.binary_crossentropy(p, t, from_logits=from_logits)[1], [p, t], wrt=[0])


def test_binary_accuracy(be):
    p = np.array([[0.2, 0.7], [0.5, 0.9], [0.6, 0.1]], np.float32)
    t = np.array([[0, 1], [1, 1], [1, 1]], np.float32)
    # 0.5 is not above the threshold (Keras: pred > threshold)
    assert be.binary_accuracy(be.asarray(p), be.asarray(t)) == 4
    assert be.binary_accuracy(be.asarray(p - 0.5), be.asarray(t), threshold=0.0) == 4
    t[0, 0] = 0.3    # a soft target never equals a 0/1 guess, as in Keras
    assert be.binary_accuracy(be.asarray(p), be.asarray(t)) == 3


def test_binary_bad_input(be):
    p = be.asarray(np.full((2, 3), 0.5, np.float32))
    with pytest.raises(ValueError, match=r"binary_crossentropy: target.shape=\(2, 1\) differs from pred.shape"):
        be.binary_crossentropy(p, be.asarray(np.zeros((2, 1), np.float32)))
    with pytest.raises(TypeError, match="binary_crossentropy: target must be float32 or float64, got int64"):
        be.binary_crossentropy(p, be.asarray(np.zeros((2, 3), np.int64)))
    with pytest.raises(TypeError, match="binary_accuracy: target is float64 but pred is float32"):
        be.binary_accuracy(p, be.asarray(np.zeros((2, 3), np.float64)))
    with pytest.raises(ValueError, match="binary_crossentropy: eps must be in"):
        be.binary_crossentropy(p, p, eps=0.7)


# --------------------------------------------------------------------------- argument rules (kernels/ops/loss.py)

def test_check_labels():
    logits = np.zeros((3, 4), np.float32)
    assert family.check_labels("op", logits, np.array([0, 1, 2])) is False
    assert family.check_labels("op", logits, np.zeros((3, 4), np.float32)) is True
    with pytest.raises(ValueError, match="op: labels has 2 rows but logits has 3"):
        family.check_labels("op", logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"op: one-hot labels must have shape \(3, 4\)"):
        family.check_labels("op", logits, np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="op: labels must be integer class ids"):
        family.check_labels("op", logits, np.zeros((3, 4, 1), np.float32))
