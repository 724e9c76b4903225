"""bptrain.predict: real files of every format (decode), bad inputs, folders (read),
preprocessing, class folders."""

from __future__ import annotations

import gzip
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bptrain.errors import ConfigError, DataError, ExitCode
from bptrain.predict.decode import InputError, Item, read_bytes
from bptrain.predict.folders import class_folders
from bptrain.predict.preprocess import png_bytes, preprocess, preprocess_many
from bptrain.predict.read import paths_from_list, read_inputs
from data_helpers import idx_bytes
from image_helpers import (
    centre_of_mass,
    encode,
    ink_box,
    mnist_like,
    photo,
    png_claiming,
    stroke_digit,
    to_uint8,
    write,
)

MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat")
FASHION_NAMES += ("Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DIGIT_NAMES = tuple(str(d) for d in range(10))


@pytest.fixture(scope="module")
def paper() -> np.ndarray:
    """A 7 drawn dark on light paper (60, 80) uint8: what most files in these tests hold."""
    ink = stroke_digit("7", side=60)
    page = np.full((60, 80), 230, dtype=np.float32)
    page[:, 10:70] -= 200 * ink
    return page.astype(np.uint8)


def read_one(path: str | Path, **options) -> Item:
    """The one Item a single-image input yields (fails on an InputError)."""
    (item,) = read_inputs([str(path)], **options)
    assert isinstance(item, Item), item
    return item


def read_error(inputs: list[str], **options) -> InputError:
    """The one InputError a failing input yields."""
    (error,) = read_inputs(inputs, **options)
    assert isinstance(error, InputError), error
    return error


# ---------------------------------------------------------------- formats

LOSSLESS = [
    ("png", "PNG", "L"),
    ("png", "PNG", "RGB"),
    ("bmp", "BMP", "L"),
    ("gif", "GIF", "L"),
    ("tif", "TIFF", "L"),
    ("tiff", "TIFF", "RGB"),
    ("webp", "WEBP", "RGB"),  # lossless below
    ("pgm", "PPM", "L"),
    ("ppm", "PPM", "RGB"),
]


@pytest.mark.parametrize(("suffix", "fmt", "mode"), LOSSLESS)
def test_lossless_formats_read_exactly(tmp_path, paper, suffix, fmt, mode):
    options = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(Image.fromarray(paper).convert(mode), fmt, **options)
    item = read_one(write(tmp_path / f"seven.{suffix}", data))
    assert item.pixels.dtype == np.float32 and item.pixels.shape == paper.shape
    assert item.index is None and item.input == str(tmp_path / f"seven.{suffix}")
    # Gray pixels go through RGB and back (ITU-R 601 luma) unchanged, to 1/255.
    np.testing.assert_allclose(item.pixels, paper / 255, atol=1.01 / 255)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_reads_close_to_the_original(tmp_path, paper, mode):
    data = encode(Image.fromarray(paper).convert(mode), "JPEG", quality=95)
    item = read_one(write(tmp_path / "seven.jpg", data))
    assert item.pixels.shape == paper.shape
    assert np.abs(item.pixels - paper / 255).mean() < 0.02


def test_rgb_is_converted_with_itu_601_luma(tmp_path):
    colours = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 120, 200]]], np.uint8)
    item = read_one(write(tmp_path / "colours.png", encode(Image.fromarray(colours), "PNG")))
    expected = colours @ np.array([0.299, 0.587, 0.114]) / 255
    np.testing.assert_allclose(item.pixels[0], expected[0], atol=1.01 / 255)


def test_exif_orientation_of_a_jpeg_is_applied(tmp_path):
    stored = np.full((20, 40), 255, np.uint8)
    stored[:8, :8] = 0  # a dark mark at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif)
    item = read_one(write(tmp_path / "phone.jpg", data))
    assert item.pixels.shape == (40, 20)  # upright: portrait
    upright = np.rot90(stored, k=-1) / 255  # clockwise
    assert np.abs(item.pixels - upright).mean() < 0.03
    assert item.pixels[:8, -8:].mean() < 0.1  # the mark went to the top-right


