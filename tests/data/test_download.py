"""The downloader against a real loopback HTTP server: mirrors, retries, timeouts, bad bodies."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import bptrain
from bptrain.data import FILE_NAMES, fetch
from bptrain.errors import ConfigError, DataError
from data_helpers import (
    FILES,
    INFO,
    TEST_LABELS,
    TRAIN_IMAGES,
    LoopbackServer,
    closed_port_url,
    files_in,
    gz,
    make_info,
    sequence,
    serve,
    sha256,
    short,
    stall,
    stall_midway,
    status,
    synthetic_files,
    trickle,
)

FAST = {"timeout": (2.0, 2.0), "retries": 2, "backoff": 0.0, "quiet": True}


def cache(tmp_path: Path) -> Path:
    """The data_dir the tests pass; files land in its `synth` subfolder."""
    return tmp_path / "cache"


def assert_complete(folder: Path) -> None:
    """Exactly the four verified .gz files: no temp, lock or stamp files."""
    assert files_in(folder) == sorted(f"{name}.gz" for name in FILE_NAMES)
    for name in FILE_NAMES:
        assert (folder / f"{name}.gz").read_bytes() == gz(FILES[name])


def test_download_from_a_mirror(server: LoopbackServer, tmp_path: Path) -> None:
    mirror = server.mirror("m1", FILES)
    result = fetch(INFO, cache(tmp_path), mirrors=[mirror], **FAST)
    folder = cache(tmp_path) / "synth"
    assert result.folder == folder
    assert [f.name for f in result.files] == list(FILE_NAMES)
    assert [f.source for f in result.files] == [f"{mirror}{n}.gz" for n in FILE_NAMES]
    assert [f.sha256 for f in result.files] == [sha256(FILES[n]) for n in FILE_NAMES]
    assert_complete(folder)
    record = json.loads(json.dumps(result.to_record()))
    assert next(iter(record.items())) == ("event", "download")  # first, as in every record
    assert record["dataset"] == "synth" and record["folder"] == str(folder)
    assert record["files"][0] == {
        "name": TRAIN_IMAGES,
        "sha256": sha256(FILES[TRAIN_IMAGES]),
        "source": f"{mirror}{TRAIN_IMAGES}.gz",
    }


def test_request_headers(server: LoopbackServer, tmp_path: Path) -> None:
    fetch(INFO, cache(tmp_path), mirrors=[server.mirror("m1", FILES)], **FAST)
    assert len(server.seen) == 4
    for seen in server.seen:
        assert seen.headers["User-Agent"] == f"bptrain/{bptrain.__version__}"
        assert seen.headers["Accept-Encoding"] == "identity"


def test_valid_cache_is_never_downloaded_again(server: LoopbackServer, tmp_path: Path) -> None:
    mirror = server.mirror("m1", FILES)
    fetch(INFO, cache(tmp_path), mirrors=[mirror], **FAST)
    again = fetch(INFO, cache(tmp_path), mirrors=[mirror], **FAST)
    assert len(server.seen) == 4
    assert {f.source for f in again.files} == {"cache"}
    assert [f.sha256 for f in again.files] == [sha256(FILES[n]) for n in FILE_NAMES]


@pytest.mark.parametrize("dead", ["404", "refused"])
def test_dead_first_mirror_falls_through(server: LoopbackServer, tmp_path: Path, dead: str) -> None:
    first = server.url + "gone/" if dead == "404" else closed_port_url()
    good = server.mirror("m2", FILES)
    result = fetch(INFO, cache(tmp_path), mirrors=[first, good], **FAST)
    assert all(f.source.startswith(good) for f in result.files)
    assert_complete(cache(tmp_path) / "synth")


@pytest.mark.parametrize("code", [500, 503, 429])
def test_retry_after_a_transient_status(server: LoopbackServer, tmp_path: Path, code: int) -> None:
    server.mirror("m1", FILES)
    path = f"/m1/{TEST_LABELS}.gz"
    server.routes[path] = sequence(status(code), serve(gz(FILES[TEST_LABELS])))
    fetch(INFO, cache(tmp_path), mirrors=[server.url + "m1/"], **FAST)
    assert [s.path for s in server.seen].count(path) == 2
    assert_complete(cache(tmp_path) / "synth")


def test_retries_are_bounded_then_next_mirror(server: LoopbackServer, tmp_path: Path) -> None:
    server.routes.update({f"/bad/{n}.gz": status(503) for n in FILE_NAMES})
    good = server.mirror("good", FILES)
    fetch(INFO, cache(tmp_path), mirrors=[server.url + "bad/", good], retries=1, backoff=0.0)
    assert len(server.requests_to("bad")) == 4 * 2  # one try + one retry per file
    assert len(server.requests_to("good")) == 4


def test_backoff_waits_between_tries(server: LoopbackServer, tmp_path: Path) -> None:
    server.mirror("m1", FILES)
    path = f"/m1/{TEST_LABELS}.gz"
    server.routes[path] = sequence(status(500), status(500), serve(gz(FILES[TEST_LABELS])))
    start = time.monotonic()
    fetch(INFO, cache(tmp_path), mirrors=[server.url + "m1/"], retries=2, backoff=0.1)
    assert time.monotonic() - start >= 0.1 + 0.2  # backoff, then twice the backoff


def test_read_timeout_falls_through(server: LoopbackServer, tmp_path: Path) -> None:
    server.routes[f"/slow/{TRAIN_IMAGES}.gz"] = stall(5, server.stopping)
    slow = server.mirror("slow", {n: FILES[n] for n in FILE_NAMES[1:]})
    good = server.mirror("good", FILES)
    start = time.monotonic()
    result = fetch(INFO, cache(tmp_path), mirrors=[slow, good], timeout=(1, 0.2), backoff=0.0)
    assert time.monotonic() - start < 3  # the server would stall for 5 s
    assert result.files[0].source == f"{good}{TRAIN_IMAGES}.gz"
    assert all(f.source.startswith(slow) for f in result.files[1:])


def test_a_trickling_mirror_is_abandoned_for_the_next(
    server: LoopbackServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 32 bytes every 50 ms keeps every recv inside the read timeout, forever: only a
    # minimum-throughput deadline gets the download to the good mirror.
    server.routes[f"/slow/{TRAIN_IMAGES}.gz"] = trickle(gz(FILES[TRAIN_IMAGES]), server.stopping)
    slow = server.mirror("slow", {n: FILES[n] for n in FILE_NAMES[1:]})
    good = server.mirror("good", FILES)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING):
        result = fetch(
            INFO, cache(tmp_path), mirrors=[slow, good], min_rate=4096, stall_window=0.3, **FAST
        )
    assert time.monotonic() - start < 5  # the trickle alone would take 10 s
    assert result.files[0].source == f"{good}{TRAIN_IMAGES}.gz"
    assert all(f.source.startswith(slow) for f in result.files[1:])
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.name.startswith("bptrain.data")  # logged, never printed
    assert re.search(r"stalled: \d+ bytes in 0\.\d s; trying the next mirror", warning.getMessage())
    assert_complete(cache(tmp_path) / "synth")


def test_a_slow_but_steady_mirror_is_kept(server: LoopbackServer, tmp_path: Path) -> None:
    body = gz(FILES[TRAIN_IMAGES])  # ~4.7 kB at ~6 kB/s: slow, but over the minimum rate
    server.routes[f"/m1/{TRAIN_IMAGES}.gz"] = trickle(body, server.stopping, chunk=300)
    mirror = server.mirror("m1", {n: FILES[n] for n in FILE_NAMES[1:]})
    result = fetch(INFO, cache(tmp_path), mirrors=[mirror], min_rate=1024, stall_window=0.2, **FAST)
    assert result.files[0].source == f"{mirror}{TRAIN_IMAGES}.gz"


def test_a_corrupt_cached_file_is_warned_about_once(
    server: LoopbackServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = cache(tmp_path) / "synth"
    folder.mkdir(parents=True)
    for name in FILE_NAMES:
        (folder / f"{name}.gz").write_bytes(gz(FILES[name]))
    damaged = folder / f"{TEST_LABELS}.gz"
    damaged.write_bytes(damaged.read_bytes()[:-8] + b"\xff\xff\xff\xff" + damaged.read_bytes()[-4:])
    with caplog.at_level(logging.WARNING):
        fetch(INFO, cache(tmp_path), mirrors=[server.mirror("m1", FILES)], **FAST)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and f"{TEST_LABELS}.gz" in warnings[0], warnings
    assert "delete" not in warnings[0]
    assert_complete(folder)


def test_short_body_falls_through(server: LoopbackServer, tmp_path: Path) -> None:
    body = gz(FILES[TRAIN_IMAGES])
    server.routes[f"/m1/{TRAIN_IMAGES}.gz"] = short(body[:100], claimed=len(body))
    good = server.mirror("good", FILES)
    result = fetch(INFO, cache(tmp_path), mirrors=[server.url + "m1/", good], **FAST)
    assert result.files[0].source == f"{good}{TRAIN_IMAGES}.gz"
    assert_complete(cache(tmp_path) / "synth")


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "no-length"])
def test_oversized_body_falls_through(server: LoopbackServer, tmp_path: Path, length: bool) -> None:
    huge = gz(FILES[TEST_LABELS]) + bytes(1 << 20)
    server.routes[f"/m1/{TEST_LABELS}.gz"] = serve(huge, length=length)
    good = server.mirror("good", FILES)
    result = fetch(INFO, cache(tmp_path), mirrors=[server.url + "m1/", good], **FAST)
    assert result.files[3].source == f"{good}{TEST_LABELS}.gz"
    assert_complete(cache(tmp_path) / "synth")


def test_wrong_checksum_falls_through(server: LoopbackServer, tmp_path: Path) -> None:
    wrong = synthetic_files(seed=1)  # same sizes, other pixels
    bad = server.mirror("bad", wrong)
    good = server.mirror("good", FILES)
    result = fetch(INFO, cache(tmp_path), mirrors=[bad, good], **FAST)
    assert result.files[0].source == f"{good}{TRAIN_IMAGES}.gz"
    assert_complete(cache(tmp_path) / "synth")


@pytest.mark.parametrize("double", [False, True], ids=["mislabelled", "gzipped-again"])
def test_content_encoding_gzip_does_not_break(
    server: LoopbackServer, tmp_path: Path, double: bool
) -> None:
    for name, data in FILES.items():
        body = gz(gz(data)) if double else gz(data)
        server.routes[f"/m1/{name}.gz"] = serve(body, headers={"Content-Encoding": "gzip"})
    result = fetch(INFO, cache(tmp_path), mirrors=[server.url + "m1/"], **FAST)
    assert [f.sha256 for f in result.files] == [sha256(FILES[n]) for n in FILE_NAMES]


def test_every_mirror_failing_lists_each_url(server: LoopbackServer, tmp_path: Path) -> None:
    body = gz(FILES[TRAIN_IMAGES])
    behaviours = {
        "e404": status(404),
        "e500": status(500),
        "short": short(body[:50], claimed=len(body)),
        "big": serve(body + bytes(1 << 20)),
        "wrongsum": serve(gz(synthetic_files(seed=1)[TRAIN_IMAGES])),
        "html": serve(b"<!DOCTYPE html><p>Moved</p>"),
        "slow": stall(5, server.stopping),
    }
    for prefix, behaviour in behaviours.items():
        server.routes[f"/{prefix}/{TRAIN_IMAGES}.gz"] = behaviour
    mirrors = [server.url + p + "/" for p in behaviours] + [closed_port_url()]
    with pytest.raises(DataError) as info:
        fetch(INFO, cache(tmp_path), mirrors=mirrors, timeout=(1, 0.3), retries=1, backoff=0.0)
    message = str(info.value)
    assert f"could not download {TRAIN_IMAGES}.gz: " in message
    for mirror in mirrors:
        assert mirror in message
    for reason in [
        "HTTP 404",
        "HTTP 500 Internal Server Error after 2 tries",
        "short body",
        "over the",
        "SHA-256 of the decompressed data",
        "not a gzip file",
        "read timed out",
        "connection failed",
    ]:
        assert reason in message
    assert str(cache(tmp_path) / "synth") in message and "--mirror URL" in message
    assert "\n" not in message
    assert files_in(cache(tmp_path) / "synth") == []  # no partial, temp or lock file


def test_user_mirrors_come_first_then_env_then_builtin(
    server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builtin = server.mirror("builtin", FILES)
    env = server.mirror("env", FILES)
    monkeypatch.setenv("BPTRAIN_MIRROR", f"  {server.url}gone/ \n {env}")
    info = make_info(FILES, mirrors=(builtin,))
    result = fetch(info, cache(tmp_path), **FAST)
    assert all(f.source.startswith(env) for f in result.files)
    assert server.requests_to("builtin") == []
    user = server.mirror("user", FILES)
    result = fetch(info, tmp_path / "other", mirrors=[user.rstrip("/")], **FAST)
    assert all(f.source.startswith(user) for f in result.files)


def test_non_http_mirror_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an http"):
        fetch(INFO, cache(tmp_path), mirrors=["/some/folder"], **FAST)


def test_proxy_from_the_environment_is_used(
    server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The loopback server acts as the proxy: it sees the absolute URL in the request line.
    for name, data in FILES.items():
        server.routes[f"http://mirror.invalid/m/{name}.gz"] = serve(gz(data))
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.setenv("NO_PROXY", "")
    result = fetch(INFO, cache(tmp_path), mirrors=["http://mirror.invalid/m/"], **FAST)
    assert result.files[0].source == f"http://mirror.invalid/m/{TRAIN_IMAGES}.gz"
    assert len(server.seen) == 4


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_on_a_terminal_only_on_stderr(
    server: LoopbackServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    quiet: bool,
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    mirror = server.mirror("m1", FILES)
    fetch(INFO, cache(tmp_path), mirrors=[mirror], timeout=(2, 2), backoff=0, quiet=quiet)
    assert (f"{TRAIN_IMAGES}.gz" in terminal.getvalue()) is not quiet
    assert capsys.readouterr().out == ""


def test_no_bar_when_stderr_is_not_a_terminal(
    server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    fetch(INFO, cache(tmp_path), mirrors=[server.mirror("m1", FILES)], timeout=(2, 2), backoff=0)
    assert pipe.getvalue() == ""


def test_concurrent_fetches_download_each_file_once(server: LoopbackServer, tmp_path: Path) -> None:
    mirror = server.mirror("m1", FILES)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fetch(INFO, cache(tmp_path), mirrors=[mirror], **FAST)
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert len(server.seen) == 4  # the lock made the others wait, then find the files
    assert_complete(cache(tmp_path) / "synth")


# The child is a plain library caller, so Ctrl-C is Python's KeyboardInterrupt; its default
# handler is installed explicitly, since a runner that starts jobs in the background hands
# its children SIGINT ignored, and Python then leaves it ignored.
CHILD = """
import json, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from bptrain.data import DatasetInfo, FileSpec, fetch
args = json.loads(sys.argv[1])
files = tuple(FileSpec(**spec) for spec in args["files"])
info = DatasetInfo("synth", files, image_shape=(28, 28), num_classes=10)
fetch(info, args["data_dir"], mirrors=[args["mirror"]], retries=0, quiet=True)
"""


def test_ctrl_c_mid_download_leaves_no_file(server: LoopbackServer, tmp_path: Path) -> None:
    files = synthetic_files(n_train=1000)  # ~800 KB of random pixels: many chunks
    info = make_info(files)
    sent = threading.Event()
    body = gz(files[TRAIN_IMAGES])
    server.routes[f"/m1/{TRAIN_IMAGES}.gz"] = stall_midway(body, server.stopping, sent=sent)
    specs = [{"name": s.name, "sha256": s.sha256, "size": s.size} for s in info.files]
    args = {"files": specs, "data_dir": str(cache(tmp_path)), "mirror": server.url + "m1/"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    folder = cache(tmp_path) / "synth"
    try:
        assert sent.wait(20), "the child never asked for the file"
        part = _wait_for_partial(folder)
        assert part.stat().st_size > 0
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert b"KeyboardInterrupt" in stderr
    assert files_in(folder) == []


def _wait_for_partial(folder: Path) -> Path:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        parts = [p for p in folder.glob(".*.part") if p.stat().st_size > 0]
        if parts:
            return parts[0]
        time.sleep(0.02)
    raise AssertionError(f"no partial download appeared in {folder}")
