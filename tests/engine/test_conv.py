"""Conv2D and im2col/col2im against naive loop references (pooling is in test_pool.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bptrain.accel import kernels
from bptrain.engine.gradcheck import check_network
from bptrain.engine.layers import LAYERS
from bptrain.engine.layers.im2col import col2im, im2col
from bptrain.engine.losses import SoftmaxWithLoss
from bptrain.engine.network import Network
from bptrain.engine.optimizers import Adam
from bptrain.errors import ConfigError
from bptrain.functional import output_size
from layer_helpers import built, in_layout


@pytest.fixture(autouse=True, params=["as installed", "numpy"])
def kernels_way(request, monkeypatch):
    """Every test twice: as the machine runs it (accel/conv.py with the compiled loops), and
    the book's way, engine/layers/conv.py's own NumPy body (BPTRAIN_KERNELS=numpy)."""
    if request.param == "numpy":
        monkeypatch.setattr(kernels, "_loaded", [None])
    return request.param


def naive_conv(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Convolution by explicit loops over samples, filters and output pixels."""
    n, _, h, w = x.shape
    f, _, kh, kw = W.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    out = np.zeros((n, f, oh, ow))
    for s in range(n):
        for k in range(f):
            for i in range(oh):
                for j in range(ow):
                    patch = xp[s, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
                    out[s, k, i, j] = np.sum(patch * W[k]) + b[k]
    return out


def naive_conv_backward(
    x: np.ndarray, W: np.ndarray, dout: np.ndarray, stride: int, pad: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dW, db) by scattering every output pixel's gradient over its patch."""
    kh, kw = W.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dW = np.zeros_like(xp), np.zeros_like(W)
    n, f, oh, ow = dout.shape
    for s in range(n):
        for k in range(f):
            for i in range(oh):
                for j in range(ow):
                    rows, cols = (
                        slice(i * stride, i * stride + kh),
                        slice(j * stride, j * stride + kw),
                    )
                    dW[k] += dout[s, k, i, j] * xp[s, :, rows, cols]
                    dxp[s, :, rows, cols] += dout[s, k, i, j] * W[k]
    dx = dxp[:, :, pad : pad + x.shape[2], pad : pad + x.shape[3]]
    return dx, dW, dout.sum(axis=(0, 2, 3))


# --- im2col / col2im ---------------------------------------------------------------------


@pytest.mark.parametrize(("kernel", "stride", "pad"), [((3, 3), 1, (0, 0)), ((3, 2), 2, (1, 2))])
def test_im2col_columns_are_the_patches(kernel: tuple[int, int], stride: int, pad: tuple) -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 6))
    cols = im2col(x, kernel, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh, ow = output_size(7, kernel[0], stride, pad[0]), output_size(6, kernel[1], stride, pad[1])
    assert cols.shape == (3 * kernel[0] * kernel[1], 2 * oh * ow)
    assert cols.flags.c_contiguous
    # Pixel-major: output row, output column, then sample.
    for column, (i, j, s) in enumerate(np.ndindex(oh, ow, 2)):
        patch = xp[s, :, i * stride : i * stride + kernel[0], j * stride : j * stride + kernel[1]]
        np.testing.assert_array_equal(cols[:, column], patch.ravel())


def test_col2im_is_the_adjoint_of_im2col() -> None:
    # <im2col(x), c> == <x, col2im(c)> for all x, c: col2im sums overlapping windows exactly.
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 7, 8))
    kernel, stride, pad = (3, 2), 2, (1, 0)
    cols = rng.standard_normal(im2col(x, kernel, stride, pad).shape)
    back = col2im(cols, x.shape, kernel, stride, pad)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(im2col(x, kernel, stride, pad), cols), np.vdot(x, back))


def test_im2col_ones_row_appends_ones_to_the_same_columns() -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 5))
    plain = im2col(x, (3, 2), 2, (1, 0))
    extended = im2col(x, (3, 2), 2, (1, 0), ones_row=True)
    np.testing.assert_array_equal(extended[:-1], plain)
    np.testing.assert_array_equal(extended[-1], np.ones(plain.shape[1]))