def test_sixteen_bit_png_is_scaled_by_65535(tmp_path):
    values = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    item = read_one(write(tmp_path / "deep.png", data))
    np.testing.assert_allclose(item.pixels[0], values[0] / 65535, atol=1e-6)


def test_black_strokes_on_a_transparent_canvas_are_on_white(tmp_path):
    ink = to_uint8(stroke_digit("4", side=40))
    rgba = np.zeros((40, 40, 4), np.uint8)  # transparent black: what drawing apps leave
    rgba[..., 3] = ink  # opaque where the pen went, black
    item = read_one(write(tmp_path / "drawn.png", encode(Image.fromarray(rgba), "PNG")))
    np.testing.assert_allclose(item.pixels, 1 - ink / 255, atol=1.01 / 255)
    on_white = preprocess(1 - ink / 255, "digits")
    np.testing.assert_allclose(preprocess(item.pixels, "digits"), on_white, atol=0.02)


def test_white_strokes_on_a_transparent_white_canvas_are_on_black(tmp_path):
    ink = to_uint8(stroke_digit("4", side=40))
    rgba = np.full((40, 40, 4), 255, np.uint8)
    rgba[..., 3] = ink  # the canvas is white too, but transparent: only alpha tells
    item = read_one(write(tmp_path / "drawn.png", encode(Image.fromarray(rgba), "PNG")))
    np.testing.assert_allclose(item.pixels, ink / 255, atol=1.01 / 255)


def test_palette_transparency_counts_as_background(tmp_path):
    indices = (stroke_digit("1", side=30) > 0.5).astype(np.uint8)  # 1 = ink, 0 = clear
    image = Image.fromarray(indices, mode=None).convert("P")
    image.putpalette([0, 0, 0, 40, 40, 40] + [0] * 762)  # clear is black, ink dark gray
    data = encode(image, "PNG", transparency=0)
    item = read_one(write(tmp_path / "palette.png", data))
    # Dark ink on a transparent canvas goes on white: ink 40/255, background 1.0.
    np.testing.assert_allclose(item.pixels, np.where(indices, 40 / 255, 1.0), atol=1e-6)


def test_an_animated_gif_gives_its_first_frame(tmp_path, paper):
    frames = [Image.fromarray(paper), Image.fromarray(255 - paper)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    item = read_one(write(tmp_path / "anim.gif", data))
    np.testing.assert_allclose(item.pixels, paper / 255, atol=1.01 / 255)


# ---------------------------------------------------------------- .npy and IDX


def test_npy_of_one_uint8_image(tmp_path, paper):
    np.save(tmp_path / "one.npy", paper)
    item = read_one(tmp_path / "one.npy")
    assert item.index is None and item.pixels.dtype == np.float32
    np.testing.assert_allclose(item.pixels, paper / 255, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 28, 28), (3, 1, 28, 28)])
def test_npy_stack_of_floats_gives_every_image_with_its_index(tmp_path, shape):
    stack = np.random.default_rng(0).random(shape)  # float64 in 0..1
    np.save(tmp_path / "stack.npy", stack)
    items = list(read_inputs([str(tmp_path / "stack.npy")]))
    assert [item.index for item in items] == [0, 1, 2]
    for item, image in zip(items, stack.reshape(3, 28, 28), strict=True):
        np.testing.assert_allclose(item.pixels, image, atol=1e-6)


def test_npy_of_integers_in_0_255_and_of_booleans(tmp_path):
    np.save(tmp_path / "ints.npy", np.array([[0, 255], [51, 102]], dtype=np.int64))
    np.save(tmp_path / "mask.npy", np.array([[True, False]]))
    ints, mask = read_inputs([str(tmp_path / "ints.npy"), str(tmp_path / "mask.npy")])
    np.testing.assert_allclose(ints.pixels, [[0, 1], [0.2, 0.4]], atol=1e-6)
    np.testing.assert_array_equal(mask.pixels, [[1.0, 0.0]])


