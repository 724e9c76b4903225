"""Compiled loops (numba) for the memory-bound passes of BatchNorm and max-pooling.

Imported only through kernels.py, and only when the `fast` extra (numba) is installed. Each
NumPy ufunc is one pass over memory, and BatchNorm or a max-pool chains several (4-6 passes
over a 10 MB activation where the arithmetic needs one or two); these loops do each pass's
arithmetic in a single sweep, and split it over the threads numba was given.

Determinism: every loop splits its rows into CHUNKS fixed pieces whatever the thread count,
and sums each piece in order, in float64; the pieces are then added in order. So results
are bit for bit the same on 1 or 2 threads, and a resumed run stays exact.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Pieces a pass is split into: enough for any thread count this runs on, few enough that
# each one is thousands of rows (a 28x28 batch of 100 has 78,400).
CHUNKS = 32


@njit(cache=True, inline="always")
def _span(k: int, rows: int) -> tuple[int, int]:
    step = (rows + CHUNKS - 1) // CHUNKS
    return k * step, min(rows, (k + 1) * step)


@njit(parallel=True, cache=True)
def channel_sums(x):
    """(M, C) -> (C,) float64 column sums."""
    m, c = x.shape
    part = np.zeros((CHUNKS, c), np.float64)
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        acc = np.zeros(c, np.float64)
        for i in range(lo, hi):
            for j in range(c):
                acc[j] += x[i, j]
        part[k] = acc
    total = np.zeros(c, np.float64)
    for k in range(CHUNKS):
        total += part[k]
    return total


@njit(parallel=True, cache=True)
def centered_squares(x, mean):
    """(M, C), (C,) -> (C,) float64 sums of (x - mean)^2 per column."""
    m, c = x.shape
    part = np.zeros((CHUNKS, c), np.float64)
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        acc = np.zeros(c, np.float64)
        for i in range(lo, hi):
            for j in range(c):
                d = x[i, j] - mean[j]
                acc[j] += d * d
        part[k] = acc
    total = np.zeros(c, np.float64)
    for k in range(CHUNKS):
        total += part[k]
    return total


@njit(parallel=True, cache=True)
def scale_shift(x, mean, scale, shift, out):
    """out = (x - mean) * scale + shift, per column of (M, C) x."""
    m, c = x.shape
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        for i in range(lo, hi):
            for j in range(c):
                out[i, j] = (x[i, j] - mean[j]) * scale[j] + shift[j]


@njit(parallel=True, cache=True)
def gradient_sums(x, mean, d):
    """(M, C) x and dout -> float64 (sum(d), sum(d * (x - mean))) per column, in one pass."""
    m, c = x.shape
    part_sum = np.zeros((CHUNKS, c), np.float64)
    part_dot = np.zeros((CHUNKS, c), np.float64)
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        s = np.zeros(c, np.float64)
        p = np.zeros(c, np.float64)
        for i in range(lo, hi):
            for j in range(c):
                s[j] += d[i, j]
                p[j] += d[i, j] * (x[i, j] - mean[j])
        part_sum[k] = s
        part_dot[k] = p
    dsum = np.zeros(c, np.float64)
    dot = np.zeros(c, np.float64)
    for k in range(CHUNKS):
        dsum += part_sum[k]
        dot += part_dot[k]
    return dsum, dot


@njit(parallel=True, cache=True)
def batch_norm_dx(x, mean, d, q, p, scale, dx):
    """dx = ((x - mean) * q + d + p) * scale, per column of (M, C) arrays."""
    m, c = x.shape
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        for i in range(lo, hi):
            for j in range(c):
                dx[i, j] = ((x[i, j] - mean[j]) * q[j] + d[i, j] + p[j]) * scale[j]


@njit(parallel=True, cache=True)
def max_pool(x, size, out, arg):
    """Disjoint size x size windows over (H, W, P) x: out (OH, OW, P) maxima, arg the index
    i * size + j of the first window pixel (row-major) that holds each maximum.

    The running maximum and argmax of a window row live in buffers local to the loop: LLVM
    cannot prove that views of `out` and `arg` do not overlap `x`, and left to write through
    them it keeps the loop scalar and branchy (5x slower than NumPy's passes); on local
    buffers the compare-and-select over P vectorizes.
    """
    oh, ow, planes = out.shape
    for r in prange(oh):
        best = np.empty(planes, x.dtype)
        which = np.empty(planes, np.int32)
        for col in range(ow):
            top, left = r * size, col * size
            first = x[top, left]
            for p in range(planes):
                best[p] = first[p]
                which[p] = 0
            for i in range(size):
                for j in range(size):
                    if i == 0 and j == 0:
                        continue
                    k = np.int32(i * size + j)
                    pixel = x[top + i, left + j]
                    for p in range(planes):
                        v = pixel[p]
                        # Strictly greater: on ties the earlier pixel stays.
                        which[p] = k if v > best[p] else which[p]
                        best[p] = max(best[p], v)
            for p in range(planes):
                out[r, col, p] = best[p]
                arg[r, col, p] = which[p]


@njit(parallel=True, cache=True)
def max_pool_dx(d, arg, size, dx):
    """The adjoint of max_pool: dx (H, W, P) gets d where arg points, zeros elsewhere
    (rows and columns past the last whole window included)."""
    h, w, planes = dx.shape
    oh, ow = d.shape[0], d.shape[1]
    for y in prange(h):
        r, i = y // size, y % size
        for xcol in range(w):
            col, j = xcol // size, xcol % size
            if r >= oh or col >= ow:
                for p in range(planes):
                    dx[y, xcol, p] = 0
                continue
            k = i * size + j
            for p in range(planes):
                dx[y, xcol, p] = d[r, col, p] if arg[r, col, p] == k else 0
