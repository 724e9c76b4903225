"""BatchNorm followed by a disjoint max-pool, fused (engine/layers/fused.py, accel/fused.py)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .pool import _keep_max
from .shared import CHUNKS, _column_totals, _keep_partial, _relu, _relu_grad, _span, _zeros

# --- BatchNorm followed by a disjoint max-pool, fused (layers/fused.py) -----------------------
# The normalized full-size activation is never written: the forward pools it as it is
# computed, and the backward computes the pooled gradient's full-size value on the fly. Each
# value goes through exactly the operations of scale_shift + max_pool (forward) and
# max_pool_dx + gradient_sums + batch_norm_dx (backward), so the bits are theirs.


@njit(parallel=True, cache=True)
def norm_max_pool(x, mean, scale, shift, size, out, arg, mask=None):
    """x (H, W, N, C) -> out, arg (OH, OW, N, C): the maxima over disjoint size x size windows
    of (x - mean) * scale + shift, and the index i * size + j of each window's first maximum;
    with `mask` (OH, OW, N, C) bools, the ReLU after them (see _relu).
    """
    oh, ow, n, c = out.shape
    zero = out.dtype.type(0)
    for window in prange(oh * ow):  # windows, not rows: 7 rows would split 4:3 on 2 threads
        r, col = window // ow, window % ow
        best = np.empty(c, x.dtype)
        which = np.empty(c, np.int32)
        mu, sc, sh = mean.copy(), scale.copy(), shift.copy()  # local: the loop vectorizes
        top, left = r * size, col * size
        for s in range(n):
            first = x[top, left, s]
            for p in range(c):
                best[p] = (first[p] - mu[p]) * sc[p] + sh[p]
                which[p] = 0
            for i in range(size):
                for j in range(size):
                    if i == 0 and j == 0:
                        continue
                    k = np.int32(i * size + j)
                    pixel = x[top + i, left + j, s]
                    for p in range(c):
                        _keep_max(best, which, p, (pixel[p] - mu[p]) * sc[p] + sh[p], k)
            for p in range(c):
                out[r, col, s, p] = _relu(best[p], mask, (r, col, s, p), zero)
                arg[r, col, s, p] = which[p]


@njit(parallel=True, cache=True)
def pooled_gradient_sums(x, mean, d, arg, size, mask=None):
    """gradient_sums(x rows, mean, max_pool_dx(d, mask)) for x (H, W, N, C), d and arg (OH,
    OW, N, C), without the full-size gradient: the same rows, chunks and order, so the same
    bits. The routed gradient of a pixel is d (through the fused ReLU's mask, when given)
    where it won its window, else 0 (past the last whole window too), as max_pool_dx writes.
    """
    h, w, n, c = x.shape
    oh, ow = d.shape[0], d.shape[1]
    m = h * w * n
    part_sum = _zeros(CHUNKS, c)
    part_dot = _zeros(CHUNKS, c)
    zero = d.dtype.type(0)
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        s = np.zeros(c, np.float64)
        q = np.zeros(c, np.float64)
        mu = mean.copy()  # local: LLVM keeps it apart from the arrays and vectorizes
        # Rows lo..hi-1 in runs that share a pixel (y, xcol): samples `first` to `last` - 1.
        row = lo
        while row < hi:
            y, xcol, first = row // (w * n), (row // n) % w, row % n
            last = min(n, first + hi - row)
            row += last - first
            r, col = y // size, xcol // size
            if r < oh and col < ow:
                won = arg.dtype.type((y % size) * size + xcol % size)
                for sample in range(first, last):
                    for j in range(c):
                        g = _relu_grad(d[r, col, sample, j], mask, (r, col, sample, j), zero)
                        dv = g if arg[r, col, sample, j] == won else zero
                        s[j] += dv
                        q[j] += dv * (x[y, xcol, sample, j] - mu[j])
            else:
                for sample in range(first, last):
                    for j in range(c):
                        s[j] += zero
                        q[j] += zero * (x[y, xcol, sample, j] - mu[j])
        _keep_partial(part_sum, k, s)
        _keep_partial(part_dot, k, q)
    return _column_totals(part_sum), _column_totals(part_dot)


@njit(parallel=True, cache=True)
def norm_max_pool_dx(x, mean, d, arg, size, q, p, scale, dx, mask=None):
    """batch_norm_dx on the routed max-pool gradient (see pooled_gradient_sums): dx (H, W, N, C)
    = ((x - mean) * q + routed + p) * scale, pixel by pixel."""
    h, w, n, c = x.shape
    oh, ow = d.shape[0], d.shape[1]
    zero = d.dtype.type(0)
    for y in prange(h):
        mu, qc, pc, sc = mean.copy(), q.copy(), p.copy(), scale.copy()  # local, as above
        for xcol in range(w):
            r, col, won = y // size, xcol // size, (y % size) * size + xcol % size
            inside = r < oh and col < ow
            for sample in range(n):
                row, out = x[y, xcol, sample], dx[y, xcol, sample]
                if not inside:
                    for j in range(c):
                        out[j] = ((row[j] - mu[j]) * qc[j] + zero + pc[j]) * sc[j]
                    continue
                dr, ar = d[r, col, sample], arg[r, col, sample]
                for j in range(c):
                    g = _relu_grad(dr[j], mask, (r, col, sample, j), zero)
                    dv = g if ar[j] == won else zero
                    out[j] = ((row[j] - mu[j]) * qc[j] + dv + pc[j]) * sc[j]
