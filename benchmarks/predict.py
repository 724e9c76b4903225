"""predict benchmark: speed on 10,000 PNG files, accuracy on photographed-style digits.

    python benchmarks/predict.py [--checkpoint runs/cnn.npz] [--count 10000] [--photos 2000]

1. A `cnn` checkpoint trained 2 epochs on the real MNIST (../shared/data/mnist, or --data-dir),
   unless --checkpoint gives one.
2. Speed: the 10,000 MNIST test digits written as PNG files, then `bptrain predict CKPT DIR
   --threads 1` timed as a whole (start-up, decoding, preprocessing, inference, records).
3. Accuracy on digits as people photograph them (photo_digits.py: dark ink on paper of varying
   tone, off-centre, 160-320 px, PNG/JPEG/BMP/WebP): `bptrain eval CKPT --images DIR` with the
   MNIST preprocessing, against plain resizing to 28x28 (inverted, so the ink is light).
Writes benchmarks/results/predict.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import ROOT, machine, portable, write_json
from photo_digits import mnist_test, write

MNIST = ROOT.parent / "shared" / "data" / "mnist"


def bptrain(*args: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess:
    env = os.environ | {"OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "bptrain", *args]
    return subprocess.run(command, stdout=stdout, text=True, env=env, check=True)


def trained_cnn(folder: Path, data_dir: str) -> Path:
    out = folder / "cnn.npz"
    print("training cnn for 2 epochs on MNIST ...", file=sys.stderr, flush=True)
    bptrain("-q", "train", "cnn", "--epochs", "2", "--data-dir", data_dir, "--offline",
            "--out", str(out), "--threads", "1")  # fmt: skip
    return out


def speed(ckpt: Path, folder: Path, digits: np.ndarray, count: int) -> dict:
    pngs = folder / "pngs"
    pngs.mkdir()
    for n, digit in enumerate(digits[:count]):
        Image.fromarray(digit).save(pngs / f"{n:05d}.png")
    started = time.perf_counter()
    done = bptrain("-q", "predict", str(ckpt), str(pngs), "--threads", "1")
    seconds = time.perf_counter() - started
    n = sum(1 for line in done.stdout.splitlines() if '"prediction"' in line)
    return {"images": n, "seconds": round(seconds, 2), "images_per_second": round(n / seconds)}


def plain_resize_accuracy(ckpt: Path, paths: list[Path], labels: np.ndarray) -> float:
    """What a user gets without the MNIST preprocessing: resize to 28x28, invert, scale."""
    from bptrain.run.model import load_model

    model = load_model(str(ckpt))
    x = np.stack(
        [
            1 - np.asarray(Image.open(p).convert("L").resize((28, 28)), np.float32) / 255
            for p in paths
        ]
    )[:, None]
    predictions = model.network.predict(x).argmax(axis=1)
    return float(np.mean(predictions == labels))


def accuracy(ckpt: Path, folder: Path, digits: np.ndarray, labels: np.ndarray, count: int) -> dict:
    photos = folder / "photos"
    paths = write(photos, digits[:count], labels[:count], seed=1)
    record = json.loads(bptrain("-q", "eval", str(ckpt), "--images", str(photos)).stdout)
    return {
        "images": record["n"],
        "mnist_preprocessing": record["accuracy"],
        "plain_resize": plain_resize_accuracy(ckpt, paths, labels[:count]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--data-dir", default=str(MNIST))
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--photos", type=int, default=2000)
    args = parser.parse_args()
    digits, labels = mnist_test(args.data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ckpt = args.checkpoint or trained_cnn(folder, args.data_dir)
        results = {
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "checkpoint": "cnn, 2 epochs on MNIST" if args.checkpoint is None else portable(ckpt),
            "machine": machine(),
            "speed_png_28x28": speed(ckpt, folder, digits, args.count),
            "photographed_digits": accuracy(ckpt, folder, digits, labels, args.photos),
        }
    print(json.dumps(results, indent=2))
    write_json("predict", results)


if __name__ == "__main__":
    main()
