"""The references numbanet is measured against: NumPy (OpenBLAS), PyTorch CPU, CuPy.

Each reference does the same work as our op on the same inputs, in its own natural
layout prepared before timing (PyTorch convolves NCHW tensors). The NumPy code is
written against an array module `xp`, so CuPy runs the very same code on the GPU.
"""
import os

import numpy as np

from numbanet.bench.cases import ADAM, SGD, Missing, Prepared


# ---------------------------------------------------------------------- array-module ops
def conv2d_forward(xp, x, w, b):
    kh, kw = w.shape[:2]
    patches = xp.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))  # n,oh,ow,c,kh,kw
    return xp.tensordot(patches, w, axes=([3, 4, 5], [2, 0, 1])) + b


def conv2d_backward(xp, x, w, dy):
    kh, kw, c, cout = w.shape
    n, oh, ow, _ = dy.shape
    patches = xp.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    dw = xp.tensordot(patches, dy, axes=([0, 1, 2], [0, 1, 2])).transpose(1, 2, 0, 3)
    dx = xp.zeros_like(x)
    dy2 = dy.reshape(n * oh * ow, cout)
    for i in range(kh):
        for j in range(kw):
            dx[:, i:i + oh, j:j + ow, :] += (dy2 @ w[i, j].T).reshape(n, oh, ow, c)
    return dx, xp.ascontiguousarray(dw), dy2.sum(axis=0)


def max_pool2d_forward(xp, x):
    """2x2 stride-2 valid max pooling -> (y, int32 indices h * W + w into x), as ours returns."""
    n, h, w, c = x.shape
    oh, ow = h // 2, w // 2
    win = x[:, :2 * oh, :2 * ow, :].reshape(n, oh, 2, ow, 2, c).transpose(0, 1, 3, 5, 2, 4)
    win = win.reshape(n, oh, ow, c, 4)
    arg = win.argmax(axis=-1)
    y = xp.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    rows = 2 * xp.arange(oh).reshape(1, oh, 1, 1) + arg // 2
    cols = 2 * xp.arange(ow).reshape(1, 1, ow, 1) + arg % 2
    return y, (rows * w + cols).astype(xp.int32)


def max_pool2d_backward(xp, dy, indices, x_shape):
    n, h, w, c = x_shape
    dx = xp.zeros((n, h * w, c), dtype=dy.dtype)
    xp.put_along_axis(dx, indices.reshape(n, -1, c).astype(xp.intp), dy.reshape(n, -1, c), axis=1)
    return dx.reshape(x_shape)


def adam_step(xp, p, g, m, v, step, scratch, lr, beta1, beta2, eps):
    """Keras's Adam, in place with out= so that no step allocates."""
    t = step
    lr_t = lr * np.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
    m *= beta1
    xp.multiply(g, 1.0 - beta1, out=scratch)
    m += scratch
    v *= beta2
    xp.multiply(g, g, out=scratch)
    scratch *= 1.0 - beta2
    v += scratch
    xp.sqrt(v, out=scratch)
    scratch += eps
    xp.divide(m, scratch, out=scratch)
    scratch *= lr_t
    p -= scratch


def sgd_step(xp, p, g, vel, scratch, lr, momentum):
    """Keras's SGD with momentum: v = momentum * v - lr * g; p += v."""
    vel *= momentum
    xp.multiply(g, lr, out=scratch)
    vel -= scratch
    p += vel


def attention_forward(xp, q, k, v, causal):
    """Scaled-dot-product attention on (B, H, T, D) arrays -> (out, probabilities)."""
    s = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1.0 / np.sqrt(q.shape[3]))
    if causal:
        t = q.shape[2]
        s = xp.where(xp.asarray(np.tril(np.ones((t, t), bool))), s, np.float32(-np.inf))
    p = xp.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return p @ v, p


def attention_backward(xp, q, k, v, out, p, dout):
    """(dq, dk, dv) from the forward's probabilities p (kept, as NumPy code would keep them)."""
    scale = np.float32(1.0 / np.sqrt(q.shape[3]))
    dv = p.transpose(0, 1, 3, 2) @ dout
    dp = dout @ v.transpose(0, 1, 3, 2)
    ds = p * (dp - (dout * out).sum(axis=-1, keepdims=True))
    return (ds @ k) * scale, (ds.transpose(0, 1, 3, 2) @ q) * scale, dv


