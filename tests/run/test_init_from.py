"""train --init-from at the run layer: the weights a prepared run starts from are the file's,
the generator stream is untouched, and PyTorch's own networks give bptrain's forward pass."""

import hashlib
import json

import numpy as np
import pytest

from bptrain.engine.network import Network
from bptrain.engine.train import evaluate
from bptrain.errors import CheckpointError, ConfigError
from bptrain.run import checkpoint, init_from, inputs, safetensors_read
from bptrain.run.checkpoint_schema import validate_meta
from bptrain.run.restore import stored_arrays
from bptrain.run.torch_layout import modules, to_torch
from cli_helpers import invoke, records, small_config, write_config

safetensors_numpy = pytest.importorskip("safetensors.numpy")


@pytest.fixture(scope="module")
def source(tmp_path_factory, idx_folder):
    """A trained checkpoint of the small config; its summary weights are the averaged ones."""
    folder = tmp_path_factory.mktemp("source")
    config = write_config(folder / "small.yaml", small_config(idx_folder, epochs=2, ema=0.9))
    out = folder / "source.npz"
    result = invoke("train", config, "--out", out, "-q")
    assert result.exit_code == 0, result.stderr
    return config, out


def prepared(config_path, **train):
    """A run as `train` prepares it (split, network, seeded weights), before any step."""
    overrides = [f"train.{key}={value}" for key, value in train.items()]
    loaded = inputs.config_of(str(config_path), overrides)
    dataset = inputs.load_dataset(loaded.config)
    return inputs.prepare(loaded.config, loaded.config.seed, dataset)


def test_a_checkpoints_eval_weights_are_the_first_weights_and_the_stream_is_untouched(source):
    config, path = source
    ckpt = checkpoint.load(path)
    run, plain = prepared(config), prepared(config)
    init_from.apply(init_from.read(str(path)), run)
    expected = stored_arrays(ckpt, ckpt.weights)
    assert ckpt.weights == "ema" and set(run.network.arrays) == set(expected)
    assert not np.array_equal(expected["1.W"], ckpt.group("param")["1.W"])  # not the last
    for key, value in run.network.arrays.items():
        assert np.array_equal(value, expected[key]), key
        assert value.dtype == np.float32
    # Only the weights changed: shuffles and dropout masks draw what a plain run draws.
    assert run.rng.bit_generator.state == plain.rng.bit_generator.state
    assert not np.array_equal(plain.network.params["1.W"], expected["1.W"])
    # The first step starts from exactly the model `eval` scores.
    scored = records(invoke("eval", path).stdout)[0]
    mine = evaluate(run.network, *run.test, 10, run.config.train.eval_batch_size)
    assert mine.loss == pytest.approx(scored["loss"], rel=1e-12)
    assert mine.accuracy == scored["accuracy"]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert run.init_from == {"file": str(path), "sha256": sha, "format": "bptrain-checkpoint"}


def test_the_moving_average_starts_from_the_imported_weights(source):
    config, path = source
    run = prepared(config, ema=0.5)
    init_from.apply(init_from.read(str(path)), run)
    for key, value in run.network.arrays.items():
        assert np.array_equal(run.state.ema.arrays[key], value), key


def test_a_safetensors_file_in_sequential_names_gives_the_same_weights(source, tmp_path):
    config, path = source
    ckpt = checkpoint.load(path)
    run = prepared(config)
    expected = stored_arrays(ckpt, ckpt.weights)
    file = tmp_path / "model.safetensors"
    state = to_torch(run.network, expected)
    assert state["1.weight"].shape == (32, 784)  # PyTorch's (out, in)
    safetensors_numpy.save_file(state, str(file), metadata={"config": "small"})
    init_from.apply(init_from.read(str(file)), run)
    for key, value in run.network.arrays.items():
        assert np.array_equal(value, expected[key]), key
    assert run.init_from["format"] == "safetensors"


