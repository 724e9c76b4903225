"""Compiled loops of the Winograd convolution (winograd.py): 3x3 filters, stride 1.

Imported only through winograd.py, with the `fast` extra and NumPy's sgemm found. The images
are in (H, W, N, C) memory, the layout a conv's output and the fused BatchNorm/pool runs
already have, so every inner loop runs over contiguous channels (or filters).

The output is cut into tiles of 2x2 pixels; a block is one row of tiles of `samples`
images, and each block is one work unit: transform its input tiles into a (16, tiles, C)
buffer, multiply each of the 16 (tiles x C) matrices by its (C x F) transformed filters with
one sgemm call, transform the (16, tiles, F) products back to pixels. (This order keeps each
of the 16 matrices contiguous; in (tiles, 16, F) order a product's rows lie 4 KB apart for
F = 64, all in the same cache sets.) The blocks depend on the shapes only, never on the
thread count, so a block's results are the same bits on any number of threads: every sgemm
call is the same call, made on a BLAS of one thread.

Formulas: Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks" (2015),
F(2x2, 3x3): Y = A' [(G g G') . (B' d B)] A.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..blas import NO_TRANS, TRANS
from .gemm import _gemm

FLOAT = 4  # bytes of a float32: pointers below are addresses, offsets in bytes


@njit(cache=True, inline="always")
def _block(blk, samples, n_total):
    """Block `blk`'s tile row and samples n0..n1-1 (blocks run tile row by tile row)."""
    chunks = (n_total + samples - 1) // samples
    ti = blk // chunks
    n0 = (blk % chunks) * samples
    return ti, n0, min(n_total, n0 + samples)


# Every inner loop below runs over 1-D slices taken before it, indexed by the loop's own
# counter: LLVM then knows no index is negative and vectorizes the loop (an index such as
# `offset + j` makes numba wrap negative values around, which kept these loops scalar: the
# input transform took 2.2 ms per cnn-deep step that way, 1.0 ms this way, on one thread).


@njit(cache=True, inline="always")
def _row(flat, start, length, zero):
    """flat[start:start + length], or zeros when start is -1 (outside the image)."""
    return zero[:length] if start < 0 else flat[start : start + length]


@njit(cache=True, inline="always")
def _input_tiles(src, top, left, ti, n0, n1, tw, V, T, zero):
    """V[4a+b, p, :] = (B' d B)[a, b] for the block's tiles p = tj * (n1 - n0) + n - n0,
    d the 4x4 input pixels at rows 2ti+a-top, columns 2tj+b-left (zero outside src).

    Separably, and on runs of (n1 - n0) * C contiguous values: first B' over the tile row's
    4 input rows, for every input column into T (4, columns, run); then B over each tile's 4
    columns of T. Neighbouring tiles share 2 columns, which the first pass does once.
    T: scratch of at least (4, 2tw + 2, run); zero: at least `run` zeros (rows or columns
    outside src)."""
    h, w, n_total, c = src.shape
    run = (n1 - n0) * c
    flat = src.reshape(src.size)
    for col in range(2 * tw + 2):
        x = col - left
        at = np.empty(4, np.int64)
        for a in range(4):
            y = 2 * ti + a - top
            inside = 0 <= y < h and 0 <= x < w
            at[a] = ((y * w + x) * n_total + n0) * c if inside else -1
        d0, d1 = _row(flat, at[0], run, zero), _row(flat, at[1], run, zero)
        d2, d3 = _row(flat, at[2], run, zero), _row(flat, at[3], run, zero)
        t0, t1, t2, t3 = T[0, col, :run], T[1, col, :run], T[2, col, :run], T[3, col, :run]
        for j in range(run):
            t0[j] = d0[j] - d2[j]
            t1[j] = d1[j] + d2[j]
            t2[j] = d2[j] - d1[j]
            t3[j] = d1[j] - d3[j]
    tiles = V.reshape(16, V.shape[1] * c)
    for tj in range(tw):
        o = tj * run
        for a in range(4):
            c0, c1 = T[a, 2 * tj, :run], T[a, 2 * tj + 1, :run]
            c2, c3 = T[a, 2 * tj + 2, :run], T[a, 2 * tj + 3, :run]
            v0, v1 = tiles[4 * a, o : o + run], tiles[4 * a + 1, o : o + run]
            v2, v3 = tiles[4 * a + 2, o : o + run], tiles[4 * a + 3, o : o + run]
            for j in range(run):
                v0[j] = c0[j] - c2[j]
                v1[j] = c1[j] + c2[j]
                v2[j] = c2[j] - c1[j]
                v3[j] = c1[j] - c3[j]


