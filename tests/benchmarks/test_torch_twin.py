"""The PyTorch twin of benchmarks/torch_twin.py: same architecture, same arithmetic (tiny runs).

Skipped when PyTorch is not installed (it is not a dependency of bptrain).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bptrain.data.loading import Dataset
from bptrain.engine.averaging import WeightAverage
from bptrain.engine.layers import BatchNorm
from bptrain.engine.network import Network
from bptrain.run.inputs import config_of, prepare

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import torch_twin  # noqa: E402

LAYERS = [
    {"type": "conv2d", "filters": 4, "kernel": 3, "padding": "same", "init": "he"},
    {"type": "batch_norm", "momentum": 0.8},
    {"type": "relu"},
    {"type": "max_pool2d", "size": 2},
    {"type": "conv2d", "filters": 3, "kernel": [3, 2], "stride": 2, "padding": 1},
    {"type": "dropout", "rate": 0.25},
    {"type": "affine", "units": 16, "init": "xavier"},  # on image-shaped input: flattens
    {"type": "batch_norm"},
    {"type": "tanh"},
    {"type": "affine", "units": 10, "init": {"type": "normal", "std": 0.05}},
]


def tiny_dataset(n_train: int = 500, n_test: int = 100) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.random((n_train + n_test, 1, 12, 12), dtype=np.float32)
    t = rng.integers(0, 10, n_train + n_test)
    return Dataset(
        name="idx",
        x_train=x[:n_train],
        t_train=t[:n_train],
        x_test=x[n_train:],
        t_test=t[n_train:],
        num_classes=10,
        class_names=tuple(str(i) for i in range(10)),
        checksums={},
        folder=Path("."),
    )


def tiny_config(**train):
    raw = {
        "seed": 3,
        "data": {"dataset": "idx", "validation": 100, "augment": [{"type": "shift", "pixels": 1}]},
        "model": {
            "layers": LAYERS,
            "loss": {"type": "softmax_with_loss", "label_smoothing": 0.1},
        },
        "optimizer": {"type": "adamw", "lr": 0.003, "weight_decay": 0.01},
        "train": {
            "epochs": 1,
            "batch_size": 50,
            "schedule": {"type": "cosine", "warmup": 0.5},
            "restore_best": True,
            "ema": 0.99,
            **train,
        },
    }
    return config_of("tiny", raw=raw).config


def copy_weights(network: Network, model) -> None:
    """bptrain's weights into the twin: conv W as is, affine W transposed, BatchNorm's four."""
    modules = [m for m in model if any(True for _ in m.parameters())]
    layers = [layer for layer in network.layers if layer.params]
    assert len(modules) == len(layers)
    with torch.no_grad():
        for layer, module in zip(layers, modules, strict=True):
            if isinstance(layer, BatchNorm):
                module.weight.copy_(torch.from_numpy(layer.params["gamma"]))
                module.bias.copy_(torch.from_numpy(layer.params["beta"]))
                module.running_mean.copy_(torch.from_numpy(layer.buffers["running_mean"]))
                module.running_var.copy_(torch.from_numpy(layer.buffers["running_var"]))
            else:
                W = layer.params["W"]
                module.weight.copy_(torch.from_numpy(W if W.ndim == 4 else W.T.copy()))
                module.bias.copy_(torch.from_numpy(layer.params["b"]))


def test_the_twin_has_the_networks_shape_parameters_and_outputs():
    data = tiny_dataset()
    run = prepare(tiny_config(), 3, data)
    model = torch_twin.twin_model(run.network)
    assert sum(p.numel() for p in model.parameters()) == run.network.num_params
    # Trained a little, so the BatchNorm statistics are not the initial ones.
    rng = np.random.default_rng(1)
    for layer in run.network.layers:
        for name, value in {**layer.params, **layer.buffers}.items():
            value += rng.normal(0, 0.1, value.shape).astype(value.dtype)
            if name == "running_var":
                np.abs(value, out=value)
    copy_weights(run.network, model)
    model.eval()
    x = data.x_test[:20]
    expected = run.network.predict(x)
    got = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_initial_weights_have_bptrains_scales():
    run = prepare(tiny_config(), 3, tiny_dataset())
    torch.manual_seed(0)
    model = torch_twin.twin_model(run.network)
    conv = model[0]
    assert conv.weight.detach().std().item() == pytest.approx(
        np.sqrt(2 / 9), rel=0.3
    )  # he, fan_in 9
    assert float(conv.bias.detach().abs().max()) == 0.0
    last = model[-1]
    assert last.weight.detach().std().item() == pytest.approx(0.05, rel=0.2)


def test_batch_norm_folds_the_biased_variance_like_bptrain():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (6, 5)).astype(np.float32)
    layer = BatchNorm(momentum=0.7)
    layer.build((5,), rng, np.float32)
    out = layer.forward(x, train=True)
    twin = torch_twin._batch_norm_class(False)(5, eps=1e-5, momentum=0.3)
    got = twin(torch.from_numpy(x))
    np.testing.assert_allclose(got.detach().numpy(), out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(twin.running_var.numpy(), layer.buffers["running_var"], rtol=1e-5)
    np.testing.assert_allclose(twin.running_mean.numpy(), layer.buffers["running_mean"], rtol=1e-5)


def test_the_ema_is_bptrains_weight_average():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    arrays = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    ema = torch_twin.TwinEMA(model, 0.9)
    reference = WeightAverage(0.9, arrays)
    for step in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * (step + 1))
        ema.update()
        reference.update({k: v.detach().numpy() for k, v in model.state_dict().items()})
    averaged = ema.model.state_dict()
    for name, value in reference.arrays.items():
        np.testing.assert_allclose(averaged[name].numpy(), value, rtol=1e-6)


def test_one_epoch_trains_and_reports():
    result = torch_twin.train_twin(tiny_config(), tiny_dataset(), 3)
    assert result.epochs == 1 and len(result.val_accuracy) == 1
    assert 0 <= result.test_accuracy <= 1 and np.isfinite(result.test_loss)
    assert result.weights == "best" and result.best_epoch == 1
    assert result.params == prepare(tiny_config(), 3, tiny_dataset()).network.num_params
    assert result.wall_seconds > 0 and result.threads == 1


def test_what_has_no_twin_is_named():
    raw = {
        "data": {"dataset": "idx", "validation": 10},
        "model": {"layers": [{"type": "affine", "units": 10}], "loss": "identity_with_mse"},
    }
    run = prepare(config_of("mse", raw=raw).config, 0, tiny_dataset())
    with pytest.raises(ValueError, match="no PyTorch twin for the loss 'identity_with_mse'"):
        torch_twin.twin_loss(run.network)
