"""Matrix products in pieces on the compiled loops' threads: conv blocks and dense layers.

Imported only through kernels.py, with the `fast` extra and when blas.sgemm() finds NumPy's
sgemm. Each piece is one call of that sgemm on a BLAS of one thread, made from inside a
numba parallel loop, so every piece runs on one of the threads the compiled loops (BatchNorm,
pooling, Adam) already use: one pool of threads for all of a step's parallel work.

Why: on BLAS's own threads the products scale, but the loops between them do not. After a
GEMM, OpenBLAS's worker spins a while for the next call on the core the loops' second thread
needs (a one-pass BatchNorm sum over 10 MB: 0.8 ms on two threads after another loop, 1.7 ms
right after a GEMM, the one-thread time); and with the loops' own threads spinning instead,
they starved the GEMMs (a cnn-deep step 200 ms against 96). With one pool, its threads can
spin between pieces of work (OpenMP's default) and nothing else competes for the cores.

Each piece also gathers its columns (and scatters its input gradient) itself, so the im2col
copies run side by side with the other pieces' GEMMs instead of between them.

Bits: every sgemm call is the one NumPy's matmul makes for the same operands (the same
transpose flags and leading dimensions, numpy/_core/src/umath/matmul.c.src), restricted to
a range of output rows or columns, which OpenBLAS computes the same way; the weight-gradient
parts are added in block order afterwards, and each input-gradient value receives its terms
block by block in the same order. So the results are the same bits as the NumPy-side code on
one BLAS thread, on any number of threads (the tests compare them).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..blas import NO_TRANS, ROW_MAJOR, TRANS
from .patches import gather_row, scatter_row

FLOAT = 4  # bytes of a float32: pointers below are addresses, offsets in bytes


@njit(cache=True, inline="always")
def _gemm(sgemm, ta, tb, m, n, k, a, lda, b, ldb, c, ldc):
    """C (m x n, at address c) = op(A) @ op(B), CBLAS row-major, on the calling thread."""
    sgemm(ROW_MAJOR, ta, tb, m, n, k, np.float32(1.0), a, lda, b, ldb, np.float32(0.0), c, ldc)


@njit(parallel=True, nogil=True, cache=True)
def conv_forward(sgemm, xt, kh, kw, stride, starts, stops, ow, weights, buffers, out):
    """out's rows of block b (output rows starts[b]..stops[b]-1) = the block's columns.T @
    weights.T, block b on piece b % pieces; weights is (F, K+1), the bias last.

    buffers: (pieces, K+1, widest block's columns), each piece's own, the last row ones.
    NumPy's call: matmul(cols.T, weights.T), both operands transposed.
    """
    pieces, _, width = buffers.shape
    filters, k1 = weights.shape
    n = xt.shape[3]
    for piece in prange(pieces):
        cols = buffers[piece]
        for b in range(piece, starts.shape[0], pieces):
            r0, r1 = starts[b], stops[b]
            for q in range(k1 - 1):
                gather_row(xt, q, kh, kw, stride, r0, r1, ow, cols[q])
            rows = (r1 - r0) * ow * n
            at = out.ctypes.data + r0 * ow * n * filters * FLOAT
            a, w = cols.ctypes.data, weights.ctypes.data
            _gemm(sgemm, TRANS, TRANS, rows, filters, k1, a, width, w, k1, at, filters)


@njit(parallel=True, nogil=True, cache=True)
def conv_weight_grads(sgemm, xt, kh, kw, stride, starts, stops, ow, dout2, buffers, parts):
    """parts[b] = block b's columns @ its rows of dout2, block b on piece b % pieces (a
    layer without an input gradient). NumPy's call: matmul(cols, dout2[span])."""
    pieces, k1, width = buffers.shape
    filters = dout2.shape[1]
    n = xt.shape[3]
    for piece in prange(pieces):
        cols = buffers[piece]
        for b in range(piece, starts.shape[0], pieces):
            r0, r1 = starts[b], stops[b]
            for q in range(k1 - 1):
                gather_row(xt, q, kh, kw, stride, r0, r1, ow, cols[q])
            rows = (r1 - r0) * ow * n
            d = dout2.ctypes.data + r0 * ow * n * filters * FLOAT
            at = parts[b].ctypes.data
            _gemm(sgemm, NO_TRANS, NO_TRANS, k1, filters, rows, cols.ctypes.data, width, d,
                  filters, at, filters)  # fmt: skip