@njit(cache=True, inline="always")
def _output_tiles(M, ti, n0, n1, tw, bias, out):
    """out's 2x2 pixels of the block's tiles = A' m A + bias, m[4a+b] = M[4a+b, p] (F,);
    pixels past out's edges (odd sizes) are dropped."""
    oh, ow, _, f = out.shape
    nn = n1 - n0
    for tj in range(tw):
        y, x = 2 * ti, 2 * tj
        right, below = x + 1 < ow, y + 1 < oh
        for n in range(n0, n1):
            p = tj * nn + n - n0
            m0, m1, m2, m3 = M[0, p], M[1, p], M[2, p], M[3, p]
            m4, m5, m6, m7 = M[4, p], M[5, p], M[6, p], M[7, p]
            m8, m9, m10, m11 = M[8, p], M[9, p], M[10, p], M[11, p]
            m12, m13, m14, m15 = M[12, p], M[13, p], M[14, p], M[15, p]
            y00 = out[y, x, n]
            y01 = out[y, x + 1, n] if right else y00
            y10 = out[y + 1, x, n] if below else y00
            y11 = out[y + 1, x + 1, n] if right and below else y00
            for k in range(f):
                # A' m: rows 0+1+2 and 1-2-3, per column; then the same over the columns.
                r00 = m0[k] + m4[k] + m8[k]
                r01 = m1[k] + m5[k] + m9[k]
                r02 = m2[k] + m6[k] + m10[k]
                r03 = m3[k] + m7[k] + m11[k]
                r10 = m4[k] - m8[k] - m12[k]
                r11 = m5[k] - m9[k] - m13[k]
                r12 = m6[k] - m10[k] - m14[k]
                r13 = m7[k] - m11[k] - m15[k]
                # Pixels past the edges are written to y00 first, then overwritten.
                y11[k] = r11 - r12 - r13 + bias[k]
                y10[k] = r10 + r11 + r12 + bias[k]
                y01[k] = r01 - r02 - r03 + bias[k]
                y00[k] = r00 + r01 + r02 + bias[k]


@njit(cache=True, inline="always")
def _gradient_tiles(dy, ti, n0, n1, tw, dM, sums, T, zero):
    """dM[4a+b, p, :] = (A g A')[a, b], g the block's 2x2 output gradients (zero past dy's
    edges): the gradient reaching the tiles' products; sums += those gradients (the bias's).
    On runs of (n1 - n0) * F contiguous values, as _input_tiles; T: scratch of at least
    (2, run); zero: at least `run` zeros."""
    oh, ow, n_total, f = dy.shape
    nn = n1 - n0
    run = nn * f
    flat = dy.reshape(dy.size)
    tiles = dM.reshape(16, dM.shape[1] * f)
    s0, s1 = T[0, :run], T[1, :run]
    for tj in range(tw):
        y, x = 2 * ti, 2 * tj
        right, below = x + 1 < ow, y + 1 < oh
        g00 = _row(flat, ((y * ow + x) * n_total + n0) * f, run, zero)
        g01 = _row(flat, ((y * ow + x + 1) * n_total + n0) * f if right else -1, run, zero)
        g10 = _row(flat, (((y + 1) * ow + x) * n_total + n0) * f if below else -1, run, zero)
        at = (((y + 1) * ow + x + 1) * n_total + n0) * f if right and below else -1
        g11 = _row(flat, at, run, zero)
        for n in range(nn):
            o = n * f
            for k in range(f):
                sums[k] += (g00[o + k] + g01[o + k]) + (g10[o + k] + g11[o + k])
        # A g A', a row of A at a time (rows 1, 1+2, 1-2, -2 of g), each loop storing 4
        # runs: with all 16 stores in one loop, LLVM gave up on vectorizing it.
        o = tj * run
        _spread(g00, g01, tiles, 0, o, run)
        for j in range(run):
            s0[j] = g00[j] + g10[j]
            s1[j] = g01[j] + g11[j]
        _spread(s0, s1, tiles, 4, o, run)
        for j in range(run):
            s0[j] = g00[j] - g10[j]
            s1[j] = g01[j] - g11[j]
        _spread(s0, s1, tiles, 8, o, run)
        for j in range(run):
            s0[j] = -g10[j]
            s1[j] = -g11[j]
        _spread(s0, s1, tiles, 12, o, run)


