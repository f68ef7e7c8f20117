"""The benchmark cases shared by `numbanet bench` (bench/runner.py) and the pytest suite.

A case is one op at one shape. `implementations.prepare(case, impl)` turns it into a `Prepared`: a
zero-argument `run` that does the timed work on fresh, deterministic inputs, the
`sync` that waits for it (a no-op on the CPU), and `result()` that brings the output
(or the updated parameters) back to the host for the smoke tests' checks.

impl names: the numbanet backends ("cpu", "gpu") and the references ("numpy",
"torch", "cupy", in bench/references.py; implementations.py dispatches). An impl that cannot run a case here raises
`Missing` with the reason; runners report that instead of failing.
"""
import dataclasses

import numpy as np

OURS = ("cpu", "gpu")
REFERENCES = ("numpy", "torch", "cupy")
OPS = ("gemm", "conv", "pool", "optim", "attention", "rnn", "train_step")
UNITS = {"gemm": "GFLOP/s", "conv": "GFLOP/s", "pool": "GB/s", "optim": "GB/s", "attention": "GFLOP/s",
         "rnn": "GFLOP/s", "train_step": "GFLOP/s"}


# Cases with no NumPy twin: the charlm step is measured against PyTorch only (a Transformer's
# backward pass in NumPy would be a second model to maintain for no extra insight).
NO_NUMPY_TWIN = ("charlm_train_step",)


def references_for(case):
    return tuple(r for r in REFERENCES if not (r == "numpy" and case.kind in NO_NUMPY_TWIN))


class Missing(Exception):
    """This implementation cannot run this case here (not installed, not built, no GPU)."""


@dataclasses.dataclass(frozen=True)
class Case:
    op: str          # the table / pytest-benchmark group: one of OPS
    kind: str        # what runs: matmul, conv2d_forward, max_pool2d_backward, adam, ...
    label: str       # the shape as printed
    size: int        # x axis of the plot (GEMM: the square size or M)
    params: tuple    # kind-specific, see make_inputs
    work: float      # FLOPs (GFLOP/s units) or bytes moved (GB/s units) per call
    busy_cores: int = 0  # other processes spinning on a core each while the repeats are timed

    @property
    def unit(self):
        return UNITS[self.op]

    @property
    def id(self):
        return f"{self.kind}-{self.label}"


@dataclasses.dataclass
class Prepared:
    run: object
    sync: object
    result: object


# ---------------------------------------------------------------------- case lists
def _gemm(m, k, n, trans_a=False, trans_b=False, label=None, size=None):
    t = ("T" if trans_a else "N") + ("T" if trans_b else "N")
    label = label or f"{m}x{k}x{n} {t}"
    return Case("gemm", "matmul", label, size or m, (m, k, n, trans_a, trans_b), 2.0 * m * k * n)


def _conv_flops(x_shape, w_shape):
    n, h, w_, _ = x_shape
    kh, kw, cin, cout = w_shape
    return 2.0 * n * (h - kh + 1) * (w_ - kw + 1) * kh * kw * cin * cout


def _conv(x_shape, w_shape, backward, layer):
    kind = "conv2d_backward" if backward else "conv2d_forward"
    label = f"{layer} {'bwd' if backward else 'fwd'} x{tuple(x_shape)} w{tuple(w_shape)}"
    # Backward computes dx and dw, each as much work as the forward product.
    flops = _conv_flops(x_shape, w_shape) * (2 if backward else 1)
    return Case("conv", kind, label, x_shape[1], (tuple(x_shape), tuple(w_shape)), flops)


