"""The command line contract: JSON Lines on stdout, one Error: line, documented exit codes."""

import math
import signal
import subprocess
import sys

import numpy as np
import pytest
import yaml

from bptrain import checkpoint
from bptrain.layers import LAYERS, Affine
from cli_helpers import invoke, records, small_config, spawn, subprocess_env, write_config
from data_helpers import (
    LoopbackServer,
    closed_port_url,
    isolate_env,
    sha256,
    synthetic_files,
)

EPOCH_KEYS = {
    "event",
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "seconds",
    "samples_per_second",
}
SUMMARY_KEYS = {
    "event",
    "test_loss",
    "test_accuracy",
    "best_val_accuracy",
    "epochs",
    "seconds",
    "seed",
    "checkpoint",
}


@pytest.fixture
def config_file(tmp_path, idx_folder):
    return write_config(tmp_path / "small.yaml", small_config(idx_folder))


def assert_error(result, code, *needles):
    """The documented failure shape: exit code, nothing on stdout, one Error: line."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def without_timing(recs):
    return [
        {k: v for k, v in r.items() if k not in ("seconds", "samples_per_second")} for r in recs
    ]


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


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "nope"], "neither a file nor a preset"),
        (["train", "mlp", "--bogus"], "--bogus"),
        (["train", "mlp", "--set", "train.epochs"], "KEY=VALUE"),
        (["train", "mlp", "--set", "model.layers[9].units=3"], "model.layers[9] does not exist"),
        (["train", "mlp", "--set", "optimizer.type=adamm"], "optimizer.type"),
        (["train", "mlp", "--set", "model.layers[1].units=0"], "model.layers[1].units"),
        (["train", "mlp", "--set", "data.dataset=mnistt"], "did you mean 'mnist'?"),
        (["gradcheck", "mlp", "--tolerance", "-1"], "--tolerance"),
        (["eval"], "CHECKPOINT"),
    ],
)
def test_usage_and_config_errors_exit_2(args, needle):
    assert_error(invoke(*args), 2, needle)


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


def test_missing_data_offline_is_a_data_error(tmp_path):
    result = invoke("train", "mlp", "--offline", "--data-dir", tmp_path)
    assert_error(result, 3, "train-images-idx3-ubyte", str(tmp_path))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not-bptrain"])
def test_bad_checkpoints_exit_4(tmp_path, config_file, damage):
    out = tmp_path / "m.npz"
    invoke("train", config_file, "--set", "train.epochs=1", "--out", out)
    if damage == "truncate":
        out.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    elif damage == "garbage":
        out.write_bytes(b"this is not a zip file")
    else:
        np.savez(out, weights=np.zeros(3))
    assert_error(invoke("eval", out), 4, str(out))


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


def test_gradcheck_passes_for_the_presets():
    result = invoke("gradcheck", "mlp")
    assert result.exit_code == 0, result.stderr
    (record,) = records(result.stdout)
    assert record["ok"] and record["tolerance"] == 1e-6 and record["max_relative_error"] < 1e-6
    names = [p["name"] for p in record["parameters"]]
    assert names == ["1.W", "1.b", "3.W", "3.b", "input"]
    assert record["parameters"][0]["shape"] == [784, 50]


class _WrongAffine(Affine):
    """A fixture layer whose weight gradient is off by a factor: gradcheck must catch it."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["W"] *= 1.01
        return dx


def test_gradcheck_fails_with_exit_1_naming_a_wrong_layers_parameter(tmp_path, monkeypatch):
    monkeypatch.setitem(LAYERS._classes, "wrong_affine", _WrongAffine)
    config = small_config(tmp_path)
    config["data"] = {"dataset": "mnist"}
    config["model"]["layers"][3]["type"] = "wrong_affine"
    result = invoke("gradcheck", write_config(tmp_path / "c.yaml", config))
    assert result.exit_code == 1
    (record,) = records(result.stdout)
    assert not record["ok"]
    bad = {p["name"] for p in record["parameters"] if p["max_relative_error"] > 1e-6}
    assert bad == {"3.W"}
    assert "3.W of layer 3 (wrong_affine)" in result.stderr


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


def test_eval_other_splits(tmp_path, config_file):
    out = tmp_path / "m.npz"
    invoke("train", config_file, "--out", out)
    val = records(invoke("eval", out, "--split", "validation").stdout)[0]
    train = records(invoke("eval", out, "--split", "train").stdout)[0]
    assert val["n"] == 100 and train["n"] == 500
    ckpt = checkpoint.load(out)
    assert ckpt.meta["history"][-1]["val_accuracy"] == val["accuracy"]


def test_version_and_help_document_exit_codes():
    assert invoke("--version").stdout.strip().endswith("0.1.0")
    for args in ([], ["train"], ["eval"], ["gradcheck"], ["download"]):
        result = invoke(*args, "-h")
        assert result.exit_code == 0 and "130" in result.stdout and "diverged" in result.stdout


# --- real processes: pipes and signals -----------------------------------------------------