def _sigmoid(xp, z):
    return 1 / (1 + xp.exp(-z))


def rnn_forward_backward(xp, cell, x, kernel, rec, bias, dy):
    """Keras's LSTM (gates i, f, c, o) or GRU (z, r, h, reset_after) over every step from
    zero states, then backward through time with dy on every output, step by step in
    NumPy: -> (dx, dkernel, drecurrent_kernel, dbias)."""
    b, t, f = x.shape
    h_units = rec.shape[0]
    lstm = cell == "lstm"
    in_bias = bias if lstm else bias[0]
    proj = (x.reshape(b * t, f) @ kernel + in_bias).reshape(b, t, -1)
    h = xp.zeros((b, h_units), x.dtype)
    c = xp.zeros_like(h)
    saved = []
    for s in range(t):
        if lstm:
            z = proj[:, s] + h @ rec
            i, fg, o = (_sigmoid(xp, z[:, k * h_units:(k + 1) * h_units]) for k in (0, 1, 3))
            g = xp.tanh(z[:, 2 * h_units:3 * h_units])
            c_new = fg * c + i * g
            tc = xp.tanh(c_new)
            saved.append((h, c, i, fg, g, o, tc))
            h, c = o * tc, c_new
        else:
            rz = h @ rec + bias[1]
            zx = proj[:, s]
            zg = _sigmoid(xp, zx[:, :h_units] + rz[:, :h_units])
            rg = _sigmoid(xp, zx[:, h_units:2 * h_units] + rz[:, h_units:2 * h_units])
            n = xp.tanh(zx[:, 2 * h_units:] + rg * rz[:, 2 * h_units:])
            saved.append((h, zg, rg, n, rz[:, 2 * h_units:]))
            h = zg * h + (1 - zg) * n
    dzx = xp.empty_like(proj)
    dzr = xp.empty_like(proj)
    hprev = xp.empty((b, t, h_units), x.dtype)
    dh = xp.zeros((b, h_units), x.dtype)
    dc = xp.zeros_like(dh)
    for s in range(t - 1, -1, -1):
        dh = dh + dy[:, s]
        if lstm:
            hp, cp, i, fg, g, o, tc = saved[s]
            dc = dc + dh * o * (1 - tc * tc)
            dz = xp.concatenate([dc * g * i * (1 - i), dc * cp * fg * (1 - fg), dc * i * (1 - g * g),
                                 dh * tc * o * (1 - o)], axis=1)
            dc = dc * fg
            dzx[:, s] = dz
            dzr[:, s] = dz
            dh = dz @ rec.T
        else:
            hp, zg, rg, n, rh = saved[s]
            dn = dh * (1 - zg) * (1 - n * n)
            dzz = dh * (hp - n) * zg * (1 - zg)
            dr = dn * rh * rg * (1 - rg)
            dzx[:, s] = xp.concatenate([dzz, dr, dn], axis=1)
            dzr[:, s] = xp.concatenate([dzz, dr, dn * rg], axis=1)
            dh = dh * zg + dzr[:, s] @ rec.T
        hprev[:, s] = hp
    dzx2, dzr2 = dzx.reshape(b * t, -1), dzr.reshape(b * t, -1)
    dx = (dzx2 @ kernel.T).reshape(b, t, f)
    dkernel = x.reshape(b * t, f).T @ dzx2
    drec = hprev.reshape(b * t, h_units).T @ dzr2
    dbias = dzx2.sum(axis=0) if lstm else xp.stack([dzx2.sum(axis=0), dzr2.sum(axis=0)])
    return dx, dkernel, drec, dbias


