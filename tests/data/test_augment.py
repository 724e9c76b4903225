"""Data augmentation (augment.py): what each transform does, and how runs use it."""

import numpy as np
import pytest

from bptrain.data import augment
from bptrain.errors import ConfigError
from cli_helpers import assert_error, invoke, records, small_config, without_timing, write_config


def _batch(n=64, c=1, h=28, w=28, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, c, h, w), dtype=np.float32)


def test_shift_keeps_shape_and_dtype_and_leaves_the_input_alone():
    x = _batch(n=7, c=3, h=9, w=11)
    before = x.copy()
    out = augment.Shift(pixels=2)(x, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.array_equal(x, before)
    x64 = x.astype(np.float64)
    assert augment.Shift(2)(x64, np.random.default_rng(1)).dtype == np.float64


def _offset_of(image, shifted, pixels):
    """The (dy, dx) with shifted[i, j] == image[i - dy, j - dx] (zeros outside)."""
    h, w = image.shape
    found = []
    for dy in range(-pixels, pixels + 1):
        for dx in range(-pixels, pixels + 1):
            expected = np.zeros_like(image)
            expected[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
                max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
            ]
            if np.array_equal(expected, shifted):
                found.append((dy, dx))
    return found


def test_every_shifted_image_is_its_original_moved_within_bounds():
    x = _batch(n=200, h=10, w=12) + 0.01  # no zeros: a shift is visible at every border
    out = augment.Shift(pixels=2)(x, np.random.default_rng(5))
    offsets = [_offset_of(x[i, 0], out[i, 0], 2) for i in range(len(x))]
    assert all(len(o) == 1 for o in offsets)  # exactly one shift within +-2 explains each
    seen = {o[0] for o in offsets}
    # 200 draws of 25 equally likely offsets: every one appears (miss chance ~ 25 * 0.96^200).
    assert seen == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}


def test_shift_moves_all_channels_of_an_image_together():
    x = np.repeat(_batch(n=30, h=8, w=8), 3, axis=1)
    out = augment.Shift(pixels=3)(x, np.random.default_rng(2))
    assert np.array_equal(out[:, 0], out[:, 1]) and np.array_equal(out[:, 0], out[:, 2])


def test_the_same_seed_gives_the_same_batch_and_another_seed_another():
    x = _batch()
    transforms = augment.Augmenter([augment.Shift(2), augment.HorizontalFlip(force=True)])
    a = transforms(x, np.random.default_rng(11))
    b = transforms(x, np.random.default_rng(11))
    c = transforms(x, np.random.default_rng(12))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_hflip_mirrors_about_half_the_images_and_leaves_the_rest():
    x = _batch(n=400, h=6, w=6)
    out = augment.HorizontalFlip()(x, np.random.default_rng(3))
    flipped = [np.array_equal(out[i], x[i, :, :, ::-1]) for i in range(len(x))]
    kept = [np.array_equal(out[i], x[i]) for i in range(len(x))]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))
    assert 150 < sum(flipped) < 250


def test_digits_are_never_flipped_and_fashion_is():
    specs = [{"type": "shift", "pixels": 1}, {"type": "hflip"}]
    digits = augment.build(specs, "mnist")
    assert [t.name for t in digits.transforms] == ["shift"]
    assert augment.build([{"type": "hflip"}], "mnist") is None
    assert augment.build([{"type": "hflip"}], "idx") is None  # unknown pictures: not either
    assert [t.name for t in augment.build(specs, "fashion-mnist").transforms] == ["shift", "hflip"]
    assert augment.build([{"type": "hflip", "force": True}], "idx") is not None


def test_not_on_leaves_a_transform_out_on_the_datasets_it_names():
    specs = [{"type": "shift", "not_on": ["fashion-mnist"]}, {"type": "hflip"}]
    assert [t.name for t in augment.build(specs, "fashion-mnist").transforms] == ["hflip"]
    assert [t.name for t in augment.build(specs, "mnist").transforms] == ["shift"]
    flip_not_on = [{"type": "hflip", "force": True, "not_on": ["idx"]}]
    assert augment.build(flip_not_on, "idx") is None


def test_only_on_keeps_a_transform_to_the_datasets_it_names():
    specs = [{"type": "erase", "only_on": ["fashion-mnist"]}, {"type": "shift"}]
    assert [t.name for t in augment.build(specs, "fashion-mnist").transforms] == ["erase", "shift"]
    assert [t.name for t in augment.build(specs, "mnist").transforms] == ["shift"]
    assert [t.name for t in augment.build(specs, "idx").transforms] == ["shift"]


def _erased_boxes(x, out):
    """Per image: None when untouched, else (top, left, height, width) of the changed pixels."""
    boxes = []
    for i in range(len(x)):
        changed = np.argwhere((out[i] != x[i]).any(axis=0))
        if len(changed) == 0:
            boxes.append(None)
            continue
        (top, left), (bottom, right) = changed.min(axis=0), changed.max(axis=0)
        boxes.append((top, left, bottom - top + 1, right - left + 1))
    return boxes


