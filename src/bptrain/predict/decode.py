"""One input's bytes -> grey images: PNG, JPEG and whatever else Pillow opens, .npy, IDX, gzip.

The format is sniffed from the content, never from the name. Every image comes out as an Item:
(H, W) float32 grayscale in [0, 1], 1.0 = white, exactly as stored. Multi-frame files (animated
GIF/WebP, multi-page TIFF) give their first frame only. An image over MAX_PIXELS (40 MP) is
refused from its header, before any pixel is decoded; EPS is not opened (Pillow would run
Ghostscript on it).

Arrays (.npy, IDX) follow one rule for their axes, so that an RGB photo is never read as slivers:
- (H, W) is one grey image;
- a last axis of 1 to 4 is colour channels, as PIL, OpenCV, matplotlib and Keras hold images:
  1 grey, 2 grey + alpha, 3 RGB, 4 RGBA. (H, W, C) is one image, (N, H, W, C) a stack of N;
- otherwise (N, H, W) is a stack of N grey images, and so is (N, 1, H, W) (PyTorch's layout).
So (N, 28, 3) is one colour image N pixels high (no one predicts images 3 pixels wide), and
(3, 28, 28) is three grey images: one colour image with its channels first, (3, H, W), cannot be
told from a stack, and (N, 3, H, W) is refused with the fix (numpy.moveaxis(a, 1, -1)).
Colour becomes grey by ITU-R 601 luma, as for image files (OpenCV's BGR order gives a slightly
different grey for coloured ink, which the preprocessing does not mind); alpha is composited
over a background that contrasts with the ink, as for a PNG drawn on a transparent canvas.
"""

from __future__ import annotations

import functools
import io
import math
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..console import shown_name
from ..errors import DataError

MAX_PIXELS = 40_000_000  # per image; larger ones are refused before their pixels are decoded
MAX_BYTES = 1 << 30  # per input (after gunzip): a cap on what one input may make us hold

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
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's "L"
MAX_CHANNELS = 4  # a last axis this short (or shorter) holds channels, not pixels
ARRAY_SHAPES = "(H, W), (N, H, W), (N, 1, H, W), or (H, W, C) and (N, H, W, C) with C of 1..4"


class InputError(DataError):
    """One input (a file, a folder entry, stdin) that could not be used; the others go on."""

    def __init__(self, input: str, reason: str) -> None:
        super().__init__(f"{shown_name(input)}: {reason}")  # no control characters in the name
        self.input = input
        self.reason = reason


@dataclass(frozen=True, eq=False)  # eq would compare arrays elementwise
class Item:
    """One image of one input: (H, W) float32 in [0, 1], grayscale, 1.0 = white, as stored."""

    input: str  # the path as given ("-" for stdin), or the file found in a given folder
    index: int | None  # position inside a multi-image input (.npy stack, IDX file), else None
    pixels: np.ndarray


def read_bytes(data: bytes, name: str) -> list[Item]:
    """Every image in one input's bytes, the format sniffed from the content; else InputError."""
    return list(sniff(data, name))


def sniff(data: bytes, name: str, *, unzipped: bool = False) -> Iterable[Item]:
    """Items of one input, by content: gzip (of any of these), .npy, IDX, else an image."""
    if not data:
        raise InputError(name, "empty (0 bytes)")
    if data.startswith(GZIP_MAGIC) and not unzipped:
        return sniff(_gunzip(data, name), name, unzipped=True)
    if data.startswith(NPY_MAGIC):
        return _read_npy(data, name)
    if data[:2] == b"\0\0" and data[2] in IDX_TYPES and 1 <= data[3] <= 4:
        return _read_idx(data, name)
    if data.startswith(ZIP_MAGIC):
        raise InputError(name, "a zip archive (.npz?): save one array with numpy.save (.npy)")
    return [Item(name, None, _decode_image(data, name))]


@functools.cache
def suffixes() -> frozenset[str]:
    """The file suffixes a folder is searched for: what Pillow can open here, and .npy."""
    usable = _formats()
    found = {ext for ext, fmt in Image.registered_extensions().items() if fmt in usable}
    return frozenset(found | {".npy"})


@functools.cache
def _formats() -> tuple[str, ...]:
    Image.init()
    return tuple(fmt for fmt in Image.OPEN if fmt not in _SKIPPED_FORMATS)


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


# ---------------------------------------------------------------- arrays: IDX and .npy


