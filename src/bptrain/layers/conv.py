"""Convolution and pooling on (N, C, H, W) batches, through im2col/col2im.

Conv2D returns an (N, F, OH, OW) array whose memory is pixel-major (OH, OW, N, F): that is the
layout its one GEMM produces, and reading it as NCHW is a free transpose. Elementwise layers
after it keep the layout (NumPy allocates results in the input's stride order). MaxPool2D
reads it fast, since each pooling window's pixels lie in separate contiguous runs of N*F
values, and allocates its dx like its input, so the gradient reaching Conv2D.backward is
pixel-major again and needs no copy to become the (OH*OW*N, F) GEMM operand. Any other layout
still works, at the price of one copy.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from ..errors import ConfigError
from ..im2col import Pair, col2im, im2col, offsets, output_size, window
from ..initializers import INITIALIZERS
from .base import LAYERS, Layer, Shape


def _positive(value: int, path: str) -> int:
    """`value` if it is an integer >= 1, else a ConfigError naming `path`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"must be a positive integer, got {value!r}", path=path)
    return value


def _pair(value: int | tuple[int, int] | list[int], path: str) -> Pair:
    """An int k -> (k, k); a pair of positive ints as a tuple."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ConfigError(f"must be an int or a pair [height, width], got {value!r}", path=path)
        return _positive(value[0], path), _positive(value[1], path)
    return _positive(value, path), _positive(value, path)


def _image_shape(input_shape: Shape, layer: str) -> tuple[int, int, int]:
    """(C, H, W) from an input shape without the batch axis, or a ConfigError."""
    if len(input_shape) != 3:
        raise ConfigError(
            f"{layer} needs (channels, height, width) input, got a {len(input_shape)}-D shape",
            hint="conv and pooling layers go before flatten and affine, on image-shaped data",
        )
    c, h, w = input_shape
    return c, h, w


def _check_fits(kernel: Pair, padded_hw: Pair, path: str) -> None:
    """A kernel larger than the (padded) image has no valid position."""
    if kernel[0] > padded_hw[0] or kernel[1] > padded_hw[1]:
        raise ConfigError(
            f"the {kernel[0]}x{kernel[1]} window is bigger than the "
            f"{padded_hw[0]}x{padded_hw[1]} (padded) input",
            path=path,
        )


@LAYERS.register("conv2d")
class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in the book) of F filters over (N, C, H, W).

    W has shape (F, C, KH, KW), b (F,). Output sizes are floored: (H + 2*pad - KH) // stride + 1.
    `padding: same` keeps H and W (stride 1 and odd kernel sizes only).
    """

    example: ClassVar[dict[str, Any]] = {
        "spec": {
            "type": "conv2d",
            "filters": 3,
            "kernel": [3, 2],
            "stride": 2,
            "padding": 1,
            "init": "xavier",
        },
        "input_shape": (2, 6, 5),
    }

    def __init__(
        self,
        filters: int,
        kernel: int | tuple[int, int] = 3,
        stride: int = 1,
        padding: int | Literal["same"] = 0,
        init: str | dict = "he",
    ) -> None:
        super().__init__()
        self.filters = _positive(filters, "filters")
        self.kernel = _pair(kernel, "kernel")
        self.stride = _positive(stride, "stride")
        self.pad = self._padding(padding)
        self.init = INITIALIZERS.build(init, path="init")

    def _padding(self, padding: int | str) -> Pair:
        """Padding per axis (rows, columns); 'same' pads (K - 1) / 2 on each side."""
        if padding == "same":
            if self.stride != 1 or self.kernel[0] % 2 == 0 or self.kernel[1] % 2 == 0:
                raise ConfigError(
                    "'same' needs stride 1 and odd kernel sizes",
                    path="padding",
                    hint="give the padding as an integer instead",
                )
            return (self.kernel[0] - 1) // 2, (self.kernel[1] - 1) // 2
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ConfigError(f"must be an integer >= 0 or 'same', got {padding!r}", path="padding")
        return padding, padding

    def build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> Shape:
        c, h, w = _image_shape(input_shape, "conv2d")
        (kh, kw), (ph, pw) = self.kernel, self.pad
        _check_fits(self.kernel, (h + 2 * ph, w + 2 * pw), "kernel")
        fan_in, fan_out = c * kh * kw, self.filters * kh * kw
        W = self.init((self.filters, c, kh, kw), fan_in, fan_out, rng, dtype)
        self._set_params(W=np.ascontiguousarray(W), b=np.zeros(self.filters, dtype=dtype))
        return (
            self.filters,
            output_size(h, kh, self.stride, ph),
            output_size(w, kw, self.stride, pw),
        )

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        n, _, h, w = x.shape
        self.x_shape = x.shape
        # (C*KH*KW + 1, OH*OW*N): the extra row of ones carries the bias through the GEMM.
        self.cols = im2col(x, self.kernel, self.stride, self.pad, ones_row=True)
        out = self.cols.T @ self._weights_and_bias().T  # (OH*OW*N, F): the one GEMM
        oh = output_size(h, self.kernel[0], self.stride, self.pad[0])
        ow = output_size(w, self.kernel[1], self.stride, self.pad[1])
        # (OH*OW*N, F) -> (OH, OW, N, F) -> (N, F, OH, OW): views, memory stays pixel-major.
        return out.reshape(oh, ow, n, self.filters).transpose(2, 3, 0, 1)

    def _weights_and_bias(self) -> np.ndarray:
        """(F, C*KH*KW + 1): the filters as rows, the bias as the last column."""
        W2 = self.params["W"].reshape(self.filters, -1)  # (F, C, KH, KW) -> (F, C*KH*KW)
        return np.concatenate([W2, self.params["b"][:, None]], axis=1)

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        # (N, F, OH, OW) -> (OH*OW*N, F): a view when dout is pixel-major, else one copy.
        dout2 = dout.transpose(2, 3, 0, 1).reshape(-1, self.filters)
        # One GEMM gives both gradients: (C*KH*KW + 1, F), dW transposed and, from the row
        # of ones, db (the sum of dout over every output pixel) in its last row.
        grads = self.cols @ dout2
        self.grads["W"].reshape(self.filters, -1)[...] = grads[:-1].T
        self.grads["b"][...] = grads[-1]
        if self.skip_input_grad:
            return None
        W2 = self.params["W"].reshape(self.filters, -1)
        dcols = W2.T @ dout2.T  # (C*KH*KW, OH*OW*N), pixel-major like the columns
        return col2im(dcols, self.x_shape, self.kernel, self.stride, self.pad)

    def __repr__(self) -> str:
        return (
            f"Conv2D(filters={self.filters}, kernel={self.kernel}, stride={self.stride}, "
            f"padding={self.pad})"
        )


