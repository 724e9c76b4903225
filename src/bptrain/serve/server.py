"""Run the app under uvicorn, with bptrain's logs, signals and exit codes.

uvicorn runs in a worker thread, where it installs no signal handlers of its own; the main
thread waits on it under bptrain's handler (interrupts.py), so Ctrl-C, SIGTERM and SIGHUP raise
Interrupted there as in every command. The server is then asked to stop (open connections get
a moment to finish) and the command exits 130, 143 or 129 with one line. The socket is bound
here, before uvicorn starts, so a port in use is a usage error and `--port 0` gives its real
port at once.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import uvicorn

from ..errors import ConfigError, Interrupted
from .app import create_app
from .connection import MAX_CONNECTIONS, RESERVED_FILES, GuardedH11Protocol
from .guard import names_of
from .inference import Engine

log = logging.getLogger("bptrain.serve")

STOP_SECONDS = 3  # a stopping server waits this long for open requests


# Long: uvicorn's settings, the guard and the signals are one start-up sequence, in order.
def serve(
    engine: Engine,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    open_browser: bool = False,
    verbose: bool = False,
) -> None:
    """Serve the page and API until a signal stops it (raises Interrupted: exit 128 + signal)."""
    sock, loopback = listen(host, port)
    url, local = url_of(sock, host), local_url(sock)
    if not loopback:
        log.warning(
            f"serving on {host}, not on loopback: anyone who can reach this machine on port "
            f"{sock.getsockname()[1]} can use the page and the API"
        )
    # The protocol closes connections that send no request; the app's guard counts requests in
    # flight (uvicorn's limit_concurrency would count open sockets, idle ones included).
    hosts = names_of(sock.getsockname()[0]) if loopback else None
    config = uvicorn.Config(
        create_app(engine, hosts=hosts), log_config=None, access_log=verbose,
        lifespan="off", ws="none", http=GuardedH11Protocol, loop="asyncio",
        timeout_keep_alive=5, timeout_graceful_shutdown=STOP_SECONDS,
    )  # fmt: skip
    server = uvicorn.Server(config)
    with _uvicorn_logs(verbose), _more_files():
        thread, failures = _start(server, sock)
        try:
            _wait(lambda: server.started, thread, 0.02)
            if failures:
                raise failures[0]
            _announce(engine, url, local, open_browser)
            _wait(lambda: False, thread, 0.5)
        except Interrupted as stop:
            server.should_exit = True
            thread.join(STOP_SECONDS + 2)  # a second signal raises here: stop at once
            raise Interrupted(f"{stop}: the server at {url} stopped", signum=stop.signum) from None
        finally:
            sock.close()
    if failures:
        raise failures[0]
    raise ConfigError(f"the server at {url} stopped unexpectedly")


def listen(host: str, port: int) -> tuple[socket.socket, bool]:
    """A socket bound to host:port, and whether it is on loopback only."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise ConfigError(f"--host {host}: no such address ({error.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        hint = "choose another --port, or --port 0 for a free one"
        reason = "the port is in use" if error.errno == errno.EADDRINUSE else error.strerror
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}", hint=hint) from None
    return sock, ipaddress.ip_address(address[0].split("%")[0]).is_loopback


def local_url(sock: socket.socket) -> str:
    """The URL on this machine: 127.0.0.1 (or [::1]) for a socket on every interface."""
    address, port = sock.getsockname()[:2]
    if ipaddress.ip_address(address.split("%")[0]).is_unspecified:
        return f"http://{'[::1]' if ':' in address else '127.0.0.1'}:{port}/"
    return url_of(sock, address)


def url_of(sock: socket.socket, host: str) -> str:
    address, port = sock.getsockname()[:2]
    shown = host if ipaddress.ip_address(address.split("%")[0]).is_unspecified else address
    if ":" in shown:
        shown = f"[{shown.strip('[]')}]"
    return f"http://{shown}:{port}/"


def _start(server: uvicorn.Server, sock: socket.socket) -> tuple[threading.Thread, list]:
    failures: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as error:  # SystemExit included: uvicorn exits on some failures
            failures.append(
                error if isinstance(error, Exception) else ConfigError(f"uvicorn stopped: {error}")
            )

    thread = threading.Thread(target=run, name="bptrain-serve", daemon=True)
    thread.start()
    return thread, failures


def _wait(done: Callable[[], bool], thread: threading.Thread, step: float) -> None:
    """Until done() or the thread ends (a join with a timeout: signals are handled at once)."""
    while thread.is_alive() and not done():
        thread.join(step)


def _announce(engine: Engine, url: str, local: str, open_browser: bool) -> None:
    summary = engine.summary()
    what = summary["name"] or summary["checkpoint"]
    here = f" (on this machine: {local})" if local != url else ""
    log.info(
        f"bptrain serve: {what} ({summary['dataset']}, {summary['params']:,} parameters, "
        f"{summary['preprocess']} preprocessing) at {url}{here}"
    )
    log.info("open it in a browser; Ctrl-C stops the server")
    if open_browser:  # in a thread: a text-mode browser could hold the terminal
        threading.Thread(target=_open_browser, args=(local,), daemon=True).start()


def _open_browser(url: str) -> None:
    """Open the page; say so when no browser could (none installed, no display, BROWSER fails)."""
    try:
        opened = webbrowser.open(url)
    except Exception as error:  # webbrowser raises what its launchers raise
        opened, why = False, f" ({error})"
    else:
        why = ""
    if not opened:
        log.warning(f"--open: no web browser could be started{why}; open {url} yourself")


class _Forward(logging.Handler):
    """uvicorn's log records into bptrain's logger: warnings and errors as they are, the rest
    (start-up lines, the access log) as detail for -v."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelno if record.levelno >= logging.WARNING else logging.DEBUG
        message = record.getMessage()
        if self.verbose and record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        elif not self.verbose:
            message = message.split("\n")[0]  # one line; -v shows the rest
        log.log(level, message)


class _Once(logging.Filter):
    """Let a message through once per REPEAT_SECONDS (asyncio repeats "socket.accept() out of
    system resource", with its traceback, for every retry while the file limit is reached)."""

    REPEAT_SECONDS = 10.0

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now, message = time.monotonic(), record.getMessage()
        if now - self.last.get(message, -self.REPEAT_SECONDS) < self.REPEAT_SECONDS:
            return False
        self.last[message] = now
        return True


@contextmanager
def _uvicorn_logs(verbose: bool) -> Iterator[None]:
    """uvicorn's and asyncio's log records into bptrain's logger, one line each."""
    taken = [(logging.getLogger("uvicorn"), None), (logging.getLogger("asyncio"), _Once())]
    saved = [(list(lg.handlers), lg.propagate, lg.level, list(lg.filters)) for lg, _ in taken]
    for logger, once in taken:
        logger.handlers[:], logger.propagate = [_Forward(verbose)], False
        logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
        if once is not None:
            logger.addFilter(once)
    try:
        yield
    finally:
        for (logger, _), (handlers, propagate, level, filters) in zip(taken, saved, strict=True):
            logger.handlers[:], logger.propagate = handlers, propagate
            logger.setLevel(level)
            logger.filters[:] = filters


@contextmanager
def _more_files() -> Iterator[None]:
    """Raise the soft open-file limit towards what MAX_CONNECTIONS sockets need (often 1024,
    where the hard limit allows far more), and put it back afterwards."""
    try:
        import resource
    except ImportError:  # not a Unix
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_CONNECTIONS + 2 * RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (_at_most(wanted, hard), hard))
    try:
        yield
    finally:
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _at_most(wanted: int, hard: int) -> int:
    import resource

    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
