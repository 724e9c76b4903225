"""Winograd's 3x3 convolution, F(2x2, 3x3): the same function as im2col's GEMM, with 2.25x
fewer multiplications.

A 3x3 convolution computed on 2x2 output tiles takes 16 products per tile and channel pair
instead of im2col's 36 (Lavin and Gray, 2015): the input tiles (4x4) and the filters are
transformed, multiplied elementwise (summed over channels: 16 matrix products of tiles x C by
C x F), and the 16 products transformed back. In the cnn-deep preset's second conv (32 -> 64
channels, 14x14, batch 100, two threads, per training step) the forward went from 6.3 ms to
3.6-4.4 ms and the backward from 10.7 ms to 8.3-10 ms; the transforms, which move the 16
products' 20 MB through the cache, now take about as long as the products themselves.

The backward runs the same way: the input gradient is the convolution of the output gradient
with the filters turned 180 degrees and their channel axes swapped (again 3x3, stride 1), and
the weight gradient comes from the transformed inputs times the transformed output gradients,
transformed back to 3x3 (the adjoint of the filter transform).

Used by Conv2D for 3x3 filters at stride 1 on float32 batches of at least MIN_CHANNELS input
and output channels, when the compiled loops run with NumPy's sgemm (kernels.sgemm()); a
first conv on 1-channel images stays with im2col, whose one product is already cheap. The
rounding differs from im2col's (the transforms add and subtract before the products): the
two agree to float32 precision (tests compare both with a float64 reference), and Winograd
gives its own bits on any thread count, so a resumed run stays exact.

Images travel in (H, W, N, C) memory both ways, the layout Conv2D's output already has: the
input is read as it comes (a fused BatchNorm/pool run lays its output out so), and the input
gradient leaves in it, which is what the fused run's backward reads without a copy.
"""

from __future__ import annotations

import numpy as np

from . import kernels

# Fewer channels than this and the products are too thin to pay for the transforms (a first
# layer on grey images has 1); im2col then stays.
MIN_CHANNELS = 16
# A block (a row of tiles of some images) is sized so that its transformed inputs and
# products, 16 * tiles * (C + F) floats, fit in this much of a core's L2 cache (1.25 MB per
# core here): 170 tiles for cnn-deep's second conv, 25 images. Measured there, 48 to 384
# tiles ran within the machine's noise of each other. Shapes decide the blocks, never the
# thread count: the weight gradient's sums follow them.
BLOCK_BYTES = 1 << 20


def usable(dtype: np.dtype, weights: np.ndarray, stride: int) -> bool:
    """Whether Conv2D's forward on a batch of `dtype` with filters `weights` (F, C, KH, KW)
    runs here."""
    f, c, kh, kw = weights.shape
    return (
        (kh, kw) == (3, 3)
        and stride == 1
        and min(c, f) >= MIN_CHANNELS
        and dtype == np.float32
        and weights.dtype == np.float32
        and kernels.sgemm() is not None
    )


def channels_last(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) `x` as (H, W, N, C) memory: a view when it is laid out so, else a copy."""
    return np.ascontiguousarray(x.transpose(2, 3, 0, 1))


def forward(images: np.ndarray, weights: np.ndarray, bias: np.ndarray, pad: tuple[int, int]):
    """(OH, OW, N, F): the convolution of `images` (H, W, N, C) with `weights` (F, C, 3, 3)
    padded by `pad` (rows, columns) on each side, plus `bias`."""
    h, w = images.shape[:2]
    out_hw = (h + 2 * pad[0] - 2, w + 2 * pad[1] - 2)
    return _convolve(images, _filter_tiles(weights), bias, pad, out_hw)


def input_grad(dy: np.ndarray, weights: np.ndarray, pad: tuple[int, int], in_hw) -> np.ndarray:
    """(H, W, N, C): the gradient of forward's input from its output's gradient dy (OH, OW,
    N, F): dy padded by 2 - pad, convolved with the filters turned 180 degrees, C <-> F."""
    turned = weights[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    zeros = np.zeros(turned.shape[0], dtype=dy.dtype)
    return _convolve(dy, _filter_tiles(turned), zeros, (2 - pad[0], 2 - pad[1]), in_hw)


def weight_grads(images: np.ndarray, dy: np.ndarray, pad: tuple[int, int]):
    """(dW (F, C, 3, 3), db (F,)) of forward from its input and its output's gradient."""
    fast, sgemm = _compiled()
    c, (oh, ow, n, f) = images.shape[3], dy.shape
    samples, blocks, buffers = _plan((oh, ow), n, c, f)
    parts = np.empty((blocks, 16, c, f), dtype=np.float32)
    sums = np.zeros((blocks, f), dtype=np.float64)
    dy = np.ascontiguousarray(dy)
    fast.weight_grads(sgemm, images, pad[0], pad[1], dy, samples, *buffers, parts, sums)
    tiles_grad = parts[0].copy()
    for part in parts[1:]:  # in block order, whatever ran them: the bits are fixed
        tiles_grad += part
    return _filter_grads(tiles_grad), sums.sum(axis=0).astype(np.float32)


