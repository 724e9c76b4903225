"""Elementwise NumPy work spread over the cores BLAS is given.

BLAS runs a GEMM on several threads; everything else in a training step (max-pooling, the
optimizer's update, BatchNorm's passes) is NumPy ufuncs, which run on the calling thread. On
two cores that left half the machine idle for most of a conv net's step. NumPy releases the
GIL inside its ufunc loops, so Python threads running ufuncs on disjoint parts of an array run
truly in parallel.

`spread` runs independent pieces of work (tiles of a pooling layer, blocks of a weight array)
on a shared pool of worker threads plus the caller. The pieces must touch disjoint memory and
must not depend on each other's order: then the result is bit-identical whatever the thread
count, since every element is computed by the same ufuncs as on one thread.

The thread count follows BLAS's: OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or MKL_NUM_THREADS when
set (in that order), else the cores this process may run on, which is also OpenBLAS's default.
`limit` and `set_workers` override it at run time: `--threads N` limits BLAS and these
threads alike, and the speed benchmark times 1 and 2 threads in one process.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

T = TypeVar("T")

BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_workers: int | None = None  # set_workers' count; None: from the environment
_local = threading.local()  # marks the pool's own threads, which must not submit to it


def workers_from_environment() -> int:
    """The thread count BLAS uses: the first of BLAS_VARIABLES set to a positive integer, else
    the cores available to this process."""
    for name in BLAS_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def workers() -> int:
    """Threads `spread` uses, the caller's included."""
    return _workers if _workers is not None else workers_from_environment()


def set_workers(count: int | None) -> None:
    """Use `count` threads from now on (None: back to the environment's count)."""
    global _workers
    if count is not None and count < 1:
        raise ValueError(f"thread count must be >= 1, got {count}")
    _workers = count


@contextlib.contextmanager
def limit(count: int) -> Iterator[None]:
    """Use `count` threads inside the block (`--threads`, beside BLAS's own limit)."""
    before = _workers
    set_workers(count)
    try:
        yield
    finally:
        set_workers(before)


def _executor(size: int) -> ThreadPoolExecutor:
    """The shared pool with at least `size` threads (replaced by a bigger one on demand)."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < size:
            old, _pool, _pool_size = _pool, ThreadPoolExecutor(size, "bptrain"), size
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def _run_share(task: Callable[[Sequence[T]], object], share: Sequence[T]) -> None:
    _local.inside = True  # a task that spreads work itself runs it on its own thread
    try:
        task(share)
    finally:
        _local.inside = False


def spread(task: Callable[[Sequence[T]], object], items: Sequence[T]) -> None:
    """task(share) for one share of `items` per thread; returns when every share is done.

    With k threads, share t is items t, t + k, t + 2k, ...: neighbouring tiles of an array go
    to different threads and the shares are about equal. A task gets its whole share at once,
    so it can allocate its scratch once per share. The caller runs share 0. An exception in
    any share is raised here, after every share has finished. With one thread or one item, or
    from inside a task, task(items) runs in the caller.
    """
    count = min(workers(), len(items))
    if count <= 1 or getattr(_local, "inside", False):
        task(items)
        return
    pool = _executor(count - 1)
    futures: list[Future] = [
        pool.submit(_run_share, task, items[t::count]) for t in range(1, count)
    ]
    try:
        _run_share(task, items[::count])
    finally:
        errors = [f.exception() for f in futures]  # waits for every share
    for error in errors:
        if error is not None:
            raise error


def parts(count: int) -> list[slice]:
    """0 .. count - 1 as up to `workers()` contiguous slices of about equal length."""
    pieces = max(1, min(workers(), count))
    bounds = [count * p // pieces for p in range(pieces + 1)]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def copy(dst: np.ndarray, src: np.ndarray) -> None:
    """dst[...] = src (same shapes), the copy split along the first axis longer than 1."""
    axis = next((a for a, size in enumerate(dst.shape) if size > 1), None)
    if axis is None:
        dst[...] = src
        return
    lead = (slice(None),) * axis

    def run(share: Sequence[slice]) -> None:
        for part in share:
            dst[(*lead, part)] = src[(*lead, part)]

    spread(run, parts(dst.shape[axis]))