def _pool(x_shape, backward):
    n, h, w, c = x_shape
    y = n * (h // 2) * (w // 2) * c
    # forward reads x, writes y and the int32 indices; backward reads dy and indices, writes dx
    nbytes = 4 * (n * h * w * c + 2 * y)
    kind = "max_pool2d_backward" if backward else "max_pool2d_forward"
    return Case("pool", kind, f"{'bwd' if backward else 'fwd'} x{tuple(x_shape)} 2x2", h, (tuple(x_shape),), float(nbytes))


def _optim(kind, n):
    # Adam reads p, g, m, v and writes p, m, v; SGD with momentum reads p, g, v, writes p, v.
    per = 28 if kind == "adam" else 20
    label = f"{kind} {n // 1_000_000}M params" if n >= 1_000_000 else f"{kind} {n} params"
    return Case("optim", kind, label, n, (n,), float(per * n))


# The article's CNN: conv 3x3x1x32 relu, pool 2, conv 3x3x32x64 relu, pool 2, flatten, dense 128 relu, dense 10.
CNN_LAYERS = (((28, 28, 1), (3, 3, 1, 32)), ((13, 13, 32), (3, 3, 32, 64)))


def _train_step_flops(batch):
    conv = [_conv_flops((batch,) + x, w) for x, w in CNN_LAYERS]
    dense = [2.0 * batch * 1600 * 128, 2.0 * batch * 128 * 10]
    # forward + (dw, dx) per layer, less the first layer's dx, which training skips
    return 3 * (sum(conv) + sum(dense)) - conv[0]


def _train_step(batch, busy_cores=0):
    busy = f", {busy_cores} core busy" if busy_cores else ""
    return Case("train_step", "train_step", f"article CNN, batch {batch}{busy}", batch, (batch,),
                _train_step_flops(batch), busy_cores)


# The default charlm (nn/charlm.py): batch, steps, d_model, heads, blocks, vocabulary.
CHARLM = (32, 128, 128, 4, 2, 97)
# Twice as wide and twice as deep (the heads stay 32 wide): where the step's time moves
# from attention and the small per-token ops to the GEMMs (24 d^2 per token and block).
CHARLM_WIDE = (32, 128, 256, 8, 4, 97)


def _charlm_flops(batch, steps, d, heads, layers, vocab):
    """Forward: per token and block 24 d^2 (q, k, v, output projections 8 d^2, the 4d MLP
    16 d^2) and 2 T d for the causal scores and their mix (T/2 keys on average), plus the
    2 d V output projection; backward twice that."""
    per_token = layers * (24 * d * d + 2 * steps * d) + 2 * d * vocab
    return 3.0 * batch * steps * per_token


def _charlm_step(batch=CHARLM[0], steps=CHARLM[1], d=CHARLM[2], heads=CHARLM[3], layers=CHARLM[4],
                 vocab=CHARLM[5]):
    params = (batch, steps, d, heads, layers, vocab)
    return Case("train_step", "charlm_train_step", f"charlm {layers}x{heads}h d{d}, {batch}x{steps} chars", batch,
                params, _charlm_flops(*params))


def _attention(batch, t, heads, head_dim, causal, backward):
    """Self-attention, q/k/v (batch, t, heads, head_dim); backward: forward + backward, as a
    training step runs them. FLOPs: 4 * T^2 * D per (batch, head) forward (QK^T and PV) and
    2.5x that backward (dV, dP, dQ, dK and the recomputed QK^T), halved with a causal mask."""
    fwd = 4.0 * batch * heads * t * t * head_dim * (0.5 if causal else 1.0)
    kind = "attention_fwd_bwd" if backward else "attention_forward"
    label = (f"{'fwd+bwd' if backward else 'fwd'} {'causal' if causal else 'full'} "
             f"B{batch} H{heads} T{t} D{head_dim}")
    return Case("attention", kind, label, t, (batch, t, heads, head_dim, causal), fwd * (3.5 if backward else 1.0))


RNN_GATES = {"lstm": 4, "gru": 3}


def _rnn(cell, batch, t, features, units):
    """A recurrent layer forward + backward over a whole sequence (return_sequences, dy on
    every output): x (batch, t, features), `units` units, Keras's weights. FLOPs: the
    forward's input and recurrent products, 2 B T (F + H) G H, and the backward's three
    (dx, the weight gradients, dh through the recurrent kernel), twice that; the gates'
    arithmetic is not counted."""
    g = RNN_GATES[cell]
    fwd = 2.0 * batch * t * (features + units) * g * units
    label = f"{cell.upper()} fwd+bwd B{batch} T{t} F{features} H{units}"
    return Case("rnn", f"{cell}_fwd_bwd", label, t, (batch, t, features, units), 3.0 * fwd)


def rnn_cases(quick=False):
    """The issue's shape: batch 64, 100 steps, 128 inputs, 256 units, LSTM and GRU."""
    return [_rnn(cell, 64, 100, 128, 256) for cell in ("lstm", "gru")]


def attention_cases(quick=False):
    """The target shape (batch 32, heads 4, T 128, head dim 32) with and without the causal
    mask; the full list adds the forward alone and longer sequences."""
    cases = [_attention(32, 128, 4, 32, causal, True) for causal in (False, True)]
    if quick:
        return cases
    cases += [_attention(32, 128, 4, 32, causal, False) for causal in (False, True)]
    cases += [_attention(4, 512, 4, 64, True, True), _attention(1, 2048, 4, 64, True, True)]
    return cases


def cnn_gemm_cases(batch=128):
    """The article's CNN's products: Dense layers forward/backward and the convs' implicit GEMMs."""
    return [
        _gemm(batch, 1600, 128, label=f"dense1 fwd {batch}x1600x128 NN"),
        _gemm(1600, batch, 128, trans_a=True, label=f"dense1 dW 1600x{batch}x128 TN"),
        _gemm(batch, 128, 1600, trans_b=True, label=f"dense1 dx {batch}x128x1600 NT"),
        _gemm(batch, 128, 10, label=f"dense2 fwd {batch}x128x10 NN"),
        _gemm(128, batch, 10, trans_a=True, label=f"dense2 dW 128x{batch}x10 TN"),
        _gemm(batch, 10, 128, trans_b=True, label=f"dense2 dx {batch}x10x128 NT"),
        _gemm(batch * 26 * 26, 9, 32, label=f"conv1 implicit {batch * 26 * 26}x9x32 NN"),
        _gemm(batch * 11 * 11, 288, 64, label=f"conv2 implicit {batch * 11 * 11}x288x64 NN"),
    ]


def full_cases():
    cases = [_gemm(s, s, s, label=f"{s}x{s}x{s}") for s in (256, 512, 1024, 2048)]
    cases += cnn_gemm_cases()
    for i, (x, w) in enumerate(CNN_LAYERS, 1):
        cases += [_conv((128,) + x, w, False, f"conv{i}"), _conv((128,) + x, w, True, f"conv{i}")]
    for x in ((128, 26, 26, 32), (128, 11, 11, 64)):
        cases += [_pool(x, False), _pool(x, True)]
    cases += [_optim(k, n) for k in ("adam", "sgd") for n in (1_000_000, 10_000_000)]
    cases += attention_cases()
    cases += rnn_cases()
    cases += [_train_step(128), _train_step(128, busy_cores=1), _charlm_step(), _charlm_step(*CHARLM_WIDE)]
    return cases


def quick_cases():
    """Under a minute on the 2-core machine: every shape a performance target names
    (GEMM 1024^3 and 2048^3, both conv layers, Adam on 10M, the training step), plus
    smaller GEMMs, the CNN's two main products, pooling and SGD."""
    cases = [_gemm(s, s, s, label=f"{s}x{s}x{s}") for s in (256, 512, 1024, 2048)]
    cases += [cnn_gemm_cases()[0], cnn_gemm_cases()[7]]
    for i, (x, w) in enumerate(CNN_LAYERS, 1):
        cases += [_conv((128,) + x, w, False, f"conv{i}"), _conv((128,) + x, w, True, f"conv{i}")]
    cases += [_pool((128, 26, 26, 32), False), _pool((128, 26, 26, 32), True)]
    cases += [_optim("adam", 10_000_000), _optim("sgd", 1_000_000)]
    cases += attention_cases(quick=True)
    cases += rnn_cases(quick=True)
    cases += [_train_step(128), _train_step(128, busy_cores=1), _charlm_step()]
    return cases


def tiny_cases():
    """Every op at toy sizes: for the runner's tests and the pytest smoke run's checks."""
    return [
        _gemm(32, 24, 16, label="32x24x16"),
        _gemm(24, 16, 8, trans_a=True, trans_b=True),
        _conv((2, 8, 8, 3), (3, 3, 3, 4), False, "tiny"),
        _conv((2, 8, 8, 3), (3, 3, 3, 4), True, "tiny"),
        _pool((2, 6, 6, 3), False),
        _pool((2, 7, 7, 3), True),
        _optim("adam", 1000),
        _optim("sgd", 1000),
        _attention(2, 8, 2, 4, False, False),
        _attention(2, 9, 2, 4, True, True),
        _rnn("lstm", 3, 4, 5, 6),
        _rnn("gru", 3, 4, 5, 6),
        _train_step(4),
        _train_step(4, busy_cores=1),
        _charlm_step(2, 8, 16, 2, 1, 11),
    ]


def cases_for(ops, quick=False, tiny=False):
    chosen = tiny_cases() if tiny else quick_cases() if quick else full_cases()
    return [c for c in chosen if c.op in ops]


# ---------------------------------------------------------------------- inputs
ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7)
SGD = dict(lr=1e-2, momentum=0.9)