def test_npy_of_objects_is_refused_and_never_unpickled(tmp_path):
    victim = tmp_path / "unpickling-ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(victim),))  # unpickling this creates `victim`

    np.save(tmp_path / "evil.npy", np.array([Payload()], dtype=object), allow_pickle=True)
    error = read_error([str(tmp_path / "evil.npy")])
    assert "Python objects" in error.reason and "unpickle" in error.reason
    assert not victim.exists()
    # The payload is live: loading it the unsafe way does create the file.
    np.load(tmp_path / "evil.npy", allow_pickle=True)
    assert victim.exists()


def test_a_plain_pickle_is_no_image(tmp_path):
    path = write(tmp_path / "data.pkl", pickle.dumps({"a": 1}))
    assert "not an image" in read_error([path]).reason


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros((2, 3, 4, 5)), "shape (2, 3, 4, 5)"),
        (np.zeros((0, 28, 28)), "shape (0, 28, 28)"),
        (np.full((4, 4), 255.0), "0..255"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.full((4, 4), 300, dtype=np.int32), "0..255"),
        (np.zeros((4, 4), dtype=np.complex64), "complex64"),
    ],
)
def test_npy_arrays_that_are_no_images_are_refused(tmp_path, array, words):
    np.save(tmp_path / "bad.npy", array)
    assert words in read_error([str(tmp_path / "bad.npy")]).reason


@pytest.mark.parametrize(
    ("shape", "indices", "image"),
    [
        ((5, 6), [None], (5, 6)),
        ((5, 6, 3), [None], (5, 6)),  # RGB: one image, never 5 slivers 6x3
        ((5, 6, 4), [None], (5, 6)),
        ((5, 6, 2), [None], (5, 6)),
        ((5, 6, 1), [None], (5, 6)),
        ((28, 3, 3), [None], (28, 3)),  # (N, 28, 3) is one image N pixels high
        ((2, 5, 6), [0, 1], (5, 6)),
        ((3, 5, 6), [0, 1, 2], (5, 6)),  # channels first: three images (see decode.py)
        ((2, 5, 6, 3), [0, 1], (5, 6)),
        ((2, 1, 5, 6), [0, 1], (5, 6)),
    ],
)
def test_npy_axes_follow_one_rule(tmp_path, shape, indices, image):
    np.save(tmp_path / "a.npy", np.random.default_rng(0).integers(0, 256, shape, np.uint8))
    items = list(read_inputs([str(tmp_path / "a.npy")]))
    assert [item.index for item in items] == indices
    assert all(item.pixels.shape == image and item.pixels.dtype == np.float32 for item in items)


def test_colour_becomes_luma_and_alpha_goes_over_a_contrasting_background(tmp_path):
    colours = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 120, 200]]], np.uint8)
    np.save(tmp_path / "rgb.npy", colours)
    expected = colours @ np.array([0.299, 0.587, 0.114]) / 255
    np.testing.assert_allclose(read_one(tmp_path / "rgb.npy").pixels, expected, atol=1e-6)
    ink = to_uint8(stroke_digit("4", side=40))  # black strokes on a transparent canvas
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 3] = ink
    np.save(tmp_path / "rgba.npy", rgba)
    as_png = read_one(write(tmp_path / "rgba.png", encode(Image.fromarray(rgba), "PNG")))
    np.testing.assert_allclose(read_one(tmp_path / "rgba.npy").pixels, as_png.pixels, atol=1e-6)