def test_erase_fills_one_rectangle_of_about_half_the_images():
    x = _batch(n=400, c=2, h=20, w=24) + 0.01  # no zeros: every erased pixel is visible
    before = x.copy()
    out = augment.Erase(p=0.5, area=[0.05, 0.3], aspect=0.5)(x, np.random.default_rng(4))
    assert out.shape == x.shape and out.dtype == np.float32 and np.array_equal(x, before)
    boxes = _erased_boxes(x, out)
    erased = [(i, b) for i, b in enumerate(boxes) if b is not None]
    assert 150 < len(erased) < 250
    for i, (top, left, h, w) in erased:
        box = out[i, :, top : top + h, left : left + w]
        assert np.all(box == 0)  # the whole bounding box is filled: one solid rectangle
        rest = out[i].copy()
        rest[:, top : top + h, left : left + w] = x[i, :, top : top + h, left : left + w]
        assert np.array_equal(rest, x[i])  # and nothing outside it changed
        # Area within bounds, up to rounding of each side to whole pixels.
        assert 0.05 * 480 * 0.6 <= h * w <= 0.3 * 480 * 1.5
        assert 0.5 / 1.6 <= h / w <= 1.6 / 0.5


def test_erase_is_seeded_and_fills_with_its_fill_value():
    x = _batch()
    a = augment.Erase(p=1.0, fill=0.5)(x, np.random.default_rng(8))
    b = augment.Erase(p=1.0, fill=0.5)(x, np.random.default_rng(8))
    c = augment.Erase(p=1.0, fill=0.5)(x, np.random.default_rng(9))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert all(box is not None for box in _erased_boxes(x, a))  # p=1: every image
    assert np.all(a[a != x] == 0.5)


def test_no_transforms_means_no_augmenter():
    assert augment.build([], "mnist") is None


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="integer >= 1"):
        augment.Shift(pixels=0)
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        augment.HorizontalFlip(p=0)
    with pytest.raises(ConfigError, match="low <= high"):
        augment.Erase(area=[0.5, 0.1])
    with pytest.raises(ConfigError, match="dataset names"):
        augment.Erase(only_on="mnist")
    with pytest.raises(ConfigError, match="works on images"):
        augment.Shift(1)(np.zeros((4, 784), np.float32), np.random.default_rng(0))


# --- in a run --------------------------------------------------------------------------------


def _config(folder, augment_specs, **train):
    config = small_config(folder, **train)
    config["data"]["augment"] = augment_specs
    return config


def test_an_empty_augment_list_trains_exactly_like_before(tmp_path, idx_folder):
    plain = write_config(tmp_path / "plain.yaml", small_config(idx_folder))
    empty = write_config(tmp_path / "empty.yaml", _config(idx_folder, []))
    a = records(invoke("train", plain, "--dry-run").stdout)
    b = records(invoke("train", empty, "--dry-run").stdout)
    assert without_timing(a) == without_timing(b)


def test_augmentation_changes_training_and_is_reproducible(tmp_path, idx_folder):
    plain = write_config(tmp_path / "plain.yaml", small_config(idx_folder, epochs=1))
    shifted = write_config(
        tmp_path / "shift.yaml", _config(idx_folder, [{"type": "shift"}], epochs=1)
    )
    a = records(invoke("train", plain, "--out", tmp_path / "a.npz").stdout)
    b = records(invoke("train", shifted, "--out", tmp_path / "b.npz").stdout)
    c = records(invoke("train", shifted, "--out", tmp_path / "c.npz").stdout)
    assert a[0]["train_loss"] != b[0]["train_loss"]
    assert without_timing(b[:1]) == without_timing(c[:1])
    assert b[1]["test_loss"] == c[1]["test_loss"]


def test_a_hflip_on_digits_is_noted_on_stderr(tmp_path, idx_folder):
    path = write_config(tmp_path / "f.yaml", _config(idx_folder, [{"type": "hflip"}], epochs=1))
    result = invoke("train", path, "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "data.augment[0] (hflip) is not used" in result.stderr


@pytest.mark.parametrize(
    ("specs", "needle"),
    [
        ([{"type": "shfit"}], "data.augment[0].type: unknown augmentation 'shfit'"),
        ([{"type": "shift", "padding": 2}], "did you mean 'pixels'?"),
        ([{"type": "shift", "pixels": -1}], "data.augment[0].pixels: must be an integer >= 1"),
        ({"type": "shift"}, "data.augment: expected list"),
        (
            [{"type": "shift", "not_on": ["fashion"]}],
            "data.augment[0].not_on: unknown dataset 'fashion'",
        ),
        (
            [{"type": "erase", "only_on": ["fasion-mnist"]}],
            "data.augment[0].only_on: unknown dataset 'fasion-mnist'",
        ),
    ],
)
def test_bad_augment_specs_are_exit_2_with_the_line(tmp_path, idx_folder, specs, needle):
    path = write_config(tmp_path / "bad.yaml", _config(idx_folder, specs))
    assert_error(invoke("train", path), 2, needle)
