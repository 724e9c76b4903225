"""`bptrain train --init-from FILE` through the CLI: fine-tuning from a checkpoint or a
safetensors file, the source recorded, resume exact, and every bad input refused with one
Error line, its exit code, and nothing written."""

import hashlib
import os

import numpy as np
import pytest

from bptrain.run import checkpoint, inputs
from bptrain.run.restore import stored_arrays
from bptrain.run.torch_layout import to_torch
from cli_helpers import assert_error, invoke, records, small_config, without_timing, write_config

safetensors_numpy = pytest.importorskip("safetensors.numpy")


@pytest.fixture(scope="module")
def source(tmp_path_factory, idx_folder):
    """The small config and a checkpoint it trained."""
    folder = tmp_path_factory.mktemp("source")
    config = write_config(folder / "small.yaml", small_config(idx_folder, epochs=2))
    out = folder / "source.npz"
    assert invoke("train", config, "--out", out, "-q").exit_code == 0
    return config, out


@pytest.fixture(scope="module")
def torch_state(source):
    """The source's eval weights as PyTorch's nn.Sequential state dict (NumPy arrays)."""
    config, path = source
    loaded = inputs.config_of(str(config))
    network = inputs.prepare(loaded.config, 3, inputs.load_dataset(loaded.config)).network
    ckpt = checkpoint.load(path)
    return to_torch(network, stored_arrays(ckpt, ckpt.weights))


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fine_tuning_starts_from_the_source_and_records_it(source, tmp_path):
    config, path = source
    scored = records(invoke("eval", path).stdout)[0]
    out = tmp_path / "tuned.npz"
    # So small a learning rate moves no float32 weight: the test scores the imported model.
    result = invoke("train", config, "--init-from", path, "--epochs", 1, "--lr", "1e-30",
                    "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = records(result.stdout)[-1]
    assert summary["test_loss"] == pytest.approx(scored["loss"], rel=1e-6)
    assert summary["test_accuracy"] == scored["accuracy"]
    recorded = {"file": str(path), "sha256": sha256(path), "format": "bptrain-checkpoint"}
    assert summary["init_from"] == recorded
    assert checkpoint.load(out).info.init_from == recorded
    assert f"starting from the weights of {path} (its last weights" in result.stderr


def test_a_safetensors_file_is_recorded_as_such(source, torch_state, tmp_path):
    config, _ = source
    file = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(torch_state, str(file))
    result = invoke("train", config, "--init-from", file, "--epochs", 1, "--out",
                    tmp_path / "b.npz", "-q")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert records(result.stdout)[-1]["init_from"] == {
        "file": str(file), "sha256": sha256(file), "format": "safetensors"
    }  # fmt: skip


def test_a_runs_own_first_weights_brought_in_give_the_same_run(tmp_path, idx_folder):
    """Same weights in, same shuffles and dropout masks drawn: the very same records."""
    config = small_config(idx_folder, epochs=2)
    config["model"]["layers"].insert(3, {"type": "dropout", "rate": 0.3})
    path = write_config(tmp_path / "dropout.yaml", config)
    loaded = inputs.config_of(str(path))
    run = inputs.prepare(loaded.config, 3, inputs.load_dataset(loaded.config))
    file = write_tensors(tmp_path, to_torch(run.network), "initial.safetensors")
    plain = invoke("train", path, "--out", tmp_path / "plain.npz")
    brought = invoke("train", path, "--init-from", file, "--out", tmp_path / "brought.npz")
    assert plain.exit_code == brought.exit_code == 0, brought.stderr
    ours, theirs = records(plain.stdout), records(brought.stdout)
    assert theirs[-1].pop("init_from")["format"] == "safetensors"
    assert ours[-1].pop("checkpoint") != theirs[-1].pop("checkpoint")
    assert without_timing(ours) == without_timing(theirs)


def test_a_resumed_run_goes_on_exactly_and_keeps_its_record(source, tmp_path):
    config, path = source
    whole, part = tmp_path / "whole.npz", tmp_path / "part.npz"
    common = ("train", config, "--init-from", path)
    straight = invoke(*common, "--epochs", 2, "--out", whole)
    assert straight.exit_code == 0, straight.stderr
    assert invoke(*common, "--epochs", 1, "--out", part).exit_code == 0
    resumed = invoke("train", "--resume", part, "--set", "train.epochs=2")
    assert resumed.exit_code == 0, resumed.stderr
    epochs = [r for r in records(straight.stdout) if r["event"] == "epoch"]
    assert without_timing(records(resumed.stdout))[0] == without_timing(epochs)[1]
    assert records(resumed.stdout)[-1]["init_from"] == records(straight.stdout)[-1]["init_from"]
    assert checkpoint.load(part).info.init_from["sha256"] == sha256(path)


def test_init_from_and_resume_together_are_a_usage_error(source, tmp_path):
    _, path = source
    result = invoke("train", "--resume", path, "--init-from", path)
    assert_error(result, 2, "--init-from", "--resume")


# --- bad input: one Error line, the documented exit code, nothing written ------------------


def write_tensors(folder, tensors, name="bad.safetensors"):
    path = folder / name
    safetensors_numpy.save_file(tensors, str(path))
    return path


def changed(state, **updates):
    out = {k: v for k, v in state.items() if updates.get(k, 0) is not None}
    out.update({k: v for k, v in updates.items() if v is not None})
    return out


BAD_TENSORS = {
    "a misshaped tensor": (
        lambda s: changed(s, **{"1.weight": np.zeros((16, 784), np.float32)}),
        "1.weight has shape [16, 784] but layer 1 (affine) needs [32, 784]",
    ),
    "a missing tensor": (lambda s: changed(s, **{"3.bias": None}), "missing: 3.bias;"),
    "an extra tensor": (
        lambda s: changed(s, **{"4.weight": np.zeros(3, np.float32)}),
        "unexpected: 4.weight",
    ),
    "float16": (
        lambda s: changed(s, **{"3.weight": s["3.weight"].astype(np.float16)}),
        "tensor 3.weight is F16; bptrain trains in float32",
    ),
    "integers": (
        lambda s: changed(s, **{"1.bias": s["1.bias"].astype(np.int32)}),
        "tensor 1.bias is I32",
    ),
    "a NaN": (
        lambda s: changed(s, **{"1.bias": np.where(np.arange(32) == 5, np.nan, s["1.bias"])}),
        "1.b holds non-finite values",
    ),
    "a float64 beyond float32": (
        lambda s: changed(s, **{"3.bias": np.full(10, 1e300)}),
        "3.b holds non-finite values",
    ),
}


def assert_refused(result, code, needle, folder, before):
    assert_error(result, code, needle)
    assert sorted(os.listdir(folder)) == before  # no checkpoint, lock or temporary file


@pytest.mark.parametrize("case", sorted(BAD_TENSORS))
def test_tensors_that_do_not_fit_are_refused(case, source, torch_state, tmp_path):
    config, _ = source
    make, needle = BAD_TENSORS[case]
    file = write_tensors(tmp_path, make(torch_state))
    before = sorted(os.listdir(tmp_path))
    result = invoke("train", config, "--init-from", file, "--out", tmp_path / "run.npz")
    assert_refused(result, 2, needle, tmp_path, before)


def test_a_checkpoint_of_another_config_names_the_layer(source, tmp_path, idx_folder):
    _, path = source
    config = small_config(idx_folder)
    config["model"]["layers"][1]["units"] = 64
    config_path = write_config(tmp_path / "wider.yaml", config)
    before = sorted(os.listdir(tmp_path))
    result = invoke("train", config_path, "--init-from", path, "--out", tmp_path / "run.npz")
    assert_refused(
        result, 2, "1.W has shape [784, 32] but layer 1 (affine) needs [784, 64]", tmp_path, before
    )
    assert "wider.yaml:" in result.stderr  # where in the config that layer is


def test_a_file_that_does_not_fit_is_refused_before_the_data_loads(source, tmp_path):
    _, path = source
    # --offline with no data would be exit 3: the weights are checked first (mlp's layers).
    result = invoke("train", "mlp", "--offline", "--data-dir", tmp_path / "none",
                    "--init-from", path, "--out", tmp_path / "run.npz")  # fmt: skip
    assert_error(result, 2, "1.W has shape [784, 32] but layer 1 (affine) needs [784, 50]")
    assert sorted(os.listdir(tmp_path)) == []


def damaged_checkpoint(folder, source):
    path = folder / "cut.npz"
    path.write_bytes(source.read_bytes()[:-100])
    return path


def damaged_safetensors(folder, state):
    path = write_tensors(folder, state, "whole.safetensors")
    cut = folder / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-10])
    path.unlink()
    return cut