def test_idx_files_follow_the_same_rule(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    (item,) = read_inputs([write(tmp_path / "rgb-idx3-ubyte", idx_bytes(rgb))])
    assert item.index is None and item.pixels.shape == (28, 28)


@pytest.mark.parametrize(
    ("data", "null", "paths"),
    [
        (b"a.png\nb.png\n", False, ("a.png", "b.png")),
        (b" a.png \r\n\n\tb.png", False, ("a.png", "b.png")),  # blanks around lines go
        (b"a.png\0 b .png\0", False, ("a.png", " b .png")),  # a NUL: NUL-separated, exact
        (b"new\nline.png\0", False, ("new\nline.png",)),
        (b"one name.png\n", True, ("one name.png\n",)),  # -0: nothing is stripped
        (b"caf\xe9.png\n", False, ("caf\udce9.png",)),  # not UTF-8: os.fsdecode
        (b"", False, ()),
    ],
)
def test_lists_of_paths(data, null, paths):
    assert paths_from_list(data, null=null) == paths


@pytest.mark.parametrize("compress", [False, True])
def test_idx_image_files_raw_and_gzipped(tmp_path, compress):
    images = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    data = idx_bytes(images)
    name = "imgs-idx3-ubyte" + (".gz" if compress else "")
    path = write(tmp_path / name, gzip.compress(data) if compress else data)
    items = list(read_inputs([path]))
    assert [item.index for item in items] == [0, 1, 2, 3]
    np.testing.assert_allclose(np.stack([i.pixels for i in items]), images / 255, atol=1e-6)


def test_idx_labels_and_truncated_idx_are_refused(tmp_path):
    labels = write(tmp_path / "labels-idx1-ubyte", idx_bytes(np.arange(5, dtype=np.uint8)))
    cut = write(tmp_path / "cut-idx3-ubyte", idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-10])
    first, second = read_inputs([labels, cut])
    assert "label file" in first.reason
    assert "truncated" in second.reason


# ---------------------------------------------------------------- folders and stdin


def test_a_folder_gives_its_images_in_sorted_order(tmp_path, paper):
    png = encode(Image.fromarray(paper), "PNG")
    for name in ("b.png", "a.png", "c.JPG", ".hidden.png", "sub/d.png", ".git/e.png"):
        write(
            tmp_path / name,
            png if not name.endswith("JPG") else encode(Image.fromarray(paper), "JPEG"),
        )
    write(tmp_path / "notes.txt", b"not an image, and not read")
    np.save(tmp_path / "z.npy", np.stack([paper, paper]))
    names = [Path(item.input).name for item in read_inputs([str(tmp_path)])]
    assert names == ["a.png", "b.png", "c.JPG", "z.npy", "z.npy"]
    deep = [item.input for item in read_inputs([str(tmp_path)], recursive=True)]
    assert [Path(p).relative_to(tmp_path).as_posix() for p in deep] == [
        "a.png", "b.png", "c.JPG", "sub/d.png", "z.npy", "z.npy",
    ]  # fmt: skip


def test_a_damaged_file_in_a_folder_fails_alone(tmp_path, paper):
    png = encode(Image.fromarray(paper), "PNG")
    write(tmp_path / "a.png", png)
    write(tmp_path / "b.png", png[: len(png) // 2])  # truncated
    write(tmp_path / "c.png", png)
    results = list(read_inputs([str(tmp_path)]))
    assert [type(r) for r in results] == [Item, InputError, Item]
    assert results[1].input == str(tmp_path / "b.png")


def test_an_empty_folder_is_an_error(tmp_path):
    write(tmp_path / "readme.txt", b"no images here")
    error = read_error([str(tmp_path)])
    assert error.input == str(tmp_path) and "no image" in error.reason


def test_stdin_bytes_of_any_format(paper):
    npy = io.BytesIO()
    np.save(npy, paper)
    for data in (encode(Image.fromarray(paper), "PNG"), npy.getvalue()):
        (item,) = read_inputs(["-"], stdin=io.BytesIO(data))
        assert item.input == "-"
        np.testing.assert_allclose(item.pixels, paper / 255, atol=1e-6)
    assert "not available" in read_error(["-"]).reason


def test_read_bytes_sniffs_content_not_names(paper):
    (item,) = read_bytes(encode(Image.fromarray(paper), "BMP"), "upload.png")
    assert item.input == "upload.png" and item.pixels.shape == paper.shape
    with pytest.raises(InputError, match=r"upload\.png: empty"):
        read_bytes(b"", "upload.png")


# ---------------------------------------------------------------- bad inputs


def test_bad_inputs_fail_one_by_one_and_in_order(tmp_path, paper):
    good = write(tmp_path / "good.png", encode(Image.fromarray(paper), "PNG"))
    png = Path(good).read_bytes()
    inputs = [
        str(tmp_path / "missing.png"),
        write(tmp_path / "cut.png", png[:60]),
        good,
        write(tmp_path / "noise.png", bytes(range(256)) * 4),
        write(tmp_path / "empty.png", b""),
        write(tmp_path / "page.png", b"<html><body>404</body></html>"),
        write(tmp_path / "archive.npz", b"PK\x03\x04" + bytes(40)),
    ]
    results = list(read_inputs(inputs))
    assert [r.input for r in results] == inputs
    assert isinstance(results[2], Item)
    reasons = [r.reason for r in results if isinstance(r, InputError)]
    assert reasons[0] == "no such file or folder"
    assert "cannot decode" in reasons[1] or "truncated" in reasons[1]
    assert "not an image" in reasons[2] and "starts with bytes 00 01 02 03" in reasons[2]
    assert "empty" in reasons[3]
    assert "HTML" in reasons[4]
    assert "zip" in reasons[5]


def test_an_input_error_is_a_data_error_naming_its_input():
    error = InputError("photo.png", "no ink")
    assert isinstance(error, DataError) and error.exit_code == ExitCode.DATA == 3
    assert str(error) == "photo.png: no ink"
    assert (error.input, error.reason) == ("photo.png", "no ink")


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (7000, 6000),  # over bptrain's limit, under Pillow's
        (10000, 10000),  # Pillow warns: the warning must not escape
        (100000, 100000),  # Pillow refuses
    ],
)
def test_decompression_bombs_are_refused_before_decoding(tmp_path, width, height):
    path = write(tmp_path / "bomb.png", png_claiming(width, height))
    error = read_error([path])  # a decoded bomb would take 36 MB .. 10 GB, and seconds
    assert "40-megapixel limit" in error.reason and "decompression bomb" in error.reason


