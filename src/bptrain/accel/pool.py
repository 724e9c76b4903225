"""MaxPool2D the fast way: disjoint windows (stride == size) over a conv's pixel-major output,
as one compiled pass each way (compiled.max_pool, max_pool_dx).

Each pooling window's pixels lie in separate contiguous runs of N*C values there, so the loop
reads the input once and keeps one argmax per window. The results are the book's bits (the
first maximum in row-major order; dout routed to it, zeros elsewhere); tests compare them.
dx comes back pixel-major, the layout Conv2D.backward takes without a copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..functional import index_type
from . import kernels


def planes(x: np.ndarray) -> np.ndarray | None:
    """Pixel-major (N, C, H, W) `x` (memory H, W, N, C) as its (H, W, N*C) view, else None."""
    if x.ndim != 4:
        return None
    view = x.transpose(2, 3, 0, 1)
    if not view.flags.c_contiguous:
        return None
    return view.reshape(x.shape[2], x.shape[3], -1)


def applies(layer: Any, x: np.ndarray, train: bool) -> bool:
    """Disjoint windows on a pixel-major input, with the compiled loops."""
    disjoint = layer.stride == layer.size
    return disjoint and kernels.compiled() is not None and planes(x) is not None


def forward(layer: Any, x: np.ndarray) -> np.ndarray:
    s, (oh, ow) = layer.size, layer._out_hw(x)
    n, c = x.shape[:2]
    out_planes = np.empty((oh, ow, n * c), dtype=x.dtype)
    layer.arg_max = np.empty(out_planes.shape, dtype=index_type(s * s))  # one per window
    kernels.compiled().max_pool(planes(x), s, out_planes, layer.arg_max)
    layer.x = x
    # The next layer (flatten -> affine) wants C order: one copy of the small output.
    return np.ascontiguousarray(out_planes.reshape(oh, ow, n, c).transpose(2, 3, 0, 1))


def backward(layer: Any, dout: np.ndarray) -> np.ndarray:
    """The adjoint of forward, pixel-major."""
    s, (oh, ow) = layer.size, layer._out_hw(layer.x)
    n, c, h, w = layer.x.shape
    d = np.ascontiguousarray(dout.transpose(2, 3, 0, 1)).reshape(oh, ow, n * c)
    dx_planes = np.empty((h, w, n * c), dtype=dout.dtype)
    kernels.compiled().max_pool_dx(d, layer.arg_max, s, dx_planes)
    return dx_planes.reshape(h, w, n, c).transpose(2, 3, 0, 1)