# ---------------------------------------------------------------------- NumPy / CuPy
def _xp_prepared(xp, case, inp, sync, to_host):
    d = {k: xp.asarray(v) for k, v in inp.items()}
    k = case.kind
    out = [None]
    if k == "matmul":
        _, _, _, ta, tb = case.params
        a = d["a"].T if ta else d["a"]
        b = d["b"].T if tb else d["b"]

        def run():
            out[0] = a @ b
        return Prepared(run, sync, lambda: to_host(out[0]))
    if k == "conv2d_forward":
        def run():
            out[0] = conv2d_forward(xp, d["x"], d["w"], d["b"])
        return Prepared(run, sync, lambda: to_host(out[0]))
    if k == "conv2d_backward":
        def run():
            out[0] = conv2d_backward(xp, d["x"], d["w"], d["dy"])
        return Prepared(run, sync, lambda: tuple(to_host(a) for a in out[0]))
    if k == "max_pool2d_forward":
        def run():
            out[0] = max_pool2d_forward(xp, d["x"])
        return Prepared(run, sync, lambda: to_host(out[0][0]))
    if k == "max_pool2d_backward":
        _, idx = max_pool2d_forward(xp, d["x"])
        x_shape = tuple(inp["x"].shape)

        def run():
            out[0] = max_pool2d_backward(xp, d["dy"], idx, x_shape)
        return Prepared(run, sync, lambda: to_host(out[0]))
    if k == "adam":
        step, scratch = [0], xp.empty_like(d["param"])

        def run():
            step[0] += 1
            adam_step(xp, d["param"], d["grad"], d["m"], d["v"], step[0], scratch, **{
                "lr": ADAM["lr"], "beta1": ADAM["beta1"], "beta2": ADAM["beta2"], "eps": ADAM["eps"]})
        return Prepared(run, sync, lambda: to_host(d["param"]))
    if k == "sgd":
        scratch = xp.empty_like(d["param"])

        def run():
            sgd_step(xp, d["param"], d["grad"], d["m"], scratch, SGD["lr"], SGD["momentum"])
        return Prepared(run, sync, lambda: to_host(d["param"]))
    if k.startswith("attention"):
        causal = case.params[4]
        # (B, T, H, D) -> each head's (T, D) matrix contiguous, as NumPy's matmul wants it;
        # done before timing, and the results are turned back for the comparison.
        q, kk, v, dout = (xp.ascontiguousarray(d[n].transpose(0, 2, 1, 3)) for n in ("q", "k", "v", "dout"))
        back = lambda a: to_host(a).transpose(0, 2, 1, 3)  # noqa: E731
        if k == "attention_forward":
            def run():
                out[0] = attention_forward(xp, q, kk, v, causal)[0]
            return Prepared(run, sync, lambda: back(out[0]))

        def run():
            o, p = attention_forward(xp, q, kk, v, causal)
            out[0] = attention_backward(xp, q, kk, v, o, p, dout)
        return Prepared(run, sync, lambda: tuple(back(a) for a in out[0]))
    if k in ("lstm_fwd_bwd", "gru_fwd_bwd"):
        def run():
            out[0] = rnn_forward_backward(xp, k.split("_")[0], d["x"], d["kernel"], d["recurrent_kernel"],
                                          d["bias"], d["dy"])
        return Prepared(run, sync, lambda: tuple(to_host(a) for a in out[0]))
    if k == "train_step":
        return _xp_train_step(xp, d, sync)
    if k == "charlm_train_step":
        raise Missing("no NumPy twin of the charlm model (PyTorch is its reference)")
    raise ValueError(f"references: unknown case kind {k!r}")


def _xp_train_step(xp, d, sync):
    """The article's CNN, one Adam step on one batch, from the ops above (Glorot-uniform init)."""
    rng = np.random.default_rng(1)

    def glorot(shape, fan_in, fan_out):
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        return xp.asarray(rng.uniform(-lim, lim, shape).astype(np.float32))

    params = [glorot((3, 3, 1, 32), 9, 288), xp.zeros(32, np.float32),
              glorot((3, 3, 32, 64), 288, 576), xp.zeros(64, np.float32),
              glorot((1600, 128), 1600, 128), xp.zeros(128, np.float32),
              glorot((128, 10), 128, 10), xp.zeros(10, np.float32)]
    state = [(xp.zeros_like(p), xp.zeros_like(p), xp.empty_like(p)) for p in params]
    step, out = [0], [None]
    x, y = d["x"], d["y"]

    def run():
        w1, b1, w2, b2, w3, b3, w4, b4 = params
        n = x.shape[0]
        a1 = xp.maximum(conv2d_forward(xp, x, w1, b1), 0)
        p1, i1 = max_pool2d_forward(xp, a1)
        a2 = xp.maximum(conv2d_forward(xp, p1, w2, b2), 0)
        p2, i2 = max_pool2d_forward(xp, a2)
        f = p2.reshape(n, -1)
        a3 = xp.maximum(f @ w3 + b3, 0)
        z = a3 @ w4 + b4
        z = z - z.max(axis=1, keepdims=True)
        e = xp.exp(z)
        prob = e / e.sum(axis=1, keepdims=True)
        loss = -xp.log(prob[xp.arange(n), y]).mean()
        dz = prob
        dz[xp.arange(n), y] -= 1
        dz /= n
        grads = [None] * 8
        grads[6], grads[7] = a3.T @ dz, dz.sum(axis=0)
        da3 = (dz @ w4.T) * (a3 > 0)
        grads[4], grads[5] = f.T @ da3, da3.sum(axis=0)
        dp2 = (da3 @ w3.T).reshape(p2.shape)
        da2 = max_pool2d_backward(xp, dp2, i2, a2.shape) * (a2 > 0)
        dp1, grads[2], grads[3] = conv2d_backward(xp, p1, w2, da2)
        da1 = max_pool2d_backward(xp, dp1, i1, a1.shape) * (a1 > 0)
        # the first layer's dx is never used in training; only its weight gradients are taken
        kh, kw = w1.shape[:2]
        patches = xp.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
        grads[0] = xp.ascontiguousarray(
            xp.tensordot(patches, da1, axes=([0, 1, 2], [0, 1, 2])).transpose(1, 2, 0, 3))
        grads[1] = da1.sum(axis=(0, 1, 2))
        step[0] += 1
        for p, g, (m, v, scratch) in zip(params, grads, state):
            adam_step(xp, p, xp.ascontiguousarray(g, dtype=np.float32), m, v, step[0], scratch,
                      ADAM["lr"], ADAM["beta1"], ADAM["beta2"], ADAM["eps"])
        out[0] = loss
    return Prepared(run, sync, lambda: np.asarray(float(out[0])))


