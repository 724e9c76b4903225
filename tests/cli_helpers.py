"""Running bptrain in tests: in-process through click's CliRunner, or as a real subprocess."""

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bptrain.cli.main import cli


def small_config(folder: Path, **train) -> dict:
    """A quick MLP run on the synthetic `idx` dataset in `folder`."""
    return {
        "seed": 3,
        "data": {"dataset": "idx", "dir": str(folder), "validation": 100},
        "model": {
            "layers": [
                {"type": "flatten"},
                {"type": "affine", "units": 32, "init": "he"},
                {"type": "relu"},
                {"type": "affine", "units": 10, "init": "he"},
            ],
            "loss": {"type": "softmax_with_loss"},
        },
        "optimizer": {"type": "sgd", "lr": 0.05},
        "train": {"epochs": 3, "batch_size": 50, **train},
    }


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def invoke(*args, input=None):
    """Run the CLI in-process; returns click's Result (stdout and stderr kept apart)."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def records(stdout: str) -> list[dict]:
    """Parse JSON Lines; fails the test on any line that is not JSON."""
    return [json.loads(line) for line in stdout.splitlines()]


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.pop("BPTRAIN_MIRROR", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn(*args, **kwargs) -> subprocess.Popen:
    """Start `python -m bptrain ARGS` as a real process."""
    return subprocess.Popen(
        [sys.executable, "-m", "bptrain", *map(str, args)], env=subprocess_env(), **kwargs
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
    "wall_seconds",
}
SUMMARY_KEYS = {
    "event",
    "test_loss",
    "test_accuracy",
    "best_val_accuracy",
    "epochs",
    "seconds",
    "wall_seconds",
    "seed",
    "checkpoint",
    "weights",
}


def assert_error(result, code, *needles):
    """The documented failure shape: exit code, nothing on stdout, one Error: line."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


TIMING_KEYS = ("seconds", "samples_per_second", "wall_seconds", "seconds_to_target")


def without_timing(recs):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in recs]


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, options: str = "size=64k") -> Iterator[Path]:
    """A real tmpfs at `folder` for the block (`ro`, a small `size`); skips the test where the
    machine does not let this process mount one (not root, no CAP_SYS_ADMIN, no mount(8))."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("needs mount(8) to make a real tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill(folder: Path) -> None:
    """Write into `folder` until its file system says it is full (ENOSPC)."""
    with open(folder / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
