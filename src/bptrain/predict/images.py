"""Users' images: read every common format, and prepare them the way the training data was.

read_inputs() turns paths (image files, .npy arrays, IDX files, folders, "-" for stdin) into
Items: (H, W) float32 grayscale in [0, 1], 1.0 = white, exactly as stored. preprocess() then
turns one such image into what the network was trained on:

- "digits" (MNIST): ink light on dark (a light background is inverted, judged from the border),
  background level and faint noise removed, cropped to the ink, the longest side scaled to 20 px
  (antialiased), pasted into 28x28 with its centre of mass on MNIST's centre, pixel (14, 14) in
  0-based (row, col) coordinates, by a whole-pixel shift, as MNIST did (every MNIST test digit
  has its centre of mass within half a pixel of (14, 14); the mean is (13.99, 14.01)); the
  strongest ink becomes 1.0, like MNIST's 255.
- "fashion" (Fashion-MNIST): the article light on dark, background removed, cropped, its
  longest side scaled to 28 px, centred geometrically, the brightest pixel 1.0.
- "none": the image must already have the network's input size; it is only clipped to [0, 1].

Multi-frame files (animated GIF/WebP, multi-page TIFF) give their first frame only. An image
over MAX_PIXELS (40 MP) is refused from its header, before any pixel is decoded; EPS is not
opened (Pillow would run Ghostscript on it). A folder is searched for the suffixes Pillow can
open, and .npy; IDX files are read when named as inputs.
"""

from __future__ import annotations

import functools
import io
import math
import os
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ConfigError, DataError

STYLES = ("digits", "fashion", "none")
MAX_PIXELS = 40_000_000  # per image; larger ones are refused before their pixels are decoded
MAX_BYTES = 1 << 30  # per input (after gunzip): a cap on what one input may make us hold
MNIST_SIZE = 28
MNIST_BOX = 20  # MNIST fitted each digit into a 20x20 box inside its 28x28 field
WORK_SIDE = 160  # images are analysed (not rendered) at most this big: fast, and less noisy
MIN_CONTRAST = 0.04  # ink that differs from the background by less (~10/255) is no ink
NOISE_SIGMAS = 4.0  # noise is anything within this many standard deviations of the background
BOX_LEVEL = {"digits": 0.3, "fashion": 0.02}  # the box: pixels above this fraction of the peak
FLOOR = 0.05  # after resizing, ink below this fraction of the peak is haze (JPEG ringing)
CORE = 75  # digits: this percentile of the ink becomes 1.0 (a quarter of MNIST's ink is 255)
RESAMPLE = Image.Resampling.LANCZOS  # antialiased; with GAP, a box reduce does most of it
GAP = 2.0  # Pillow's reducing_gap: 2-3x faster than pure Lanczos, the same to the network

GZIP_MAGIC = b"\x1f\x8b"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32"}
IDX_TYPES |= {0x0D: "float32", 0x0E: "float64"}
# Formats Pillow can identify but not safely or really decode here: EPS runs Ghostscript on
# the file, the others are stubs without a decoder (or need Windows).
_SKIPPED_FORMATS = frozenset({"EPS", "BUFR", "GRIB", "HDF5", "MPEG", "WMF"})
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_WIDE_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


class InputError(DataError):
    """One input (a file, a folder entry, stdin) that could not be used; the others go on."""

    def __init__(self, input: str, reason: str) -> None:
        super().__init__(f"{input}: {reason}")
        self.input = input
        self.reason = reason


@dataclass(frozen=True, eq=False)  # eq would compare arrays elementwise
class Item:
    """One image of one input: (H, W) float32 in [0, 1], grayscale, 1.0 = white, as stored."""

    input: str  # the path as given ("-" for stdin), or the file found in a given folder
    index: int | None  # position inside a multi-image input (.npy stack, IDX file), else None
    pixels: np.ndarray


# ---------------------------------------------------------------- reading inputs


def read_inputs(
    inputs: Sequence[str], *, recursive: bool = False, stdin: BinaryIO | None = None
) -> Iterator[Item | InputError]:
    """Every image of every input, in order; a failing input yields one InputError instead."""
    for name in inputs:
        if name != "-" and name and os.path.isdir(name):
            yield from _read_folder(Path(name), recursive)
            continue
        try:
            items = _read_stdin(stdin) if name == "-" else _read_path(name)
        except InputError as exc:
            yield exc
            continue
        yield from items


