"""`bptrain train` through the CLI: records, resume, configs and their errors."""

import subprocess

import numpy as np
import pytest
import yaml

from bptrain.run import checkpoint
from cli_helpers import (
    EPOCH_KEYS,
    SUMMARY_KEYS,
    assert_error,
    invoke,
    records,
    small_config,
    spawn,
    without_timing,
    write_config,
)


def test_train_streams_epochs_then_a_summary_and_eval_reproduces_it(tmp_path, config_file):
    out = tmp_path / "run.npz"
    result = invoke("train", config_file, "--out", out)
    assert result.exit_code == 0, result.stderr
    recs = records(result.stdout)
    assert [r["event"] for r in recs] == ["epoch"] * 3 + ["summary"]
    assert all(set(r) == EPOCH_KEYS for r in recs[:3])
    assert set(recs[-1]) == SUMMARY_KEYS
    summary = recs[-1]
    assert summary["checkpoint"] == str(out) and out.is_file() and summary["seed"] == 3
    assert summary["test_accuracy"] > 0.8  # the synthetic classes are easy
    assert summary["best_val_accuracy"] == max(r["val_accuracy"] for r in recs[:3])
    assert "epoch 3/3" in result.stderr  # human logs go to stderr
    evaluated = invoke("eval", out)
    assert evaluated.exit_code == 0, evaluated.stderr
    (record,) = records(evaluated.stdout)
    assert record["event"] == "eval" and record["split"] == "test" and record["n"] == 200
    assert record["accuracy"] == summary["test_accuracy"]
    assert record["loss"] == pytest.approx(summary["test_loss"], rel=1e-12)
    matrix = np.array(record["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 200
    assert len(record["per_class_accuracy"]) == 10


def test_same_config_and_seed_give_identical_metrics(tmp_path, config_file):
    a = records(invoke("train", config_file, "--out", tmp_path / "a.npz").stdout)
    b = records(invoke("train", config_file, "--out", tmp_path / "b.npz").stdout)

    def strip(recs):
        return [{k: v for k, v in r.items() if k != "checkpoint"} for r in without_timing(recs)]

    assert strip(a) == strip(b)
    c = records(invoke("train", config_file, "--set", "seed=4", "--out", tmp_path / "c.npz").stdout)
    assert strip(c) != strip(a)


def test_without_a_seed_one_is_drawn_logged_and_recorded(tmp_path, idx_folder):
    config = small_config(idx_folder, epochs=1)
    config["seed"] = None
    path = write_config(tmp_path / "c.yaml", config)
    result = invoke("train", path, "--out", tmp_path / "r.npz")
    summary = records(result.stdout)[-1]
    assert isinstance(summary["seed"], int)
    assert f"drew seed {summary['seed']}" in result.stderr
    assert checkpoint.load(tmp_path / "r.npz").meta["seed"] == summary["seed"]


def test_resume_after_an_epoch_ends_exactly_like_an_uninterrupted_run(tmp_path, config_file):
    full = records(invoke("train", config_file, "--out", tmp_path / "full.npz").stdout)
    part = tmp_path / "part.npz"
    first = invoke("train", config_file, "--set", "train.epochs=1", "--out", part)
    assert first.exit_code == 0
    rest = invoke("train", "--resume", part, "--set", "train.epochs=3")
    assert rest.exit_code == 0, rest.stderr
    resumed = records(rest.stdout)
    assert [r["epoch"] for r in resumed[:-1]] == [2, 3]
    assert without_timing(resumed[:-1]) == without_timing(full[1:3])
    for key in ("test_loss", "test_accuracy", "best_val_accuracy", "epochs"):
        assert resumed[-1][key] == full[-1][key]
    a, b = checkpoint.load(tmp_path / "full.npz"), checkpoint.load(part)
    for name, value in a.group("param").items():
        assert np.array_equal(value, b.group("param")[name])


def test_print_config_round_trips(tmp_path, config_file):
    first = invoke(
        "train",
        config_file,
        "--set",
        "train.epochs=7",
        "--set",
        "model.layers[1].units=20",
        "--print-config",
    )
    assert first.exit_code == 0
    printed = yaml.safe_load(first.stdout)
    assert printed["train"]["epochs"] == 7 and printed["model"]["layers"][1]["units"] == 20
    second = invoke("train", "-", "--print-config", input=first.stdout)
    assert second.stdout == first.stdout
    run = invoke(
        "train", "-", "--set", "train.epochs=1", "--out", tmp_path / "x.npz", input=first.stdout
    )
    assert run.exit_code == 0 and records(run.stdout)[-1]["epochs"] == 1


def test_presets_are_found_by_name():
    result = invoke("train", "mlp", "--print-config")
    assert result.exit_code == 0
    config = yaml.safe_load(result.stdout)
    assert config["model"]["layers"][1]["units"] == 50 and config["optimizer"]["lr"] == 0.1
    assert invoke("train", "--print-config").stdout == result.stdout  # mlp is the default


def test_config_errors_name_file_line_and_path_and_come_all_at_once(tmp_path, idx_folder):
    text = yaml.safe_dump(small_config(idx_folder), sort_keys=False)
    text = text.replace("units: 32", "unitz: 32").replace("batch_size: 50", "batch_size: -1")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = invoke("train", path)
    assert result.exit_code == 2 and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 2, result.stderr
    unitz_line = text.splitlines().index("  - type: affine") + 2
    assert f"bad.yaml:{unitz_line}: model.layers[1].unitz: unknown key" in result.stderr
    assert "did you mean 'units'?" in result.stderr
    assert "train.batch_size: must be >= 1" in result.stderr


def test_duplicate_keys_and_yaml_syntax_errors(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("seed: 1\ntrain: {epochs: 2}\nseed: 2\n")
    assert_error(invoke("train", path), 2, "dup.yaml:3", "duplicate key 'seed'")
    path.write_text("train: {epochs: [1\n")
    assert_error(invoke("train", path), 2, "invalid YAML")


def test_yaml_1_1_exponent_floats_are_numbers(tmp_path):
    result = invoke("train", "mlp", "--set", "optimizer.lr=1e-3", "--print-config")
    assert yaml.safe_load(result.stdout)["optimizer"]["lr"] == 0.001


def test_a_layer_stack_that_does_not_fit_fails_before_training(tmp_path, idx_folder):
    config = small_config(idx_folder)
    config["model"]["layers"][3]["units"] = 7
    result = invoke("train", write_config(tmp_path / "c.yaml", config))
    assert_error(result, 2, "model.layers[3]", "10 classes")


def test_a_resumed_run_may_change_training_but_not_the_model(tmp_path, config_file):
    out = tmp_path / "m.npz"
    invoke("train", config_file, "--set", "train.epochs=1", "--out", out)
    result = invoke("train", "--resume", out, "--set", "model.layers[1].units=16")
    assert_error(result, 2, "model.layers[1].units", "cannot change")
    assert_error(invoke("train", "--resume", out, "--set", "seed=5"), 2, "cannot change")
    assert invoke("train", "--resume", out, "--set", "train.epochs=2").exit_code == 0


def test_divergence_exits_5_naming_epoch_step_and_layer(tmp_path, config_file):
    result = invoke("train", config_file, "--set", "optimizer.lr=1e30")
    assert_error(result, 5, "epoch 1, step", "layer", "optimizer.lr")


def test_target_accuracy_gates_train_and_eval(tmp_path, config_file):
    out = tmp_path / "m.npz"
    result = invoke(
        "train",
        config_file,
        "--out",
        out,
        "--target-accuracy",
        "0.9",
        "--set",
        "optimizer.lr=1e-6",
        "--set",
        "train.epochs=1",
    )
    assert result.exit_code == 1
    assert records(result.stdout)[-1]["event"] == "summary"  # the result is still reported
    assert "below the target" in result.stderr
    accuracy = records(result.stdout)[-1]["test_accuracy"]
    assert invoke("eval", out, "--target-accuracy", str(accuracy)).exit_code == 0
    assert invoke("eval", out, "--target-accuracy", "0.9").exit_code == 1


def test_resume_with_a_config_is_a_usage_error(tmp_path, config_file):
    out = tmp_path / "m.npz"
    invoke("train", config_file, "--set", "train.epochs=1", "--out", out)
    assert_error(invoke("train", config_file, "--resume", out), 2, "either CONFIG or --resume")


def _stderr_through_a_terminal(*args):
    """Run bptrain with stderr on a pseudo-terminal (stdout a pipe); return (stdout, stderr)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    proc = spawn(*args, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal closes when the process exits
            break
        if not data:
            break
        chunks.append(data)
    stdout = proc.stdout.read()
    proc.stdout.close()
    proc.wait(timeout=60)
    os.close(master)
    return stdout.decode(), b"".join(chunks).decode(errors="replace")


def test_the_progress_bar_shows_on_a_terminal_only(tmp_path, config_file):
    out = tmp_path / "p.npz"
    stdout, stderr = _stderr_through_a_terminal("train", config_file, "--out", out)
    assert "batch" in stderr and "samples/s" in stderr  # tqdm: batches, loss, throughput
    assert [r["event"] for r in records(stdout)][-1] == "summary"  # stdout stays JSON only
    _, quiet = _stderr_through_a_terminal("-q", "train", config_file, "--out", out, "--overwrite")
    assert "batch" not in quiet and "epoch 1/3" not in quiet
    piped = invoke("train", config_file, "--out", out, "--overwrite")
    assert "batch" not in piped.stderr and "epoch 1/3" in piped.stderr


def test_resuming_an_adam_run_with_batchnorm_and_dropout_is_exact(tmp_path, idx_folder):
    config = small_config(idx_folder, epochs=3)
    config["model"]["layers"][1:2] = [
        {"type": "affine", "units": 32, "init": "he"},
        {"type": "batch_norm"},
    ]
    config["model"]["layers"].insert(4, {"type": "dropout", "rate": 0.3})
    config["optimizer"] = {"type": "adam", "lr": 0.002}  # no schedule: it depends on epochs
    path = write_config(tmp_path / "adam.yaml", config)
    full = records(invoke("train", path, "--out", tmp_path / "full.npz").stdout)
    part = tmp_path / "part.npz"
    assert invoke("train", path, "--set", "train.epochs=1", "--out", part).exit_code == 0
    rest = records(invoke("train", "--resume", part, "--set", "train.epochs=3").stdout)
    assert without_timing(rest[:-1]) == without_timing(full[1:3])
    a, b = checkpoint.load(tmp_path / "full.npz"), checkpoint.load(part)
    for group in ("param", "buffer", "optim"):
        assert set(a.group(group)) == set(b.group(group)) and a.group(group)
        for name, value in a.group(group).items():
            assert np.array_equal(value, b.group(group)[name]), (group, name)


@pytest.mark.parametrize(
    ("args", "stdin", "needle"),
    [
        (["train", "mlp", "--set", "foo.bar=1", "--print-config"], None, "--set foo: unknown key"),
        (["train", "mlp", "--set", "train.epochs=-1"], None, "--set train.epochs: must be >= 0"),
        (["train", "mlp", "--set", "train.epochs=0"], None, "--set train.epochs: 0 epochs trains"),
        (["train", "-"], "", "model.layers: the model has no layers"),
        (["train", "-"], "model:\n", "model.layers: the model has no layers"),
        (["train", "-"], "? [1, 2]\n: 3\n", "unsupported YAML"),
        (["train", "-"], "a: &x [*x]\n", "unsupported YAML"),
        (["train", "-"], "- 1\n- 2\n", "must be a mapping"),
        (["train", "mlp", "--set", "optimizer.lr=.inf"], None, "finite number"),
        (["gradcheck", "mlp", "--set", "model.layers[1].units=1000000000000"], None, "memory"),
        (["gradcheck", "mlp-deep", "--batch-size", "1"], None, "--batch-size 1 with batch_norm"),
    ],
)
def test_review_findings_exit_2_with_one_error_line(args, stdin, needle):
    assert_error(invoke(*args, input=stdin), 2, needle)


def test_an_empty_section_means_its_defaults():
    result = invoke(
        "train",
        "-",
        "--print-config",
        input="model: {layers: [{type: flatten}, {type: affine, units: 10}]}\ntrain:\n",
    )
    assert result.exit_code == 0 and yaml.safe_load(result.stdout)["train"]["epochs"] == 10


def test_resume_with_a_bad_override_is_a_config_error(tmp_path, config_file):
    out = tmp_path / "m.npz"
    invoke("train", config_file, "--set", "train.epochs=1", "--out", out)
    assert_error(invoke("train", "--resume", out, "--set", "train.epochs=0"), 2, "train.epochs")


def test_an_unwritable_out_fails_before_any_data_is_loaded(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    # --offline with no data would be exit 3; the checkpoint problem must come first
    result = invoke(
        "train", "mlp", "--offline", "--data-dir", tmp_path / "none", "--out", blocker / "m.npz"
    )
    assert_error(result, 4, "cannot write checkpoint")


def test_seconds_to_target_is_the_clock_when_validation_first_reached_it(tmp_path, idx_folder):
    path = write_config(tmp_path / "t.yaml", small_config(idx_folder, epochs=3))
    plain = records(invoke("train", path, "--dry-run").stdout)
    assert "seconds_to_target" not in plain[-1]
    out = tmp_path / "t.npz"
    first = records(invoke("train", path, "--out", out, "--target-accuracy", "0").stdout)
    epochs, summary = first[:-1], first[-1]
    clocks = [r["wall_seconds"] for r in epochs]
    assert clocks == sorted(clocks) and 0 < clocks[0] < summary["wall_seconds"]
    assert summary["seconds_to_target"] == clocks[0]  # any accuracy reaches 0 at once
    # A target first reached at a later epoch gives that epoch's clock; one never reached, null.
    vals = [r["val_accuracy"] for r in epochs]
    later = next(i for i, v in enumerate(vals) if v > vals[0])
    result = invoke(
        "train", path, "--out", out, "--overwrite", "--target-accuracy", str(vals[later])
    )
    again = records(result.stdout)
    assert again[-1]["seconds_to_target"] == again[later]["wall_seconds"]
    slow = ("--set", "optimizer.lr=1e-9")  # learns nothing: never reaches 0.9
    result = invoke("train", path, *slow, "--out", out, "--overwrite", "--target-accuracy", "0.9")
    assert result.exit_code == 1 and records(result.stdout)[-1]["seconds_to_target"] is None


def test_the_run_clock_goes_on_across_a_resume(tmp_path, idx_folder):
    path = write_config(tmp_path / "c.yaml", small_config(idx_folder, epochs=2))
    part = tmp_path / "c.npz"
    first = records(invoke("train", path, "--set", "train.epochs=1", "--out", part).stdout)
    rest = records(invoke("train", "--resume", part, "--set", "train.epochs=2").stdout)
    assert rest[0]["epoch"] == 2 and rest[0]["wall_seconds"] > first[-1]["wall_seconds"]
