"""A sweep study survives a full disk and a cut journal (issue 33, F2 and F9): real tmpfs mounts,
real journals cut and damaged byte by byte, through the real CLI, and a rerun that goes on."""

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bptrain.scale.sweep.worker import HOST
from cli_helpers import invoke, records, small_config, spawn, write_config
from scale.sweep_helpers import split, study_of, write_spec

STATES = {"COMPLETE", "PRUNED", "FAIL"}


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def journal_lines(path: Path) -> list[dict]:
    """Every line of a journal, which must be whole records only."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), data[-80:]
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def finished(storage: str, name: str = "spec") -> list:
    trials = study_of(storage, name).get_trials()
    assert all(t.state.is_finished() for t in trials), [t.state.name for t in trials]
    return trials


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "64k"):
    """A small tmpfs mounted at `folder`, or a skip where this machine allows no mounting."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True, text=True,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """A file that leaves `leave` bytes free in `folder`'s file system."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    filler = folder / "fill"
    filler.write_bytes(b"\0" * max(0, free - leave))
    return filler


@pytest.fixture
def sweep_spec(tmp_path, idx_folder):
    config = write_config(tmp_path / "small.yaml", small_config(idx_folder))
    return write_spec(tmp_path, config, set={"train.epochs": 3}, trials=6, pruner="none")


def test_a_full_disk_is_exit_4_naming_the_journal_and_a_rerun_continues(tmp_path, sweep_spec):
    with tmpfs(tmp_path / "tiny") as tiny:
        journal = tiny / "j.log"
        filler = fill(tiny, leave=8192)  # room for about two trials' records
        args = ("sweep", sweep_spec, "--storage", journal, "--workers", 2)
        full = invoke(*args, "--out", tmp_path / "out")
        assert full.exit_code == 4, full.stderr
        errors = error_lines(full)
        assert len(errors) == 1 and "Traceback" not in full.stderr, full.stderr
        assert f"cannot write the sweep journal {journal}: No space left on device" in errors[0]
        assert "run the same command again to continue the study" in errors[0]
        stopped = records(full.stdout)
        assert stopped and {r["state"] for r in stopped} <= STATES  # never RUNNING
        before = journal_lines(journal)  # whole lines only: the partial write was taken back
        assert before
        filler.unlink()
        again = invoke(*args, "--out", tmp_path / "out")
        assert again.exit_code == 0, again.stderr
        trials, summary = split(again.stdout)
        assert {t["state"] for t in trials} <= STATES
        assert journal_lines(journal)[: len(before)] == before  # appended to, never rewritten
        stored = finished(str(journal))
        counted = [t for t in stored if t.state.name != "FAIL" or t.user_attrs.get("counted")]
        assert len(counted) == 6 and summary["n_complete"] == 6
        assert [t.number for t in stored] == list(range(len(stored)))


def test_a_read_only_journal_is_exit_4_before_any_trial(tmp_path, sweep_spec):
    with tmpfs(tmp_path / "ro") as folder:
        journal = folder / "j.log"
        first = invoke("sweep", sweep_spec, "--storage", journal, "--trials", 1,
                       "--out", tmp_path / "out")  # fmt: skip
        assert first.exit_code == 0, first.stderr
        data = journal.read_bytes()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        more = invoke("sweep", sweep_spec, "--storage", journal, "--trials", 2,
                      "--out", tmp_path / "out")  # fmt: skip
        assert more.exit_code == 4 and more.stdout == "", more.stderr
        assert error_lines(more) == [
            f"Error: cannot write the sweep journal {journal}: Read-only file system (choose "
            "another path, or fix the folder's permissions or free space)"
        ]
        assert journal.read_bytes() == data
        assert not (tmp_path / "out" / "trial-0001.npz").exists()


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory, idx_folder):
    """A finished two-trial study to cut and damage: (spec, its out folder)."""
    folder = tmp_path_factory.mktemp("study")
    config = write_config(folder / "small.yaml", small_config(idx_folder))
    spec = write_spec(folder, config, set={"train.epochs": 2}, trials=2, pruner="none")
    result = invoke("sweep", spec, "--out", folder / "out")
    assert result.exit_code == 0, result.stderr
    return spec, folder / "out"


def copy_study(finished_study, tmp_path: Path, journal: bytes) -> Path:
    """The finished study's folder with `journal` as its journal."""
    out = tmp_path / "out"
    shutil.copytree(finished_study[1], out)
    (out / "journal.log").write_bytes(journal)
    return out


