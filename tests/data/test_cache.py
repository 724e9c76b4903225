"""Cache folders and offline use: precedence, in-place folders, re-hashing, corrupt files, idx."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bptrain.data import DATASETS, FILE_NAMES, fetch, load, resolve_data_dir
from bptrain.data.cache import dataset_folder
from bptrain.errors import ConfigError, DataError
from data_helpers import (
    FAST,
    FILES,
    INFO,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    LoopbackServer,
    files_in,
    gz,
    idx_bytes,
    make_info,
    sha256,
    synthetic_files,
    write_files,
)

# ---------------------------------------------------------------- where the cache is


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_dir() == tmp_path / "home/.cache/bptrain"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec says so
    assert resolve_data_dir() == tmp_path / "home/.cache/bptrain"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir() == tmp_path / "xdg/bptrain"
    monkeypatch.setenv("BPTRAIN_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_dir("~/x") == tmp_path / "home/x"


def test_fetch_fills_the_env_cache_dir(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BPTRAIN_DATA_DIR", str(tmp_path / "env"))
    result = fetch(INFO, mirrors=[server.mirror("m1", FILES)], **FAST)
    assert result.folder == tmp_path / "env/synth"
    assert (tmp_path / "env/synth" / f"{TRAIN_IMAGES}.gz").is_file()
    assert files_in(tmp_path / "xdg-cache") == []


def test_fetch_defaults_to_the_xdg_cache(server: LoopbackServer, tmp_path: Path) -> None:
    result = fetch(INFO, mirrors=[server.mirror("m1", FILES)], **FAST)
    assert result.folder == tmp_path / "xdg-cache/bptrain/synth"


def test_data_dir_holding_the_files_is_used_in_place(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "mine", FILES)
    assert dataset_folder(INFO, folder).folder == folder
    assert dataset_folder(INFO, folder).owned is False
    assert dataset_folder(INFO, tmp_path).folder == tmp_path / "synth"
    before = files_in(folder)
    result = fetch(INFO, folder, offline=True)
    assert result.folder == folder and {f.source for f in result.files} == {"cache"}
    assert files_in(folder) == before  # no stamp, no lock: a user's folder is read-only to us


def test_in_place_folder_with_a_corrupt_file_is_reported_not_touched(
    server: LoopbackServer, tmp_path: Path
) -> None:
    folder = write_files(tmp_path / "mine", FILES)
    (folder / f"{TEST_LABELS}.gz").write_bytes(b"junk")
    before = files_in(folder)
    with pytest.raises(DataError, match=f"{TEST_LABELS}.gz is corrupt: not a gzip file"):
        fetch(INFO, folder, mirrors=[server.mirror("m1", FILES)], **FAST)
    assert server.seen == [] and files_in(folder) == before


def test_uncompressed_files_are_accepted(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "raw", FILES, compress=False)
    result = fetch(INFO, folder, offline=True)
    assert [f.path.name for f in result.files] == list(FILE_NAMES)
    assert [f.sha256 for f in result.files] == [sha256(FILES[n]) for n in FILE_NAMES]


# ---------------------------------------------------------------- offline


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_offline_with_files_missing_names_them_and_never_connects(
    server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    write_files(tmp_path / "cache/synth", {TRAIN_LABELS: FILES[TRAIN_LABELS]})
    if how == "environment":
        monkeypatch.setenv("BPTRAIN_OFFLINE", "1")
    offline = True if how == "argument" else None
    mirror = server.mirror("m1", FILES)
    with pytest.raises(DataError) as info:
        fetch(INFO, tmp_path / "cache", mirrors=[mirror], offline=offline, **FAST)
    message = str(info.value)
    for name in (TRAIN_IMAGES, TEST_IMAGES, TEST_LABELS):
        assert f"{name}(.gz)" in message
    assert TRAIN_LABELS not in message  # that one is there and valid
    assert f"offline, and {tmp_path / 'cache/synth'} lacks" in message
    assert "put good copies there" in message
    assert server.seen == []


def test_offline_env_false_values_allow_downloads(
    server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BPTRAIN_OFFLINE", "0")
    fetch(INFO, tmp_path, mirrors=[server.mirror("m1", FILES)], **FAST)
    assert len(server.seen) == 4


def test_offline_env_garbage_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPTRAIN_OFFLINE", "maybe")
    with pytest.raises(ConfigError, match="BPTRAIN_OFFLINE"):
        fetch(INFO)


def test_offline_explicit_false_beats_the_environment(
    server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BPTRAIN_OFFLINE", "1")
    fetch(INFO, tmp_path, mirrors=[server.mirror("m1", FILES)], offline=False, **FAST)
    assert len(server.seen) == 4


# ---------------------------------------------------------------- corrupt cache files


def test_corrupt_cached_file_is_replaced_online(server: LoopbackServer, tmp_path: Path) -> None:
    folder = write_files(tmp_path / "synth", FILES)
    (folder / f"{TEST_IMAGES}.gz").write_bytes(gz(FILES[TEST_IMAGES])[:-30])
    mirror = server.mirror("m1", FILES)
    result = fetch(INFO, tmp_path, mirrors=[mirror], **FAST)
    assert [s.path for s in server.seen] == [f"/m1/{TEST_IMAGES}.gz"]
    assert [f.source for f in result.files] == [
        "cache",
        "cache",
        f"{mirror}{TEST_IMAGES}.gz",
        "cache",
    ]
    assert (folder / f"{TEST_IMAGES}.gz").read_bytes() == gz(FILES[TEST_IMAGES])


def test_corrupt_uncompressed_copy_is_removed_after_a_download(
    server: LoopbackServer, tmp_path: Path
) -> None:
    folder = write_files(tmp_path / "synth", FILES, compress=False)
    (folder / TRAIN_LABELS).write_bytes(idx_bytes(np.full(6, 11, dtype=np.uint8)))  # bad labels
    fetch(INFO, tmp_path, mirrors=[server.mirror("m1", FILES)], **FAST)
    assert not (folder / TRAIN_LABELS).exists()
    assert (folder / f"{TRAIN_LABELS}.gz").read_bytes() == gz(FILES[TRAIN_LABELS])
    assert load(INFO, tmp_path, offline=True).t_train.max() < 10


def test_corrupt_cached_file_is_reported_offline(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "synth", FILES)
    (folder / f"{TEST_IMAGES}.gz").write_bytes(b"<html>oops</html>")
    with pytest.raises(DataError) as info:
        fetch(INFO, tmp_path, offline=True)
    message = str(info.value)
    assert f"{TEST_IMAGES}(.gz) ({TEST_IMAGES}.gz is corrupt: not a gzip file" in message
    assert str(folder) in message and "delete" not in message


# ---------------------------------------------------------------- every file is hashed, every time


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_a_file_changed_in_place_is_hashed_again(tmp_path: Path, compress: bool) -> None:
    # Change a verified file behind bptrain's back, keeping its size, mtime and inode (bit rot,
    # a tool that restores mtimes, tampering): the reported SHA-256 is the file's real one.
    folder = tmp_path / "cache/idx"
    write = (lambda p, d: p.write_bytes(gz(d, level=0))) if compress else Path.write_bytes
    folder.mkdir(parents=True)
    for name in FILE_NAMES:
        write(folder / (f"{name}.gz" if compress else name), FILES[name])
    first = fetch("idx", tmp_path / "cache", offline=True)
    assert first.files[1].sha256 == sha256(FILES[TRAIN_LABELS])
    relabelled = idx_bytes(np.full(6, 7, dtype=np.uint8))
    path = first.files[1].path
    _overwrite_keeping_mtime(path, gz(relabelled, level=0) if compress else relabelled)
    again = fetch("idx", tmp_path / "cache", offline=True)
    assert again.files[1].sha256 == sha256(relabelled)
    assert load("idx", tmp_path / "cache", offline=True).t_train.tolist() == [7] * 6
    assert [n for n in files_in(folder) if "stamp" in n] == []


def test_a_changed_verified_file_is_caught(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "synth", FILES, compress=False)
    fetch(INFO, tmp_path, offline=True)
    _overwrite_keeping_mtime(folder / TRAIN_IMAGES, idx_bytes(np.zeros((6, 28, 28), np.uint8)))
    with pytest.raises(DataError, match="SHA-256 of the decompressed data"):
        fetch(INFO, tmp_path, offline=True)


def _overwrite_keeping_mtime(path: Path, data: bytes) -> None:
    stat = path.stat()
    with open(path, "r+b") as f:  # same inode
        f.write(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


# ---------------------------------------------------------------- system folders


def test_system_folder_is_used_in_place_when_the_cache_lacks_files(tmp_path: Path) -> None:
    system = write_files(tmp_path / "usr/share/datasets/synth", FILES)
    before = files_in(system)
    info = make_info(FILES, system_dirs=(tmp_path / "nowhere", system))
    dataset = load(info, tmp_path / "cache", offline=True)
    assert dataset.folder == system
    assert files_in(system) == before and files_in(tmp_path / "cache") == []


def test_corrupt_system_folder_is_skipped(server: LoopbackServer, tmp_path: Path) -> None:
    system = write_files(tmp_path / "system", FILES)
    (system / f"{TRAIN_IMAGES}.gz").write_bytes(gz(FILES[TRAIN_IMAGES])[:100])
    info = make_info(FILES, system_dirs=(system,))
    result = fetch(info, tmp_path / "cache", mirrors=[server.mirror("m1", FILES)], **FAST)
    assert result.folder == tmp_path / "cache/synth" and len(server.seen) == 4


def test_known_datasets_look_in_usr_share_datasets() -> None:
    assert Path("/usr/share/datasets/fashion-mnist") in DATASETS["fashion-mnist"].system_dirs
    assert Path("/usr/share/datasets/mnist") in DATASETS["mnist"].system_dirs


# ---------------------------------------------------------------- the idx dataset


def idx_files(shape: tuple[int, int], classes: int) -> dict[str, bytes]:
    return synthetic_files(n_train=7, n_test=5, shape=shape, num_classes=classes)


def test_idx_dataset_from_a_folder_of_raw_files(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "kmnist", idx_files((8, 6), classes=3), compress=False)
    dataset = load("idx", folder, offline=True)
    assert dataset.name == "idx" and dataset.folder == folder
    assert dataset.x_train.shape == (7, 1, 8, 6) and dataset.x_test.shape == (5, 1, 8, 6)
    assert dataset.num_classes == 3 and dataset.class_names == ("0", "1", "2")


def test_idx_num_classes_spans_train_and_test(tmp_path: Path) -> None:
    files = idx_files((4, 4), classes=3)
    files[TEST_LABELS] = idx_bytes(np.array([0, 1, 7, 2, 0], dtype=np.uint8))
    assert load("idx", write_files(tmp_path / "d", files), offline=True).num_classes == 8


def test_idx_train_and_test_sizes_must_agree(tmp_path: Path) -> None:
    files = idx_files((4, 4), classes=3)
    files[TEST_IMAGES] = idx_files((5, 4), classes=3)[TEST_IMAGES]
    with pytest.raises(DataError, match="training images are 4x4 but test images are 5x4"):
        load("idx", write_files(tmp_path / "d", files), offline=True)


def test_idx_with_a_single_class_is_rejected(tmp_path: Path) -> None:
    files = idx_files((4, 4), classes=1)
    with pytest.raises(DataError, match="every label is 0"):
        load("idx", write_files(tmp_path / "d", files), offline=True)


def test_idx_without_files_or_mirrors_says_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"no mirror is known, and {tmp_path / 'idx'} lacks"):
        fetch("idx", tmp_path)


def test_unknown_dataset_is_a_config_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'fashion-mnist'"):
        fetch("fashion_mnist")
