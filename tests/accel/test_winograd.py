"""Winograd's 3x3 convolution (winograd.py, compiled/winograd.py): right, used where it
should be, the same bits on any thread count, and laid out as its neighbours read it."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from bptrain.accel import blas, kernels, winograd
from bptrain.engine.layers import im2col
from bptrain.engine.network import Network
from layer_helpers import built

numba = pytest.importorskip("numba", reason="the fast extra (numba) is not installed")
if blas.sgemm() is None:
    pytest.skip("NumPy's BLAS has no sgemm bptrain can call", allow_module_level=True)


@pytest.fixture
def budget(monkeypatch):
    """set(n): the compiled loops' budget for the test, BLAS on one thread; put back after."""
    monkeypatch.setattr(kernels, "_loaded", [])
    assert kernels.compiled() is not None
    previous = (kernels._budget[0], numba.get_num_threads())
    with threadpool_limits(limits=1, user_api="blas"):
        yield kernels.set_threads
    kernels._budget[0] = previous[0]
    numba.set_num_threads(previous[1])


def conv_pass(x, filters, padding=1, first_layer=False, dtype=np.float32, kernel=3, stride=1):
    """A conv2d layer's (layer, out, dx or None, dW, db) on x for a fixed random dout."""
    spec = {"type": "conv2d", "filters": filters, "kernel": kernel, "padding": padding}
    layer = built({**spec, "stride": stride}, x.shape[1:], dtype)
    layer.skip_input_grad = first_layer
    out = layer.forward(x.astype(dtype), train=True)
    dout = np.random.default_rng(8).standard_normal(out.shape).astype(dtype)
    dx = layer.backward(dout)
    copies = (g.copy() for g in layer.grads.values())
    return layer, out.copy(), None if dx is None else dx.copy(), *copies


def reference(x, W, b, dout, pad):
    """(out, dx, dW, db) of the convolution in float64 through the whole-batch im2col."""
    f = W.shape[0]
    cols = im2col.im2col(x, (3, 3), 1, (pad, pad))  # (C*9, OH*OW*N), pixel-major
    W2 = W.reshape(f, -1).astype(np.float64)
    n, _, h, w = x.shape
    oh, ow = h + 2 * pad - 2, w + 2 * pad - 2
    out = (W2 @ cols + b[:, None]).reshape(f, oh, ow, n).transpose(3, 0, 1, 2)
    d2 = dout.astype(np.float64).transpose(1, 2, 3, 0).reshape(f, -1)
    dx = im2col.col2im(W2.T @ d2, x.shape, (3, 3), 1, (pad, pad))
    return out, dx, (d2 @ cols.T).reshape(W.shape), d2.sum(axis=1)


