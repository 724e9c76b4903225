"""a @ b for the dense layers: in pieces of output columns on the compiled loops' threads when
kernels.products() says they run there (compiled_gemm.py), else NumPy's matmul.

The pieces make the sgemm calls NumPy's matmul would make for the same operands, each for a
range of columns, so the result is the same bits either way.
"""

from __future__ import annotations

import numpy as np

from . import kernels
from .blas import MIN_PIECE, NO_TRANS, TILE, TRANS


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a @ b for 2-D a and b, into `out` when given (C-contiguous, the result's shape)."""
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    products = kernels.products()
    (m, k), n = a.shape, b.shape[1]
    edges = _column_edges(m * k, n, kernels.threads())
    operands = (_operand(a), _operand(b)) if len(edges) > 2 else (None, None)
    if (
        products is None
        or None in operands
        or min(m, k) < 2  # NumPy's vector cases take other BLAS calls
        or any(x.dtype != np.float32 for x in (a, b, out))
        or not out.flags.c_contiguous
    ):
        return np.matmul(a, b, out=out)
    fast, sgemm = products
    (ta, lda), (tb, ldb) = operands
    # Column j of op(b) starts j floats in (b as stored, untransposed) or j rows in.
    column = b.itemsize if tb == NO_TRANS else ldb * b.itemsize
    a_at, b_at, out_at = a.ctypes.data, b.ctypes.data, out.ctypes.data
    fast.gemm_columns(sgemm, ta, tb, m, k, a_at, lda, b_at, ldb, column, out_at, n, edges)
    return out


def _column_edges(work_per_column: int, n: int, pieces: int) -> np.ndarray:
    """Edges of up to `pieces` ranges of n columns, starting on whole tiles, each of at least
    MIN_PIECE multiply-adds (blas.py: the bits); [0, n] when no split keeps to that."""
    for count in range(min(pieces, n // TILE), 1, -1):
        edges = [round(n * p / count / TILE) * TILE for p in range(count)] + [n]
        if min(np.diff(edges)) * work_per_column >= MIN_PIECE:
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
