"""conv2d and conv2d_backward against a NumPy reference on padded arrays and finite differences."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import simulated
from conv_references import dilated_geometry, dilated_ref, geometry, transpose_ref
from helpers import assert_close, check_grad, check_op, randn
from numbanet.kernels.ops import conv as family

HYPOTHESIS = settings(max_examples=4 if simulated() else 20, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


# --------------------------------------------------------------------------- reference

def windows(x, kh, kw, strides, padding):
    """Zero-pad x, return padded x and the (oh, ow, pt, pl) of the output."""
    n, h, w, c = x.shape
    oh, ow, pt, pl, pb, pr = geometry(h, w, kh, kw, strides, padding)
    xp = np.zeros((n, h + pt + pb, w + pl + pr, c))
    xp[:, pt:pt + h, pl:pl + w] = x
    return xp, oh, ow


def conv_ref(x, w, bias=None, *, strides=(1, 1), padding="valid"):
    kh, kw = w.shape[:2]
    sh, sw = strides
    xp, oh, ow = windows(x.astype(np.float64), kh, kw, strides, padding)
    y = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            y += np.einsum("nhwc,co->nhwo", patch, w[i, j].astype(np.float64))
    if bias is not None:
        y += bias.astype(np.float64)
    return y.astype(x.dtype)


def conv_backward_ref(x, w, dy, *, strides=(1, 1), padding="valid"):
    kh, kw = w.shape[:2]
    sh, sw = strides
    n, h, wd, c = x.shape
    xp, oh, ow = windows(x.astype(np.float64), kh, kw, strides, padding)
    _, _, pt, pl, _, _ = geometry(h, wd, kh, kw, strides, padding)
    dy64 = dy.astype(np.float64)
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + sh * (oh - 1) + 1, sh)
            cols = slice(j, j + sw * (ow - 1) + 1, sw)
            dw[i, j] = np.einsum("nhwc,nhwo->co", xp[:, rows, cols], dy64)
            dxp[:, rows, cols] += np.einsum("nhwo,co->nhwc", dy64, w[i, j].astype(np.float64))
    dx = dxp[:, pt:pt + h, pl:pl + wd]
    db = dy64.sum(axis=(0, 1, 2))
    return dx.astype(x.dtype), dw.astype(x.dtype), db.astype(x.dtype)


def conv_op(be, x, w, bias=None, *, strides=(1, 1), padding="valid"):
    return be.conv2d(x, w, bias, strides=strides, padding=padding)


def conv_backward_op(be, x, w, dy, *, strides=(1, 1), padding="valid"):
    return be.conv2d_backward(x, w, dy, strides=strides, padding=padding)


def out_shape(x_shape, w_shape, strides, padding):
    oh, ow, *_ = geometry(x_shape[1], x_shape[2], w_shape[0], w_shape[1], strides, padding)
    return (x_shape[0], oh, ow, w_shape[3])


def run_both(be, x_shape, w_shape, strides, padding, dtype, with_bias=True, seed=0):
    """Forward and backward against the references; k = the longest sum an output holds."""
    x = randn(x_shape, dtype, seed)
    w = randn(w_shape, dtype, seed + 1)
    bias = randn((w_shape[3],), dtype, seed + 2) if with_bias else None
    kw = {"strides": strides, "padding": padding}
    k_fwd = w_shape[0] * w_shape[1] * w_shape[2]
    check_op(be, conv_op, [x, w, bias], conv_ref, kwargs=kw, k=k_fwd)
    dy = randn(out_shape(x_shape, w_shape, strides, padding), dtype, seed + 3)
    k_bwd = x_shape[0] * dy.shape[1] * dy.shape[2] + w_shape[0] * w_shape[1] * w_shape[3]
    check_op(be, conv_backward_op, [x, w, dy], conv_backward_ref, kwargs=kw, k=k_bwd)


# --------------------------------------------------------------------------- fixed cases

CASES = [
    # x shape, w shape, strides, padding
    ((2, 7, 9, 3), (3, 3, 3, 5), (1, 1), "valid"),
    ((1, 8, 7, 1), (5, 5, 1, 4), (2, 2), "same"),        # batch 1, odd total padding
    ((3, 6, 5, 32), (1, 1, 32, 8), (1, 1), "same"),      # 1x1, 32 channels
    ((2, 9, 8, 3), (7, 7, 3, 3), (2, 1), (2, 3)),        # 7x7, explicit asymmetric pair
    ((1, 5, 5, 2), (2, 4, 2, 3), (1, 2), 1),             # even kernel, explicit int
    ((2, 4, 4, 3), (4, 4, 3, 2), (3, 3), "same"),        # stride 3, window near the border
    ((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), "valid"),
    ((2, 9, 9, 7), (3, 3, 7, 33), (1, 1), "same"),       # C_out and KH*KW*C_in off the 8x16 tile
]


def _simulator_sized(x_shape, w_shape):
    """A case cut down for the CUDA simulator (Python per GPU thread): batch 1, at most
    4x4 images, 3 input and 2 output channels, 3x3 windows."""
    x_shape = (1, min(x_shape[1], 4), min(x_shape[2], 4), min(x_shape[3], 3))
    w_shape = (min(w_shape[0], 3), min(w_shape[1], 3), x_shape[3], min(w_shape[3], 2))
    return x_shape, w_shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,w_shape,strides,padding", CASES)
def test_conv2d_fixed(be, small, x_shape, w_shape, strides, padding, dtype):
    if small:
        x_shape, w_shape = _simulator_sized(x_shape, w_shape)
    run_both(be, x_shape, w_shape, strides, padding, dtype)


# The cpu backend computes y and dW by register tiles from a padded image, on the 16-wide
# strip tile when KH*KW*C_in <= 64 (kernels/cpu/conv.py DIRECT_KDIM) and on the short
# tile (kernels/cpu/tuning.short_tile) above: these straddle that boundary and cover the tiles' edges (C_out off NR,
# output pixel counts off MR, 1 and 3 input channels, strides, padding, batch 1).
DIRECT_EDGE_CASES = [
    ((2, 9, 8, 1), (3, 3, 1, 1), (1, 1), "valid"),       # C_out 1, 42 pixels
    ((1, 10, 9, 3), (3, 3, 3, 5), (2, 2), "same"),       # batch 1, stride 2, C_out 5
    ((2, 8, 8, 1), (3, 3, 1, 17), (1, 1), "same"),       # C_out 17: one full panel + 1
    ((3, 7, 6, 3), (3, 3, 3, 33), (1, 2), (1, 2)),       # C_out 33, explicit padding
    ((2, 6, 6, 1), (7, 7, 1, 32), (1, 1), "same"),       # 7x7, window wider than the image
    ((2, 6, 7, 7), (3, 3, 7, 20), (1, 1), "valid"),      # depth 63: strip tile
    ((2, 6, 6, 4), (4, 4, 4, 16), (1, 1), "same"),       # depth 64: the last on the strip tile
    ((2, 5, 6, 65), (1, 1, 65, 16), (1, 1), "valid"),    # depth 65: the convolution's tile
    ((2, 6, 7, 8), (3, 3, 8, 20), (2, 1), "same"),       # depth 72: the convolution's tile
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,w_shape,strides,padding", DIRECT_EDGE_CASES)
def test_conv2d_direct_path_edges(be, small, x_shape, w_shape, strides, padding, dtype):
    if small:
        x_shape, w_shape = _simulator_sized(x_shape, w_shape)
    run_both(be, x_shape, w_shape, strides, padding, dtype, with_bias=w_shape[3] % 2 == 1)


def test_conv2d_direct_boundary_is_64():
    """The cases above straddle the cpu backend's switch only while it sits at 64."""
    from numbanet.kernels.cpu.conv import DIRECT_KDIM
    assert DIRECT_KDIM == 64