def test_im2col_keeps_float32() -> None:
    x = np.ones((2, 1, 5, 5), dtype=np.float32)
    cols = im2col(x, (3, 3), 1, (1, 1))
    assert cols.dtype == np.float32
    assert col2im(cols, x.shape, (3, 3), 1, (1, 1)).dtype == np.float32


# --- Conv2D ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [(3, 1, 0), (3, 1, 1), ([3, 2], 2, 1), (2, 3, 0)]
)
def test_conv2d_matches_naive_loops(kernel: Any, stride: int, padding: int) -> None:
    rng = np.random.default_rng(3)
    spec = {"type": "conv2d", "filters": 4, "kernel": kernel, "stride": stride, "padding": padding}
    conv = built(spec, (3, 7, 6))
    conv.params["b"][...] = rng.standard_normal(4)
    x = rng.standard_normal((2, 3, 7, 6))
    out = conv.forward(x)
    expected = naive_conv(x, conv.params["W"], conv.params["b"], stride, padding)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx = conv.backward(dout)
    ndx, ndW, ndb = naive_conv_backward(x, conv.params["W"], dout, stride, padding)
    np.testing.assert_allclose(dx, ndx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.grads["W"], ndW, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.grads["b"], ndb, rtol=1e-12, atol=1e-12)


def test_conv2d_shape_inference_floors() -> None:
    conv = built({"type": "conv2d", "filters": 5, "kernel": 3, "stride": 2}, (2, 8, 9))
    assert conv.params["W"].shape == (5, 2, 3, 3)
    assert conv.params["b"].shape == (5,)
    # (8 - 3) // 2 + 1 = 3 rows; (9 - 3) // 2 + 1 = 4 columns; row 7 is never reached.
    out = conv.forward(np.ones((1, 2, 8, 9)))
    assert out.shape == (1, 5, 3, 4)
    assert conv.backward(np.ones_like(out))[:, :, 7, :].sum() == 0


def test_conv2d_same_padding_keeps_size() -> None:
    conv = built({"type": "conv2d", "filters": 2, "kernel": [5, 3], "padding": "same"}, (1, 6, 4))
    assert conv.forward(np.ones((2, 1, 6, 4))).shape == (2, 2, 6, 4)


