"""The convolution in blocks of output rows: accel/'s im2col and col2im (the whole-batch forms,
the book's, are engine/layers/im2col.py).

Columns are pixel-major, as engine/layers/im2col.py lays them out: (C*KH*KW, OH*OW*N), rows in
the order of ``W.reshape(F, C*KH*KW)``, so the GEMM ``cols.T @ W2.T`` yields (OH*OW*N, F), a
conv output whose memory is (OH, OW, N, F). Gathering them from a (C, H, W, N) copy of the
input copies runs of OW*N contiguous values.

im2col_gemm and conv_gradients compute the same columns and the same sums a block of output
rows at a time, so that each block's columns are still in cache when the next step reads
them; the backward gathers them again instead of keeping them.

With the compiled loops the gather and the sums run split over the threads
(compiled.gather_patches, scatter_patches). They give the same bits as the NumPy statements
of them below (tests compare them): the gather is a copy, and the sums add each value's terms
in the same order, block by block. On more than one thread (and with NumPy's sgemm found,
kernels.products()), the blocked forms run as compiled pieces instead, each thread gathering
and multiplying its own blocks or channels (compiled/gemm.py), again with the same bits.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..functional import Pair, offsets, output_size
from . import kernels
from .blas import MIN_PIECE, TILE


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


# Convolutions run in blocks of output rows whose columns (about this many bytes) stay in the
# L2/L3 cache between the gather that writes them and the GEMMs that read them, so the columns
# never travel to memory and back: writing the cnn-deep preset's second conv's 22 MB of
# columns (batch 100) out and reading them in twice cost more than gathering them twice.
BLOCK_BYTES = 2 << 20


def row_blocks(out_rows: int, bytes_per_row: int) -> list[slice]:
    """Slices of output rows, about BLOCK_BYTES of columns each (at least one row)."""
    step = min(out_rows, max(1, BLOCK_BYTES // max(bytes_per_row, 1)))
    return [slice(r, min(r + step, out_rows)) for r in range(0, out_rows, step)]


def patches(xt: np.ndarray, kernel: Pair, stride: int, rows: slice, ow: int) -> np.ndarray:
    """The inputs of output rows `rows` as a read-only (C, KH, KW, R, OW, N) view of the padded
    (C, Hp, Wp, N) copy `xt`; copying it into (C*KH*KW, R*OW*N) gives those rows' columns.
    """
    c, _, _, n = xt.shape
    sc, sh, sw, sn = xt.strides
    return as_strided(
        xt[:, rows.start * stride :],
        shape=(c, *kernel, rows.stop - rows.start, ow, n),
        strides=(sc, sh, sw, sh * stride, sw * stride, sn),
        writeable=False,
    )


def gather(
    xt: np.ndarray, kernel: Pair, stride: int, rows: slice, ow: int, out: np.ndarray
) -> None:
    """Copy the inputs of output rows `rows` of padded (C, Hp, Wp, N) `xt` into their
    (C*KH*KW, R*OW*N) columns `out`."""
    fast = kernels.compiled()
    if fast is not None:
        fast.gather_patches(xt, *kernel, stride, rows.start, rows.stop, ow, out)
        return
    c, _, _, n = xt.shape
    out.reshape(c, *kernel, rows.stop - rows.start, ow, n)[...] = patches(
        xt, kernel, stride, rows, ow
    )


def add_patches(
    dxp: np.ndarray, cols: np.ndarray, kernel: Pair, stride: int, rows: slice, ow: int
) -> None:
    """The adjoint of `patches`: add (C*KH*KW, R*OW*N) columns of output rows `rows` into the
    padded (C, Hp, Wp, N) gradient `dxp`, one (C, R, OW, N) slab per kernel offset.
    """
    fast = kernels.compiled()
    if fast is not None:
        fast.scatter_patches(cols, *kernel, stride, rows.start, rows.stop, ow, dxp)
        return
    c, _, _, n = dxp.shape
    r = rows.stop - rows.start
    slabs = cols.reshape(c, *kernel, r, ow, n)  # a view
    top = rows.start * stride
    for _, i, j in offsets(kernel):
        # Runs of OW*N contiguous values when stride is 1 (N values otherwise).
        target = dxp[:, top + i : top + i + stride * (r - 1) + 1 : stride]
        target = target[:, :, j : j + stride * (ow - 1) + 1 : stride]
        np.add(target, slabs[:, i, j], out=target)


def _column_buffer(k: int, blocks: list[slice], ow: int, n: int, dtype: np.dtype) -> np.ndarray:
    """One block's (K + 1, R*OW*N) columns, reused block after block; the last row is the
    ones that carry the bias."""
    cols = np.empty((k + 1, (blocks[0].stop - blocks[0].start) * ow * n), dtype=dtype)
    cols[k] = 1
    return cols


def im2col_gemm(
    x: np.ndarray, weights: np.ndarray, kernel: Pair, stride: int, pad: Pair
) -> tuple[np.ndarray, np.ndarray]:
    """(xt, out): the padded pixel-major input and im2col(x, ..., ones_row=True).T @
    weights.T, a block of output rows at a time.

    `weights` is (F, C*KH*KW + 1), the bias as the last column; out is (OH*OW*N, F), i.e.
    (OH, OW, N, F) memory. Each block's columns are gathered into one reused buffer and
    multiplied while still in cache; they are never all in memory at once (conv_gradients
    gathers them again from xt, which is KH*KW times smaller).
    """
    n, c, h, w = x.shape
    oh = output_size(h, kernel[0], stride, pad[0])
    ow = output_size(w, kernel[1], stride, pad[1])
    xt = pixel_major(x, pad)
    k = c * kernel[0] * kernel[1]
    blocks = row_blocks(oh, (k + 1) * ow * n * x.itemsize)
    out = np.empty((oh * ow * n, weights.shape[0]), dtype=x.dtype)
    products = _products(x, weights)
    if products is not None:
        fast, sgemm = products
        pieces = kernels.threads()
        blocks = _forward_blocks(blocks, oh, ow * n, (k + 1) * weights.shape[0], pieces)
        pieces = min(pieces, len(blocks))
        starts, stops, buffers = _piece_buffers(blocks, k + 1, ow * n, pieces, x.dtype)
        weights = np.ascontiguousarray(weights)
        fast.conv_forward(sgemm, xt, *kernel, stride, starts, stops, ow, weights, buffers, out)
        return xt, out
    buffer = _column_buffer(k, blocks, ow, n, x.dtype)
    for rows in blocks:
        span = slice(rows.start * ow * n, rows.stop * ow * n)
        cols = buffer[:, : span.stop - span.start]
        gather(xt, kernel, stride, rows, ow, cols[:k])
        np.matmul(cols.T, weights.T, out=out[span])
    return xt, out


# Long: one pass over the blocks does the weight, bias and input gradients together, so each
# block's columns are gathered once; splitting it would gather them again.
def conv_gradients(
    xt: np.ndarray,
    dout2: np.ndarray,
    W2: np.ndarray,
    kernel: Pair,
    stride: int,
    pad: Pair,
    input_grad: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(grads, dx) of a convolution from its padded pixel-major input `xt` (im2col_gemm's).

    dout2 is (OH*OW*N, F), W2 (F, C*KH*KW). grads is (C*KH*KW + 1, F): dW transposed, and
    from the row of ones db in the last row; summed block by block, each block's columns
    gathered again while the block's GEMMs read them from cache. dx (None unless
    `input_grad`) is col2im(W2.T @ dout2.T), (N, C, H, W) over (C, H, W, N) memory.
    """
    c, hp, wp, n = xt.shape
    (kh, kw), (ph, pw) = kernel, pad
    oh, ow = output_size(hp, kh, stride), output_size(wp, kw, stride)
    k = c * kh * kw
    blocks = row_blocks(oh, (k + 1) * ow * n * xt.itemsize)
    products = _products(xt, dout2, W2)
    shares = _channel_shares(
        c, kh * kw, min(b.stop - b.start for b in blocks) * ow * n, W2.shape[0]
    )
    if products is not None and (not input_grad or len(shares) > 2):
        grads, dxp = _gradients_in_pieces(
            products, xt, dout2, W2, kernel, stride, blocks, ow, shares if input_grad else None
        )
        if dxp is None:
            return grads, None
        return grads, dxp.transpose(3, 0, 1, 2)[:, :, ph : hp - ph, pw : wp - pw]
    buffer = _column_buffer(k, blocks, ow, n, xt.dtype)
    grads = np.zeros((k + 1, W2.shape[0]), dtype=dout2.dtype)
    part = np.empty_like(grads)
    dxp = np.zeros_like(xt, dtype=dout2.dtype) if input_grad else None
    for rows in blocks:
        span = slice(rows.start * ow * n, rows.stop * ow * n)
        cols = buffer[:, : span.stop - span.start]
        gather(xt, kernel, stride, rows, ow, cols[:k])
        grads += np.matmul(cols, dout2[span], out=part)
        if dxp is not None:
            dcols = cols[:k]  # the gathered inputs are used; their buffer takes the gradient
            np.matmul(W2.T, dout2[span].T, out=dcols)
            add_patches(dxp, dcols, kernel, stride, rows, ow)
    if dxp is None:
        return grads, None
    return grads, dxp.transpose(3, 0, 1, 2)[:, :, ph : hp - ph, pw : wp - pw]