def read_bytes(data: bytes, name: str) -> list[Item]:
    """Every image in one input's bytes, the format sniffed from the content; else InputError."""
    return list(_sniff(data, name))


def image_files(folder: Path, *, recursive: bool = False) -> list[Path]:
    """The image and .npy files of a folder in sorted order (no hidden names); InputError."""
    files, errors = _list_images(folder, recursive)
    if errors:
        raise errors[0]
    return files


def _read_path(name: str) -> Iterable[Item]:
    if not name:
        raise InputError(repr(name), "an empty path")
    try:
        with open(name, "rb") as f:
            data = f.read(MAX_BYTES + 1)  # read(), not stat(): pipes and /dev/fd/N have no size
    except OSError as exc:
        raise InputError(name, _os_reason(exc)) from None
    if len(data) > MAX_BYTES:
        raise InputError(name, f"larger than the {MAX_BYTES >> 20} MiB limit for one input")
    return _sniff(data, name)


def _read_stdin(stdin: BinaryIO | None) -> Iterable[Item]:
    if stdin is None:
        raise InputError("-", "standard input is not available here")
    data = stdin.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise InputError("-", f"larger than the {MAX_BYTES >> 20} MiB limit for one input")
    return _sniff(data, "-")


def _read_folder(folder: Path, recursive: bool) -> Iterator[Item | InputError]:
    files, errors = _list_images(folder, recursive)
    yield from errors
    if not files and not errors:
        where = "in it or below" if recursive else "in it (--recursive looks in subfolders)"
        yield InputError(str(folder), f"no image or .npy files {where}")
    for path in files:
        try:
            items = _read_path(str(path))
        except InputError as exc:
            yield exc
            continue
        yield from items


def _list_images(folder: Path, recursive: bool) -> tuple[list[Path], list[InputError]]:
    errors: list[InputError] = []

    def failed(exc: OSError) -> None:
        errors.append(InputError(exc.filename or str(folder), _os_reason(exc, "cannot list")))

    files, suffixes = [], _suffixes()
    for root, dirs, names in os.walk(folder, onerror=failed):  # symlinked folders not followed
        dirs[:] = [d for d in dirs if not d.startswith(".")] if recursive else []
        files += [Path(root, n) for n in names if _is_image_name(n, suffixes)]
    files.sort(key=lambda path: path.relative_to(folder).parts)
    return files, errors


def _is_image_name(name: str, suffixes: frozenset[str]) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in suffixes


@functools.cache
def _suffixes() -> frozenset[str]:
    """The file suffixes a folder is searched for: what Pillow can open here, and .npy."""
    usable = _formats()
    found = {ext for ext, fmt in Image.registered_extensions().items() if fmt in usable}
    return frozenset(found | {".npy"})


@functools.cache
def _formats() -> tuple[str, ...]:
    Image.init()
    return tuple(fmt for fmt in Image.OPEN if fmt not in _SKIPPED_FORMATS)


def _os_reason(exc: OSError, verb: str = "cannot read") -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file or folder"
    if isinstance(exc, PermissionError):
        return f"{verb}: permission denied"
    return f"{verb} ({exc.strerror or exc})"


# ---------------------------------------------------------------- formats


def _sniff(data: bytes, name: str, *, unzipped: bool = False) -> Iterable[Item]:
    """Items of one input, by content: gzip (of any of these), .npy, IDX, else an image."""
    if not data:
        raise InputError(name, "empty (0 bytes)")
    if data.startswith(GZIP_MAGIC) and not unzipped:
        return _sniff(_gunzip(data, name), name, unzipped=True)
    if data.startswith(NPY_MAGIC):
        return _read_npy(data, name)
    if data[:2] == b"\0\0" and data[2] in IDX_TYPES and 1 <= data[3] <= 4:
        return _read_idx(data, name)
    if data.startswith(ZIP_MAGIC):
        raise InputError(name, "a zip archive (.npz?): save one array with numpy.save (.npy)")
    return [Item(name, None, _decode_image(data, name))]