def make_inputs(case, seed=0):
    """Host float32 inputs, the same for every impl (the smoke tests compare outputs)."""
    rng = np.random.default_rng(seed)
    f32 = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
    k, p = case.kind, case.params
    if k == "matmul":
        m, kk, n, ta, tb = p
        return {"a": f32(*((kk, m) if ta else (m, kk))), "b": f32(*((n, kk) if tb else (kk, n)))}
    if k.startswith("conv2d"):
        xs, ws = p
        x, w = f32(*xs), f32(*ws) * np.float32(0.1)
        n, h, wd, _ = xs
        dy = f32(n, h - ws[0] + 1, wd - ws[1] + 1, ws[3])
        return {"x": x, "w": w, "b": f32(ws[3]), "dy": dy}
    if k.startswith("max_pool2d"):
        (xs,) = p
        n, h, w, c = xs
        return {"x": f32(*xs), "dy": f32(n, h // 2, w // 2, c)}
    if k in ("adam", "sgd"):
        (n,) = p
        return {"param": f32(n), "grad": f32(n), "m": np.abs(f32(n)) * np.float32(0.01),
                "v": np.abs(f32(n)) * np.float32(0.01)}
    if k.startswith("attention"):
        batch, t, heads, head_dim, _ = p
        return {name: f32(batch, t, heads, head_dim) for name in ("q", "k", "v", "dout")}
    if k in ("lstm_fwd_bwd", "gru_fwd_bwd"):
        batch, t, features, units = p
        g = RNN_GATES[k.split("_")[0]]
        # Keras's initial scales (glorot-like kernels, an orthogonal-like recurrent kernel),
        # so the gates neither saturate nor vanish over 100 steps.
        return {"x": f32(batch, t, features), "dy": f32(batch, t, units),
                "kernel": f32(features, g * units) * np.float32(np.sqrt(1.0 / (features + g * units))),
                "recurrent_kernel": f32(units, g * units) * np.float32(np.sqrt(1.0 / (g * units))),
                "bias": f32(*((2, g * units) if g == 3 else (g * units,))) * np.float32(0.1)}
    if k == "train_step":
        (batch,) = p
        return {"x": rng.random((batch, 28, 28, 1), dtype=np.float32),
                "y": rng.integers(0, 10, size=batch).astype(np.int64)}
    if k == "charlm_train_step":
        batch, steps, _, _, _, vocab = p
        return {"x": rng.integers(0, vocab, size=(batch, steps)).astype(np.int32),
                "y": rng.integers(0, vocab, size=(batch, steps)).astype(np.int32)}
    raise ValueError(f"make_inputs: unknown case kind {k!r}")
