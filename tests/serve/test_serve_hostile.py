"""`bptrain serve` under hostile clients, on a real server on loopback: hundreds of idle
sockets, request heads trickled a byte at a time, stalled uploads, more requests than it
serves at once, unparsable requests, odd Host headers, and bugs. Every answer is JSON.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import sys
import time

import pytest

from serve_helpers import (  # noqa: F401  (fixtures)
    Server,
    digit_set_fixture,
    png,
    predict_png,
    request,
    serve_checkpoint_fixture,
)

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

IDLE_SOCKETS = 300
WAIT = 60  # seconds a test waits for what the server must do, before it calls it a hang


@pytest.fixture(scope="module")
def file_limit():
    """Room for IDLE_SOCKETS sockets at both ends (the server inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * IDLE_SOCKETS
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"the open-file limit ({hard}) is too low for {IDLE_SOCKETS} sockets")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def server(serve_checkpoint, file_limit):
    with Server(serve_checkpoint) as running:
        yield running


@pytest.fixture(scope="module")
def digit(digit_set):
    return png(digit_set[0][0])


def address(url):
    host, port = url[len("http://") :].rstrip("/").split(":")
    return host, int(port)


def read_answer(sock):
    """Everything the server sends until it closes the connection (b"" when it sent nothing)."""
    sock.settimeout(WAIT)
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def parse(answer):
    """(status, headers, JSON body) of one raw HTTP answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def test_idle_sockets_take_no_place_and_are_closed(server, digit):
    idle = [socket.create_connection(address(server.url)) for _ in range(IDLE_SOCKETS)]
    try:
        # uvicorn's limit counted these: 127 of them made every request a plain-text 503.
        answer = predict_png(server.url, digit)
        assert answer["event"] == "prediction"
        assert request(server.url + "api/model")[0] == 200
        # The server closes each one (it sent nothing: no answer is due).
        assert all(read_answer(sock) == b"" for sock in idle)
    finally:
        for sock in idle:
            sock.close()
    assert predict_png(server.url, digit)["event"] == "prediction"


def trickle(sock, head):
    """Send `head` a byte at a time, 0.2 s apart, then go on sending a header line that never
    ends; returns the server's answer once it closes the connection."""
    deadline = time.monotonic() + WAIT
    try:
        for byte in head:
            sock.sendall(bytes([byte]))
            time.sleep(0.2)
        while time.monotonic() < deadline:
            sock.sendall(b"a")
            time.sleep(0.2)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return read_answer(sock)


