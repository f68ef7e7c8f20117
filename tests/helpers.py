"""The one checking helper every kernel test goes through, on every backend.

`check_op` runs an op on a backend and compares it with a plain NumPy reference written
in the tests; `check_grad` compares a backward op with central finite differences of the
forward op in float64. The gpu backend (real or simulated) runs through the same two
functions, so a test written once covers both backends.

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
    """
    inputs = [np.array(a, dtype=np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
              for a in inputs]
    grads = download(be, backward(be, *[upload(be, a) for a in inputs]))
    if not isinstance(grads, tuple):
        grads = (grads,)
    assert len(grads) == len(wrt), f"backward returned {len(grads)} gradients, expected {len(wrt)}"
    pick = rng(seed)
    for g, pos in zip(grads, wrt):
        x = inputs[pos]
        assert g.shape == x.shape, f"gradient for input {pos}: shape {g.shape} != {x.shape}"
        idx = pick.choice(x.size, size=min(samples, x.size), replace=False)

        def f():
            return float(forward_loss(be, *[upload(be, a) for a in inputs]))

        num = numerical_grad(f, x, idx)
        np.testing.assert_allclose(g.reshape(-1)[idx], num, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {pos} vs finite differences")
