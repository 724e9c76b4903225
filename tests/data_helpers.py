"""Test helpers for data: THE writer of IDX files (synthetic, learnable or random), the data
tests' standard dataset, and a loopback HTTP server whose replies tests script.

Import from test files (`from data_helpers import ...`); the fixtures built on these live in
tests/conftest.py (idx_folder, server, isolated_env) and tests/data/conftest.py.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from bptrain.data import FILE_NAMES, DatasetInfo, FileSpec

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = FILE_NAMES

# The real datasets beside the repository (absent in a user's checkout).
FASHION_COPY = Path(__file__).resolve().parents[2] / "shared/data/fashion-mnist"
MNIST_COPY = FASHION_COPY.parent / "mnist"

Behaviour = Callable[[BaseHTTPRequestHandler], None]


# Fetch options for loopback tests: short timeouts, no backoff, no progress bar, no retries.
FAST = {"timeout": (2.0, 2.0), "retries": 0, "backoff": 0.0, "quiet": True}


# ---------------------------------------------------------------- synthetic IDX data


def idx_bytes(array: np.ndarray, *, type_code: int = 0x08) -> bytes:
    """An IDX file holding a uint8 array: magic, one big-endian uint32 per dim, payload."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def synthetic_files(
    n_train: int = 6,
    n_test: int = 4,
    *,
    shape: tuple[int, int] = (28, 28),
    num_classes: int = 10,
    seed: int = 0,
) -> dict[str, bytes]:
    """Raw IDX bytes of the four files: random pixels, labels cycling through every class."""
    rng = np.random.default_rng(seed)
    arrays = {
        TRAIN_IMAGES: rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        TRAIN_LABELS: (np.arange(n_train) % num_classes).astype(np.uint8),
        TEST_IMAGES: rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        TEST_LABELS: (np.arange(n_test)[::-1] % num_classes).astype(np.uint8),
    }
    return {name: idx_bytes(array) for name, array in arrays.items()}


def gz(data: bytes, *, level: int = 9) -> bytes:
    """gzip-compress with a fixed mtime, so equal data gives equal bytes.

    level=0 stores the data uncompressed: equal-length inputs then give equal-length files.
    """
    return gzip.compress(data, compresslevel=level, mtime=0)


def write_files(folder: Path, files: dict[str, bytes], *, compress: bool = True) -> Path:
    """Write the files into folder as NAME.gz (or raw NAME); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if compress:
            (folder / f"{name}.gz").write_bytes(gz(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    """Write a uint8 array as the IDX file `path` (as PATH.gz when compress)."""
    write_files(path.parent, {path.name: idx_bytes(array)}, compress=compress)


def make_idx_dataset(
    folder: Path,
    n_train: int = 600,
    n_test: int = 200,
    classes: int = 10,
    seed: int = 0,
    size: int = 28,
) -> Path:
    """Four IDX files of noisy class templates: easy to learn, hard to memorize by accident."""
    rng = np.random.default_rng(seed)
    templates = (rng.random((classes, size, size)) < 0.2) * 255.0  # sparse strokes, like digits
    files = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, classes, n).astype(np.uint8)
        noise = rng.normal(0, 40, (n, size, size))
        images = np.clip(templates[labels] * 0.7 + noise, 0, 255).astype(np.uint8)
        files[f"{prefix}-images-idx3-ubyte"] = idx_bytes(images)
        files[f"{prefix}-labels-idx1-ubyte"] = idx_bytes(labels)
    return write_files(folder, files)


def make_info(
    files: dict[str, bytes],
    *,
    name: str = "synth",
    mirrors: tuple[str, ...] = (),
    image_shape: tuple[int, int] | None = (28, 28),
    num_classes: int | None = 10,
    checksums: bool = True,
    system_dirs: tuple[Path, ...] = (),
) -> DatasetInfo:
    """A DatasetInfo whose checksums and sizes are those of the given raw files."""
    specs = tuple(
        FileSpec(n, hashlib.sha256(files[n]).hexdigest(), len(files[n]))
        if checksums
        else FileSpec(n)
        for n in FILE_NAMES
    )
    return DatasetInfo(
        name=name,
        files=specs,
        mirrors=mirrors,
        image_shape=image_shape,
        num_classes=num_classes,
        system_dirs=system_dirs,
    )


def sha256(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


# The data tests' standard dataset: six training and four test images (synthetic_files), and a
# DatasetInfo whose checksums and sizes are those very bytes.
FILES = synthetic_files()
INFO = make_info(FILES)


# ---------------------------------------------------------------- loopback HTTP server


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    path: str
    headers: dict[str, str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Behaviour]
    seen: list[Seen]
    stopping: threading.Event

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gave up (timeout, short body) makes the handler's writes fail: expected.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # never let a stuck test connection hang a handler thread for long

    def do_GET(self) -> None:
        self.server.seen.append(Seen(self.path, dict(self.headers.items())))
        behaviour = self.server.routes.get(self.path, status(404))
        behaviour(self)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


class LoopbackServer:
    """A real HTTP server on 127.0.0.1:<free port>; `routes` maps a path to a behaviour."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.routes = {}
        self._server.seen = []
        self._server.stopping = threading.Event()
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stopping.set()  # wakes stalled handlers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        """Base URL ending in '/'."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def routes(self) -> dict[str, Behaviour]:
        """Path (e.g. '/m1/NAME.gz', or a full URL for proxy requests) -> behaviour."""
        return self._server.routes

    @property
    def seen(self) -> list[Seen]:
        """Every request received, in order."""
        return self._server.seen

    @property
    def stopping(self) -> threading.Event:
        """Set when the server shuts down; stalled behaviours wait on it."""
        return self._server.stopping

    def mirror(self, prefix: str, files: dict[str, bytes], *, compress: bool = True) -> str:
        """Serve files as PREFIX/NAME.gz; returns the mirror URL."""
        for name, data in files.items():
            self.routes[f"/{prefix}/{name}.gz"] = serve(gz(data) if compress else data)
        return f"{self.url}{prefix}/"

    def requests_to(self, prefix: str) -> list[Seen]:
        """The requests whose path starts with /PREFIX/."""
        return [s for s in self.seen if s.path.startswith(f"/{prefix}/")]