def _compiled():
    from .compiled import winograd as compiled_winograd

    return compiled_winograd, kernels.sgemm()


def _convolve(src, filters, bias, pad, out_hw) -> np.ndarray:
    fast, sgemm = _compiled()
    n, c, f = src.shape[2], src.shape[3], filters.shape[2]
    samples, _, buffers = _plan(out_hw, n, c, f)
    out = np.empty((*out_hw, n, f), dtype=np.float32)
    src = np.ascontiguousarray(src)
    bias = np.ascontiguousarray(bias, dtype=np.float32)
    fast.convolve(sgemm, src, pad[0], pad[1], samples, filters, bias, *buffers, out)
    return out


def _plan(out_hw: tuple[int, int], n: int, c: int, f: int):
    """(samples per block, blocks, work buffers) of a pass with C inputs and F outputs.

    A block holds as many images as keep its buffers near BLOCK_BYTES, the batch shared
    evenly between the chunks; the blocks run tile row by tile row. The buffers, one set
    per piece (vbuf (16, tiles, C), mbuf (16, tiles, F), the input transform's scratch
    (4, input columns, samples * max(C, F)) and that many zeros)."""
    across = (out_hw[1] + 1) // 2
    chunks = -(-n // max(1, BLOCK_BYTES // (16 * (c + f) * 4) // across))
    samples = -(-n // chunks)
    blocks = (out_hw[0] + 1) // 2 * chunks
    pieces = min(kernels.threads(), blocks)
    tiles, scratch = across * samples, samples * max(c, f)
    buffers = [
        np.empty((pieces, 16, tiles, c), dtype=np.float32),
        np.empty((pieces, 16, tiles, f), dtype=np.float32),
        np.empty((pieces, 4, 2 * across + 2, scratch), dtype=np.float32),
        np.zeros(scratch, dtype=np.float32),
    ]
    return samples, blocks, buffers


def _filter_tiles(weights: np.ndarray) -> np.ndarray:
    """U (16, C, F): U[4a+b] = (G g G')[a, b] for every filter g (F, C, 3, 3), C-contiguous."""
    half = np.float32(0.5)

    def spread(g0, g1, g2):  # G times a column of 3: 4 values
        return g0, (g0 + g1 + g2) * half, (g0 - g1 + g2) * half, g2

    rows = spread(weights[:, :, 0], weights[:, :, 1], weights[:, :, 2])  # each (F, C, 3)
    tiles = [spread(r[..., 0], r[..., 1], r[..., 2]) for r in rows]  # [a][b]: (F, C)
    return np.ascontiguousarray(np.stack([u.T for row in tiles for u in row]))


def _filter_grads(tiles_grad: np.ndarray) -> np.ndarray:
    """dW (F, C, 3, 3) from the gradient of the filters' transforms (16, C, F): the adjoint
    of _filter_tiles, dg = G' dU G."""
    half = np.float32(0.5)

    def gather(u0, u1, u2, u3):  # G' times a column of 4: 3 values
        return u0 + (u1 + u2) * half, (u1 - u2) * half, (u1 + u2) * half + u3

    t = [tiles_grad[4 * a : 4 * a + 4] for a in range(4)]  # t[a][b]: (C, F)
    rows = gather(*t)  # [i]: (4, C, F), over b
    grads = np.stack([np.stack(gather(*r)) for r in rows])  # (3, 3, C, F)
    return np.ascontiguousarray(grads.transpose(3, 2, 0, 1))