def _products(*arrays: np.ndarray):
    """(compiled_gemm, sgemm) when a conv's products can run in pieces on the compiled loops'
    threads (kernels.products()) and its arrays are float32; else None."""
    if any(a.dtype != np.float32 for a in arrays):
        return None
    return kernels.products()


def _forward_blocks(
    blocks: list[slice], out_rows: int, per_row: int, work_per_pixel: int, pieces: int
) -> list[slice]:
    """The forward's blocks for `pieces`: row_blocks' `blocks`, or as many even ones as make
    a multiple of the pieces (cnn's 24 rows: 8+8+8 would leave one of two pieces idle a third
    of the time) when that keeps the bits: every block of both starting on a whole tile and
    all of them products of at least MIN_PIECE multiply-adds (blas.py)."""
    even = _even(out_rows, -(-len(blocks) // pieces) * pieces)
    smallest = min(b.stop - b.start for b in [*blocks, *even]) * per_row * work_per_pixel
    return even if per_row % TILE == 0 and smallest >= MIN_PIECE else blocks


def _even(out_rows: int, count: int) -> list[slice]:
    """`count` blocks of output rows (fewer when there are fewer rows), sizes within one."""
    count = min(count, out_rows)
    return [slice(out_rows * b // count, out_rows * (b + 1) // count) for b in range(count)]


def _piece_buffers(
    blocks: list[slice], rows: int, per_row: int, pieces: int, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, stops, buffers): the blocks' first and past-the-end output rows, and each
    piece's (rows, widest block's columns) buffer, its last row ones (the bias's)."""
    starts = np.array([b.start for b in blocks], dtype=np.int64)
    stops = np.array([b.stop for b in blocks], dtype=np.int64)
    widest = int((stops - starts).max()) * per_row
    buffers = np.empty((pieces, rows, widest), dtype=dtype)
    buffers[:, -1] = 1
    return starts, stops, buffers


def _gradients_in_pieces(
    products,
    xt: np.ndarray,
    dout2: np.ndarray,
    W2: np.ndarray,
    kernel: Pair,
    stride: int,
    blocks: list[slice],
    ow: int,
    edges: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """conv_gradients' (grads, padded dx or None) with the compiled pieces: blocks dealt to
    the pieces for a first layer (no dx); otherwise the input channels shared out, each
    piece doing its channels' rows of every block (its own planes of dx, so no two write the
    same value). The blocks are row_blocks' either way: the parts' sum depends on them."""
    fast, sgemm = products
    c, _, _, n = xt.shape
    k = c * kernel[0] * kernel[1]
    pieces = kernels.threads()
    dout2 = np.ascontiguousarray(dout2)
    parts = np.empty((len(blocks), k + 1, dout2.shape[1]), dtype=dout2.dtype)
    if edges is None:  # no input gradient
        pieces = min(pieces, len(blocks))
        starts, stops, buffers = _piece_buffers(blocks, k + 1, ow * n, pieces, xt.dtype)
        fast.conv_weight_grads(sgemm, xt, *kernel, stride, starts, stops, ow, dout2, buffers, parts)
        return _in_order(parts), None
    share = int(np.diff(edges).max()) * kernel[0] * kernel[1] + 1
    starts, stops, buffers = _piece_buffers(blocks, share, ow * n, pieces, xt.dtype)
    dxp = np.zeros_like(xt)
    W2 = np.ascontiguousarray(W2)
    fast.conv_gradients(
        sgemm, xt, *kernel, stride, starts, stops, ow, dout2, W2, edges, buffers, parts, dxp
    )
    return _in_order(parts), dxp


def _channel_shares(channels: int, kk: int, pixels: int, filters: int) -> np.ndarray:
    """Edges of the pieces' shares of the input channels: up to the budget, each starting on
    a whole tile of column rows (channel * KH*KW a multiple of TILE) and each share's products
    of at least MIN_PIECE multiply-adds in the smallest block of `pixels`, for the bits
    (blas.py). cnn-deep's second conv: 32 channels of 9 rows, 2 shares of 16."""
    group = TILE // math.gcd(kk, TILE)  # channels whose rows fill whole tiles
    groups = channels // group
    for pieces in range(min(kernels.threads(), groups), 1, -1):
        edges = [group * (groups * p // pieces) for p in range(pieces)] + [channels]
        if min(np.diff(edges)) * kk * pixels * filters >= MIN_PIECE:
            return np.array(edges, dtype=np.int64)
    return np.array([0, channels], dtype=np.int64)


def _in_order(parts: np.ndarray) -> np.ndarray:
    """The blocks' weight-gradient parts added block by block, in order (as the loop does)."""
    grads = np.zeros(parts.shape[1:], dtype=parts.dtype)
    for part in parts:
        grads += part
    return grads
