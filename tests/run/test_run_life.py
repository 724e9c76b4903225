"""The outside test's findings about a run's life, each through the real CLI (processes, signals,
files): nothing lost (D1-D3), no silent wrong results (W2), no bug exits (C1, C4, C5), clear
errors (U1, U3-U6, M1, M4) and the conveniences of section 6."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from bptrain import console
from bptrain.errors import ExitCode
from bptrain.run import checkpoint, outfile
from cli_helpers import invoke, records, small_config, spawn, subprocess_env, write_config
from data_helpers import make_idx_dataset

README = Path(__file__).resolve().parents[2] / "docs" / "records.md"  # the exit-code table


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def long_run(config_file, out, *extra, **popen):
    """A run that lasts until it is stopped; returns once its first epoch record arrived."""
    proc = spawn(
        "train", config_file, "--set", "train.epochs=100000", "--out", out, *extra,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen,
    )  # fmt: skip
    assert b'"epoch"' in proc.stdout.readline()
    return proc


# --- D1: an existing --out is never replaced without --overwrite ---------------------------


def test_a_new_run_refuses_an_existing_out_before_loading_data(tmp_path, config_file):
    out = tmp_path / "keep.npz"
    assert invoke("train", config_file, "--set", "train.epochs=1", "--out", out).exit_code == 0
    before = digest_of(out)
    # --offline with no data would be exit 3: the refusal must come first
    again = invoke("train", "mlp", "--offline", "--data-dir", tmp_path / "none", "--out", out)
    assert again.exit_code == 4 and again.stdout == ""
    (line,) = error_lines(again.stderr)
    assert "already exists" in line and "--overwrite" in line
    assert digest_of(out) == before
    replaced = invoke("train", config_file, "--set", "seed=9", "--out", out, "--overwrite")
    assert replaced.exit_code == 0 and digest_of(out) != before
    resumed = invoke("train", "--resume", out, "--out", out, "--set", "train.epochs=4")
    assert resumed.exit_code == 0, resumed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.npz", "small.yaml"]  # no locks


def test_an_interrupted_new_run_leaves_the_old_checkpoint_alone(tmp_path, config_file):
    out = tmp_path / "keep.npz"
    invoke("train", config_file, "--set", "train.epochs=1", "--out", out)
    before = digest_of(out)
    proc = spawn("train", config_file, "--out", out, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 4 and b"already exists" in stderr
    assert digest_of(out) == before


# --- D2: names cannot collide; a second writer fails ----------------------------------------


def test_default_names_reserved_in_the_same_second_differ(tmp_path):
    first_run = outfile.reserved_default(tmp_path, "mlp")
    with first_run as first, outfile.reserved_default(tmp_path, "mlp") as second:
        assert first != second and first.parent == second.parent == tmp_path
        assert re.fullmatch(r"mlp-\d{8}-\d{6}(-\d+)?\.npz", second.name)


def test_two_runs_started_together_write_two_checkpoints(tmp_path, config_file):
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    runs = [
        spawn("-q", "train", config_file, "--seed", seed, cwd=tmp_path, **pipes) for seed in (1, 2)
    ]
    summaries = []
    for proc in runs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        summaries.append(records(stdout.decode())[-1])
    paths = {s["checkpoint"] for s in summaries}
    assert len(paths) == 2
    for summary in summaries:
        ckpt = checkpoint.load(tmp_path / summary["checkpoint"])
        assert ckpt.info.seed == summary["seed"]


def test_a_second_process_writing_the_same_out_fails_with_exit_4(tmp_path, config_file):
    out = tmp_path / "shared.npz"
    first = long_run(config_file, out)
    try:
        second = invoke("train", config_file, "--out", out, "--overwrite")
        assert second.exit_code == 4, second.stderr
        (line,) = error_lines(second.stderr)
        assert f"pid {first.pid}" in line and "another bptrain process" in line
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert checkpoint.load(out).info.seed == 3  # the first run's, never the second's


# --- D3: SIGTERM and SIGHUP are handled like the first Ctrl-C --------------------------------


@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [
        (signal.SIGTERM, ExitCode.TERMINATED, "terminated"),
        (signal.SIGHUP, ExitCode.HANGUP, "hung up"),
        (signal.SIGINT, ExitCode.INTERRUPTED, "interrupted"),
    ],
)
def test_signals_checkpoint_the_current_step(tmp_path, config_file, signum, code, word):
    out = tmp_path / "sig.npz"
    proc = long_run(config_file, out)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code == 128 + signum
    (line,) = error_lines(stderr.decode())
    assert line.startswith(f"Error: {word}") and "--resume" in line and str(out) in line
    assert "Traceback" not in stderr.decode()
    ckpt = checkpoint.load(out)
    assert not ckpt.complete and ckpt.epochs >= 1
    resumed = invoke("train", "--resume", out, "--set", f"train.epochs={ckpt.epochs + 1}")
    assert resumed.exit_code == 0, resumed.stderr


def test_a_save_cleans_up_temp_files_of_a_killed_save(tmp_path, config_file):
    out = tmp_path / "m.npz"
    dead = tmp_path / ".m.npz.999999999.0badc0de.tmp"  # no such pid: a killed save
    old = tmp_path / ".m.npz.abcd1234.tmp"  # the name an earlier bptrain gave its temp files
    alive = tmp_path / f".m.npz.{os.getppid()}.00000000.tmp"  # a live writer's: kept
    for path in (dead, old, alive):
        path.write_bytes(b"half a checkpoint")
    assert invoke("train", config_file, "--set", "train.epochs=1", "--out", out).exit_code == 0
    assert not dead.exists() and not old.exists() and alive.exists()


# --- W2, U3-U6: checkpoints --------------------------------------------------------------------


def _edit_meta(path: Path, edit, redigest: bool = False) -> None:
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    edit(meta, arrays)
    if redigest:
        meta["digest"] = checkpoint.digest(meta, arrays)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def test_an_edited_metadata_that_keeps_every_shape_is_refused(tmp_path, config_file):
    out = tmp_path / "m.npz"
    invoke("train", config_file, "--set", "train.epochs=1", "--out", out)

    def relu_to_tanh(meta, arrays):
        meta["config"]["model"]["layers"][2]["type"] = "tanh"

    _edit_meta(out, relu_to_tanh)
    for args in (["eval", out], ["train", "--resume", out]):
        result = invoke(*args)
        assert result.exit_code == 4 and "digest" in result.stderr, result.stderr


def test_eval_on_data_of_another_shape_names_both_shapes(tmp_path):
    small = make_idx_dataset(tmp_path / "idx14", size=14, classes=5, n_train=300, n_test=50)
    config = small_config(small, epochs=1)
    config["model"]["layers"][3]["units"] = 5
    out = tmp_path / "m.npz"
    assert invoke("train", write_config(tmp_path / "c.yaml", config), "--out", out).exit_code == 0
    big = make_idx_dataset(tmp_path / "idx28")
    for args in (["eval", out], ["train", "--resume", out, "--set", "train.epochs=2"]):
        result = invoke(*args, "--data-dir", big)
        assert result.exit_code == 4, result.stderr
        (line,) = error_lines(result.stderr)
        assert "1x14x14 images with 5 classes" in line and "1x28x28 images with 10" in line


def test_an_entry_claiming_a_huge_array_is_refused_before_allocating(tmp_path, config_file):
    import zipfile

    out = tmp_path / "m.npz"
    invoke("train", config_file, "--set", "train.epochs=1", "--out", out)
    with zipfile.ZipFile(out) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    header["shape"] = (100_000_000_000,)
    import io

    fake = io.BytesIO()
    np.lib.format.write_array_header_1_0(fake, header)
    entries["param/1.W.npy"] = fake.getvalue() + b"\0" * 64
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    for args in (["eval", out], ["train", "--resume", out]):
        result = invoke(*args)
        assert result.exit_code == 4 and "param/1.W claims" in result.stderr, result.stderr


def test_a_file_that_is_not_a_zip_gets_no_pickle_advice(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("seed: 1\n")
    result = invoke("eval", path)
    assert result.exit_code == 4 and "not a zip archive" in result.stderr
    assert "pickle" not in result.stderr


def test_resuming_a_finished_run_says_so_and_only_tests(tmp_path, config_file):
    out = tmp_path / "m.npz"
    first = records(invoke("train", config_file, "--out", out).stdout)
    again = invoke("train", "--resume", out)
    assert again.exit_code == 0
    assert "training already complete (3 epochs)" in again.stderr
    assert [r["event"] for r in records(again.stdout)] == ["summary"]
    assert records(again.stdout)[0]["test_accuracy"] == first[-1]["test_accuracy"]


# --- U1: --resume finds the data where the run trained ---------------------------------------


def test_the_printed_resume_hint_works_as_printed(tmp_path, idx_folder):
    config = small_config(idx_folder)
    config["data"]["dir"] = None
    path = write_config(tmp_path / "c.yaml", config)
    out = tmp_path / "m.npz"
    first = invoke("train", path, "--data-dir", idx_folder, "--set", "train.epochs=1", "--out", out)
    assert first.exit_code == 0, first.stderr
    resumed = invoke("train", "--resume", out, "--set", "train.epochs=2")  # no data options
    assert resumed.exit_code == 0, resumed.stderr
    same = invoke("train", "--resume", out, "--set", "data.dataset=idx", "--epochs", "3")
    assert same.exit_code == 0, same.stderr  # a --set equal to the stored value is fine
    other = invoke("train", "--resume", out, "--set", "data.dataset=mnist")
    assert other.exit_code == 2 and "cannot change" in other.stderr


# --- C1, C4, C5: no bug exits ------------------------------------------------------------------


def test_closed_stderr_does_not_stop_training(tmp_path, config_file):
    out = tmp_path / "p.npz"
    proc = spawn(
        "train", config_file, "--set", "train.epochs=5", "--out", out,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.stderr.readline()
    proc.stderr.close()  # `2>&1 | head -n 1`
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert [r["event"] for r in records(stdout.decode())] == ["epoch"] * 5 + ["summary"]
    assert checkpoint.load(out).complete


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_stderr_and_stdout_on_a_full_disk(tmp_path, config_file):
    out = tmp_path / "f.npz"
    with open("/dev/full", "w") as full:
        quiet = subprocess.run(
            [sys.executable, "-m", "bptrain", "train", config_file, "--out", out],
            stdout=subprocess.PIPE, stderr=full, env=subprocess_env(), timeout=60,
        )  # fmt: skip
        assert quiet.returncode == 0 and records(quiet.stdout.decode())[-1]["event"] == "summary"
        loud = subprocess.run(
            [sys.executable, "-m", "bptrain", "train", config_file, "--out", out, "--overwrite"],
            stdout=full, stderr=subprocess.PIPE, env=subprocess_env(), timeout=60,
        )  # fmt: skip
    assert loud.returncode == ExitCode.OUTPUT == 74
    (line,) = error_lines(loud.stderr.decode())
    assert "cannot write results to stdout" in line and "bug" not in line
    assert checkpoint.load(out).epochs == 1  # the epoch whose record failed is checkpointed


# --- M1, M4: flags anywhere, exit codes from one enum --------------------------------------------


def test_global_flags_work_after_the_subcommand(config_file, tmp_path):
    quiet = invoke("train", config_file, "-q", "--out", tmp_path / "a.npz")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    loud = invoke("train", "nope", "--traceback")
    assert loud.exit_code == 2 and "Traceback" in loud.stderr
    verbose = invoke("gradcheck", "mlp", "--coords", "2", "-v")
    assert "1.W" in verbose.stderr


def test_the_readme_and_help_list_every_exit_code():
    text = README.read_text()
    assert console.exit_codes_markdown() in text
    help_text = invoke("train", "--help").stdout
    for code in ExitCode:
        assert re.search(rf"^\s+{code.value}\s+{re.escape(code.meaning[:20])}", help_text, re.M)


# --- section 6: conveniences ------------------------------------------------------------------


def test_shortcuts_set_their_config_paths():
    result = invoke(
        "train", "mlp", "--epochs", "3", "--lr", "0.5", "--batch-size", "64", "--seed", "7",
        "--print-config",
    )  # fmt: skip
    config = yaml.safe_load(result.stdout)
    assert config["train"]["epochs"] == 3 and config["train"]["batch_size"] == 64
    assert config["optimizer"]["lr"] == 0.5 and config["seed"] == 7


def test_dry_run_trains_a_few_batches_and_saves_nothing(tmp_path, config_file):
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "bptrain", "-v", "train", config_file, "--dry-run", "--threads=1"],
        capture_output=True, cwd=work, env=subprocess_env(), timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    recs = records(result.stdout.decode())
    assert [r["event"] for r in recs] == ["epoch", "summary"]
    assert recs[-1]["dry_run"] is True and recs[-1]["checkpoint"] is None
    assert list(work.iterdir()) == []
    assert "150 train" in result.stderr.decode()  # 3 batches of 50
    assert "BLAS threads: 1" in result.stderr.decode()


def test_progress_lines_in_a_log_when_stderr_is_not_a_terminal(tmp_path, config_file):
    result = invoke("train", config_file, "--out", tmp_path / "m.npz", "--progress-every", "1e-9")
    assert re.search(r"epoch 1/3: batch \d+/10, loss", result.stderr), result.stderr
    quiet = invoke(
        "-q", "train", config_file, "--out", tmp_path / "n.npz", "--progress-every", "1e-9"
    )
    assert quiet.stderr == ""


def test_shell_completion_offers_the_presets():
    env = subprocess_env() | {
        "_BPTRAIN_COMPLETE": "bash_complete",
        "COMP_WORDS": "bptrain train ml",
        "COMP_CWORD": "2",
    }
    done = subprocess.run(
        [sys.executable, "-c", "from bptrain.cli import main; main()"],
        capture_output=True, env=env, timeout=60,
    )  # fmt: skip
    assert "plain,mlp" in done.stdout.decode() and "plain,mlp-deep" in done.stdout.decode()


def test_sigterm_while_downloading_ends_with_143_and_leaves_no_part_file(tmp_path):
    import threading

    from data_helpers import LoopbackServer, stall_midway, synthetic_files

    files = synthetic_files()
    sent = threading.Event()
    with LoopbackServer() as server:
        for name, data in files.items():
            server.routes[f"/m/{name}.gz"] = stall_midway(data * 50, server.stopping, sent=sent)
        proc = spawn(
            "train", "mlp", "--set", "data.dataset=idx", "--mirror", server.url + "m/",
            "--data-dir", tmp_path / "cache", "--out", tmp_path / "m.npz",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert sent.wait(30)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143 and stdout == b""
    assert error_lines(stderr.decode()) == ["Error: terminated (SIGTERM)"]
    assert not (tmp_path / "m.npz").exists()
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_a_run_that_diverges_keeps_the_checkpoint_of_its_last_good_epoch(tmp_path, idx_folder):
    config = small_config(idx_folder, epochs=6)
    config["model"]["loss"] = {"type": "identity_with_mse"}
    config["optimizer"]["lr"] = 10  # diverges in epoch 2 on the synthetic data
    out = tmp_path / "m.npz"
    result = invoke("train", write_config(tmp_path / "c.yaml", config), "--out", out)
    assert result.exit_code == ExitCode.DIVERGED, result.stderr
    assert "epoch 2" in error_lines(result.stderr)[0]
    ckpt = checkpoint.load(out)  # the epoch-1 checkpoint, whole and finite
    assert ckpt.epochs == 1 and not ckpt.complete


def test_a_signal_after_the_last_epoch_says_so_and_resume_only_tests(tmp_path, config_file):
    from bptrain.errors import Interrupted
    from bptrain.run import session
    from bptrain.run.interrupts import INTERRUPTS

    out = tmp_path / "m.npz"
    seen = []

    def emit(record):  # the last epoch's record: SIGTERM lands before the test evaluation
        seen.append(record)
        if record.get("epoch") == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    request = session.TrainRequest(config=str(config_file), out=str(out))
    with INTERRUPTS.installed(), pytest.raises(Interrupted) as stopped:
        session.train(request, session.Hooks(emit=emit))
    assert stopped.value.exit_code == 143
    assert "after the last epoch, before the test evaluation" in str(stopped.value)
    assert [r["event"] for r in seen] == ["epoch"] * 3  # no summary: the test did not run
    assert checkpoint.load(out).epochs == 3 and not checkpoint.load(out).complete
    resumed = invoke("train", "--resume", out)
    assert resumed.exit_code == 0 and "training already complete (3 epochs)" in resumed.stderr
    assert [r["event"] for r in records(resumed.stdout)] == ["summary"]
    assert checkpoint.load(out).complete