# ---------------------------------------------------------------- behaviours


def serve(body: bytes, *, headers: dict[str, str] | None = None, length: bool = True) -> Behaviour:
    """200 with body; length=False omits Content-Length (the body ends when the socket closes)."""

    def behaviour(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        if length:
            h.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(body)

    return behaviour


def status(code: int, *, headers: dict[str, str] | None = None) -> Behaviour:
    """An error status with a small HTML page (what real servers send)."""
    return _reply(code, b"<html><body>error</body></html>", headers or {})


def _reply(code: int, body: bytes, headers: dict[str, str]) -> Behaviour:
    def behaviour(h: BaseHTTPRequestHandler) -> None:
        h.send_response(code)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(body)

    return behaviour


def sequence(*behaviours: Behaviour) -> Behaviour:
    """The n-th request gets the n-th behaviour; the last one repeats."""
    count = iter(range(1 << 30))
    lock = threading.Lock()

    def behaviour(h: BaseHTTPRequestHandler) -> None:
        with lock:
            n = next(count)
        behaviours[min(n, len(behaviours) - 1)](h)

    return behaviour


def short(body: bytes, claimed: int) -> Behaviour:
    """Claims Content-Length `claimed` but sends `body` and closes the connection."""

    def behaviour(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(claimed))
        h.end_headers()
        h.wfile.write(body)
        h.close_connection = True

    return behaviour


def stall(seconds: float, stopping: threading.Event) -> Behaviour:
    """Sends nothing for `seconds` (or until the server stops): a read timeout for the client."""

    def behaviour(h: BaseHTTPRequestHandler) -> None:
        stopping.wait(seconds)

    return behaviour


def stall_midway(body: bytes, stopping: threading.Event, *, sent: threading.Event) -> Behaviour:
    """Sends half the body, sets `sent`, then waits until the server stops."""

    def behaviour(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body[: len(body) // 2])
        h.wfile.flush()
        sent.set()
        stopping.wait(30)

    return behaviour


def trickle(
    body: bytes,
    stopping: threading.Event,
    *,
    chunk: int = 32,
    every: float = 0.05,
    limit: float = 10.0,
) -> Behaviour:
    """200 with the full Content-Length, then `chunk` bytes every `every` s: a stalled mirror.

    It gives up after `limit` s (closing the connection: a short body), so a client that never
    abandons the mirror still ends, late.
    """

    def behaviour(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        deadline = time.monotonic() + limit
        for start in range(0, len(body), chunk):
            if stopping.wait(every) or time.monotonic() > deadline:
                break
            h.wfile.write(body[start : start + chunk])
            h.wfile.flush()
        h.close_connection = True

    return behaviour


def closed_port_url() -> str:
    """A mirror URL on a port where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/dead/"


# ---------------------------------------------------------------- environment


def isolate_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user settings leak in: no BPTRAIN_* variables, no proxies, a throwaway cache root."""
    for var in ("BPTRAIN_DATA_DIR", "BPTRAIN_OFFLINE", "BPTRAIN_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    # An earlier CLI test leaves the console's stderr handler on the "bptrain" logger (and
    # propagation off): the data layer's log lines must reach caplog, not the test's stderr.
    logger = logging.getLogger("bptrain")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logger, "level", logger.level)  # remembered for the undo
    logger.setLevel(logging.NOTSET)  # setLevel, not the attribute: it also clears level caches


def files_in(folder: Path) -> list[str]:
    """Sorted names of everything in a folder (hidden files included), [] if it is absent."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
