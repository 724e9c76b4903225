"""Which implementation the memory-bound layer passes use: compiled loops or NumPy.

With the `fast` extra (numba) installed, the memory-bound passes run compiled loops
(compiled/) that do in one sweep, split over the threads, what takes NumPy several ufunc
passes on one thread: BatchNorm, max-pooling, the two fused (accel/fused.py), the im2col
gather and col2im sums of the convolutions, the Adam step and the weight average. Without it,
or with BPTRAIN_KERNELS=numpy, they run NumPy code. Both compute the same function (tests
compare them). The convolutions', Adam's and the average's loops give NumPy's very bits;
BatchNorm's sums round differently, so a resume is bit-exact only under the run's own choice.
On more than one thread the loops' threads also run the conv and dense layers' products, in
pieces that each call NumPy's sgemm on one BLAS thread (products(), compiled/gemm.py).

numba is imported on the first call, not when bptrain is: commands that never run such a
layer or optimizer (and `bptrain --help`) do not pay for it. Compiled code is cached on disk
(numba's cache=True), so only the first run on a machine compiles.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

CHOICES = ("auto", "numba", "numpy")
_loaded: list[ModuleType | None] = []  # [] until first asked, then [module or None]
_budget: list[int] = [1]  # the compiled loops' thread count (see set_threads)
_products: list = []  # with the loops: [(compiled_gemm module, sgemm)] when sgemm is found


def choice() -> str:
    """BPTRAIN_KERNELS: auto (numba when installed), numba (required) or numpy."""
    value = os.environ.get("BPTRAIN_KERNELS", "auto").strip().lower() or "auto"
    if value not in CHOICES:
        from ..errors import ConfigError

        raise ConfigError(
            f"BPTRAIN_KERNELS is {value!r}; it must be one of {', '.join(CHOICES)}",
            hint="unset it to use the compiled kernels when numba is installed",
        )
    return value


def kind() -> str:
    """ "numba" or "numpy": which code the layers' passes run (and so whose rounding), loading
    nothing new: the loaded choice when there is one, else what `auto` would take."""
    if _loaded:
        return "numpy" if _loaded[0] is None else "numba"
    if choice() == "numpy":
        return "numpy"
    return "numba" if importlib.util.find_spec("numba") is not None else "numpy"


def compiled() -> ModuleType | None:
    """The compiled-kernel module, or None when the NumPy code is to run."""
    if not _loaded:
        _loaded.append(_load(choice()))
    return _loaded[0]


def _load(wanted: str) -> ModuleType | None:
    if wanted == "numpy":
        return None
    from . import blas

    _products.clear()
    sgemm = blas.sgemm()
    if sgemm is None:
        # numba's OpenMP threads spin-wait after each loop by default, and on a machine
        # whose cores BLAS's own threads also use, that spinning steals them from the next
        # GEMM: a cnn-deep step on 2 threads took 200 ms (median) that way, 96 ms with
        # waiting threads that sleep. libgomp reads this when numba first starts its pool,
        # after this import. A user's own setting wins. With sgemm found, the products run
        # on the loops' threads (compiled/gemm.py) and BLAS on one: spinning is then what
        # keeps those threads quick to start the next piece of work.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from . import compiled as module

        if sgemm is not None:
            from .compiled import gemm as compiled_gemm

            _products.append((compiled_gemm, sgemm))
    except ImportError as error:
        if wanted == "auto":
            return None
        from ..errors import ConfigError

        raise ConfigError(
            f"BPTRAIN_KERNELS=numba, but numba cannot be imported ({error})",
            hint="pip install 'bptrain[fast]', or set BPTRAIN_KERNELS=auto",
        ) from None
    _set_budget(_blas_threads())
    return module


def _blas_threads() -> int | None:
    """The BLAS library's thread count now (threadpoolctl), None when none is found."""
    from threadpoolctl import threadpool_info

    counts = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(counts) if counts else None


def blas_threads() -> int:
    """The BLAS library's thread count now, 1 when no BLAS library is found."""
    return _blas_threads() or 1


def _numba_threads(threads: int | None) -> int:
    """Set numba's thread count (capped at its pool) when given; return the previous one."""
    import numba

    previous = numba.get_num_threads()
    if threads:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    return previous


def set_threads(threads: int | None) -> int | None:
    """Give the compiled loops `threads` threads, if they are loaded; the previous count
    (None when they are not loaded).

    The count is BLAS's when the loops load, and `--threads` sets both, so one number means
    one budget: `--threads 1` (or OPENBLAS_NUM_THREADS=1) is one core for all. With more,
    the conv and dense layers' products run in pieces on the loops' threads, each on a BLAS
    of one thread (compiled/gemm.py), when NumPy's sgemm is found.
    """
    if not (_loaded and _loaded[0] is not None):
        return None
    return _set_budget(threads)


def threads() -> int:
    """The compiled loops' thread budget; 1 without them."""
    return _budget[0] if _loaded and _loaded[0] is not None else 1


def products() -> tuple[ModuleType, object] | None:
    """(compiled_gemm, sgemm) when the layers' matrix products run in pieces on the compiled
    loops' threads: the loops loaded, NumPy's sgemm found and a budget of 2 threads or more.
    None otherwise: then NumPy's matmul runs them, on BLAS's threads."""
    return _products[0] if _products and threads() > 1 else None


def sgemm():
    """NumPy's sgemm (blas.sgemm()) when the compiled loops are loaded and it was found, on
    any budget: the Winograd convolution (winograd.py) calls it from the loops' threads.
    None otherwise."""
    if compiled() is None:
        return None
    return _products[0][1] if _products else None


def _set_budget(threads: int | None) -> int:
    """numba's threads (capped at its pool) and the budget, when given; the previous budget.

    With the products on the loops' threads, BLAS gets one thread whenever the budget is
    more than one: the products' pieces call it from each of the loops' threads, and its
    own threads would only compete with them."""
    previous = _budget[0]
    if threads:
        _numba_threads(threads)
        _budget[0] = max(1, threads)
        if _products and threads > 1:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=1, user_api="blas")
    return previous