def _read_idx(data: bytes, name: str) -> Iterable[Item]:
    code, ndim = data[2], data[3]
    if code != 0x08:
        reason = f"IDX data of type {IDX_TYPES[code]}; images must be unsigned bytes (0x08)"
        raise InputError(name, reason)
    if ndim == 1:
        raise InputError(name, "IDX a label file; images have 2 dims (H, W) or 3 (N, H, W)")
    start = 4 + 4 * ndim
    if len(data) < start:
        raise InputError(name, "truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:start])
    size = math.prod(dims)
    if size == 0:
        raise InputError(name, "IDX file holds no images (a dimension is 0)")
    stack, many = _as_stack(dims, name, "IDX data")
    _check_pixels(name, stack[2], stack[1])
    if len(data) - start != size:
        what = "truncated" if len(data) - start < size else "extra bytes"
        raise InputError(name, f"{what}: {len(data) - start} bytes of pixels, header says {size}")
    images = np.frombuffer(data, np.uint8, size, start).reshape(dims)
    return _stack_items(name, _arranged(images), 1 / 255, many)


def _read_npy(data: bytes, name: str) -> Iterable[Item]:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)  # never unpickle: it runs code
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(name, "a .npy of Python objects; refusing to unpickle it") from None
        raise InputError(name, f"not a readable .npy array ({exc})") from None
    except Exception as exc:  # a damaged header fails in numpy's parser (TokenError, ...)
        raise InputError(name, f"damaged .npy file ({exc or type(exc).__name__})") from None
    if 0 in array.shape:
        raise InputError(name, f"a .npy of shape {array.shape}; images need {ARRAY_SHAPES}")
    stack, many = _as_stack(array.shape, name, "a .npy")
    _check_pixels(name, stack[2], stack[1])
    scale = _npy_scale(array, name)
    return _stack_items(name, _arranged(array), scale, many)


def _as_stack(shape: tuple[int, ...], name: str, what: str) -> tuple[tuple[int, ...], bool]:
    """The (N, H, W, C) an array's shape stands for (the module's rule), and whether it is a
    stack (N images, each with its index) rather than one image."""
    last = shape[-1]
    if len(shape) == 2:
        return (1, *shape, 1), False
    if len(shape) == 3:
        return ((1, *shape), False) if last <= MAX_CHANNELS else ((*shape, 1), True)
    if len(shape) == 4 and last <= MAX_CHANNELS:
        return tuple(shape), True
    if len(shape) == 4 and shape[1] == 1:
        return (shape[0], shape[2], shape[3], 1), True
    hint = ""
    if len(shape) == 4 and shape[1] <= MAX_CHANNELS:
        hint = " (channels first? move them last: numpy.moveaxis(array, 1, -1))"
    raise InputError(name, f"{what} of shape {tuple(shape)}; images need {ARRAY_SHAPES}{hint}")


def _arranged(array: np.ndarray) -> np.ndarray:
    """The array as (N, H, W, C) by _as_stack's rule (a view: nothing is copied)."""
    if array.ndim == 2:
        return array[None, :, :, None]
    if array.ndim == 3:
        return array[None] if array.shape[-1] <= MAX_CHANNELS else array[..., None]
    return array if array.shape[-1] <= MAX_CHANNELS else array[:, 0, :, :, None]


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
    """Items of an (N, H, W, C) stack, each made grey float32 only when it is reached."""
    for i, image in enumerate(stack):
        pixels = np.clip(np.multiply(image, scale, dtype=np.float32), 0, 1)
        yield Item(name, i if many else None, _channels_to_gray(pixels))


def _channels_to_gray(pixels: np.ndarray) -> np.ndarray:
    """(H, W, C) in [0, 1] -> (H, W): grey as it is, RGB by luma, alpha composited."""
    channels = pixels.shape[-1]
    if channels == 1:
        return np.ascontiguousarray(pixels[..., 0])
    gray = pixels[..., 0] if channels == 2 else pixels[..., :3] @ LUMA
    if channels in (2, 4):
        return _composite(gray, pixels[..., -1])
    return np.clip(gray, 0, 1, out=gray)


def _check_pixels(name: str, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        reason = f"{width}x{height} pixels is over the {MAX_PIXELS // 10**6}-megapixel limit"
        raise InputError(name, reason + " (a decompression bomb? shrink a real photo first)")


# ---------------------------------------------------------------- image files (Pillow)


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
        la = np.asarray(rgba.convert("LA"), dtype=np.float32) / 255
        return _composite(la[..., 0], la[..., 1])
    if image.mode in _WIDE_MODES:
        pixels = np.asarray(image, dtype=np.float32) / 65535
    elif image.mode == "F":
        pixels = np.asarray(image, dtype=np.float32).copy()
    else:
        pixels = np.asarray(image if image.mode == "L" else image.convert("L"), np.float32)
        pixels *= np.float32(1 / 255)
    return np.clip(pixels, 0, 1, out=pixels)


def _composite(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Gray with alpha -> gray over a background that contrasts with the ink."""
    # Drawing apps leave the canvas transparent: dark strokes go on white, light ones on black.
    dark_ink = float((gray * alpha).sum()) < 0.5 * float(alpha.sum())
    return gray * alpha + (1 - alpha) if dark_ink else gray * alpha


def _describe_start(data: bytes) -> str:
    if data.lstrip()[:1] == b"<":
        return "it starts with '<': an HTML or XML page?"
    return f"it starts with bytes {data[:4].hex(' ')}"
