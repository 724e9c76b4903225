"""BatchNorm directly followed by a disjoint max-pool, run as one compiled pass each way.

In the conv presets a BatchNorm's output (10 MB for cnn-deep's first block, batch 100) is
written only for the max-pool to read it and keep a quarter; backward, the pool writes a
full-size gradient, three quarters zeros, for BatchNorm to read twice. Memory traffic is what
these passes cost, so the fused forward pools the normalized values as it computes them and
the fused backward routes the pooled gradient on the fly: 10 MB written and 30 MB read fewer
per block and step. The layers keep their parameters, gradients and statistics; every value
goes through the unfused compiled loops' operations, so the results are the same bits (tests
compare them). Used by Network while training with the compiled loops, on a pixel-major
input (a conv output); anything else runs the two layers one after the other.
"""

from __future__ import annotations

import itertools

import numpy as np

from .. import kernels
from .base import Layer
from .conv import Conv2D
from .core import Relu
from .norm import BatchNorm
from .pool import MaxPool2D, index_type


def pairs(layers: list[Layer], order: list[int]) -> dict[int, int]:
    """{BatchNorm index: max-pool index} for each BatchNorm that runs right before a disjoint
    max-pool (stride = size) in execution `order`."""
    found = {}
    for i, j in itertools.pairwise(order):
        norm, pool = layers[i], layers[j]
        if type(norm) is BatchNorm and type(pool) is MaxPool2D and pool.stride == pool.size:
            found[i] = j
    return found


def feeds_conv(layers: list[Layer], order: list[int], pool: int) -> bool:
    """Whether a conv2d is the next layer after max-pool `pool` and any ReLU (execution
    order): then the pool's output is best laid out as the conv reads it (see forward)."""
    rest = [layers[i] for i in order[order.index(pool) + 1 :]]
    following = next((layer for layer in rest if type(layer) is not Relu), None)
    return type(following) is Conv2D


def _pixel_major(x: np.ndarray) -> np.ndarray | None:
    """(N, C, H, W) `x` as its C-contiguous (H, W, N, C) view, when its memory is that."""
    if x.ndim != 4:
        return None
    view = x.transpose(2, 3, 0, 1)
    return view if view.flags.c_contiguous else None


def forward(
    norm: BatchNorm, pool: MaxPool2D, x: np.ndarray, train: bool, for_conv: bool = False
) -> np.ndarray | None:
    """pool.forward(norm.forward(x, train)) in one pass, or None when it cannot run fused
    (inference, no compiled loops, or x not pixel-major): then run the layers themselves.

    The output is C order for a flatten -> affine after it; `for_conv` lays it out in
    (C, H, W, N) memory instead, the order a conv2d's im2col copy reads and its input
    gradient comes back in, so the ReLU between them works on matching memory both ways
    (on mismatched memory its backward took 1.8 ms for 2.5 MB).
    """
    fast, planes = kernels.compiled(), _pixel_major(x)
    if not train or fast is None or planes is None:
        return None
    scale = norm.prepare(x, train)
    n, c = x.shape[:2]
    s, (oh, ow) = pool.size, pool._out_hw(x)
    out = np.empty((oh, ow, n, c), dtype=x.dtype)
    arg = np.empty(out.shape, dtype=index_type(s * s))
    fast.norm_max_pool(planes, norm.mean, scale, norm.params["beta"], s, out, arg)
    pool.x = None  # the normalized input was never made; backward() below needs only arg
    pool.arg = arg.reshape(oh, ow, n * c)  # the compiled pool's own argmax planes
    if for_conv:  # (OH, OW, N, C) -> (C, OH, OW, N) memory, as (N, C, OH, OW)
        return np.ascontiguousarray(out.transpose(3, 0, 1, 2)).transpose(3, 0, 1, 2)
    return np.ascontiguousarray(out.transpose(2, 3, 0, 1))  # one copy of the small output


def backward(norm: BatchNorm, pool: MaxPool2D, dout: np.ndarray) -> np.ndarray:
    """norm.backward(pool.backward(dout)) after a fused forward: dx in pixel-major memory."""
    fast = kernels.compiled()
    x = norm.x
    n, c, h, w = x.shape
    planes = x.transpose(2, 3, 0, 1)  # (H, W, N, C), contiguous (forward checked it)
    d = np.ascontiguousarray(dout.transpose(2, 3, 0, 1))  # (OH, OW, N, C)
    arg = pool.arg.reshape(d.shape)
    dbeta, dxc = fast.pooled_gradient_sums(planes, norm.mean, d, arg, pool.size)
    scale, q, p = norm.gradient_factors(dbeta, dxc, d.dtype)
    dx = np.empty((h, w, n, c), dtype=d.dtype)
    fast.norm_max_pool_dx(planes, norm.mean, d, arg, pool.size, q, p, scale, dx)
    return dx.transpose(2, 3, 0, 1)
