"""Adversarial inputs: bad indices, shape lies, non-finite numbers, read-only and aliased
arrays, hostile model files and killed saves, on every backend under test (the cpu here,
the gpu in the simulator process that tests/test_gpu_simulator.py starts).

A call that could corrupt memory or segfault if a check were missing runs in a child
process (hostile_calls.py beside this file): a crash there fails the case it was running
instead of killing pytest. Everything else runs in this process.
"""
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from helpers import randn

import hostile_calls

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# The simulator hashes dropout seeds in NumPy uint64 scalars, which wrap (as on a GPU) but warn.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in scalar multiply:RuntimeWarning")


# --------------------------------------------------------------------------- child processes

_child_runs = {}


def child_results(backend, mode):
    """{case: result} from one child process per (backend, mode); the child's exit status
    and the case it was in when it died are kept for the tests to report."""
    key = (backend, mode)
    if key not in _child_runs:
        # A hang detector, not a speed limit: the cpu fuzz compiles every op for each odd
        # array type (read-only, non-contiguous, ...), which on 2 busy cores beside the
        # simulator run has taken 15 minutes.
        proc = subprocess.run([sys.executable, os.path.join(HERE, "hostile_calls.py"), backend, mode],
                              cwd=ROOT, capture_output=True, text=True, timeout=2400)
        results, running = {}, None
        for line in proc.stdout.splitlines():
            if line.startswith("START "):
                running = line[6:]
            elif line.startswith("{"):
                r = json.loads(line)
                results[r["case"]] = r
                running = None
        done = proc.stdout.rstrip().endswith("DONE")
        _child_runs[key] = (results, proc.returncode, running, done, proc.stderr[-3000:])
    return _child_runs[key]


def check_child_alive(backend, mode):
    results, rc, running, done, stderr = child_results(backend, mode)
    assert rc == 0 and done, (f"the {mode} child on {backend} died (exit {rc}, signal "
                              f"{-rc if rc < 0 else None}) during case {running!r}:\n{stderr}")
    return results


@pytest.mark.parametrize("case", list(hostile_calls.DANGEROUS))
def test_dangerous_call_is_refused_or_stays_in_bounds(be, case):
    """Bad indices and shape lies: a clear error naming the op before any kernel runs, or,
    on the private path that skips the check, a kernel that skips the bad entry."""
    results = check_child_alive(be.name, "dangerous")
    got = results[case]
    want = hostile_calls.EXPECTED[case]
    if want is None:
        assert got["outcome"] == "ok", f"{case}: expected the call to succeed, got {got}"
    else:
        kind, op = want
        assert (got["outcome"], got["type"]) == ("error", kind), f"{case}: expected {kind} from {op}, got {got}"
        assert got["message"].startswith(f"{op}: "), f"{case}: the error does not name {op}: {got['message']}"


def test_fuzzed_arguments_give_only_clear_errors(be):
    """Every op with each array argument replaced by a wrong dtype, byte order, rank, a 0-d
    or empty array, a view, a read-only array, NaNs, a list or None, and with bad scalars:
    the call succeeds or raises TypeError/ValueError naming the op, never a Numba
    TypingError, an AttributeError or a crash."""
    results = check_child_alive(be.name, "fuzz")
    assert len(results) > 500, f"the fuzz ran only {len(results)} calls"
    bad = [r for r in results.values()
           if not (r["outcome"] == "ok" or (r["outcome"] == "error" and r["type"] in ("TypeError", "ValueError")
                                            and r["message"].startswith(r["case"].split("|")[0] + ": ")))]
    assert not bad, "unclear errors:\n" + "\n".join(f"  {r['case']}: {r['type']}: {r['message'][:200]}"
                                                    for r in bad)
    valid = [r for case, r in results.items() if case.endswith("|valid")]
    assert valid and all(r["outcome"] == "ok" for r in valid), f"a valid call failed: {valid}"


# --------------------------------------------------------------------------- non-finite numbers

def on(be, op, arrays):
    # copies: on the cpu asarray keeps the array, and in-place ops would write into it
    out = op(be, *[be.asarray(a.copy()) if isinstance(a, np.ndarray) else a for a in arrays])
    out = out if isinstance(out, tuple) else (out,)
    return tuple(be.to_numpy(o) for o in out)


