"""a @ b for the dense layers: in pieces of output rows or columns on the compiled loops'
threads when kernels.products() says they run there (compiled/gemm.py), else NumPy's matmul.

The pieces make the sgemm calls NumPy's matmul would make for the same operands, each for a
range of rows or columns, so the result is the same bits either way. Every piece reads all of
the operand it does not split: rows when b is the smaller (a dense layer's weight gradient
x.T @ dout, 3136 x 100 @ 100 x 256 in cnn-deep), columns otherwise.
"""

from __future__ import annotations

import numpy as np

from . import kernels
from .blas import MIN_PIECE, NO_TRANS, TILE, TRANS


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a @ b for 2-D a and b, into `out` when given (C-contiguous, the result's shape)."""
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    (m, k), n = a.shape, b.shape[1]
    products = kernels.products()
    # Most dense products are too small for two pieces; they skip the bookkeeping below,
    # which would cost an MLP step more than the products it splits (batch 100, 784-50-10).
    if products is None or m * n * k < 2 * MIN_PIECE:
        return np.matmul(a, b, out=out)
    by_rows = n < m  # then b, k x n, is the smaller operand: each piece reads all of it
    edges = _edges(k * (n if by_rows else m), m if by_rows else n, kernels.threads())
    operands = (_operand(a), _operand(b)) if len(edges) > 2 else (None, None)
    if (
        None in operands
        or min(m, k) < 2  # NumPy's vector cases take other BLAS calls
        or any(x.dtype != np.float32 for x in (a, b, out))
        or not out.flags.c_contiguous
    ):
        return np.matmul(a, b, out=out)
    fast, sgemm = products
    (ta, lda), (tb, ldb) = operands
    size = a.itemsize
    if by_rows:  # row i of op(a): i rows into a as stored, or i floats when transposed
        steps = (lda * size if ta == NO_TRANS else size, n * size)
    else:  # column j of op(b): j floats into b as stored, or j rows when transposed
        steps = (size if tb == NO_TRANS else ldb * size, size)
    at = (a.ctypes.data, b.ctypes.data, out.ctypes.data)
    steps = np.array(steps, dtype=np.int64)
    fast.gemm_pieces(
        sgemm, ta, tb, m, n, k, at[0], lda, at[1], ldb, at[2], n, steps, edges, by_rows
    )
    return out


def _edges(work_per_line: int, n: int, pieces: int) -> np.ndarray:
    """Edges of up to `pieces` ranges of n rows (or columns), starting on whole tiles, each of
    at least MIN_PIECE multiply-adds (blas.py: the bits); [0, n] when no split keeps to that."""
    for count in range(min(pieces, n // TILE), 1, -1):
        edges = [round(n * p / count / TILE) * TILE for p in range(count)] + [n]
        if min(np.diff(edges)) * work_per_line >= MIN_PIECE:
            return np.array(edges, dtype=np.int64)
    return np.array([0, n], dtype=np.int64)


def _operand(x: np.ndarray) -> tuple[int, int] | None:
    """(transpose flag, leading dimension) NumPy's matmul passes to sgemm for 2-D `x`
    (numpy/_core/src/umath/matmul.c.src): as stored when its rows are runs, transposed when
    its columns are; None when neither (NumPy then loops without BLAS)."""
    rows, cols = x.shape
    row_step, col_step = (s // x.itemsize for s in x.strides)
    if x.strides[1] == x.itemsize and x.strides[0] % x.itemsize == 0 and row_step >= cols:
        return NO_TRANS, row_step
    if x.strides[0] == x.itemsize and x.strides[1] % x.itemsize == 0 and col_step >= rows:
        return TRANS, col_step
    return None