@njit(parallel=True, nogil=True, cache=True)
def conv_gradients(sgemm, xt, kh, kw, stride, starts, stops, ow, dout2, w2, edges, buffers,
                   parts, dxp):  # fmt: skip
    """Weight-gradient parts and the padded input gradient `dxp`, piece p owning input
    channels edges[p]..edges[p+1]-1: their rows of every block's columns and of parts[b]
    (the last piece also the row of ones, the bias), and their planes of dxp, blocks in order.

    buffers: (pieces, rows of the largest share + 1, widest block's columns); the row after
    the last piece's share is ones. NumPy's calls: matmul(cols, dout2[span]) and
    matmul(W2.T, dout2[span].T) (W2 (F, K), both transposed).
    """
    pieces = edges.shape[0] - 1
    width = buffers.shape[2]
    kk = kh * kw
    k = xt.shape[0] * kk
    filters = dout2.shape[1]
    n = xt.shape[3]
    for piece in prange(pieces):
        cols = buffers[piece]
        c0, c1 = edges[piece], edges[piece + 1]
        q0, q1 = c0 * kk, c1 * kk
        shared = q1 - q0 + (1 if piece == pieces - 1 else 0)  # the last adds the ones row
        for b in range(starts.shape[0]):
            r0, r1 = starts[b], stops[b]
            rows = (r1 - r0) * ow * n
            d = dout2.ctypes.data + r0 * ow * n * filters * FLOAT
            for q in range(q0, q1):
                gather_row(xt, q, kh, kw, stride, r0, r1, ow, cols[q - q0])
            if piece == pieces - 1:
                cols[q1 - q0, :rows] = 1
            at = parts.ctypes.data + (b * (k + 1) + q0) * filters * FLOAT
            _gemm(sgemm, NO_TRANS, NO_TRANS, shared, filters, rows, cols.ctypes.data, width, d,
                  filters, at, filters)  # fmt: skip
            # The gathered inputs are used; their rows take this share's column gradients.
            w = w2.ctypes.data + q0 * FLOAT
            _gemm(sgemm, TRANS, TRANS, q1 - q0, rows, filters, w, k, d, filters,
                  cols.ctypes.data, width)  # fmt: skip
            span = (r1 - r0 - 1) * stride + kh  # padded input rows the block's windows cover
            for c in range(c0, c1):
                for y in range(r0 * stride, r0 * stride + span):
                    scatter_row(cols, q0, c, y, kh, kw, stride, r0, r1, ow, dxp)


@njit(parallel=True, nogil=True, cache=True)
def gemm_pieces(sgemm, ta, tb, m, n, k, a, lda, b, ldb, c, ldc, steps, edges, by_rows):
    """C = op(A) @ op(B) (addresses a, b, c), piece p computing C's rows (by_rows) or columns
    edges[p]..edges[p+1]-1. steps: the bytes one row (or column) moves the start of A (or
    B) and of C."""
    for piece in prange(edges.shape[0] - 1):
        i0, i1 = edges[piece], edges[piece + 1]
        if by_rows:
            at_a, at_c = a + i0 * steps[0], c + i0 * steps[1]
            _gemm(sgemm, ta, tb, i1 - i0, n, k, at_a, lda, b, ldb, at_c, ldc)
        else:
            at_b, at_c = b + i0 * steps[0], c + i0 * steps[1]
            _gemm(sgemm, ta, tb, m, i1 - i0, k, a, lda, at_b, ldb, at_c, ldc)