def test_conv2d_direct_dw_without_dx(be, small):
    """compute_dx=False (a first layer) on the strip tile's dW path, C_out off the tile width."""
    x_shape, w_shape = ((3, 9, 10, 1), (3, 3, 1, 21)) if not small else ((1, 4, 4, 1), (3, 3, 1, 2))
    x, w = randn(x_shape, np.float64, 8), randn(w_shape, np.float64, 9)
    dy = randn(out_shape(x_shape, w_shape, (2, 1), "same"), np.float64, 10)
    dx, dw, db = be.conv2d_backward(*[be.asarray(a) for a in (x, w, dy)], strides=(2, 1), padding="same",
                                    compute_dx=False)
    assert dx is None
    _, dw_ref, db_ref = conv_backward_ref(x, w, dy, strides=(2, 1), padding="same")
    np.testing.assert_allclose(be.to_numpy(dw), dw_ref, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(be.to_numpy(db), db_ref, rtol=1e-10, atol=1e-9)

def test_conv2d_without_bias_and_dx_skipped(be, small):
    x_shape, w_shape = ((2, 6, 6, 3), (3, 3, 3, 4)) if not small else ((1, 4, 4, 2), (3, 3, 2, 2))
    x, w = randn(x_shape, np.float64, 5), randn(w_shape, np.float64, 6)
    check_op(be, conv_op, [x, w], conv_ref, kwargs={"padding": "same"}, k=w.size)
    dy = randn(out_shape(x_shape, w_shape, (1, 1), "same"), np.float64, 7)
    dx, dw, db = be.conv2d_backward(*[be.asarray(a) for a in (x, w, dy)], padding="same", compute_dx=False)
    assert dx is None
    _, dw_ref, db_ref = conv_backward_ref(x, w, dy, padding="same")
    np.testing.assert_allclose(be.to_numpy(dw), dw_ref, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(be.to_numpy(db), db_ref, rtol=1e-10, atol=1e-9)


def test_conv2d_article_layer_shapes(be, small):
    """The second conv of the article's CNN, at a reduced batch (the tiles the fast path uses)."""
    if small:
        run_both(be, (1, 5, 5, 4), (3, 3, 4, 3), (1, 1), "valid", np.float32)
    else:
        run_both(be, (5, 13, 13, 32), (3, 3, 32, 64), (1, 1), "valid", np.float32)
        run_both(be, (5, 28, 28, 1), (3, 3, 1, 32), (1, 1), "valid", np.float32)


@HYPOTHESIS
@given(n=st.integers(1, 3), h=st.integers(1, 11), w=st.integers(1, 11), c_in=st.sampled_from([1, 2, 3, 5]),
       c_out=st.integers(1, 6), kh=st.integers(1, 7), kw=st.integers(1, 7), sh=st.integers(1, 3),
       sw=st.integers(1, 3), padding=st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, 3)),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_conv2d_hypothesis(be, small, n, h, w, c_in, c_out, kh, kw, sh, sw, padding, dtype):
    if small:
        n, h, w, c_in, c_out, kh, kw = 1, min(h, 4), min(w, 4), min(c_in, 2), min(c_out, 2), min(kh, 3), min(kw, 3)
    oh, ow, *_ = geometry(h, w, kh, kw, (sh, sw), padding)
    if oh < 1 or ow < 1:
        with pytest.raises(ValueError, match=r"conv2d: window .* does not fit"):
            be.conv2d(be.asarray(randn((n, h, w, c_in), dtype)), be.asarray(randn((kh, kw, c_in, c_out), dtype)),
                      strides=(sh, sw), padding=padding)
        return
    run_both(be, (n, h, w, c_in), (kh, kw, c_in, c_out), (sh, sw), padding, dtype, seed=h * 13 + w)


def test_conv2d_backward_is_deterministic(be, small):
    """Partial sums per fixed batch chunk, reduced in order: repeated runs agree bit for bit."""
    x_shape, w_shape = ((9, 8, 8, 5), (3, 3, 5, 7)) if not small else ((2, 4, 4, 2), (3, 3, 2, 2))
    x, w = be.asarray(randn(x_shape, np.float32, 31)), be.asarray(randn(w_shape, np.float32, 32))
    dy = be.asarray(randn(out_shape(x_shape, w_shape, (1, 1), "same"), np.float32, 33))
    first = [be.to_numpy(g) for g in be.conv2d_backward(x, w, dy, padding="same")]
    for _ in range(3):
        again = be.conv2d_backward(x, w, dy, padding="same")
        for g, f in zip(again, first):
            np.testing.assert_array_equal(be.to_numpy(g), f)


# --------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("x_shape,w_shape,strides,padding", [
    ((2, 6, 5, 3), (3, 3, 3, 4), (1, 1), "same"),
    ((1, 7, 7, 2), (5, 5, 2, 3), (2, 2), "same"),
    ((2, 5, 6, 1), (1, 1, 1, 2), (2, 1), (1, 2)),
])
def test_conv2d_backward_finite_differences(be, small, x_shape, w_shape, strides, padding):
    if small:
        x_shape, w_shape = (1, 4, 4, 2), (3, 3, 2, 2)
    x = randn(x_shape, np.float64, 1)
    w = randn(w_shape, np.float64, 2)
    b = randn((w_shape[3],), np.float64, 3)
    r = randn(out_shape(x_shape, w_shape, strides, padding), np.float64, 4)
    kw = {"strides": strides, "padding": padding}

    def loss(be, x, w, b):
        return float(np.sum(be.to_numpy(be.conv2d(x, w, b, **kw)) * r))

    def backward(be, x, w, b):
        dx, dw, db = be.conv2d_backward(x, w, be.asarray(r), **kw)
        return dx, dw, db

    check_grad(be, loss, backward, [x, w, b], wrt=[0, 1, 2], samples=8 if small else 24)


