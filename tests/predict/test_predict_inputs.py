"""`bptrain predict` and `eval --images` on the inputs people really have, through the real CLI.

Colour arrays (F5); --save-preprocessed onto earlier images, a file in the way, a read-only and
a full file system (F6, F7); NUL-separated and non-UTF-8 --files-from lists (F8); FIFOs, sockets
and devices in folders (F11); class folders that name no class (F10); hostile and non-UTF-8
names on stderr and in records (F20, F21).
"""

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import assert_error, invoke, records, subprocess_env
from image_helpers import mnist_like, photo


def paper_digit() -> np.ndarray:
    """(100, 100) uint8: a dark 7 on light paper, as a phone would take it."""
    page = photo(mnist_like("7"), canvas=(100, 100), at=(10, 10), side=80, paper=230, pen=30)
    return np.asarray(page)


def run(*args, stdin=None, timeout=120):
    """bptrain as a real process (args may be bytes: names that are not UTF-8)."""
    command = [
        sys.executable,
        "-m",
        "bptrain",
        *(a if isinstance(a, bytes) else str(a) for a in args),
    ]
    return subprocess.run(
        command, input=stdin, capture_output=True, env=subprocess_env(), timeout=timeout
    )


def png(path, pixels=None) -> Path:
    Image.fromarray(paper_digit() if pixels is None else pixels).save(path, "PNG")
    return Path(os.fsdecode(path))