def assert_only_dependents_change(be, op, reference, arrays, which, index, value):
    """Poison arrays[which][index] with value: the non-finite outputs must be exactly those
    of the NumPy reference on the poisoned inputs (NaN where it has NaN, inf where it has
    inf), and every other output bit-identical to the clean run."""
    clean = on(be, op, arrays)
    poisoned = [a.copy() for a in arrays]
    poisoned[which][index] = value
    dirty = on(be, op, poisoned)
    want = reference(*[a.astype(np.float64) if a.dtype.kind == "f" else a for a in poisoned])
    want = want if isinstance(want, tuple) else (want,)
    for k, (c, d, w) in enumerate(zip(clean, dirty, want)):
        bad = ~np.isfinite(w)
        assert bad.any() and not bad.all(), f"test setup: output {k} of the reference is all or nothing"
        np.testing.assert_array_equal(np.isnan(d), np.isnan(w), err_msg=f"output {k}: NaN pattern")
        np.testing.assert_array_equal(np.isposinf(d), np.isposinf(w), err_msg=f"output {k}: +inf pattern")
        np.testing.assert_array_equal(np.isneginf(d), np.isneginf(w), err_msg=f"output {k}: -inf pattern")
        np.testing.assert_array_equal(d[~bad], c[~bad], err_msg=f"output {k}: a finite output moved")


def conv_geometry(x_shape, w_shape):
    """'same', stride 1, odd kernels: pads (KH // 2, KW // 2), output size = input size."""
    return w_shape[0] // 2, w_shape[1] // 2


def conv_ref(x, w):
    n, h, wd, _ = x.shape
    kh, kw, _, co = w.shape
    pt, pl = conv_geometry(x.shape, w.shape)
    y = np.zeros((n, h, wd, co))
    for b, i, j, p, q in np.ndindex(n, h, wd, kh, kw):
        hh, ww = i - pt + p, j - pl + q
        if 0 <= hh < h and 0 <= ww < wd:
            y[b, i, j] += x[b, hh, ww] @ w[p, q]
    return y


def conv_backward_ref(x, w, dy):
    n, h, wd, _ = x.shape
    kh, kw, _, co = w.shape
    pt, pl = conv_geometry(x.shape, w.shape)
    dx, dw = np.zeros(x.shape), np.zeros(w.shape)
    for b, i, j, p, q in np.ndindex(n, h, wd, kh, kw):
        hh, ww = i - pt + p, j - pl + q
        if 0 <= hh < h and 0 <= ww < wd:
            dx[b, hh, ww] += w[p, q] @ dy[b, i, j]
            dw[p, q] += np.outer(x[b, hh, ww], dy[b, i, j])
    return dx, dw, dy.sum(axis=(0, 1, 2))


