"""Max and average pooling on (N, C, H, W) batches.

MaxPool2D reads a pixel-major conv output (see conv.py) fast, since each pooling window's
pixels lie in separate contiguous runs of N*F values, and allocates its dx like its input, so
the gradient it hands back to Conv2D.backward is pixel-major again.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...accel import kernels
from ...functional import Pair, index_type, offsets, output_size, window
from .base import LAYERS, Layer, Shape
from .image import check_fits, image_shape, positive

# Other libraries' argument names for a pooling window, suggested when a config uses them.
_POOL_KEYS = {"kernel": "size", "kernel_size": "size", "pool_size": "size", "strides": "stride"}


class _Pool2D(Layer):
    """Shared shape logic of the pooling layers: size x size windows every `stride` pixels."""

    def __init__(self, size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.size = positive(size, "size")
        self.stride = self.size if stride is None else positive(stride, "stride")

    def build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> Shape:
        c, h, w = image_shape(input_shape, self.name)
        check_fits((self.size, self.size), (h, w), "size")
        return (c, output_size(h, self.size, self.stride), output_size(w, self.size, self.stride))

    def _out_hw(self, x: np.ndarray) -> Pair:
        return (
            output_size(x.shape[2], self.size, self.stride),
            output_size(x.shape[3], self.size, self.stride),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, stride={self.stride})"


# Disjoint pooling runs in tiles of output rows whose input (about this many bytes) stays in a
# core's L2 cache across the several ufuncs that pass over it: for the cnn preset's 2x2 pool
# (6.9 MB of input) tiles cut the forward pass from 1.15 ms to 0.8 ms.
TILE_BYTES = 1 << 20


def _tile_rows(out_rows: int, bytes_per_row: int) -> int:
    """Output rows per tile: about TILE_BYTES of input each, at least one row."""
    return min(out_rows, max(1, TILE_BYTES // max(bytes_per_row, 1)))


def _first_max(views: list[np.ndarray], best: np.ndarray, arg: np.ndarray) -> None:
    """best = the elementwise maximum of `views`; arg = the index of the first view attaining it."""
    if len(views) == 1:
        best[...], arg[...] = views[0], 0
        return
    # Strictly greater: on ties the earlier view keeps winning. The comparison's 0/1 is already
    # the index; written as bools into a one-byte arg it needs no cast.
    np.greater(views[1], views[0], out=arg.view(np.bool_) if arg.itemsize == 1 else arg)
    np.maximum(views[0], views[1], out=best)
    for k in range(2, len(views)):
        above = np.greater(views[k], best)
        np.maximum(best, views[k], out=best)
        # arg < k everywhere, so max(arg, k * above) sets k exactly where `above` holds
        # (masked writes, copyto(where=), are several times slower than two plain ufuncs).
        np.maximum(arg, above.view(np.uint8) * arg.dtype.type(k), out=arg)


def _route(src: np.ndarray, arg: np.ndarray, targets: list[np.ndarray]) -> None:
    """The adjoint of _first_max: targets[k] = src where arg == k, else 0 (each written once)."""
    if len(targets) == 2 and arg.itemsize == 1:
        # Two targets: the second is src times the 0/1 index, the first the rest; src - src
        # is an exact 0, src - 0 exactly src. A quarter less time than two compare-multiplies.
        np.multiply(src, arg.view(np.bool_), out=targets[1])
        np.subtract(src, targets[1], out=targets[0])
        return
    for k, target in enumerate(targets):
        np.multiply(src, arg == k, out=target)


def _planes(x: np.ndarray) -> np.ndarray | None:
    """Pixel-major (N, C, H, W) `x` (memory H, W, N, C) as its (H, W, N*C) view, else None."""
    view = x.transpose(2, 3, 0, 1)
    if not view.flags.c_contiguous:
        return None
    return view.reshape(x.shape[2], x.shape[3], -1)


def _like(a: np.ndarray, layout: np.ndarray) -> np.ndarray:
    """`a` itself when its memory order matches `layout`'s, else a copy in that order."""
    result = np.empty_like(layout, dtype=a.dtype)
    if result.strides == a.strides:
        return a
    result[...] = a
    return result


