"""max/avg pooling against NumPy loop references, and backward ops by finite differences."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import simulated
from helpers import assert_close, check_grad, check_op, randn
from numbanet.kernels.ops import pool as family

HYPOTHESIS = settings(max_examples=4 if simulated() else 20, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def geometry(h, w, ph, pw, sh, sw, padding):
    """(oh, ow, pt, pl), written here independently of kernels.shapes (TensorFlow's rule)."""
    if padding == "valid":
        return (h - ph) // sh + 1, (w - pw) // sw + 1, 0, 0
    th = max((-(-h // sh) - 1) * sh + ph - h, 0)
    tw = max((-(-w // sw) - 1) * sw + pw - w, 0)
    return -(-h // sh), -(-w // sw), th // 2, tw // 2


def pool_ref(x, pool, strides, padding, kind):
    n, h, w, c = x.shape
    ph, pw = pool
    sh, sw = strides
    oh, ow, pt, pl = geometry(h, w, ph, pw, sh, sw, padding)
    y = np.zeros((n, oh, ow, c), x.dtype)
    idx = np.zeros((n, oh, ow, c), np.int32)
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for ch in range(c):
                    cells = [(hh, ww) for hh in range(i * sh - pt, i * sh - pt + ph)
                             for ww in range(j * sw - pl, j * sw - pl + pw) if 0 <= hh < h and 0 <= ww < w]
                    vals = np.array([x[b, hh, ww, ch] for hh, ww in cells], np.float64)
                    if kind == "max":
                        k = int(np.argmax(vals))
                        y[b, i, j, ch] = vals[k]
                        idx[b, i, j, ch] = cells[k][0] * w + cells[k][1]
                    else:
                        y[b, i, j, ch] = vals.mean()
    return y, idx


def run_max(be, x, pool, strides, padding):
    return be.max_pool2d(x, pool_size=pool, strides=strides, padding=padding)[0]


def check_max(be, x, pool, strides, padding):
    """Values through check_op; the int32 indices compared exactly with the reference's."""
    check_op(be, lambda be, x: run_max(be, x, pool, strides, padding), [x],
             lambda x: pool_ref(x, pool, strides or pool, padding, "max")[0])
    _, idx = be.max_pool2d(be.asarray(x), pool_size=pool, strides=strides, padding=padding)
    idx = be.to_numpy(idx)
    assert idx.dtype == np.int32
    np.testing.assert_array_equal(idx, pool_ref(x, pool, strides or pool, padding, "max")[1])


def run_avg(be, x, pool, strides, padding):
    return be.avg_pool2d(x, pool_size=pool, strides=strides, padding=padding)


def distinct(shape, dtype, seed=0):
    """Inputs without ties (a permutation), so the max and its index are unique."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0 - 3.0).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pool,strides,padding", [((2, 2), None, "valid"), ((3, 3), (2, 2), "same"),
                                                  ((2, 3), (1, 2), "valid"), ((3, 3), (1, 1), "same")])
def test_pool_fixed(be, dtype, pool, strides, padding):
    x = distinct((2, 7, 6, 3), dtype)
    s = strides or pool
    check_max(be, x, pool, strides, padding)
    check_op(be, lambda be, x: run_avg(be, x, pool, strides, padding), [x],
             lambda x: pool_ref(x, pool, s, padding, "avg")[0], k=pool[0] * pool[1])


def test_max_pool_ties_pick_first(be):
    x = np.ones((1, 4, 4, 1), np.float32)
    _, idx = be.max_pool2d(be.asarray(x))
    # The first cell of each 2x2 window in row-major order: (0,0), (0,2), (2,0), (2,2).
    assert be.to_numpy(idx).reshape(-1).tolist() == [0, 2, 8, 10]


@HYPOTHESIS
@given(n=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 4),
       p=st.sampled_from([2, 3]), s=st.sampled_from([1, 2, 3]), padding=st.sampled_from(["valid", "same"]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_pool_shapes_hypothesis(be, small, n, h, w, c, p, s, padding, dtype):
    if small:
        n, h, w, c = 1, min(h, 4), min(w, 4), 1
    x = distinct((n, h, w, c), dtype, seed=h * 31 + w)
    if padding == "valid" and (h < p or w < p):
        # A window larger than the image: both ops refuse it, as conv2d does.
        for op in ("max_pool2d", "avg_pool2d"):
            with pytest.raises(ValueError, match=rf"{op}: window {p}x{p} does not fit the {h}x{w} input"):
                getattr(be, op)(be.asarray(x), pool_size=p, strides=s, padding=padding)
        return
    check_max(be, x, (p, p), (s, s), padding)
    check_op(be, lambda be, x: run_avg(be, x, (p, p), (s, s), padding), [x],
             lambda x: pool_ref(x, (p, p), (s, s), padding, "avg")[0], k=p * p)


@pytest.mark.parametrize("pool,strides,padding", [((2, 2), None, "valid"), ((3, 3), (1, 1), "same"),
                                                  ((3, 3), (2, 2), "same"), ((2, 2), (3, 3), "valid")])
def test_max_pool_backward_finite_differences(be, pool, strides, padding):
    x = distinct((2, 6, 5, 2), np.float64)
    y, _ = be.max_pool2d(be.asarray(x), pool_size=pool, strides=strides, padding=padding)
    r = randn(be.to_numpy(y).shape, np.float64, seed=3)

    def loss(be, x, r):
        y, _ = be.max_pool2d(x, pool_size=pool, strides=strides, padding=padding)
        return float(np.sum(be.to_numpy(y) * be.to_numpy(r)))

    def backward(be, x, r):
        _, idx = be.max_pool2d(x, pool_size=pool, strides=strides, padding=padding)
        return be.max_pool2d_backward(r, idx, x.shape)

    check_grad(be, loss, backward, [x, r], wrt=[0], samples=30)


@pytest.mark.parametrize("pool,strides,padding", [((2, 2), None, "valid"), ((3, 3), (1, 1), "same"),
                                                  ((3, 2), (2, 3), "same")])
def test_avg_pool_backward_finite_differences(be, pool, strides, padding):
    x = randn((2, 7, 5, 2), np.float64)
    y = be.avg_pool2d(be.asarray(x), pool_size=pool, strides=strides, padding=padding)
    r = randn(be.to_numpy(y).shape, np.float64, seed=3)

    def loss(be, x, r):
        y = be.avg_pool2d(x, pool_size=pool, strides=strides, padding=padding)
        return float(np.sum(be.to_numpy(y) * be.to_numpy(r)))

    def backward(be, x, r):
        return be.avg_pool2d_backward(r, x.shape, pool_size=pool, strides=strides, padding=padding)

    check_grad(be, loss, backward, [x, r], wrt=[0], samples=30)


def test_max_pool_backward_overlapping_windows_accumulate(be):
    # A single peak shared by every 3x3 window (stride 1) collects all their gradients.
    x = np.zeros((1, 4, 4, 1), np.float64)
    x[0, 1, 1, 0] = 5.0
    x[0, 2, 2, 0] = 4.0
    y, idx = be.max_pool2d(be.asarray(x), pool_size=3, strides=1)
    dy = np.arange(1.0, 5.0).reshape(1, 2, 2, 1)
    dx = be.to_numpy(be.max_pool2d_backward(be.asarray(dy), idx, x.shape))
    want = np.zeros_like(x)
    for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        win = x[0, i:i + 3, j:j + 3, 0]
        a, b = np.unravel_index(np.argmax(win), win.shape)
        want[0, i + a, j + b, 0] += dy[0, i, j, 0]
    np.testing.assert_array_equal(dx, want)
    assert want[0, 1, 1, 0] == 10.0


@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
def test_pool_bad_input(be, op):
    f = getattr(be, op)
    with pytest.raises(ValueError, match=op):
        f(be.asarray(np.zeros((4, 4, 1), np.float32)))
    with pytest.raises(TypeError, match=op):
        f(be.asarray(np.zeros((1, 4, 4, 1), np.int32)))
    with pytest.raises(TypeError, match=op):
        f(be.asarray(np.zeros((1, 4, 4, 1), np.float16)))
    with pytest.raises(ValueError, match=op):
        f(be.asarray(np.zeros((0, 4, 4, 1), np.float32)))
    with pytest.raises(ValueError, match=op):
        f(be.asarray(np.zeros((1, 1, 4, 1), np.float32)), pool_size=2)
    with pytest.raises(ValueError, match=op):
        f(be.asarray(np.zeros((1, 4, 4, 1), np.float32)), padding=1)


def test_pool_backward_bad_input(be):
    x = be.asarray(np.zeros((1, 4, 4, 2), np.float32))
    y, idx = be.max_pool2d(x)
    with pytest.raises(TypeError, match="max_pool2d_backward"):
        be.max_pool2d_backward(y, be.asarray(np.zeros((1, 2, 2, 2), np.int64)), (1, 4, 4, 2))
    with pytest.raises(ValueError, match="max_pool2d_backward"):
        be.max_pool2d_backward(y, idx, (1, 4, 4, 3))
    with pytest.raises(ValueError, match="max_pool2d_backward"):
        be.max_pool2d_backward(y, idx, (4, 4, 2))
    with pytest.raises(ValueError, match="avg_pool2d_backward"):
        be.avg_pool2d_backward(y, (1, 6, 6, 2))
    with pytest.raises(TypeError, match="avg_pool2d_backward"):
        be.avg_pool2d_backward(be.asarray(np.zeros((1, 2, 2, 2), np.int32)), (1, 4, 4, 2))


# The cpu kernels vectorize over channels, specialize full 2x2 windows and run narrow
# (few-channel) general windows channel by channel: these cover each path and its edges.
WIDTHS = [1, 3, 7, 8, 17, 33]
GEOMETRIES = [((2, 2), None, "valid", (2, 6, 8)),   # every window a full 2x2
              ((2, 2), None, "same", (2, 7, 5)),    # last row/column windows cut by padding
              ((3, 3), (2, 2), "same", (2, 7, 6)),  # general windows, padded on every side
              ((3, 3), (1, 1), "same", (1, 5, 6)),  # overlapping windows
              ((2, 3), (1, 2), "valid", (1, 5, 7))]


def max_backward_ref(dy, idx, x_shape):
    dx = np.zeros(x_shape, dy.dtype)
    w = x_shape[2]
    for b, i, j, ch in np.ndindex(*dy.shape):
        at = int(idx[b, i, j, ch])
        dx[b, at // w, at % w, ch] += dy[b, i, j, ch]
    return dx


def avg_backward_ref(dy, x_shape, pool, strides, padding):
    _, h, w, _ = x_shape
    (ph, pw), (sh, sw) = pool, strides
    _, _, pt, pl = geometry(h, w, ph, pw, sh, sw, padding)
    dx = np.zeros(x_shape, np.float64)
    for b, i, j, ch in np.ndindex(*dy.shape):
        cells = [(hh, ww) for hh in range(i * sh - pt, i * sh - pt + ph)
                 for ww in range(j * sw - pl, j * sw - pl + pw) if 0 <= hh < h and 0 <= ww < w]
        for hh, ww in cells:
            dx[b, hh, ww, ch] += dy[b, i, j, ch] / len(cells)
    return dx.astype(dy.dtype)


def widths(*ws):
    """Channel counts to test: under the simulator (Python per GPU thread) the narrow
    ones only, at collection time, so nothing is collected and then skipped."""
    return [c for c in ws if c <= 3] if simulated() else list(ws)


def geometry_cases(small):
    if small:  # the simulator: one tiny case per path
        return [(pool, s, pad, (1,) + hw[1:]) for pool, s, pad, hw in GEOMETRIES[:3]]
    return GEOMETRIES


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", widths(*WIDTHS))
def test_pool_channel_widths(be, small, dtype, c):
    for pool, strides, padding, nhw in geometry_cases(small):
        x = distinct(nhw + (c,), dtype, seed=c)
        s = strides or pool
        check_max(be, x, pool, strides, padding)
        check_op(be, lambda be, x: run_avg(be, x, pool, strides, padding), [x],
                 lambda x: pool_ref(x, pool, s, padding, "avg")[0], k=pool[0] * pool[1])


@pytest.mark.parametrize("c", widths(1, 3, 17))
def test_max_pool_ties_and_negative_values_pick_first_valid_cell(be, small, c):
    # Values from {-2, -1, 0} leave many ties in every window; all-negative windows at the
    # "same" border show that padded cells never win (a padded 0 would).
    rng = np.random.default_rng(c)
    for pool, strides, padding, nhw in geometry_cases(small):
        for x in (rng.integers(-2, 1, nhw + (c,)).astype(np.float32),
                  np.full(nhw + (c,), -1.0, np.float32)):
            check_max(be, x, pool, strides, padding)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", widths(1, 3, 17, 33))
def test_pool_backward_against_loops(be, small, dtype, c):
    for pool, strides, padding, nhw in geometry_cases(small):
        x = distinct(nhw + (c,), dtype, seed=c + 1)
        s = strides or pool
        y, idx = be.max_pool2d(be.asarray(x), pool_size=pool, strides=strides, padding=padding)
        dy = randn(be.to_numpy(y).shape, dtype, seed=c)
        got = be.to_numpy(be.max_pool2d_backward(be.asarray(dy), idx, x.shape))
        # The reference scatters through the reference's own argmax cells, not the op's
        # indices: a wrong index from max_pool2d fails here too.
        want_idx = pool_ref(x, pool, s, padding, "max")[1]
        np.testing.assert_allclose(got, max_backward_ref(dy, want_idx, x.shape),
                                   rtol=1e-6 if dtype == np.float32 else 1e-13)
        got = be.to_numpy(be.avg_pool2d_backward(be.asarray(dy), x.shape, pool_size=pool,
                                                 strides=strides, padding=padding))
        np.testing.assert_allclose(got, avg_backward_ref(dy, x.shape, pool, s, padding),
                                   rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


# --------------------------------------------------------------------------- argument rules (kernels/ops/pool.py)

def test_pool_shapes():
    (ph, pw), (sh, sw), geo = family.pool_shapes("max_pool2d", (1, 7, 7, 1), 2, None, "valid")
    assert (ph, pw, sh, sw) == (2, 2, 2, 2) and geo[:2] == (3, 3)
    _, _, geo = family.pool_shapes("max_pool2d", (1, 7, 7, 1), 3, 2, "same")
    assert geo[:4] == (math.ceil(7 / 2), math.ceil(7 / 2), 1, 1)
    with pytest.raises(ValueError, match="max_pool2d: padding must be 'valid' or 'same'"):
        family.pool_shapes("max_pool2d", (1, 7, 7, 1), 2, None, 1)


def test_check_x_shape():
    assert family.check_x_shape("op", [1, 2, 3, 4]) == (1, 2, 3, 4)
    for bad in [(1, 2, 3), (0, 2, 2, 1), 5]:
        with pytest.raises(ValueError, match="op: x_shape"):
            family.check_x_shape("op", bad)


# --------------------------------------------------------------------------- global max pooling

def global_max_ref(x):
    """Loops: the first maximum over the steps per (sample, channel), or the first NaN."""
    n, steps, c = x.shape
    y = np.empty((n, c), x.dtype)
    at = np.empty((n, c), np.int32)
    for b in range(n):
        for ch in range(c):
            best, k = x[b, 0, ch], 0
            for t in range(1, steps):
                v = x[b, t, ch]
                if (v > best) or (np.isnan(v) and not np.isnan(best)):
                    best, k = v, t
            y[b, ch], at[b, ch] = best, k
    return y, at


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 7, 3), (1, 1, 5), (3, 12, 17)])
def test_global_max_pool(be, small, shape, dtype):
    if small:
        shape = (shape[0], min(shape[1], 4), min(shape[2], 3))
    x = randn(shape, dtype, 1)
    x[0, -1, 0] = x[0, 0, 0]                 # a tie: the first step wins
    if shape[1] > 2:
        x[-1, 1, -1] = np.nan                # a NaN wins over numbers
        x[-1, 2, -1] = np.nan                # ... and the first NaN over later ones
    y, at = be.global_max_pool(be.asarray(x))
    want_y, want_at = global_max_ref(x)
    np.testing.assert_array_equal(be.to_numpy(y), want_y)
    np.testing.assert_array_equal(be.to_numpy(at), want_at)
    dy = randn((shape[0], shape[2]), dtype, 2)
    dx = be.to_numpy(be.global_max_pool_backward(be.asarray(dy), at, shape))
    want_dx = np.zeros(shape, dtype)
    for b in range(shape[0]):
        for ch in range(shape[2]):
            want_dx[b, want_at[b, ch], ch] = dy[b, ch]
    np.testing.assert_array_equal(dx, want_dx)


def test_global_max_pool_finite_differences(be, small):
    x = randn((2, 4 if small else 9, 3), np.float64, 3)
    r = randn((2, 3), np.float64, 4)

    def loss(be, x):
        return float(np.sum(be.to_numpy(be.global_max_pool(x)[0]) * r))

    def backward(be, x):
        _, at = be.global_max_pool(x)
        return (be.global_max_pool_backward(be.asarray(r), at, tuple(x.shape)),)

    check_grad(be, loss, backward, [x], wrt=[0], samples=12)


def test_global_max_pool_bad_input(be):
    with pytest.raises(ValueError, match=r"global_max_pool: x must be 3-D \(N, steps, C\), got 4-D"):
        be.global_max_pool(be.asarray(np.zeros((1, 4, 4, 1), np.float32)))
    with pytest.raises(TypeError, match=r"global_max_pool: x must be float32 or float64, got int32"):
        be.global_max_pool(be.asarray(np.zeros((1, 4, 1), np.int32)))
    with pytest.raises(ValueError, match=r"global_max_pool: x"):
        be.global_max_pool(be.asarray(np.zeros((1, 0, 1), np.float32)))
    dy = be.asarray(np.ones((2, 3), np.float32))
    idx = be.asarray(np.array([[0, 1, 2], [3, 4, 5]], np.int32))
    with pytest.raises(ValueError, match=r"global_max_pool_backward: .*indices.*5"):
        be.global_max_pool_backward(dy, idx, (2, 5, 3))
    with pytest.raises(ValueError, match=r"global_max_pool_backward: x_shape must be 3 positive ints"):
        be.global_max_pool_backward(dy, idx, (2, 6, 3, 1))
    with pytest.raises(ValueError, match=r"global_max_pool_backward: dy must have shape \(2, 4\)"):
        be.global_max_pool_backward(dy, idx, (2, 6, 4))
    with pytest.raises(TypeError, match=r"global_max_pool_backward: indices must be the int32 array"):
        be.global_max_pool_backward(dy, be.asarray(np.zeros((2, 3), np.int64)), (2, 6, 3))


# --------------------------------------------------------------------------- upsampling

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,size", [((2, 3, 4, 3), (2, 2)), ((1, 2, 3, 5), (3, 1)), ((2, 1, 1, 9), 4)])
def test_upsample2d(be, small, shape, size, dtype):
    if small:
        shape = shape[:3] + (min(shape[3], 2),)
    sh, sw = (size, size) if isinstance(size, int) else size
    x = randn(shape, dtype, 1)
    y = be.to_numpy(be.upsample2d(be.asarray(x), size=size))
    n, h, w, c = shape
    want = np.empty((n, h * sh, w * sw, c), dtype)
    for i in range(h * sh):
        for j in range(w * sw):
            want[:, i, j] = x[:, i // sh, j // sw]
    np.testing.assert_array_equal(y, want)
    dy = randn(want.shape, dtype, 2)
    dx = be.to_numpy(be.upsample2d_backward(be.asarray(dy), size=size))
    want_dx = np.zeros(shape, np.float64)
    for i in range(h * sh):
        for j in range(w * sw):
            want_dx[:, i // sh, j // sw] += dy[:, i, j]
    assert_close(dx, want_dx, dtype, k=sh * sw)


def test_upsample2d_finite_differences(be):
    x = randn((1, 2, 3, 2), np.float64, 3)
    r = randn((1, 4, 9, 2), np.float64, 4)

    def loss(be, x):
        return float(np.sum(be.to_numpy(be.upsample2d(x, size=(2, 3))) * r))

    def backward(be, x):
        return (be.upsample2d_backward(be.asarray(r), size=(2, 3)),)

    check_grad(be, loss, backward, [x], wrt=[0], samples=12)


def test_upsample2d_bad_input(be):
    x = be.asarray(np.zeros((1, 2, 2, 1), np.float32))
    with pytest.raises(ValueError, match=r"upsample2d: size must hold positive ints, got \(0, 2\)"):
        be.upsample2d(x, size=(0, 2))
    with pytest.raises(ValueError, match=r"upsample2d: x must be 4-D NHWC, got 3-D"):
        be.upsample2d(be.asarray(np.zeros((2, 2, 1), np.float32)))
    with pytest.raises(ValueError, match=r"upsample2d: size=\(1073741824, 1073741824\) makes an output"):
        be.upsample2d(be.asarray(np.zeros((1, 2, 2, 1024), np.float32)), size=2 ** 30)
    with pytest.raises(ValueError, match=r"upsample2d_backward: dy.shape=\(1, 3, 4, 1\) is not an upsample2d output"):
        be.upsample2d_backward(be.asarray(np.zeros((1, 3, 4, 1), np.float32)))


def test_global_max_pool_and_upsample2d_costs():
    """A compare per element read (global max), an add per dy element (upsampling
    backward); bytes: each array once, int32 indices 4 bytes each."""
    from numbanet.kernels import ops
    x = np.ones((2, 5, 3), np.float64)
    assert ops.get("global_max_pool").cost(x) == (30, 8 * (30 + 6) + 4 * 6)
    assert ops.get("global_max_pool_backward").cost(np.ones((2, 3)), np.zeros((2, 3), np.int32), (2, 5, 3)) == \
        (0, 8 * (6 + 30) + 4 * 6)
    img = np.ones((2, 3, 4, 5), np.float32)
    assert ops.get("upsample2d").cost(img, size=(2, 3)) == (0, 4 * (120 + 720))
    dy = np.ones((2, 6, 12, 5), np.float32)
    assert ops.get("upsample2d_backward").cost(dy, size=(2, 3)) == (720, 4 * (720 + 120))
