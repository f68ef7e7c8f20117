"""Max and average 2-D pooling on NHWC arrays, forward and backward side by side.

The forwards split the work by (image, output row), the backwards by image. Inside, the
innermost loops run over the channels of one pixel, contiguous in NHWC, indexed from 0 up
(so numba's negative-index wraparound check folds away) and free of branches LLVM cannot
turn into selects, so they vectorize (AVX-512: vcmpltps into a k-mask, vmaxps, masked
moves). The helpers index the whole 4-D arrays instead of taking per-pixel views, since
each view costs an atomic reference-count update on an array both threads share, and are
inline="always" so their loops land in the prange body, whose arrays numba marks
noalias: without that, every channel loop starts with run-time overlap checks.
"""
import numba
import numpy as np
from numba import prange

from numbanet.kernels.cpu import rules as R
from numbanet.kernels.cpu.order import beats

# Below this many channels a vectorized channel loop per window cell costs more in set-up
# than it saves, so the general (not 2x2) windows run channel by channel in registers.
# Measure: numbanet bench --ops pool with channel counts around it.
_NARROW = 8


@numba.njit(cache=True, inline="always")
def _max_cell(x, b, hh, ww, at, y, indices, i, j):
    # `beats` keeps the first maximum in row-major window order, or the first NaN.
    for ch in range(x.shape[3]):
        v = x[b, hh, ww, ch]
        m = y[b, i, j, ch]
        take = beats(v, m)
        y[b, i, j, ch] = v if take else m
        indices[b, i, j, ch] = at if take else indices[b, i, j, ch]


@numba.njit(cache=True, inline="always")
def _max_2x2(x, b, hh, ww, at, at1, atw, atw1, y, indices, i, j):
    # The common 2x2 window with all four cells inside x, in one channel loop: one loop
    # set-up per pixel instead of four, and the running max stays in registers.
    for ch in range(x.shape[3]):
        m = x[b, hh, ww, ch]
        k = at
        v = x[b, hh, ww + 1, ch]
        take = beats(v, m)
        m = v if take else m
        k = at1 if take else k
        v = x[b, hh + 1, ww, ch]
        take = beats(v, m)
        m = v if take else m
        k = atw if take else k
        v = x[b, hh + 1, ww + 1, ch]
        take = beats(v, m)
        m = v if take else m
        k = atw1 if take else k
        y[b, i, j, ch] = m
        indices[b, i, j, ch] = k


@numba.njit(cache=True, inline="always")
def _max_row(x, y, indices, b, i, ph, pw, sh, sw, pt, pl):
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    h0 = i * sh - pt
    h_lo = max(h0, 0)
    h_hi = min(h0 + ph, h)
    for j in range(y.shape[2]):
        w0 = j * sw - pl
        w_lo = max(w0, 0)
        w_hi = min(w0 + pw, w)
        if h_lo >= h_hi or w_lo >= w_hi:
            # Unreachable through the backend ("valid"/"same" windows always hold a cell
            # of x); kept so a direct call cannot read outside the image.
            for ch in range(c):
                y[b, i, j, ch] = x[b, 0, 0, ch]
                indices[b, i, j, ch] = -1
            continue
        at = np.int32(h_lo * w + w_lo)
        if h_hi - h_lo == 2 and w_hi - w_lo == 2 and ph == 2 and pw == 2:
            _max_2x2(x, b, h_lo, w_lo, at, np.int32(at + 1), np.int32(at + w), np.int32(at + w + 1),
                     y, indices, i, j)
            continue
        if c < _NARROW:
            for ch in range(c):
                best = x[b, h_lo, w_lo, ch]
                best_at = at
                for hh in range(h_lo, h_hi):
                    for ww in range(w_lo, w_hi):
                        v = x[b, hh, ww, ch]
                        if beats(v, best):
                            best = v
                            best_at = np.int32(hh * w + ww)
                y[b, i, j, ch] = best
                indices[b, i, j, ch] = best_at
            continue
        # Padded cells never win: start from the first valid cell of the window.
        for ch in range(c):
            y[b, i, j, ch] = x[b, h_lo, w_lo, ch]
            indices[b, i, j, ch] = at
        for hh in range(h_lo, h_hi):
            for ww in range(w_lo, w_hi):
                if hh != h_lo or ww != w_lo:
                    _max_cell(x, b, hh, ww, np.int32(hh * w + ww), y, indices, i, j)


