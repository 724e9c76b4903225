"""`bptrain summary`: the model summary from a config or a checkpoint, with no data loaded."""

import json

import numpy as np
import pytest

from bptrain.accel import kernels
from bptrain.run import checkpoint
from bptrain.visual.model_source import load_source
from cli_helpers import assert_error, invoke, records


def test_json_counts_equal_the_networks_arrays(config_file):
    record = records(invoke("summary", config_file, "--json").stdout)[0]
    network = load_source(str(config_file)).network
    assert record["event"] == "model"
    assert [r["params"] for r in record["layers"]] == [
        sum(p.size for p in layer.params.values()) for layer in network.layers
    ]
    assert record["params"] == sum(p.size for p in network.params.values()) == 784 * 32 + 32 + 330
    assert record["param_bytes"] == 4 * record["params"]
    assert [r["output_shape"] for r in record["layers"]] == [[784], [32], [32], [10]]
    assert [r["name"] for r in record["layers"]] == ["flatten_0", "affine_1", "relu_2", "affine_3"]


def test_activation_memory_is_what_the_layers_keep(config_file):
    record = records(invoke("summary", config_file, "--json").stdout)[0]
    kept = [r["activation_bytes_per_sample"] for r in record["layers"]]
    # affine_1 keeps its float32 input (784 numbers), relu_2 its boolean mask (32), affine_3
    # its float32 input (32 numbers) and the loss's softmax output and labels (10 + 2).
    assert kept[:3] == [0, 784 * 4, 32]
    assert kept[3] == 32 * 4 + 10 * 4 + 2 * 8
    assert record["activation_bytes_per_sample"] == sum(kept)
    assert (
        record["activation_bytes_per_batch"] == sum(kept) * record["batch_size"] == sum(kept) * 50
    )


def test_conv_layers_count_the_input_they_keep():
    record = records(invoke("summary", "cnn", "--json").stdout)[0]
    conv = record["layers"][0]
    # Its input in the pixel-major copy it gathers the im2col columns from, float32: one
    # 28x28 channel (backward gathers the 24x24 patches of 5x5 again; it keeps no columns).
    assert conv["activation_bytes_per_sample"] == 4 * 28 * 28
    deep = records(invoke("summary", "cnn-deep", "--json").stdout)[0]
    # cnn-deep's second conv: 32 channels of 14x14, as they come when it runs Winograd's way
    # (with the compiled loops), zero-padded to 16x16 for 'same' in im2col's copy otherwise.
    winograd = kernels.sgemm() is not None
    kept = 4 * 32 * (14 * 14 if winograd else 16 * 16)
    assert deep["layers"][4]["activation_bytes_per_sample"] == kept


def test_a_checkpoints_summary_matches_its_arrays(tmp_path, config_file):
    out = tmp_path / "m.npz"
    invoke("train", config_file, "--set", "train.epochs=1", "--set", "model.layers[1].units=9",
           "--out", out)  # fmt: skip
    record = records(invoke("summary", out, "--json").stdout)[0]
    stored = checkpoint.load(out).group("param")
    assert record["params"] == sum(a.size for a in stored.values()) == 784 * 9 + 9 + 100
    assert record["model"] == "small"  # the config file's name, recorded at training
    assert record["dataset"] == "idx"


def test_the_table_for_people(config_file):
    result = invoke("summary", config_file)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Model: small (idx)"
    assert any(line.split()[:4] == ["1", "affine_1", "affine", "(32,)"] for line in lines)
    assert f"Total params: {784 * 32 + 32 + 330:,} (" in result.stdout
    assert "per batch of 50" in result.stdout


def test_batch_norm_buffers_are_counted_and_left_untouched():
    source = load_source("cnn-deep")
    before = {k: v.copy() for k, v in source.network.buffers.items()}
    from bptrain.visual.summary import summarize

    record = summarize(source.network, name="x", dataset="mnist", batch_size=100)
    assert record["buffers"] == 2 * (32 + 64 + 256)
    for key, value in source.network.buffers.items():
        np.testing.assert_array_equal(value, before[key])


def test_out_file_and_refusal(tmp_path, config_file):
    out = tmp_path / "s.json"
    assert invoke("summary", config_file, "--json", "--out", out).exit_code == 0
    assert json.loads(out.read_text())["params"] == 784 * 32 + 32 + 330
    assert_error(invoke("summary", config_file, "--out", out), 4, "already exists")


def test_the_table_is_the_artifact_on_stdout_or_in_out(tmp_path, config_file):
    """F25, decided: summary is an artifact command like graph; its artifact (the table, or the
    JSON record with --json) goes to --out or, without it, to stdout, and nothing else does."""
    on_stdout = invoke("summary", config_file)
    out = tmp_path / "summary.txt"
    to_file = invoke("summary", config_file, "--out", out)
    assert to_file.exit_code == 0 and to_file.stdout == ""
    assert out.read_text() == on_stdout.stdout
    assert on_stdout.stdout.startswith("Model: small (idx)\n")


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["summary", "nope"], 2, "nope"),
        (["summary", "mlp", "--set", "model.layers[1].unitz=3"], 2, "did you mean 'units'"),
    ],
)
def test_errors(args, code, needle):
    assert_error(invoke(*args), code, needle)
