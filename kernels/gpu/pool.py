"""Pooling on the gpu, NHWC: one thread per output (forward) or per input cell (avg
backward) with the channel index fastest across threads, so a warp touches 32 consecutive
channels of one pixel: coalesced loads and stores.

max_pool2d_backward gets only dy, the indices and dx (no window geometry: see
kernels/backend.py), so it cannot enumerate the windows covering a cell. Instead one
thread owns one (image, channel) plane, zeroes it and adds dy into the recorded argmax
cells in a fixed window order: overlapping windows add into the same cell from the same
thread, never racing, and no atomics are needed, so the result is deterministic. Threads
of a warp are consecutive channels of one pixel, so each step is still coalesced.
avg_pool2d_backward is a true gather: a dx cell sums dy / count over the windows that
cover it, computed from the geometry.

global_max_pool and upsample2d run one thread per output element; their backwards one
thread per dx element (the argmax's step gets dy, the rest 0; an upsampled block's sum
in row-major order): no atomics, deterministic.
"""
from numba import cuda

from numbanet.kernels.gpu.checks import in_range
from numbanet.kernels.gpu.launch import grid_1d, inlined, rows_1d, unravel2, unravel4
from numbanet.kernels.gpu.order import beats


@inlined
def _sizes(image, pooled):
    """(n, h, w, c, oh, ow): a pooling's image (n, h, w, c) and its output grid (oh, ow)."""
    n, h, w, c = image.shape
    return n, h, w, c, pooled.shape[1], pooled.shape[2]


@cuda.jit
def _max_forward(x, y, indices, ph, pw, sh, sw, pt, pl):
    n, h, w, c, oh, ow = _sizes(x, y)
    for t in range(cuda.grid(1), n * oh * ow * c, cuda.gridsize(1)):
        b, i, j, ch = unravel4(t, oh, ow, c)
        best = x.dtype.type(0)  # never read: the first valid cell replaces it
        best_at = -1
        for di in range(ph):
            hh = i * sh - pt + di
            if hh < 0 or hh >= h:
                continue
            for dj in range(pw):
                ww = j * sw - pl + dj
                if ww < 0 or ww >= w:
                    continue
                val = x[b, hh, ww, ch]
                if best_at < 0 or beats(val, best):
                    best = val
                    best_at = hh * w + ww
        y[b, i, j, ch] = best
        indices[b, i, j, ch] = best_at


def max_pool2d_forward(x, y, indices, ph, pw, sh, sw, pad_top, pad_left):
    _max_forward[grid_1d(y.size)](x, y, indices, ph, pw, sh, sw, pad_top, pad_left)


