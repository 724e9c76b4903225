"""Format version 2 files written before run/ was split (commit ed0f9ee) load and resume as then.

data/format-v2/ holds a tiny idx dataset, a finished run (complete.npz) and the same run
stopped in its second epoch (midway.npz, with its shuffled sample order); make.py says how
they were made. The old files must load, evaluate to their recorded summary, and resume to the
weights a fresh run of today reaches, bit for bit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bptrain.run import checkpoint
from bptrain.run.model import load_model
from cli_helpers import invoke, records, without_timing

FIXTURE = Path(__file__).parent / "data" / "format-v2"
GROUPS = ("param", "buffer", "optim", "best", "ema")


@pytest.fixture
def old(tmp_path) -> Path:
    """A writable copy (a resume writes its checkpoint back)."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "format-v2"))


def test_the_old_files_load_with_every_group(old):
    complete, midway = checkpoint.load(old / "complete.npz"), checkpoint.load(old / "midway.npz")
    assert complete.meta["format_version"] == midway.meta["format_version"] == 2
    assert complete.meta["bptrain_version"] == "0.1.0"
    assert (complete.complete, complete.epochs, complete.weights) == (True, 3, "ema")
    assert (midway.complete, midway.epochs, midway.step) == (False, 1, 2)
    assert midway.group("state")["order"].shape == (160,)
    for group in GROUPS:
        assert complete.group(group), group
    for weights in ("last", "best", "ema"):
        assert load_model(str(old / "complete.npz"), weights).weights == weights


def test_the_old_run_evaluates_to_its_recorded_summary(old):
    stored = checkpoint.load(old / "complete.npz").metrics
    result = invoke("eval", old / "complete.npz", "--data-dir", old / "data")
    assert result.exit_code == 0, result.stderr
    (record,) = records(result.stdout)
    assert (record["weights"], record["n"]) == ("ema", 60)
    assert record["accuracy"] == stored["test_accuracy"]
    assert record["loss"] == pytest.approx(stored["test_loss"], rel=1e-6)  # another CPU's BLAS


def test_the_old_midway_file_resumes_to_a_fresh_run_of_today(old, tmp_path):
    fresh_out = tmp_path / "fresh.npz"
    fresh = invoke("train", old / "run.yaml", "--data-dir", old / "data", "--out", fresh_out)
    resumed = invoke("train", "--resume", old / "midway.npz", "--data-dir", old / "data")
    assert fresh.exit_code == 0 and resumed.exit_code == 0, resumed.stderr
    (fresh_summary,) = without_timing(records(fresh.stdout)[-1:])
    (resumed_summary,) = without_timing(records(resumed.stdout)[-1:])
    fresh_summary.pop("checkpoint"), resumed_summary.pop("checkpoint")
    assert resumed_summary == fresh_summary
    today, then = checkpoint.load(fresh_out), checkpoint.load(old / "midway.npz")
    recorded = checkpoint.load(old / "complete.npz")
    for group in GROUPS:
        for key, value in today.group(group).items():
            assert np.array_equal(then.group(group)[key], value), (group, key)  # exact resume
            # and, within another CPU's rounding, the weights the old bptrain reached
            assert np.allclose(recorded.group(group)[key], value, rtol=1e-5, atol=1e-7)