def _numpy(case, inp):
    return _xp_prepared(np, case, inp, lambda: None, np.asarray)


def _cupy(case, inp):
    try:
        import cupy
    except ImportError:
        raise Missing("CuPy is not installed (pip install cupy-cuda12x)") from None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise Missing("CuPy: no CUDA device")
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        raise Missing(f"CuPy: no usable CUDA device ({exc})") from None
    if case.kind == "max_pool2d_backward" and not hasattr(cupy, "put_along_axis"):
        raise Missing("CuPy has no put_along_axis in this version")

    def sync():
        cupy.cuda.Device().synchronize()
    return _xp_prepared(cupy, case, inp, sync, cupy.asnumpy)


# ---------------------------------------------------------------------- PyTorch CPU
_torch_threads_set = False


def load_torch_first():
    """Import PyTorch, when it is installed, before Numba starts its threads.

    Numba's OpenMP threading layer and PyTorch each bring an OpenMP runtime called
    libgomp.so.1, and the dynamic loader gives both the copy that loaded first. When
    Numba's (the system's) came first, PyTorch's scaled_dot_product_attention forward +
    backward at (32, 4, 128, 32) took 0.9-1.5 s instead of 24 ms here: a reference that
    slow would flatter every ratio. With PyTorch's copy first, both run at speed. Call it
    before anything asks Numba for its thread count or runs a parallel kernel."""
    import importlib.util
    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401


def torch_module():
    """torch with its intra-op threads set to the machine's cores, or Missing."""
    global _torch_threads_set
    try:
        import torch
    except ImportError:
        raise Missing("PyTorch is not installed (pip install torch)") from None
    if not _torch_threads_set:
        torch.set_num_threads(os.cpu_count() or 1)
        _torch_threads_set = True
    return torch


