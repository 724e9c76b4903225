"""Data-parallel training through a real `mpiexec -n 2` (the `mpi` extra: mpi4py + mpich)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bptrain.run import checkpoint
from cli_helpers import records, small_config, subprocess_env, without_timing, write_config

MPIEXEC = Path(sys.executable).parent / "mpiexec"
try:
    import mpi4py  # noqa: F401

    HAVE_MPI = MPIEXEC.exists()
except ImportError:
    HAVE_MPI = False
pytestmark = pytest.mark.skipif(
    not HAVE_MPI, reason="the mpi extra (mpi4py and the mpich wheel's mpiexec) is not installed"
)
HERE = Path(__file__).parent


def mpi(*args, n=2, timeout=120, **kwargs):
    """`mpiexec -n N bptrain ARGS` as a real job."""
    command = [str(MPIEXEC), "-n", str(n), sys.executable, "-m", "bptrain", *map(str, args)]
    return subprocess.run(
        command, env=subprocess_env(), capture_output=True, text=True, timeout=timeout, **kwargs
    )


def single(*args):
    command = [sys.executable, "-m", "bptrain", *map(str, args)]
    return subprocess.run(command, env=subprocess_env(), capture_output=True, text=True)


@pytest.fixture
def config(tmp_path, idx_folder):
    return write_config(tmp_path / "small.yaml", small_config(idx_folder, epochs=2))


def test_two_ranks_train_the_weights_of_one_process(tmp_path, config):
    two = mpi("train", config, "--out", tmp_path / "k2.npz")
    one = single("train", config, "--out", tmp_path / "k1.npz", "--threads", "1")
    assert two.returncode == 0 and one.returncode == 0, two.stderr + one.stderr
    a, b = (checkpoint.load(tmp_path / f"k{k}.npz").group("param") for k in (1, 2))
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-6)  # float32 rounding
    two_records, one_records = records(two.stdout), records(one.stdout)
    assert len(two_records) == len(one_records) == 3  # rank 0 alone prints: 2 epochs, summary
    assert [r["ranks"] for r in two_records[:2]] == [2, 2]
    assert all(r["allreduce_seconds"] >= 0 for r in two_records[:2])
    for got, want in zip(two_records, one_records, strict=True):
        assert got["val_accuracy" if "epoch" in got else "test_accuracy"] == pytest.approx(
            want["val_accuracy" if "epoch" in want else "test_accuracy"], abs=1e-9
        )
    assert two.stderr.count("test accuracy") == 1  # one rank logs


@pytest.mark.parametrize(
    ("layers", "sync", "same"),
    [
        ([{"type": "flatten"}, {"type": "affine", "units": 16}, {"type": "relu"},
          {"type": "affine", "units": 4}], False, True),
        ([{"type": "conv2d", "filters": 3, "kernel": 3}, {"type": "batch_norm"},
          {"type": "relu"}, {"type": "max_pool2d", "size": 2}, {"type": "flatten"},
          {"type": "affine", "units": 4}], True, True),
        ([{"type": "conv2d", "filters": 3, "kernel": 3}, {"type": "batch_norm"},
          {"type": "relu"}, {"type": "flatten"}, {"type": "affine", "units": 4}], False, False),
    ],
)  # fmt: skip
def test_float64_weights_match_one_process(tmp_path, layers, sync, same):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"layers": layers, "epochs": 2, "batch_size": 30,
                                "sync_batch_norm": sync}))  # fmt: skip
    command = [str(MPIEXEC), "-n", "2", sys.executable, str(HERE / "mpi_fit.py"), str(spec)]
    result = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    worst = max(json.loads(result.stdout).values())
    if same:  # plain layers, or BatchNorm with statistics summed over the ranks
        assert worst < 1e-10
    else:  # BatchNorm on each rank's half of the batch: another (equally valid) model
        assert worst > 1e-6


@pytest.mark.parametrize(
    ("extra", "code", "needle"),
    [
        (["--set", "optimizer.lr=1e30"], 5, "training diverged"),
        (["--set", "model.layers[1].unitz=3"], 2, "did you mean 'units'"),
        (["--data-dir", "no-such-folder", "--offline"], 3, "no-such-folder"),
        (["--set", "train.epochs=1", "--target-accuracy", "0.999"], 1, "below the target"),
    ],
)
def test_a_failure_ends_every_rank_with_one_error_line(tmp_path, config, extra, code, needle):
    result = mpi("train", config, "--out", tmp_path / "m.npz", *extra, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr


def test_an_existing_out_is_refused_before_any_rank_trains(tmp_path, config):
    out = tmp_path / "m.npz"
    out.write_bytes(b"mine")
    result = mpi("train", config, "--out", out)
    assert result.returncode == 4 and result.stdout == ""
    assert out.read_bytes() == b"mine"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_every_rank_after_the_same_step(tmp_path, config, signum, code):
    out = tmp_path / "m.npz"
    command = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "bptrain", "train", str(config),
               "--set", "train.epochs=100000", "--out", str(out)]  # fmt: skip
    job = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    first = job.stdout.readline()  # an epoch finished: both ranks are in the loop
    assert json.loads(first)["event"] == "epoch"
    time.sleep(0.3)
    os.kill(job.pid, signum)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == code, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "checkpoint saved" in errors[0]
    assert not checkpoint.load(out).complete


def test_a_checkpoint_of_two_ranks_resumes_on_one(tmp_path, config):
    out = tmp_path / "m.npz"
    assert mpi("train", config, "--set", "train.epochs=1", "--out", out).returncode == 0
    resumed = single("train", "--resume", out, "--set", "train.epochs=2", "--threads", "1")
    straight = single("train", config, "--out", tmp_path / "s.npz", "--threads", "1")
    assert resumed.returncode == 0, resumed.stderr
    got, want = without_timing(records(resumed.stdout)), without_timing(records(straight.stdout))
    assert got[-1]["test_accuracy"] == pytest.approx(want[-1]["test_accuracy"], abs=0.011)
    a, b = checkpoint.load(out).group("param"), checkpoint.load(tmp_path / "s.npz").group("param")
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-5)


def test_without_mpi4py_under_a_launcher_the_error_names_the_extra(tmp_path, config):
    code = "import sys; sys.modules['mpi4py'] = None; from bptrain.cli import main; main()"
    env = subprocess_env() | {"PMI_SIZE": "2"}  # what mpiexec sets for each process
    result = subprocess.run([sys.executable, "-c", code, "train", str(config)], env=env,
                            capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "pip install 'bptrain[mpi]'" in result.stderr


def test_without_mpi4py_under_mpiexec_only_rank_0_prints_the_error(tmp_path, config):
    """F26: every rank meets the missing mpi4py; one Error: line for the job, not one a rank."""
    code = "import sys; sys.modules['mpi4py'] = None; from bptrain.cli import main; main()"
    command = [str(MPIEXEC), "-n", "2", sys.executable, "-c", code, "train", str(config)]
    result = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.returncode == 2, result.stderr
    assert len(errors) == 1 and "pip install 'bptrain[mpi]'" in errors[0], result.stderr
