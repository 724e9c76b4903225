"""What the compiled loops share: fixed chunks of rows (the same bits on any thread count),
serial allocation and column totals, the ReLU a pool may carry, and a transpose."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Pieces a pass is split into: enough for any thread count this runs on, few enough that
# each one is thousands of rows (a 28x28 batch of 100 has 78,400).
CHUNKS = 32


@njit(cache=True, inline="always")
def _span(k: int, rows: int) -> tuple[int, int]:
    step = (rows + CHUNKS - 1) // CHUNKS
    return k * step, min(rows, (k + 1) * step)


@njit(cache=True)
def _zeros(rows: int, cols: int):
    """A (rows, cols) float64 array of zeros, allocated outside any parallel region."""
    return np.zeros((rows, cols), np.float64)


@njit(cache=True)
def _column_totals(part):
    """(CHUNKS, C) partial sums -> (C,), added in chunk order (serial: the bits are fixed)."""
    total = np.zeros(part.shape[1], np.float64)
    for k in range(part.shape[0]):
        for j in range(part.shape[1]):
            total[j] += part[k, j]
    return total


@njit(cache=True, inline="always")
def _keep_partial(part, k, acc):
    """Chunk k's per-column sums `acc` into row k of the (CHUNKS, C) partials."""
    for j in range(acc.shape[0]):
        part[k, j] = acc[j]


# A ReLU right after a disjoint max-pool (the network runs it there, see Network) can ride
# in the pool's passes: relu(max) as the maximum is stored, and dout * mask as the gradient
# is routed. `mask` None (no ReLU) removes the branch when numba compiles the caller.


@njit(cache=True, inline="always")
def _relu(v, mask, at, zero):
    """Relu.forward's np.maximum(v, 0) (NaN and -0.0 pass unchanged), recording v > 0 in
    mask[at]; v itself when mask is None. `zero` is 0 in v's dtype."""
    if mask is None:
        return v
    mask[at] = v > 0
    return v if v >= 0 or v != v else zero


@njit(cache=True, inline="always")
def _relu_grad(g, mask, at, zero):
    """Relu.backward's g * mask[at] (so a negative g times False is -0.0, as in NumPy); g
    when mask is None."""
    if mask is None:
        return g
    return g if mask[at] else g * zero


@njit(parallel=True, cache=True)
def transpose(a, out):
    """out = a.T for C-contiguous (R, C) `a` and (C, R) `out`: an exact copy.

    NumPy copies a transpose like (19600, 32) -> (32, 19600) (a pooled conv block's output
    turned channel-major for the next conv) in 2.3 ms, reading down columns with a stride;
    here each thread reads a block of rows in order and writes its C short runs, 0.3 ms.
    """
    rows, cols = a.shape
    step = 256  # rows per block: its C runs of the output are whole cache lines
    for b in prange((rows + step - 1) // step):
        for r in range(b * step, min(rows, (b + 1) * step)):
            src = a[r]
            for c in range(cols):
                out[c, r] = src[c]