# --------------------------------------------------------------------------- bad input

def up(be, *arrays):
    return [be.asarray(a) for a in arrays]


def test_conv2d_rejects_bad_input(be):
    x, w = up(be, np.ones((2, 5, 5, 3), np.float32), np.ones((3, 3, 1, 4), np.float32))
    with pytest.raises(ValueError, match=r"conv2d: x has 3 channels but w expects 1"):
        be.conv2d(x, w)
    x3, w = up(be, np.ones((5, 5, 3), np.float32), np.ones((3, 3, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"conv2d: x must be 4-D NHWC, got 3-D"):
        be.conv2d(x3, w)
    x, w3 = up(be, np.ones((1, 5, 5, 3), np.float32), np.ones((3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"conv2d: w must be 4-D"):
        be.conv2d(x, w3)
    x0, w = up(be, np.ones((0, 5, 5, 3), np.float32), np.ones((3, 3, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"conv2d: x is empty"):
        be.conv2d(x0, w)
    x, w = up(be, np.ones((1, 5, 5, 3), np.float32), np.ones((3, 3, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"conv2d: padding must be"):
        be.conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match=r"conv2d: strides must hold positive ints"):
        be.conv2d(x, w, strides=(0, 1))
    b_bad = be.asarray(np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(4,\)"):
        be.conv2d(x, w, b_bad)


@pytest.mark.parametrize("dtype", [np.int32, np.float16])
def test_conv2d_rejects_non_float(be, dtype):
    x, w = up(be, np.ones((1, 5, 5, 3), dtype), np.ones((3, 3, 3, 4), dtype))
    with pytest.raises(TypeError, match=r"conv2d: x must be float32 or float64, got"):
        be.conv2d(x, w)
    with pytest.raises(TypeError, match=r"conv2d_backward: x must be float32 or float64"):
        be.conv2d_backward(x, w, x)


def test_conv2d_rejects_mixed_dtypes(be):
    x, w = up(be, np.ones((1, 5, 5, 3), np.float32), np.ones((3, 3, 3, 4), np.float64))
    with pytest.raises(TypeError, match=r"conv2d: w is float64 but x is float32"):
        be.conv2d(x, w)


def test_conv2d_backward_rejects_bad_dy(be):
    x, w = up(be, np.ones((2, 5, 5, 3), np.float32), np.ones((3, 3, 3, 4), np.float32))
    dy = be.asarray(np.ones((2, 3, 3, 5), np.float32))
    with pytest.raises(ValueError, match=r"conv2d_backward: dy must have shape \(2, 3, 3, 4\), got \(2, 3, 3, 5\)"):
        be.conv2d_backward(x, w, dy)
    dy64 = be.asarray(np.ones((2, 3, 3, 4), np.float64))
    with pytest.raises(TypeError, match=r"conv2d_backward: dy is float64 but x is float32"):
        be.conv2d_backward(x, w, dy64)
    x_bad = be.asarray(np.ones((2, 5, 5, 2), np.float32))
    with pytest.raises(ValueError, match=r"conv2d_backward: x has 2 channels but w expects 3"):
        be.conv2d_backward(x_bad, w, be.asarray(np.ones((2, 3, 3, 4), np.float32)))


# --------------------------------------------------------------------------- fused activation, padding

ACTIVATION_REFS = {
    "linear": lambda z: z,
    "relu": lambda z: np.where(z > 0, z, 0.0),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
    "leaky_relu": lambda z: np.where(z >= 0, z, 0.2 * z),
}


@pytest.mark.parametrize("activation", list(ACTIVATION_REFS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_fused_activation(be, small, activation, dtype):
    """conv2d(..., activation=a) is a(conv2d + bias), applied as the output is written."""
    x = randn((2, 5, 4, 3) if small else (3, 9, 8, 5), dtype, seed=31)
    w = randn((3, 3, x.shape[3], 4), dtype, seed=32)
    b = randn((4,), dtype, seed=33)

    def ref(x, w, b, **kw):
        z = conv_ref(x, w, b, padding="same").astype(np.float64)
        return ACTIVATION_REFS[activation](z).astype(dtype)

    check_op(be, lambda be, x, w, b: be.conv2d(x, w, b, padding="same", activation=activation), [x, w, b], ref,
             k=9 * x.shape[3])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "leaky_relu"])
@pytest.mark.parametrize("w_shape", [(3, 3, 2, 5), (3, 3, 9, 17)])   # the cpu's strip tile and conv tile
def test_conv2d_fused_activation_as_the_separate_op(be, small, activation, w_shape):
    """conv2d(activation=a) is a(conv2d(...)) (leaky_relu: be.leaky_relu at its default
    slope 0.2), relu(NaN) = NaN included: bit for bit for the relus, and on the cpu (the
    same rules either way); the gpu's tile epilogue may round sigmoid and tanh 1 ulp apart
    from their own kernels."""
    if small:
        w_shape = (3, 3, 2, 2)
    x = randn((2, 6, 5, w_shape[2]) if not small else (1, 4, 4, 2), np.float32, 81, scale=2.0)
    x[0, 1, 1, 0] = np.nan
    x[-1, 3, 2, 1] = -np.inf
    w, b = randn(w_shape, np.float32, 82), randn((w_shape[3],), np.float32, 83)
    x_, w_, b_ = be.asarray(x), be.asarray(w), be.asarray(b)
    fused = be.to_numpy(be.conv2d(x_, w_, b_, padding="same", activation=activation))
    apart = be.to_numpy(getattr(be, activation)(be.conv2d(x_, w_, b_, padding="same")))
    if activation in ("relu", "leaky_relu") or be.name == "cpu":
        np.testing.assert_array_equal(fused, apart)
    else:
        np.testing.assert_allclose(fused, apart, rtol=1e-6, atol=0)   # NaN where apart has NaN
    assert np.isnan(fused).any() and np.isfinite(fused).any()


def test_conv2d_rejects_unknown_activation(be):
    x, w = be.asarray(np.ones((1, 3, 3, 1), np.float32)), be.asarray(np.ones((2, 2, 1, 1), np.float32))
    with pytest.raises(ValueError, match=r"conv2d: activation must be None or one of linear, relu, sigmoid, "
                                         r"tanh, leaky_relu, got 'softmax'"):
        be.conv2d(x, w, activation="softmax")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_conv2d_padding_is_an_exact_zero(be, small):
    """Padded border cells add exact zeros: an inf or NaN in x reaches only the outputs
    whose windows hold it (a border computed as x * 0 would be NaN everywhere)."""
    x = randn((1, 4, 5, 2), np.float32, seed=41)
    x[0, 0, 0, 0] = np.inf
    x[0, 3, 4, 1] = np.nan
    w = randn((3, 3, 2, 2), np.float32, seed=42)
    y = be.to_numpy(be.conv2d(be.asarray(x), be.asarray(w), padding="same"))
    clean = x.copy()
    clean[0, 0, 0, 0] = clean[0, 3, 4, 1] = 0.0
    want = conv_ref(clean, w, padding="same")
    touched = np.zeros(y.shape[:3], bool)
    touched[0, 0:2, 0:2] = True   # windows holding x[0, 0, 0]
    touched[0, 2:4, 3:5] = True   # windows holding x[0, 3, 4]
    assert not np.isfinite(y[touched]).all(), "conv2d: the inf/NaN inputs vanished from their windows"
    np.testing.assert_allclose(y[~touched], want[~touched], rtol=1e-4, atol=1e-4)
    dy = randn(y.shape, np.float32, seed=43)
    dx, dw, _ = be.conv2d_backward(be.asarray(clean), be.asarray(w), be.asarray(dy), padding="same")
    assert np.isfinite(be.to_numpy(dx)).all() and np.isfinite(be.to_numpy(dw)).all()


# --------------------------------------------------------------------------- backward through the activation

# dz = dy * act'(y), y the activation's output. relu's gradient is zeroed only where
# y <= 0, so a NaN y passes dy (NaN fails the comparison), as in PyTorch.
ACTIVATION_GRAD_REFS = {
    "relu": lambda y, dy: np.where(y <= 0, 0.0, dy),
    "sigmoid": lambda y, dy: dy * y * (1.0 - y),
    "tanh": lambda y, dy: dy * (1.0 - y * y),
    "leaky_relu": lambda y, dy: np.where(y > 0, dy, 0.2 * dy),
}

# Both cpu tiles (the strip tile up to depth 64, the conv tile above), with and
# without dx, padding, strides, sizes off the tiles.
FUSED_GRAD_CASES = [
    # x shape, w shape, strides, padding, compute_dx
    ((2, 9, 8, 1), (3, 3, 1, 17), (1, 1), "valid", False),   # strip tile, a first layer (no dx)
    ((3, 7, 6, 3), (3, 3, 3, 5), (2, 1), "same", True),      # strip tile, stride 2 rows, odd sizes
    ((2, 6, 7, 8), (3, 3, 8, 20), (1, 2), "same", True),     # the conv tile (depth 72)
    ((2, 5, 5, 65), (1, 1, 65, 3), (1, 1), "valid", False),  # the conv tile, no dx
]


def activated(x, w, b, activation, strides, padding):
    z = conv_ref(x, w, b, strides=strides, padding=padding).astype(np.float64)
    return ACTIVATION_REFS[activation](z).astype(x.dtype)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "leaky_relu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,w_shape,strides,padding,compute_dx", FUSED_GRAD_CASES)
def test_conv2d_backward_through_activation(be, small, x_shape, w_shape, strides, padding, compute_dx,
                                            activation, dtype):
    """conv2d_backward(dy, activation=a, y=y) is conv2d_backward(dy * a'(y)): the gradient
    through the activation, formed in NumPy here."""
    if small:
        x_shape, w_shape = _simulator_sized(x_shape, w_shape)
    x, w, b = randn(x_shape, dtype, 51), randn(w_shape, dtype, 52), randn((w_shape[3],), dtype, 53)
    y = activated(x, w, b, activation, strides, padding)
    if activation in ("relu", "leaky_relu"):
        assert (y <= 0).any() and (y > 0).any(), "the case must hold both sides of the kink"
    dy = randn(y.shape, dtype, 54)
    kw = {"strides": strides, "padding": padding}

    def op(be, x, w, dy, y, **kw):
        return be.conv2d_backward(x, w, dy, compute_dx=compute_dx, activation=activation, y=y, **kw)

    def ref(x, w, dy, y, **kw):
        dz = ACTIVATION_GRAD_REFS[activation](y.astype(np.float64), dy.astype(np.float64))
        dx, dw, db = conv_backward_ref(x, w, dz, **kw)
        return (dx if compute_dx else None), dw, db

    got = check_op(be, op, [x, w, dy, y], ref, kwargs=kw,
                   k=x_shape[0] * y.shape[1] * y.shape[2] + w_shape[0] * w_shape[1] * w_shape[3])
    if not compute_dx:
        assert got[0] is None


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "leaky_relu"])
@pytest.mark.parametrize("x_shape,w_shape,strides,padding", [
    ((2, 6, 5, 2), (3, 3, 2, 4), (2, 1), "same"),     # the strip tile on the cpu
    ((1, 5, 6, 9), (3, 3, 9, 3), (1, 1), "valid"),    # the conv tile (depth 81)
])
def test_conv2d_backward_through_activation_finite_differences(be, small, x_shape, w_shape, strides, padding,
                                                               activation):
    """The gradient of sum(act(conv2d(x, w, b)) * r), from conv2d_backward's fused
    activation, against float64 central differences of the fused forward."""
    if small:
        x_shape, w_shape = (1, 4, 4, 2), (3, 3, 2, 2)
    x, w, b = randn(x_shape, np.float64, 61), randn(w_shape, np.float64, 62), randn((w_shape[3],), np.float64, 63)
    r = randn(out_shape(x_shape, w_shape, strides, padding), np.float64, 64)
    kw = {"strides": strides, "padding": padding}
    z = conv_ref(x, w, b, **kw)
    if activation in ("relu", "leaky_relu"):
        # No pre-activation within the differences' reach of the kink.
        assert np.abs(z).min() > 1e-4

    def loss(be, x, w, b):
        return float(np.sum(be.to_numpy(be.conv2d(x, w, b, activation=activation, **kw)) * r))

    def backward(be, x, w, b):
        y = be.conv2d(x, w, b, activation=activation, **kw)
        return be.conv2d_backward(x, w, be.asarray(r), activation=activation, y=y, **kw)

    check_grad(be, loss, backward, [x, w, b], wrt=[0, 1, 2], samples=8 if small else 24)


def _separate_and_fused(be, x, w, dy, y, padding, compute_dx=True):
    x, w, dy, y = (be.asarray(a) for a in (x, w, dy, y))
    fused = be.conv2d_backward(x, w, dy, padding=padding, compute_dx=compute_dx, activation="relu", y=y)
    apart = be.conv2d_backward(x, w, be.relu_backward(y, dy), padding=padding, compute_dx=compute_dx)
    return [None if g is None else be.to_numpy(g) for g in fused], \
           [None if g is None else be.to_numpy(g) for g in apart]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("w_shape", [(3, 3, 2, 5), (3, 3, 9, 5)])   # the cpu's strip tile and conv tile
def test_conv2d_backward_through_relu_non_finite_as_the_separate_pass(be, small, w_shape):
    """The fused relu gradient follows relu_backward bit for bit, NaN and inf included:
    a NaN or inf in dy is dropped where y <= 0 and passed where y > 0 or y is NaN."""
    if small:
        w_shape = (3, 3, 2, 2)
    x_shape = (2, 5, 6, w_shape[2]) if not small else (1, 4, 4, 2)
    x, w = randn(x_shape, np.float32, 71), randn(w_shape, np.float32, 72)
    y = activated(x, w, None, "relu", (1, 1), "same")
    zero_at, pos_at = np.argwhere(y == 0)[0], np.argwhere(y > 0)[0]

    # Non-finite dy only where y == 0: every gradient stays finite.
    dy = randn(y.shape, np.float32, 73)
    dy[tuple(zero_at)] = np.nan
    y_zero_only = y.copy()
    fused, apart = _separate_and_fused(be, x, w, dy, y_zero_only, "same")
    for f, a in zip(fused, apart):
        np.testing.assert_array_equal(f, a)
        assert np.isfinite(f).all(), "a NaN in dy where y == 0 leaked into a gradient"

    # inf in dy where y > 0 and a NaN y: both pass into the gradients, as apart.
    dy[tuple(pos_at)] = np.inf
    y[tuple(np.argwhere(y > 0)[-1])] = np.nan
    for compute_dx in (True, False):
        fused, apart = _separate_and_fused(be, x, w, dy, y, "same", compute_dx)
        for f, a in zip(fused, apart):
            if a is None:
                assert f is None
                continue
            np.testing.assert_array_equal(f, a)
        assert not np.isfinite(fused[1]).all(), "the inf / NaN that relu lets through vanished from dw"


def test_conv2d_backward_through_leaky_relu_as_the_separate_pass(be, small):
    """The fused leaky_relu gradient is leaky_relu_backward's bit for bit (its default
    slope, from the activated y: y has x's sign), then the plain backward."""
    x_shape, w_shape = ((2, 6, 5, 3), (3, 3, 3, 4)) if not small else ((1, 4, 4, 2), (3, 3, 2, 2))
    x, w = be.asarray(randn(x_shape, np.float32, 95)), be.asarray(randn(w_shape, np.float32, 96))
    y = be.conv2d(x, w, padding="same", activation="leaky_relu")
    dy = be.asarray(randn(tuple(y.shape), np.float32, 97))
    fused = be.conv2d_backward(x, w, dy, padding="same", activation="leaky_relu", y=y)
    apart = be.conv2d_backward(x, w, be.leaky_relu_backward(y, dy), padding="same")
    for f, a in zip(fused, apart):
        np.testing.assert_array_equal(be.to_numpy(f), be.to_numpy(a))


def test_conv2d_backward_through_activation_is_deterministic(be, small):
    x_shape, w_shape = ((9, 8, 8, 5), (3, 3, 5, 7)) if not small else ((2, 4, 4, 2), (3, 3, 2, 2))
    x, w = randn(x_shape, np.float32, 91), randn(w_shape, np.float32, 92)
    y = be.asarray(activated(x, w, None, "relu", (1, 1), "same"))
    x, w = be.asarray(x), be.asarray(w)
    dy = be.asarray(randn(tuple(y.shape), np.float32, 93))
    first = [be.to_numpy(g) for g in be.conv2d_backward(x, w, dy, padding="same", activation="relu", y=y)]
    for _ in range(3):
        again = be.conv2d_backward(x, w, dy, padding="same", activation="relu", y=y)
        for g, f in zip(again, first):
            np.testing.assert_array_equal(be.to_numpy(g), f)


def test_conv2d_backward_rejects_bad_activation_arguments(be):
    x, w = up(be, np.ones((2, 5, 5, 3), np.float32), np.ones((3, 3, 3, 4), np.float32))
    dy, y = up(be, np.ones((2, 3, 3, 4), np.float32), np.ones((2, 3, 3, 4), np.float32))
    with pytest.raises(TypeError, match=r"conv2d_backward: activation='relu' needs y, the activated forward "
                                        r"output .* got None"):
        be.conv2d_backward(x, w, dy, activation="relu")
    with pytest.raises(ValueError, match=r"conv2d_backward: y is only read to back-propagate through an "
                                         r"activation"):
        be.conv2d_backward(x, w, dy, y=y)
    with pytest.raises(ValueError, match=r"conv2d_backward: activation must be None or one of linear, relu, "
                                         r"sigmoid, tanh, leaky_relu, got 'softmax'"):
        be.conv2d_backward(x, w, dy, activation="softmax", y=y)
    y_bad = be.asarray(np.ones((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"conv2d_backward: y must have shape \(2, 3, 3, 4\), got \(2, 3, 4, 4\)"):
        be.conv2d_backward(x, w, dy, activation="relu", y=y_bad)
    y64 = be.asarray(np.ones((2, 3, 3, 4), np.float64))
    with pytest.raises(TypeError, match=r"conv2d_backward: y is float64 but dy is float32"):
        be.conv2d_backward(x, w, dy, activation="tanh", y=y64)
    y_int = be.asarray(np.ones((2, 3, 3, 4), np.int32))
    with pytest.raises(TypeError, match=r"conv2d_backward: y must be float32 or float64, got int32"):
        be.conv2d_backward(x, w, dy, activation="relu", y=y_int)
    grads = be.zeros((w.size + 4,), np.float32)
    with pytest.raises(ValueError, match=r"conv2d_backward: grads shares memory with y"):
        be.conv2d_backward(x, w, dy, activation="relu", y=be.reshape(grads[:72], (2, 3, 3, 4)), grads=grads)


# --------------------------------------------------------------------------- argument rules (kernels/ops/conv.py)

def test_conv2d_shapes_channel_mismatch_message():
    x = np.zeros((128, 28, 28, 3), np.float32)
    w = np.zeros((3, 3, 1, 32), np.float32)
    with pytest.raises(ValueError, match=r"conv2d: x has 3 channels but w expects 1 \(x.shape=\(128, 28, 28, 3\), "
                                         r"w.shape=\(3, 3, 1, 32\)\)"):
        family.conv2d_shapes("conv2d", x, w, (1, 1), "valid")


def test_check_activation_output():
    """y, the activated output an op back-propagates through: given exactly when there is
    an activation, and then of dy's shape and dtype."""
    dy = np.zeros((2, 3), np.float32)
    family.check_activation_output("op", "linear", None, dy)
    family.check_activation_output("op", "relu", np.ones((2, 3), np.float32), dy)
    with pytest.raises(ValueError, match=r"^op: y is only read to back-propagate through an activation"):
        family.check_activation_output("op", "linear", np.ones((2, 3), np.float32), dy)
    with pytest.raises(TypeError, match=r"^op: activation='tanh' needs y, the activated forward output"):
        family.check_activation_output("op", "tanh", None, dy)
    with pytest.raises(ValueError, match=r"^op: y must have shape \(2, 3\), got \(3, 2\)"):
        family.check_activation_output("op", "relu", np.ones((3, 2), np.float32), dy)
    with pytest.raises(TypeError, match=r"^op: y is float64 but dy is float32"):
        family.check_activation_output("op", "sigmoid", np.ones((2, 3), np.float64), dy)
    with pytest.raises(TypeError, match=r"^op: y must be float32 or float64, got int64"):
        family.check_activation_output("op", "relu", np.ones((2, 3), np.int64), dy)


# --------------------------------------------------------------------------- dilation, causal

DILATED_CASES = [
    # x shape, w shape, strides, dilation, padding
    ((2, 1, 11, 3), (1, 3, 3, 4), (1, 1), (1, 2), "causal"),     # Conv1D causal, dilation 2: strip tile
    ((2, 1, 12, 9), (1, 3, 9, 5), (1, 2), (1, 1), "causal"),     # Conv1D causal, stride 2: conv tile
    ((2, 1, 10, 22), (1, 3, 22, 17), (1, 1), (1, 3), "same"),    # conv tile, dilation 3
    ((2, 7, 8, 2), (3, 2, 2, 3), (1, 1), (2, 3), "valid"),
    ((1, 9, 9, 3), (3, 3, 3, 2), (2, 1), (2, 2), "same"),        # strides with dilation (conv2d allows it)
    ((2, 6, 6, 8), (2, 2, 8, 4), (1, 1), (3, 2), "causal"),      # causal on both axes, conv tile
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,w_shape,strides,dilation,padding", DILATED_CASES)
def test_conv2d_dilation_and_causal(be, small, x_shape, w_shape, strides, dilation, padding, dtype):
    if small:
        x_shape = (1, min(x_shape[1], 3), min(x_shape[2], 6), min(x_shape[3], 2))
        w_shape = (min(w_shape[0], 2), min(w_shape[1], 2), x_shape[3], 2)
    x, w, b = randn(x_shape, dtype, 1), randn(w_shape, dtype, 2), randn((w_shape[3],), dtype, 3)
    oh, ow, pt, pl = dilated_geometry(x_shape[1], x_shape[2], w_shape[0], w_shape[1], strides, dilation, padding)
    kw = {"strides": strides, "padding": padding, "dilation_rate": dilation}
    y = be.to_numpy(be.conv2d(*up(be, x, w, b), **kw))
    assert y.shape == (x_shape[0], oh, ow, w_shape[3])
    assert_close(y, dilated_ref(x, w, b, strides, dilation, pt, pl, oh, ow), dtype, k=w[..., 0].size)
    if dtype == np.float64:
        r = randn(y.shape, np.float64, 4)

        def loss(be, x, w, b):
            return float(np.sum(be.to_numpy(be.conv2d(x, w, b, **kw)) * r))

        def backward(be, x, w, b):
            return be.conv2d_backward(x, w, be.asarray(r), **kw)

        check_grad(be, loss, backward, [x, w, b], wrt=[0, 1, 2], samples=6 if small else 16)


def test_conv2d_causal_reads_no_later_input(be, small):
    """Changing input column t changes no output column before t."""
    x = randn((1, 1, 8, 2), np.float64, 5)
    w = randn((1, 3, 2, 2), np.float64, 6)
    y0 = be.to_numpy(be.conv2d(*up(be, x, w), padding="causal", dilation_rate=(1, 2)))
    x[0, 0, 5] += 1.0
    y1 = be.to_numpy(be.conv2d(*up(be, x, w), padding="causal", dilation_rate=(1, 2)))
    np.testing.assert_array_equal(y0[:, :, :5], y1[:, :, :5])
    assert np.all(y0[:, :, 5] != y1[:, :, 5])


def test_conv2d_rejects_bad_dilation(be):
    x, w = up(be, np.ones((1, 5, 5, 1), np.float32), np.ones((3, 3, 1, 1), np.float32))
    with pytest.raises(ValueError, match=r"conv2d: dilation_rate must hold positive ints, got \(0, 1\)"):
        be.conv2d(x, w, dilation_rate=(0, 1))
    with pytest.raises(ValueError, match=r"conv2d: window 5x5 does not fit the 4x4"):
        be.conv2d(*up(be, np.ones((1, 4, 4, 1), np.float32), np.ones((3, 3, 1, 1), np.float32)),
                  dilation_rate=2)
    with pytest.raises(ValueError, match=r"conv2d_backward: dilation_rate must be an int or a pair"):
        be.conv2d_backward(x, w, x, dilation_rate="2")


# --------------------------------------------------------------------------- conv2d_transpose

TRANSPOSE_CASES = [
    # x shape, w shape (KH, KW, filters, C_in), strides, padding, output_padding, dilation
    ((2, 3, 4, 3), (3, 3, 2, 3), (2, 2), "valid", None, (1, 1)),
    ((2, 3, 3, 3), (3, 3, 4, 3), (2, 2), "same", None, (1, 1)),
    ((1, 4, 3, 2), (2, 2, 3, 2), (2, 2), "same", None, (1, 1)),
    ((2, 3, 3, 24), (3, 3, 5, 24), (1, 1), "same", None, (1, 1)),      # deep: the GEMM tile's edges
    ((1, 3, 4, 2), (3, 2, 2, 2), (3, 2), "valid", (1, 1), (1, 1)),
    ((1, 3, 3, 2), (3, 3, 2, 2), (2, 2), "same", (1, 0), (1, 1)),
    ((1, 4, 4, 2), (1, 1, 3, 2), (3, 3), "valid", None, (1, 1)),       # kernel smaller than the stride
    ((1, 4, 5, 2), (3, 2, 2, 2), (1, 1), "same", None, (2, 2)),        # dilation
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,w_shape,strides,padding,output_padding,dilation", TRANSPOSE_CASES)
def test_conv2d_transpose(be, small, x_shape, w_shape, strides, padding, output_padding, dilation, dtype):
    if small:
        x_shape = (1, min(x_shape[1], 3), min(x_shape[2], 3), min(x_shape[3], 2))
        w_shape = w_shape[:2] + (min(w_shape[2], 2), x_shape[3])
    x, w, b = randn(x_shape, dtype, 1), randn(w_shape, dtype, 2), randn((w_shape[2],), dtype, 3)
    kw = {"strides": strides, "padding": padding, "output_padding": output_padding, "dilation_rate": dilation}
    want = transpose_ref(x, w, b, strides, padding, output_padding, dilation)
    y = be.to_numpy(be.conv2d_transpose(*up(be, x, w, b), **kw))
    assert y.shape == want.shape
    assert_close(y, want, dtype, k=w[:, :, 0].size)
    if dtype == np.float64:
        r = randn(y.shape, np.float64, 4)

        def loss(be, x, w, b):
            return float(np.sum(be.to_numpy(be.conv2d_transpose(x, w, b, **kw)) * r))

        def backward(be, x, w, b):
            return be.conv2d_transpose_backward(x, w, be.asarray(r), **kw)

        check_grad(be, loss, backward, [x, w, b], wrt=[0, 1, 2], samples=6 if small else 16)


def test_conv2d_transpose_backward_without_dx(be):
    x, w = randn((1, 3, 3, 2), np.float64, 1), randn((3, 3, 2, 2), np.float64, 2)
    dy = randn((1, 6, 6, 2), np.float64, 3)
    dx, dw, db = be.conv2d_transpose_backward(*up(be, x, w, dy), strides=2, padding="same", compute_dx=False)
    full = be.conv2d_transpose_backward(*up(be, x, w, dy), strides=2, padding="same")
    assert dx is None
    np.testing.assert_array_equal(be.to_numpy(dw), be.to_numpy(full[1]))
    np.testing.assert_allclose(be.to_numpy(db), dy.sum(axis=(0, 1, 2)), rtol=1e-12)


def test_conv2d_transpose_rejects_bad_input(be):
    x, w = up(be, np.ones((1, 3, 3, 2), np.float32), np.ones((3, 3, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"conv2d_transpose: x has 2 channels but w expects 3"):
        be.conv2d_transpose(x, w)
    w = be.asarray(np.ones((3, 3, 4, 2), np.float32))
    with pytest.raises(ValueError, match=r"conv2d_transpose: output_padding must be smaller than the stride"):
        be.conv2d_transpose(x, w, strides=2, output_padding=2)
    with pytest.raises(ValueError, match=r"conv2d_transpose: output_padding must hold ints >= 0"):
        be.conv2d_transpose(x, w, output_padding=(-1, 0))
    with pytest.raises(ValueError, match=r"conv2d_transpose: padding must be 'valid' or 'same', got 'causal'"):
        be.conv2d_transpose(x, w, padding="causal")
    with pytest.raises(ValueError, match=r"conv2d_transpose_backward: dy must have shape \(1, 5, 5, 4\), "
                                         r"got \(1, 6, 6, 4\)"):
        be.conv2d_transpose_backward(x, w, be.asarray(np.ones((1, 6, 6, 4), np.float32)))


def test_conv2d_transpose_costs():
    """2 flops per multiply-add: each x element meets KH*KW*filters weights (forward), dx and
    dw as many again (backward); bytes: each array once."""
    from numbanet.kernels import ops
    x, w = np.ones((2, 3, 3, 4), np.float32), np.ones((3, 3, 2, 4), np.float32)
    dy = np.ones((2, 6, 6, 2), np.float32)
    macs = 2 * 3 * 3 * 4 * (3 * 3 * 2)
    assert ops.get("conv2d_transpose").cost(x, w, None, strides=2, padding="same") == \
        (2 * macs, 4 * (x.size + w.size + dy.size))
    assert ops.get("conv2d_transpose_backward").cost(x, w, dy, strides=2, padding="same") == \
        (4 * macs, 4 * (x.size + w.size + dy.size + x.size + w.size + 2))
    assert ops.get("conv2d_transpose_backward").cost(x, w, dy, strides=2, padding="same", compute_dx=False)[0] == \
        2 * macs
