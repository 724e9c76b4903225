"""im2col and col2im, the book's (Deep Learning from Scratch, 7.4): convolution as one matrix
product over the whole batch.

im2col copies the input under every window into a column: (C*KH*KW, OH*OW*N), one column per
output pixel of the batch, rows in the order of ``W.reshape(F, C*KH*KW)``. That is the book's
(N*OH*OW, C*KH*KW) transposed, with the pixel axes outward ("pixel-major": output row, output
column, then sample): the product ``col.T @ W2.T`` is then (OH*OW*N, F), a conv output whose
memory is (OH, OW, N, F), where the pixels a pooling window combines lie in separate runs of
N*F values. accel/conv_blocks.py makes the same columns a block of rows at a time.

Like the book's, both are loops over the KH*KW kernel offsets, each copying (or adding) one
(C, OH, OW, N) slab. Output sizes are floored: input rows and columns no window reaches are
ignored (and get a zero gradient).
"""

from __future__ import annotations

import numpy as np

from ...functional import Pair, offsets, output_size


def im2col(
    x: np.ndarray, kernel: Pair, stride: int = 1, pad: Pair = (0, 0), ones_row: bool = False
) -> np.ndarray:
    """(N, C, H, W) -> (C*KH*KW, OH*OW*N) columns, contiguous, in x's dtype.

    `ones_row` appends a row of ones: a bias stored as an extra weight column then rides in
    the product (accel/'s convolution carries its bias so).
    """
    n, c, h, w = x.shape
    (kh, kw), (ph, pw) = kernel, pad
    oh, ow = output_size(h, kh, stride, ph), output_size(w, kw, stride, pw)
    # (N, C, H, W) -> zero-padded (C, H + 2*ph, W + 2*pw, N): each slab below is then a
    # strided view whose runs of N samples are contiguous.
    xp = np.pad(x.transpose(1, 2, 3, 0), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    col = np.empty((c, kh, kw, oh, ow, n), dtype=x.dtype)
    for _, i, j in offsets(kernel):
        col[:, i, j] = xp[:, i : i + stride * oh : stride, j : j + stride * ow : stride]
    col = col.reshape(c * kh * kw, oh * ow * n)
    if ones_row:
        col = np.concatenate([col, np.ones((1, col.shape[1]), dtype=x.dtype)])
    return col


def col2im(
    col: np.ndarray, x_shape: tuple[int, ...], kernel: Pair, stride: int = 1, pad: Pair = (0, 0)
) -> np.ndarray:
    """The adjoint of im2col: (C*KH*KW, OH*OW*N) -> (N, C, H, W), overlapping windows summed.

    The result is an (N, C, H, W) view of (C, H, W, N) memory, the layout the slabs arrive
    in (and a pixel-major gradient for the layer before).
    """
    n, c, h, w = x_shape
    (kh, kw), (ph, pw) = kernel, pad
    oh, ow = output_size(h, kh, stride, ph), output_size(w, kw, stride, pw)
    slabs = col.reshape(c, kh, kw, oh, ow, n)
    dxp = np.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=col.dtype)
    for _, i, j in offsets(kernel):
        dxp[:, i : i + stride * oh : stride, j : j + stride * ow : stride] += slabs[:, i, j]
    return dxp.transpose(3, 0, 1, 2)[:, :, ph : ph + h, pw : pw + w]
