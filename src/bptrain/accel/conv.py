"""Conv2D the fast way, with the compiled loops: in blocks of output rows (conv_blocks.py), or
for 3x3 filters at stride 1 over many channels, Winograd's tiles (winograd.py).

The output is an (N, F, OH, OW) array whose memory is pixel-major (OH, OW, N, F), as the
book's way (engine/layers/conv.py) returns it: the layout the GEMM produces, and reading it
as NCHW is a free transpose. Elementwise layers and BatchNorm after it keep the layout, and
MaxPool2D reads it fast and hands back a gradient in it, so the gradient reaching backward
needs no copy to become the (OH*OW*N, F) GEMM operand. Any other layout works, at the price
of one copy.

The blocked GEMMs consume each block's columns while still in cache (im2col_gemm,
conv_gradients). Between forward and backward the layer keeps only its padded input
(`layer.xt`, KH*KW times smaller than the columns), from which backward gathers each block's
columns again. The Winograd path (float32 with NumPy's sgemm, winograd.usable) reads its
input as (H, W, N, C) memory, keeps it as it is for backward (`layer.images`), and returns
its input gradient in that memory too; the output is pixel-major either way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..functional import output_size
from . import kernels, winograd
from .conv_blocks import conv_gradients, im2col_gemm


def applies(layer: Any, x: np.ndarray, train: bool) -> bool:
    """With the compiled loops, every convolution runs here (any dtype, any layout)."""
    return kernels.compiled() is not None


def forward(layer: Any, x: np.ndarray) -> np.ndarray:
    n, _, h, w = x.shape
    W, b = layer.params["W"], layer.params["b"]
    layer.xt = layer.images = None
    if winograd.usable(x.dtype, W, layer.stride):
        # (H, W, N, C) in, (OH, OW, N, F) out: the pixel-major memory of the other path.
        layer.images = winograd.channels_last(x)
        return winograd.forward(layer.images, W, b, layer.pad).transpose(2, 3, 0, 1)
    # xt: the padded input as (C, H + 2*ph, W + 2*pw, N); out (OH*OW*N, F), from columns
    # (C*KH*KW + 1, OH*OW*N) whose row of ones carries the bias through the GEMM.
    weights = np.concatenate([W.reshape(W.shape[0], -1), b[:, None]], axis=1)  # (F, K + 1)
    layer.xt, out = im2col_gemm(x, weights, layer.kernel, layer.stride, layer.pad)
    oh = output_size(h, layer.kernel[0], layer.stride, layer.pad[0])
    ow = output_size(w, layer.kernel[1], layer.stride, layer.pad[1])
    # (OH*OW*N, F) -> (OH, OW, N, F) -> (N, F, OH, OW): views, memory stays pixel-major.
    return out.reshape(oh, ow, n, W.shape[0]).transpose(2, 3, 0, 1)


def backward(layer: Any, dout: np.ndarray) -> np.ndarray | None:
    if layer.images is not None:
        return _winograd_backward(layer, dout)
    filters = layer.params["W"].shape[0]
    # (N, F, OH, OW) -> (OH*OW*N, F): a view when dout is pixel-major, else one copy.
    dout2 = dout.transpose(2, 3, 0, 1).reshape(-1, filters)
    W2 = layer.params["W"].reshape(filters, -1)
    # The same GEMMs give both gradients: (C*KH*KW + 1, F), dW transposed and, from the
    # row of ones, db (the sum of dout over every output pixel) in its last row; and
    # unless this is the first layer, dx = col2im(W2.T @ dout2.T).
    grads, dx = conv_gradients(
        layer.xt, dout2, W2, layer.kernel, layer.stride, layer.pad, not layer.skip_input_grad
    )
    layer.grads["W"].reshape(filters, -1)[...] = grads[:-1].T
    layer.grads["b"][...] = grads[-1]
    return dx


def _winograd_backward(layer: Any, dout: np.ndarray) -> np.ndarray | None:
    dy = np.ascontiguousarray(dout.transpose(2, 3, 0, 1))  # (OH, OW, N, F), mostly a view
    layer.grads["W"][...], layer.grads["b"][...] = winograd.weight_grads(
        layer.images, dy, layer.pad
    )
    if layer.skip_input_grad:
        return None
    h, w = layer.images.shape[:2]
    dx = winograd.input_grad(dy, layer.params["W"], layer.pad, (h, w))
    return dx.transpose(2, 3, 0, 1)  # (N, C, H, W) over (H, W, N, C) memory
