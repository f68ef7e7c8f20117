"""The one checking helper every kernel test goes through, on every backend.

`check_op` runs an op on a backend and compares it with a plain NumPy reference written
in the tests; `check_grad` compares a backward op with central finite differences of the
forward op in float64 (the cpu backend's forward: see there). The gpu backend (real or
simulated) runs through the same two functions, so a test written once covers both
backends.

Tolerances. float64: the kernels and the references differ only in summation order, so
1e-10 relative is loose enough for any reduction length used here. float32: each output
is a sum of up to K products; rounding error grows like sqrt(K) * 2**-24 * sum|terms|,
so we compare with atol = 1e-5 * sqrt(K) * scale (scale = the largest |term|-sum of the
reference, 1 for unit-range data) and rtol = 1e-4. Finite differences in float64 with
h = 1e-6 carry truncation error ~h^2 and cancellation error ~1e-16 / h, so 1e-6 relative
agreement is the bar there.
"""
import math

import numpy as np

RNG_SEED = 20261128


def rng(seed=0):
    return np.random.default_rng(RNG_SEED + seed)


def randn(shape, dtype=np.float32, seed=0, scale=1.0):
    return (rng(seed).standard_normal(shape) * scale).astype(dtype)


def upload(be, *arrays):
    out = tuple(be.asarray(a) if isinstance(a, np.ndarray) else a for a in arrays)
    return out if len(out) > 1 else out[0]


def download(be, result):
    if isinstance(result, (tuple, list)):
        return tuple(download(be, r) for r in result)
    if result is None or isinstance(result, (int, float)):
        return result
    return be.to_numpy(result)


def tolerances(dtype, k=1, scale=1.0):
    """(rtol, atol) for comparing a sum of k terms of magnitude `scale`; see the module doc."""
    if np.dtype(dtype) == np.float64:
        return 1e-10, 1e-10 * math.sqrt(k) * scale
    return 1e-4, 1e-5 * math.sqrt(k) * scale


def assert_close(got, want, dtype, k=1, scale=1.0, what="result"):
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != reference {want.shape}"
    if np.dtype(dtype) in (np.float32, np.float64):
        assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype} != {np.dtype(dtype)}"
    rtol, atol = tolerances(dtype, k, scale)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


def check_op(be, op, inputs, reference, *, kwargs=None, k=1, scale=1.0, dtype=None):
    """Run `op(be, *inputs_on_backend, **kwargs)` and compare every output with
    `reference(*inputs, **kwargs)` (plain NumPy). Returns the op's outputs as NumPy."""
    kwargs = kwargs or {}
    dtype = dtype or next(a.dtype for a in inputs if isinstance(a, np.ndarray) and a.dtype.kind == "f")
    got = download(be, op(be, *[upload(be, a) for a in inputs], **kwargs))
    want = reference(*inputs, **kwargs)
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            if w is not None:
                assert_close(g, w, dtype, k, scale, what=f"output {i}")
    else:
        assert_close(got, want, dtype, k, scale)
    return got


def numerical_grad(f, x, index_sample, h=1e-6):
    """Central differences of scalar f at the flat positions in index_sample (float64 x)."""
    assert x.dtype == np.float64
    flat = x.reshape(-1)
    grads = np.empty(len(index_sample))
    for j, i in enumerate(index_sample):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        grads[j] = (fp - fm) / (2 * h)
    return grads