@LAYERS.register("max_pool2d", aliases=("maxpool2d", "max_pooling2d"), key_aliases=_POOL_KEYS)
class MaxPool2D(_Pool2D):
    """Maximum over each window; backward routes the gradient to the maximum (first one on ties).

    Disjoint windows (stride == size, the usual case) take a fast path: the maximum along each
    window row, then down the rows, each a few whole-array ufuncs over strided views. On a
    pixel-major conv output every view is a sequence of long contiguous runs. "First" is
    row-major order: the first maximum of the first row that holds the window's maximum.
    """

    example: ClassVar[dict[str, Any]] = {
        "spec": {"type": "max_pool2d", "size": 3, "stride": 2},
        "input_shape": (2, 5, 6),
    }

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self.x = x
        if self.stride == self.size:
            # The next layer (flatten -> affine) wants C order: one copy of the small output.
            return np.ascontiguousarray(self._forward_disjoint(x))
        return self._forward_overlapping(x)

    def _tiles(self, x: np.ndarray) -> tuple[int, list[tuple[slice, slice]]]:
        """Output rows per tile, and each tile's (input rows, output rows)."""
        s, oh = self.size, self._out_hw(x)[0]
        n, c, _, w = x.shape
        step = _tile_rows(oh, s * n * c * w * x.itemsize)
        starts = range(0, oh, step)
        return step, [
            (slice(r * s, min(r + step, oh) * s), slice(r, min(r + step, oh))) for r in starts
        ]

    def _forward_disjoint(self, x: np.ndarray) -> np.ndarray:
        """(N, C, OH, OW) maxima in x's memory order; keeps the two stages' argmaxes."""
        s, (oh, ow) = self.size, self._out_hw(x)
        n, c = x.shape[:2]
        fast, planes = kernels.compiled(), _planes(x)
        self.arg = None  # the compiled loop's one argmax per window, when it ran
        if fast is not None and planes is not None:
            out_planes = np.empty((oh, ow, n * c), dtype=x.dtype)
            self.arg = np.empty(out_planes.shape, dtype=index_type(s * s))
            fast.max_pool(planes, s, out_planes, self.arg)
            return out_planes.reshape(oh, ow, n, c).transpose(2, 3, 0, 1)
        out = np.empty_like(x, shape=(n, c, oh, ow))  # empty_like keeps x's memory order
        self.col_arg = np.empty_like(x, shape=(n, c, oh * s, ow), dtype=index_type(s))
        self.row_arg = np.empty_like(out, dtype=index_type(s))
        step, tiles = self._tiles(x)
        row_max = np.empty_like(x, shape=(n, c, step * s, ow))  # one tile's row maxima
        for rows, tile in tiles:
            h, xt = row_max[:, :, : rows.stop - rows.start], x[:, :, rows]
            _first_max([xt[..., j : ow * s : s] for j in range(s)], h, self.col_arg[:, :, rows])
            _first_max([h[:, :, i::s] for i in range(s)], out[:, :, tile], self.row_arg[:, :, tile])
        return out

    def _forward_overlapping(self, x: np.ndarray) -> np.ndarray:
        """Any stride: a running maximum over the size*size kernel offsets."""
        hw = self._out_hw(x)
        out = window(x, 0, 0, self.stride, hw).copy()  # (N, C, OH, OW), C-contiguous
        # Index of the winning kernel offset per output; one byte covers windows up to 16x16.
        self.arg = np.empty(out.shape, dtype=index_type(self.size * self.size))
        candidates = [window(x, i, j, self.stride, hw) for _, i, j in offsets((self.size,) * 2)]
        _first_max(candidates, out, self.arg)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.stride == self.size:
            return self._backward_disjoint(dout)
        return self._backward_overlapping(dout)

    def kink_state(self) -> tuple[np.ndarray, ...]:
        # Which input won each window: the derivative jumps where that choice changes.
        if self.stride == self.size and self.arg is None:
            return (self.col_arg, self.row_arg)
        return (self.arg,)

    def _backward_overlapping(self, dout: np.ndarray) -> np.ndarray:
        """Any stride: dout goes to each kernel offset where it won, summed over windows."""
        hw = self._out_hw(self.x)
        dx = np.zeros_like(self.x, dtype=dout.dtype)  # keeps the input's memory layout
        for k, i, j in offsets((self.size, self.size)):
            target = window(dx, i, j, self.stride, hw)
            if self.stride >= self.size:  # disjoint windows: every dx entry is written once
                np.multiply(dout, self.arg == k, out=target)
            else:
                np.add(target, dout * (self.arg == k), out=target)
        return dx

    def _backward_disjoint(self, dout: np.ndarray) -> np.ndarray:
        """Route dout up the rows, then along them; dx has x's memory order."""
        s, (oh, ow) = self.size, self._out_hw(self.x)
        n, c, h, w = self.x.shape
        if self.arg is not None:  # the compiled forward ran: its adjoint, pixel-major
            d = np.ascontiguousarray(dout.transpose(2, 3, 0, 1)).reshape(oh, ow, n * c)
            dx_planes = np.empty((h, w, n * c), dtype=dout.dtype)
            kernels.compiled().max_pool_dx(d, self.arg, s, dx_planes)
            return dx_planes.reshape(h, w, n, c).transpose(2, 3, 0, 1)
        dx = np.empty_like(self.x, dtype=dout.dtype)
        dout = _like(dout, self.row_arg)  # one copy when dout is C order and x was not
        step, tiles = self._tiles(self.x)
        row_grad = np.empty_like(self.col_arg, shape=(n, c, step * s, ow), dtype=dout.dtype)
        for rows, tile in tiles:
            dh, dxt = row_grad[:, :, : rows.stop - rows.start], dx[:, :, rows]
            _route(dout[:, :, tile], self.row_arg[:, :, tile], [dh[:, :, i::s] for i in range(s)])
            _route(dh, self.col_arg[:, :, rows], [dxt[..., j : ow * s : s] for j in range(s)])
        dx[:, :, oh * s :] = 0  # rows and columns no window reaches get no gradient
        dx[:, :, :, ow * s :] = 0
        return dx


@LAYERS.register("avg_pool2d", aliases=("avgpool2d", "average_pooling2d"), key_aliases=_POOL_KEYS)
class AvgPool2D(_Pool2D):
    """Mean over each window; backward spreads dout / (size * size) over the window."""

    example: ClassVar[dict[str, Any]] = {
        "spec": {"type": "avg_pool2d", "size": 2, "stride": 1},
        "input_shape": (2, 4, 3),
    }

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        hw = self._out_hw(x)
        out = window(x, 0, 0, self.stride, hw).copy()  # (N, C, OH, OW), C-contiguous
        for k, i, j in offsets((self.size, self.size)):
            if k > 0:
                np.add(out, window(x, i, j, self.stride, hw), out=out)
        out *= out.dtype.type(1 / self.size**2)
        self.x = x
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        hw = self._out_hw(self.x)
        share = dout * dout.dtype.type(1 / self.size**2)
        dx = np.zeros_like(self.x, dtype=dout.dtype)  # keeps the input's memory layout
        for _, i, j in offsets((self.size, self.size)):
            target = window(dx, i, j, self.stride, hw)
            np.add(target, share, out=target)
        return dx