@cuda.jit
def _max_backward(dy, indices, dx):
    n, h, w, c, oh, ow = _sizes(dx, dy)
    t = cuda.grid(1)
    if t < n * c:
        b, ch = unravel2(t, c)
        for hh in range(h):
            for ww in range(w):
                dx[b, hh, ww, ch] = 0
        for i in range(oh):
            for j in range(ow):
                at = indices[b, i, j, ch]
                # Range-checked by the backend unless a MaxPooling2D layer made them: an
                # entry outside the image is skipped, never written.
                if in_range(at, h * w):
                    dx[b, at // w, at % w, ch] += dy[b, i, j, ch]


def max_pool2d_backward(dy, indices, dx):
    planes = dx.shape[0] * dx.shape[3]
    _max_backward[rows_1d(planes)](dy, indices, dx)


@inlined
def _window(i, j, ph, pw, sh, sw, pt, pl, h, w):
    """(h0, h1, w0, w1): the rows [h0, h1) and columns [w0, w1) of the image that output
    cell (i, j)'s window covers, padding cut off."""
    return max(i * sh - pt, 0), min(i * sh - pt + ph, h), max(j * sw - pl, 0), min(j * sw - pl + pw, w)


@inlined
def _window_count(i, j, ph, pw, sh, sw, pt, pl, h, w):
    h0, h1, w0, w1 = _window(i, j, ph, pw, sh, sw, pt, pl, h, w)
    return (h1 - h0) * (w1 - w0)


@inlined
def _covering(hh, ph, sh, pt, oh):
    """[i0, i1): the windows along one axis that cover image cell hh, those i with
    i*sh - pt <= hh < i*sh - pt + ph, cut to the oh windows there are."""
    return max(0, (hh + pt - ph) // sh + 1), min(oh, (hh + pt) // sh + 1)


@cuda.jit
def _avg_forward(x, y, ph, pw, sh, sw, pt, pl):
    n, h, w, c, oh, ow = _sizes(x, y)
    for t in range(cuda.grid(1), n * oh * ow * c, cuda.gridsize(1)):
        b, i, j, ch = unravel4(t, oh, ow, c)
        # A typed zero, not x[...] * 0: one inf anywhere in x would make that NaN.
        acc = x.dtype.type(0)
        h0, h1, w0, w1 = _window(i, j, ph, pw, sh, sw, pt, pl, h, w)
        for hh in range(h0, h1):
            for ww in range(w0, w1):
                acc += x[b, hh, ww, ch]
        y[b, i, j, ch] = acc / ((h1 - h0) * (w1 - w0))


def avg_pool2d_forward(x, y, ph, pw, sh, sw, pad_top, pad_left):
    _avg_forward[grid_1d(y.size)](x, y, ph, pw, sh, sw, pad_top, pad_left)


@cuda.jit
def _avg_backward(dy, dx, ph, pw, sh, sw, pt, pl):
    n, h, w, c, oh, ow = _sizes(dx, dy)
    for t in range(cuda.grid(1), n * h * w * c, cuda.gridsize(1)):
        b, hh, ww, ch = unravel4(t, h, w, c)
        i0, i1 = _covering(hh, ph, sh, pt, oh)
        j0, j1 = _covering(ww, pw, sw, pl, ow)
        acc = dy.dtype.type(0)
        for i in range(i0, i1):
            for j in range(j0, j1):
                acc += dy[b, i, j, ch] / _window_count(i, j, ph, pw, sh, sw, pt, pl, h, w)
        dx[b, hh, ww, ch] = acc


def avg_pool2d_backward(dy, dx, ph, pw, sh, sw, pad_top, pad_left):
    _avg_backward[grid_1d(dx.size)](dy, dx, ph, pw, sh, sw, pad_top, pad_left)


@cuda.jit
def _global_max_forward(x, y, indices):
    n, steps, c = x.shape
    for t in range(cuda.grid(1), n * c, cuda.gridsize(1)):
        b, ch = unravel2(t, c)
        best = x[b, 0, ch]
        best_at = 0
        for s in range(1, steps):
            val = x[b, s, ch]
            if beats(val, best):
                best = val
                best_at = s
        y[b, ch] = best
        indices[b, ch] = best_at


def global_max_pool_forward(x, y, indices):
    _global_max_forward[grid_1d(y.size)](x, y, indices)


@cuda.jit
def _global_max_backward(dy, indices, dx):
    # One thread per dx element: it writes dy there when its step is the recorded one.
    n, steps, c = dx.shape
    for t in range(cuda.grid(1), n * steps * c, cuda.gridsize(1)):
        ch = t % c
        r = t // c
        s = r % steps
        b = r // steps
        dx[b, s, ch] = dy[b, ch] if indices[b, ch] == s else dx.dtype.type(0)


def global_max_pool_backward(dy, indices, dx):
    _global_max_backward[grid_1d(dx.size)](dy, indices, dx)


@cuda.jit
def _upsample_forward(x, y, sh, sw):
    n, oh, ow, c = y.shape
    for t in range(cuda.grid(1), n * oh * ow * c, cuda.gridsize(1)):
        b, i, j, ch = unravel4(t, oh, ow, c)
        y[b, i, j, ch] = x[b, i // sh, j // sw, ch]


def upsample2d_forward(x, y, sh, sw):
    _upsample_forward[grid_1d(y.size)](x, y, sh, sw)


@cuda.jit
def _upsample_backward(dy, dx, sh, sw):
    # One thread per dx element sums its block in row-major order: no atomics.
    n, h, w, c = dx.shape
    for t in range(cuda.grid(1), n * h * w * c, cuda.gridsize(1)):
        b, i, j, ch = unravel4(t, h, w, c)
        acc = dx.dtype.type(0)
        for di in range(sh):
            for dj in range(sw):
                acc += dy[b, i * sh + di, j * sw + dj, ch]
        dx[b, i, j, ch] = acc


def upsample2d_backward(dy, dx, sh, sw):
    _upsample_backward[grid_1d(dx.size)](dy, dx, sh, sw)