def not_weights(folder):
    path = folder / "config.yaml"
    path.write_text("seed: 3\n")
    return path


BAD_FILES = {
    "a damaged checkpoint": (
        lambda f, src, st: damaged_checkpoint(f, src),
        4,
        "--init-from: checkpoint",
    ),
    "a damaged safetensors file": (
        lambda f, src, st: damaged_safetensors(f, st),
        4,
        "is a damaged safetensors file",
    ),
    "a missing file": (lambda f, src, st: f / "nothing.npz", 2, "nothing.npz does not exist"),
    "a folder": (lambda f, src, st: f, 2, "is a folder"),
    "another kind of file": (lambda f, src, st: not_weights(f), 2, "neither a bptrain checkpoint"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_files_that_are_not_sound_weights_are_refused(case, source, torch_state, tmp_path):
    config, path = source
    make, code, needle = BAD_FILES[case]
    file = make(tmp_path, path, torch_state)
    before = sorted(os.listdir(tmp_path))
    result = invoke("train", config, "--init-from", file, "--out", tmp_path / "run.npz")
    assert_refused(result, code, needle, tmp_path, before)


def test_pytorch_pickles_and_bfloat16_are_refused_with_the_way_out(source, tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    config, _ = source
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )
    pickled = tmp_path / "model.pt"
    torch.save(model.state_dict(), pickled)
    half = tmp_path / "half.safetensors"
    safetensors_torch.save_file(model.to(torch.bfloat16).state_dict(), str(half))
    before = sorted(os.listdir(tmp_path))
    result = invoke("train", config, "--init-from", pickled, "--out", tmp_path / "run.npz")
    assert_refused(result, 2, "is a PyTorch pickle", tmp_path, before)
    assert "safetensors.torch" in result.stderr
    result = invoke("train", config, "--init-from", half, "--out", tmp_path / "run.npz")
    assert_refused(result, 2, "is BF16; bptrain trains in float32", tmp_path, before)


def test_zero_epochs_brings_weights_in_unchanged(source, torch_state, tmp_path):
    """A model trained elsewhere becomes a checkpoint eval, predict, graph and serve read."""
    config, path = source
    scored = records(invoke("eval", path).stdout)[0]
    weights = tmp_path / "elsewhere.safetensors"
    safetensors_numpy.save_file(torch_state, str(weights))
    out = tmp_path / "imported.npz"
    result = invoke("train", config, "--init-from", weights, "--epochs", 0, "--out", out)
    assert result.exit_code == 0, result.stderr
    recs = records(result.stdout)
    assert [r["event"] for r in recs] == ["summary"]  # nothing trained, tested once
    assert recs[0]["test_loss"] == pytest.approx(scored["loss"], rel=1e-6)
    imported = records(invoke("eval", out).stdout)[0]
    assert imported["accuracy"] == scored["accuracy"] and imported["complete"]
    assert imported["confusion_matrix"] == scored["confusion_matrix"]
    ckpt, original = checkpoint.load(out), checkpoint.load(path)
    theirs = stored_arrays(original, original.weights)
    for name, value in stored_arrays(ckpt, ckpt.weights).items():
        assert np.array_equal(value, theirs[name]), name


def test_zero_epochs_without_init_from_trains_nothing_and_says_so(source, tmp_path):
    config, _ = source
    out = tmp_path / "nothing.npz"
    result = invoke("train", config, "--epochs", 0, "--out", out)
    assert_error(result, 2, "train.epochs", "0 epochs trains nothing", "--init-from")
    assert not out.exists()