def test_a_gzip_that_is_cut_short_is_refused(tmp_path):
    data = gzip.compress(idx_bytes(np.zeros((2, 28, 28), np.uint8)))
    assert "truncated gzip" in read_error([write(tmp_path / "x.gz", data[:-12])]).reason


# ---------------------------------------------------------------- preprocessing: digits


@pytest.mark.parametrize("shape", ["7", "1", "0", "4", "L"])
def test_digits_are_boxed_in_20_px_with_the_centre_of_mass_at_14_14(shape):
    for side, width in ((60, 6), (200, 18)):
        out = preprocess(stroke_digit(shape, side=side, width=width), "digits")
        assert out.shape == (28, 28) and out.dtype == np.float32
        assert out.min() >= 0 and out.max() == 1.0
        assert max(ink_box(out)) == 20
        row, col = centre_of_mass(out)
        assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5  # MNIST's convention


def test_an_mnist_style_digit_comes_out_nearly_unchanged():
    digit = mnist_like("4")  # already 20 px boxed and mass-centred
    again = preprocess(digit, "digits")
    assert np.abs(again - digit).mean() < 0.01


def test_a_photo_of_a_digit_comes_out_like_the_digit():
    digit = mnist_like("7")
    page = photo(digit, canvas=(300, 200), at=(120, 40), side=150, paper=180, pen=30)
    out = preprocess(np.asarray(page, np.float32) / 255, "digits")
    assert np.abs(out - digit).mean() < 0.05


@pytest.mark.parametrize(("paper", "pen", "noise"), [(150, 80, 0), (250, 0, 8), (200, 60, 6)])
def test_paper_tone_noise_and_blur_vanish(paper, pen, noise):
    digit = mnist_like("0")
    page = photo(digit, side=150, paper=paper, pen=pen, noise=noise, blur=1.0, seed=3)
    out = preprocess(np.asarray(page, np.float32) / 255, "digits")
    assert np.abs(out - digit).mean() < 0.05
    assert out[digit == 0].mean() < 0.02  # the paper (and its noise) became black


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_photos_in_every_format_come_out_alike(tmp_path, fmt):
    digit = mnist_like("4")
    page = photo(digit, canvas=(300, 200), at=(20, 50), side=140, paper=220, pen=20, noise=4)
    path = write(tmp_path / f"four.{fmt.lower()}", encode(page, fmt))
    out = preprocess(read_one(path).pixels, "digits")
    assert np.abs(out - digit).mean() < 0.05


