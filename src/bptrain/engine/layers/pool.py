"""Max and average pooling on (N, C, H, W) batches.

MaxPool2D is the book's (Deep Learning from Scratch, 7.4): im2col gathers each window into a
column, the maximum is taken down it and its row remembered, and backward routes dout to
that row and col2im puts it back in place. With the compiled loops, on a conv's pixel-major
output, accel/pool.py does the same in one pass each way, without the columns.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ... import accel
from ...functional import Pair, offsets, output_size, window
from .base import LAYERS, Layer, Shape
from .im2col import col2im, im2col
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


@LAYERS.register("max_pool2d", aliases=("maxpool2d", "max_pooling2d"), key_aliases=_POOL_KEYS)
class MaxPool2D(_Pool2D):
    """Maximum over each window; backward routes the gradient to the maximum (the first one
    in row-major order on ties, as np.argmax picks it)."""

    example: ClassVar[dict[str, Any]] = {
        "spec": {"type": "max_pool2d", "size": 3, "stride": 2},
        "input_shape": (2, 5, 6),
    }

    def __init__(self, size: int = 2, stride: int | None = None) -> None:
        super().__init__(size, stride)
        self.fast = None  # accel/pool.py when the compiled loops ran the last forward

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self.fast = accel.for_layer(self, x, train)  # the compiled loops' way, when they run
        if self.fast is not None:
            return self.fast.forward(self, x)
        N, C = x.shape[:2]
        out_h, out_w = self._out_hw(x)
        pool = (self.size, self.size)
        col = im2col(x, pool, self.stride).reshape(C, -1, out_h * out_w * N)  # (C, PH*PW, .)
        self.arg_max = np.argmax(col, axis=1)  # (C, OH*OW*N): each window's winning row
        out = np.max(col, axis=1)
        self.x = x
        # (C, OH, OW, N) -> (N, C, OH, OW), in C order: what flatten needs to stay a view.
        return np.ascontiguousarray(out.reshape(C, out_h, out_w, N).transpose(3, 0, 1, 2))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.fast is not None:
            return self.fast.backward(self, dout)
        C = self.x.shape[1]
        dout = dout.transpose(1, 2, 3, 0).reshape(C, 1, -1)  # (C, 1, OH*OW*N)
        dmax = np.zeros((C, self.size * self.size, dout.shape[2]), dtype=dout.dtype)
        np.put_along_axis(dmax, self.arg_max[:, None], dout, axis=1)
        dcol = dmax.reshape(-1, dout.shape[2])  # (C*PH*PW, OH*OW*N)
        dx = np.empty_like(self.x, dtype=dout.dtype)  # in x's layout: a view for a conv's dx
        dx[...] = col2im(dcol, self.x.shape, (self.size, self.size), self.stride)
        return dx

    def kink_state(self) -> tuple[np.ndarray, ...]:
        # Which input won each window: the derivative jumps where that choice changes.
        return (self.arg_max,)


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
