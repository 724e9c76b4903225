"""im2col/col2im: convolution as one matrix product, pooling as a loop over kernel offsets.

Layout: `im2col` returns columns of shape (C*KH*KW, N*OH*OW), one column per output pixel of
the whole batch and rows in the order of ``W.reshape(F, C*KH*KW)``, so a convolution is a single
GEMM ``W2 @ cols -> (F, N*OH*OW)``. This is the transpose of the book's (N*OH*OW, C*KH*KW):
gathering into it copies runs of OW contiguous inputs (the book's inner runs are KW long), and
`col2im` adds each kernel offset's (C, N, OH, OW) slab with no transpose.

Output sizes are floored, as in the book: input rows/columns that no window reaches are ignored
(and get a zero gradient).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.lib.stride_tricks import as_strided

Pair = tuple[int, int]


def output_size(size: int, kernel: int, stride: int, pad: int = 0) -> int:
    """Window positions along one axis: floor((size + 2*pad - kernel) / stride) + 1."""
    return (size + 2 * pad - kernel) // stride + 1


def window(x: np.ndarray, i: int, j: int, stride: int, out_hw: Pair) -> np.ndarray:
    """The inputs under kernel offset (i, j) for every output pixel: a (N, C, OH, OW) view."""
    oh, ow = out_hw
    return x[:, :, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride]


def offsets(kernel: Pair) -> Iterator[tuple[int, int, int]]:
    """(k, i, j) for every kernel offset (i, j), k its flat index in row-major order."""
    kh, kw = kernel
    for k in range(kh * kw):
        yield k, k // kw, k % kw


def pad_input(x: np.ndarray, pad: Pair) -> np.ndarray:
    """Zero-pad H and W of (N, C, H, W); the padded copy keeps x's memory layout."""
    ph, pw = pad
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    # zeros_like keeps x's stride order (a channel-major conv output stays channel-major).
    padded = np.zeros_like(x, shape=(n, c, h + 2 * ph, w + 2 * pw))
    padded[:, :, ph : ph + h, pw : pw + w] = x
    return padded


def im2col(x: np.ndarray, kernel: Pair, stride: int = 1, pad: Pair = (0, 0)) -> np.ndarray:
    """(N, C, H, W) -> (C*KH*KW, N*OH*OW) columns, contiguous, in x's dtype."""
    n, c, h, w = x.shape
    kh, kw = kernel
    oh = output_size(h, kh, stride, pad[0])
    ow = output_size(w, kw, stride, pad[1])
    xp = pad_input(x, pad)
    sn, sc, sh, sw = xp.strides
    # A read-only strided view (C, KH, KW, N, OH, OW) of the padded input; nothing is copied yet.
    patches = as_strided(
        xp,
        shape=(c, kh, kw, n, oh, ow),
        strides=(sc, sh, sw, sn, sh * stride, sw * stride),
        writeable=False,
    )
    # (C, KH, KW, N, OH, OW) -> (C*KH*KW, N*OH*OW): the one gather copy of the convolution.
    return patches.reshape(c * kh * kw, n * oh * ow)


def col2im(
    cols: np.ndarray,
    x_shape: tuple[int, ...],
    kernel: Pair,
    stride: int = 1,
    pad: Pair = (0, 0),
) -> np.ndarray:
    """The adjoint of im2col: (C*KH*KW, N*OH*OW) -> (N, C, H, W), overlaps summed.

    Loops over the KH*KW kernel offsets only; each iteration adds one (C, N, OH, OW) slab.
    The result is an (N, C, H, W) view of channel-major memory (C, N, H, W), the layout the
    slabs arrive in; NumPy ops downstream accept any strides.
    """
    n, c, h, w = x_shape
    (kh, kw), (ph, pw) = kernel, pad
    oh, ow = output_size(h, kh, stride, ph), output_size(w, kw, stride, pw)
    # (C*KH*KW, N*OH*OW) -> (C, KH, KW, N, OH, OW), a view.
    slabs = cols.reshape(c, kh, kw, n, oh, ow)
    # (C, N, Hp, Wp) memory seen as (N, C, Hp, Wp).
    dxp = np.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=cols.dtype).transpose(1, 0, 2, 3)
    for _, i, j in offsets(kernel):
        target = window(dxp, i, j, stride, (oh, ow)).transpose(1, 0, 2, 3)  # (C, N, OH, OW)
        np.add(target, slabs[:, i, j], out=target)
    return dxp[:, :, ph : ph + h, pw : pw + w]