def png_size(path: Path) -> tuple[int, int]:
    """The size of a PNG whose every pixel decodes (a cut or empty file fails)."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


# ---------------------------------------------------------------- F5: colour arrays


def test_colour_arrays_are_one_grey_image_each_never_slivers(tmp_path, model):
    grey = paper_digit()
    rgba = np.zeros((*grey.shape, 4), np.uint8)  # black strokes on a transparent canvas
    rgba[..., 3] = 255 - grey
    arrays = {
        "rgb": np.stack([grey] * 3, -1),  # PIL's np.asarray(image.convert("RGB")), OpenCV
        "rgb-float": np.stack([grey] * 3, -1).astype(np.float32) / 255,  # matplotlib's imread
        "rgba": rgba,
        "grey-alpha": np.stack([grey, np.full_like(grey, 255)], -1),  # PIL's "LA"
        "one-channel": grey[..., None],  # Keras: (H, W, 1)
    }
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
    np.save(tmp_path / "stack.npy", np.stack([arrays["rgb"], arrays["rgb"]]))  # (N, H, W, 3)
    reference = png(tmp_path / "grey.png")
    inputs = [tmp_path / f"{name}.npy" for name in arrays] + [tmp_path / "stack.npy"]
    result = invoke("predict", model, reference, *inputs)
    assert result.exit_code == 0, result.stderr
    recs = records(result.stdout)
    assert [(Path(r["input"]).name, r.get("index")) for r in recs] == [
        ("grey.png", None), *((f"{name}.npy", None) for name in arrays),
        ("stack.npy", 0), ("stack.npy", 1),
    ]  # fmt: skip
    for r in recs[1:]:
        np.testing.assert_allclose(r["probabilities"], recs[0]["probabilities"], atol=0.02)


def test_colour_with_its_channels_first_is_refused_with_the_fix(tmp_path, model):
    np.save(tmp_path / "nchw.npy", np.stack([paper_digit()] * 3)[None])  # (1, 3, H, W)
    result = invoke("predict", model, tmp_path / "nchw.npy")
    assert_error(result, 3, "nchw.npy", "(1, 3, 100, 100)", "numpy.moveaxis")


# ---------------------------------------------------------------- F6, F7: --save-preprocessed


def test_save_preprocessed_never_replaces_earlier_images_without_overwrite(tmp_path, model):
    digit = png(tmp_path / "a.png")
    seen = tmp_path / "seen"
    seen.mkdir()
    (seen / "00000-a.png").write_text("my precious notes")
    refused = invoke("predict", model, digit, "--save-preprocessed", seen)
    assert_error(refused, 4, str(seen), "00000-a.png", "--overwrite")
    assert (seen / "00000-a.png").read_text() == "my precious notes"
    # A second run into a folder holding a first run's images is refused, whatever its names.
    out = tmp_path / "out"
    assert invoke("predict", model, digit, "--save-preprocessed", out).exit_code == 0
    first = (out / "00000-a.png").read_bytes()
    other = png(tmp_path / "b.png", 255 - paper_digit())
    assert_error(invoke("predict", model, other, "--save-preprocessed", out), 4, str(out))
    assert (
        sorted(os.listdir(out)) == ["00000-a.png"] and (out / "00000-a.png").read_bytes() == first
    )
    replaced = invoke("predict", model, digit, "--save-preprocessed", seen, "--overwrite")
    assert replaced.exit_code == 0, replaced.stderr
    assert png_size(seen / "00000-a.png") == (28, 28)


def test_save_preprocessed_onto_a_file_is_exit_4_before_any_work(tmp_path, model):
    digit = png(tmp_path / "a.png")
    (tmp_path / "afile").write_text("keep me")
    for target, words in (("afile", "is a regular file"), ("afile/sub", "Not a directory")):
        result = invoke("predict", model, digit, "--save-preprocessed", tmp_path / target)
        assert_error(result, 4, str(tmp_path / target), words)
    assert (tmp_path / "afile").read_text() == "keep me"


def test_save_preprocessed_on_a_read_only_file_system_is_exit_4(tmp_path, model, tmpfs):
    digit = png(tmp_path / "a.png")
    read_only = tmpfs("ro", "size=1m,ro")
    result = invoke("predict", model, digit, "--save-preprocessed", read_only / "seen")
    assert_error(result, 4, str(read_only / "seen"), "Read-only file system")


def fill(folder: Path, leave_pages: int = 0) -> None:
    """Fill a tmpfs to the last byte, then free `leave_pages` pages (one small file each)."""
    fd = os.open(folder / "fill", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:  # ENOSPC: full
        pass
    finally:
        os.close(fd)
    if leave_pages:
        os.truncate(folder / "fill", (folder / "fill").stat().st_size - 4096 * leave_pages)


def test_save_preprocessed_on_a_full_file_system(tmp_path, model, tmpfs):
    digits = tmp_path / "digits"
    digits.mkdir()
    for n in range(6):
        png(digits / f"{n}.png")
    tiny = tmpfs("tiny", "size=64k")
    fill(tiny)
    assert os.statvfs(tiny).f_bfree == 0
    full = invoke("predict", model, digits, "--save-preprocessed", tiny / "seen")
    assert_error(full, 4, str(tiny / "seen"), "No space left on device")  # before any work
    # Room for one image: exit 4 naming an image; nothing half-written anywhere, and every
    # record printed has its image on disk (images are written a few at once, in any order).
    fill(tiny, leave_pages=1)
    assert os.statvfs(tiny).f_bfree >= 1
    result = invoke("predict", model, digits, "--save-preprocessed", tiny / "seen")
    assert result.exit_code == 4, result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert f"{tiny / 'seen'}/0000" in error and "No space left on device" in error
    saved = sorted(os.listdir(tiny / "seen"))
    assert 1 <= len(saved) < 6
    for name in saved:
        assert png_size(tiny / "seen" / name) == (28, 28)  # whole PNGs only
    for n, record in enumerate(records(result.stdout)):
        assert f"{n:05d}-{Path(record['input']).stem}.png" in saved


# ---------------------------------------------------------------- F8: --files-from lists


def test_files_from_takes_nul_separated_lists_and_names_that_are_not_utf8(tmp_path, model):
    folder = os.fsencode(tmp_path / "in")
    os.mkdir(folder)
    names = [b"caf\xe9.png", b"new\nline.png", b"plain.png", b" spaced .png"]
    for name in names:
        png(os.path.join(folder, name))
    predict = f"{sys.executable} -m bptrain predict {model} --files-from -"
    command = f"find {tmp_path / 'in'} -name '*.png' -print0 | sort -z | {predict}"
    found = subprocess.run(["bash", "-c", command], capture_output=True, env=subprocess_env())
    assert found.returncode == 0, found.stderr
    expected = [os.fsdecode(os.path.join(folder, n)) for n in sorted(names)]
    expected = [p.replace("\udce9", "\\xe9") for p in expected]  # F21: the byte as text
    assert [r["input"] for r in records(found.stdout.decode())] == expected
    # -0 when the list has no NUL (one name); a newline list with a Latin-1 name.
    flagged = run("predict", model, "--files-from", "-", "-0", stdin=os.path.join(folder, names[3]))
    assert flagged.returncode == 0, flagged.stderr
    assert records(flagged.stdout.decode())[0]["input"].endswith("/ spaced .png")
    (tmp_path / "list.txt").write_bytes(os.path.join(folder, names[0]) + b"\r\n\n")
    listed = run("predict", model, "--files-from", tmp_path / "list.txt")
    assert listed.returncode == 0, listed.stderr
    assert records(listed.stdout.decode())[0]["input"].endswith("/caf\\xe9.png")


# ---------------------------------------------------------------- F11: special files


def test_a_folder_walk_skips_fifos_sockets_and_devices_with_a_warning(tmp_path, model):
    folder = tmp_path / "in"
    folder.mkdir()
    png(folder / "a.png")
    os.mkfifo(folder / "f.png")  # opening it would wait for a writer forever
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "s.png"))
    kinds = {"f.png": "a FIFO", "s.png": "a socket"}
    try:
        os.mknod(folder / "z.png", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero
        kinds["z.png"] = "a character device"
    except PermissionError:
        pass  # not root: the FIFO and the socket still show the rule
    try:
        result = run("predict", model, folder, timeout=60)
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    assert [r["input"] for r in records(result.stdout.decode())] == [str(folder / "a.png")]
    warnings = [line for line in result.stderr.decode().splitlines() if "skipping" in line]
    assert len(warnings) == len(kinds)
    for line, (name, kind) in zip(warnings, sorted(kinds.items()), strict=True):
        assert line.startswith(f"WARNING: skipping {folder / name}: {kind}"), line


def test_eval_images_skips_a_fifo_in_a_class_folder(tmp_path, model):
    (tmp_path / "7").mkdir()
    png(tmp_path / "7" / "a.png")
    os.mkfifo(tmp_path / "7" / "b.png")
    result = run("eval", model, "--images", tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert records(result.stdout.decode())[0]["n"] == 1
    assert f"skipping {tmp_path / '7' / 'b.png'}: a FIFO" in result.stderr.decode()


# ---------------------------------------------------------------- F10: class folder names


@pytest.mark.parametrize("name", ["-1", "-3", "+3", " 7", "7 ", "3.0", "10", "\u0663", "\u00b3"])
def test_class_folders_that_name_no_class_are_refused(tmp_path, model, name):
    (tmp_path / "7").mkdir()
    png(tmp_path / "7" / "a.png")
    (tmp_path / name).mkdir()
    png(tmp_path / name / "a.png")
    result = invoke("eval", model, "--images", tmp_path)
    assert_error(result, 3, f"{tmp_path / name}: names no class", "0..9")


def test_zero_padded_class_folders_are_their_class(tmp_path, model):
    for name in ("07", "003"):
        (tmp_path / name).mkdir()
        png(tmp_path / name / "a.png")
    result = invoke("eval", model, "--images", tmp_path)
    assert result.exit_code == 0, result.stderr
    (record,) = records(result.stdout)
    assert [sum(row) for row in record["confusion_matrix"]] == [0, 0, 0, 1, 0, 0, 0, 1, 0, 0]


# ---------------------------------------------------------------- F20, F21: hostile names


def test_control_characters_in_names_cannot_act_on_a_terminal(tmp_path, model):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "x\x1b]0;pwned\x07\x1b[2J.png").write_bytes(b"")  # retitles, then clears
    (folder / "a\nError: all fine.png").write_bytes(b"")  # a second, forged line
    (folder / "r\r\u202eevil.png").write_bytes(b"")  # overwrites the line; reverses text
    os.mkfifo(folder / "w\x1b[31m.png")  # a warning names it
    result = run("predict", model, folder, timeout=60)
    assert result.returncode == 3
    stderr = result.stderr.decode("utf-8")
    assert not any(ch in stderr for ch in "\x1b\x07\r\u202e")
    lines = stderr.splitlines()
    assert len([line for line in lines if line.startswith("Error:")]) == 3  # one per input
    assert len([line for line in lines if line.startswith("WARNING:")]) == 1
    assert not any(line.startswith(("Error: all", "all")) for line in lines)  # none forged
    assert "x\\x1b]0;pwned\\x07\\x1b[2J.png: empty" in stderr
    assert "a\\x0aError: all fine.png: empty" in stderr
    assert (
        "r\\x0d\\u202eevil.png" in stderr and "skipping " in stderr and "w\\x1b[31m.png" in stderr
    )


def test_names_that_are_not_utf8_are_valid_utf8_json_and_stderr(tmp_path, model):
    folder = os.fsencode(tmp_path / "in")
    os.mkdir(folder)
    png(os.path.join(folder, b"caf\xe9.png"))
    open(os.path.join(folder, b"empty-\xff.png"), "wb").close()
    seen = tmp_path / "seen"
    result = run("predict", model, tmp_path / "in", "--save-preprocessed", seen)
    assert result.returncode == 3
    (line,) = result.stdout.decode("utf-8").splitlines()  # strict: fails on a lone surrogate
    record = json.loads(line)
    assert record["input"] == f"{tmp_path / 'in'}/caf\\xe9.png"
    assert '"caf\\\\xe9.png"' in line.replace(str(tmp_path / "in") + "/", "")
    record["input"].encode("utf-8")  # a strict encoder (and parser) accepts every string
    (error,) = result.stderr.decode("utf-8").splitlines()[:1]
    assert error == f"Error: {tmp_path / 'in'}/empty-\\xff.png: empty (0 bytes)"
    assert os.listdir(os.fsencode(seen)) == [b"00000-caf\xe9.png"]  # the name's real bytes
