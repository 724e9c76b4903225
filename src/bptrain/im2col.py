"""im2col/col2im: convolution as one matrix product, pooling as a loop over kernel offsets.

Layout: `im2col` returns columns of shape (C*KH*KW, OH*OW*N), one column per output pixel of
the whole batch and rows in the order of ``W.reshape(F, C*KH*KW)``. The columns are
*pixel-major* (output row, output column, then sample): gathering them from a (C, H, W, N) copy
of the input copies runs of OW*N contiguous values, and the GEMM ``cols.T @ W2.T`` then yields
(OH*OW*N, F), i.e. a conv output whose memory is (OH, OW, N, F). In that layout the pixels a
pooling window combines lie in separate runs of N*F contiguous values, which is what makes
pooling fast (see MaxPool2D). This is the transpose of the book's (N*OH*OW, C*KH*KW), with
the pixel axes moved outward.

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


def pixel_major(x: np.ndarray, pad: Pair) -> np.ndarray:
    """(N, C, H, W) -> a zero-padded (C, H + 2*ph, W + 2*pw, N) contiguous copy.

    Padding and the transpose happen in the same copy; with the sample axis innermost, every
    kernel offset's (OH, OW, N) block of inputs is one run of contiguous values (stride 1).
    """
    n, c, h, w = x.shape
    ph, pw = pad
    shape = (c, h + 2 * ph, w + 2 * pw, n)
    xt = np.zeros(shape, dtype=x.dtype) if ph or pw else np.empty(shape, dtype=x.dtype)
    xt[:, ph : ph + h, pw : pw + w, :] = x.transpose(1, 2, 3, 0)  # (N, C, H, W) -> (C, H, W, N)
    return xt


def im2col(
    x: np.ndarray,
    kernel: Pair,
    stride: int = 1,
    pad: Pair = (0, 0),
    ones_row: bool = False,
) -> np.ndarray:
    """(N, C, H, W) -> (C*KH*KW, OH*OW*N) pixel-major columns, contiguous, in x's dtype.

    `ones_row` appends a row of ones (shape (C*KH*KW + 1, OH*OW*N)): a bias stored as an extra
    weight column then rides in the convolution's GEMM instead of costing a pass of its own.
    """
    n, c, h, w = x.shape
    kh, kw = kernel
    oh = output_size(h, kh, stride, pad[0])
    ow = output_size(w, kw, stride, pad[1])
    xt = pixel_major(x, pad)
    sc, sh, sw, sn = xt.strides
    # A read-only strided view (C, KH, KW, OH, OW, N) of the padded copy; nothing copied yet.
    patches = as_strided(
        xt,
        shape=(c, kh, kw, oh, ow, n),
        strides=(sc, sh, sw, sh * stride, sw * stride, sn),
        writeable=False,
    )
    rows = c * kh * kw
    cols = np.empty((rows + ones_row, oh * ow * n), dtype=x.dtype)
    # (C, KH, KW, OH, OW, N) -> (C*KH*KW, OH*OW*N): the one gather copy of the convolution.
    cols[:rows].reshape(c, kh, kw, oh, ow, n)[...] = patches
    if ones_row:
        cols[rows] = 1
    return cols


def col2im(
    cols: np.ndarray,
    x_shape: tuple[int, ...],
    kernel: Pair,
    stride: int = 1,
    pad: Pair = (0, 0),
) -> np.ndarray:
    """The adjoint of im2col: (C*KH*KW, OH*OW*N) -> (N, C, H, W), overlaps summed.

    Loops over the KH*KW kernel offsets only; each iteration adds one (C, OH, OW, N) slab.
    The result is an (N, C, H, W) view of (C, H, W, N) memory, the layout the slabs arrive in;
    NumPy ops downstream accept any strides.
    """
    n, c, h, w = x_shape
    (kh, kw), (ph, pw) = kernel, pad
    oh, ow = output_size(h, kh, stride, ph), output_size(w, kw, stride, pw)
    # (C*KH*KW, OH*OW*N) -> (C, KH, KW, OH, OW, N), a view.
    slabs = cols.reshape(c, kh, kw, oh, ow, n)
    # (C, Hp, Wp, N) memory seen as (N, C, Hp, Wp).
    dxp = np.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=cols.dtype).transpose(3, 0, 1, 2)
    for _, i, j in offsets(kernel):
        target = window(dxp, i, j, stride, (oh, ow))  # (N, C, OH, OW), same memory order
        np.add(target, slabs[:, i, j].transpose(3, 0, 1, 2), out=target)
    return dxp[:, :, ph : ph + h, pw : pw + w]
