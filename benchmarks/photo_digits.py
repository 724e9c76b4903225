"""Digits as people photograph or scan them: dark ink on paper of some tone, off-centre, large.

    python benchmarks/photo_digits.py OUT_DIR [--count 2000] [--seed 0]

Renders MNIST test digits (from ../shared/data/mnist, or --data-dir) the way a user's own
images arrive: the digit scaled up 4-9x, dark ink (0..80) on light paper (150..250), placed
off-centre on a canvas of 160..320 x 120..300 pixels, with sensor noise, a little blur, and
saved as PNG, JPEG, BMP or WebP in turn. Writes OUT_DIR/<label>/<n>.<ext> (the folder-per-class
layout `bptrain eval --images` reads) and prints how many it wrote.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

FORMATS = (("png", {}), ("jpg", {"quality": 85}), ("bmp", {}), ("webp", {"quality": 90}))


def photo(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One MNIST digit (28, 28) uint8, white on black, as a photo of dark ink on paper."""
    scale = rng.uniform(4, 9)
    side = int(28 * scale)
    big = np.asarray(Image.fromarray(digit).resize((side, side), Image.BICUBIC), np.float32)
    width, height = int(rng.integers(max(160, side), 321)), int(rng.integers(max(120, side), 301))
    paper, ink = rng.uniform(150, 250), rng.uniform(0, 80)
    canvas = np.full((height, width), paper, np.float32)
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    coverage = np.clip(big / 255, 0, 1)
    window = canvas[top : top + side, left : left + side]
    window -= (paper - ink) * coverage  # ink laid on the paper
    canvas += rng.normal(0, rng.uniform(0, 8), canvas.shape).astype(np.float32)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))


def write(out: Path, digits: np.ndarray, labels: np.ndarray, seed: int = 0) -> list[Path]:
    """Render every digit into out/<label>/<n>.<ext>; returns the paths in order."""
    rng = np.random.default_rng(seed)
    paths = []
    for n, (digit, label) in enumerate(zip(digits, labels, strict=True)):
        ext, options = FORMATS[n % len(FORMATS)]
        path = out / str(int(label)) / f"{n:05d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        photo(digit, rng).save(path, **options)
        paths.append(path)
    return paths


def mnist_test(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test digits as uint8 (N, 28, 28) and their labels."""
    from bptrain.data import load

    data = load("mnist", data_dir, offline=True, quiet=True, splits=("test",))
    return (data.x_test[:, 0] * 255).round().astype(np.uint8), data.t_test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    root = Path(__file__).resolve().parents[2]
    parser.add_argument("--data-dir", default=str(root / "shared" / "data" / "mnist"))
    args = parser.parse_args()
    digits, labels = mnist_test(args.data_dir)
    paths = write(args.out, digits[: args.count], labels[: args.count], args.seed)
    print(f"wrote {len(paths)} images to {args.out}")


if __name__ == "__main__":
    main()