def test_polarity_dark_on_light_equals_light_on_dark():
    ink = stroke_digit("7", side=90)
    light_on_dark = preprocess(ink, "digits")
    dark_on_light = preprocess(1 - ink, "digits")
    np.testing.assert_allclose(dark_on_light, light_on_dark, atol=1e-5)


def test_a_lopsided_digit_keeps_all_its_ink():
    ink = np.zeros((100, 100), np.float32)
    ink[5:95, 5:15] = 1.0  # a thick bar ...
    ink[5:8, 15:95] = 0.2  # ... with a long, faint arm
    out = preprocess(ink, "digits")
    assert max(ink_box(out)) <= 28 and out.max() == 1.0


@pytest.mark.parametrize(
    "pixels",
    [
        np.ones((50, 50), np.float32),
        np.zeros((28, 28), np.float32),
        np.clip(0.8 + np.random.default_rng(0).normal(0, 0.02, (120, 90)), 0, 1),
    ],
    ids=["white", "black", "gray-noise"],
)
def test_an_empty_image_says_no_ink(pixels):
    with pytest.raises(InputError, match=r"blank\.png: no ink"):
        preprocess(pixels.astype(np.float32), "digits", name="blank.png")


def test_other_sizes_scale_the_box():
    out = preprocess(stroke_digit("1"), "digits", (56, 56))
    assert out.shape == (56, 56) and max(ink_box(out)) == 40
    row, col = centre_of_mass(out)
    assert abs(row - 28) <= 0.5 and abs(col - 28) <= 0.5


# ---------------------------------------------------------------- fashion, none, styles


def test_fashion_articles_fill_28_px_light_on_dark_centred():
    page = np.full((200, 300), 0.97, np.float32)  # a product photo: white background
    page[40:160, 100:160] = 0.3  # a dark, tall article (a dress), off-centre
    page[60:100, 90:170] = 0.5
    out = preprocess(page, "fashion")
    height, width = ink_box(out)
    assert height == 28 and width in (18, 19)  # aspect kept: 80 x 120 -> 19 x 28
    cols = np.flatnonzero(out.any(axis=0))
    assert abs((28 - 1 - cols[-1]) - cols[0]) <= 1  # centred geometrically
    assert out.max() == 1.0 and out[0, 0] == 0  # light on dark


def test_none_only_clips_and_names_the_size_it_needs():
    pixels = np.linspace(-0.5, 1.5, 28 * 28, dtype=np.float32).reshape(28, 28)
    np.testing.assert_array_equal(preprocess(pixels, "none"), np.clip(pixels, 0, 1))
    with pytest.raises(InputError, match=r"x.png: is 30x28; --preprocess none needs 28x28"):
        preprocess(np.zeros((28, 30), np.float32), "none", name="x.png")


def test_unknown_styles_are_config_errors():
    with pytest.raises(ConfigError, match="digits, fashion, none"):
        preprocess(stroke_digit(), "mnist")


def test_preprocess_many_passes_errors_through(tmp_path, paper):
    good = write(tmp_path / "a.png", encode(Image.fromarray(paper), "PNG"))
    blank = write(tmp_path / "b.png", encode(Image.new("L", (30, 30), 255), "PNG"))
    results = list(preprocess_many(read_inputs([good, blank, "nope.png"]), "digits"))
    assert isinstance(results[0], tuple) and results[0][1].shape == (28, 28)
    assert [r.input for r in results[1:]] == [blank, "nope.png"]
    assert "no ink" in results[1].reason


def test_save_image_round_trips_through_png(tmp_path):
    digit = mnist_like("7")
    (tmp_path / "seen.png").write_bytes(png_bytes(digit))
    np.testing.assert_allclose(read_one(tmp_path / "seen.png").pixels, digit, atol=0.5 / 255)


# ---------------------------------------------------------------- class folders


def test_class_folders_by_index(tmp_path, paper):
    png = encode(Image.fromarray(paper), "PNG")
    for name in ("3/b.png", "3/a.png", "x.png", "0/deep/z.png", ".cache/q.png"):
        write(tmp_path / name, png)
    write(tmp_path / "labels.csv", b"ignored")
    pairs = class_folders(tmp_path, DIGIT_NAMES)
    assert [(Path(p).relative_to(tmp_path).as_posix(), t) for p, t in pairs] == [
        ("0/deep/z.png", 0), ("3/a.png", 3), ("3/b.png", 3),
    ]  # fmt: skip


