"""Every implementation a benchmark case runs on: ours (the numbanet backends "cpu" and
"gpu") and the references (bench/references.py), behind one `prepare(case, impl)`.

Kept apart from cases.py so that the case lists import nothing that imports them back.
"""
import importlib

import numpy as np

from numbanet.bench import references
from numbanet.bench.cases import ADAM, OURS, REFERENCES, SGD, Missing, Prepared, make_inputs


# ---------------------------------------------------------------------- ours
def load_backend(name):
    """The numbanet backend `name`, or Missing with the reason it cannot run here.

    While kernels are being written a backend's `__init__` can fail on a compute module
    that does not exist yet; the modules that do exist are still benchmarked, and an op
    whose module is absent is reported as missing.
    """
    from numbanet import kernels
    if name not in kernels.available_backends():
        raise Missing(f"backend {name} unavailable: {kernels.gpu_status()[1]}" if name == "gpu"
                      else f"backend {name} unavailable")
    try:
        return kernels.get_backend(name)
    except ImportError:
        cls = {"cpu": ("numbanet.kernels.cpu", "CpuBackend"), "gpu": ("numbanet.kernels.gpu", "GpuBackend")}[name]
        be = object.__new__(getattr(importlib.import_module(cls[0]), cls[1]))
        be._missing_modules = {}
        from numbanet.kernels import ops
        for attr, module in ((f.attr, f.module) for f in ops.FAMILIES):
            try:
                setattr(be, attr, importlib.import_module(f"{cls[0]}.{module}"))
            except ImportError as exc:
                be._missing_modules[attr] = str(exc)
        return be


_MODULE_OF = {"matmul": "gemm", "conv2d_forward": "conv", "conv2d_backward": "conv",
              "max_pool2d_forward": "pool", "max_pool2d_backward": "pool", "adam": "optim", "sgd": "optim",
              "attention_forward": "attn", "attention_fwd_bwd": "attn", "lstm_fwd_bwd": "recurrent",
              "gru_fwd_bwd": "recurrent"}


def _prepare_ours(case, be, inp):
    mod = _MODULE_OF.get(case.kind)
    missing = getattr(be, "_missing_modules", {})
    if mod in missing:
        raise Missing(f"kernels.{be.name}.{mod} not built yet")
    if case.kind == "train_step" and missing:
        raise Missing(f"kernels.{be.name} incomplete: {', '.join(sorted(missing))} not built yet")
    d = {k: be.asarray(v) for k, v in inp.items() if k != "y"}
    sync = be.synchronize
    k = case.kind
    if k == "matmul":
        _, _, _, ta, tb = case.params
        out = [None]

        def run():
            out[0] = be.matmul(d["a"], d["b"], trans_a=ta, trans_b=tb)
        return Prepared(run, sync, lambda: be.to_numpy(out[0]))
    if k == "conv2d_forward":
        out = [None]

        def run():
            out[0] = be.conv2d(d["x"], d["w"], d["b"])
        return Prepared(run, sync, lambda: be.to_numpy(out[0]))
    if k == "conv2d_backward":
        out = [None]

        def run():
            out[0] = be.conv2d_backward(d["x"], d["w"], d["dy"])
        return Prepared(run, sync, lambda: tuple(be.to_numpy(a) for a in out[0]))
    if k == "max_pool2d_forward":
        out = [None]

        def run():
            out[0] = be.max_pool2d(d["x"])
        return Prepared(run, sync, lambda: be.to_numpy(out[0][0]))
    if k == "max_pool2d_backward":
        _, idx = be.max_pool2d(d["x"])
        x_shape = tuple(inp["x"].shape)
        out = [None]

        def run():
            out[0] = be.max_pool2d_backward(d["dy"], idx, x_shape)
        return Prepared(run, sync, lambda: be.to_numpy(out[0]))
    if k == "adam":
        step = [0]

        def run():
            step[0] += 1
            be.adam_step(d["param"], d["grad"], d["m"], d["v"], step=step[0], **ADAM)
        return Prepared(run, sync, lambda: be.to_numpy(d["param"]))
    if k == "sgd":
        def run():
            be.sgd_step(d["param"], d["grad"], d["m"], **SGD)
        return Prepared(run, sync, lambda: be.to_numpy(d["param"]))
    if k.startswith("attention"):
        return _prepare_attention(case, be, d)
    if k in ("lstm_fwd_bwd", "gru_fwd_bwd"):
        return _prepare_rnn(case, be, d)
    if k == "train_step":
        return _prepare_train_step(be, inp)
    if k == "charlm_train_step":
        return _prepare_charlm_step(be, case, inp)
    raise ValueError(f"prepare: unknown case kind {k!r}")


