"""A checkpoint records whose rounding its layers had (numba or numpy); resuming under the other
choice says so (F23's second half), resuming under the same one says nothing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bptrain.run import checkpoint
from cli_helpers import small_config, subprocess_env, write_config
from data_helpers import make_idx_dataset

pytest.importorskip("numba", reason="the fast extra (numba) is not installed")


def _train(tmp_path, kernels: str, *args: str) -> subprocess.CompletedProcess:
    env = {**subprocess_env(), "BPTRAIN_KERNELS": kernels}
    return subprocess.run(
        [sys.executable, "-m", "bptrain", "train", *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize(("first", "then"), [("numba", "numpy"), ("numpy", "numba")])
def test_resuming_under_the_other_kernels_says_so(tmp_path, first, then):
    data = make_idx_dataset(tmp_path / "idx", n_train=400, n_test=50)
    config = small_config(data, epochs=1)
    config["model"]["layers"].insert(2, {"type": "batch_norm"})
    path = write_config(tmp_path / "bn.yaml", config)
    out = tmp_path / "run.npz"
    done = _train(tmp_path, first, str(path), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert checkpoint.load(out).meta["kernels"] == first

    same = _train(tmp_path, first, "--resume", str(out), "--set", "train.epochs=2")
    assert same.returncode == 0, same.stderr
    assert "kernels" not in same.stderr

    other = _train(tmp_path, then, "--resume", str(out), "--set", "train.epochs=3")
    assert other.returncode == 0, other.stderr
    line = next(x for x in other.stderr.splitlines() if "kernels" in x)
    assert f"trained with the {first} kernels and resumes with the {then}" in line
    assert f"BPTRAIN_KERNELS={first} resumes exactly" in line
    assert checkpoint.load(out).meta["kernels"] == then
    assert np.isfinite(checkpoint.load(out).meta["metrics"]["test_loss"])
