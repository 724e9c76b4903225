"""How many threads a command's products may use: BLAS's and the compiled loops', together."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from ..accel import kernels

log = logging.getLogger(__name__)


@contextlib.contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """Limit BLAS (and OpenMP) threads for the duration; None leaves them as they are."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=threads):
        previous = kernels.set_threads(threads)  # the compiled loops get the same budget
        counts = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
        where = " (conv and dense products in pieces on the compiled loops' threads)"
        log.debug(
            f"BLAS threads: {', '.join(map(str, counts)) or 'no BLAS library found'}"
            + (where if kernels.products() is not None else "")
        )
        try:
            yield
        finally:
            kernels.set_threads(previous)