def test_a_closed_pipe_ends_quietly(tmp_path, config_file):
    proc = spawn(
        "train",
        config_file,
        "--set",
        "train.epochs=50",
        "--out",
        tmp_path / "p.npz",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = proc.stdout.readline()
    proc.stdout.close()  # what `| head -n 1` does after its line
    _, stderr = proc.communicate(timeout=60)
    assert b'"event": "epoch"' in first
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr
    assert proc.returncode == 141
    assert checkpoint.load(tmp_path / "p.npz").meta["train_state"]["epoch"] >= 1


def test_shell_pipeline_into_head(tmp_path, config_file):
    out = tmp_path / "h.npz"
    command = (
        f"{sys.executable} -m bptrain train {config_file} --set train.epochs=30 "
        f"--out {out} | head -n 1"
    )
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, env=subprocess_env(), timeout=60
    )
    assert done.returncode == 0
    assert done.stdout.decode().count("\n") == 1
    assert b"Traceback" not in done.stderr


def test_ctrl_c_writes_a_checkpoint_that_resumes(tmp_path, config_file):
    out = tmp_path / "i.npz"
    proc = spawn(
        "train",
        config_file,
        "--set",
        "train.epochs=500",
        "--out",
        out,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert b'"epoch"' in proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert b"Traceback" not in stderr and b"--resume" in stderr
    ckpt = checkpoint.load(out)
    assert ckpt.meta["complete"] is False and ckpt.meta["train_state"]["epoch"] >= 1
    resumed = invoke(
        "train",
        "--resume",
        out,
        "--set",
        "train.epochs=" + str(ckpt.meta["train_state"]["epoch"] + 1),
    )
    assert resumed.exit_code == 0, resumed.stderr
    summary = records(resumed.stdout)[-1]
    assert summary["event"] == "summary" and math.isfinite(summary["test_loss"])


# --- download and data errors through the CLI ------------------------------------------------


def test_download_fetches_from_a_mirror_and_prints_one_record(tmp_path, monkeypatch):
    isolate_env(monkeypatch, tmp_path)
    files = synthetic_files(n_train=20, n_test=10)
    with LoopbackServer() as server:
        mirror = server.mirror("m", files)
        result = invoke(
            "download", "--dataset", "idx", "--mirror", mirror, "--data-dir", tmp_path / "d"
        )
    assert result.exit_code == 0, result.stderr
    (record,) = records(result.stdout)
    assert record["dataset"] == "idx" and len(record["files"]) == 4
    assert {f["source"] for f in record["files"]} == {f"{mirror}{n}.gz" for n in files}
    assert {f["sha256"] for f in record["files"]} == {sha256(b) for b in files.values()}


def test_download_with_every_mirror_failing_exits_3_naming_each_url(tmp_path, monkeypatch):
    isolate_env(monkeypatch, tmp_path)
    dead = closed_port_url()
    with LoopbackServer() as server:
        missing = server.url + "nothing/"
        result = invoke(
            "download",
            "--dataset",
            "idx",
            "--mirror",
            dead,
            "--mirror",
            missing,
            "--data-dir",
            tmp_path / "d",
        )
    assert result.exit_code == 3 and result.stdout == ""
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and dead in error[0] and missing in error[0]
    assert "--mirror" in error[0]


def test_corrupt_data_files_are_a_data_error(tmp_path, idx_folder):
    folder = tmp_path / "broken"
    folder.mkdir()
    for path in idx_folder.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    images = folder / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-100])  # a truncated download
    config = write_config(tmp_path / "c.yaml", small_config(folder))
    assert_error(invoke("train", config), 3, "train-images-idx3-ubyte")


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


# --- found in review: each of these once hung, crashed with a traceback, or misreported ------


@pytest.mark.parametrize(
    ("args", "stdin", "needle"),
    [
        (["train", "mlp", "--set", "foo.bar=1", "--print-config"], None, "--set foo: unknown key"),
        (["train", "mlp", "--set", "train.epochs=0"], None, "--set train.epochs: must be >= 1"),
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
        "train", "-", "--print-config", input="model: {layers: [{type: flatten}]}\ntrain:\n"
    )
    assert result.exit_code == 0 and yaml.safe_load(result.stdout)["train"]["epochs"] == 10


def test_resume_with_a_bad_override_is_a_config_error(tmp_path, config_file):
    out = tmp_path / "m.npz"
    invoke("train", config_file, "--set", "train.epochs=1", "--out", out)
    assert_error(invoke("train", "--resume", out, "--set", "train.epochs=0"), 2, "train.epochs")


def test_bare_bptrain_shows_help_on_stderr():
    result = invoke()
    assert result.exit_code == 2 and result.stdout == "" and "Commands:" in result.stderr


def test_gradcheck_records_how_many_points_were_compared():
    record = records(invoke("gradcheck", "mlp", "--coords", "5").stdout)[0]
    assert all(p["checked"] >= 1 for p in record["parameters"])


def test_an_unwritable_out_fails_before_any_data_is_loaded(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    # --offline with no data would be exit 3; the checkpoint problem must come first
    result = invoke(
        "train", "mlp", "--offline", "--data-dir", tmp_path / "none", "--out", blocker / "m.npz"
    )
    assert_error(result, 4, "cannot write checkpoint")


def test_eval_finds_the_data_where_training_read_it(tmp_path, idx_folder):
    config = small_config(idx_folder, epochs=1)
    config["data"]["dir"] = None
    path = write_config(tmp_path / "c.yaml", config)
    out = tmp_path / "m.npz"
    trained = invoke("train", path, "--data-dir", idx_folder, "--out", out)
    assert trained.exit_code == 0, trained.stderr
    evaluated = invoke("eval", out)  # no --data-dir: the checkpoint remembers the folder
    assert evaluated.exit_code == 0, evaluated.stderr
    assert records(evaluated.stdout)[0]["accuracy"] == records(trained.stdout)[-1]["test_accuracy"]
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