def test_float64_tensors_are_cast_to_float32(source, tmp_path):
    config, path = source
    run = prepared(config)
    ckpt = checkpoint.load(path)
    state = to_torch(run.network, stored_arrays(ckpt, ckpt.weights))
    file = tmp_path / "double.safetensors"
    safetensors_numpy.save_file({k: v.astype(np.float64) for k, v in state.items()}, str(file))
    init_from.apply(init_from.read(str(file)), run)
    assert run.network.params["1.W"].dtype == np.float32
    assert np.array_equal(run.network.params["1.W"], state["1.weight"].T)


# --- real PyTorch networks -----------------------------------------------------------------

CONV_LAYERS = [
    {"type": "conv2d", "filters": 4, "kernel": 3, "padding": "same", "init": "he"},
    {"type": "batch_norm"},
    {"type": "relu"},
    {"type": "max_pool2d", "size": 2},
    {"type": "flatten"},
    {"type": "affine", "units": 16, "init": "he"},
    {"type": "batch_norm"},
    {"type": "sigmoid"},
    {"type": "dropout", "rate": 0.3},
    {"type": "affine", "units": 10, "init": "he"},
]


def torch_conv_net(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=1, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 14 * 14, 16), nn.BatchNorm1d(16), nn.Sigmoid(),
        nn.Dropout(0.3), nn.Linear(16, 10),
    )  # fmt: skip


def trained_a_little(torch, model, x):
    """Running statistics that are not PyTorch's initial ones: a few forward passes."""
    model.train()
    with torch.no_grad():
        for start in range(0, 200, 50):
            model(torch.from_numpy(x[start : start + 50]))
    model.eval()
    return model


