"""BatchNorm and Dropout: closed forms, running statistics, masks from the network's generator."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bptrain.accel import kernels
from bptrain.accel.batch_norm import channel_dot, channel_sum
from bptrain.engine.gradcheck import check_layer, check_network
from bptrain.engine.layers import LAYERS, BatchNorm, Dropout, Flatten, Layer
from bptrain.engine.losses import SoftmaxWithLoss
from bptrain.engine.network import Network
from bptrain.errors import ConfigError


def built(
    spec: dict[str, Any], shape: tuple[int, ...], dtype: type = np.float64, seed: int = 0
) -> Layer:
    """A layer from a registry spec, built for `shape` (no batch axis)."""
    layer = LAYERS.build(spec)
    layer.build(shape, np.random.default_rng(seed), np.dtype(dtype))
    return layer


def batch_norm_reference(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> tuple:
    """(y, mean, biased var) with statistics per column of x moved to (rows, C)."""
    rows = x if x.ndim == 2 else x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])
    mean, var = rows.mean(axis=0), rows.var(axis=0)
    shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return y * gamma.reshape(shape) + beta.reshape(shape), mean, var


# --- BatchNorm ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5,), (3, 4, 2)])
def test_batch_norm_training_forward_and_running_stats(shape: tuple) -> None:
    rng = np.random.default_rng(1)
    bn = built({"type": "batch_norm", "momentum": 0.8, "eps": 1e-3}, shape)
    bn.params["gamma"][...] = rng.standard_normal(shape[0])
    bn.params["beta"][...] = rng.standard_normal(shape[0])
    x = rng.standard_normal((6, *shape)) * 3 + 2
    y, mean, var = batch_norm_reference(x, bn.params["gamma"], bn.params["beta"], 1e-3)
    np.testing.assert_allclose(bn.forward(x, train=True), y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.2 * mean, rtol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_var"], 0.8 + 0.2 * var, rtol=1e-12)


def test_batch_norm_eval_uses_running_stats_only() -> None:
    rng = np.random.default_rng(2)
    bn = built({"type": "batch_norm"}, (2, 3, 3))
    bn.buffers["running_mean"][...] = [1.0, -2.0]
    bn.buffers["running_var"][...] = [4.0, 0.25]
    bn.params["gamma"][...] = [2.0, 3.0]
    bn.params["beta"][...] = [0.5, -0.5]
    x = rng.standard_normal((4, 2, 3, 3))
    mean = np.array([1.0, -2.0])[:, None, None]
    std = np.sqrt(np.array([4.0, 0.25]) + 1e-5)[:, None, None]
    expected = (x - mean) / std * np.array([2.0, 3.0])[:, None, None] + np.array([0.5, -0.5])[
        :, None, None
    ]
    np.testing.assert_allclose(bn.forward(x, train=False), expected, rtol=1e-12)
    # One sample alone gives the same answer: nothing depends on the batch.
    np.testing.assert_allclose(bn.forward(x[1:2], train=False), expected[1:2], rtol=1e-12)
    assert bn.buffers["running_mean"].tolist() == [1.0, -2.0]  # inference leaves them alone


def test_batch_norm_eval_backward_is_the_affine_map() -> None:
    rng = np.random.default_rng(3)
    bn = built({"type": "batch_norm"}, (3,))
    bn.buffers["running_var"][...] = [1.0, 4.0, 9.0]
    bn.params["gamma"][...] = [1.0, 2.0, 3.0]
    x, dout = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    xhat = bn.forward(x, train=False)
    dx = bn.backward(dout)
    np.testing.assert_allclose(
        dx, dout * np.array([1, 2, 3]) / np.sqrt([1 + 1e-5, 4 + 1e-5, 9 + 1e-5])
    )
    np.testing.assert_allclose(bn.grads["beta"], dout.sum(axis=0))
    np.testing.assert_allclose(bn.grads["gamma"], (dout * xhat / [1, 2, 3]).sum(axis=0))


@pytest.mark.parametrize("shape", [(5,), (3, 2, 2)])
def test_batch_norm_gradients_with_nontrivial_gamma_beta(shape: tuple) -> None:
    # The example starts at gamma = 1, beta = 0, which would hide a missing gamma in dx.
    rng = np.random.default_rng(4)
    net = Network([BatchNorm(), Flatten()], SoftmaxWithLoss(), shape, dtype=np.float64)
    net.params["0.gamma"][...] = rng.uniform(0.5, 2.0, shape[0])
    net.params["0.beta"][...] = rng.standard_normal(shape[0])
    x = rng.standard_normal((4, *shape)) * 2 + 1
    report = check_network(net, x, rng.integers(0, int(np.prod(shape)), 4))
    assert report.ok, report.to_record()


@pytest.mark.parametrize("batch", [4, 7])
def test_batch_norm_example_gradient_check(batch: int) -> None:
    report = check_layer(BatchNorm.example["spec"], BatchNorm.example["input_shape"], batch=batch)
    assert report.ok, report.to_record()
    report = check_layer({"type": "batch_norm"}, (6,), batch=batch)
    assert report.ok, report.to_record()


@pytest.mark.parametrize("shape", [(5,), (3, 4, 2)])
def test_batch_norm_float32_and_dout_untouched(shape: tuple) -> None:
    rng = np.random.default_rng(5)
    bn = built({"type": "batch_norm"}, shape, np.float32)
    x = rng.standard_normal((8, *shape)).astype(np.float32)
    dout = rng.standard_normal((8, *shape)).astype(np.float32)
    kept = dout.copy()
    out = bn.forward(x, train=True)
    dx = bn.backward(dout)
    np.testing.assert_array_equal(dout, kept)
    arrays = [out, dx, *bn.params.values(), *bn.grads.values(), *bn.buffers.values()]
    assert all(a.dtype == np.float32 for a in arrays)
    assert bn.forward(x, train=False).dtype == np.float32


def test_batch_norm_errors() -> None:
    with pytest.raises(ConfigError, match=r"\(features,\) or \(channels, height, width\)"):
        built({"type": "batch_norm"}, (3, 4))
    for key, value in [("momentum", 1.0), ("momentum", -0.1), ("eps", 0.0)]:
        with pytest.raises(ConfigError) as info:
            LAYERS.build({"type": "batch_norm", key: value})
        assert info.value.path == key


def test_batch_norm_running_stats_are_network_buffers() -> None:
    net = Network.from_specs([{"type": "batch_norm"}], (3,), loss="identity_with_mse")
    assert set(net.buffers) == {"0.running_mean", "0.running_var"}
    assert set(net.params) == {"0.gamma", "0.beta"}
    before = net.buffers["0.running_mean"]
    net.loss(np.full((4, 3), 5.0), np.zeros((4, 3)), train=True)
    assert net.buffers["0.running_mean"] is before  # updated in place: checkpoints see it
    np.testing.assert_allclose(before, 0.5, rtol=1e-6)


# Memory orders of an (N, C, H, W) array, outermost axis first: C order; channels innermost
# (a pixel-major conv output; NHWC); channels outermost; channels in the middle (no 2-D view).
LAYOUTS = {
    "C": (0, 1, 2, 3),
    "pixel-major": (2, 3, 0, 1),
    "NHWC": (0, 2, 3, 1),
    "channel-major": (1, 0, 2, 3),
    "channels-middle": (2, 1, 0, 3),
}


def in_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """x's values as an (N, C, H, W) array whose memory is ordered as LAYOUTS[layout]."""
    axes = LAYOUTS[layout]
    return np.ascontiguousarray(x.transpose(axes)).transpose(np.argsort(axes))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_channel_sums_agree_in_every_layout(layout: str) -> None:
    rng = np.random.default_rng(20)
    a, b = rng.standard_normal((2, 3, 4, 5, 2))
    expected_sum, expected_dot = a.sum(axis=(0, 2, 3)), (a * b).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(channel_sum(in_layout(a, layout)), expected_sum, rtol=1e-12)
    dot = channel_dot(in_layout(a, layout), in_layout(b, layout))
    np.testing.assert_allclose(dot, expected_dot, rtol=1e-12)
    # Operands in different layouts take the general path, with the same result.
    np.testing.assert_allclose(channel_dot(in_layout(a, layout), b), expected_dot, rtol=1e-12)


