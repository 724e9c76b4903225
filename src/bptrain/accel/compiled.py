"""Compiled loops (numba) for the memory-bound passes of BatchNorm and max-pooling.

Imported only through kernels.py, and only when the `fast` extra (numba) is installed. Each
NumPy ufunc is one pass over memory, and BatchNorm or a max-pool chains several (4-6 passes
over a 10 MB activation where the arithmetic needs one or two); these loops do each pass's
arithmetic in a single sweep, and split it over the threads numba was given.

Determinism: every loop splits its rows into CHUNKS fixed pieces whatever the thread count,
and sums each piece in order, in float64; the pieces are then added in order. So results
are bit for bit the same on 1 or 2 threads, and a resumed run stays exact.

One parallel region per kernel: with parallel=True numba turns array expressions (np.zeros,
`total += part[k]`) into parallel loops of their own, and each region wakes the sleeping
threads (OMP_WAIT_POLICY=PASSIVE, see kernels.py), some 60 us a time. Written that way, a
column sum ran 35 regions and took 2.5 ms on two threads against 0.45 ms on one; so every
array here is allocated by the serial helpers below and summed in explicit loops.
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


@njit(cache=True)
def _zeros(rows: int, cols: int):
    """A (rows, cols) float64 array of zeros, allocated outside any parallel region."""
    return np.zeros((rows, cols), np.float64)


@njit(cache=True)
def _column_totals(part):
    """(CHUNKS, C) partial sums -> (C,), added in chunk order (serial: the bits are fixed)."""
    total = np.zeros(part.shape[1], np.float64)
    for k in range(part.shape[0]):
        for j in range(part.shape[1]):
            total[j] += part[k, j]
    return total


@njit(cache=True, inline="always")
def _keep_partial(part, k, acc):
    """Chunk k's per-column sums `acc` into row k of the (CHUNKS, C) partials."""
    for j in range(acc.shape[0]):
        part[k, j] = acc[j]


# A ReLU right after a disjoint max-pool (the network runs it there, see Network) can ride
# in the pool's passes: relu(max) as the maximum is stored, and dout * mask as the gradient
# is routed. `mask` None (no ReLU) removes the branch when numba compiles the caller.


@njit(cache=True, inline="always")
def _relu(v, mask, at, zero):
    """Relu.forward's np.maximum(v, 0) (NaN and -0.0 pass unchanged), recording v > 0 in
    mask[at]; v itself when mask is None. `zero` is 0 in v's dtype."""
    if mask is None:
        return v
    mask[at] = v > 0
    return v if v >= 0 or v != v else zero


@njit(cache=True, inline="always")
def _relu_grad(g, mask, at, zero):
    """Relu.backward's g * mask[at] (so a negative g times False is -0.0, as in NumPy); g
    when mask is None."""
    if mask is None:
        return g
    return g if mask[at] else g * zero


@njit(parallel=True, cache=True)
def channel_sums(x):
    """(M, C) -> (C,) float64 column sums."""
    m, c = x.shape
    part = _zeros(CHUNKS, c)
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        acc = np.zeros(c, np.float64)  # local: LLVM keeps it apart from x and vectorizes
        for i in range(lo, hi):
            for j in range(c):
                acc[j] += x[i, j]
        _keep_partial(part, k, acc)
    return _column_totals(part)


@njit(parallel=True, cache=True)
def centered_squares(x, mean):
    """(M, C), (C,) -> (C,) float64 sums of (x - mean)^2 per column."""
    m, c = x.shape
    part = _zeros(CHUNKS, c)
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        acc = np.zeros(c, np.float64)
        for i in range(lo, hi):
            for j in range(c):
                d = x[i, j] - mean[j]
                acc[j] += d * d
        _keep_partial(part, k, acc)
    return _column_totals(part)


