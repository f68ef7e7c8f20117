"""A NumPy reference backend for the nn tests, used only while kernels/cpu lacks modules.

It subclasses the shared kernels.backend.Backend (so every op keeps its validation) and
plugs in plain NumPy compute functions with the same signatures as kernels/cpu/*.
"""
import types

import numpy as np

from kernels.backend import Backend


def _pad(x, pt, pl, oh, ow, kh, kw, sh, sw, fill):
    n, h, w, c = x.shape
    hp, wp = (oh - 1) * sh + kh, (ow - 1) * sw + kw
    out = np.full((n, max(hp, h + pt), max(wp, w + pl), c), fill, dtype=x.dtype)
    out[:, pt:pt + h, pl:pl + w] = x
    return out


def _windows(xp, kh, kw, sh, sw, oh, ow):
    return np.stack([np.stack([xp[:, i * sh:i * sh + kh, j * sw:j * sw + kw] for j in range(ow)], 1)
                     for i in range(oh)], 1)  # (n, oh, ow, kh, kw, c)


def matmul(a, b, ta, tb, bias, out):
    r = (a.T if ta else a) @ (b.T if tb else b)
    if bias is not None:
        r = r + bias
    out[...] = r


def conv2d_forward(x, w, bias, y, sh, sw, pt, pl):
    kh, kw = w.shape[:2]
    oh, ow = y.shape[1:3]
    win = _windows(_pad(x, pt, pl, oh, ow, kh, kw, sh, sw, 0), kh, kw, sh, sw, oh, ow)
    r = np.einsum("nijabc,abcf->nijf", win, w)
    y[...] = r + bias if bias is not None else r


def conv2d_backward(x, w, dy, dx, dw, db, sh, sw, pt, pl):
    kh, kw = w.shape[:2]
    oh, ow = dy.shape[1:3]
    xp = _pad(x, pt, pl, oh, ow, kh, kw, sh, sw, 0)
    win = _windows(xp, kh, kw, sh, sw, oh, ow)
    dw[...] = np.einsum("nijabc,nijf->abcf", win, dy)
    db[...] = dy.sum(axis=(0, 1, 2))
    if dx is not None:
        dxp = np.zeros_like(xp)
        g = np.einsum("nijf,abcf->nijabc", dy, w)
        for i in range(oh):
            for j in range(ow):
                dxp[:, i * sh:i * sh + kh, j * sw:j * sw + kw] += g[:, i, j]
        dx[...] = dxp[:, pt:pt + x.shape[1], pl:pl + x.shape[2]]


def max_pool2d_forward(x, y, indices, ph, pw, sh, sw, pt, pl):
    n, h, w, c = x.shape
    oh, ow = y.shape[1:3]
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * sh - pt, j * sw - pl
            hs, ws = range(max(h0, 0), min(h0 + ph, h)), range(max(w0, 0), min(w0 + pw, w))
            cells = [(a, b) for a in hs for b in ws]
            vals = np.stack([x[:, a, b] for a, b in cells], 0)
            k = vals.argmax(0)
            y[:, i, j] = vals.max(0)
            flat = np.array([a * w + b for a, b in cells])
            indices[:, i, j] = flat[k]


def max_pool2d_backward(dy, indices, dx):
    n, h, w, c = dx.shape
    dx[...] = 0
    flat = dx.reshape(n, h * w, c)
    for b in range(n):
        for ch in range(c):
            np.add.at(flat[b, :, ch], indices[b, :, :, ch].ravel(), dy[b, :, :, ch].ravel())


def avg_pool2d_forward(x, y, ph, pw, sh, sw, pt, pl):
    h, w = x.shape[1:3]
    for i in range(y.shape[1]):
        for j in range(y.shape[2]):
            h0, w0 = i * sh - pt, j * sw - pl
            y[:, i, j] = x[:, max(h0, 0):min(h0 + ph, h), max(w0, 0):min(w0 + pw, w)].mean(axis=(1, 2))


def avg_pool2d_backward(dy, dx, ph, pw, sh, sw, pt, pl):
    h, w = dx.shape[1:3]
    dx[...] = 0
    for i in range(dy.shape[1]):
        for j in range(dy.shape[2]):
            h0, w0 = i * sh - pt, j * sw - pl
            hs, ws = slice(max(h0, 0), min(h0 + ph, h)), slice(max(w0, 0), min(w0 + pw, w))
            cnt = (hs.stop - hs.start) * (ws.stop - ws.start)
            dx[:, hs, ws] += dy[:, i, j][:, None, None, :] / cnt


def adam_step(p, g, m, v, lr, b1, b2, eps, step, wd):
    m[...] = b1 * m + (1 - b1) * g
    v[...] = b2 * v + (1 - b2) * g * g
    lr_t = lr * np.sqrt(1 - b2 ** step) / (1 - b1 ** step)
    p -= (lr_t * m / (np.sqrt(v) + eps)).astype(p.dtype)