def test_channel_sums_of_feature_batches() -> None:
    a, b = np.random.default_rng(21).standard_normal((2, 6, 3))
    np.testing.assert_allclose(channel_sum(a), a.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(channel_dot(a, b), (a * b).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(channel_dot(a, np.asfortranarray(b)), (a * b).sum(axis=0))
    assert channel_sum(a.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("layout", LAYOUTS)
def test_batch_norm_gives_the_same_results_in_every_layout(layout: str) -> None:
    rng = np.random.default_rng(22)
    x, dout = rng.standard_normal((2, 4, 3, 5, 2))
    results = []
    for xs, ds in [(x, dout), (in_layout(x, layout), in_layout(dout, layout))]:
        bn = built({"type": "batch_norm"}, (3, 5, 2))
        bn.params["gamma"][...] = [0.5, 2.0, -1.0]
        out = bn.forward(xs, train=True)
        dx = bn.backward(ds)
        results.append((out, dx, bn.grads["gamma"].copy(), bn.grads["beta"].copy()))
    for got, expected in zip(results[1], results[0], strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def batch_norm_backward_reference(x, dout, gamma, eps):
    """(dx, dgamma, dbeta) of training-mode batch norm, the textbook formulas on (rows, C)."""
    to_rows = (
        (lambda a: a)
        if x.ndim == 2
        else (lambda a: a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1]))
    )
    xr, dr = to_rows(x), to_rows(dout)
    m = xr.shape[0]
    std = np.sqrt(xr.var(axis=0) + eps)
    xhat = (xr - xr.mean(axis=0)) / std
    dbeta, dgamma = dr.sum(axis=0), (dr * xhat).sum(axis=0)
    dx = gamma / std * (dr - (dbeta + xhat * dgamma) / m)
    if x.ndim == 4:
        n, c, h, w = x.shape
        dx = dx.reshape(n, h, w, c).transpose(0, 3, 1, 2)
    return dx, dgamma, dbeta


IMAGE_SHAPES = [(7, 3, 5, 4), (1, 3, 3, 5), (7, 1, 4, 3)]


@pytest.mark.parametrize("kernels_way", ["as installed", "numpy"])
@pytest.mark.parametrize(
    ("shape", "layout"),
    [(shape, layout) for shape in IMAGE_SHAPES for layout in LAYOUTS] + [((13, 5), "C")],
)
def test_batch_norm_matches_the_reference(monkeypatch, kernels_way, shape, layout) -> None:
    # accel/batch_norm.py (with the compiled loops), and the book's body (BPTRAIN_KERNELS=numpy).
    if kernels_way == "numpy":
        monkeypatch.setattr(kernels, "_loaded", [None])
    rng = np.random.default_rng(23)
    x0, d0 = rng.standard_normal((2, *shape)) * 3 + 1
    arrange = (lambda a: a) if len(shape) == 2 else (lambda a: in_layout(a, layout))
    for dtype, tol in [(np.float64, 1e-10), (np.float32, 1e-5)]:
        bn = built({"type": "batch_norm", "eps": 1e-3}, shape[1:], dtype)
        gamma = rng.uniform(-2, 2, shape[1])
        beta = rng.standard_normal(shape[1])
        bn.params["gamma"][...], bn.params["beta"][...] = gamma, beta
        x, dout = arrange(x0.astype(dtype)), arrange(d0.astype(dtype))
        out = bn.forward(x, train=True)
        dx = bn.backward(dout)
        y, _, _ = batch_norm_reference(x0, gamma, beta, 1e-3)
        rdx, rdgamma, rdbeta = batch_norm_backward_reference(x0, d0, gamma, 1e-3)
        for name, a, e in [("out", out, y), ("dx", dx, rdx), ("dgamma", bn.grads["gamma"], rdgamma),
                           ("dbeta", bn.grads["beta"], rdbeta)]:  # fmt: skip
            assert a.dtype == dtype, name
            scale = max(1.0, float(np.abs(e).max()))
            np.testing.assert_allclose(a, e, rtol=0, atol=tol * scale, err_msg=name)
        # Eval mode: the affine map of the running statistics, tiled the same way.
        mean, var = bn.buffers["running_mean"], bn.buffers["running_var"]
        expected = (x0 - mean.reshape(-1, *[1] * (len(shape) - 2))) / np.sqrt(
            var.reshape(-1, *[1] * (len(shape) - 2)) + 1e-3
        )
        expected = expected * gamma.reshape(expected.shape[1:2] + (1,) * (len(shape) - 2))
        expected += beta.reshape(expected.shape[1:2] + (1,) * (len(shape) - 2))
        np.testing.assert_allclose(bn.forward(x), expected, rtol=0, atol=tol * 10)


def test_batch_norm_keeps_a_pixel_major_layout_and_is_repeatable() -> None:
    # Pixel-major in, pixel-major out and back (what MaxPool2D and Conv2D read fast), and the
    # same bits on every run: resuming a run depends on it.
    rng = np.random.default_rng(24)
    x = in_layout(rng.standard_normal((6, 4, 5, 3)).astype(np.float32), "pixel-major")
    dout = in_layout(rng.standard_normal((6, 4, 5, 3)).astype(np.float32), "pixel-major")
    runs = []
    for _ in range(2):
        bn = built({"type": "batch_norm"}, (4, 5, 3), np.float32)
        out, dx = bn.forward(x, train=True), bn.backward(dout)
        assert out.transpose(2, 3, 0, 1).flags.c_contiguous
        assert dx.transpose(2, 3, 0, 1).flags.c_contiguous
        runs.append((out, dx, bn.grads["gamma"].copy(), bn.grads["beta"].copy()))
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


# --- Dropout -----------------------------------------------------------------------------


def test_dropout_eval_is_identity() -> None:
    drop = built({"type": "dropout", "rate": 0.5}, (10,))
    x = np.random.default_rng(6).standard_normal((3, 10))
    np.testing.assert_array_equal(drop.forward(x), x)
    dout = np.ones((3, 10))
    dx = drop.backward(dout)
    np.testing.assert_array_equal(dx, dout)
    assert dx is not dout


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_dropout_keeps_the_mean_and_scales_kept_units(rate: float) -> None:
    drop = built({"type": "dropout", "rate": rate}, (200_000,), np.float32)
    out = drop.forward(np.ones((1, 200_000), dtype=np.float32), train=True)
    kept = out != 0
    np.testing.assert_allclose(out[kept], 1 / (1 - rate), rtol=1e-6)
    # The dropped fraction and the mean, each within 5 standard deviations.
    sd_fraction = np.sqrt(rate * (1 - rate) / out.size)
    assert abs((1 - kept.mean()) - rate) < 5 * sd_fraction
    assert abs(out.mean() - 1) < 5 * sd_fraction / (1 - rate)


def test_dropout_backward_uses_the_forward_mask() -> None:
    drop = built({"type": "dropout", "rate": 0.25}, (50,), np.float32)
    out = drop.forward(np.ones((4, 50), dtype=np.float32), train=True)
    dout = np.full((4, 50), 2.0, dtype=np.float32)
    dx = drop.backward(dout)
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, 2 * out)
    assert (dout == 2).all()


def test_dropout_masks_come_from_the_build_generator() -> None:
    state = np.random.get_state()
    x = np.ones((5, 40))
    masks = [built({"type": "dropout"}, (40,), seed=s).forward(x, train=True) for s in (1, 1, 2)]
    np.testing.assert_array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[0], masks[2])
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # global RNG untouched
    # Successive batches draw fresh masks from the same stream.
    drop = built({"type": "dropout"}, (40,), seed=1)
    assert not np.array_equal(drop.forward(x, train=True), drop.forward(x, train=True))


def test_dropout_in_a_network_follows_the_network_seed() -> None:
    specs = [{"type": "dropout", "rate": 0.5}]
    outs = [
        Network.from_specs(specs, (30,), rng=np.random.default_rng(s)).predict(
            np.ones((2, 30)), train=True
        )
        for s in (3, 3, 4)
    ]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])


def test_dropout_rate_zero_and_gradient_check() -> None:
    drop = built({"type": "dropout", "rate": 0.0}, (4,))
    x = np.arange(8.0).reshape(2, 4)
    np.testing.assert_array_equal(drop.forward(x, train=True), x)
    report = check_layer(Dropout.example["spec"], Dropout.example["input_shape"])
    assert report.ok, report.to_record()


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_dropout_rejects_bad_rates(rate: float) -> None:
    with pytest.raises(ConfigError) as info:
        LAYERS.build({"type": "dropout", "rate": rate})
    assert info.value.path == "rate"


def test_unbuilt_dropout_explains_itself() -> None:
    with pytest.raises(RuntimeError, match="generator"):
        Dropout().forward(np.ones((1, 2)), train=True)
