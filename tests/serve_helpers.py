"""Shared by the `bptrain serve` tests: a small real checkpoint, a real server in a subprocess,
plain-HTTP requests, and digit images as PNG bytes.

A test module imports the fixtures (`from serve_helpers import serve_checkpoint_fixture`);
tests ask for them by their names (`serve_checkpoint`, `digit_set`).
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import invoke, small_config, subprocess_env, write_config

URL = re.compile(r"http://127\.0\.0\.\d+:\d+/")  # 127.0.0.1, or the --host it was given


def cnn_config(folder: Path) -> dict:
    """A small conv net (conv, ReLU, pool, dense, ReLU, dense) on the synthetic idx data."""
    config = small_config(folder, epochs=2)
    config["model"]["layers"] = [
        {"type": "conv2d", "filters": 6, "kernel": 5, "init": "he"},
        {"type": "relu"},
        {"type": "max_pool2d", "size": 2},
        {"type": "flatten"},
        {"type": "affine", "units": 24, "init": "he"},
        {"type": "relu"},
        {"type": "affine", "units": 10, "init": "he"},
    ]
    config["optimizer"] = {"type": "adam", "lr": 0.003}
    return config


@pytest.fixture(scope="session", name="serve_checkpoint")
def serve_checkpoint_fixture(tmp_path_factory, idx_folder) -> Path:
    """A checkpoint of the small conv net, trained through the CLI."""
    folder = tmp_path_factory.mktemp("serve-model")
    out = folder / "cnn.npz"
    result = invoke(
        "train", write_config(folder / "cnn.yaml", cnn_config(idx_folder)), "--out", out
    )
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="session", name="digit_set")
def digit_set_fixture(idx_folder) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels) of the synthetic test set."""
    from bptrain.data import load

    data = load("idx", idx_folder, offline=True, splits=("test",))
    return np.round(data.x_test[:, 0] * 255).astype(np.uint8), data.t_test


def png(pixels: np.ndarray) -> bytes:
    """uint8 (H, W) -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


class Server:
    """`bptrain serve CKPT --port 0 ...` as a real process; its URL read from its stderr.

    `env` adds variables (a None value removes one); `patch` is Python run before the CLI in
    the server's process (to plant a bug and see how the server answers it).
    """

    def __init__(
        self, checkpoint: Path, *args: str, env: dict | None = None, patch: str = ""
    ) -> None:
        start = (
            ["-c", f"{patch}\nfrom bptrain.cli import main; main()"] if patch else ["-m", "bptrain"]
        )
        command = [sys.executable, *start, "serve", str(checkpoint), "--port", "0", *args]
        variables = {**subprocess_env(), **(env or {})}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={key: value for key, value in variables.items() if value is not None},
        )  # fmt: skip
        self.lines: list[str] = []
        self.url = self._read_url()
        # Keep draining stderr: a full pipe would block the server.
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()

    def _read_url(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            found = URL.search(line)
            if found:
                return found.group(0)
        self.process.kill()
        self.process.wait(10)
        self.process.stdout.close()
        self.process.stderr.close()
        raise AssertionError(f"no URL from bptrain serve: {''.join(self.lines)}")

    def _drain(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    def stop(self, signum: int = signal.SIGINT, timeout: float = 15) -> tuple[int, str, str]:
        """Send `signum`; returns (exit code, stdout, stderr)."""
        self.process.send_signal(signum)
        code = self.process.wait(timeout)
        stdout = self.process.stdout.read()
        self._close()
        return code, stdout, "".join(self.lines)

    def _close(self) -> None:
        self.drain.join(10)  # it ends at the end of stderr
        self.process.stdout.close()
        self.process.stderr.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if not self.process.stderr.closed:
            self._close()


def request(
    url: str, body: bytes | None = None, content_type: str | None = None, **headers: str
) -> tuple[int, dict, dict]:
    """One HTTP request (POST with a body, else GET): (status, JSON answer, headers)."""
    all_headers = {k.replace("_", "-"): v for k, v in headers.items()}
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    req = urllib.request.Request(url, data=body, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            return answer.status, json.loads(answer.read()), dict(answer.headers)
    except urllib.error.HTTPError as error:
        text = error.read()
        return error.code, json.loads(text), dict(error.headers)


def predict_png(url: str, data: bytes, query: str = "") -> dict:
    status, answer, _ = request(f"{url}api/predict{query}", data, "image/png")
    assert status == 200, answer
    return answer
