"""Convolution and pooling on (N, C, H, W) batches, through im2col/col2im.

Conv2D returns an (N, F, OH, OW) array whose memory is channel-major (F, N, OH, OW): that is
the layout its one GEMM produces, and reading it as NCHW is a free transpose. Elementwise layers
after it keep the layout (NumPy allocates results in the input's stride order), pooling's
backward allocates dx like its input, so the gradient reaching Conv2D.backward is channel-major
again and needs no copy to become the (F, N*OH*OW) GEMM operand. Any other layout still works,
at the price of one copy.
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
        self.cols = im2col(x, self.kernel, self.stride, self.pad)  # (C*KH*KW, N*OH*OW)
        W2 = self.params["W"].reshape(self.filters, -1)  # (F, C, KH, KW) -> (F, C*KH*KW), a view
        out = W2 @ self.cols  # (F, N*OH*OW): the one GEMM
        out += self.params["b"][:, None]
        oh = output_size(h, self.kernel[0], self.stride, self.pad[0])
        ow = output_size(w, self.kernel[1], self.stride, self.pad[1])
        # (F, N*OH*OW) -> (F, N, OH, OW) -> (N, F, OH, OW): views, memory stays channel-major.
        return out.reshape(self.filters, n, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        # (N, F, OH, OW) -> (F, N*OH*OW): a view when dout is channel-major, else one copy.
        dout2 = dout.transpose(1, 0, 2, 3).reshape(self.filters, -1)
        np.matmul(dout2, self.cols.T, out=self.grads["W"].reshape(self.filters, -1))
        np.sum(dout2, axis=1, out=self.grads["b"])
        if self.skip_input_grad:
            return None
        dcols = self.params["W"].reshape(self.filters, -1).T @ dout2  # (C*KH*KW, N*OH*OW)
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


@LAYERS.register("max_pool2d")
class MaxPool2D(_Pool2D):
    """Maximum over each window; backward routes the gradient to the maximum (first one on ties)."""

    example: ClassVar[dict[str, Any]] = {
        "spec": {"type": "max_pool2d", "size": 3, "stride": 2},
        "input_shape": (2, 5, 6),
    }

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        hw = self._out_hw(x)
        out = window(x, 0, 0, self.stride, hw).copy()  # (N, C, OH, OW), C-contiguous
        # Index of the winning kernel offset per output; one byte covers windows up to 16x16.
        arg = np.zeros(out.shape, dtype=np.min_scalar_type(self.size * self.size - 1))
        above = np.empty(out.shape, dtype=bool)
        for k, i, j in offsets((self.size, self.size)):
            if k == 0:
                continue
            candidate = window(x, i, j, self.stride, hw)
            np.greater(candidate, out, out=above)  # strictly greater: an earlier tie keeps winning
            np.maximum(out, candidate, out=out)
            # arg < k everywhere, so max(arg, k * above) sets k exactly where `above` holds
            # (masked writes, copyto(where=), are several times slower than two plain ufuncs).
            np.maximum(arg, above.view(np.uint8) * arg.dtype.type(k), out=arg)
        self.x, self.arg = x, arg
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        hw = self._out_hw(self.x)
        dx = np.zeros_like(self.x, dtype=dout.dtype)  # keeps the input's memory layout
        for k, i, j in offsets((self.size, self.size)):
            target = window(dx, i, j, self.stride, hw)
            if self.stride >= self.size:  # disjoint windows: every dx entry is written once
                np.multiply(dout, self.arg == k, out=target)
            else:
                np.add(target, dout * (self.arg == k), out=target)
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
