"""Test helpers for images: synthetic stroke digits, photo-style copies, encoded files.

Import from test files (`from image_helpers import ...`).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Strokes of a few digit-like shapes on a 100x100 canvas: (kind, points) per stroke.
SHAPES: dict[str, list[tuple[str, list[tuple[int, int]]]]] = {
    "7": [("line", [(22, 12), (78, 12), (40, 90)])],
    "1": [("line", [(38, 25), (55, 10), (55, 90)])],
    "0": [("ellipse", [(25, 8), (75, 92)])],
    "4": [("line", [(60, 90), (60, 8), (18, 62), (82, 62)])],
    "L": [("line", [(20, 10), (20, 90), (85, 90)])],  # lopsided: its mass sits low and left
}


def stroke_digit(shape: str = "7", side: int = 100, width: int = 10) -> np.ndarray:
    """A digit-like drawing (side, side) float32 in [0, 1]: white ink (1.0) on black."""
    big = Image.new("L", (400, 400), 0)  # drawn 4x larger, then shrunk: antialiased edges
    draw = ImageDraw.Draw(big)
    for kind, points in SHAPES[shape]:
        scaled = [(4 * x, 4 * y) for x, y in points]
        if kind == "line":
            draw.line(scaled, fill=255, width=4 * width, joint="curve")
        else:
            draw.ellipse([*scaled[0], *scaled[1]], outline=255, width=4 * width)
    small = big.resize((side, side), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255


def mnist_like(shape: str = "7") -> np.ndarray:
    """A stroke digit fitted into 20x20 inside 28x28, its centre of mass on pixel (14, 14)."""
    from bptrain.predict.preprocess import preprocess

    return preprocess(stroke_digit(shape), "digits")


def photo(
    ink: np.ndarray,
    *,
    canvas: tuple[int, int] = (300, 200),
    at: tuple[int, int] = (40, 30),
    side: int = 140,
    paper: float = 200,
    pen: float = 40,
    noise: float = 0.0,
    blur: float = 0.0,
    seed: int = 0,
) -> Image.Image:
    """`ink` (white on black, [0, 1]) as dark ink on paper: scaled to `side`, placed at `at`."""
    up = np.asarray(Image.fromarray(ink).resize((side, side), Image.Resampling.BICUBIC))
    width, height = canvas
    page = np.full((height, width), paper, dtype=np.float32)
    left, top = at
    page[top : top + side, left : left + side] -= (paper - pen) * np.clip(up, 0, 1)
    page += np.random.default_rng(seed).normal(0, noise, page.shape).astype(np.float32)
    image = Image.fromarray(np.clip(page, 0, 255).round().astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(blur)) if blur else image


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 0..255."""
    return np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """The bytes of `image` saved in `fmt` (PNG, JPEG, ...)."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height gray pixels; its pixel data is a few bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def write(path: Path, data: bytes) -> str:
    """Write bytes, creating folders; returns the path as a string (how inputs are given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def centre_of_mass(pixels: np.ndarray) -> tuple[float, float]:
    """(row, col) of the intensity-weighted centre, 0-based pixel-centre coordinates."""
    rows, cols = np.indices(pixels.shape)
    mass = pixels.sum()
    return float((rows * pixels).sum() / mass), float((cols * pixels).sum() / mass)


def ink_box(pixels: np.ndarray, level: float = 0.0) -> tuple[int, int]:
    """(height, width) of the box around the pixels above `level`."""
    rows = np.flatnonzero((pixels > level).any(axis=1))
    cols = np.flatnonzero((pixels > level).any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
