"""Runs of layers that train as one compiled pass each way: BatchNorm -> max-pool (-> ReLU),
and max-pool -> ReLU.

In the conv presets a BatchNorm's output (10 MB for cnn-deep's first block, batch 100) is
written only for the max-pool to read it and keep a quarter; backward, the pool writes a
full-size gradient, three quarters zeros, for BatchNorm to read twice. Memory traffic is what
these passes cost, so the fused forward pools the normalized values as it computes them, and
the fused backward routes the pooled gradient on the fly: 10 MB written and 30 MB read fewer
per block and step. The ReLU after a pool (the network runs it there, on a quarter of the
values) rides in the same passes. The layers keep their parameters, gradients, statistics and
masks; every value goes through the unfused compiled loops' operations, so the results are
the same bits (tests compare them). Network uses these runs while training with the compiled
loops on a pixel-major input (a conv output); otherwise it runs the layers one by one.
"""

from __future__ import annotations

import numpy as np

from ...accel import kernels
from .base import Layer
from .conv import Conv2D
from .core import Relu
from .norm import BatchNorm
from .pool import MaxPool2D, index_type


def _disjoint_pool(layer: Layer | None) -> bool:
    return type(layer) is MaxPool2D and layer.stride == layer.size


def plan(layers: list[Layer], order: list[int]) -> list[tuple[int, ...]]:
    """The execution `order` in steps: (i,) for a layer on its own, (norm, pool[, relu]) or
    (pool, relu) for a run that can go fused."""
    at = [*order, None]  # at[k]: the layer index k-th in execution, None past the end
    steps, k = [], 0
    while k < len(order):
        run = [order[k]]
        if type(layers[run[0]]) is BatchNorm and _disjoint_pool(_layer(layers, at[k + 1])):
            run.append(at[k + 1])
        if _disjoint_pool(layers[run[-1]]) and type(_layer(layers, at[k + len(run)])) is Relu:
            run.append(at[k + len(run)])
        steps.append(tuple(run))
        k += len(run)
    return steps


def _layer(layers: list[Layer], i: int | None) -> Layer | None:
    return None if i is None else layers[i]


def next_conv(layers: list[Layer], order: list[int], last: int) -> Conv2D | None:
    """The conv2d right after `last` in execution order, if that is one: a run ending there
    lays its output out as the conv reads it (see forward)."""
    position = order.index(last) + 1
    following = layers[order[position]] if position < len(order) else None
    return following if type(following) is Conv2D else None


def _pixel_major(x: np.ndarray) -> np.ndarray | None:
    """(N, C, H, W) `x` as its C-contiguous (H, W, N, C) view, when its memory is that."""
    if x.ndim != 4:
        return None
    view = x.transpose(2, 3, 0, 1)
    return view if view.flags.c_contiguous else None


def forward(
    run: list[Layer], x: np.ndarray, train: bool, for_conv: Conv2D | None = None
) -> np.ndarray | None:
    """The run's layers' forward passes in one, or None when it cannot go fused (inference,
    no compiled loops, x not pixel-major): then run the layers themselves.

    The output is C order for a flatten -> affine after it; before a conv2d (`for_conv`)
    it is laid out as that conv reads its input and returns its gradient, so a ReLU
    between them works on matching memory both ways (on mismatched memory its backward took
    1.8 ms for 2.5 MB): (H, W, N, C), the pooled values as they are, for a Winograd conv;
    (C, H, W, N) for im2col's copy.
    """
    fast, planes = kernels.compiled(), _pixel_major(x)
    if not train or fast is None or planes is None:
        return None
    norm, pool, relu = _roles(run)
    n, c = x.shape[:2]
    s, (oh, ow) = pool.size, pool._out_hw(x)
    out = np.empty((oh, ow, n, c), dtype=x.dtype)
    arg = np.empty(out.shape, dtype=index_type(s * s))
    mask = np.empty(out.shape, dtype=np.bool_) if relu else None
    if norm is not None:
        scale = norm.prepare(x, train)
        fast.norm_max_pool(planes, norm.mean, scale, norm.params["beta"], s, out, arg, mask)
    else:
        flat = (oh, ow, n * c)  # the compiled pool's own (H, W, N*C) planes
        h, w = x.shape[2:]
        pixels = planes.reshape(h, w, n * c)
        fast.max_pool(pixels, s, out.reshape(flat), arg.reshape(flat), _flat(mask))
    # backward() below needs only the pool's argmax planes and its input's shape: the pool
    # keeps no input (with BatchNorm there was none; else it would hold the conv's output).
    pool.x, pool.x_shape = None, x.shape
    pool.arg = arg.reshape(oh, ow, n * c)  # the compiled pool's own argmax planes
    if relu is not None:
        relu.mask = mask.transpose(2, 3, 0, 1)  # (N, C, OH, OW) view of the planes
    if for_conv is not None and for_conv.reads_channels_last(x.dtype):
        return out.transpose(2, 3, 0, 1)
    if for_conv is not None:  # (OH, OW, N, C) -> (C, OH, OW, N) memory, as (N, C, OH, OW)
        channel_major = np.empty((c, oh, ow, n), dtype=x.dtype)
        fast.transpose(out.reshape(-1, c), channel_major.reshape(c, -1))
        return channel_major.transpose(3, 0, 1, 2)
    return np.ascontiguousarray(out.transpose(2, 3, 0, 1))  # one copy of the small output


def _roles(run: list[Layer]) -> tuple[BatchNorm | None, MaxPool2D, Relu | None]:
    """A run's (norm, pool, relu), None for a layer it does not have."""
    norm = run[0] if isinstance(run[0], BatchNorm) else None
    relu = run[-1] if type(run[-1]) is Relu else None
    return norm, run[1 if norm else 0], relu


def _flat(mask: np.ndarray | None) -> np.ndarray | None:
    return None if mask is None else mask.reshape(mask.shape[0], mask.shape[1], -1)


def backward(run: list[Layer], dout: np.ndarray) -> np.ndarray:
    """The run's backward passes in one, after a fused forward: dx in pixel-major memory."""
    fast = kernels.compiled()
    norm, pool, relu = _roles(run)
    mask = None if relu is None else relu.mask.transpose(2, 3, 0, 1)  # (OH, OW, N, C)
    d = np.ascontiguousarray(dout.transpose(2, 3, 0, 1))  # (OH, OW, N, C)
    arg = pool.arg.reshape(d.shape)
    if norm is None:
        n, c, h, w = pool.x_shape
        dx = np.empty((h, w, n * c), dtype=d.dtype)
        flat = (d.shape[0], d.shape[1], n * c)
        fast.max_pool_dx(d.reshape(flat), pool.arg, pool.size, dx, _flat(mask))
        return dx.reshape(h, w, n, c).transpose(2, 3, 0, 1)
    x = norm.x
    n, c, h, w = x.shape
    planes = x.transpose(2, 3, 0, 1)  # (H, W, N, C), contiguous (forward checked it)
    dbeta, dxc = fast.pooled_gradient_sums(planes, norm.mean, d, arg, pool.size, mask)
    scale, q, p = norm.gradient_factors(dbeta, dxc, d.dtype)
    dx = np.empty((h, w, n, c), dtype=d.dtype)
    fast.norm_max_pool_dx(planes, norm.mean, d, arg, pool.size, q, p, scale, dx, mask)
    return dx.transpose(2, 3, 0, 1)
