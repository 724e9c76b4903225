"""One HTTP connection: uvicorn's h11 protocol with a deadline for each request head, and JSON
for the answers uvicorn writes itself.

uvicorn closes a connection that idles *after* a response (its keep-alive timeout), but not
one that never sends a request, nor one that trickles a request head a byte at a time (any
byte cancels that timeout). Such sockets cost nothing to open, so a few hundred of them would
hold the server's connection slots for as long as their client likes. Here a connection has
HEAD_SECONDS, from its start or from the end of its previous answer, to send a complete
request head; otherwise it is closed (with a 408 JSON answer when part of a head came). A slow
body is the app's business (app.py gives it a deadline of its own).

Open sockets are also capped below the process's open-file limit (`connection_cap`): a client
that opens more than that in under HEAD_SECONDS makes the server close the connection that has
waited longest for its head, rather than leave new connections unaccepted (asyncio's accept
fails with "too many open files" and retries each second).

uvicorn answers a request it cannot parse with a plain-text 400; here that answer is the
documented JSON {"error": ...} as well.
"""

from __future__ import annotations

import asyncio
import json
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_SECONDS = 5.0  # a browser sends its head in milliseconds; a phone on a bad link in < 1 s
MAX_CONNECTIONS = 4096  # open sockets at most (each costs a file and some 10 KiB)
RESERVED_FILES = 64  # kept for what else the server opens: the page's files, threads, logs


def connection_cap() -> int:
    """How many sockets may be open at once: MAX_CONNECTIONS, or fewer under a low file limit."""
    try:
        import resource
    except ImportError:  # not a Unix: no file limit to respect
        return MAX_CONNECTIONS
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft - RESERVED_FILES))


def json_answer(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, its body {"error": message}."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's H11Protocol, plus the request-head deadline and JSON protocol errors."""

    _head_timer: asyncio.TimerHandle | None = None
    _waiting_since = 0.0  # when the wait for the current head began

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()
        if len(self.connections) > connection_cap():
            self._close_longest_waiting()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()  # the next request's head has its own HEAD_SECONDS

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watching()
        super().connection_lost(exc)

    def _waiting_for_head(self) -> bool:
        """Whether the connection waits for a request head (none yet, or only part of one)."""
        idle = self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE
        return idle and not self.transport.is_closing()

    def _watch_head(self) -> None:
        """Arm the deadline when a head is awaited, and disarm it once one has come."""
        if not self._waiting_for_head():
            self._stop_watching()
        elif self._head_timer is None:
            self._waiting_since = time.monotonic()
            self._head_timer = self.loop.call_later(HEAD_SECONDS, self._head_too_late)

    def _stop_watching(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_late(self) -> None:
        self._head_timer = None
        if not self._waiting_for_head():
            return
        if self.conn.trailing_data[0]:  # part of a head came: say why the connection ends
            message = f"the request head did not arrive within {HEAD_SECONDS:g} seconds"
            self.transport.write(json_answer(408, "Request Timeout", message))
        self.transport.close()

    def _close_longest_waiting(self) -> None:
        """Make room: close the open connection that has waited longest for a request head."""
        waiting = [
            c for c in self.connections
            if isinstance(c, GuardedH11Protocol) and c._head_timer is not None
        ]  # fmt: skip
        if waiting:
            oldest = min(waiting, key=lambda c: c._waiting_since)
            oldest._stop_watching()
            oldest.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse, as JSON."""
        message = f"invalid HTTP request ({msg.rstrip('.').lower()})"
        self.transport.write(json_answer(400, "Bad Request", message))
        self.transport.close()
