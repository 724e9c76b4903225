"""serve benchmark: one drawing through the draw-a-digit page's details path, one BLAS thread.

    python benchmarks/serve.py [--checkpoint runs/cnn.npz] [--repeats 300]

1. A `cnn` checkpoint trained 2 epochs on the real MNIST (../shared/data/mnist, or --data-dir),
   unless --checkpoint gives one.
2. A drawing as the page sends it (a 280x280 PNG of white strokes on black), timed through
   Engine.predict(details=True) and the JSON encoding of its answer: decoding and MNIST
   preprocessing, the forward pass, the backward pass to the input (bptrain.trace), the
   per-layer statistics and pictures. Each part is also timed alone; medians of --repeats.
3. The same request through a real `bptrain serve` on loopback (HTTP included), sequentially
   and as a burst of concurrent requests.
Writes benchmarks/results/serve.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from threadpoolctl import threadpool_limits

from common import ROOT, machine, median_time, portable, write_json

MNIST = ROOT.parent / "shared" / "data" / "mnist"


def trained_cnn(folder: Path, data_dir: str) -> Path:
    out = folder / "cnn.npz"
    print("training cnn for 2 epochs on MNIST ...", file=sys.stderr, flush=True)
    command = [sys.executable, "-m", "bptrain", "-q", "train", "cnn", "--epochs", "2"]
    command += ["--data-dir", data_dir, "--offline", "--out", str(out), "--threads", "1"]
    env = os.environ | {"OPENBLAS_NUM_THREADS": "1"}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return out


def drawing() -> bytes:
    """A '3' as the page's canvas exports it: 280x280, white strokes (22 px) on black."""
    image = Image.new("L", (280, 280), 0)
    points = [(84, 62), (140, 45), (190, 67), (174, 118), (126, 134), (179, 157), (196, 202),
              (154, 235), (90, 224)]  # fmt: skip
    ImageDraw.Draw(image).line(points, fill=255, width=22, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def in_process(ckpt: Path, data: bytes, repeats: int) -> dict:
    from bptrain.engine.trace import trace
    from bptrain.serve.inference import Engine, pack

    engine = Engine.load(str(ckpt))
    _, x = engine.prepare(data, "drawing")
    network, batch = engine.model.network, x[None, None]
    label = int(np.argmax(network.predict(batch)[0]))
    traced = trace(network, batch, np.array([label]))
    answer = engine.predict(data, details=True)

    def whole() -> None:
        json.dumps(engine.predict(data, details=True), allow_nan=False, separators=(",", ":"))

    parts = {
        "decode_and_preprocess": lambda: engine.prepare(data, "drawing"),
        "forward_only": lambda: network.predict(batch),
        "forward_and_backward_to_input": lambda: trace(network, batch, np.array([label])),
        "statistics_and_pictures": lambda: pack(traced, x, label, engine.class_names),
        "json_encoding": lambda: json.dumps(answer, allow_nan=False, separators=(",", ":")),
        "record_only_no_details": lambda: engine.predict(data),
    }
    median, _ = median_time(whole, repeats, warmup=5)
    return {
        "label": answer["label"],
        "answer_bytes": len(json.dumps(answer, separators=(",", ":"))),
        "median_ms": ms(median),
        "parts_median_ms": {k: ms(median_time(f, repeats, warmup=5)[0]) for k, f in parts.items()},
    }


def through_server(ckpt: Path, data: bytes, repeats: int) -> dict:
    command = [sys.executable, "-m", "bptrain", "serve", str(ckpt), "--port", "0", "--threads", "1"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        url = next(w for line in server.stderr for w in line.split() if w.startswith("http://"))
        endpoint = url + "api/predict?details=1"

        def one() -> None:
            request = urllib.request.Request(endpoint, data, {"Content-Type": "image/png"})
            with urllib.request.urlopen(request) as answer:
                json.loads(answer.read())

        sequential, _ = median_time(one, repeats, warmup=5)
        burst, workers = 8 * 24, 8
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda _: one(), range(burst)))
        seconds = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(30)
    return {
        "sequential_median_ms": ms(sequential),
        "burst": {
            "requests": burst,
            "clients": workers,
            "seconds": round(seconds, 3),
            "requests_per_second": round(burst / seconds, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--data-dir", default=str(MNIST))
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    data = drawing()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or trained_cnn(Path(tmp), args.data_dir)
        with threadpool_limits(1):
            details = in_process(ckpt, data, args.repeats)
        results = {
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "checkpoint": "cnn, 2 epochs on MNIST" if args.checkpoint is None else portable(ckpt),
            "machine": machine() | {"blas_threads_used": 1},
            "drawing": "280x280 PNG of a '3', as the page sends it",
            "details_path_in_process": details,
            "through_bptrain_serve": through_server(ckpt, data, min(args.repeats, 200)),
        }
    print(json.dumps(results, indent=2))
    write_json("serve", results)


if __name__ == "__main__":
    main()