def _torch(case, inp):
    torch = torch_module()
    F = torch.nn.functional
    k = case.kind
    out = [None]
    nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
    nhwc = lambda t: t.permute(0, 2, 3, 1).contiguous().numpy()  # noqa: E731
    none = lambda: None  # noqa: E731
    if k == "matmul":
        _, _, _, ta, tb = case.params
        a, b = torch.from_numpy(inp["a"]), torch.from_numpy(inp["b"])
        a = a.t() if ta else a
        b = b.t() if tb else b

        def run():
            out[0] = a @ b
        return Prepared(run, none, lambda: out[0].numpy())
    if k.startswith("conv2d"):
        x, dy = nchw(inp["x"]), nchw(inp["dy"])
        w = torch.from_numpy(np.ascontiguousarray(inp["w"].transpose(3, 2, 0, 1)))  # OIHW
        b = torch.from_numpy(inp["b"])
        if k == "conv2d_forward":
            def run():
                with torch.no_grad():
                    out[0] = F.conv2d(x, w, b)
            return Prepared(run, none, lambda: nhwc(out[0]))

        def run():
            out[0] = torch.ops.aten.convolution_backward(
                dy, x, w, [w.shape[0]], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, True])
        return Prepared(run, none, lambda: (nhwc(out[0][0]), out[0][1].permute(2, 3, 1, 0).numpy(),
                                            out[0][2].numpy()))
    if k.startswith("max_pool2d"):
        x = nchw(inp["x"])
        if k == "max_pool2d_forward":
            def run():
                out[0] = F.max_pool2d(x, 2, return_indices=True)
            return Prepared(run, none, lambda: nhwc(out[0][0]))
        _, idx = F.max_pool2d(x, 2, return_indices=True)
        dy = nchw(inp["dy"])

        def run():
            out[0] = torch.ops.aten.max_pool2d_with_indices_backward(dy, x, [2, 2], [2, 2], [0, 0], [1, 1],
                                                                     False, idx)
        return Prepared(run, none, lambda: nhwc(out[0]))
    if k in ("adam", "sgd"):
        p = torch.nn.Parameter(torch.from_numpy(inp["param"].copy()))
        p.grad = torch.from_numpy(inp["grad"])
        if k == "adam":
            opt = torch.optim.Adam([p], lr=ADAM["lr"], betas=(ADAM["beta1"], ADAM["beta2"]), eps=ADAM["eps"])
        else:
            opt = torch.optim.SGD([p], lr=SGD["lr"], momentum=SGD["momentum"])

        def run():
            opt.step()
        return Prepared(run, none, lambda: p.detach().numpy().copy())
    if k.startswith("attention"):
        causal = case.params[4]
        # PyTorch's own layout (B, H, T, D), contiguous, prepared before timing.
        q, kk, v, dout = (torch.from_numpy(np.ascontiguousarray(inp[n].transpose(0, 2, 1, 3)))
                          for n in ("q", "k", "v", "dout"))
        back = lambda t: t.detach().numpy().transpose(0, 2, 1, 3)  # noqa: E731
        if k == "attention_forward":
            def run():
                with torch.no_grad():
                    out[0] = F.scaled_dot_product_attention(q, kk, v, is_causal=causal)
            return Prepared(run, none, lambda: back(out[0]))
        for t in (q, kk, v):
            t.requires_grad_(True)

        def run():
            o = F.scaled_dot_product_attention(q, kk, v, is_causal=causal)
            out[0] = torch.autograd.grad(o, (q, kk, v), dout)
        return Prepared(run, none, lambda: tuple(back(t) for t in out[0]))
    if k == "train_step":
        torch.manual_seed(0)
        nn = torch.nn
        model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))
        opt = torch.optim.Adam(model.parameters(), lr=ADAM["lr"], eps=ADAM["eps"])
        x, y = nchw(inp["x"]), torch.from_numpy(inp["y"])

        def run():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            out[0] = loss.item()
        return Prepared(run, none, lambda: np.asarray(out[0]))
    if k == "charlm_train_step":
        return _torch_charlm_step(torch, case, inp)
    if k in ("lstm_fwd_bwd", "gru_fwd_bwd"):
        return _torch_rnn(torch, case, inp)
    raise ValueError(f"references: unknown case kind {k!r}")


def _torch_charlm_step(torch, case, inp):
    """The PyTorch twin of nn/charlm.py's model and step: the same shapes, float32, the
    same pre-norm blocks (LayerNorm eps 1e-3 as Keras's, separate q/k/v/output
    projections, F.scaled_dot_product_attention with is_causal, exact GELU), cross-entropy
    over every position, global gradient clipping to norm 1 and AdamW."""
    nn, F = torch.nn, torch.nn.functional
    batch, steps, d, heads, layers, vocab = case.params
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-3), nn.LayerNorm(d, eps=1e-3)
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
            self.mlp_in, self.mlp_out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            h = self.norm1(x)
            split = lambda t: t.view(batch, steps, heads, d // heads).transpose(1, 2)  # noqa: E731
            a = F.scaled_dot_product_attention(split(self.q(h)), split(self.k(h)), split(self.v(h)), is_causal=True)
            x = x + self.o(a.transpose(1, 2).reshape(batch, steps, d))
            return x + self.mlp_out(F.gelu(self.mlp_in(self.norm2(x))))

    class CharLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens = nn.Embedding(vocab, d)
            self.positions = nn.Parameter(torch.randn(steps, d) * 0.02)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.norm = nn.LayerNorm(d, eps=1e-3)
            self.logits = nn.Linear(d, vocab)

        def forward(self, ids):
            x = self.tokens(ids) + self.positions
            for block in self.blocks:
                x = block(x)
            return self.logits(self.norm(x))

    model = CharLM()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, eps=1e-7)
    x, y = torch.from_numpy(inp["x"]).long(), torch.from_numpy(inp["y"]).long()
    out = [None]

    def run():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        out[0] = loss.item()
    return Prepared(run, lambda: None, lambda: np.asarray(out[0]))


