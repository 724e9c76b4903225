"""A folder to run the docs' commands in, as a user would from the repository's root.

`../shared/data` points at the shared data copies; `examples/` and `configs/` are the
repository's; the files a command reads (`needs`) are made once per session from the real MNIST
and copied in, so no command sees another's output.
"""

from __future__ import annotations

import gzip
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("BPTRAIN_SHARED_DATA", ROOT.parent / "shared" / "data"))
SMALL = "--data-dir ../shared/data/mnist --offline --set data.limit_train=1000 --epochs 1"


def env() -> dict[str, str]:
    """The environment of a command: this interpreter's `bptrain` and `mpiexec` on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    src = str(ROOT / "src")
    python_path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    return os.environ | {
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
        "PYTHONPATH": python_path,
    }


def shell(command: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env(), capture_output=True,
        text=True, timeout=timeout,
    )  # fmt: skip


def new_folder(base: Path) -> Path:
    """base/repo, with ../shared/data and the repository's examples/ and configs/."""
    (base / "shared").mkdir(parents=True)
    (base / "shared" / "data").symlink_to(SHARED_DATA.resolve())
    repo = base / "repo"
    repo.mkdir()
    for name in ("examples", "configs"):
        (repo / name).symlink_to(ROOT / name)
    return repo


def _digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    folder = SHARED_DATA / "mnist"

    def read(name: str) -> bytes:
        path = folder / name
        raw = (
            path.read_bytes()
            if path.exists()
            else gzip.decompress((folder / f"{name}.gz").read_bytes())
        )
        return raw

    images = np.frombuffer(read("t10k-images-idx3-ubyte"), np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.frombuffer(read("t10k-labels-idx1-ubyte"), np.uint8, offset=8)
    return images[:n], labels[:n]


def _photo(image: np.ndarray, path: Path) -> None:
    """A digit as people photograph them: dark ink on light paper, larger than 28x28."""
    from PIL import Image

    Image.fromarray(255 - image).resize((112, 112)).save(path)


def _make(name: str, repo: Path) -> None:
    """Make one prepared file (or folder) inside `repo`, running bptrain where it must."""

    def run(command: str) -> None:
        result = shell(command, repo)
        assert result.returncode == 0, f"{command}: {result.stderr}"

    images, labels = _digits(20)
    if name == "my.yaml":
        shutil.copy(ROOT / "configs" / "mlp.yaml", repo / name)
    elif name == "my-sweep.yaml":
        text = (ROOT / "examples" / "sweep-mlp.yaml").read_text()
        (repo / name).write_text(
            text + "\ntrials: 2\n"
            if "trials:" not in text
            else "\n".join(
                "trials: 2" if line.startswith("trials:") else line for line in text.splitlines()
            )
            + "\n"
        )
    elif name in ("runs/my.npz", "runs/a.npz", "runs/b.npz"):
        run(f"bptrain -q train mlp {SMALL} --out {name}")
    elif name in ("my.onnx", "my.safetensors"):
        if not (repo / "runs/my.npz").exists():
            _make("runs/my.npz", repo)
        run(f"bptrain -q export runs/my.npz --out {name}")
    elif name == "pixels.npy":
        np.save(repo / name, (images[:5, None] / 255).astype(np.float32))
    elif name == "runs/own.npz":
        run(f"bptrain -q train examples/own-layers.yaml {SMALL} --out {name}")
    elif name == "runs/cnn.npz":
        run(f"bptrain -q train cnn {SMALL.replace('1000', '300')} --out {name}")
    elif name == "run.jsonl":
        run(f"bptrain -q train mlp {SMALL} --out runs/run.npz > run.jsonl")
    elif name in ("my-digit.png", "my-digit.jpg", "digit.png", "scan.png"):
        _photo(images[0], repo / name)
    elif name == "photos":
        (repo / name).mkdir()
        for i in range(5):
            _photo(images[i], repo / name / f"p{i}.png")
    elif name == "my-digits":
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            (repo / name / str(label)).mkdir(parents=True, exist_ok=True)
            _photo(image, repo / name / str(label) / f"{i}.png")
    elif name == "docs":
        (repo / name).mkdir()
    elif name == "runs/sweep-mlp":
        run(
            "bptrain -q sweep examples/sweep-mlp.yaml --workers 2 --trials 2 "
            "--data-dir ../shared/data/mnist --offline > /dev/null"
        )
    elif name.startswith("runs/docs/"):
        (repo / "runs" / "docs").mkdir(parents=True, exist_ok=True)
        if name == "runs/docs/mlp.npz":
            run(f"bptrain -q train mlp {SMALL} --out {name}")
        elif name == "runs/docs/mlp-deep.npz":
            run(f"bptrain -q train mlp-deep {SMALL.replace('1000', '300')} --out {name}")
        else:  # the eval record of mlp-deep
            if not (repo / "runs/docs/mlp-deep.npz").exists():
                _make("runs/docs/mlp-deep.npz", repo)
            run(
                "bptrain -q eval runs/docs/mlp-deep.npz --data-dir ../shared/data/mnist "
                f"--offline > {name}"
            )
    else:
        raise KeyError(f"no recipe for the prepared file {name!r}")


def provide(names: tuple[str, ...], repo: Path, store: Path) -> None:
    """Copy each prepared file into `repo`, making it in `store` the first time."""
    for name in names:
        made = store / "repo" / name
        if not made.exists():
            if not (store / "repo").exists():
                new_folder(store)
            (made.parent).mkdir(parents=True, exist_ok=True)
            _make(name, store / "repo")
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if made.is_dir():
            shutil.copytree(made, target, dirs_exist_ok=True)
        else:
            shutil.copy2(made, target)


URL = re.compile(r"http://[\w.\[\]:]+/")


def start_server(command: str, repo: Path, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """Start a `bptrain serve` command; return it and the URL it announces on stderr."""
    process = subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=repo, env=env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    process.reader = reader  # type: ignore[attr-defined]  # joined by stop_server
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        found = URL.search(line)
        if found:
            return process, found.group(0)
    stop_server(process)
    raise AssertionError(f"{command} announced no URL:\n{''.join(seen)}")


def stop_server(process: subprocess.Popen) -> int:
    """Ctrl-C, as a user stops it; its exit code."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.reader.join(timeout=10)  # type: ignore[attr-defined]
        process.stderr.close()