def _prepare_attention(case, be, d):
    causal = case.params[4]
    q, k, v, dout = d["q"], d["k"], d["v"], d["dout"]
    out = [None]
    if case.kind == "attention_forward":
        def run():
            out[0] = be.attention(q, k, v, causal=causal)[0]
        return Prepared(run, be.synchronize, lambda: be.to_numpy(out[0]))

    def run():
        o, lse = be.attention(q, k, v, causal=causal)
        out[0] = be.attention_backward(q, k, v, o, dout, lse, causal=causal)
    return Prepared(run, be.synchronize, lambda: tuple(be.to_numpy(a) for a in out[0]))


def _prepare_rnn(case, be, d):
    """be.rnn over the sequence (every output), then be.rnn_backward with dy on every output:
    what a recurrent layer with return_sequences runs in a training step. -> (dx, dkernel,
    drecurrent_kernel, dbias). Inside a step workspace, as fit runs every layer: from the
    second call on, the 39 MB LSTM workspace and the other arrays are reused, not mapped
    fresh by malloc and faulted in page by page each call."""
    from numbanet.kernels.backend import Workspace
    cell = case.kind.split("_")[0]
    x, k, r, b, dy = d["x"], d["kernel"], d["recurrent_kernel"], d["bias"], d["dy"]
    out = [None]
    step = Workspace()

    def run():
        with be.workspace(step):
            _, _, _, ws = be.rnn(x, k, r, b, cell=cell)
            out[0] = be.rnn_backward(x, k, r, b, ws, dy, cell=cell)[:4]
    return Prepared(run, be.synchronize, lambda: tuple(be.to_numpy(a) for a in out[0]))


def _prepare_model_step(be, build, inp):
    """train_on_batch of the model build() makes on `be` (the process default while it builds)."""
    from numbanet import kernels
    previous = kernels.get_backend()
    kernels.set_backend(be.name)
    try:
        model = build()
    finally:
        kernels.set_backend(previous.name)
    x, y = inp["x"], inp["y"]
    out = [None]

    def run():
        out[0] = model.train_on_batch(x, y)
    return Prepared(run, be.synchronize, lambda: np.asarray(out[0], dtype=np.float64))


def _prepare_train_step(be, inp):
    from numbanet.nn.mnist_cnn import build_model
    return _prepare_model_step(be, build_model, inp)   # the article's CNN, as `numbanet train` builds it


def _prepare_charlm_step(be, case, inp):
    from numbanet.nn import charlm
    batch, steps, d, heads, layers, vocab = case.params
    # The model `numbanet train --model charlm` trains, compiled as it compiles it (AdamW,
    # cosine schedule, global gradient clipping).
    return _prepare_model_step(
        be, lambda: charlm.compile_model(charlm.build_model(vocab, steps, d, heads, layers), total_steps=10_000), inp)


# ---------------------------------------------------------------------- entry point
def prepare(case, impl, seed=0):
    """-> Prepared for `impl` on `case`; raises Missing when it cannot run here."""
    inp = make_inputs(case, seed)
    if impl in OURS:
        return _prepare_ours(case, load_backend(impl), inp)
    if impl in REFERENCES:
        return references.prepare(impl, case, inp)
    raise ValueError(f"prepare: unknown implementation {impl!r}: expected one of {OURS + REFERENCES}")


def device_of(impl):
    return "gpu" if impl in ("gpu", "cupy") else "cpu"
