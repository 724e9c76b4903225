"""Fused runs (layers/fused.py, accel/fused.py: BatchNorm -> max-pool -> ReLU, max-pool -> ReLU)
against the same layers run one by one."""

from __future__ import annotations

import numpy as np
import pytest

from bptrain.accel import kernels
from bptrain.engine import gradcheck
from bptrain.engine.layers.fused import FusedRun
from bptrain.engine.network import Network

pytest.importorskip("numba", reason="the fused passes are compiled loops (the fast extra)")


def block(pool: int = 2, kernel: int = 3, norm: bool = True) -> list[dict]:
    """conv -> BatchNorm -> ReLU -> max-pool -> affine: the conv presets' block (without
    BatchNorm: the cnn preset's)."""
    return [
        {"type": "conv2d", "filters": 2, "kernel": kernel, "padding": "same"},
        *([{"type": "batch_norm", "momentum": 0.8}] if norm else []),
        {"type": "relu"},
        {"type": "max_pool2d", "size": pool},
        {"type": "flatten"},
        {"type": "affine", "units": 3},
    ]


@pytest.fixture(autouse=True)
def compiled_loops(monkeypatch):
    """Every test starts with the compiled loops loaded (a test may switch them off)."""
    monkeypatch.setattr(kernels, "_loaded", [])
    assert kernels.compiled() is not None


def twins(specs, input_shape, dtype=np.float32) -> tuple[Network, Network]:
    """Two identical networks with compiled loops, the second never fusing."""
    nets = [
        Network.from_specs(specs, input_shape, rng=np.random.default_rng(1), dtype=dtype)
        for _ in range(2)
    ]
    nets[1].plan(fuse=False)
    return nets[0], nets[1]


def ran_fused(net: Network) -> set[tuple[int, ...]]:
    """The steps whose FusedRun went as one pass in the last forward."""
    return {
        step
        for step, layer in zip(net.steps, net.chain, strict=True)
        if isinstance(layer, FusedRun) and layer.fast is not None
    }


def for_conv(net: Network) -> dict:
    """Each FusedRun's step -> the conv2d right after it, where there is one."""
    return {
        step: layer.conv_after
        for step, layer in zip(net.steps, net.chain, strict=True)
        if isinstance(layer, FusedRun) and layer.conv_after is not None
    }


def train_steps(net: Network, x, t, steps: int = 3) -> list:
    """Loss, scores, gradients and statistics of a few plain SGD steps on one batch."""
    seen = []
    for _ in range(steps):
        loss, scores = net.gradient(x, t)
        seen.append((loss, scores.copy(), {k: g.copy() for k, g in net.grads.items()}))
        for name, param in net.params.items():
            param -= param.dtype.type(0.05) * net.grads[name]
    seen.append({k: b.copy() for k, b in net.buffers.items()})
    return seen


