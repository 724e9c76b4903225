"""2-D convolution on (N, C, H, W) batches through im2col/col2im (im2col.py), the book's way
(Deep Learning from Scratch, 7.4); pooling is in pool.py.

With the compiled loops (the `fast` extra) the work goes to accel/conv.py, which computes the
same function in cache-sized blocks of rows, or with Winograd's tiles, on every thread.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from ... import accel
from ...errors import ConfigError
from ...functional import Pair, output_size
from ..initializers import INITIALIZERS
from .base import LAYERS, Layer, Shape
from .im2col import col2im, im2col
from .image import check_fits, image_shape, pair, positive


@LAYERS.register(
    "conv2d",
    key_aliases={"size": "kernel", "kernel_size": "kernel", "out_channels": "filters"},
)
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
        self.filters = positive(filters, "filters")
        self.kernel = pair(kernel, "kernel")
        self.stride = positive(stride, "stride")
        self.pad = self._padding(padding)
        self.init = INITIALIZERS.build(init, path="init")
        self.fast = None  # accel/conv.py when the compiled loops ran the last forward

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
        c, h, w = image_shape(input_shape, "conv2d")
        (kh, kw), (ph, pw) = self.kernel, self.pad
        check_fits(self.kernel, (h + 2 * ph, w + 2 * pw), "kernel")
        fan_in, fan_out = c * kh * kw, self.filters * kh * kw
        W = self.init((self.filters, c, kh, kw), fan_in, fan_out, rng, dtype)
        self._set_params(W=np.ascontiguousarray(W), b=np.zeros(self.filters, dtype=dtype))
        return (
            self.filters,
            output_size(h, kh, self.stride, ph),
            output_size(w, kw, self.stride, pw),
        )

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self.fast = accel.for_layer(self, x, train)  # the compiled loops' way, when they run
        if self.fast is not None:
            return self.fast.forward(self, x)
        FN, _, FH, FW = self.params["W"].shape
        N, _, H, W = x.shape
        out_h = output_size(H, FH, self.stride, self.pad[0])
        out_w = output_size(W, FW, self.stride, self.pad[1])
        col = im2col(x, self.kernel, self.stride, self.pad)  # (C*FH*FW, OH*OW*N)
        col_W = self.params["W"].reshape(FN, -1).T  # (C*FH*FW, FN)
        out = col.T @ col_W + self.params["b"]  # (OH*OW*N, FN)
        self.x_shape, self.col, self.col_W = x.shape, col, col_W
        # (OH*OW*N, FN) -> (OH, OW, N, FN) -> (N, FN, OH, OW): views, the memory pixel-major.
        return out.reshape(out_h, out_w, N, FN).transpose(2, 3, 0, 1)

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        if self.fast is not None:
            return self.fast.backward(self, dout)
        FN, C, FH, FW = self.params["W"].shape
        dout = dout.transpose(2, 3, 0, 1).reshape(-1, FN)  # (OH*OW*N, FN)
        self.grads["b"][...] = np.sum(dout, axis=0)
        self.grads["W"][...] = (self.col @ dout).T.reshape(FN, C, FH, FW)
        if self.skip_input_grad:  # the first layer: nothing before it needs dx
            return None
        dcol = self.col_W @ dout.T  # (C*FH*FW, OH*OW*N)
        return col2im(dcol, self.x_shape, self.kernel, self.stride, self.pad)

    def __repr__(self) -> str:
        return (
            f"Conv2D(filters={self.filters}, kernel={self.kernel}, stride={self.stride}, "
            f"padding={self.pad})"
        )