def avg_pool_same_ref(x):
    """2x2 windows, stride 2, 'same' on odd sizes: the valid cells only."""
    n, h, w, c = x.shape
    oh, ow = -(-h // 2), -(-w // 2)
    y = np.zeros((n, oh, ow, c))
    for b, i, j in np.ndindex(n, oh, ow):
        y[b, i, j] = x[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(0, 1))
    return y


def softmax_ref(z):
    e = np.exp(z - np.nanmax(z, axis=1, keepdims=True)) if np.isfinite(z).all() else np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


NONFINITE_CASES = {
    # name: (op, reference, inputs(dtype), which input, index, value)
    "matmul_inf_in_a": (lambda be, a, b: be.matmul(a, b), lambda a, b: np.einsum("ik,kj->ij", a, b),
                        lambda d: [randn((3, 4), d, 1), randn((4, 5), d, 2)], 0, (0, 1), np.inf),
    "conv2d_same_inf_in_image_0": (lambda be, x, w: be.conv2d(x, w, padding="same"), conv_ref,
                                   lambda d: [randn((2, 4, 4, 2), d, 1), randn((3, 3, 2, 2), d, 2)], 0,
                                   (0, 0, 0, 0), np.inf),
    "conv2d_same_nan_in_image_0": (lambda be, x, w: be.conv2d(x, w, padding="same"), conv_ref,
                                   lambda d: [randn((2, 4, 4, 2), d, 1), randn((3, 3, 2, 2), d, 2)], 0,
                                   (0, 1, 2, 1), np.nan),
    "conv2d_backward_inf_in_dy_image_0": (
        lambda be, x, w, dy: be.conv2d_backward(x, w, dy, padding="same")[:1], lambda x, w, dy:
        conv_backward_ref(x, w, dy)[:1],
        lambda d: [randn((2, 4, 4, 2), d, 1), randn((3, 3, 2, 2), d, 2), randn((2, 4, 4, 2), d, 3)], 2,
        (0, 0, 0, 1), -np.inf),
    "avg_pool2d_same_nan": (lambda be, x: be.avg_pool2d(x, padding="same"), avg_pool_same_ref,
                            lambda d: [randn((2, 3, 5, 2), d, 1)], 0, (0, 0, 0, 0), np.nan),
    "avg_pool2d_backward_inf": (
        lambda be, dy: be.avg_pool2d_backward(dy, (2, 4, 4, 2), padding="same"),
        lambda dy: np.repeat(np.repeat(dy / 4, 2, axis=1), 2, axis=2),
        lambda d: [randn((2, 2, 2, 2), d, 1)], 0, (0, 0, 0, 0), np.inf),
    "column_sum_inf_in_row_0": (lambda be, x: be.column_sum(x), lambda x: x.sum(0),
                                lambda d: [randn((5, 3), d, 1)], 0, (0, 1), np.inf),
    "softmax_nan_in_row_0": (lambda be, x: be.softmax(x), softmax_ref, lambda d: [randn((3, 4), d, 1)], 0,
                             (0, 2), np.nan),
    "softmax_cross_entropy_nan_in_row_0": (
        lambda be, z, y: be.softmax_cross_entropy(z, y),
        lambda z, y: (-np.log(softmax_ref(z)[np.arange(len(y)), y]), (softmax_ref(z) - np.eye(z.shape[1])[y]) / len(y)),
        lambda d: [randn((3, 4), d, 1), np.array([1, 0, 3])], 0, (0, 2), np.nan),
    "mse_inf": (lambda be, p, t: be.mse(p, t),
                lambda p, t: (((p - t) ** 2).mean(1), 2 * (p - t) / p.size),
                lambda d: [randn((3, 4), d, 1), randn((3, 4), d, 2)], 0, (1, 1), np.inf),
    "l1_l2_grad_inf_weight": (lambda be, w, dw: (be.l1_l2_grad(w, dw, l1=0.1, l2=0.2), dw)[1],
                              lambda w, dw: dw + 0.1 * np.sign(w) + 0.4 * w,
                              lambda d: [randn((3, 4), d, 1), randn((3, 4), d, 2)], 0, (2, 3), np.inf),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(NONFINITE_CASES))
def test_non_finite_affects_only_outputs_that_depend_on_it(be, name, dtype):
    op, ref, inputs, which, index, value = NONFINITE_CASES[name]
    assert_only_dependents_change(be, op, ref, inputs(dtype), which, index, value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_follows_pytorch_on_nan_and_inf(be, dtype):
    x = np.array([np.nan, -np.inf, np.inf, -1.0, 0.0, 2.0], dtype)
    y = be.to_numpy(be.relu(be.asarray(x)))
    np.testing.assert_array_equal(y, np.array([np.nan, 0, np.inf, 0, 0, 2], dtype))
    # dx is zero where y <= 0 (whatever dy holds) and dy where relu let x through.
    y_in = np.array([np.nan, 0.0, 2.0, 0.0, 3.0, 1.0], dtype)
    dy = np.array([1.0, np.nan, np.inf, -np.inf, np.nan, -2.0], dtype)
    dx = be.to_numpy(be.relu_backward(be.asarray(y_in), be.asarray(dy)))
    np.testing.assert_array_equal(dx, np.array([1.0, 0.0, np.inf, 0.0, np.nan, -2.0], dtype))
    torch = pytest.importorskip("torch", reason="PyTorch is the optional second reference")
    t = torch.tensor(x, requires_grad=True)
    np.testing.assert_array_equal(torch.relu(t).detach().numpy(), y)


NAN_ROWS = np.array([[1.0, np.nan, 3.0, np.nan], [np.nan, 2.0, 9.0, 1.0], [1.0, 3.0, 3.0, -np.inf],
                     [-np.inf, -np.inf, -np.inf, -np.inf], [np.inf, 2.0, np.inf, np.nan], [0.0, -0.0, 0.0, 1.0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_argmax_and_accuracy_pick_the_first_nan_like_numpy(be, dtype):
    x = NAN_ROWS.astype(dtype)
    want = np.argmax(x, axis=1)
    assert want.tolist() == [1, 0, 1, 0, 3, 3]  # NumPy's rule, spelled out
    np.testing.assert_array_equal(be.to_numpy(be.argmax(be.asarray(x))), want)
    # accuracy's prediction is the same argmax: the NumPy labels are all hits, one off is a miss
    assert be.accuracy(be.asarray(x), be.asarray(want)) == len(want)
    assert be.accuracy(be.asarray(x), be.asarray((want + 1) % 4)) == 0
    onehot = np.eye(4, dtype=dtype)[want]
    assert be.accuracy(be.asarray(x), be.asarray(onehot)) == len(want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_propagates_nan_and_points_at_the_first(be, dtype):
    x = randn((2, 4, 4, 3), dtype, 5)
    x[0, 0, 1, 0] = np.nan            # a window's second cell
    x[0, 1, 0, 0] = np.nan            # ... and its third: the second cell is the first NaN
    x[1, 3, 3, 2] = np.nan            # a window's last cell
    x[1, 0, 0, 1] = np.inf
    y, idx = (be.to_numpy(a) for a in be.max_pool2d(be.asarray(x)))
    want_y = np.full(y.shape, 0.0, dtype)
    want_idx = np.zeros(y.shape, np.int32)
    for b, i, j, c in np.ndindex(*y.shape):
        win = x[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c].reshape(-1)
        k = int(np.argmax(win))   # NumPy: the first NaN, else the first maximum
        want_y[b, i, j, c] = win[k]
        want_idx[b, i, j, c] = (2 * i + k // 2) * 4 + 2 * j + k % 2
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(idx, want_idx)
    assert idx[0, 0, 0, 0] == 1 and np.isnan(y[0, 0, 0, 0]) and np.isnan(y[1, 1, 1, 2])
    # the gradient goes to the NaN cell that won, nowhere else in that window
    dx = be.to_numpy(be.max_pool2d_backward(be.asarray(np.ones_like(y)), be.asarray(idx), x.shape))
    assert dx[0, 0, 1, 0] == 1.0 and dx[0, 1, 0, 0] == 0.0 and dx[0, 0, 0, 0] == 0.0


# --------------------------------------------------------------------------- read-only and aliased

def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def test_read_only_outputs_are_refused_by_the_op(be):
    """On the cpu a read-only output is refused as such; the gpu's outputs are device
    arrays (always writable), and a read-only host array there is refused as not native."""
    f = lambda *s: randn(s, np.float32, len(s))  # noqa: E731
    if be.name != "cpu":
        with pytest.raises(TypeError, match="^matmul: out must be a numba device array"):
            be.matmul(be.asarray(f(2, 3)), be.asarray(f(3, 2)), out=read_only(f(2, 2)))
        return
    cases = [
        ("matmul", "out", lambda: be.matmul(f(2, 3), f(3, 2), out=read_only(f(2, 2)))),
        ("adam_step", "param", lambda: be.adam_step(read_only(f(4)), f(4), f(4), f(4), lr=0.1, step=1)),
        ("adam_step", "v", lambda: be.adam_step(f(4), f(4), f(4), read_only(f(4)), lr=0.1, step=1)),
        ("sgd_step", "velocity", lambda: be.sgd_step(f(4), f(4), read_only(f(4)), lr=0.1, momentum=0.5)),
        ("l1_l2_grad", "dw", lambda: be.l1_l2_grad(f(4), read_only(f(4)), l1=0.1)),
        ("sum", "into", lambda: be.sum(f(4), into=read_only(np.zeros(1)))),
    ]
    for op, name, call in cases:
        with pytest.raises(ValueError, match=rf"^{op}: {name} is read-only"):
            call()
    # read-only inputs are fine, and run the kernels compiled for writable ones (Numba types
    # read-only arrays apart: a second compile of every kernel they reach)
    a, b = read_only(f(2, 3)), read_only(f(3, 2))
    np.testing.assert_allclose(be.matmul(a, b), a.astype(np.float64) @ b, rtol=1e-5)
    from numba import types
    from numbanet.kernels import numba_internals
    from numbanet.kernels.cpu import gemm
    read_only_forms = [(name, sig) for name, k in vars(gemm).items() if numba_internals.is_cpu_dispatcher(k)
                       for sig in k.signatures if any(isinstance(t, types.Array) and not t.mutable for t in sig)]
    assert not read_only_forms, f"kernels compiled for read-only arrays: {read_only_forms}"


def test_aliased_arrays_are_refused(be):
    sq = be.asarray(randn((3, 3), np.float32, 1))
    other = be.asarray(randn((3, 3), np.float32, 2))
    block = be.asarray(randn((2, 3, 3), np.float32, 3))
    p, g, m, v = (be.asarray(randn((5,), np.float32, s)) for s in range(4))
    cases = [
        ("matmul", "out shares memory with a", lambda: be.matmul(sq, other, out=sq)),
        ("matmul", "out shares memory with b", lambda: be.matmul(other, block[1], out=block[1])),
        ("adam_step", "param shares memory with grad", lambda: be.adam_step(p, p, m, v, lr=0.1, step=1)),
        ("adam_step", "param shares memory with m|m shares memory with v",
         lambda: be.adam_step(p, g, m, m, lr=0.1, step=1)),
        ("sgd_step", "shares memory with velocity", lambda: be.sgd_step(p, g, p, lr=0.1, momentum=0.5)),
        ("l1_l2_grad", "dw shares memory with w", lambda: be.l1_l2_grad(g, g, l1=0.1)),
    ]
    for op, what, call in cases:
        with pytest.raises(ValueError, match=rf"^{op}: .*({what})"):
            call()
    # separate blocks of one allocation do not overlap: allowed, and right
    got = be.to_numpy(be.matmul(block[0], other, out=block[1]))
    want = be.to_numpy(block[0]).astype(np.float64) @ be.to_numpy(other)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- hostile model files

def saved_model(tmp_path):
    from numbanet import nn
    from numbanet.nn.layers import Conv2D, Dense, Flatten, MaxPooling2D
    from numbanet.nn.models import Sequential
    m = Sequential([Conv2D(2, 3, activation="relu", input_shape=(5, 5, 1),
                           kernel_regularizer=nn.regularizers.l2(0.01)),
                    MaxPooling2D(2), Flatten(), Dense(3, activation="softmax")])
    m.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    m.train_on_batch(np.random.default_rng(0).random((4, 5, 5, 1), dtype=np.float32), np.array([0, 1, 2, 0]))
    path = tmp_path / "good.npz"
    m.save(path)
    return m, path


def npy_member(shape, descr="<f4", fortran=False, data=None, nbytes=None):
    """.npy bytes with a header written here (so it can lie) and the given data."""
    header = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)}).encode("latin1")
    pad = 64 - (10 + len(header) + 1) % 64
    header += b" " * pad + b"\n"
    out = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    if data is None:
        data = b"\0" * (nbytes if nbytes is not None else 0)
    return out + data


def rewrite(src, dst, replace=None, add=None, compress=zipfile.ZIP_STORED):
    """A copy of the archive src at dst with some members' bytes replaced or added."""
    replace, add = replace or {}, add or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compress) as zout:
        for name in zin.namelist():
            zout.writestr(name, replace.get(name, zin.read(name)))
        for name, data in add.items():
            zout.writestr(name, data)
    return dst


def config_of(path):
    with np.load(path, allow_pickle=False) as data:
        return json.loads(data["config"].tobytes())


def with_config(src, dst, config_text):
    raw = config_text.encode() if isinstance(config_text, str) else config_text
    return rewrite(src, dst, replace={"config.npy": npy_member((len(raw),), "|u1", data=raw)})


def load(path):
    from numbanet.nn.models import load_model
    return load_model(path)


def assert_invalid(path, match):
    from numbanet.nn.saving import InvalidModelFile
    with pytest.raises(InvalidModelFile, match=match) as info:
        load(path)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"load_model: {path} is not a valid numbanet model file: ")


def test_members_the_config_does_not_name_are_never_read(tmp_path, monkeypatch):
    m, good = saved_model(tmp_path)
    # 400 MB declared, a few bytes stored: reading it would allocate, or fail
    path = rewrite(good, tmp_path / "extra.npz", add={"junk.npy": npy_member((10 ** 8,), nbytes=16),
                                                      "evil.npy": b"\x80\x04 pickle, never opened"})
    opened = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        opened.append(name if isinstance(name, str) else name.filename)
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    loaded = load(path)
    assert "junk.npy" not in opened and "evil.npy" not in opened
    assert opened[0] == "config.npy" and all(n.startswith(("config", "weight_", "opt_")) for n in opened)
    for a, b in zip(loaded.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("member,header,match", [
    ("weight_0000.npy", npy_member((2 ** 40,), nbytes=8), r"weight_0000.npy has shape \(1099511627776,\)"),
    ("weight_0000.npy", npy_member((3, 3, 1, 2), "<f8", nbytes=144), "weight_0000.npy has dtype float64"),
    ("weight_0000.npy", npy_member((3, 3, 1, 2), ">f4", nbytes=72), r"weight_0000.npy has dtype >f4"),
    ("weight_0000.npy", npy_member((3, 3, 1, 2), "|O", nbytes=8), "holds Python objects"),
    ("weight_0000.npy", npy_member((3, 3, 1, 2), fortran=True, nbytes=72), "Fortran order"),
    ("weight_0000.npy", npy_member((3, 3, 1, 2), nbytes=40), r"header declares .* \+ 72"),
    ("weight_0000.npy", npy_member((3, 3, 1, 2), nbytes=90), r"header declares .* \+ 72"),
    ("weight_0001.npy", b"\x93NUMPY\x09\x00garbage", "no valid .npy header"),
    ("weight_0001.npy", b"not npy at all", "no valid .npy header"),
    ("weight_0001.npy", b"\x93NUMPY\x01\x00\xff\xff" + b"{" * 70000, "no valid .npy header"),
    ("opt_0000.npy", npy_member((7,), nbytes=28), "opt_0000.npy has shape"),
    ("config.npy", npy_member((2 ** 34,), "|u1", nbytes=10), "more than the .* allowed"),
    ("config.npy", npy_member((4, 4), "|u1", nbytes=16), "config is not a 1-D byte array"),
])
def test_member_headers_are_checked_before_their_data(tmp_path, member, header, match):
    _, good = saved_model(tmp_path)
    assert_invalid(rewrite(good, tmp_path / "bad.npz", replace={member: header}), match)


@pytest.mark.parametrize("edit,match", [
    (lambda c: "[" * 100000 + "]" * 100000, "config is not valid JSON"),
    (lambda c: '{"format": "numbanet-model", "version": 1, "model": ' + "[" * 50000 + "]" * 50000 + "}",
     "config is not valid JSON"),
    (lambda c: json.dumps(c).replace('"input_shape": [5, 5, 1]', '"input_shape": [1e400, 5, 1]'),
     "architecture cannot be rebuilt"),
    (lambda c: json.dumps(dict(c, model=dict(c["model"], layers="Dense"))), "architecture cannot be rebuilt"),
    (lambda c: json.dumps(dict(c, model=dict(c["model"], layers=[5]))), "architecture cannot be rebuilt"),
    (lambda c: json.dumps(dict(c, model=dict(c["model"], dtype="float16"))), "architecture cannot be rebuilt"),
    (lambda c: json.dumps(dict(c, n_weights="4")), "n_weights='4'"),
    (lambda c: json.dumps(dict(c, n_weights=10 ** 9)), "n_weights=1000000000"),
    (lambda c: json.dumps(dict(c, version=2 ** 70)), "format version"),
    (lambda c: json.dumps([1, 2]), "its format is None"),
    (lambda c: json.dumps(c).replace('"iterations": 1', '"iterations": 1e400'), "iterations must be an int"),
    (lambda c: json.dumps(c).replace('"iterations": 1', '"iterations": -3'), "iterations must be an int"),
    (lambda c: json.dumps(c).replace('"0/kernel/m"', '"0/kernel/zz"'), "matches no weight and slot"),
    (lambda c: json.dumps(c).replace('"0/kernel/m"', "5"), "is not 'layer/weight/slot'"),
    (lambda c: json.dumps(c).replace('"Adam"', '"RMSprop"'), "compile record is broken"),
    (lambda c: json.dumps(c).replace('"CategoricalCrossentropy"', '{"a": 1}'), "compile record is broken"),
    (lambda c: b"\xff\xfe not utf-8", "config is not valid JSON"),
])
def test_hostile_configs_give_one_error_type(tmp_path, edit, match):
    _, good = saved_model(tmp_path)
    assert_invalid(with_config(good, tmp_path / "bad.npz", edit(config_of(good))), match)


def test_truncated_and_corrupted_files_give_one_error_type(tmp_path):
    from numbanet.nn.saving import InvalidModelFile
    m, good = saved_model(tmp_path)
    data = good.read_bytes()
    path = tmp_path / "cut.npz"
    for n in list(range(0, len(data), max(1, len(data) // 40))):
        path.write_bytes(data[:n])
        with pytest.raises(InvalidModelFile):
            load(path)
    rng = np.random.default_rng(0)
    loaded = 0
    for _ in range(40):
        flipped = bytearray(data)
        at = int(rng.integers(len(data)))
        flipped[at] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(flipped))
        try:
            other = load(path)   # a flip in a name, a date or padding can leave the file loadable
        except InvalidModelFile:
            continue
        loaded += 1
        for a, b in zip(other.get_weights(), m.get_weights()):
            np.testing.assert_array_equal(a, b)  # ... but never with other numbers (CRC-checked data)
    assert loaded < 40


def test_unsupported_compression_and_crc_errors(tmp_path):
    _, good = saved_model(tmp_path)
    deflated = rewrite(good, tmp_path / "deflated.npz", compress=zipfile.ZIP_DEFLATED)
    load(deflated)  # np.savez_compressed files are fine
    raw = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("weight_0000.npy")
    # the method field of the member's local header (offset 8) and of its central directory
    # record (offset 10): 99 is AES, unknown here
    raw[info.header_offset + 8:info.header_offset + 10] = (99).to_bytes(2, "little")
    central = raw.find(b"PK\x01\x02")
    while central >= 0:
        name_len = int.from_bytes(raw[central + 28:central + 30], "little")
        if raw[central + 46:central + 46 + name_len] == b"weight_0000.npy":
            raw[central + 10:central + 12] = (99).to_bytes(2, "little")
        central = raw.find(b"PK\x01\x02", central + 4)
    bad = tmp_path / "method.npz"
    bad.write_bytes(bytes(raw))
    assert_invalid(bad, "weight_0000|compression|NotImplementedError|method")
    raw = bytearray(good.read_bytes())
    data_at = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    raw[data_at] ^= 0xFF
    bad.write_bytes(bytes(raw))
    assert_invalid(bad, "CRC|Bad")


# --------------------------------------------------------------------------- killed saves

SAVER = """
import sys
import numpy as np
from numbanet.nn.layers import Dense
from numbanet.nn.models import Sequential
m = Sequential([Dense(512, input_shape=(1024,))])
shapes = [w.shape for w in m.get_weights()]
k = 0
while True:
    k += 1
    m.set_weights([np.full(s, float(k), np.float32) for s in shapes])
    print("saving", k, flush=True)
    m.save(sys.argv[1])
    print("saved", k, flush=True)
"""


def test_a_killed_save_leaves_a_loadable_file(tmp_path):
    """SIGKILL a process in the middle of saving, again and again: the target always loads,
    holding one complete version (the last saved or the one being saved), and what the
    kills leave behind is only temporary files beside it."""
    path = tmp_path / "model.npz"
    env = dict(os.environ, NUMBANET_BACKEND="cpu")
    rng = np.random.default_rng(1)
    kills = 0
    for attempt in range(6):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, text=True)
        try:
            started = []
            while len(started) < 3 + attempt:  # a few complete saves first
                line = proc.stdout.readline()
                assert line, "the saving process exited early"
                if line.startswith("saved"):
                    started.append(int(line.split()[1]))
            time.sleep(float(rng.uniform(0.0, 0.03)))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            rest = proc.stdout.read().split()
            proc.wait()
        kills += 1
        saved = [int(v) for kind, v in zip(rest[::2], rest[1::2]) if kind == "saved"] + started
        model = load(path)
        values = {float(v) for w in model.get_weights() for v in np.unique(w)}
        assert len(values) == 1, f"a mix of versions {sorted(values)}: the file was written in place"
        (value,) = values
        assert max(saved) <= value <= max(saved) + 1, f"loaded version {value}, last complete save {max(saved)}"
        others = [p.name for p in tmp_path.iterdir() if p != path]
        assert all(n.startswith(".tmp-") and n.endswith(".npz") for n in others), others
    assert kills == 6