@pytest.mark.parametrize(
    ("spec", "shape", "words"),
    [
        ({"filters": 2, "kernel": 5}, (1, 4, 8), "bigger than"),
        ({"filters": 2, "kernel": 5, "padding": 1}, (1, 2, 8), "bigger than"),
        ({"filters": 2}, (784,), "(channels, height, width)"),
        ({"filters": 2}, (4, 4), "(channels, height, width)"),
    ],
)
def test_conv2d_build_errors_name_the_problem(spec: dict, shape: tuple, words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        built({"type": "conv2d", **spec}, shape)


def test_conv2d_bigger_padding_makes_the_kernel_fit() -> None:
    conv = built({"type": "conv2d", "filters": 2, "kernel": 5, "padding": 1}, (1, 3, 8))
    assert conv.forward(np.ones((1, 1, 3, 8))).shape == (1, 2, 1, 6)


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"filters": 0}, "filters"),
        ({"filters": 2, "kernel": 0}, "kernel"),
        ({"filters": 2, "kernel": [3, 3, 3]}, "kernel"),
        ({"filters": 2, "stride": 0}, "stride"),
        ({"filters": 2, "padding": -1}, "padding"),
        ({"filters": 2, "padding": "same", "stride": 2}, "padding"),
        ({"filters": 2, "padding": "same", "kernel": 4}, "padding"),
    ],
)
def test_conv2d_rejects_bad_arguments(spec: dict, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        LAYERS.build({"type": "conv2d", **spec}, path="model.layers[0]")
    assert info.value.path == f"model.layers[0].{path}"


def test_conv2d_registry_checks_argument_types() -> None:
    errors = LAYERS.check({"type": "conv2d", "filters": 2.5, "kernel": "3"})
    assert {e.path for e in errors} == {"filters", "kernel"}


def test_conv2d_first_layer_skips_input_gradient_but_fills_grads() -> None:
    rng = np.random.default_rng(4)
    conv = built({"type": "conv2d", "filters": 3, "kernel": 3}, (2, 5, 5))
    x, dout = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((2, 3, 3, 3))
    conv.forward(x)
    conv.backward(dout)
    expected_dW = conv.grads["W"].copy()
    conv.grads["W"][...] = 0
    conv.skip_input_grad = True
    conv.forward(x)
    assert conv.backward(dout) is None
    np.testing.assert_array_equal(conv.grads["W"], expected_dW)


def test_conv2d_backward_accepts_any_dout_layout() -> None:
    # The fast path takes pixel-major dout as a view; C-contiguous and channel-major dout
    # (what other layers may hand back) must give the same gradients.
    rng = np.random.default_rng(5)
    conv = built({"type": "conv2d", "filters": 3, "kernel": 3, "padding": 1}, (2, 4, 4))
    x = rng.standard_normal((3, 2, 4, 4))
    dout = rng.standard_normal((3, 3, 4, 4))
    conv.forward(x)
    dx_c = conv.backward(np.ascontiguousarray(dout)).copy()
    dW_c, db_c = conv.grads["W"].copy(), conv.grads["b"].copy()
    for layout in ["pixel-major", "channel-major"]:
        np.testing.assert_allclose(conv.backward(in_layout(dout, layout)), dx_c, rtol=1e-13)
        np.testing.assert_allclose(conv.grads["W"], dW_c, rtol=1e-13)
        np.testing.assert_allclose(conv.grads["b"], db_c, rtol=1e-13)


def test_conv2d_output_is_pixel_major_and_its_gradient_stays_so() -> None:
    # (N, F, OH, OW) over (OH, OW, N, F) memory: what MaxPool2D reads fast, and the layout
    # Conv2D.backward takes without a copy; col2im's dx comes back as (C, H, W, N) memory.
    conv = built({"type": "conv2d", "filters": 3, "kernel": 3}, (2, 6, 5))
    out = conv.forward(np.ones((4, 2, 6, 5), dtype=np.float32))
    assert out.shape == (4, 3, 4, 3)
    assert out.transpose(2, 3, 0, 1).flags.c_contiguous
    dx = conv.backward(np.ones_like(out))
    assert dx.transpose(1, 2, 3, 0).flags.c_contiguous


def test_conv2d_grads_are_written_in_place() -> None:
    conv = built({"type": "conv2d", "filters": 2, "kernel": 2}, (1, 3, 3))
    arrays = {k: id(v) for k, v in {**conv.params, **conv.grads}.items()}
    out = conv.forward(np.ones((2, 1, 3, 3)))
    conv.backward(np.ones_like(out))
    assert {k: id(v) for k, v in {**conv.params, **conv.grads}.items()} == arrays
    assert conv.grads["b"].tolist() == [8.0, 8.0]  # 2 samples x 2x2 outputs per filter


def test_simple_convnet_gradients_and_training() -> None:
    # The book's SimpleConvNet in miniature: gradients check end to end, and Adam learns.
    specs = [
        {"type": "conv2d", "filters": 3, "kernel": 3},
        {"type": "relu"},
        {"type": "max_pool2d"},
        {"type": "flatten"},
        {"type": "affine", "units": 4},
    ]
    rng = np.random.default_rng(8)
    x, t = rng.standard_normal((6, 1, 6, 6)), rng.integers(0, 4, 6)
    net64 = Network.from_specs(specs, (1, 6, 6), rng=np.random.default_rng(0), dtype=np.float64)
    assert check_network(net64, x, t).ok
    net = Network.from_specs(specs, (1, 6, 6), rng=np.random.default_rng(0))
    assert isinstance(net.loss_layer, SoftmaxWithLoss)
    opt, first = Adam(lr=0.05), net.loss(x, t)
    for _ in range(30):
        net.gradient(x, t)
        opt.update(net.params, net.grads)
    assert net.loss(x, t) < first / 2


# --- the blocked fast path against the book's im2col ---------------------------------------


def book_im2col(x: np.ndarray, kh: int, kw: int, stride: int, pad: tuple) -> np.ndarray:
    """The book's im2col: (N*OH*OW, C*KH*KW), sample-major rows, one loop per kernel offset."""
    n, c, h, w = x.shape
    oh, ow = output_size(h, kh, stride, pad[0]), output_size(w, kw, stride, pad[1])
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    col = np.zeros((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[:, :, i, j] = xp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, -1)


def book_conv(x: np.ndarray, W: np.ndarray, b: np.ndarray, dout: np.ndarray, stride, pad):
    """(out, dx, dW, db) through book_im2col and a col2im by kernel offsets."""
    n, c, h, w = x.shape
    f, _, kh, kw = W.shape
    oh, ow = output_size(h, kh, stride, pad[0]), output_size(w, kw, stride, pad[1])
    col = book_im2col(x, kh, kw, stride, pad)
    out = (col @ W.reshape(f, -1).T + b).reshape(n, oh, ow, f).transpose(0, 3, 1, 2)
    d2 = dout.transpose(0, 2, 3, 1).reshape(-1, f)
    dW, db = (col.T @ d2).T.reshape(W.shape), d2.sum(axis=0)
    dcol = (d2 @ W.reshape(f, -1)).reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    dxp = np.zeros((n, c, h + 2 * pad[0], w + 2 * pad[1]), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, cols = slice(i, i + stride * oh, stride), slice(j, j + stride * ow, stride)
            dxp[:, :, rows, cols] += dcol[:, :, i, j]
    return out, dxp[:, :, pad[0] : pad[0] + h, pad[1] : pad[1] + w], dW, db


CASES = [  # (channels, kernel, stride, padding, (H, W))
    (1, 3, 1, "same", (7, 6)),
    (3, [3, 5], 1, "same", (6, 9)),
    (3, [2, 3], 2, 1, (7, 8)),
    (1, 5, 1, 0, (9, 9)),
    (3, 3, 2, 0, (8, 7)),
    (3, [3, 1], 1, 1, (5, 4)),
]


@pytest.mark.parametrize("block_bytes", [1, 1 << 30], ids=["row-blocks", "one-block"])
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize(("channels", "kernel", "stride", "padding", "hw"), CASES)
def test_blocked_conv_matches_the_book_im2col(
    monkeypatch, block_bytes, batch, channels, kernel, stride, padding, hw
) -> None:
    # BLOCK_BYTES = 1 runs every output row as a block of its own; 2**30, all rows in one.
    monkeypatch.setattr("bptrain.accel.conv_blocks.BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(9)
    spec = {"type": "conv2d", "filters": 4, "kernel": kernel, "stride": stride}
    for dtype, tol in [(np.float64, 1e-10), (np.float32, 2e-5)]:
        conv = built({**spec, "padding": padding}, (channels, *hw), dtype)
        conv.params["b"][...] = rng.standard_normal(4)
        x = rng.standard_normal((batch, channels, *hw)).astype(dtype)
        out = conv.forward(x)
        dout = rng.standard_normal(out.shape).astype(dtype)
        dx = conv.backward(dout)
        expected = book_conv(x, conv.params["W"], conv.params["b"], dout, stride, conv.pad)
        got = (out, dx, conv.grads["W"], conv.grads["b"])
        for name, a, e in zip(("out", "dx", "dW", "db"), got, expected, strict=True):
            assert a.dtype == dtype, name
            scale = max(1.0, float(np.abs(e).max()))
            np.testing.assert_allclose(a, e, rtol=0, atol=tol * scale, err_msg=name)


def test_blocked_conv_is_bit_for_bit_repeatable() -> None:
    # Resuming a run reproduces it exactly only if the same inputs give the same bits.
    rng = np.random.default_rng(10)
    conv = built({"type": "conv2d", "filters": 8, "kernel": 3, "padding": "same"}, (3, 12, 10))
    x = rng.standard_normal((5, 3, 12, 10)).astype(np.float32)
    dout = rng.standard_normal((5, 8, 12, 10)).astype(np.float32)
    runs = []
    for _ in range(2):
        out = conv.forward(x).copy()
        dx = conv.backward(dout).copy()
        runs.append((out, dx, conv.grads["W"].copy(), conv.grads["b"].copy()))
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
