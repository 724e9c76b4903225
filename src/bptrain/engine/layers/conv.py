"""2-D convolution on (N, C, H, W) batches, through im2col/col2im (pooling is in pool.py), or
for 3x3 filters at stride 1 over many channels, Winograd's tiles (winograd.py).

Conv2D returns an (N, F, OH, OW) array whose memory is pixel-major (OH, OW, N, F): that is the
layout its GEMM produces, and reading it as NCHW is a free transpose. Elementwise layers and
BatchNorm after it keep the layout (NumPy allocates results in the input's stride order), and
MaxPool2D reads that layout fast and hands back a gradient in it (see pool.py), so the
gradient reaching Conv2D.backward needs no copy to become the (OH*OW*N, F) GEMM operand. Any
other layout still works, at the price of one copy.

The GEMMs that write or read columns run a block of output rows at a time (im2col_gemm,
conv_gradients), so the columns are consumed while still in cache. Between forward and
backward the layer keeps only its padded input (KH*KW times smaller than the columns), from
which backward gathers each block's columns again.

The Winograd path (float32 with the compiled loops; winograd.usable says when) reads its
input as (H, W, N, C) memory, keeps it as it is for backward, and returns its input gradient
in that memory too; the output is pixel-major either way."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from ...accel import winograd
from ...accel.im2col import Pair, conv_gradients, im2col_gemm, output_size
from ...errors import ConfigError
from ..initializers import INITIALIZERS
from .base import LAYERS, Layer, Shape
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
        n, _, h, w = x.shape
        self.xt = self.images = None
        if winograd.usable(x.dtype, self.params["W"], self.stride):
            # (H, W, N, C) in, (OH, OW, N, F) out: the pixel-major memory of the other path.
            self.images = winograd.channels_last(x)
            out = winograd.forward(self.images, self.params["W"], self.params["b"], self.pad)
            return out.transpose(2, 3, 0, 1)
        # xt: the padded input as (C, H + 2*ph, W + 2*pw, N); out (OH*OW*N, F), from columns
        # (C*KH*KW + 1, OH*OW*N) whose row of ones carries the bias through the GEMM.
        self.xt, out = im2col_gemm(x, self._weights_and_bias(), self.kernel, self.stride, self.pad)
        oh = output_size(h, self.kernel[0], self.stride, self.pad[0])
        ow = output_size(w, self.kernel[1], self.stride, self.pad[1])
        # (OH*OW*N, F) -> (OH, OW, N, F) -> (N, F, OH, OW): views, memory stays pixel-major.
        return out.reshape(oh, ow, n, self.filters).transpose(2, 3, 0, 1)

    def _weights_and_bias(self) -> np.ndarray:
        """(F, C*KH*KW + 1): the filters as rows, the bias as the last column."""
        W2 = self.params["W"].reshape(self.filters, -1)  # (F, C, KH, KW) -> (F, C*KH*KW)
        return np.concatenate([W2, self.params["b"][:, None]], axis=1)

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        if self.images is not None:
            return self._winograd_backward(dout)
        # (N, F, OH, OW) -> (OH*OW*N, F): a view when dout is pixel-major, else one copy.
        dout2 = dout.transpose(2, 3, 0, 1).reshape(-1, self.filters)
        W2 = self.params["W"].reshape(self.filters, -1)
        # The same GEMMs give both gradients: (C*KH*KW + 1, F), dW transposed and, from the
        # row of ones, db (the sum of dout over every output pixel) in its last row; and
        # unless this is the first layer, dx = col2im(W2.T @ dout2.T).
        grads, dx = conv_gradients(
            self.xt, dout2, W2, self.kernel, self.stride, self.pad, not self.skip_input_grad
        )
        self.grads["W"].reshape(self.filters, -1)[...] = grads[:-1].T
        self.grads["b"][...] = grads[-1]
        return dx

    def _winograd_backward(self, dout: np.ndarray) -> np.ndarray | None:
        dy = np.ascontiguousarray(dout.transpose(2, 3, 0, 1))  # (OH, OW, N, F), mostly a view
        self.grads["W"][...], self.grads["b"][...] = winograd.weight_grads(
            self.images, dy, self.pad
        )
        if self.skip_input_grad:
            return None
        h, w = self.images.shape[:2]
        dx = winograd.input_grad(dy, self.params["W"], self.pad, (h, w))
        return dx.transpose(2, 3, 0, 1)  # (N, C, H, W) over (H, W, N, C) memory

    def __repr__(self) -> str:
        return (
            f"Conv2D(filters={self.filters}, kernel={self.kernel}, stride={self.stride}, "
            f"padding={self.pad})"
        )
