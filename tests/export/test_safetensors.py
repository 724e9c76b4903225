"""`bptrain export --out model.safetensors`: PyTorch's names and layouts, read by the real
safetensors library and loaded by real PyTorch (in a subprocess) with strict=True."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bptrain.config import preset_names
from bptrain.run import checkpoint
from bptrain.run.model import load_model
from cli_helpers import invoke, records, subprocess_env

safetensors = pytest.importorskip("safetensors", reason="the export extra is not installed")
safe_open = safetensors.safe_open
load_file = pytest.importorskip("safetensors.numpy").load_file

NAMES = (*preset_names(), "every-layer")
EXAMPLE = Path(__file__).parents[2] / "examples" / "load_in_pytorch.py"
needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="PyTorch is not installed"
)


def export(checkpoint_path, out):
    result = invoke("export", checkpoint_path, "--out", out)
    assert result.exit_code == 0, result.stderr
    (record,) = records(result.stdout)
    return record


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("safetensors")
    for name in NAMES:
        record = export(trained[name], folder / f"{name}.safetensors")
        assert record["format"] == "safetensors" and record["opset"] is None
        assert record["verified"]["max_abs_diff"] == 0.0  # the same numbers, read back
    return {name: folder / f"{name}.safetensors" for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_the_tensors_are_in_pytorchs_names_and_layouts(name, trained, exported):
    tensors = load_file(str(exported[name]))
    network = load_model(str(trained[name])).network
    expected = {}
    for i, layer in enumerate(network.layers):
        image_in = len(network.shapes[i - 1] if i else network.input_shape) > 1
        if layer.name == "affine":  # Linear keeps (out, in); after an image, Flatten comes first
            at = f"{i}.1." if image_in else f"{i}."
            expected[f"{at}weight"], expected[f"{at}bias"] = layer.params["W"].T, layer.params["b"]
        if layer.name == "conv2d":
            expected[f"{i}.weight"], expected[f"{i}.bias"] = layer.params["W"], layer.params["b"]
        if layer.name == "batch_norm":
            expected[f"{i}.weight"] = layer.params["gamma"]
            expected[f"{i}.bias"] = layer.params["beta"]
            expected[f"{i}.running_mean"] = layer.buffers["running_mean"]
            expected[f"{i}.running_var"] = layer.buffers["running_var"]
            expected[f"{i}.num_batches_tracked"] = np.array(0, np.int64)
    assert sorted(tensors) == sorted(expected)
    for key, value in expected.items():
        assert tensors[key].dtype == value.dtype, key
        np.testing.assert_array_equal(tensors[key], value, err_msg=key)


def test_the_header_carries_config_classes_and_module_code(trained, exported):
    with safe_open(str(exported["cnn"]), framework="numpy") as handle:
        meta = handle.metadata()
    stored = checkpoint.load(trained["cnn"])
    assert json.loads(meta["config"]) == stored.info.config
    assert json.loads(meta["class_names"]) == list(stored.info.class_names)
    assert meta["format"] == "pt" and meta["dataset"] == "idx"
    assert meta["weights"] == stored.weights
    assert meta["torch_module"].splitlines() == [
        "nn.Sequential(",
        "    nn.Conv2d(1, 30, (5, 5), stride=1, padding=(0, 0)),",
        "    nn.ReLU(),",
        "    nn.MaxPool2d(2, stride=2),",
        "    nn.Flatten(),",
        "    nn.Linear(4320, 100),",
        "    nn.ReLU(),",
        "    nn.Linear(100, 10),",
        ")",
    ]


# Every exported file into the nn.Sequential its header describes, strict=True, in eval mode.
TORCH_SCRIPT = """
import sys, numpy as np, torch
from torch import nn
from safetensors import safe_open
from safetensors.torch import load_file
x = torch.from_numpy(np.load(sys.argv[1]))
for path in sys.argv[2:]:
    with safe_open(path, framework="pt") as f:
        model = eval(f.metadata()["torch_module"], {"nn": nn})
    model.load_state_dict(load_file(path), strict=True)
    model.eval()
    with torch.no_grad():
        np.save(path + ".npy", torch.softmax(model(x), dim=1).double().numpy())
"""


@needs_torch
def test_pytorch_loads_every_file_strictly_and_predicts_as_bptrain(
    trained, exported, tmp_path, forward, pixels
):
    x = pixels(9)
    np.save(tmp_path / "x.npy", x)
    files = [str(exported[name]) for name in NAMES]
    done = subprocess.run(
        [sys.executable, "-c", TORCH_SCRIPT, str(tmp_path / "x.npy"), *files],
        capture_output=True, text=True, env=subprocess_env(), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in NAMES:
        theirs = np.load(f"{exported[name]}.npy")
        ours = forward(trained[name], x)
        np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-5, err_msg=name)
        np.testing.assert_array_equal(theirs.argmax(axis=1), ours.argmax(axis=1))


@needs_torch
def test_the_docs_example_predicts_as_bptrain(trained, exported, tmp_path, forward, pixels):
    x = pixels(6, seed=4)
    np.save(tmp_path / "pixels.npy", x)
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(exported["mlp"]), str(tmp_path / "pixels.npy")],
        capture_output=True, text=True, env=subprocess_env(), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    ours = forward(trained["mlp"], x)
    assert [line["label"] for line in lines] == ours.argmax(axis=1).tolist()
    assert [line["class_name"] for line in lines] == [str(k) for k in ours.argmax(axis=1)]
    np.testing.assert_allclose([line["probabilities"] for line in lines], ours, atol=1e-5)