@numba.njit(parallel=True, cache=True)
def max_pool2d_forward(x, y, indices, ph, pw, sh, sw, pad_top, pad_left):
    n = x.shape[0]
    oh = y.shape[1]
    for item in prange(n * oh):
        _max_row(x, y, indices, item // oh, item % oh, ph, pw, sh, sw, pad_top, pad_left)


@numba.njit(cache=True, inline="always")
def _max_scatter_image(dy_b, idx_b, dx_b):
    # dy_b, idx_b: (OH * OW, C); dx_b: (H * W, C), so a flat index h * W + w is a row of
    # dx_b directly (no // and % per element: they cost more than the rest of the loop).
    cells = dx_b.shape[0]
    for k in range(dx_b.shape[0]):
        for ch in range(dx_b.shape[1]):
            dx_b[k, ch] = 0
    for k in range(dy_b.shape[0]):
        for ch in range(dy_b.shape[1]):
            at = idx_b[k, ch]
            # The backend range-checks indices unless a MaxPooling2D layer made them; an
            # entry outside the image is skipped, never written (nor wrapped, if negative).
            if R.in_range(at, cells):
                dx_b[at, ch] += dy_b[k, ch]


@numba.njit(parallel=True, cache=True)
def max_pool2d_backward(dy, indices, dx):
    n, h, w, c = dx.shape
    oh, ow = dy.shape[1], dy.shape[2]
    # One image per work item: overlapping windows (stride < pool) scatter into the same
    # cells of that image only, so images never race; zeroing the image just before its
    # scatter keeps it in cache for the scatter.
    for b in prange(n):
        _max_scatter_image(dy[b].reshape((oh * ow, c)), indices[b].reshape((oh * ow, c)),
                           dx[b].reshape((h * w, c)))


@numba.njit(cache=True, inline="always")
def _span(i, stride, pad, size, extent):
    """(lo, hi): the cells of window i (stride, top/left padding pad, size cells) that lie
    inside an axis of `extent` cells."""
    start = i * stride - pad
    return max(start, 0), min(start + size, extent)


@numba.njit(cache=True, inline="always")
def _avg_row(x, y, b, i, ph, pw, sh, sw, pt, pl):
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    zero = y.dtype.type(0)
    h_lo, h_hi = _span(i, sh, pt, ph, h)
    for j in range(y.shape[2]):
        w_lo, w_hi = _span(j, sw, pl, pw, w)
        # Only the window's cells inside x count ("same" padding is not averaged in).
        inv = y.dtype.type(1.0 / ((h_hi - h_lo) * (w_hi - w_lo)))
        if h_hi - h_lo == 2 and w_hi - w_lo == 2 and ph == 2 and pw == 2:
            # One channel loop for the common full 2x2 window; the sum starts from 0 and
            # adds in row-major order like the general path, so both round alike.
            for ch in range(c):
                acc = zero + x[b, h_lo, w_lo, ch]
                acc += x[b, h_lo, w_lo + 1, ch]
                acc += x[b, h_lo + 1, w_lo, ch]
                acc += x[b, h_lo + 1, w_lo + 1, ch]
                y[b, i, j, ch] = acc * inv
            continue
        if c < _NARROW:
            for ch in range(c):
                acc = zero
                for hh in range(h_lo, h_hi):
                    for ww in range(w_lo, w_hi):
                        acc += x[b, hh, ww, ch]
                y[b, i, j, ch] = acc * inv
            continue
        for ch in range(c):
            y[b, i, j, ch] = 0
        for hh in range(h_lo, h_hi):
            for ww in range(w_lo, w_hi):
                for ch in range(c):
                    y[b, i, j, ch] += x[b, hh, ww, ch]
        for ch in range(c):
            y[b, i, j, ch] *= inv


@numba.njit(parallel=True, cache=True)
def avg_pool2d_forward(x, y, ph, pw, sh, sw, pt, pl):
    n = x.shape[0]
    oh = y.shape[1]
    for item in prange(n * oh):
        _avg_row(x, y, item // oh, item % oh, ph, pw, sh, sw, pt, pl)


@numba.njit(cache=True, inline="always")
def _avg_spread_image(dy, dx, b, ph, pw, sh, sw, pt, pl):
    h, w, c = dx.shape[1], dx.shape[2], dx.shape[3]
    for hh in range(h):
        for ww in range(w):
            for ch in range(c):
                dx[b, hh, ww, ch] = 0
    for i in range(dy.shape[1]):
        h_lo, h_hi = _span(i, sh, pt, ph, h)
        for j in range(dy.shape[2]):
            w_lo, w_hi = _span(j, sw, pl, pw, w)
            inv = dx.dtype.type(1.0 / ((h_hi - h_lo) * (w_hi - w_lo)))
            for hh in range(h_lo, h_hi):
                for ww in range(w_lo, w_hi):
                    for ch in range(c):
                        dx[b, hh, ww, ch] += dy[b, i, j, ch] * inv


@numba.njit(parallel=True, cache=True)
def avg_pool2d_backward(dy, dx, ph, pw, sh, sw, pt, pl):
    # One image per work item: overlapping windows add into shared cells of one image.
    for b in prange(dx.shape[0]):
        _avg_spread_image(dy, dx, b, ph, pw, sh, sw, pt, pl)


@numba.njit(parallel=True, cache=True)
def global_max_pool_forward(x, y, indices):
    # One sample per work item; the channel loop innermost, over contiguous memory.
    n, steps, c = x.shape
    for b in prange(n):
        for ch in range(c):
            y[b, ch] = x[b, 0, ch]
            indices[b, ch] = 0
        for t in range(1, steps):
            for ch in range(c):
                v = x[b, t, ch]
                m = y[b, ch]
                take = beats(v, m)
                y[b, ch] = v if take else m
                indices[b, ch] = np.int32(t) if take else indices[b, ch]


@numba.njit(parallel=True, cache=True)
def global_max_pool_backward(dy, indices, dx):
    n, steps, c = dx.shape
    for b in prange(n):
        for t in range(steps):
            for ch in range(c):
                dx[b, t, ch] = 0
        for ch in range(c):
            at = indices[b, ch]
            # Range-checked by the backend unless a layer made them: an entry outside
            # the steps is skipped, never written (a negative one is huge unsigned).
            if R.in_range(at, steps):
                dx[b, at, ch] = dy[b, ch]


@numba.njit(parallel=True, cache=True)
def _upsample_blocks(small, big, sh, sw, summing):
    """Each pixel of small (N, H, W, C) and its sh x sw block of big: the forward copies the
    pixel into its block; the backward (summing) sets the pixel to the sum of its block, in
    row-major order. Both walk big's rows in order. Each item writes its own pixels or
    blocks: no shared writes."""
    n, h, w, c = small.shape
    for item in prange(n * h):
        b = item // h
        i = item % h
        if summing:
            for j in range(w):
                for ch in range(c):
                    small[b, i, j, ch] = 0
        for di in range(sh):
            for j in range(w):
                px = small[b, i, j]
                for dj in range(sw):
                    blk = big[b, i * sh + di, j * sw + dj]
                    if summing:
                        for ch in range(c):
                            px[ch] += blk[ch]
                    else:
                        for ch in range(c):
                            blk[ch] = px[ch]


def upsample2d_forward(x, y, sh, sw):
    _upsample_blocks(x, y, sh, sw, False)


def upsample2d_backward(dy, dx, sh, sw):
    _upsample_blocks(dx, dy, sh, sw, True)
