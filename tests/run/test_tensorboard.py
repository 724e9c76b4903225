"""`train --tensorboard DIR` and `sweep --tensorboard DIR`, read back with TensorBoard's own
event reader: the scalars are the epoch records, histograms only when asked for."""

import signal
import subprocess
import sys

import pytest

from bptrain.run import checkpoint
from bptrain.run.tensorboard import EPOCH_SCALARS, SUMMARY_SCALARS
from cli_helpers import assert_error, invoke, records, spawn, subprocess_env
from scale.sweep_helpers import write_spec

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
pytest.importorskip("tensorboardX")


def events(folder):
    """Everything TensorBoard reads from a run folder."""
    reader = event_accumulator.EventAccumulator(
        str(folder), size_guidance={"scalars": 0, "histograms": 0}
    )
    reader.Reload()
    return reader


def scalars(reader, tag):
    return [(event.step, event.value) for event in reader.Scalars(tag)]


def assert_scalars_are_the_records(reader, epochs, summary=None):
    for key, tag in EPOCH_SCALARS.items():
        expected = [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in epochs]
        assert scalars(reader, tag) == expected, tag
    for key, tag in (SUMMARY_SCALARS if summary else {}).items():
        assert scalars(reader, tag) == [(summary["epochs"], pytest.approx(summary[key], rel=1e-6))]


def test_each_epoch_records_numbers_are_scalars_at_its_step(config_file, tmp_path):
    result = invoke("train", config_file, "--tensorboard", tmp_path / "tb",
                    "--out", tmp_path / "run.npz")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    recs = records(result.stdout)
    reader = events(tmp_path / "tb")
    assert len(recs) == 4 and recs[-1]["event"] == "summary"
    assert_scalars_are_the_records(reader, recs[:-1], recs[-1])
    assert reader.Tags()["histograms"] == []


def test_histograms_of_weights_and_gradients_come_with_the_flag(config_file, tmp_path):
    result = invoke("train", config_file, "--tensorboard", tmp_path / "tb",
                    "--tensorboard-histograms", "--out", tmp_path / "run.npz")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    reader = events(tmp_path / "tb")
    names = ["1.W", "1.b", "3.W", "3.b"]
    expected = {f"weights/{n}" for n in names} | {f"gradients/{n}" for n in names}
    assert set(reader.Tags()["histograms"]) == expected
    for tag in expected:
        steps = [event.step for event in reader.Histograms(tag)]
        assert steps == [1, 2, 3], tag
    last = reader.Histograms("weights/1.W")[-1].histogram_value
    weights = checkpoint.load(tmp_path / "run.npz").group("param")["1.W"]
    assert last.num == weights.size
    assert last.min == pytest.approx(float(weights.min())) and last.sum == pytest.approx(
        float(weights.sum()), rel=1e-4, abs=1e-4
    )
    assert reader.Histograms("gradients/1.W")[-1].histogram_value.sum_squares > 0


def test_an_unwritable_folder_is_refused_before_the_data_loads(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = tmp_path / "run.npz"
    # --offline with no data would be exit 3: the folder is checked first.
    result = invoke("train", "mlp", "--offline", "--data-dir", tmp_path / "none",
                    "--tensorboard", blocker / "tb", "--out", out)  # fmt: skip
    assert_error(result, 4, "cannot write --tensorboard", str(blocker / "tb"), "Not a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_histograms_need_a_folder(config_file):
    assert_error(invoke("train", config_file, "--tensorboard-histograms"), 2, "--tensorboard DIR")


def test_a_missing_writer_names_the_extra(config_file, tmp_path):
    stub = tmp_path / "site" / "tensorboardX"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('No module named tensorboardX')\n")
    env = subprocess_env()
    env["PYTHONPATH"] = f"{stub.parent}:{env.get('PYTHONPATH', '')}"
    done = subprocess.run(
        [sys.executable, "-m", "bptrain", "train", config_file, "--tensorboard", tmp_path / "tb"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("Error:")]
    assert "pip install 'bptrain[tensorboard]'" in line
    assert not (tmp_path / "tb").exists()


def test_an_interrupted_run_leaves_its_epochs_readable(config_file, tmp_path):
    proc = spawn(
        "train", config_file, "--set", "train.epochs=100000", "--out", tmp_path / "run.npz",
        "--tensorboard", tmp_path / "tb", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    first = proc.stdout.readline()
    assert b'"epoch"' in first
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130
    epochs = records((first + rest).decode())
    reader = events(tmp_path / "tb")
    assert_scalars_are_the_records(reader, epochs)
    assert len(epochs) >= 1


def test_a_sweep_writes_one_run_per_trial(config_file, tmp_path):
    pytest.importorskip("optuna")
    spec = write_spec(tmp_path, config_file, trials=2, pruner="none", set={"train.epochs": 2})
    out, board = tmp_path / "out", tmp_path / "tb"
    result = invoke("sweep", spec, "--out", out, "--tensorboard", board)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in board.iterdir()) == ["trial-0000", "trial-0001"]
    for number in (0, 1):
        history = checkpoint.load(out / f"trial-{number:04d}.npz").history
        assert_scalars_are_the_records(events(board / f"trial-{number:04d}"), history)