def _gunzip(data: bytes, name: str) -> bytes:
    inflater = zlib.decompressobj(wbits=31)  # 31: gzip framing
    try:
        out = inflater.decompress(data, MAX_BYTES + 1)  # a bound: a small .gz can inflate to GBs
    except zlib.error as exc:
        raise InputError(name, f"damaged gzip data ({exc})") from None
    if len(out) > MAX_BYTES:
        raise InputError(name, f"gzip data inflates to over {MAX_BYTES >> 20} MiB")
    if not inflater.eof:
        raise InputError(name, "truncated gzip data")
    return out


def _read_idx(data: bytes, name: str) -> Iterable[Item]:
    code, ndim = data[2], data[3]
    if code != 0x08:
        reason = f"IDX data of type {IDX_TYPES[code]}; images must be unsigned bytes (0x08)"
        raise InputError(name, reason)
    if ndim not in (2, 3):
        what = "a label file" if ndim == 1 else f"{ndim} dims"
        raise InputError(name, f"IDX {what}; images have 2 dims (H, W) or 3 (N, H, W)")
    start = 4 + 4 * ndim
    if len(data) < start:
        raise InputError(name, "truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:start])
    size = math.prod(dims)
    if size == 0:
        raise InputError(name, "IDX file holds no images (a dimension is 0)")
    _check_pixels(name, dims[-1], dims[-2])
    if len(data) - start != size:
        what = "truncated" if len(data) - start < size else "extra bytes"
        raise InputError(name, f"{what}: {len(data) - start} bytes of pixels, header says {size}")
    images = np.frombuffer(data, np.uint8, size, start).reshape(dims)
    return _stack_items(name, images if ndim == 3 else images[None], 1 / 255, ndim == 3)


def _read_npy(data: bytes, name: str) -> Iterable[Item]:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)  # never unpickle: it runs code
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(name, "a .npy of Python objects; refusing to unpickle it") from None
        raise InputError(name, f"not a readable .npy array ({exc})") from None
    except Exception as exc:  # a damaged header fails in numpy's parser (TokenError, ...)
        raise InputError(name, f"damaged .npy file ({exc or type(exc).__name__})") from None
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]  # (N, 1, H, W) -> (N, H, W)
    if array.ndim not in (2, 3) or 0 in array.shape:
        need = "(H, W), (N, H, W) or (N, 1, H, W)"
        raise InputError(name, f"a .npy of shape {array.shape}; images need {need}")
    _check_pixels(name, array.shape[-1], array.shape[-2])
    scale = _npy_scale(array, name)
    return _stack_items(name, array if array.ndim == 3 else array[None], scale, array.ndim == 3)


def _npy_scale(array: np.ndarray, name: str) -> float:
    """The factor that maps the array's values to [0, 1]: uint8-like 1/255, float 1."""
    if array.dtype.kind not in "biuf":
        raise InputError(name, f"a .npy of dtype {array.dtype}; images need numbers")
    if array.dtype.kind == "b":
        return 1.0
    low, high = float(array.min()), float(array.max())
    if array.dtype.kind == "f":
        if not math.isfinite(low + high):
            raise InputError(name, "the .npy holds NaN or infinite values")
        if low >= -1e-6 and high <= 1 + 1e-6:
            return 1.0
        reason = f"float values span {low:g}..{high:g}; float images must be in 0..1"
        raise InputError(name, reason + " (divide by 255, or save uint8 0..255)")
    if low < 0 or high > 255:
        raise InputError(name, f"integer values span {low:g}..{high:g}; images need 0..255")
    return 1 / 255


def _stack_items(name: str, stack: np.ndarray, scale: float, many: bool) -> Iterator[Item]:
    """Items of an (N, H, W) stack, each converted to float32 only when it is reached."""
    for i, image in enumerate(stack):
        pixels = np.clip(np.multiply(image, scale, dtype=np.float32), 0, 1)
        yield Item(name, i if many else None, pixels)