def sgd_step(p, g, vel, lr, mom, nesterov, wd):
    if vel is None:
        p -= (lr * g).astype(p.dtype)
        return
    vel[...] = mom * vel - lr * g
    p += (mom * vel - lr * g if nesterov else vel).astype(p.dtype)


def relu_forward(x, y):
    y[...] = np.maximum(x, 0)


def relu_backward(y, dy, dx):
    dx[...] = np.where(y > 0, dy, 0)


def sigmoid_forward(x, y):
    y[...] = 1 / (1 + np.exp(-x))


def sigmoid_backward(y, dy, dx):
    dx[...] = dy * y * (1 - y)


def tanh_forward(x, y):
    y[...] = np.tanh(x)


def tanh_backward(y, dy, dx):
    dx[...] = dy * (1 - y * y)


def softmax_forward(x, y):
    e = np.exp(x - x.max(1, keepdims=True))
    y[...] = e / e.sum(1, keepdims=True)


def softmax_backward(y, dy, dx):
    dx[...] = y * (dy - (dy * y).sum(1, keepdims=True))


def _onehot(labels, onehot, n, c, dtype):
    if onehot:
        return labels
    t = np.zeros((n, c), dtype)
    t[np.arange(n), labels] = 1
    return t


def softmax_cross_entropy(logits, labels, onehot, losses, dlogits):
    n, c = logits.shape
    t = _onehot(labels, onehot, n, c, logits.dtype)
    z = logits - logits.max(1, keepdims=True)
    lse = np.log(np.exp(z).sum(1, keepdims=True))
    losses[...] = -(t * (z - lse)).sum(1)
    dlogits[...] = (np.exp(z - lse) - t) / n


def crossentropy(probs, labels, onehot, eps, losses, dprobs):
    n, c = probs.shape
    t = _onehot(labels, onehot, n, c, probs.dtype)
    p = np.clip(probs, eps, 1 - eps)
    losses[...] = -(t * np.log(p)).sum(1)
    dprobs[...] = np.where((probs > eps) & (probs < 1 - eps), -t / p, 0) / n


def mse(p, t, losses, dpred):
    n, d = p.shape
    losses[...] = ((p - t) ** 2).mean(1)
    dpred[...] = 2 * (p - t) / (n * d)


def accuracy(scores, labels, onehot):
    want = labels.argmax(1) if onehot else labels
    return int((scores.argmax(1) == want).sum())


def bias_add(x, b, y):
    y[...] = x + b


def dropout_forward(x, y, mask, rate, seed):
    keep = np.random.default_rng(seed).random(x.shape) >= rate
    mask[...] = keep / (1 - rate)
    y[...] = x * mask


def multiply(a, b, out):
    out[...] = a * b


def l1_l2_grad(w, dw, l1, l2):
    dw += (l1 * np.sign(w) + 2 * l2 * w).astype(dw.dtype)


def l1_l2_penalty(w, l1, l2):
    return l1 * np.abs(w).sum(dtype=np.float64) + l2 * (w.astype(np.float64) ** 2).sum()


def scale(x, alpha, y):
    y[...] = alpha * x


def take_rows(x, idx, y):
    y[...] = x[idx]


def column_sum(x, out):
    out[...] = x.sum(0)


def sum_(x):
    return float(x.sum(dtype=np.float64))


def argmax(x, out):
    out[...] = x.argmax(1)


class NumpyBackend(Backend):
    name = "cpu"

    def __init__(self):
        g = globals()
        mod = lambda *names: types.SimpleNamespace(**{n: g[n] for n in names})
        self.gemm = mod("matmul")
        self.conv = mod("conv2d_forward", "conv2d_backward")
        self.pool = mod("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward")
        self.optim = mod("adam_step", "sgd_step")
        self.activation = mod("relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward",
                              "tanh_forward", "tanh_backward", "softmax_forward", "softmax_backward")
        self.loss = mod("softmax_cross_entropy", "crossentropy", "mse", "accuracy")
        self.elementwise = mod("bias_add", "dropout_forward", "multiply", "l1_l2_grad", "l1_l2_penalty", "scale",
                               "take_rows")
        self.reduce = types.SimpleNamespace(column_sum=column_sum, sum=sum_, argmax=argmax)

    def asarray(self, a):
        return np.ascontiguousarray(a)

    def to_numpy(self, a):
        return np.asarray(a)

    def empty(self, shape, dtype="float32"):
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype="float32"):
        return np.zeros(shape, dtype=dtype)

    def copy(self, a):
        return np.array(a, copy=True)

    def synchronize(self):
        pass

    def _check_native(self, op, name, arr):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{op}: {name} must be a numpy.ndarray, got {type(arr).__name__}")

    def _is_c_contiguous(self, arr):
        return arr.flags.c_contiguous

    def _contiguous(self, arr):
        return np.ascontiguousarray(arr)
