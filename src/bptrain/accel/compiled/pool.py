"""Max-pooling over disjoint windows: the maxima with their positions, and the routed gradient."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .shared import _relu, _relu_grad


@njit(cache=True, inline="always")
def _keep_max(best, which, p, v, k):
    """A window's running maximum: best[p] = max(best[p], v), which[p] = k where v is larger.
    Strictly larger: on ties the earlier pixel stays."""
    which[p] = k if v > best[p] else which[p]
    best[p] = max(best[p], v)


@njit(parallel=True, cache=True)
def max_pool(x, size, out, arg, mask=None):
    """Disjoint size x size windows over (H, W, P) x: out (OH, OW, P) maxima, arg the index
    i * size + j of the first window pixel (row-major) that holds each maximum. With `mask`
    (OH, OW, P) bools, a ReLU after the pool runs in the same pass (see _relu).

    The running maximum and argmax of a window row live in buffers local to the loop: LLVM
    cannot prove that views of `out` and `arg` do not overlap `x`, and left to write through
    them it keeps the loop scalar and branchy (5x slower than NumPy's passes); on local
    buffers the compare-and-select over P vectorizes.
    """
    oh, ow, planes = out.shape
    zero = out.dtype.type(0)
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
                        _keep_max(best, which, p, pixel[p], k)
            for p in range(planes):
                out[r, col, p] = _relu(best[p], mask, (r, col, p), zero)
                arg[r, col, p] = which[p]


@njit(parallel=True, cache=True)
def max_pool_dx(d, arg, size, dx, mask=None):
    """The adjoint of max_pool: dx (H, W, P) gets d where arg points, zeros elsewhere
    (rows and columns past the last whole window included); with `mask`, d through the
    fused ReLU's backward first (see _relu_grad)."""
    h, w, planes = dx.shape
    oh, ow = d.shape[0], d.shape[1]
    zero = d.dtype.type(0)
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
                g = _relu_grad(d[r, col, p], mask, (r, col, p), zero)
                dx[y, xcol, p] = g if arg[r, col, p] == k else 0
