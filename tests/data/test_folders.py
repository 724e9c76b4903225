"""A user's folder of data files: wrong dataset, some files missing, other names, messages."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from bptrain.data import DATASETS, FILE_NAMES, fetch, load
from bptrain.errors import DataError
from data_helpers import (
    FAST,
    FILES,
    INFO,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    LoopbackServer,
    closed_port_url,
    files_in,
    gz,
    idx_bytes,
    make_info,
    sha256,
    synthetic_files,
    write_files,
)

# Same sizes, other bytes in all four files: another "dataset", as fashion-mnist is to mnist.
OTHER_FILES = synthetic_files(seed=1) | {
    TRAIN_LABELS: idx_bytes((np.arange(6) + 1) % 10),
    TEST_LABELS: idx_bytes((np.arange(4) + 1) % 10),
}


def as_seen_by_a_user(line: str, tmp_path: Path) -> str:
    """The line with pytest's long temp folder shown as a typical home folder."""
    return line.replace(str(tmp_path), "/home/user")


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file's bytes, mtime and inode: what "left untouched" means."""
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino)
        for p in sorted(folder.iterdir())
    }


@pytest.fixture
def two_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two known datasets in the dataset table, like mnist and fashion-mnist (same sizes)."""
    monkeypatch.setitem(DATASETS, "alpha", make_info(FILES, name="alpha"))
    monkeypatch.setitem(DATASETS, "beta", make_info(OTHER_FILES, name="beta"))


# ---------------------------------------------------------------- U2: the other dataset's files


@pytest.mark.usefixtures("two_datasets")
@pytest.mark.parametrize("where", ["own-folder", "cache"])
def test_the_other_datasets_files_are_named_not_called_corrupt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    folder = tmp_path / "beta-files" if where == "own-folder" else tmp_path / "cache/alpha"
    write_files(folder, OTHER_FILES)
    before = snapshot(folder)
    data_dir = folder if where == "own-folder" else tmp_path / "cache"
    with caplog.at_level(logging.WARNING), pytest.raises(DataError) as info:
        load("alpha", data_dir, offline=True)
    message = str(info.value)
    assert "these are the beta files (their checksums match)" in message
    assert "--set data.dataset=beta" in message
    assert "corrupt" not in message and "delete" not in message
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert snapshot(folder) == before


@pytest.mark.usefixtures("two_datasets")
def test_the_other_datasets_files_in_a_folder_are_never_replaced(
    server: LoopbackServer, tmp_path: Path
) -> None:
    folder = write_files(tmp_path / "beta-files", OTHER_FILES)
    before = snapshot(folder)
    with pytest.raises(DataError, match="these are the beta files"):
        fetch("alpha", folder, mirrors=[server.mirror("m1", FILES)], **FAST)
    assert server.seen == [] and snapshot(folder) == before


def test_a_corrupt_file_in_a_users_folder_is_never_advised_deleted(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "mine", FILES)
    (folder / f"{TRAIN_LABELS}.gz").write_bytes(gz(idx_bytes(np.full(6, 3, dtype=np.uint8))))
    with pytest.raises(DataError) as info:
        load(INFO, folder, offline=True)
    assert f"{TRAIN_LABELS}.gz is corrupt" in str(info.value)
    assert "delete" not in str(info.value)


# ---------------------------------------------------------------- U7: some of the four files


def test_a_folder_with_three_of_four_files_offline_says_which_is_missing(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "partial", {n: FILES[n] for n in FILE_NAMES[:3]})
    before = snapshot(folder)
    with pytest.raises(DataError) as info:
        fetch(INFO, folder, offline=True)
    message = str(info.value)
    assert f"{folder} holds 3 of the 4 synth files; {TEST_LABELS}(.gz) is missing" in message
    assert len(as_seen_by_a_user(f"Error: {message}", tmp_path)) < 300
    assert snapshot(folder) == before  # no synth/ subfolder, no lock file


def test_a_folder_with_three_of_four_files_gets_only_the_missing_one(
    server: LoopbackServer, tmp_path: Path
) -> None:
    folder = write_files(tmp_path / "partial", {n: FILES[n] for n in FILE_NAMES[:3]})
    before = snapshot(folder)
    mirror = server.mirror("m1", FILES)
    result = fetch(INFO, folder, mirrors=[mirror], **FAST)
    assert [s.path for s in server.seen] == [f"/m1/{TEST_LABELS}.gz"]
    assert result.folder == folder
    assert [f.source for f in result.files] == ["cache"] * 3 + [f"{mirror}{TEST_LABELS}.gz"]
    after = snapshot(folder)
    assert {n: after[n] for n in before} == before  # the user's files are exactly as they were
    assert sorted(after) == sorted([*before, f"{TEST_LABELS}.gz"])  # and nothing else appeared
    assert (folder / f"{TEST_LABELS}.gz").read_bytes() == gz(FILES[TEST_LABELS])


def test_a_partial_folder_with_a_corrupt_file_is_not_repaired(
    server: LoopbackServer, tmp_path: Path
) -> None:
    folder = write_files(tmp_path / "partial", {n: FILES[n] for n in FILE_NAMES[:3]})
    (folder / f"{TRAIN_IMAGES}.gz").write_bytes(b"<html>oops</html>")
    before = snapshot(folder)
    with pytest.raises(DataError) as info:
        fetch(INFO, folder, mirrors=[server.mirror("m1", FILES)], **FAST)
    message = str(info.value)
    assert f"{TRAIN_IMAGES}.gz is corrupt" in message and "delete" not in message
    assert server.seen == [] and snapshot(folder) == before


# ---------------------------------------------------------------- other names for the files


def kaggle_name(name: str) -> str:
    """The widespread Kaggle copy's names: a dot, not a dash, before idx."""
    return name.replace("-idx", ".idx")


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_kaggle_names_are_found_and_verified(tmp_path: Path, compress: bool) -> None:
    folder = tmp_path / "kaggle"
    write_files(folder, {kaggle_name(n): FILES[n] for n in FILE_NAMES}, compress=compress)
    result = fetch(INFO, folder, offline=True)
    suffix = ".gz" if compress else ""
    assert [f.path.name for f in result.files] == [kaggle_name(n) + suffix for n in FILE_NAMES]
    assert [f.sha256 for f in result.files] == [sha256(FILES[n]) for n in FILE_NAMES]
    data = load("idx", folder, offline=True)  # idx: recognised by the name pattern alone
    assert data.x_train.shape == (6, 1, 28, 28) and data.folder == folder