@njit(parallel=True, cache=True)
def shifted_moments(x, shift):
    """(M, C) x, float64 (C,) shift -> float64 (sum(x - shift), sum((x - shift)^2)) per
    column, in one pass over x (channel_sums and centered_squares read it twice).

    With the shift near the column means (BatchNorm passes its running mean), the variance
    sum2 / M - (sum1 / M)^2 loses nothing to cancellation: the terms are centred already,
    and float64 holds the rest (a mean 10^4 standard deviations off still keeps ~8 digits).
    """
    m, c = x.shape
    part1 = _zeros(CHUNKS, c)
    part2 = _zeros(CHUNKS, c)
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        a1 = np.zeros(c, np.float64)
        a2 = np.zeros(c, np.float64)
        sh = shift.copy()  # local: LLVM keeps it apart from x and vectorizes
        for i in range(lo, hi):
            for j in range(c):
                d = x[i, j] - sh[j]
                a1[j] += d
                a2[j] += d * d
        _keep_partial(part1, k, a1)
        _keep_partial(part2, k, a2)
    return _column_totals(part1), _column_totals(part2)


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
    part_sum = _zeros(CHUNKS, c)
    part_dot = _zeros(CHUNKS, c)
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        s = np.zeros(c, np.float64)
        p = np.zeros(c, np.float64)
        for i in range(lo, hi):
            for j in range(c):
                s[j] += d[i, j]
                p[j] += d[i, j] * (x[i, j] - mean[j])
        _keep_partial(part_sum, k, s)
        _keep_partial(part_dot, k, p)
    return _column_totals(part_sum), _column_totals(part_dot)


@njit(parallel=True, cache=True)
def batch_norm_dx(x, mean, d, q, p, scale, dx):
    """dx = ((x - mean) * q + d + p) * scale, per column of (M, C) arrays."""
    m, c = x.shape
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        for i in range(lo, hi):
            for j in range(c):
                dx[i, j] = ((x[i, j] - mean[j]) * q[j] + d[i, j] + p[j]) * scale[j]


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


@njit(parallel=True, cache=True)
def gather_patches(xt, kh, kw, stride, r0, r1, ow, cols):
    """im2col's gather for output rows r0..r1-1 of the padded pixel-major (C, Hp, Wp, N) `xt`:
    cols[(c*KH + i)*KW + j, ((r - r0)*OW + o)*N + s] = xt[c, r*stride + i, o*stride + j, s].

    Each (c, i, j) row of the columns is written by one thread (so conv1's single channel
    still splits over its KH*KW rows), as runs of OW*N values (stride 1) or N (otherwise).
    An exact copy: the same bits as the NumPy gather.
    """
    for q in prange(xt.shape[0] * kh * kw):
        gather_row(xt, q, kh, kw, stride, r0, r1, ow, cols[q])


@njit(cache=True, inline="always")
def gather_row(xt, q, kh, kw, stride, r0, r1, ow, dst):
    """Row q = (c*KH + i)*KW + j of gather_patches' columns, into `dst`."""
    _, _, wp, n = xt.shape
    kk = kh * kw
    c, i, j = q // kk, (q % kk) // kw, q % kw
    for r in range(r1 - r0):
        src = xt[c, (r0 + r) * stride + i].reshape(wp * n)  # (Wp, N) row, contiguous
        out = dst[r * ow * n : (r + 1) * ow * n]
        if stride == 1:
            run = src[j * n : (j + ow) * n]
            for u in range(ow * n):
                out[u] = run[u]
        else:
            for o in range(ow):
                run = src[(o * stride + j) * n : (o * stride + j + 1) * n]
                for s in range(n):
                    out[o * n + s] = run[s]


