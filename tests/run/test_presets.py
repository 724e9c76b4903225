"""Every shipped preset: documented, loads and round-trips, trains an epoch, passes gradcheck.

The accuracy of the presets on real data is measured by benchmarks/accuracy.py, not here.
"""

import math

import pytest
import yaml

from bptrain.config import preset_names, presets_dir
from cli_helpers import invoke, records

PRESETS = preset_names()
REQUIRED = {"mlp", "mlp-deep", "cnn", "cnn-deep"}  # issue 5: the presets the README documents
PARAMETRIC = {"affine": 2, "conv2d": 2, "batch_norm": 2}  # parameter arrays per layer type
# Entries checked per parameter: the CLI's default (what `bptrain gradcheck NAME` does) unless
# that takes long; cnn-deep's float64 passes cost ~50x the mlp's.
COORDS = {"cnn-deep": 4}


def preset_text(name: str) -> str:
    return (presets_dir() / f"{name}.yaml").read_text(encoding="utf-8")


def test_the_documented_presets_are_shipped_and_listed():
    assert set(PRESETS) >= REQUIRED
    result = invoke("presets")
    assert result.exit_code == 0
    (record,) = records(result.stdout)
    assert record["presets"] == PRESETS and record["default"] == "mlp"


@pytest.mark.parametrize("name", PRESETS)
def test_preset_explains_itself_defaults_to_mnist_and_fixes_its_seed(name):
    text = preset_text(name)
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert text.startswith(f"# {name}:") and len(header) >= 2  # what it is and why
    raw = yaml.safe_load(text)
    assert raw["data"]["dataset"] == "mnist"
    # The README's accuracy table names each preset's seed: it must be fixed, not drawn.
    assert isinstance(raw["seed"], int) and not isinstance(raw["seed"], bool)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_print_config_round_trips(name):
    first = invoke("train", name, "--print-config")
    assert first.exit_code == 0, first.stderr
    again = invoke("train", "-", "--print-config", input=first.stdout)
    assert again.exit_code == 0, again.stderr
    assert again.stdout == first.stdout
    printed, raw = yaml.safe_load(first.stdout), yaml.safe_load(preset_text(name))
    assert printed["seed"] == raw["seed"]
    assert printed["optimizer"]["type"] == raw["optimizer"]["type"]
    assert [layer["type"] for layer in printed["model"]["layers"]] == [
        layer["type"] for layer in raw["model"]["layers"]
    ]
    assert printed["train"]["epochs"] == raw["train"]["epochs"]
    fashion = invoke("train", name, "--set", "data.dataset=fashion-mnist", "--print-config")
    assert fashion.exit_code == 0 and "dataset: fashion-mnist" in fashion.stdout


@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains_an_epoch_and_its_checkpoint_evaluates_alike(name, idx_folder, tmp_path):
    out = tmp_path / f"{name}.npz"
    result = invoke(
        "-q",
        "train",
        name,
        "--set",
        "data.dataset=idx",
        "--set",
        f"data.dir={idx_folder}",
        "--set",
        "train.epochs=1",
        "--set",
        "data.validation=100",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.stderr
    epoch, summary = records(result.stdout)
    assert epoch["event"] == "epoch" and epoch["epoch"] == 1
    assert math.isfinite(epoch["train_loss"]) and math.isfinite(epoch["val_loss"])
    assert summary["event"] == "summary" and summary["epochs"] == 1
    assert summary["seed"] == yaml.safe_load(preset_text(name))["seed"]
    assert 0 <= summary["test_accuracy"] <= 1 and math.isfinite(summary["test_loss"])
    # The model rebuilt from the checkpoint alone gives the summary's test accuracy.
    evaluated = invoke("-q", "eval", out, "--split", "test")
    assert evaluated.exit_code == 0, evaluated.stderr
    (record,) = records(evaluated.stdout)
    assert record["n"] == 200 and record["accuracy"] == summary["test_accuracy"]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_passes_gradcheck(name):
    coords = ["--coords", str(COORDS[name])] if name in COORDS else []
    result = invoke("-q", "gradcheck", name, *coords)
    (record,) = records(result.stdout)
    worst = max(record["parameters"], key=lambda p: p["max_relative_error"])
    assert result.exit_code == 0 and record["ok"], f"{name}: {worst}"
    assert record["max_relative_error"] <= record["tolerance"] == 1e-6
    layers = yaml.safe_load(preset_text(name))["model"]["layers"]
    expected = sum(PARAMETRIC.get(layer["type"], 0) for layer in layers) + 1  # + the input
    assert len(record["parameters"]) == expected and record["parameters"][-1]["name"] == "input"


def test_presets_lists_each_with_its_one_line_description():
    from cli_helpers import invoke, records

    (record,) = records(invoke("presets").stdout)
    assert set(record["descriptions"]) == set(record["presets"])
    for name, text in record["descriptions"].items():
        assert text and not text.startswith(name) and text.endswith(".")
    assert "SimpleConvNet" in record["descriptions"]["cnn"]