def last_lines_cuts(data: bytes, lines: int = 4, every: int = 89) -> list[int]:
    """Cut points every `every` bytes through the last `lines` records, plus the middle of each
    of them and just before the final newline."""
    starts = [i + 1 for i, byte in enumerate(data) if byte == ord("\n")][-lines - 1 : -1]
    cuts = set(range(starts[0] + 1, len(data), every))
    cuts |= {(a + b) // 2 for a, b in zip(starts, [*starts[1:], len(data)], strict=True)}
    return sorted(cuts | {len(data) - 1})


def test_cut_points_are_the_last_records():
    data = b'{"op_code":1}\n{"op_code":2,"a":3}\n{"op_code":3}\n'
    cuts = last_lines_cuts(data, lines=2, every=5)
    assert cuts[0] > data.index(b"\n") and cuts[-1] == len(data) - 1


def test_a_journal_cut_anywhere_in_its_last_records_is_repaired_and_continued(
    tmp_path, finished_study
):
    spec, original = finished_study
    data = (original / "journal.log").read_bytes()
    cuts = last_lines_cuts(data)
    assert len(cuts) >= 6
    zeros = len(data) + 512  # a crash can leave a block of NUL bytes after the last record
    for cut in [*cuts, zeros]:
        case = tmp_path / f"cut-{cut}"
        damaged = data[:cut] if cut < zeros else data + b"\0" * 512
        out = copy_study(finished_study, case, damaged)
        journal = out / "journal.log"
        result = invoke("sweep", spec, "--out", out, "--trials", 3)
        assert result.exit_code == 0, (cut, result.stderr)
        if not damaged.endswith(b"\n"):  # the repair said what it did
            assert f"{journal}: its last line" in result.stderr, (cut, result.stderr)
        kept = data[: data.rfind(b"\n", 0, cut) + 1]
        if cut in (len(data) - 1, zeros):
            kept = data  # a whole record that lacked its newline: finished, not dropped
        assert journal.read_bytes().startswith(kept), cut
        trials, _ = split(result.stdout)
        assert trials and {t["state"] for t in trials} <= STATES
        stored = finished(str(journal))
        counted = [t for t in stored if t.state.name != "FAIL" or t.user_attrs.get("counted")]
        assert len(counted) == 3, cut


def damage_cases(data: bytes) -> dict[str, tuple[bytes, int]]:
    """Damaged journals, each with the (1-based) line the error must name."""
    lines = data.splitlines(keepends=True)
    garbage = lines[:]
    garbage[2] = garbage[2][:20] + b"#garbage#garbage#garbage#garb" + garbage[2][20:]
    binary = lines[:]
    binary[3] = bytes((i * 97 + 13) % 256 for i in range(4096)).replace(b"\n", b" ") + b"\n"
    latin = lines[:]
    latin[1] = latin[1].replace(b'"op_code"', b'"op_c\xe9de"')
    blank = lines[:]
    blank.insert(4, b"\n")
    return {
        "garbage in the middle": (b"".join(garbage), 3),
        "random bytes": (b"".join(binary), 4),
        "invalid UTF-8": (b"".join(latin), 2),
        "an empty line": (b"".join(blank), 5),
    }


@pytest.mark.parametrize("damage", ["garbage in the middle", "random bytes", "invalid UTF-8",
                                    "an empty line"])  # fmt: skip
def test_damage_before_the_end_is_exit_4_naming_the_line_and_nothing_is_written(
    tmp_path, finished_study, damage
):
    spec, original = finished_study
    journal_bytes, line = damage_cases((original / "journal.log").read_bytes())[damage]
    out = copy_study(finished_study, tmp_path, journal_bytes)
    listing = sorted(os.listdir(out))
    result = invoke("sweep", spec, "--out", out, "--trials", 3)
    assert result.exit_code == 4 and result.stdout == "", result.stderr
    errors = error_lines(result)
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert errors[0].startswith(f"Error: {out}/journal.log:{line} is damaged ("), errors[0]
    assert (out / "journal.log").read_bytes() == journal_bytes
    assert sorted(os.listdir(out)) == listing


def test_a_journal_that_lost_a_trial_with_a_checkpoint_says_so(tmp_path, finished_study):
    spec, original = finished_study
    data = (original / "journal.log").read_bytes()
    created = data.rindex(b'{"op_code":4,')  # the last trial's creation
    out = copy_study(finished_study, tmp_path, data[: created + 30])
    result = invoke("sweep", spec, "--out", out, "--trials", 3)
    assert result.exit_code == 4 and result.stdout == "", result.stderr
    errors = error_lines(result)
    assert errors[0].startswith(f"Error: {out}/trial-0001.npz is not a trial of study 'spec'")
    assert "or the study lost its last trials" in errors[0]
    assert (out / "journal.log").read_bytes() == data[:created]  # the cut line dropped
    assert (out / "trial-0001.npz").read_bytes() == (original / "trial-0001.npz").read_bytes()


@pytest.mark.parametrize("content", [b"some notes, no newline", b"\x89PNG\r\n\x1a\n\0\0",
                                     b'{"a": 1}\n'])  # fmt: skip
def test_a_storage_file_that_is_no_journal_is_refused_and_left_alone(tmp_path, sweep_spec, content):
    storage = tmp_path / "notes.txt"
    storage.write_bytes(content)
    result = invoke("sweep", sweep_spec, "--storage", storage, "--out", tmp_path / "out")
    assert result.exit_code == 4 and result.stdout == "", result.stderr
    assert error_lines(result)[0].startswith(f"Error: {storage}:1 is damaged (")
    assert storage.read_bytes() == content


def test_an_emptied_journal_beside_trial_checkpoints_says_so(tmp_path, finished_study):
    spec, _ = finished_study
    out = copy_study(finished_study, tmp_path, b"")
    result = invoke("sweep", spec, "--out", out)
    assert result.exit_code == 4 and result.stdout == "", result.stderr
    assert error_lines(result) == [
        f"Error: the sweep journal {out}/journal.log is empty, but {out} holds 2 trial "
        "checkpoint(s) (trial-0000.npz ...): the study's record is lost (restore the journal "
        "from a copy, or move those checkpoints away (or choose another --out) to start a new "
        "study)"
    ]
    assert (out / "journal.log").read_bytes() == b""


def test_a_running_trial_with_no_process_recorded_is_failed_by_the_next_run(
    tmp_path, finished_study
):
    """A journal write that failed (or a cut) right after a trial was created: no host, no pid."""
    spec, original = finished_study
    out = copy_study(finished_study, tmp_path, (original / "journal.log").read_bytes())
    study = study_of(str(out / "journal.log"), "spec")
    orphan = study.ask()
    stale = out / ".trial-0001.npz.lock"  # a worker killed with -9 leaves its lock file
    stale.write_text("999999999")
    unknown = out / ".trial-0099.npz.lock"  # not a finished trial's: never touched
    unknown.write_text("999999999")
    result = invoke("sweep", spec, "--out", out, "--trials", 3)
    assert result.exit_code == 0, result.stderr
    assert f"trial {orphan.number} was left running with no record of its process" in (
        result.stderr
    )
    assert not stale.exists() and unknown.exists()
    stored = finished(str(out / "journal.log"))
    assert stored[orphan.number].state.name == "FAIL"
    assert HOST not in stored[orphan.number].user_attrs.values()


def test_the_retrain_line_carries_the_sweeps_data_options(tmp_path, idx_folder):
    data = tmp_path / "my data"  # a space: the printed line must quote it
    shutil.copytree(idx_folder, data)
    config = small_config(idx_folder)
    config["data"]["dir"] = str(tmp_path / "not-here")  # only --data-dir finds the data
    spec = write_spec(tmp_path, write_config(tmp_path / "small.yaml", config), trials=1,
                      pruner="none")  # fmt: skip
    out = tmp_path / "out"
    result = invoke("sweep", spec, "--out", out, "--data-dir", data, "--offline")
    assert result.exit_code == 0, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    command = line.split("retrain it with: ")[1]
    assert command == (f"bptrain train {out}/best.yaml --threads 1 --data-dir '{data}' --offline")
    assert f"# Retrain it: {command}\n" in (out / "best.yaml").read_text()
    words = shlex.split(command)
    retrained = invoke(*words[1:], "--out", tmp_path / "b.npz")  # run as printed
    assert retrained.exit_code == 0, retrained.stderr


def test_a_best_yaml_that_is_a_fifo_is_refused_before_any_trial(tmp_path, sweep_spec):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "best.yaml")
    result = invoke("sweep", sweep_spec, "--out", out)
    assert result.exit_code == 4 and result.stdout == "", result.stderr
    assert error_lines(result)[0].startswith(
        f"Error: best.yaml {out}/best.yaml is a FIFO (named pipe), not a regular file"
    )
    assert sorted(p.name for p in out.iterdir()) == ["best.yaml"]


def test_a_worker_killed_with_9_leaves_no_lock_file(tmp_path, idx_folder):
    config = write_config(tmp_path / "small.yaml", small_config(idx_folder))
    spec = write_spec(tmp_path, config, set={"train.epochs": 80}, trials=2, pruner="none")
    out = tmp_path / "out"
    proc = spawn("sweep", spec, "--workers", 2, "--out", out, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not (out / "trial-0001.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # each worker has written its trial's first epoch
    while not (out / "trial-0000.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "spawn_main"],
                             capture_output=True, text=True).stdout.split()  # fmt: skip
    assert len(workers) == 2, workers
    os.kill(int(workers[0]), signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "ended unexpectedly (exit code -9)" in stderr
    assert {r["state"] for r in records(stdout)[:-1]} == {"COMPLETE", "FAIL"}
    assert list(out.glob(".*.lock")) == []