def test_a_kaggle_named_file_with_the_wrong_bytes_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "kaggle"
    files = {kaggle_name(n): FILES[n] for n in FILE_NAMES} | {
        kaggle_name(TEST_IMAGES): OTHER_FILES[TEST_IMAGES]
    }
    write_files(folder, files, compress=False)
    with pytest.raises(DataError, match=rf"{kaggle_name(TEST_IMAGES)} is corrupt: SHA-256"):
        fetch(INFO, folder, offline=True)


# ---------------------------------------------------------------- U8: what to do when offline


def test_offline_error_names_all_four_files_and_the_data_dir_route(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        fetch(DATASETS["mnist"], tmp_path / "cache", offline=True)
    line = f"Error: {info.value}"
    for name in FILE_NAMES:
        assert f"{name}(.gz)" in line
    assert str(tmp_path / "cache/mnist") in line and "--data-dir FOLDER --offline" in line
    assert len(as_seen_by_a_user(line, tmp_path)) < 400


def test_idx_without_a_folder_or_mirror_says_so_in_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        fetch("idx", tmp_path)
    line = f"Error: {info.value}"
    assert "cannot fetch with no mirror" not in line
    assert "idx: no mirror is known, and" in line and "--data-dir FOLDER" in line
    for name in FILE_NAMES:
        assert f"{name}(.gz)" in line
    assert len(as_seen_by_a_user(line, tmp_path)) < 400


def test_failed_download_names_every_missing_file_and_the_offline_route(tmp_path: Path) -> None:
    # Three dead mirrors, like a machine without internet trying mnist's three hosts.
    mirrors = [closed_port_url() for _ in range(3)]
    write_files(tmp_path / "cache/synth", {TRAIN_LABELS: FILES[TRAIN_LABELS]})
    with pytest.raises(DataError) as info:
        fetch(INFO, tmp_path / "cache", mirrors=mirrors, **FAST)
    line = f"Error: {info.value}"
    for mirror in mirrors:
        assert mirror in line
    for name in (TRAIN_IMAGES, TEST_IMAGES, TEST_LABELS):
        assert f"{name}(.gz)" in line
    assert f"{TRAIN_LABELS}(.gz)" not in line  # that one is there and valid
    assert "--data-dir FOLDER --offline" in line and "\n" not in line
    assert len(as_seen_by_a_user(line, tmp_path)) < 400


# ---------------------------------------------------------------- download checks what load checks


@pytest.mark.parametrize("damage", ["count", "size"])
def test_fetch_of_an_idx_folder_checks_counts_and_sizes(tmp_path: Path, damage: str) -> None:
    files = synthetic_files(n_train=6, shape=(8, 8))
    if damage == "count":
        files[TRAIN_LABELS] = idx_bytes(np.zeros(5, dtype=np.uint8))
        expected = r"holds 6 images but .* holds 5 labels"
    else:
        files[TEST_IMAGES] = synthetic_files(shape=(9, 8))[TEST_IMAGES]
        expected = "training images are 8x8 but test images are 9x8"
    folder = write_files(tmp_path / "idx", files)
    with pytest.raises(DataError, match=expected):
        fetch("idx", folder, offline=True)


def test_split_check_has_one_home() -> None:
    # download and load share one check: the loader must not carry its own copy.
    import bptrain.data.loading as loading

    assert not hasattr(loading, "_check_splits")


# ---------------------------------------------------------------- the user's folder stays as it was


def test_a_complete_users_folder_gets_no_lock_or_stamp(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "mine", FILES, compress=False)
    os.chmod(folder, 0o555)  # read-only: any write attempt would fail
    try:
        load(INFO, folder, offline=True)
    finally:
        os.chmod(folder, 0o755)
    assert files_in(folder) == sorted(FILE_NAMES)