@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize(
    ("pool", "hw", "values"),
    [
        (2, (8, 8), "normal"),
        (2, (7, 9), "normal"),  # rows and columns no window reaches
        (3, (9, 8), "ties"),  # few distinct values: windows full of ties
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_training_is_the_unfused_training_bit_for_bit(norm, pool, hw, values, dtype) -> None:
    rng = np.random.default_rng(2)
    shape = (6, 2, *hw)
    x = rng.standard_normal(shape) if values == "normal" else rng.integers(-1, 2, shape)
    x, t = x.astype(dtype), rng.integers(0, 3, 6)
    specs = block(pool, kernel=1 if values == "ties" else 3, norm=norm)
    fused, plain = twins(specs, (2, *hw), dtype)
    if values == "ties":  # an identity conv: the pool sees the -1/0/1 images, ties everywhere
        for net in (fused, plain):
            net.params["0.W"][...] = np.eye(2).reshape(2, 2, 1, 1)
    # The ReLU runs after the max-pool (Network's swap), in the same run.
    run = (1, 3, 2) if norm else (2, 1)
    assert run in fused.steps
    got, expected = train_steps(fused, x, t), train_steps(plain, x, t)
    assert ran_fused(fused) == {run} and ran_fused(plain) == set()
    for (loss_a, scores_a, grads_a), (loss_b, scores_b, grads_b) in zip(
        got[:-1], expected[:-1], strict=True
    ):
        assert loss_a == loss_b and np.array_equal(scores_a, scores_b)
        for name in grads_b:
            assert np.array_equal(grads_a[name], grads_b[name]), name
    for name in expected[-1]:
        assert np.array_equal(got[-1][name], expected[-1][name]), name
    assert any(np.any(g != 0) for g in got[0][2].values())  # the gradients are not all zero
    relu = run[-1]  # its mask, as the gradient check's kink watch reads it, is the layer's own
    assert np.array_equal(fused.layers[relu].mask, plain.layers[relu].mask)


def test_before_a_conv_the_pooled_output_is_laid_out_as_the_conv_reads_it() -> None:
    specs = [*block()[:4], {"type": "conv2d", "filters": 3, "kernel": 3}, *block()[4:]]
    fused, plain = twins(specs, (2, 8, 8))
    assert for_conv(fused) == {(1, 3, 2): fused.layers[4]}
    rng = np.random.default_rng(6)
    x, t = rng.standard_normal((5, 2, 8, 8)).astype(np.float32), rng.integers(0, 3, 5)
    got, expected = train_steps(fused, x, t), train_steps(plain, x, t)
    for (_, scores_a, grads_a), (_, scores_b, grads_b) in zip(got[:-1], expected[:-1], strict=True):
        assert np.array_equal(scores_a, scores_b)
        assert all(np.array_equal(grads_a[k], grads_b[k]) for k in grads_b)
    conv_out = fused.layers[0].forward(x, train=True)
    run = fused.chain[fused.steps.index((1, 3, 2))]
    pooled = run.forward(conv_out, train=True)
    assert run.fast is not None
    assert pooled.transpose(1, 2, 3, 0).flags.c_contiguous  # (C, H, W, N): im2col's copy
    assert for_conv(twins(block(), (2, 8, 8))[0]) == {}  # flatten next: C order


def test_fused_pair_passes_the_gradient_check() -> None:
    fused, _ = twins(block(), (2, 6, 6), np.float64)
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((5, 2, 6, 6)), rng.integers(0, 3, 5)
    report = gradcheck.check_network(fused, x, t, coords=8, rng=rng)
    assert ran_fused(fused) == {(1, 3, 2)}
    assert report.ok, report.to_record()


def test_inference_and_other_layouts_run_the_layers_one_by_one() -> None:
    fused, plain = twins(block(), (2, 6, 6))
    x = np.random.default_rng(4).standard_normal((4, 2, 6, 6)).astype(np.float32)
    fused.gradient(x, np.zeros(4, dtype=np.int64))  # running statistics worth using
    plain.gradient(x, np.zeros(4, dtype=np.int64))
    assert np.array_equal(fused.predict(x), plain.predict(x))
    assert ran_fused(fused) == set()  # inference: no backward follows, nothing to fuse
    # BatchNorm on the input images themselves: C-order memory, not a conv's pixel-major.
    net, _ = twins([{"type": "batch_norm"}, *block()[3:]], (2, 6, 6))
    assert net.steps[0] == (0, 1)
    net.gradient(x, np.zeros(4, dtype=np.int64))
    assert ran_fused(net) == set()


def test_numpy_kernels_never_fuse(monkeypatch) -> None:
    monkeypatch.setattr(kernels, "_loaded", [None])
    net = Network.from_specs(block(), (2, 6, 6), rng=np.random.default_rng(1))
    x = np.random.default_rng(5).standard_normal((4, 2, 6, 6)).astype(np.float32)
    net.gradient(x, np.zeros(4, dtype=np.int64))
    assert (1, 3, 2) in net.steps and ran_fused(net) == set()


def test_only_disjoint_max_pools_start_or_end_a_run() -> None:
    overlapping = block()
    overlapping[3] = {"type": "max_pool2d", "size": 3, "stride": 1}
    average = block()
    average[3] = {"type": "avg_pool2d", "size": 2}
    for specs in (overlapping, average):
        net = Network.from_specs(specs, (2, 6, 6), rng=np.random.default_rng(1))
        assert all(len(step) == 1 for step in net.steps)
