"""IDX verification: every header field, payload size, labels, checksums and gzip damage."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from bptrain.data import DATASETS, FileSpec, load
from bptrain.data.idx import CorruptFileError, Expect, read_idx
from bptrain.errors import DataError
from data_helpers import (
    TRAIN_IMAGES,
    TRAIN_LABELS,
    gz,
    idx_bytes,
    make_info,
    sha256,
    synthetic_files,
    write_files,
)

IMAGES = np.arange(3 * 28 * 28, dtype=np.uint64).reshape(3, 28, 28).astype(np.uint8)
LABELS = np.array([0, 9, 4], dtype=np.uint8)
KNOWN_IMAGES = Expect(FileSpec(TRAIN_IMAGES), image_shape=(28, 28), num_classes=10)
KNOWN_LABELS = Expect(FileSpec(TRAIN_LABELS), num_classes=10)
ANY_IMAGES = Expect(FileSpec(TRAIN_IMAGES))  # the `idx` dataset: nothing known in advance


def write(tmp_path: Path, data: bytes, *, name: str = "file") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def expect_corrupt(path: Path, expect: Expect, match: str) -> CorruptFileError:
    with pytest.raises(CorruptFileError, match=match) as info:
        read_idx(path, expect)
    assert str(path) in str(info.value)  # every message names the file
    return info.value


@pytest.mark.parametrize("compress", [False, True])
def test_valid_file_reads_the_same_raw_or_gz(tmp_path: Path, compress: bool) -> None:
    raw = idx_bytes(IMAGES)
    path = write(tmp_path, gz(raw) if compress else raw, name="x.gz" if compress else "x")
    idx = read_idx(path, KNOWN_IMAGES)
    assert idx.dims == (3, 28, 28)
    assert idx.sha256 == sha256(raw)  # the hash of the decompressed bytes, header included
    np.testing.assert_array_equal(idx.data, IMAGES)


def test_double_gzip_from_a_content_encoding_server_is_peeled(tmp_path: Path) -> None:
    raw = idx_bytes(IMAGES)
    idx = read_idx(write(tmp_path, gz(gz(raw)), name="x.gz"), KNOWN_IMAGES)
    assert idx.sha256 == sha256(raw)


def test_known_checksum_must_match(tmp_path: Path) -> None:
    raw = idx_bytes(IMAGES)
    other = idx_bytes(IMAGES[::-1])  # same size, other bytes
    spec = FileSpec(TRAIN_IMAGES, sha256=sha256(raw), size=len(raw))
    expect = Expect(spec, image_shape=(28, 28), num_classes=10)
    assert read_idx(write(tmp_path, raw), expect).sha256 == sha256(raw)
    expect_corrupt(write(tmp_path, other, name="other"), expect, f"expected {sha256(raw)[:16]}")


def test_known_size_is_checked_before_reading(tmp_path: Path) -> None:
    raw = idx_bytes(IMAGES)
    spec = FileSpec(TRAIN_IMAGES, sha256=sha256(raw), size=len(raw) + 784)
    expect_corrupt(write(tmp_path, raw), Expect(spec), f"expected {len(raw) + 784}")


def header(
    ndim: int, dims: tuple[int, ...], *, type_code: int = 8, zeros: bytes = b"\0\0"
) -> bytes:
    return zeros + bytes([type_code, ndim]) + struct.pack(f">{len(dims)}I", *dims)


BAD_FILES = {
    "bad magic": (header(3, (3, 28, 28), zeros=b"\x12\x34") + bytes(2352), "bad IDX magic"),
    "float type code": (header(3, (3, 28, 28), type_code=0x0D) + bytes(9408), "type code 0x0d"),
    "2 dims": (header(2, (3, 784)) + bytes(2352), "2 dims, expected 3"),
    "27x28 images": (header(3, (3, 27, 28)) + bytes(3 * 27 * 28), "27x28, expected 28x28"),
    "zero images": (header(3, (0, 28, 28)), "0 items"),
    "truncated payload": (idx_bytes(IMAGES)[:-10], "truncated"),
    "extra bytes": (idx_bytes(IMAGES) + b"\0", "extra bytes"),
    "truncated header": (b"\0\0\x08\x03\0\0", "truncated IDX header"),
    "empty": (b"", "truncated IDX header"),
}


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("case", BAD_FILES)
def test_every_header_fault_is_a_corrupt_file_error(
    tmp_path: Path, case: str, compress: bool
) -> None:
    data, match = BAD_FILES[case]
    path = write(tmp_path, gz(data) if compress else data, name="f.gz" if compress else "f")
    expect_corrupt(path, KNOWN_IMAGES, match)


def test_label_out_of_range(tmp_path: Path) -> None:
    labels = np.array([0, 3, 10, 2], dtype=np.uint8)
    error = expect_corrupt(write(tmp_path, idx_bytes(labels)), KNOWN_LABELS, "label 10 at index 2")
    assert "0..9" in error.reason


def test_labels_file_with_image_dims_is_rejected(tmp_path: Path) -> None:
    expect_corrupt(write(tmp_path, idx_bytes(IMAGES)), KNOWN_LABELS, "3 dims, expected 1")


@pytest.mark.parametrize("side", [0, 5000])
def test_idx_dataset_rejects_implausible_image_sizes(tmp_path: Path, side: int) -> None:
    data = header(3, (1, side, 4)) + bytes(side * 4)
    expect_corrupt(write(tmp_path, data), ANY_IMAGES, "implausible image size")


def test_huge_dims_in_a_raw_header_allocate_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, header(3, (0xFFFFFFFF, 28, 28)) + bytes(2352))
    tracemalloc.start()
    try:
        expect_corrupt(path, ANY_IMAGES, "over the limit")
        expect_corrupt(path, KNOWN_IMAGES, "IDX header implies")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_big_claim_in_a_small_gz_reads_only_what_is_there(tmp_path: Path) -> None:
    # 1.5 GB claimed (under the 2 GiB limit), 2 KB present: memory must follow the data.
    path = write(tmp_path, gz(header(3, (2_000_000, 28, 28)) + bytes(2352)), name="f.gz")
    tracemalloc.start()
    try:
        expect_corrupt(path, ANY_IMAGES, "truncated: payload ends after 2352 of")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_raw_size_mismatch_names_both_sizes(tmp_path: Path) -> None:
    data = header(3, (100_000, 28, 28)) + bytes(2352)
    expect_corrupt(write(tmp_path, data), ANY_IMAGES, r"file is 2368 bytes, IDX header implies")


def test_truncated_gzip(tmp_path: Path) -> None:
    data = gz(idx_bytes(IMAGES))[:-20]
    expect_corrupt(write(tmp_path, data, name="f.gz"), KNOWN_IMAGES, "damaged gzip data")


def test_gzip_crc_error(tmp_path: Path) -> None:
    data = bytearray(gz(idx_bytes(IMAGES)))
    data[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    expect_corrupt(write(tmp_path, bytes(data), name="f.gz"), KNOWN_IMAGES, "damaged gzip data")


def test_html_saved_as_gz(tmp_path: Path) -> None:
    page = b"<!DOCTYPE html><html><body>Access denied</body></html>"
    expect_corrupt(write(tmp_path, page, name="f.gz"), KNOWN_IMAGES, "not a gzip file.*HTML")


def test_uncompressed_data_named_gz_gets_a_rename_hint(tmp_path: Path) -> None:
    path = write(tmp_path, idx_bytes(IMAGES), name="f.gz")
    expect_corrupt(path, KNOWN_IMAGES, "drop the .gz suffix")


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"<html>404 Not Found</html>",
        lambda data: data[: len(data) // 2],
        lambda data: data[:-8] + b"\xff\xff\xff\xff" + data[-4:],
    ],
    ids=["html", "truncated", "crc"],
)
def test_load_reports_damage_as_one_data_error(tmp_path: Path, damage) -> None:
    files = synthetic_files()
    folder = write_files(tmp_path / "data", files)
    target = folder / f"{TRAIN_IMAGES}.gz"
    target.write_bytes(damage(target.read_bytes()))
    with pytest.raises(DataError) as info:
        load(make_info(files), folder, offline=True)
    message = str(info.value)
    assert str(folder) in message and f"{target.name} is corrupt" in message
    assert "\n" not in message


def test_count_mismatch_between_images_and_labels(tmp_path: Path) -> None:
    files = synthetic_files(n_train=6)
    files[TRAIN_LABELS] = idx_bytes(np.zeros(5, dtype=np.uint8))
    folder = write_files(tmp_path / "data", files)
    with pytest.raises(DataError, match=r"holds 6 images but .* holds 5 labels"):
        load(make_info(files), folder, offline=True)


def test_real_dataset_table_rejects_a_synthetic_file(tmp_path: Path) -> None:
    folder = write_files(tmp_path / "data", synthetic_files())
    with pytest.raises(DataError, match="IDX header implies 4720 bytes, expected 47040016"):
        load(DATASETS["mnist"], folder, offline=True)
