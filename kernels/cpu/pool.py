"""Max and average 2-D pooling on NHWC arrays, forward and backward side by side.

Each (image, output row) is one parallel work item; the channel loop is innermost so
reads of x walk contiguous memory.
"""
import numba
import numpy as np
from numba import prange


@numba.njit(parallel=True, cache=True)
def max_pool2d_forward(x, y, indices, ph, pw, sh, sw, pad_top, pad_left):
    n, h, w, c = x.shape
    oh, ow = y.shape[1], y.shape[2]
    for item in prange(n * oh):
        b = item // oh
        i = item % oh
        h0 = i * sh - pad_top
        for j in range(ow):
            w0 = j * sw - pad_left
            for ch in range(c):
                # Padded cells never win: start from the first valid cell of the window
                # (for "same" padding every window holds at least one).
                best = x[b, 0, 0, ch]
                best_at = -1
                for di in range(ph):
                    hh = h0 + di
                    if hh < 0 or hh >= h:
                        continue
                    for dj in range(pw):
                        ww = w0 + dj
                        if ww < 0 or ww >= w:
                            continue
                        val = x[b, hh, ww, ch]
                        # Strict '>' keeps the first maximum in row-major window order.
                        if best_at < 0 or val > best:
                            best = val
                            best_at = hh * w + ww
                y[b, i, j, ch] = best
                indices[b, i, j, ch] = best_at


@numba.njit(parallel=True, cache=True)
def max_pool2d_backward(dy, indices, dx):
    n, h, w, c = dx.shape
    oh, ow = dy.shape[1], dy.shape[2]
    # One image per work item: overlapping windows (stride < pool) scatter into the same
    # cells of that image only, so images never race.
    for b in prange(n):
        for hh in range(h):
            for ww in range(w):
                for ch in range(c):
                    dx[b, hh, ww, ch] = 0
        for i in range(oh):
            for j in range(ow):
                for ch in range(c):
                    at = indices[b, i, j, ch]
                    dx[b, at // w, at % w, ch] += dy[b, i, j, ch]


@numba.njit(parallel=True, cache=True)
def avg_pool2d_forward(x, y, ph, pw, sh, sw, pt, pl):
    n, h, w, c = x.shape
    oh, ow = y.shape[1], y.shape[2]
    zero = x.dtype.type(0)
    for item in prange(n * oh):
        b = item // oh
        i = item % oh
        h_lo = max(i * sh - pt, 0)
        h_hi = min(i * sh - pt + ph, h)
        for j in range(ow):
            w_lo = max(j * sw - pl, 0)
            w_hi = min(j * sw - pl + pw, w)
            inv = x.dtype.type(1.0 / ((h_hi - h_lo) * (w_hi - w_lo)))
            for ch in range(c):
                acc = zero
                for hh in range(h_lo, h_hi):
                    for ww in range(w_lo, w_hi):
                        acc += x[b, hh, ww, ch]
                y[b, i, j, ch] = acc * inv


@numba.njit(parallel=True, cache=True)
def avg_pool2d_backward(dy, dx, ph, pw, sh, sw, pt, pl):
    n, h, w, c = dx.shape
    oh, ow = dy.shape[1], dy.shape[2]
    for b in prange(n):
        for hh in range(h):
            for ww in range(w):
                for ch in range(c):
                    dx[b, hh, ww, ch] = 0
        for i in range(oh):
            h_lo = max(i * sh - pt, 0)
            h_hi = min(i * sh - pt + ph, h)
            for j in range(ow):
                w_lo = max(j * sw - pl, 0)
                w_hi = min(j * sw - pl + pw, w)
                inv = dx.dtype.type(1.0 / ((h_hi - h_lo) * (w_hi - w_lo)))
                for hh in range(h_lo, h_hi):
                    for ww in range(w_lo, w_hi):
                        for ch in range(c):
                            dx[b, hh, ww, ch] += dy[b, i, j, ch] * inv
