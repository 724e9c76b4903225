"""im2col's gather and col2im's scatter, one row of patches at a time (conv blocks use them)."""

from __future__ import annotations

from numba import njit, prange


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
