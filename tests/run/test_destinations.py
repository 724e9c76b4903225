"""F1, F18: every --out (train, graph, plot, summary) follows bptrain.files' rule, through the CLI.

A folder, FIFO, device node or symlink is refused with exit 4 saying what it is, with or
without --overwrite, and is left as it was. A read-only or full file system is exit 4 naming the
path and the reason (never 74, which is stdout's, nor 70), and no file, temporary file or lock
is left behind. Real FIFOs, device nodes (as root) and tmpfs mounts; skipped where not allowed.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from cli_helpers import assert_error, fill, invoke, mounted_tmpfs

COMMANDS = ("train", "graph", "plot", "summary")


@pytest.fixture
def command_args(tmp_path, config_file):
    """How each command is run with a given --out (every command's work is small)."""
    run = tmp_path / "run.jsonl"
    epochs = [
        {"event": "epoch", "epoch": n, "train_loss": 1.0 / n, "train_accuracy": 0.5 + n / 10,
         "val_loss": 1.1 / n, "val_accuracy": 0.4 + n / 10}
        for n in (1, 2)
    ]  # fmt: skip
    run.write_text("".join(json.dumps(record) + "\n" for record in epochs))
    return {
        "train": lambda out: ("train", config_file, "--set", "train.epochs=1", "--out", out),
        "graph": lambda out: ("graph", "shop", "--format", "svg", "--out", out),
        "plot": lambda out: ("plot", run, "--out", out),
        "summary": lambda out: ("summary", "mlp", "--out", out),
    }


def _make(kind: str, folder: Path) -> Path:
    """One kind of path bptrain must never replace, named *.svg (plot reads the suffix)."""
    path = folder / f"{kind.split()[-1]}.svg"
    if kind == "a FIFO":
        os.mkfifo(path)
    elif kind == "a symlink":
        (folder / "target.svg").write_text("the link's target")
        path.symlink_to(folder / "target.svg")
    elif kind == "a folder":
        path.mkdir()
    else:  # /dev/null's numbers (1, 3): harmless even if something did write to it
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("only root (CAP_MKNOD) may make a device node; the other kinds ran")
    return path


def _identity(path: Path) -> tuple[int, int, int]:
    info = os.lstat(path)
    return info.st_mode, info.st_ino, info.st_rdev


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
@pytest.mark.parametrize("kind", ["a FIFO", "a symlink", "a folder", "a character device"])
@pytest.mark.parametrize("command", COMMANDS)
def test_a_special_out_is_refused_saying_what_it_is_and_left_alone(
    tmp_path, command_args, command, kind, overwrite
):
    folder = tmp_path / "specials"
    folder.mkdir()
    path = _make(kind, folder)
    before, listing = _identity(path), sorted(p.name for p in folder.iterdir())
    flags = ("--overwrite",) if overwrite else ()
    result = invoke(*command_args[command](path), *flags)
    assert_error(result, 4, f"--out {path} is {kind}", "not a regular file")
    assert _identity(path) == before
    assert sorted(p.name for p in folder.iterdir()) == listing  # no temp or lock file left
    if kind == "a symlink":
        assert (folder / "target.svg").read_text() == "the link's target"
    if kind == "a folder":
        assert list(path.iterdir()) == []


def test_a_symlink_resume_is_refused_and_its_target_kept(tmp_path, config_file):
    out = tmp_path / "m.npz"
    assert invoke("train", config_file, "--set", "train.epochs=1", "--out", out).exit_code == 0
    link = tmp_path / "latest.npz"
    link.symlink_to(out)
    before = out.read_bytes()
    result = invoke("train", "--resume", link, "--set", "train.epochs=2")
    assert_error(result, 4, f"--resume {link} is a symlink", str(out))
    assert link.is_symlink() and out.read_bytes() == before


@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_file_system_is_exit_4_before_any_work(tmp_path, command_args, command):
    with mounted_tmpfs(tmp_path / "ro", "size=1m,ro") as ro:
        out = ro / "out.svg"
        result = invoke(*command_args[command](out))
        assert_error(result, 4, "cannot write", str(out), "Read-only file system")
        assert list(ro.iterdir()) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_a_full_file_system_is_exit_4_and_leaves_nothing(tmp_path, command_args, command):
    with mounted_tmpfs(tmp_path / "full", "size=64k") as full:
        fill(full)
        out = full / "out.svg"
        result = invoke(*command_args[command](out))
        assert_error(result, 4, "cannot write", str(out), "No space left on device")
        assert [p.name for p in full.iterdir()] == ["filler"]


@pytest.mark.parametrize("command", ["graph", "plot", "summary"])
def test_a_full_file_system_keeps_the_file_overwrite_would_replace(tmp_path, command_args, command):
    with mounted_tmpfs(tmp_path / "full", "size=64k") as full:
        out = full / "out.svg"
        out.write_text("the previous picture")
        fill(full)
        result = invoke(*command_args[command](out), "--overwrite")
        assert_error(result, 4, "cannot write", str(out), "No space left on device")
        assert out.read_text() == "the previous picture"
        assert sorted(p.name for p in full.iterdir()) == ["filler", "out.svg"]


def test_train_finds_a_full_disk_before_loading_any_data(tmp_path):
    with mounted_tmpfs(tmp_path / "full", "size=64k") as full:
        fill(full)
        # With --offline and no data, loading first would be exit 3: the disk must come first.
        result = invoke(
            "train", "mlp", "--offline", "--data-dir", tmp_path / "none", "--out", full / "m.npz"
        )
        assert_error(result, 4, f"cannot write checkpoint {full / 'm.npz'}", "No space left")
        assert [p.name for p in full.iterdir()] == ["filler"]


def test_train_whose_checkpoint_outgrows_the_disk_is_exit_4_and_leaves_nothing(
    tmp_path, config_file
):
    # Room for the lock, not for the checkpoint (the small MLP's is about 100 KB).
    with mounted_tmpfs(tmp_path / "small", "size=16k") as small:
        out = small / "m.npz"
        result = invoke("train", config_file, "--set", "train.epochs=2", "--out", out)
        assert_error(result, 4, f"cannot write checkpoint {out}", "No space left on device")
        assert list(small.iterdir()) == []