@njit(parallel=True, cache=True)
def scatter_patches(dcols, kh, kw, stride, r0, r1, ow, dxp):
    """col2im's sums, the adjoint of gather_patches: adds the (C*KH*KW, (r1-r0)*OW*N) column
    gradients of output rows r0..r1-1 into the padded pixel-major (C, Hp, Wp, N) `dxp`.

    One thread owns each (channel, padded input row) pair, so no two write the same value;
    every value receives its terms in kernel-offset order (i, then j), the order NumPy's
    slab-by-slab adds use, so the sums are the same bits as the NumPy col2im.
    """
    span = (r1 - r0 - 1) * stride + kh  # padded input rows the block's windows cover
    for q in prange(dxp.shape[0] * span):
        c, y = q // span, r0 * stride + q % span
        scatter_row(dcols, 0, c, y, kh, kw, stride, r0, r1, ow, dxp)


@njit(cache=True, inline="always")
def scatter_row(dcols, first, c, y, kh, kw, stride, r0, r1, ow, dxp):
    """scatter_patches' sums into padded input row y of channel c; dcols' rows start at
    column row `first` (0: all of them)."""
    _, _, wp, n = dxp.shape
    rows = r1 - r0
    top = r0 * stride
    target = dxp[c, y].reshape(wp * n)
    for i in range(kh):
        step = y - top - i  # = r * stride for the output row r whose window row i is y
        if step < 0 or step % stride != 0 or step // stride >= rows:
            continue
        r = step // stride
        for j in range(kw):
            src = dcols[(c * kh + i) * kw + j - first, r * ow * n : (r + 1) * ow * n]
            if stride == 1:
                acc = target[j * n : (j + ow) * n]
                for u in range(ow * n):
                    acc[u] += src[u]
            else:
                for o in range(ow):
                    acc = target[(o * stride + j) * n : (o * stride + j + 1) * n]
                    for s in range(n):
                        acc[s] += src[o * n + s]


@njit(parallel=True, cache=True)
def adam_step(param, grad, m, v, b1, b2, a1, a2, root, eps, rate):
    """One Adam step over flat arrays in one sweep (optimizers.Adam.step's ufuncs, fused):
    m = m*b1 + g*a1; v = v*b2 + (g*a2)*g; param -= (m*rate) / (sqrt(v)*root + eps).

    The scalars come in the arrays' dtype and every operation rounds as the ufunc it stands
    for (no fused multiply-adds without fastmath), so the result is the NumPy step's bits.
    """
    n = param.size
    for k in prange(CHUNKS):
        lo, hi = _span(k, n)
        p, g, mk, vk = param[lo:hi], grad[lo:hi], m[lo:hi], v[lo:hi]
        for u in range(hi - lo):
            gu = g[u]
            mu = mk[u] * b1 + gu * a1
            vu = vk[u] * b2 + (gu * a2) * gu
            mk[u] = mu
            vk[u] = vu
            p[u] = p[u] - (mu * rate) / (np.sqrt(vu) * root + eps)


@njit(parallel=True, cache=True)
def ema_step(average, weights, rate):
    """average += (weights - average) * rate over flat arrays, in one sweep; each operation
    rounds as WeightAverage.update's ufuncs do, so the bits are theirs."""
    n = average.size
    for k in prange(CHUNKS):
        lo, hi = _span(k, n)
        a, w = average[lo:hi], weights[lo:hi]
        for u in range(hi - lo):
            a[u] = a[u] + (w[u] - a[u]) * rate


@njit(parallel=True, cache=True)
def transpose(a, out):
    """out = a.T for C-contiguous (R, C) `a` and (C, R) `out`: an exact copy.

    NumPy copies a transpose like (19600, 32) -> (32, 19600) (a pooled conv block's output
    turned channel-major for the next conv) in 2.3 ms, reading down columns with a stride;
    here each thread reads a block of rows in order and writes its C short runs, 0.3 ms.
    """
    rows, cols = a.shape
    step = 256  # rows per block: its C runs of the output are whole cache lines
    for b in prange((rows + step - 1) // step):
        for r in range(b * step, min(rows, (b + 1) * step)):
            src = a[r]
            for c in range(cols):
                out[c, r] = src[c]


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
