"""Shared by the benchmarks: data (real Fashion-MNIST when present), timing, README tables."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_FASHION = ROOT.parent / "shared" / "data" / "fashion-mnist"
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"
RESULTS = ROOT / "benchmarks" / "results"


def fashion_dir() -> Path | None:
    """The real Fashion-MNIST copy, when there is one (BPTRAIN_BENCH_DATA overrides)."""
    folder = Path(os.environ.get("BPTRAIN_BENCH_DATA", SHARED_FASHION))
    return (
        folder
        if (folder / "train-images-idx3-ubyte.gz").is_file()
        or (folder / "train-images-idx3-ubyte").is_file()
        else None
    )


def mnist_dir() -> Path | None:
    """The real MNIST copy, when there is one (BPTRAIN_BENCH_MNIST overrides), like fashion_dir."""
    folder = Path(os.environ.get("BPTRAIN_BENCH_MNIST", SHARED_MNIST))
    return (
        folder
        if (folder / "train-images-idx3-ubyte.gz").is_file()
        or (folder / "train-images-idx3-ubyte").is_file()
        else None
    )


def portable(path: str | Path) -> str:
    """A path as results may record it: relative to the repository, never this machine's."""
    return os.path.relpath(Path(path).resolve(), ROOT)


def mnist_shaped(seed: int = 0) -> tuple[str, tuple[np.ndarray, ...]]:
    """(source, (x_train, t_train, x_test, t_test)): real Fashion-MNIST or random data alike."""
    folder = fashion_dir()
    if folder is not None:
        from bptrain.data import load

        data = load("fashion-mnist", folder, offline=True, quiet=True)
        arrays = (data.x_train, data.t_train, data.x_test, data.t_test)
        return f"fashion-mnist ({portable(folder)})", arrays
    rng = np.random.default_rng(seed)
    x = rng.random((70000, 1, 28, 28), dtype=np.float32)
    t = rng.integers(0, 10, 70000)
    return "random MNIST-shaped data", (x[:60000], t[:60000], x[60000:], t[60000:])


def median_time(
    fn: Callable[[], object], repeats: int, warmup: int = 1
) -> tuple[float, list[float]]:
    """Median wall time of `fn` over `repeats` runs after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def machine() -> dict[str, object]:
    import numpy

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "blas_threads": {
            k: os.environ[k]
            for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
            if k in os.environ
        },
    }


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
    return path