def test_class_folders_by_name_any_case(tmp_path, paper):
    png = encode(Image.fromarray(paper), "PNG")
    for name in ("trouser/a.png", "T-shirt/a.png", "tshirt_top/b.png", "ANKLE BOOT/c.png"):
        write(tmp_path / name, png)
    labels = {Path(p).parent.name: t for p, t in class_folders(tmp_path, FASHION_NAMES)}
    assert labels == {"ANKLE BOOT": 9, "T-shirt": 0, "trouser": 1, "tshirt_top": 0}


def test_a_folder_that_names_no_class_is_an_error(tmp_path, paper):
    write(tmp_path / "3/a.png", encode(Image.fromarray(paper), "PNG"))
    write(tmp_path / "cats/a.png", encode(Image.fromarray(paper), "PNG"))
    with pytest.raises(InputError) as caught:
        class_folders(tmp_path, DIGIT_NAMES)
    assert caught.value.input == str(tmp_path / "cats") and "0..9" in caught.value.reason
    with pytest.raises(InputError, match="Trouser"):
        class_folders(tmp_path, FASHION_NAMES)


def test_an_empty_tree_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no class folders"):
        class_folders(tmp_path, DIGIT_NAMES)
    (tmp_path / "3").mkdir()
    with pytest.raises(InputError, match="no image"):
        class_folders(tmp_path, DIGIT_NAMES)
    with pytest.raises(InputError, match="no such folder"):
        class_folders(tmp_path / "missing", DIGIT_NAMES)


# ---------------------------------------------------------------- the real MNIST (slow)


@pytest.fixture(scope="module")
def mnist_test() -> np.ndarray:
    """The real MNIST test digits (N, 28, 28) float32 in [0, 1]; skips when absent."""
    if not (MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no MNIST copy at {MNIST}")
    from bptrain.data import load

    return load("mnist", MNIST, offline=True, quiet=True, splits=("test",)).x_test[:, 0]


@pytest.mark.slow
def test_real_mnist_digits_as_png_come_out_unchanged(tmp_path, mnist_test):
    digits = mnist_test[:2000]
    out = []
    for n, digit in enumerate(digits):
        path = write(tmp_path / f"{n}.png", encode(Image.fromarray(to_uint8(digit)), "PNG"))
        out.append(preprocess(read_one(path).pixels, "digits"))
    diff = np.abs(np.stack(out) - digits).mean(axis=(1, 2))
    assert diff.mean() < 0.01  # measured: 0.0036 over all 10,000
    assert np.median(diff) < 0.002


@pytest.mark.slow
def test_real_mnist_centres_of_mass_are_at_14_14(mnist_test):
    rows, cols = np.array([centre_of_mass(d) for d in mnist_test[:2000]]).T
    assert abs(rows.mean() - 14) < 0.05 and abs(cols.mean() - 14) < 0.05  # not 13.5
    assert np.all(np.abs(rows - 14) <= 0.5) and np.all(np.abs(cols - 14) <= 0.5)


@pytest.mark.slow
def test_real_mnist_photos_come_out_like_the_digits(mnist_test):
    rng = np.random.default_rng(0)
    diffs = []
    for digit in mnist_test[:300]:
        side = int(rng.integers(90, 190))
        at = (int(rng.integers(0, 300 - side)), int(rng.integers(0, 200 - side)))
        page = photo(
            digit, at=at, side=side, paper=rng.uniform(150, 250), pen=rng.uniform(0, 80),
            noise=rng.uniform(0, 8), blur=rng.uniform(0, 1.5), seed=int(rng.integers(1 << 30)),
        )  # fmt: skip
        data = encode(page, "JPEG", quality=85) if rng.random() < 0.5 else encode(page, "PNG")
        (item,) = read_bytes(data, "photo")
        diffs.append(np.abs(preprocess(item.pixels, "digits") - digit).mean())
    assert np.mean(diffs) < 0.04  # measured: ~0.03