def test_a_trickled_head_is_cut_with_a_408(server, digit):
    with socket.create_connection(address(server.url)) as sock:
        answer = trickle(sock, b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    status, headers, body = parse(answer)
    assert status == 408 and headers["content-type"] == "application/json"
    assert "request head" in body["error"] and set(body) == {"error"}
    assert predict_png(server.url, digit)["event"] == "prediction"


def test_a_head_trickled_after_a_first_answer_is_cut_too(server):
    """uvicorn's keep-alive timeout ends at the first byte; the head's deadline does not."""
    with socket.create_connection(address(server.url)) as sock:
        sock.sendall(b"GET /api/model HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(65536)
        head, _, body = first.partition(b"\r\n\r\n")
        length = int(next(
            line.split(b":")[1] for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ))  # fmt: skip
        while len(body) < length:
            body += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200") and json.loads(body)["event"] == "model"
        answer = trickle(sock, b"GET /api/model HTTP/1.1\r\nX-Slow: ")
    assert parse(answer)[0] == 408


def stalled_upload(url, digit):
    sock = socket.create_connection(address(url))
    sock.sendall(
        b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        b"Content-Length: 100000\r\n\r\n" + digit[:100]
    )
    return sock


def test_requests_in_flight_are_counted_and_a_stalled_upload_ends(server, digit):
    from bptrain.serve.guard import MAX_IN_FLIGHT

    stalled = [stalled_upload(server.url, digit) for _ in range(MAX_IN_FLIGHT)]
    try:
        for _ in range(50):  # until the server has read every stalled head
            status, answer, headers = request(server.url + "api/model")
            if status != 200:
                break
            time.sleep(0.05)
        assert status == 503, answer
        assert set(answer) == {"error"} and "busy" in answer["error"]
        assert headers["content-type"] == "application/json" and headers["retry-after"] == "1"
        # Each stalled upload is answered 408 once its body stops arriving, and its place is free.
        for sock in stalled:
            code, headers, body = parse(read_answer(sock))
            assert code == 408 and "body stopped arriving" in body["error"]
            assert headers["content-type"] == "application/json"
    finally:
        for sock in stalled:
            sock.close()
    assert predict_png(server.url, digit)["event"] == "prediction"


def test_an_unparsable_request_gets_a_json_400(server):
    for junk in (b"HELLO\r\n\r\n", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n"):
        with socket.create_connection(address(server.url)) as sock:
            sock.sendall(junk)
            status, headers, body = parse(read_answer(sock))
        assert status == 400 and headers["content-type"] == "application/json"
        assert body["error"].startswith("invalid HTTP request")


REFUSED = ["[::1].evil.com", "localhost:80@evil.com", "evil.com", "evil.com:80", "localhost.",
           "127.0.0.1.nip.io", "0.0.0.0", "", "localhost:80:80", "[::1", "localhost:8o",
           "user@localhost", "localhost/x", "127.0.0.2"]  # fmt: skip
ANSWERED = ["localhost", "LocalHost:9000", "127.0.0.1", "127.0.0.1:1", "[::1]", "[::1]:8000",
            "[0:0:0:0:0:0:0:1]:80", "localhost:"]  # fmt: skip


def test_the_host_check_parses_host_and_port(server):
    for host in REFUSED:
        status, answer, _ = request(server.url + "api/model", Host=host)
        assert status == 421, host
        assert "answers to" in answer["error"]
    for host in ANSWERED:  # a port forwarded elsewhere (ssh -L 9000:...) keeps working
        assert request(server.url + "api/model", Host=host)[0] == 200, host


def test_a_loopback_host_other_than_127_0_0_1_answers_to_its_own_address(serve_checkpoint):
    with Server(serve_checkpoint, "--host", "127.0.0.2") as running:
        assert running.url.startswith("http://127.0.0.2:")
        status, answer, _ = request(running.url + "api/model")
        assert status == 200 and answer["event"] == "model"
        status, answer, _ = request(running.url + "api/model", Host="127.0.0.3")
        assert status == 421 and "127.0.0.2" in answer["error"]
        code, _, stderr = running.stop()
    assert code == 130 and "not on loopback" not in stderr


BUGS = """
import bptrain.serve.guard as guard, bptrain.serve.inference as inference
def broken(*args, **kwargs):
    raise ZeroDivisionError("planted")
inference.Engine.infer = broken
known = guard.Guard._known_host
guard.Guard._known_host = lambda self, scope: (
    broken() if (b"x-bug", b"1") in scope["headers"] else known(self, scope))
"""


def test_a_bug_is_a_json_500_and_the_server_goes_on(serve_checkpoint, digit):
    with Server(serve_checkpoint, patch=BUGS) as running:
        for headers in ({}, {"X_Bug": "1"}):  # in the app's route, and before the app
            status, answer, got = request(
                running.url + "api/predict", digit, "image/png", **headers
            )
            assert status == 500 and got["content-type"] == "application/json"
            assert answer == {
                "error": "internal error: ZeroDivisionError (this is a bug in bptrain)"
            }
            assert "default-src 'self'" in got["content-security-policy"]
        assert request(running.url + "api/model")[0] == 200
        code, _, stderr = running.stop()
    assert code == 130
    assert stderr.count("internal error") == 2 and "Traceback" not in stderr


def test_open_without_a_usable_browser_says_so(serve_checkpoint, tmp_path):
    env = {"PATH": str(tmp_path), "BROWSER": None, "DISPLAY": None, "WAYLAND_DISPLAY": None}
    with Server(serve_checkpoint, "--open", env=env) as running:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and "--open" not in "".join(running.lines):
            time.sleep(0.05)
        code, _, stderr = running.stop()
    assert code == 130
    (line,) = [line for line in stderr.splitlines() if "--open" in line]
    assert line.startswith("WARNING: --open: no web browser could be started")
    assert running.url in line


def test_open_with_a_failing_browser_says_so(serve_checkpoint, tmp_path):
    env = {"PATH": str(tmp_path), "BROWSER": f"{sys.executable} -c 'raise SystemExit(3)' %s",
           "DISPLAY": None, "WAYLAND_DISPLAY": None}  # fmt: skip
    with Server(serve_checkpoint, "--open", env=env) as running:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and "--open" not in "".join(running.lines):
            time.sleep(0.05)
        code, _, stderr = running.stop()
    assert code == 130 and "WARNING: --open: no web browser could be started" in stderr


LOW_LIMIT = "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))"


def test_more_idle_sockets_than_the_file_limit_allows_still_leave_room(serve_checkpoint, digit):
    """Under a file limit of 256, 600 idle sockets: the server closes the longest-waiting ones
    to accept new connections, and says so in at most a line or two, with no traceback."""
    with Server(serve_checkpoint, patch=LOW_LIMIT) as running:
        idle = [socket.create_connection(address(running.url)) for _ in range(600)]
        try:
            assert predict_png(running.url, digit)["event"] == "prediction"
            assert all(read_answer(sock) == b"" for sock in idle)
        finally:
            for sock in idle:
                sock.close()
        assert predict_png(running.url, digit)["event"] == "prediction"
        code, _, stderr = running.stop()
    assert code == 130 and "Traceback" not in stderr
    assert sum("out of system resource" in line for line in stderr.splitlines()) <= 3
