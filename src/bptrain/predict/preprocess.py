"""Prepare one user's image the way the network's training data was prepared.

preprocess() takes an (H, W) float32 grayscale image in [0, 1] (1.0 = white, as decode.py reads
it) and returns what the network was trained on:

- "digits" (MNIST): ink light on dark (a light background is inverted, judged from the border),
  background level and faint noise removed, cropped to the ink, the longest side scaled to 20 px
  (antialiased), pasted into 28x28 with its centre of mass on MNIST's centre, pixel (14, 14) in
  0-based (row, col) coordinates, by a whole-pixel shift, as MNIST did (every MNIST test digit
  has its centre of mass within half a pixel of (14, 14); the mean is (13.99, 14.01)); the
  strongest ink becomes 1.0, like MNIST's 255.
- "fashion" (Fashion-MNIST): the article light on dark, background removed, cropped, its
  longest side scaled to 28 px, centred geometrically, the brightest pixel 1.0.
- "none": the image must already have the network's input size; it is only clipped to [0, 1].
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import ConfigError
from .decode import InputError, Item

STYLES = ("digits", "fashion", "none")
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


def png_bytes(pixels: np.ndarray) -> bytes:
    """A [0, 1] image as an 8-bit grayscale PNG file's bytes (what the network saw)."""
    values = np.clip(np.asarray(pixels, dtype=np.float32) * 255 + 0.5, 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.uint8), mode="L").save(buffer, "PNG")
    return buffer.getvalue()
