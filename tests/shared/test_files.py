"""bptrain.files: the one writer. Real FIFOs, symlinks, device nodes and read-only folders."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bptrain import files
from bptrain.errors import DestinationError, ExitCode


def test_a_new_file_is_written_whole_and_no_temp_is_left(tmp_path):
    out = tmp_path / "sub" / "a.bin"
    files.check_destination(out, overwrite=False)
    files.write_bytes(out, b"x" * 100_000, overwrite=False)
    assert out.read_bytes() == b"x" * 100_000
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.bin"]


def test_an_existing_file_is_kept_without_overwrite_and_replaced_with_it(tmp_path):
    out = tmp_path / "a.txt"
    out.write_text("mine")
    with pytest.raises(DestinationError, match="already exists") as info:
        files.check_destination(out, overwrite=False)
    assert info.value.exit_code == ExitCode.CHECKPOINT == 4
    with pytest.raises(DestinationError, match="meanwhile"):
        files.write_bytes(out, "new", overwrite=False)
    assert out.read_text() == "mine"
    files.write_bytes(out, "new", overwrite=True)
    assert out.read_text() == "new"


def _specials(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    target = tmp_path / "target.txt"
    target.write_text("target")
    link = tmp_path / "link"
    link.symlink_to(target)
    folder = tmp_path / "folder"
    folder.mkdir()
    found = {"a FIFO": fifo, "a symlink": link, "a folder": folder}
    if os.geteuid() == 0:  # only root may make device nodes: /dev/null's numbers, 1 3
        device = tmp_path / "null"
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        found["a character device"] = device
    return found


@pytest.mark.parametrize("overwrite", [False, True])
def test_special_files_are_refused_and_left_as_they_are(tmp_path, overwrite):
    for kind, path in _specials(tmp_path).items():
        before = os.lstat(path)
        with pytest.raises(DestinationError, match=f"is {kind}") as info:
            files.check_destination(path, overwrite=overwrite)
        assert info.value.exit_code == 4
        with pytest.raises(DestinationError, match=f"is {kind}"):
            files.write_bytes(path, b"data", overwrite=overwrite)
        after = os.lstat(path)
        assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), kind
    assert (tmp_path / "target.txt").read_text() == "target"


def test_an_unwritable_folder_is_found_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DestinationError, match="cannot write --out") as info:
        files.check_destination(blocker / "out.png", overwrite=False)
    assert str(blocker / "out.png") in str(info.value)


def test_a_failed_verification_keeps_the_old_file(tmp_path):
    out = tmp_path / "a.txt"
    out.write_text("old")

    def reject(tmp: Path) -> None:
        assert tmp.read_text() == "half"
        raise DestinationError("does not read back")

    with (
        pytest.raises(DestinationError, match="read back"),
        files.atomic_write(out, overwrite=True, verify=reject) as handle,
    ):
        handle.write(b"half")
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_an_error_inside_the_block_publishes_nothing(tmp_path):
    out = tmp_path / "a.txt"
    with pytest.raises(RuntimeError), files.atomic_write(out, overwrite=False) as handle:
        handle.write(b"partial")
        raise RuntimeError("the work failed")
    assert list(tmp_path.iterdir()) == []


def test_stale_temps_of_dead_writers_go_and_live_ones_stay(tmp_path):
    out = tmp_path / "a.npz"
    dead = tmp_path / ".a.npz.999999999.ab.tmp"
    live = tmp_path / f".a.npz.{os.getppid()}.cd.tmp"
    dead.write_text("x")
    live.write_text("x")
    files.remove_stale_temps(out)  # what atomic_write(clean_stale=True) runs first
    assert not dead.exists() and live.exists()


def test_pid_alive():
    assert files.pid_alive(os.getpid())
    assert not files.pid_alive(999_999_999)
    assert not files.pid_alive("12") and not files.pid_alive(None) and not files.pid_alive(True)


def test_a_full_file_system_is_found_before_any_work(tmp_path):
    from cli_helpers import fill, mounted_tmpfs

    with mounted_tmpfs(tmp_path / "tiny", "size=64k") as tiny:
        fill(tiny)
        with pytest.raises(DestinationError, match="No space left") as info:
            files.check_destination(tiny / "out.png", overwrite=False)
        assert str(tiny / "out.png") in str(info.value)