@njit(cache=True, inline="always")
def _spread(u, v, tiles, first, o, run):
    """tiles[first..first+3, o:o+run] = u, u + v, u - v, -v: a row (u, v) of A g times A'."""
    e0, e1 = tiles[first, o : o + run], tiles[first + 1, o : o + run]
    e2, e3 = tiles[first + 2, o : o + run], tiles[first + 3, o : o + run]
    for j in range(run):
        e0[j] = u[j]
        e1[j] = u[j] + v[j]
        e2[j] = u[j] - v[j]
        e3[j] = -v[j]


@njit(parallel=True, nogil=True, cache=True)
def convolve(sgemm, src, top, left, samples, U, bias, vbuf, mbuf, tbuf, zero, out):
    """out (OH, OW, N, F) = the 3x3 convolution of src (H, W, N, C), padded by `top` rows
    and `left` columns (zeros past its other edges as far as out needs), with the filters
    whose transforms are U (16, C, F), plus bias; block b on piece b % pieces.

    vbuf (pieces, 16, tiles, C) and mbuf (pieces, 16, tiles, F): each piece's own buffers,
    tiles = (OW + 1) // 2 * samples; tbuf (pieces, 4, 2 * ((OW + 1) // 2) + 2, at least
    samples * C) and zero: the scratch and zeros of _input_tiles.
    """
    oh, ow, n_total, f = out.shape
    c = src.shape[3]
    tw = (ow + 1) // 2
    blocks = (oh + 1) // 2 * ((n_total + samples - 1) // samples)
    pieces, room = vbuf.shape[0], vbuf.shape[2]
    for piece in prange(pieces):
        V, M = vbuf[piece], mbuf[piece]
        for blk in range(piece, blocks, pieces):
            ti, n0, n1 = _block(blk, samples, n_total)
            _input_tiles(src, top, left, ti, n0, n1, tw, V, tbuf[piece], zero)
            tiles = tw * (n1 - n0)
            for xi in range(16):
                a = V.ctypes.data + xi * room * c * FLOAT
                b = U.ctypes.data + xi * c * f * FLOAT
                m = M.ctypes.data + xi * room * f * FLOAT
                _gemm(sgemm, NO_TRANS, NO_TRANS, tiles, f, c, a, c, b, f, m, f)
            _output_tiles(M, ti, n0, n1, tw, bias, out)


@njit(parallel=True, nogil=True, cache=True)
def weight_grads(sgemm, src, top, left, dy, samples, vbuf, mbuf, tbuf, zero, parts, sums):
    """parts[b] (16, C, F) = block b's transformed inputs' (tiles x C) slices, transposed,
    times its transformed output gradients' (tiles x F) slices, and sums[b] (F,) its output
    gradients' total (float64); block b on piece b % pieces, the blocks as in convolve."""
    ow, n_total, f = dy.shape[1:]
    c = src.shape[3]
    tw = (ow + 1) // 2
    blocks = parts.shape[0]
    pieces, room = vbuf.shape[0], vbuf.shape[2]
    for piece in prange(pieces):
        V, M = vbuf[piece], mbuf[piece]
        for blk in range(piece, blocks, pieces):
            ti, n0, n1 = _block(blk, samples, n_total)
            _input_tiles(src, top, left, ti, n0, n1, tw, V, tbuf[piece], zero)
            _gradient_tiles(dy, ti, n0, n1, tw, M, sums[blk], tbuf[piece, 0], zero)
            tiles = tw * (n1 - n0)
            for xi in range(16):
                a = V.ctypes.data + xi * room * c * FLOAT
                d = M.ctypes.data + xi * room * f * FLOAT
                at = parts.ctypes.data + (blk * 16 + xi) * c * f * FLOAT
                _gemm(sgemm, TRANS, NO_TRANS, c, f, tiles, a, c, d, f, at, f)
