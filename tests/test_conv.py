"""Conv2D, MaxPool2D, AvgPool2D and im2col/col2im against naive loop references."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bptrain.errors import ConfigError
from bptrain.gradcheck import check_layer, check_network
from bptrain.im2col import col2im, im2col, output_size
from bptrain.layers import LAYERS, AvgPool2D, Conv2D, Layer, MaxPool2D
from bptrain.layers import conv as conv_module
from bptrain.losses import SoftmaxWithLoss
from bptrain.network import Network
from bptrain.optimizers import Adam

RNG_SEED = 0


def built(spec: dict[str, Any], shape: tuple[int, ...], dtype: type = np.float64) -> Layer:
    """A layer from a registry spec, built for `shape` (no batch axis)."""
    layer = LAYERS.build(spec)
    layer.build(shape, np.random.default_rng(RNG_SEED), np.dtype(dtype))
    return layer


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


def naive_pool(x: np.ndarray, size: int, stride: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(out, dx for dout = ones-weighted by position) of max/avg pooling by loops."""
    n, c, h, w = x.shape
    oh, ow = (h - size) // stride + 1, (w - size) // stride + 1
    out = np.zeros((n, c, oh, ow))
    dout = np.arange(1, out.size + 1, dtype=float).reshape(out.shape)
    dx = np.zeros_like(x)
    for s in range(n):
        for k in range(c):
            for i in range(oh):
                for j in range(ow):
                    rows, cols = (
                        slice(i * stride, i * stride + size),
                        slice(j * stride, j * stride + size),
                    )
                    patch = x[s, k, rows, cols]
                    if mode == "max":
                        out[s, k, i, j] = patch.max()
                        a, b = np.unravel_index(np.argmax(patch), patch.shape)  # first maximum
                        dx[s, k, rows, cols][a, b] += dout[s, k, i, j]
                    else:
                        out[s, k, i, j] = patch.mean()
                        dx[s, k, rows, cols] += dout[s, k, i, j] / size**2
    return out, dx


# Memory orders as (N, C, H, W) axes from outermost to innermost: C order, what Conv2D returns,
# and what col2im used to return.
LAYOUTS = {"C": (0, 1, 2, 3), "pixel-major": (2, 3, 0, 1), "channel-major": (1, 0, 2, 3)}


def in_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """x's values as an (N, C, H, W) array whose memory is ordered as LAYOUTS[layout]."""
    axes = LAYOUTS[layout]
    return np.ascontiguousarray(x.transpose(axes)).transpose(np.argsort(axes))


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


# --- pooling -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(
    ("size", "stride", "hw"), [(2, 2, (6, 4)), (3, 2, (7, 6)), (2, 1, (4, 5)), (2, 3, (7, 7))]
)
def test_pooling_matches_naive_loops(mode: str, size: int, stride: int, hw: tuple) -> None:
    x = np.random.default_rng(6).standard_normal((2, 3, *hw))
    pool = built({"type": f"{mode}_pool2d", "size": size, "stride": stride}, x.shape[1:])
    out = pool.forward(x)
    expected_out, expected_dx = naive_pool(x, size, stride, mode)
    np.testing.assert_allclose(out, expected_out, rtol=1e-14)
    dout = np.arange(1, out.size + 1, dtype=float).reshape(out.shape)
    np.testing.assert_allclose(pool.backward(dout), expected_dx, rtol=1e-14)