class _Pool2D(Layer):
    """Shared shape logic of the pooling layers: size x size windows every `stride` pixels."""

    def __init__(self, size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.size = _positive(size, "size")
        self.stride = self.size if stride is None else _positive(stride, "stride")

    def build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> Shape:
        c, h, w = _image_shape(input_shape, getattr(self, "registry_name", "pooling"))
        _check_fits((self.size, self.size), (h, w), "size")
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


def _index_type(count: int) -> np.dtype:
    """The smallest unsigned integer type that holds indices 0 .. count - 1."""
    return np.min_scalar_type(max(count - 1, 0))


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


def _like(a: np.ndarray, layout: np.ndarray) -> np.ndarray:
    """`a` itself when its memory order matches `layout`'s, else a copy in that order."""
    result = np.empty_like(layout, dtype=a.dtype)
    if result.strides == a.strides:
        return a
    result[...] = a
    return result


@LAYERS.register("max_pool2d")
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
        out = np.empty_like(x, shape=(n, c, oh, ow))  # empty_like keeps x's memory order
        self.col_arg = np.empty_like(x, shape=(n, c, oh * s, ow), dtype=_index_type(s))
        self.row_arg = np.empty_like(out, dtype=_index_type(s))
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
        self.arg = np.empty(out.shape, dtype=_index_type(self.size * self.size))
        candidates = [window(x, i, j, self.stride, hw) for _, i, j in offsets((self.size,) * 2)]
        _first_max(candidates, out, self.arg)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.stride == self.size:
            return self._backward_disjoint(dout)
        return self._backward_overlapping(dout)

    def kink_state(self) -> tuple[np.ndarray, ...]:
        # Which input won each window: the derivative jumps where that choice changes.
        return (self.col_arg, self.row_arg) if self.stride == self.size else (self.arg,)

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
        n, c = self.x.shape[:2]
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


@LAYERS.register("avg_pool2d")
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
