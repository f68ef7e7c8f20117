"""rnn / rnn_backward (SimpleRNN, LSTM, GRU) against a NumPy loop over Keras's cell
equations, finite differences through a few steps in float64, and bad input."""
import numpy as np
import pytest

from conftest import simulated
from helpers import GATES, assert_close, check_grad, randn, rng, rnn_ref


def make(cell, b, t, f, units, dtype, seed=0, use_bias=True):
    g = GATES[cell]
    x = randn((b, t, f), dtype, seed=seed)
    kernel = randn((f, g * units), dtype, seed=seed + 1, scale=0.5)
    rec = randn((units, g * units), dtype, seed=seed + 2, scale=0.5)
    bias = None
    if use_bias:
        bias = randn((2, g * units) if cell == "gru" else (g * units,), dtype, seed=seed + 3, scale=0.3)
    return x, kernel, rec, bias


def run_rnn(be, cell, x, kernel, rec, bias, **kw):
    on = {k: (be.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    y, h, c, _ = be.rnn(be.asarray(x), be.asarray(kernel), be.asarray(rec),
                        None if bias is None else be.asarray(bias), cell=cell, **on)
    return be.to_numpy(y), be.to_numpy(h), (None if c is None else be.to_numpy(c))


def check_forward(be, cell, x, kernel, rec, bias, **kw):
    got = run_rnn(be, cell, x, kernel, rec, bias, **kw)
    want = rnn_ref(cell, x, kernel, rec, bias, **kw)
    k = kernel.shape[0] + rec.shape[0]
    for name, g_, w_ in zip(("y", "h", "c"), got, want):
        if w_ is None:
            assert g_ is None, name
        else:
            assert_close(g_, w_, x.dtype, k=k, scale=4.0, what=f"{cell} {name}")


CELLS = ["simple", "lstm", "gru"]
# Sizes that cross the CPU kernel's 8-row x 16-unit tiles (and leave partial tiles).
# Under the CUDA simulator (a Python thread per GPU thread, per launch, per step) one
# small shape and a subset of the options: tests/gpu/test_cross_backend.py checks the gpu
# against the cpu on masks, go_backwards and every gradient besides.
SHAPES = [(2, 3, 3, 4)] if simulated() else [(1, 1, 1, 1), (3, 4, 5, 6), (10, 7, 9, 17), (17, 5, 3, 33)]
SIM_FORWARD_OPTIONS = [{"go_backwards": True, "outputs_in_input_order": True, "masked": True}, {"initial": True},
                       {"activation": "relu", "recurrent_activation": "tanh"},
                       {"masked": True, "return_sequences": False, "initial": True}, {"dropout": True}]
SIM_BACKWARD_OPTIONS = [{"masked": True, "zero_output_for_mask": True, "go_backwards": True}]


def options_for_backend(every, on_simulator):
    """Every option set on the cpu; under the simulator the subset (a Python thread per GPU
    thread, per launch, per step), each of which is also in `every`."""
    assert all(o in every for o in on_simulator)
    return on_simulator if simulated() else every


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_forward(be, cell, shape, dtype):
    x, kernel, rec, bias = make(cell, *shape, dtype)
    check_forward(be, cell, x, kernel, rec, bias)


FORWARD_OPTIONS = [
    {"go_backwards": True},
    {"go_backwards": True, "outputs_in_input_order": True, "masked": True},
    {"return_sequences": False},
    {"activation": "relu", "recurrent_activation": "tanh"},
    {"activation": "linear", "recurrent_activation": "linear"},
    {"activation": "sigmoid"},
    {"use_bias": False},
    {"initial": True},
    {"masked": True},
    {"masked": True, "zero_output_for_mask": True, "go_backwards": True},
    {"masked": True, "return_sequences": False, "initial": True},
    {"dropout": True},
]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("options", options_for_backend(FORWARD_OPTIONS, SIM_FORWARD_OPTIONS))
def test_rnn_forward_options(be, small, cell, options):
    options = dict(options)
    b, t, f, units = (4, 3, 2, 3) if small else (5, 6, 4, 7)
    x, kernel, rec, bias = make(cell, b, t, f, units, np.float64, seed=3,
                                use_bias=options.pop("use_bias", True))
    if options.pop("initial", False):
        options["h0"] = randn((b, units), np.float64, seed=11)
        if cell == "lstm":
            options["c0"] = randn((b, units), np.float64, seed=12)
    if options.pop("masked", False):
        # Right padding, left padding, a gap, an all-masked row and a full row.
        mask = np.ones((b, t), bool)
        mask[0, 4:] = False
        mask[1, :2] = False
        mask[2, 2:4] = False
        mask[3, :] = False
        options["mask"] = mask
    if options.pop("dropout", False):
        options["dropout_mask"] = (rng(5).random((b, f)) > 0.3) / 0.7
        options["recurrent_dropout_mask"] = (rng(6).random((b, units)) > 0.4) / 0.6
    check_forward(be, cell, x, kernel, rec, bias, **options)


def test_rnn_mask_types_agree(be):
    """bool, int32 and int64 masks: non-zero keeps a step (an Embedding's ids are a mask)."""
    x, kernel, rec, bias = make("lstm", 3, 5, 2, 4, np.float64, seed=7)
    ids = np.array([[5, 3, 0, 0, 0], [0, 0, 1, 2, 7], [4, 4, 4, 4, 4]])
    results = [run_rnn(be, "lstm", x, kernel, rec, bias, mask=m)[0]
               for m in (ids != 0, ids.astype(np.int32), ids.astype(np.int64))]
    want = rnn_ref("lstm", x, kernel, rec, bias, mask=ids != 0)[0]
    for got in results:
        assert_close(got, want, np.float64, k=6)


# --------------------------------------------------------------------------- backward

def _loss_and_grads(cell, shape, seed, options):
    """A random linear loss of every output: sum(y * ry) + sum(h * rh) (+ sum(c * rc))."""
    b, t, f, units = shape
    x, kernel, rec, bias = make(cell, b, t, f, units, np.float64, seed=seed, use_bias=options.get("use_bias", True))
    seq = options.get("return_sequences", True)
    ry = randn((b, t, units) if seq else (b, units), np.float64, seed=seed + 20)
    rh = randn((b, units), np.float64, seed=seed + 21)
    rc = randn((b, units), np.float64, seed=seed + 22) if cell == "lstm" else None
    h0 = randn((b, units), np.float64, seed=seed + 23)
    c0 = randn((b, units), np.float64, seed=seed + 24) if cell == "lstm" else None
    extra = {}
    if options.get("masked"):
        mask = np.ones((b, t), bool)
        mask[0, -1] = False
        mask[1 % b, 0] = False
        extra["mask"] = mask
    if options.get("dropout"):
        extra["dropout_mask"] = (rng(seed + 30).random((b, f)) > 0.3) / 0.7
        extra["recurrent_dropout_mask"] = (rng(seed + 31).random((b, units)) > 0.3) / 0.7
    flags = {k: options[k] for k in ("go_backwards", "zero_output_for_mask", "activation", "recurrent_activation",
                                     "outputs_in_input_order") if k in options}
    return x, kernel, rec, bias, h0, c0, ry, rh, rc, extra, flags, seq


BACKWARD_OPTIONS = [
    {},
    {"go_backwards": True, "return_sequences": False},
    {"go_backwards": True, "outputs_in_input_order": True},
    {"masked": True},
    {"masked": True, "zero_output_for_mask": True, "go_backwards": True},
    {"dropout": True, "activation": "sigmoid", "recurrent_activation": "tanh"},
    {"use_bias": False},
]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("options", options_for_backend(BACKWARD_OPTIONS, SIM_BACKWARD_OPTIONS))
def test_rnn_backward_finite_differences(be, small, cell, options):
    shape = (2, 3, 2, 3) if small else (3, 4, 3, 5)
    x, kernel, rec, bias, h0, c0, ry, rh, rc, extra, flags, seq = _loss_and_grads(cell, shape, 40, options)
    host_extra = dict(extra)

    def call_kwargs(be_, h0_, c0_):
        kw = {k: be_.asarray(v) for k, v in host_extra.items()}
        kw.update(flags)
        return dict(cell=cell, h0=h0_, c0=c0_, **kw)

    def forward_loss(be_, x_, k_, r_, b_, h0_, c0_):
        y, h, c, _ = be_.rnn(x_, k_, r_, b_, return_sequences=seq, **call_kwargs(be_, h0_, c0_))
        total = float(np.sum(be_.to_numpy(y) * ry) + np.sum(be_.to_numpy(h) * rh))
        if c is not None:
            total += float(np.sum(be_.to_numpy(c) * rc))
        return total

    def backward(be_, x_, k_, r_, b_, h0_, c0_):
        kw = call_kwargs(be_, h0_, c0_)
        _, _, _, ws = be_.rnn(x_, k_, r_, b_, return_sequences=seq, **kw)
        dx, dk, dr, db, dh0, dc0 = be_.rnn_backward(
            x_, k_, r_, b_, ws, be_.asarray(ry), dh=be_.asarray(rh), dc=None if rc is None else be_.asarray(rc),
            **kw)
        out = [dx, dk, dr]
        if b_ is not None:
            out.append(db)
        out.append(dh0)
        if cell == "lstm":
            out.append(dc0)
        return tuple(out)

    inputs = [x, kernel, rec, bias, h0, c0]
    wrt = [0, 1, 2] + ([3] if bias is not None else []) + [4] + ([5] if cell == "lstm" else [])
    check_grad(be, forward_loss, backward, inputs, wrt, samples=3 if small else 20)


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_backward_float32_matches_float64(be, small, cell):
    """The float32 kernels (a rational tanh) against the float64 ones on the same data."""
    shape = (2, 3, 3, 4) if small else (9, 12, 10, 20)
    x, kernel, rec, bias, h0, c0, ry, rh, rc, extra, flags, seq = _loss_and_grads(cell, shape, 50, {"masked": True})
    results = {}
    for dtype in (np.float32, np.float64):
        up = lambda a: None if a is None else be.asarray(np.asarray(a, dtype))  # noqa: E731
        kw = dict(cell=cell, h0=up(h0), c0=up(c0), mask=be.asarray(extra["mask"]))
        args = (up(x), up(kernel), up(rec), up(bias))
        _, _, _, ws = be.rnn(*args, **kw)
        grads = be.rnn_backward(*args, ws, up(ry), dh=up(rh), dc=up(rc), **kw)
        results[dtype] = [None if g is None else be.to_numpy(g) for g in grads]
    for got, want in zip(results[np.float32], results[np.float64]):
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * max(1.0, np.abs(want).max()))


def test_rnn_backward_is_deterministic(be, small):
    shape = (2, 3, 3, 4) if small else (20, 30, 16, 40)
    x, kernel, rec, bias = make("lstm", *shape, np.float32, seed=60)
    dy = randn((shape[0], shape[1], shape[3]), np.float32, seed=61)
    args = [be.asarray(a) for a in (x, kernel, rec, bias)]
    first = None
    for _ in range(3):
        _, _, _, ws = be.rnn(*args, cell="lstm")
        grads = [be.to_numpy(g) for g in be.rnn_backward(*args, ws, be.asarray(dy), cell="lstm")
                 if g is not None]
        if first is None:
            first = grads
        else:
            for a, b in zip(first, grads):
                assert np.array_equal(a, b)


# --------------------------------------------------------------------------- bad input

def _args(be, cell="lstm", b=2, t=3, f=4, units=5, dtype=np.float32):
    return [be.asarray(a) for a in make(cell, b, t, f, units, dtype)]


def test_rnn_refuses_bad_input(be):
    x, k, r, b = _args(be)
    with pytest.raises(ValueError, match=r"rnn: x must be 3-D \(batch, timesteps, features\)"):
        be.rnn(be.asarray(np.zeros((2, 4), np.float32)), k, r, b, cell="lstm")
    with pytest.raises(ValueError, match=r"rnn: kernel must have shape \(features, 4 \* units\) = \(6, 20\)"):
        be.rnn(be.asarray(np.zeros((2, 3, 6), np.float32)), k, r, b, cell="lstm")
    with pytest.raises(ValueError, match=r"recurrent_kernel must have shape \(units, 3 \* units\)"):
        be.rnn(x, k, r, b, cell="gru")
    with pytest.raises(ValueError, match=r"rnn: cell must be one of"):
        be.rnn(x, k, r, b, cell="rnn")
    with pytest.raises(ValueError, match=r"rnn: bias must have shape \(20,\), got \(2, 20\)"):
        be.rnn(x, k, r, be.asarray(np.zeros((2, 20), np.float32)), cell="lstm")
    with pytest.raises(ValueError, match=r"rnn: mask must have shape \(batch, timesteps\) = \(2, 3\), got \(2, 4\)"):
        be.rnn(x, k, r, b, cell="lstm", mask=be.asarray(np.ones((2, 4), bool)))
    with pytest.raises(TypeError, match=r"rnn: mask must be a bool or integer array"):
        be.rnn(x, k, r, b, cell="lstm", mask=be.asarray(np.ones((2, 3), np.float32)))
    with pytest.raises(ValueError, match=r"rnn: h0 must have shape \(2, 5\), got \(2, 4\)"):
        be.rnn(x, k, r, b, cell="lstm", h0=be.asarray(np.zeros((2, 4), np.float32)))
    with pytest.raises(ValueError, match=r"rnn: c0 is an LSTM's second state"):
        xg, kg, rg, bg = _args(be, "gru")
        be.rnn(xg, kg, rg, bg, cell="gru", c0=be.asarray(np.zeros((2, 5), np.float32)))
    with pytest.raises(TypeError, match=r"rnn: kernel is float64 but x is float32"):
        be.rnn(x, be.asarray(np.zeros((4, 20))), r, b, cell="lstm")
    with pytest.raises(TypeError, match=r"rnn: x must be float32 or float64"):
        be.rnn(be.asarray(np.zeros((2, 3, 4), np.int32)), k, r, b, cell="lstm")
    with pytest.raises(ValueError, match=r"rnn: activation must be one of"):
        be.rnn(x, k, r, b, cell="lstm", activation="softmax")
    with pytest.raises(TypeError, match=r"rnn: go_backwards must be True or False"):
        be.rnn(x, k, r, b, cell="lstm", go_backwards=1)
    with pytest.raises(ValueError, match=r"rnn: dropout_mask must have shape \(2, 4\)"):
        be.rnn(x, k, r, b, cell="lstm", dropout_mask=be.asarray(np.ones((2, 5), np.float32)))


def test_rnn_backward_refuses_bad_input(be):
    x, k, r, b = _args(be)
    y, _, _, ws = be.rnn(x, k, r, b, cell="lstm")
    with pytest.raises(ValueError, match=r"rnn_backward: dy must have shape \(2, 3, 5\), got \(2, 3, 4\)"):
        be.rnn_backward(x, k, r, b, ws, be.asarray(np.zeros((2, 3, 4), np.float32)), cell="lstm")
    with pytest.raises(ValueError, match=r"rnn_backward: workspace must have shape \(2, 3, 30\)"):
        be.rnn_backward(x, k, r, b, y, y, cell="lstm")
    with pytest.raises(ValueError, match=r"rnn_backward: dc is the gradient of an LSTM's cell state"):
        xs, ks, rs, bs = _args(be, "simple")
        _, _, _, wss = be.rnn(xs, ks, rs, bs, cell="simple")
        be.rnn_backward(xs, ks, rs, bs, wss, be.asarray(np.zeros((2, 5), np.float32)), cell="simple",
                        dc=be.asarray(np.zeros((2, 5), np.float32)))
    with pytest.raises(ValueError, match=r"rnn_backward: mask must have shape"):
        be.rnn_backward(x, k, r, b, ws, y, cell="lstm", mask=be.asarray(np.ones((3, 3), bool)))
