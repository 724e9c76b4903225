"""NumPy's own BLAS sgemm, for compiled loops that run matrix products on their threads.

The conv and dense layers' products can run as pieces on the compiled loops' threads
(compiled/gemm.py), each piece one single-threaded call of the BLAS NumPy was built with, so
that one thread pool does all of a step's parallel work (see compiled/gemm.py for why). This
module finds that BLAS's CBLAS sgemm through threadpoolctl (the library file NumPy loaded)
and ctypes. NumPy's wheels bundle OpenBLAS with 64-bit integers and prefixed names
(`scipy_cblas_sgemm64_`), the build this is tested with; other 64-bit-integer OpenBLAS
builds name it `cblas_sgemm64_`. Where neither is found (Accelerate, MKL, a 32-bit-integer
build), sgemm() is None and the layers keep NumPy's own matmul, on BLAS's own threads.
"""

from __future__ import annotations

import ctypes
import functools

# CBLAS's enum values (cblas.h), the same in every implementation.
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

# A call for a range of a product's rows (or columns) gives them the same bits as the call for
# the whole product when the range starts on a multiple of TILE: OpenBLAS's kernels work in
# tiles of up to 16 and treat a tile's leftover rows with other code. Measured with numpy's
# OpenBLAS 0.3.31: (100 x 800) @ (800 x 64) in column pieces of 16 or 32 gives the whole
# product's bits, in pieces of 8 it does not; so do channel shares of 5 of a conv's 16
# 5x5 channels (125 rows).
TILE = 16
# OpenBLAS (x86-64, since 0.3.16) computes a product of at most 100^3 multiply-adds with its
# "small matrix" kernels, which round differently from the tiled ones: a (100 x 512) @ (512 x
# 16) piece of a (512 x 64) product did not give the whole product's bits. Every piece is
# kept above that line, so that the pieces and the whole product all take the tiled kernels.
# It is the highest line any of OpenBLAS's sgemm small-kernel permits draws (SkylakeX and
# POWER10 100^3, POWER10 built with clang 84^3, Arm SVE 64^3), and low enough that an MLP's
# first layer, (100 x 784) @ (784 x 50), splits in two.
MIN_PIECE = 100**3 + 1
_SYMBOLS = ("scipy_cblas_sgemm64_", "cblas_sgemm64_")  # NumPy's bundled OpenBLAS first


@functools.cache
def sgemm() -> ctypes._CFuncPtr | None:
    """cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) of
    NumPy's BLAS, pointers as integers; None when it cannot be found."""
    import numpy  # noqa: F401  (NumPy loads its BLAS; threadpoolctl then finds the file)
    from threadpoolctl import threadpool_info

    for info in threadpool_info():
        if info.get("user_api") != "blas" or info.get("internal_api") != "openblas":
            continue
        try:
            library = ctypes.CDLL(info["filepath"])
        except OSError:
            continue
        for name in _SYMBOLS:
            function = getattr(library, name, None)
            if function is None:
                continue
            pointer, real, integer = ctypes.c_void_p, ctypes.c_float, ctypes.c_int64
            function.argtypes = [
                ctypes.c_int, ctypes.c_int, ctypes.c_int,  # order, transA, transB
                integer, integer, integer,  # M, N, K
                real, pointer, integer,  # alpha, A, lda
                pointer, integer,  # B, ldb
                real, pointer, integer,  # beta, C, ldc
            ]  # fmt: skip
            function.restype = None
            return function
    return None
