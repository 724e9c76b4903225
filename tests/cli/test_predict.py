"""`bptrain predict` and `bptrain eval --images` through the real CLI, on real image files."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cli_helpers import invoke, records, small_config, subprocess_env, write_config
from data_helpers import write_idx


@pytest.fixture(scope="module")
def model(tmp_path_factory, idx_folder):
    """A checkpoint of the quick MLP on the synthetic 28x28, 10-class `idx` data."""
    folder = tmp_path_factory.mktemp("model")
    config = write_config(folder / "c.yaml", small_config(idx_folder, epochs=2))
    out = folder / "m.npz"
    assert invoke("train", config, "--out", out).exit_code == 0
    return out


def stroke_digit(size=(200, 200), ink=0, paper=255, box=(60, 30, 140, 170), width=14) -> Image:
    """A '7' drawn as a user would: dark strokes on light paper (or the reverse)."""
    image = Image.new("L", size, paper)
    left, top, right, bottom = box
    draw = ImageDraw.Draw(image)
    draw.line(
        [(left, top), (right, top), (left + (right - left) // 3, bottom)], fill=ink, width=width
    )
    return image


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def test_one_record_per_image_with_probabilities_and_top_k(tmp_path, model):
    for n in range(3):
        stroke_digit(box=(40 + 10 * n, 30, 150, 170)).save(tmp_path / f"d{n}.png")
    result = invoke("predict", model, tmp_path, "--top-k", "3")
    assert result.exit_code == 0, result.stderr
    recs = records(result.stdout)
    assert [r["input"] for r in recs] == [str(tmp_path / f"d{n}.png") for n in range(3)]
    for r in recs:
        assert r["event"] == "prediction" and "index" not in r
        assert sum(r["probabilities"]) == pytest.approx(1, abs=1e-5)
        assert r["label"] == int(np.argmax(r["probabilities"])) and r["class_name"] == str(
            r["label"]
        )
        assert r["confidence"] == pytest.approx(max(r["probabilities"]), abs=1e-6)
        top = [t["probability"] for t in r["top"]]
        assert (
            len(top) == 3
            and top == sorted(top, reverse=True)
            and r["top"][0]["label"] == r["label"]
        )


def test_a_digit_moved_enlarged_and_inverted_is_seen_the_same(tmp_path, model):
    original = stroke_digit(size=(28, 28), ink=255, paper=0, box=(8, 4, 20, 24), width=2)
    photo = Image.new("L", (300, 200), 200)  # grey paper, dark ink, off-centre, 8x larger
    photo.paste(
        Image.eval(original.resize((224, 224), Image.BICUBIC), lambda v: 200 - v * 200 // 255),
        (60, -20),
    )
    original.save(tmp_path / "a.png")
    photo.convert("RGB").save(tmp_path / "b.jpg", quality=92)
    seen = tmp_path / "seen"
    result = invoke(
        "predict", model, tmp_path / "a.png", tmp_path / "b.jpg", "--save-preprocessed", seen
    )
    assert result.exit_code == 0, result.stderr
    assert len(records(result.stdout)) == 2  # same label: see the MNIST test below
    first, second = (np.asarray(Image.open(p), np.float32) / 255 for p in sorted(seen.iterdir()))
    assert first.shape == second.shape == (28, 28)
    assert np.abs(first - second).mean() < 0.05


def test_arrays_and_idx_files_give_one_record_per_image_with_its_index(tmp_path, model, idx_folder):
    stack = np.zeros((4, 28, 28), np.uint8)
    for n in range(4):
        stack[n, 6:22, 10 + n : 14 + n] = 255
    np.save(tmp_path / "stack.npy", stack)
    np.save(tmp_path / "one.npy", stack[0].astype(np.float32) / 255)
    idx = idx_folder / "t10k-images-idx3-ubyte.gz"
    result = invoke(
        "predict", model, tmp_path / "stack.npy", tmp_path / "one.npy", idx, "--preprocess", "none"
    )
    assert result.exit_code == 0, result.stderr
    recs = records(result.stdout)
    assert [r.get("index") for r in recs[:5]] == [0, 1, 2, 3, None]
    assert len(recs) == 5 + 200 and recs[-1]["index"] == 199 and recs[-1]["input"] == str(idx)


def test_predictions_on_the_test_files_match_eval(tmp_path, model, idx_folder):
    """--preprocess none on the test images as PNGs: exactly what eval measured."""
    from bptrain.data import load

    data = load("idx", idx_folder, offline=True, splits=("test",))
    root = tmp_path / "classes"
    for n, (x, t) in enumerate(zip(data.x_test[:, 0], data.t_test, strict=True)):
        (root / str(t)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((x * 255).round().astype(np.uint8)).save(root / str(t) / f"{n:03d}.png")
    by_images = invoke("eval", model, "--images", root, "--preprocess", "none")
    assert by_images.exit_code == 0, by_images.stderr
    (record,) = records(by_images.stdout)
    (reference,) = records(invoke("eval", model).stdout)
    assert record["split"] == "images" and record["n"] == 200
    assert record["accuracy"] == reference["accuracy"]
    assert record["confusion_matrix"] == reference["confusion_matrix"]


class _CreatesFile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_bad_inputs_each_get_one_error_line_the_rest_are_predicted(tmp_path, model):
    good = tmp_path / "good.png"
    stroke_digit().save(good)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:60])
    garbage = tmp_path / "noise.png"
    garbage.write_bytes(b"not an image at all" * 10)
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 50), 255).save(blank)
    evil = tmp_path / "evil.npy"
    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = _CreatesFile(marker)
    np.save(evil, payload, allow_pickle=True)
    missing = tmp_path / "nope.png"
    bad = [truncated, garbage, blank, evil, missing]
    result = invoke("predict", model, good, *bad, good)
    assert result.exit_code == 3
    assert [r["input"] for r in records(result.stdout)] == [str(good), str(good)]
    errors = error_lines(result.stderr)
    assert len(errors) == len(bad), result.stderr
    for path, line in zip(bad, errors, strict=True):
        assert str(path) in line
    assert "ink" in errors[2]
    assert not marker.exists() and "Traceback" not in result.stderr


def test_a_decompression_bomb_is_refused_before_it_is_decoded(tmp_path, model):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000), 0).save(bomb)  # 144 megapixels in a few kilobytes
    result = invoke("predict", model, bomb)
    assert result.exit_code == 3 and str(bomb) in error_lines(result.stderr)[0]


def test_files_from_stdin_and_an_image_on_stdin_in_a_shell_pipeline(tmp_path, model):
    for n in range(3):
        stroke_digit(box=(50, 30 + 5 * n, 150, 170)).save(tmp_path / f"{n}.png")
    predict = f"{sys.executable} -m bptrain predict {model} --files-from -"
    command = f"find {tmp_path} -name '*.png' | sort | {predict}"
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, env=subprocess_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["input"] for line in done.stdout.decode().splitlines()] == [
        str(tmp_path / f"{n}.png") for n in range(3)
    ]
    piped = subprocess.run(
        [sys.executable, "-m", "bptrain", "predict", str(model), "-"],
        input=(tmp_path / "0.png").read_bytes(),
        capture_output=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    (record,) = records(piped.stdout.decode())
    assert record["input"] == "-"


def test_checkpoint_and_usage_problems_keep_their_exit_codes(tmp_path, model):
    not_a_checkpoint = tmp_path / "x.npz"
    not_a_checkpoint.write_bytes(b"nope")
    stroke_digit().save(tmp_path / "d.png")
    assert invoke("predict", not_a_checkpoint, tmp_path / "d.png").exit_code == 4
    assert invoke("predict", model).exit_code == 2
    wrong_size = tmp_path / "big.png"
    stroke_digit(size=(30, 28)).save(wrong_size)
    result = invoke("predict", model, wrong_size, "--preprocess", "none")
    assert result.exit_code == 3 and "28x28" in result.stderr


def test_eval_images_names_unknown_class_folders(tmp_path, model):
    (tmp_path / "cats").mkdir()
    stroke_digit().save(tmp_path / "cats" / "a.png")
    result = invoke("eval", model, "--images", tmp_path)
    assert result.exit_code in (2, 3) and "cats" in result.stderr
    assert len(error_lines(result.stderr)) == 1


def test_idx_written_by_hand_is_read_whole(tmp_path, model):
    images = np.zeros((3, 28, 28), np.uint8)
    images[:, 5:23, 12:16] = 255
    write_idx(tmp_path / "mine-images-idx3-ubyte", images, compress=False)
    result = invoke("predict", model, tmp_path / "mine-images-idx3-ubyte")
    assert result.exit_code == 0, result.stderr
    assert [r["index"] for r in records(result.stdout)] == [0, 1, 2]


MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


@pytest.mark.slow
@pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").is_file(), reason="no MNIST copy")
def test_mnist_digits_photographed_predict_like_the_originals(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from photo_digits import mnist_test, photo

    out = tmp_path / "mlp.npz"
    trained = invoke(
        "train", "mlp", "--epochs", "2", "--data-dir", MNIST, "--offline", "--out", out
    )
    assert trained.exit_code == 0, trained.stderr
    digits, _ = mnist_test(str(MNIST))
    rng = np.random.default_rng(0)
    for n, digit in enumerate(digits[:100]):
        Image.fromarray(digit).save(tmp_path / f"{n:03d}-a.png")
        photo(digit, rng).save(tmp_path / f"{n:03d}-b.jpg", quality=85)
    recs = records(invoke("predict", out, *sorted(tmp_path.glob("*-?.*"))).stdout)
    originals, photos = recs[0::2], recs[1::2]
    same = sum(a["label"] == b["label"] for a, b in zip(originals, photos, strict=True))
    assert same >= 97, same
