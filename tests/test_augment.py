"""Data augmentation (augment.py): what each transform does, and how runs use it."""

import numpy as np
import pytest

from bptrain import augment
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


def test_no_transforms_means_no_augmenter():
    assert augment.build([], "mnist") is None


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="integer >= 1"):
        augment.Shift(pixels=0)
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        augment.HorizontalFlip(p=0)
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
    ],
)
def test_bad_augment_specs_are_exit_2_with_the_line(tmp_path, idx_folder, specs, needle):
    path = write_config(tmp_path / "bad.yaml", _config(idx_folder, specs))
    assert_error(invoke("train", path), 2, needle)
