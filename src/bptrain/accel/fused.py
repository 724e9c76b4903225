"""BatchNorm -> max-pool (-> ReLU), and max-pool -> ReLU, as one compiled pass each way: the
fast way to run an engine/layers/fused.py FusedRun.

In the conv presets a BatchNorm's output (10 MB for cnn-deep's first block, batch 100) is
written only for the max-pool to read it and keep a quarter; backward, the pool writes a
full-size gradient, three quarters zeros, for BatchNorm to read twice. Memory traffic is what
these passes cost, so the fused forward pools the normalized values as it computes them, and
the fused backward routes the pooled gradient on the fly: 10 MB written and 30 MB read fewer
per block and step. The ReLU after a pool (the network runs it there, on a quarter of the
values) rides in the same passes. The layers keep their parameters, gradients, statistics and
masks; every value goes through the unfused compiled loops' operations, so the results are
the same bits (tests compare them). It runs while training with the compiled loops on a
pixel-major input (a conv output); otherwise the run's layers run one by one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..functional import index_type
from . import batch_norm, kernels, winograd


def applies(run: Any, x: np.ndarray, train: bool) -> bool:
    """Whether `run` can go as one pass on `x`: training (inference needs no backward), the
    compiled loops loaded, x pixel-major (a conv's output), and a BatchNorm that runs the
    fast way itself (batch_norm.applies: a SyncBatchNorm's members go one by one)."""
    norm_ok = run.norm is None or batch_norm.applies(run.norm, x, train)
    return train and norm_ok and kernels.compiled() is not None and _pixel_major(x) is not None


def _pixel_major(x: np.ndarray) -> np.ndarray | None:
    """(N, C, H, W) `x` as its C-contiguous (H, W, N, C) view, when its memory is that."""
    if x.ndim != 4:
        return None
    view = x.transpose(2, 3, 0, 1)
    return view if view.flags.c_contiguous else None


def forward(run: Any, x: np.ndarray) -> np.ndarray:
    """The run's layers' forward passes in one (when `applies`).

    The output is C order for a flatten -> affine after it; before a conv2d (`run.conv_after`)
    it is laid out as that conv reads its input and returns its gradient, so a ReLU
    between them works on matching memory both ways (on mismatched memory its backward took
    1.8 ms for 2.5 MB): (H, W, N, C), the pooled values as they are, for a Winograd conv;
    (C, H, W, N) for im2col's copy.
    """
    fast, planes = kernels.compiled(), _pixel_major(x)
    norm, pool, relu, for_conv = run.norm, run.pool, run.relu, run.conv_after
    n, c = x.shape[:2]
    s, (oh, ow) = pool.size, pool._out_hw(x)
    out = np.empty((oh, ow, n, c), dtype=x.dtype)
    arg = np.empty(out.shape, dtype=index_type(s * s))
    mask = np.empty(out.shape, dtype=np.bool_) if relu else None
    if norm is not None:
        scale = batch_norm.prepare(norm, x, True)
        fast.norm_max_pool(planes, norm.mean, scale, norm.params["beta"], s, out, arg, mask)
    else:
        flat = (oh, ow, n * c)  # the compiled pool's own (H, W, N*C) planes
        h, w = x.shape[2:]
        pixels = planes.reshape(h, w, n * c)
        fast.max_pool(pixels, s, out.reshape(flat), arg.reshape(flat), _flat(mask))
    # backward() below needs only the pool's argmax planes and its input's shape: the pool
    # keeps no input (with BatchNorm there was none; else it would hold the conv's output).
    pool.x, pool.x_shape = None, x.shape
    pool.arg_max = arg.reshape(oh, ow, n * c)  # the compiled pool's own argmax planes
    if relu is not None:
        relu.mask = mask.transpose(2, 3, 0, 1)  # (N, C, OH, OW) view of the planes
    if for_conv is not None and _reads_channels_last(for_conv, x.dtype):
        return out.transpose(2, 3, 0, 1)
    if for_conv is not None:  # (OH, OW, N, C) -> (C, OH, OW, N) memory, as (N, C, OH, OW)
        channel_major = np.empty((c, oh, ow, n), dtype=x.dtype)
        fast.transpose(out.reshape(-1, c), channel_major.reshape(c, -1))
        return channel_major.transpose(3, 0, 1, 2)
    return np.ascontiguousarray(out.transpose(2, 3, 0, 1))  # one copy of the small output


def _reads_channels_last(conv: Any, dtype: np.dtype) -> bool:
    """Whether the conv reads its input as (H, W, N, C) memory (Winograd's way) rather than
    (C, H, W, N) (im2col's copy)."""
    return winograd.usable(dtype, conv.params["W"], conv.stride)


def _flat(mask: np.ndarray | None) -> np.ndarray | None:
    return None if mask is None else mask.reshape(mask.shape[0], mask.shape[1], -1)


def backward(run: Any, dout: np.ndarray) -> np.ndarray:
    """The run's backward passes in one, after a fused forward: dx in pixel-major memory."""
    fast = kernels.compiled()
    norm, pool, relu = run.norm, run.pool, run.relu
    mask = None if relu is None else relu.mask.transpose(2, 3, 0, 1)  # (OH, OW, N, C)
    d = np.ascontiguousarray(dout.transpose(2, 3, 0, 1))  # (OH, OW, N, C)
    arg = pool.arg_max.reshape(d.shape)
    if norm is None:
        n, c, h, w = pool.x_shape
        dx = np.empty((h, w, n * c), dtype=d.dtype)
        flat = (d.shape[0], d.shape[1], n * c)
        fast.max_pool_dx(d.reshape(flat), pool.arg_max, pool.size, dx, _flat(mask))
        return dx.reshape(h, w, n, c).transpose(2, 3, 0, 1)
    x = norm.x
    n, c, h, w = x.shape
    planes = x.transpose(2, 3, 0, 1)  # (H, W, N, C), contiguous (forward checked it)
    dbeta, dxc = fast.pooled_gradient_sums(planes, norm.mean, d, arg, pool.size, mask)
    scale, q, p = batch_norm.gradient_factors(norm, dbeta, dxc, d.dtype)
    dx = np.empty((h, w, n, c), dtype=d.dtype)
    fast.norm_max_pool_dx(planes, norm.mean, d, arg, pool.size, q, p, scale, dx, mask)
    return dx.transpose(2, 3, 0, 1)
