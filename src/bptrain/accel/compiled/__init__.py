"""Compiled loops (numba) for the memory-bound passes of BatchNorm and max-pooling, and the
matrix products in pieces (gemm.py, winograd.py) on the same threads.

Imported only through kernels.py (which hands it to the layers' accel/ modules), and only when
the `fast` extra (numba) is installed. Each NumPy ufunc is one pass over memory, and BatchNorm
or a max-pool chains several (4-6 passes over a 10 MB activation where the arithmetic needs one
or two); these loops do each pass's arithmetic in a single sweep, and split it over the threads
numba was given.

Determinism: every loop splits its rows into CHUNKS fixed pieces whatever the thread count,
and sums each piece in order, in float64; the pieces are then added in order. So results
are bit for bit the same on 1 or 2 threads, and a resumed run stays exact.

One parallel region per kernel: with parallel=True numba turns array expressions (np.zeros,
`total += part[k]`) into parallel loops of their own, and each region wakes the sleeping
threads (OMP_WAIT_POLICY=PASSIVE, see kernels.py), some 60 us a time. Written that way, a
column sum ran 35 regions and took 2.5 ms on two threads against 0.45 ms on one; so every
array here is allocated by the serial helpers below and summed in explicit loops.
"""

# One module per layer's passes; the loops are used as `compiled.NAME` (kernels.compiled()).
from .fused import norm_max_pool, norm_max_pool_dx, pooled_gradient_sums
from .norm import (
    batch_norm_dx,
    centered_squares,
    channel_sums,
    gradient_sums,
    scale_shift,
    shifted_moments,
)
from .patches import gather_patches, gather_row, scatter_patches, scatter_row
from .pool import max_pool, max_pool_dx
from .shared import transpose
from .updates import adam_step, ema_step

__all__ = [
    "adam_step",
    "batch_norm_dx",
    "centered_squares",
    "channel_sums",
    "ema_step",
    "gather_patches",
    "gather_row",
    "gradient_sums",
    "max_pool",
    "max_pool_dx",
    "norm_max_pool",
    "norm_max_pool_dx",
    "pooled_gradient_sums",
    "scale_shift",
    "scatter_patches",
    "scatter_row",
    "shifted_moments",
    "transpose",
]