# (N, C, H, W, filters, padding): cnn-deep's second conv (4 chunks of 25 images); odd sizes
# (tiles past the edges); no padding; padding 2 (outputs larger than the inputs); as many
# filters as channels; 61 images in chunks of 31 and 30.
SHAPES = [
    (100, 32, 14, 14, 64, 1),
    (7, 16, 7, 9, 17, 1),
    (5, 20, 6, 5, 16, 0),
    (4, 16, 5, 6, 16, 2),
    (3, 16, 3, 3, 16, 1),
    (61, 64, 8, 8, 64, 1),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_winograd_matches_a_float64_convolution(shape, budget) -> None:
    n, c, h, w, filters, pad = shape
    budget(2)
    x = np.random.default_rng(5).standard_normal((n, c, h, w))
    layer, out, dx, dW, db = conv_pass(x, filters, pad)
    assert layer.images is not None  # it ran Winograd's way
    dout = np.random.default_rng(8).standard_normal(out.shape).astype(np.float32)
    W = layer.params["W"].astype(np.float64)
    expected = reference(x, W, layer.params["b"].astype(np.float64), dout, pad)
    for got, want in zip((out, dx, dW, db), expected, strict=True):
        assert got.dtype == np.float32 and got.shape == want.shape
        scale = np.abs(want).max()
        assert np.abs(got - want).max() <= 2e-6 * scale, np.abs(got - want).max() / scale


def test_winograd_runs_for_3x3_stride_1_float32_convs_of_16_channels_or_more(budget) -> None:
    budget(1)
    rng = np.random.default_rng(1)
    wide = rng.standard_normal((4, 16, 6, 6))
    assert conv_pass(wide, 16)[0].images is not None
    assert conv_pass(wide, 16, padding=0)[0].images is not None
    # im2col for the rest: few channels or filters, other kernels or strides, float64.
    assert conv_pass(rng.standard_normal((4, 1, 6, 6)), 16)[0].images is None
    assert conv_pass(wide, 8)[0].images is None
    assert conv_pass(wide, 16, kernel=5)[0].images is None
    assert conv_pass(wide, 16, stride=2)[0].images is None
    assert conv_pass(wide, 16, dtype=np.float64)[0].images is None


def test_winograd_gives_the_same_bits_on_any_thread_count(budget) -> None:
    x = np.random.default_rng(2).standard_normal((100, 32, 14, 14))
    results = []
    for threads in (1, 2, 3):
        budget(threads)
        results.append(conv_pass(x, 64)[1:])
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert np.array_equal(a, b)


def test_a_first_layer_returns_no_input_gradient(budget) -> None:
    budget(2)
    x = np.random.default_rng(3).standard_normal((6, 16, 5, 5))
    layer, _, dx, dW, _ = conv_pass(x, 16, first_layer=True)
    assert layer.images is not None and dx is None and np.any(dW != 0)


# A conv -> BatchNorm -> ReLU -> pool run (it goes fused) before a Winograd conv.
TWO_BLOCKS = [
    {"type": "conv2d", "filters": 16, "kernel": 3, "padding": "same"},
    {"type": "batch_norm"},
    {"type": "relu"},
    {"type": "max_pool2d", "size": 2},
    {"type": "conv2d", "filters": 16, "kernel": 3, "padding": "same"},
]


def test_the_pooled_output_before_a_winograd_conv_is_its_channels_last_memory(budget) -> None:
    """A fused BatchNorm/pool/ReLU run hands a Winograd conv its own (H, W, N, C) output
    without a copy, and the conv's input gradient comes back in that memory."""
    budget(2)
    specs = [
        *TWO_BLOCKS,
        {"type": "flatten"},
        {"type": "affine", "units": 3},
    ]
    net = Network.from_specs(specs, (2, 8, 8), rng=np.random.default_rng(0), num_classes=3)
    conv = net.layers[4]
    seen = {}
    forward, backward = conv.forward, conv.backward

    def spy_forward(x, train=False):
        seen["x"] = x
        return forward(x, train)

    def spy_backward(dout):
        seen["dx"] = backward(dout)
        return seen["dx"]

    conv.forward, conv.backward = spy_forward, spy_backward
    x = np.random.default_rng(4).standard_normal((5, 2, 8, 8)).astype(np.float32)
    net.gradient(x, np.array([0, 1, 2, 0, 1]))
    assert any(getattr(layer, "fast", None) for layer in net.chain)  # the run went fused
    assert seen["x"].transpose(2, 3, 0, 1).flags.c_contiguous  # (H, W, N, C)
    assert np.shares_memory(seen["x"], conv.images)  # read as it came
    assert seen["dx"].transpose(2, 3, 0, 1).flags.c_contiguous


def test_numpy_kernels_run_im2col_and_agree_with_winograd(monkeypatch) -> None:
    x = np.random.default_rng(6).standard_normal((9, 16, 7, 7))
    monkeypatch.setattr(kernels, "_loaded", [])
    monkeypatch.setenv("BPTRAIN_KERNELS", "numpy")
    plain = conv_pass(x, 16)
    monkeypatch.setenv("BPTRAIN_KERNELS", "numba")
    monkeypatch.setattr(kernels, "_loaded", [])
    fast = conv_pass(x, 16)
    assert plain[0].fast is None and getattr(plain[0], "images", None) is None
    assert fast[0].images is not None
    for a, b in zip(plain[1:], fast[1:], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(a).max())
        assert not np.array_equal(a, b)  # two computations, not one twice


def test_filter_transform_and_its_adjoint_are_adjoint() -> None:
    """<U(g), h> = <g, U'(h)>: the weight gradient's back-transform is the filter
    transform's adjoint (so the weight gradient is the forward's)."""
    rng = np.random.default_rng(7)
    g = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    h = rng.standard_normal((16, 4, 5)).astype(np.float32)
    left = np.vdot(winograd._filter_tiles(g).astype(np.float64), h)
    right = np.vdot(g.astype(np.float64), winograd._filter_grads(h))
    np.testing.assert_allclose(left, right, rtol=1e-5)


def test_a_run_with_winograd_convs_resumes_exactly_from_a_mid_epoch_checkpoint(tmp_path) -> None:
    from bptrain.engine.optimizers import OPTIMIZERS
    from bptrain.engine.train import FitHooks, FitOptions, fit
    from bptrain.run import checkpoint, restore

    rng0 = np.random.default_rng(4)
    x, t = rng0.random((120, 1, 8, 8), dtype=np.float32), rng0.integers(0, 3, 120)
    specs = [
        *TWO_BLOCKS,
        {"type": "relu"},
        {"type": "flatten"},
        {"type": "affine", "units": 3},
    ]

    def fresh():
        rng = np.random.default_rng(8)
        net = Network.from_specs(specs, (1, 8, 8), rng=rng)
        return net, OPTIMIZERS.build({"type": "adam", "lr": 0.01}), rng

    common = FitOptions(epochs=2, batch_size=20, val=(x[:40], t[:40]))
    net, opt, rng = fresh()
    fit(net, opt, (x, t), common, rng=rng)
    assert net.layers[4].images is not None  # the second conv ran Winograd's way
    net_a, opt_a, rng_a = fresh()
    calls = iter(range(10**6))
    stop = FitHooks(stop_requested=lambda: next(calls) == 8)
    state_a = fit(net_a, opt_a, (x, t), common, rng=rng_a, hooks=stop)
    assert state_a.interrupted and state_a.epoch == 1
    info = checkpoint.RunInfo(
        config={"seed": 8, "data": {"dataset": "idx"}}, seed=8, input_shape=(1, 8, 8),
        num_classes=3, class_names=tuple("abc"), dataset="idx",
    )  # fmt: skip
    path = checkpoint.save(tmp_path / "mid.npz", net_a, opt_a, state_a, rng_a, info)
    net_b, opt_b, rng_b = fresh()
    resumed = restore.restore_training(checkpoint.load(path), net_b, opt_b, rng_b)
    fit(net_b, opt_b, (x, t), common, rng=rng_b, state=resumed)
    for name in net.arrays:
        assert np.array_equal(net_b.arrays[name], net.arrays[name]), name
    assert any(not np.array_equal(net.arrays[n], fresh()[0].arrays[n]) for n in net.arrays)