def check_grad(be, forward_loss, backward, inputs, wrt, *, samples=24, rtol=1e-6, atol=1e-8, seed=0):
    """Finite-difference check of a backward op, in float64, on backend `be`.

    forward_loss(be, *arrays) -> float: a scalar of the forward op (e.g. sum(y * r)).
    backward(be, *arrays) -> tuple of gradients, one per position named in `wrt`.
    inputs: float64 host arrays; wrt: indices into inputs whose gradients are checked
    at `samples` random coordinates each.

    The differences are taken of the cpu backend's forward whatever `be` is (the cpu run
    checks that forward against NumPy): under the CUDA simulator each gpu forward is
    seconds of Python, and the differences need two per coordinate. `be`'s own forward is
    compared with the cpu's once, at `inputs`, so a gpu forward that is wrong at these
    shapes still fails here, as it did when the differences were taken of it.
    """
    from numbanet import kernels
    ref = be if be.name == "cpu" else kernels.get_backend("cpu")
    inputs = [np.array(a, dtype=np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
              for a in inputs]
    grads = download(be, backward(be, *[upload(be, a) for a in inputs]))
    if not isinstance(grads, tuple):
        grads = (grads,)
    assert len(grads) == len(wrt), f"backward returned {len(grads)} gradients, expected {len(wrt)}"

    def f():
        return float(forward_loss(ref, *[upload(ref, a) for a in inputs]))

    if ref is not be:
        # float64 on both: they differ only in summation order (the module's tolerances).
        np.testing.assert_allclose(float(forward_loss(be, *[upload(be, a) for a in inputs])), f(), rtol=1e-10,
                                   atol=1e-12, err_msg=f"{be.name} forward vs the cpu forward")
    pick = rng(seed)
    for g, pos in zip(grads, wrt):
        x = inputs[pos]
        assert g.shape == x.shape, f"gradient for input {pos}: shape {g.shape} != {x.shape}"
        idx = pick.choice(x.size, size=min(samples, x.size), replace=False)
        num = numerical_grad(f, x, idx)
        np.testing.assert_allclose(g.reshape(-1)[idx], num, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {pos} vs finite differences")


# --------------------------------------------------------------------------- recurrent reference
# Keras 3's recurrent cells in NumPy: tests/kernels/test_rnn.py checks the rnn op with it,
# tests/nn/layers/test_recurrent.py the layers (and weights saved and loaded).

GATES = {"simple": 1, "lstm": 4, "gru": 3}
ACT = {"tanh": np.tanh, "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)), "relu": lambda z: np.maximum(z, 0.0),
       "linear": lambda z: z}


def rnn_ref(cell, x, kernel, recurrent_kernel, bias, h0=None, c0=None, mask=None, activation="tanh",
            recurrent_activation="sigmoid", go_backwards=False, return_sequences=True,
            zero_output_for_mask=False, dropout_mask=None, recurrent_dropout_mask=None,
            outputs_in_input_order=False):
    """Keras 3's cells stepped by Keras's backend rnn loop, in float64: -> (y, h, c).
    outputs_in_input_order: y flipped back to input order after go_backwards (Bidirectional)."""
    dtype = x.dtype
    x, w, u = (a.astype(np.float64) for a in (x, kernel, recurrent_kernel))
    b_count, t_count, _ = x.shape
    units = u.shape[0]
    act, rec = ACT[activation], ACT[recurrent_activation]
    h = np.zeros((b_count, units)) if h0 is None else h0.astype(np.float64)
    c = np.zeros((b_count, units)) if c0 is None else c0.astype(np.float64)
    if dropout_mask is not None:
        x = x * dropout_mask[:, None, :]
    in_bias, rec_bias = np.zeros(GATES[cell] * units), np.zeros(GATES[cell] * units)
    if bias is not None:
        if cell == "gru":
            in_bias, rec_bias = bias[0].astype(np.float64), bias[1].astype(np.float64)
        else:
            in_bias = bias.astype(np.float64)
    out_prev = np.zeros((b_count, units))
    outputs = []
    steps = range(t_count - 1, -1, -1) if go_backwards else range(t_count)
    for t in steps:
        hr = h if recurrent_dropout_mask is None else h * recurrent_dropout_mask
        zx = x[:, t] @ w + in_bias
        zh = hr @ u + rec_bias
        if cell == "simple":
            h_new = act(zx + zh)
            c_new = c
        elif cell == "lstm":
            zi, zf, zg, zo = np.split(zx + zh, 4, axis=1)
            c_new = rec(zf) * c + rec(zi) * act(zg)
            h_new = rec(zo) * act(c_new)
        else:
            xz, xr, xh = np.split(zx, 3, axis=1)
            hz, hr_, hh = np.split(zh, 3, axis=1)
            z = rec(xz + hz)
            r = rec(xr + hr_)
            cand = act(xh + r * hh)
            h_new = z * h + (1 - z) * cand
            c_new = c
        if mask is None:
            keep = np.ones((b_count, 1), bool)
        else:
            keep = (mask[:, t] != 0)[:, None]
        out = np.where(keep, h_new, 0.0 if zero_output_for_mask else out_prev)
        h = np.where(keep, h_new, h)
        c = np.where(keep, c_new, c)
        out_prev = out
        outputs.append(out)
    if go_backwards and outputs_in_input_order:
        outputs = outputs[::-1]
    y = np.stack(outputs, axis=1) if return_sequences else outputs[-1]
    return y.astype(dtype), h.astype(dtype), (c.astype(dtype) if cell == "lstm" else None)