def _check_pixels(name: str, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        reason = f"{width}x{height} pixels is over the {MAX_PIXELS // 10**6}-megapixel limit"
        raise InputError(name, reason + " (a decompression bomb? shrink a real photo first)")


def _decode_image(data: bytes, name: str) -> np.ndarray:
    """(H, W) float32 gray of an image file's first frame, upright (EXIF orientation)."""
    try:
        with warnings.catch_warnings():
            # Pillow warns (89 MP) before it refuses (179 MP); both are bombs to us. (The
            # filter is process-wide while it lasts: only decoding happens inside it.)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_formats())
            _check_pixels(name, *image.size)  # from the header: no pixel is decoded yet
            if image.format == "JPEG" and image.mode != "L":
                image.draft("L", image.size)  # libjpeg decodes only Y (ITU-R 601 luma): faster
            image.load()
            if image.getexif().get(0x0112, 1) != 1:  # 0x0112: Orientation, 1 = upright
                ImageOps.exif_transpose(image, in_place=True)
            return _to_gray(image)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        limit = f"over the {MAX_PIXELS // 10**6}-megapixel limit"
        raise InputError(name, f"{limit}: refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        reason = f"not an image, .npy or IDX file ({_describe_start(data)})"
        raise InputError(name, reason) from None
    except Exception as exc:  # Pillow's decoders raise many types on damaged data; one input
        raise InputError(name, f"cannot decode the image ({exc or type(exc).__name__})") from None


def _to_gray(image: Image.Image) -> np.ndarray:
    """(H, W) float32 in [0, 1]: ITU-R 601 luma; 16-bit scaled by 65535; alpha composited."""
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        # Through RGBA: that conversion honours a palette's or a colour key's transparency.
        rgba = image if image.mode == "LA" else image.convert("RGBA")
        return _composite(np.asarray(rgba.convert("LA"), dtype=np.float32) / 255)
    if image.mode in _WIDE_MODES:
        pixels = np.asarray(image, dtype=np.float32) / 65535
    elif image.mode == "F":
        pixels = np.asarray(image, dtype=np.float32).copy()
    else:
        pixels = np.asarray(image if image.mode == "L" else image.convert("L"), np.float32)
        pixels *= np.float32(1 / 255)
    return np.clip(pixels, 0, 1, out=pixels)


def _composite(la: np.ndarray) -> np.ndarray:
    """Gray + alpha (H, W, 2) -> gray over a background that contrasts with the ink."""
    gray, alpha = la[..., 0], la[..., 1]
    # Drawing apps leave the canvas transparent: dark strokes go on white, light ones on black.
    dark_ink = float((gray * alpha).sum()) < 0.5 * float(alpha.sum())
    return gray * alpha + (1 - alpha) if dark_ink else gray * alpha


def _describe_start(data: bytes) -> str:
    if data.lstrip()[:1] == b"<":
        return "it starts with '<': an HTML or XML page?"
    return f"it starts with bytes {data[:4].hex(' ')}"


# ---------------------------------------------------------------- preprocessing


Box = tuple[int, int, int, int]  # (left, top, right, bottom), right and bottom exclusive


@dataclass(frozen=True, eq=False)
class _Ink:
    """Where an image's ink is: its polarity, the background level and noise, its box."""

    image: Image.Image  # the image (mode "F") at full size
    blocks: Image.Image  # its k x k block means (the image itself when k = 1)
    k: int
    dark: bool  # the ink is darker than the background (it will be inverted)
    background: float
    noise: float  # standard deviation of the background in a block mean
    box: Box  # the ink's extent in blocks: pixels above BOX_LEVEL of the peak


def preprocess(
    pixels: np.ndarray, style: str, size: tuple[int, int] = (28, 28), *, name: str = ""
) -> np.ndarray:
    """One (H, W) float32 [0, 1] image -> `size` (height, width) prepared as the style says."""
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    if pixels.ndim != 2 or pixels.size == 0:
        raise InputError(name, f"an image of shape {pixels.shape}; expected (H, W)")
    if style == "none":
        return _as_is(pixels, size, name)
    if style not in BOX_LEVEL:
        raise ConfigError(f"unknown preprocessing {style!r} (choose from {', '.join(STYLES)})")
    ink = _find_ink(pixels, BOX_LEVEL[style], name)
    if style == "digits":
        side = round(MNIST_BOX / MNIST_SIZE * min(size))
        digit = _render(ink, (side, side), CORE, name)
        return _pasted(digit, size, *_mass_offset(digit, size))
    article = _render(ink, size, 100, name)
    # Fashion-MNIST rounds an odd margin up: a 21 px wide article starts at column 4.
    top, left = ((n - m + 1) // 2 for n, m in zip(size, article.shape, strict=True))
    return _pasted(article, size, top, left)


def preprocess_many(
    items: Iterable[Item | InputError], style: str, size: tuple[int, int] = (28, 28)
) -> Iterator[tuple[Item, np.ndarray] | InputError]:
    """preprocess() over read_inputs(): (item, prepared image) pairs, errors passed through."""
    for item in items:
        if isinstance(item, InputError):
            yield item
            continue
        try:
            yield item, preprocess(item.pixels, style, size, name=_label(item))
        except InputError as exc:
            yield exc


def _label(item: Item) -> str:
    return item.input if item.index is None else f"{item.input}[{item.index}]"


def _as_is(pixels: np.ndarray, size: tuple[int, int], name: str) -> np.ndarray:
    if pixels.shape != tuple(size):
        got, need = _wxh(pixels.shape), _wxh(size)
        raise InputError(name, f"is {got}; --preprocess none needs {need} images")
    return np.clip(pixels, 0, 1)


def _wxh(shape: Sequence[int]) -> str:
    return f"{shape[1]}x{shape[0]}"  # width x height, as image tools say it


def _find_ink(pixels: np.ndarray, level: float, name: str) -> _Ink:
    """Polarity, background, noise and the ink's box, found on a reduced (less noisy) copy."""
    # Analysed as k x k block means (at most WORK_SIDE px a side): k^2 fewer pixels to look at
    # and 1/k of the noise; a digit small in a large photo is still rendered from full size.
    image = Image.fromarray(pixels)  # mode "F": Pillow reduces and resamples it in C
    k = max(1, math.ceil(max(pixels.shape) / WORK_SIDE))
    blocks = image.reduce(k) if k > 1 else image
    small = np.asarray(blocks) if k > 1 else pixels
    background, noise = _border_level(small)
    low, high = float(small.min()), float(small.max())
    dark = background - low > high - background  # the ink is what departs most from the border
    peak, floor = (background - low, high - background)[not dark], NOISE_SIGMAS * noise
    if peak < max(MIN_CONTRAST, floor):
        what = "blank" if peak < MIN_CONTRAST else "only noise on a plain background"
        raise InputError(name, f"no ink: the image is {what} (contrast {peak:.2f} at most)")
    threshold = max(level * peak, floor)
    mask = small < background - threshold if dark else small > background + threshold
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    return _Ink(image, blocks, k, dark, background, noise, box)


def _border_level(small: np.ndarray) -> tuple[float, float]:
    """The background (median of the border) and its noise (standard deviation)."""
    ring = np.concatenate([small[0], small[:, -1], small[-1, ::-1], small[::-1, 0]])
    background = _median(ring)
    # Noise from neighbours' differences (MAD / sqrt 2): ink or an article reaching the border
    # changes the level of a few border pixels, but barely the spread of their differences.
    noise = 1.4826 / math.sqrt(2) * _median(np.abs(np.diff(ring)))
    return background, noise


def _median(values: np.ndarray) -> float:
    """The (upper) median: np.median's overhead is ten times the work for a few hundred values."""
    return float(np.partition(values, len(values) // 2)[len(values) // 2])


def _render(ink: _Ink, fit: tuple[int, int], core: float, name: str) -> np.ndarray:
    """The ink's box resized to fit `fit` (height, width), light on black, in [0, 1].

    The `core` percentile of the ink becomes 1.0 (100: the brightest pixel): MNIST's strokes
    are mostly saturated (a quarter of their pixels are 255), a resized photo's are not.
    """
    image, box, noise = _source(ink, max(fit))
    left, top, right, bottom = box
    scale = min(fit[0] / (bottom - top), fit[1] / (right - left))
    out = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    resized = np.asarray(image.resize(out, RESAMPLE, box=box, reducing_gap=GAP))
    y = ink.background - resized if ink.dark else resized - ink.background
    # Shrinking averages about 1/scale^2 pixels into one: the noise left is that much smaller.
    peak = float(y.max())
    cut = max(NOISE_SIGMAS * noise * min(1.0, scale), FLOOR * peak)
    if peak <= cut:
        raise InputError(name, "no ink left after removing the background noise")
    ink_mask = y > cut  # below: noise, paper texture and JPEG haze, set to black
    values = y[ink_mask]
    rank = min(len(values) - 1, int(len(values) * core / 100))
    top_level = float(np.partition(values, rank)[rank])
    return np.where(ink_mask, np.minimum(y / top_level, 1), 0).astype(np.float32)


def _source(ink: _Ink, side: int) -> tuple[Image.Image, Box, float]:
    """What to resample: the block means when the ink spans enough blocks, else full size."""
    left, top, right, bottom = ink.box
    if ink.k == 1 or max(right - left, bottom - top) >= 2 * side:
        return ink.blocks, ink.box, ink.noise
    width, height = ink.image.size
    box = (left * ink.k, top * ink.k, min(width, right * ink.k), min(height, bottom * ink.k))
    return ink.image, box, ink.noise * ink.k  # one pixel has k times a block mean's noise


def _mass_offset(digit: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
    """The whole-pixel (top, left) that puts the digit's centre of mass nearest size / 2."""
    mass = float(digit.sum())
    cy = float(digit.sum(axis=1) @ np.arange(digit.shape[0])) / mass
    cx = float(digit.sum(axis=0) @ np.arange(digit.shape[1])) / mass
    return round(size[0] / 2 - cy), round(size[1] / 2 - cx)


def _pasted(part: np.ndarray, size: tuple[int, int], top: int, left: int) -> np.ndarray:
    """`part` (never larger than `size`) on a black canvas, moved inside where it sticks out."""
    canvas = np.zeros(size, dtype=np.float32)
    top = min(max(top, 0), size[0] - part.shape[0])  # a lopsided digit keeps all its ink
    left = min(max(left, 0), size[1] - part.shape[1])
    canvas[top : top + part.shape[0], left : left + part.shape[1]] = part
    return canvas


# ---------------------------------------------------------------- labelled folders


def class_folders(root: Path, class_names: Sequence[str]) -> list[tuple[str, int]]:
    """(file, label) pairs of a folder-per-class tree (torchvision ImageFolder, Keras), sorted.

    Each subfolder of `root` names its class by index ("3") or by name ("Trouser", any case;
    "t-shirt", "tshirt_top" or "top" for "T-shirt/top"); files below it are of that class.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(str(root), "no such folder" if not root.exists() else "not a folder")
    lookup = _class_lookup(class_names)
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise InputError(str(root), _os_reason(exc, "cannot list")) from None
    accepted = _accepted(class_names)
    if not folders:
        raise InputError(str(root), f"no class folders in it (name them {accepted})")
    pairs: list[tuple[str, int]] = []
    for folder in folders:
        label = lookup.get(_class_key(folder.name))
        if label is None:
            raise InputError(str(folder), f"names no class (class folders are named {accepted})")
        pairs += [(str(path), label) for path in image_files(folder, recursive=True)]
    if not pairs:
        raise InputError(str(root), "no image or .npy files in its class folders")
    return pairs


def _class_lookup(class_names: Sequence[str]) -> dict[str, int]:
    """Folder-name keys -> labels: the index, the name, and each '/'-part of a name."""
    lookup: dict[str, int] = {}
    for label, class_name in enumerate(class_names):
        for key in (class_name, *class_name.split("/")):
            lookup.setdefault(_class_key(key), label)
    for label in range(len(class_names)):  # an index always means that class
        lookup[str(label)] = label
    return lookup


def _class_key(name: str) -> str:
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    return str(int(key)) if key.isdigit() else key  # "03" is class 3


def _accepted(class_names: Sequence[str]) -> str:
    indices = f"0..{len(class_names) - 1}"
    names = [n for n in class_names if n != str(class_names.index(n))]
    return f"{indices} or {', '.join(names)}" if names else indices


def save_image(pixels: np.ndarray, path: Path) -> None:
    """Write a [0, 1] image as an 8-bit grayscale file (the format from the suffix, e.g. PNG)."""
    values = np.clip(np.round(np.asarray(pixels, dtype=np.float32) * 255), 0, 255)
    Image.fromarray(values.astype(np.uint8)).save(path)