def assert_same_forward(torch, model, run):
    x = run.test[0][:64]
    with torch.no_grad():
        theirs = model(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    ours = run.network.predict(x)
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


def test_a_pytorch_sequential_state_dict_predicts_as_in_pytorch(tmp_path, idx_folder):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    config = small_config(idx_folder)
    config["model"]["layers"] = CONV_LAYERS
    config_path = write_config(tmp_path / "conv.yaml", config)
    run = prepared(config_path)
    model = trained_a_little(torch, torch_conv_net(torch), run.val[0])
    file = tmp_path / "torch.safetensors"
    safetensors_torch.save_file(model.state_dict(), str(file))
    init_from.apply(init_from.read(str(file)), run)
    assert np.array_equal(run.network.buffers["1.running_var"], model[1].running_var.numpy())
    assert_same_forward(torch, model, run)


@pytest.mark.parametrize("preset", ["mlp", "mlp-deep", "cnn", "cnn-deep", "speedrun"])
def test_every_preset_built_in_pytorch_predicts_as_in_pytorch(preset, tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    config = inputs.config_of(preset).config
    network = Network.from_specs(config.model.layers, (1, 28, 28), config.model.loss,
                                 num_classes=10)  # fmt: skip
    torch.manual_seed(2)
    model = torch.nn.Sequential(
        *(getattr(torch.nn, m.cls)(*m.args, **m.kwargs) for m in modules(network))
    )
    x = np.random.default_rng(2).random((64, 1, 28, 28), dtype=np.float32)
    trained_a_little(torch, model, np.concatenate([x] * 4))
    file = tmp_path / f"{preset}.safetensors"
    safetensors_torch.save_file(model.state_dict(), str(file))
    network.assign(init_from.weights_for(init_from.read(str(file)), network))
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(network.predict(x), theirs, atol=1e-5, rtol=0)


def test_a_custom_module_is_matched_by_its_shapes_when_only_one_match_exists(tmp_path, source):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    nn = torch.nn

    class Net(nn.Module):  # the same stack, named as a PyTorch user names it
        def __init__(self):
            super().__init__()
            self.hidden, self.out = nn.Linear(784, 32), nn.Linear(32, 10)

        def forward(self, x):
            return self.out(torch.relu(self.hidden(x.flatten(1))))

    torch.manual_seed(1)
    model = Net().eval()
    file = tmp_path / "custom.safetensors"
    safetensors_torch.save_file(model.state_dict(), str(file))
    run = prepared(source[0])
    init_from.apply(init_from.read(str(file)), run)
    assert_same_forward(torch, model, run)


def test_two_alike_layers_make_a_custom_module_ambiguous(tmp_path, idx_folder):
    config = small_config(idx_folder)
    alike = [{"type": "relu"}, {"type": "affine", "units": 32}]
    config["model"]["layers"][2:2] = alike + alike  # layers 3 and 5: two Linear(32, 32)
    run = prepared(write_config(tmp_path / "deeper.yaml", config))
    state = to_torch(run.network)
    names = {"1": "a", "3": "b", "5": "c", "7": "d"}
    renamed = {f"{names[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in state.items()}
    file = tmp_path / "custom.safetensors"
    safetensors_numpy.save_file(renamed, str(file))
    with pytest.raises(ConfigError) as info:
        init_from.apply(init_from.read(str(file)), run)
    assert "missing: 1.bias, 1.weight, 3.bias" in str(info.value)
    assert "nn.Sequential" in str(info.value)


# --- what the checkpoint records -------------------------------------------------------------


def test_the_record_of_the_source_is_checked_strictly(source, tmp_path):
    config, path = source
    out = tmp_path / "tuned.npz"
    result = invoke("train", config, "--init-from", path, "--epochs", 1, "--out", out, "-q")
    assert result.exit_code == 0, result.stderr
    meta = checkpoint.load(out).meta
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["init_from"] == {"file": str(path), "sha256": sha, "format": "bptrain-checkpoint"}
    assert validate_meta(meta) is None
    for bad in (
        {**meta["init_from"], "sha256": "abc"},
        {**meta["init_from"], "extra": 1},
        {**meta["init_from"], "format": "pickle"},
        "source.npz",
    ):
        problem = validate_meta({**meta, "init_from": bad})
        assert problem is not None and problem.startswith("init_from must be"), problem
    plain = tmp_path / "plain.npz"
    assert invoke("train", config, "--epochs", 1, "--out", plain, "-q").exit_code == 0
    assert "init_from" not in checkpoint.load(plain).meta


# --- the safetensors reader: a header is untrusted input -------------------------------------


def safetensors_bytes(header, data=b"\0" * 16, claimed=None):
    text = json.dumps(header).encode()
    return (claimed if claimed is not None else len(text)).to_bytes(8, "little") + text + data


def entry(dtype="F32", shape=(2, 2), offsets=(0, 16)):
    return {"w": {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}}


DAMAGED = {
    "a header longer than the file": (safetensors_bytes(entry(), claimed=10**6), "claims"),
    "a header that is not JSON": (b"\x05" + b"\0" * 7 + b"{oops", "not valid JSON"),
    "data beyond the end": (safetensors_bytes(entry(offsets=(8, 24))), "claims bytes 8..24"),
    "a shape that is not its bytes": (safetensors_bytes(entry(shape=(3, 2))), "claims bytes"),
    "a negative size": (safetensors_bytes(entry(shape=(-2, 2))), "invalid shape"),
    "no offsets": (safetensors_bytes({"w": {"dtype": "F32", "shape": [4]}}), "lacks a dtype"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_header_is_a_damaged_file(case, tmp_path):
    raw, needle = DAMAGED[case]
    with pytest.raises(CheckpointError, match="damaged safetensors file") as info:
        safetensors_read.parse(tmp_path / "x.safetensors", raw)
    assert needle in str(info.value)


def test_an_unknown_dtype_or_another_format_is_a_usage_error(tmp_path):
    with pytest.raises(ConfigError, match="tensor w is C64; bptrain trains in float32"):
        safetensors_read.parse(tmp_path / "x", safetensors_bytes(entry(dtype="C64")))
    with pytest.raises(ConfigError, match="neither a bptrain checkpoint"):
        safetensors_read.parse(tmp_path / "x", b"\x04\0\0\0\0\0\0\0[1]\n")
    tensors = safetensors_read.parse(tmp_path / "x", safetensors_bytes(entry()))
    assert tensors["w"].shape == (2, 2) and tensors["w"].dtype == np.float32
    assert tensors["w"].flags.writeable
