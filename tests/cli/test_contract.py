"""The command line contract: JSON Lines on stdout, one Error: line, exit codes, pipes, Ctrl-C."""

import math
import signal
import subprocess
import sys

import pytest

from bptrain.run import checkpoint
from cli_helpers import (
    assert_error,
    invoke,
    records,
    spawn,
    subprocess_env,
)


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


def test_version_and_help_document_exit_codes():
    assert invoke("--version").stdout.strip().endswith("0.1.0")
    for args in ([], ["train"], ["eval"], ["gradcheck"], ["download"]):
        result = invoke(*args, "-h")
        assert result.exit_code == 0 and "130" in result.stdout and "diverged" in result.stdout


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


def test_bare_bptrain_shows_help_on_stderr():
    result = invoke()
    assert result.exit_code == 2 and result.stdout == "" and "Commands:" in result.stderr


@pytest.mark.parametrize("command", ["train", "graph", "plot", "summary"])
def test_help_says_a_file_error_is_exit_4_and_74_is_stdout_alone(command):
    help_text = " ".join(invoke(command, "--help").stdout.split())
    four = help_text.split(" 4 ", 1)[1].split(" 5 ", 1)[0]
    assert "--out exists, is not a regular file, or cannot be written" in four
    seventy_four = help_text.split(" 74 ", 1)[1].split(" 129 ", 1)[0]
    assert seventy_four.startswith("stdout could not be written")