def _torch_rnn(torch, case, inp):
    """torch.nn.LSTM / torch.nn.GRU (batch_first) forward, then autograd with dy on every
    output. The weights are Keras's, transposed into PyTorch's (gates out, inputs in): the
    LSTM's gate order i, f, g, o is Keras's; the GRU's is r, z, n against Keras's z, r, h
    (the same equations as reset_after=True), so its blocks are swapped in and out.
    -> (dx, dkernel, drecurrent_kernel, dbias) in Keras's layout."""
    cell = case.kind.split("_")[0]
    batch, t, features, units = case.params
    lstm = cell == "lstm"
    layer = (torch.nn.LSTM if lstm else torch.nn.GRU)(features, units, batch_first=True)
    swap = (lambda a: a) if lstm else (lambda a: np.concatenate([a[..., units:2 * units], a[..., :units],
                                                                  a[..., 2 * units:]], axis=-1))
    kernel, rec, bias = inp["kernel"], inp["recurrent_kernel"], inp["bias"]
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.from_numpy(np.ascontiguousarray(swap(kernel).T)))
        layer.weight_hh_l0.copy_(torch.from_numpy(np.ascontiguousarray(swap(rec).T)))
        if lstm:   # Keras has one bias: PyTorch's two add up to it
            layer.bias_ih_l0.copy_(torch.from_numpy(bias))
            layer.bias_hh_l0.zero_()
        else:
            layer.bias_ih_l0.copy_(torch.from_numpy(swap(bias[0])))
            layer.bias_hh_l0.copy_(torch.from_numpy(swap(bias[1])))
    x = torch.from_numpy(inp["x"]).requires_grad_(True)
    dy = torch.from_numpy(inp["dy"])
    params = (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0)
    out = [None]

    def run():
        y, _ = layer(x)
        out[0] = torch.autograd.grad(y, (x,) + params, dy)

    def result():
        dx, dwi, dwh, dbi, dbh = (a.detach().numpy() for a in out[0])
        db = swap(dbi) if lstm else np.stack([swap(dbi), swap(dbh)])
        return dx, swap(dwi.T), swap(dwh.T), db
    return Prepared(run, lambda: None, result)


_PREPARE = {"numpy": _numpy, "torch": _torch, "cupy": _cupy}


def prepare(name, case, inp):
    """-> Prepared for reference `name` on `case`; raises Missing when it cannot run here."""
    return _PREPARE[name](case, inp)


# ---------------------------------------------------------------------- what NumPy runs
def openblas_info():
    """Which OpenBLAS NumPy loaded and which core kernel it picked, plus the env overrides."""
    info = {"OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE")}
    try:
        import threadpoolctl
        for lib in threadpoolctl.threadpool_info():
            if lib.get("internal_api") == "openblas":
                info.update(source="threadpoolctl", version=lib.get("version"),
                            corename=lib.get("architecture"), threads=lib.get("num_threads"))
                return info
    except ImportError:
        pass
    import ctypes
    import glob
    libdir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "")):
            core = getattr(lib, f"{prefix}get_corename{suffix}", None)
            if core is None:
                continue
            core.restype = ctypes.c_char_p
            cfg = getattr(lib, f"{prefix}get_config{suffix}")
            cfg.restype = ctypes.c_char_p
            threads = getattr(lib, f"{prefix}get_num_threads{suffix}")
            info.update(source="ctypes " + os.path.basename(path), corename=core().decode(),
                        config=cfg().decode(), threads=int(threads()))
            return info
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info.update(source="numpy.show_config", config=blas.get("openblas configuration") or blas.get("name"))
    except Exception as exc:  # an unusual NumPy build: say so rather than guess
        info.update(source="unknown", config=f"could not read NumPy's BLAS configuration ({exc})")
    return info