def test_max_pool_ties_have_one_winner() -> None:
    # After a ReLU whole windows are 0: the gradient must go to one entry, not to all four.
    pool = built({"type": "max_pool2d"}, (1, 4, 4))
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 2:, 2:] = [[1.0, 3.0], [3.0, 3.0]]
    pool.forward(x)
    dx = pool.backward(np.ones((1, 1, 2, 2)))
    assert dx.sum() == 4
    assert dx[0, 0, 0, 0] == dx[0, 0, 2, 3] == 1  # the first maximum in row-major order wins


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("tile_bytes", [1, 1 << 20], ids=["row-tiles", "one-tile"])
@pytest.mark.parametrize("hw", [(6, 6), (7, 5), (5, 8)])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_disjoint_max_pool_matches_naive_loops_with_ties(
    size: int, hw: tuple, tile_bytes: int, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # stride == size takes the fast path (row maxima, then down the rows, in tiles of output
    # rows); values in {-1, 0, 1} tie in most windows, odd sizes leave rows/columns unpooled.
    monkeypatch.setattr(conv_module, "TILE_BYTES", tile_bytes)
    x = np.random.default_rng(9).integers(-1, 2, (3, 2, *hw)).astype(float)
    x = in_layout(x, layout)
    pool = built({"type": "max_pool2d", "size": size}, x.shape[1:])
    out = pool.forward(x)
    expected_out, expected_dx = naive_pool(x, size, size, "max")
    assert out.flags.c_contiguous  # what flatten needs to stay a view
    np.testing.assert_array_equal(out, expected_out)
    dout = np.arange(1, out.size + 1, dtype=float).reshape(out.shape)
    dx = pool.backward(in_layout(dout, layout))
    np.testing.assert_array_equal(dx, expected_dx)
    assert dx.strides == x.strides  # the input's layout, so the conv below gets a view


def test_disjoint_max_pool_agrees_with_the_general_path() -> None:
    # The fast path must reproduce the running maximum over all kernel offsets, ties included.
    rng = np.random.default_rng(10)
    x = in_layout(rng.integers(0, 3, (4, 3, 9, 7)).astype(np.float32), "pixel-major")
    pool = built({"type": "max_pool2d", "size": 3}, x.shape[1:], np.float32)
    out, dx = pool.forward(x), pool.backward(np.ones((4, 3, 3, 2), np.float32))
    general_out = pool._forward_overlapping(x)
    general_dx = pool._backward_overlapping(np.ones((4, 3, 3, 2), np.float32))
    np.testing.assert_array_equal(out, general_out)
    np.testing.assert_array_equal(dx, general_dx)


def test_max_pool_windows_with_more_than_256_offsets() -> None:
    # 17x17 windows have 289 kernel offsets: the winner's index needs two bytes.
    x = np.random.default_rng(11).standard_normal((2, 1, 18, 19))
    pool = built({"type": "max_pool2d", "size": 17, "stride": 1}, x.shape[1:])
    out = pool.forward(x)
    expected_out, expected_dx = naive_pool(x, 17, 1, "max")
    np.testing.assert_array_equal(out, expected_out)
    dout = np.arange(1, out.size + 1, dtype=float).reshape(out.shape)
    np.testing.assert_array_equal(pool.backward(dout), expected_dx)


@pytest.mark.parametrize(("size", "stride"), [(2, 2), (3, 2)])
def test_max_pool_kink_state_changes_exactly_when_a_window_changes_winner(
    size: int, stride: int
) -> None:
    # Gradient checks use it to spot nudges across a kink (a near-tie between window entries).
    x = np.random.default_rng(12).standard_normal((2, 2, 7, 7))
    x[0, 1, 0, 0], x[0, 1, 0, 1] = 5.0, 5.0 - 1e-9  # a near tie that wins its window
    pool = built({"type": "max_pool2d", "size": size, "stride": stride}, x.shape[1:])

    def state(values: np.ndarray) -> list[np.ndarray]:
        pool.forward(values)
        return [a.copy() for a in pool.kink_state()]

    before = state(x)
    small, flip = x.copy(), x.copy()
    small[0, 1, 0, 1] -= 1e-6  # the winner stays
    flip[0, 1, 0, 1] += 2e-9  # the other entry now wins
    assert all(np.array_equal(a, b) for a, b in zip(state(small), before, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(state(flip), before, strict=True))


def test_pooling_stride_defaults_to_size() -> None:
    pool = LAYERS.build({"type": "max_pool2d", "size": 3})
    assert pool.stride == 3
    assert pool.build((2, 9, 10), np.random.default_rng(), np.float32) == (2, 3, 3)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_pooling_build_errors(name: str) -> None:
    with pytest.raises(ConfigError, match="bigger than"):
        built({"type": name, "size": 3}, (1, 2, 5))
    with pytest.raises(ConfigError, match="height, width"):
        built({"type": name}, (12,))
    with pytest.raises(ConfigError) as info:
        LAYERS.build({"type": name, "stride": 0})
    assert info.value.path == "stride"


# --- every conv/pool layer: gradients, dtypes, purity --------------------------------------

SPECS = [
    (Conv2D.example["spec"], Conv2D.example["input_shape"]),
    (MaxPool2D.example["spec"], MaxPool2D.example["input_shape"]),
    (AvgPool2D.example["spec"], AvgPool2D.example["input_shape"]),
    ({"type": "conv2d", "filters": 2, "kernel": 3, "padding": "same"}, (3, 4, 4)),
    ({"type": "conv2d", "filters": 3, "kernel": [1, 2], "stride": 3}, (1, 5, 7)),
    ({"type": "max_pool2d", "size": 2}, (2, 4, 5)),
    ({"type": "avg_pool2d", "size": 3, "stride": 2}, (1, 7, 5)),
]


@pytest.mark.parametrize(("spec", "shape"), SPECS)
def test_gradients_match_numerical(spec: dict, shape: tuple) -> None:
    report = check_layer(spec, shape, batch=3)
    assert report.ok, report.to_record()
    assert all(p.checked > 0 for p in report.parameters)


@pytest.mark.parametrize(("spec", "shape"), SPECS)
def test_float32_in_float32_out_and_dout_untouched(spec: dict, shape: tuple) -> None:
    rng = np.random.default_rng(7)
    layer = built(spec, shape, np.float32)
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    out = layer.forward(x, train=True)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    kept = dout.copy()
    dx = layer.backward(dout)
    assert out.dtype == dx.dtype == np.float32
    assert all(a.dtype == np.float32 for a in [*layer.params.values(), *layer.grads.values()])
    np.testing.assert_array_equal(dout, kept)
    assert dx.shape == x.shape


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
