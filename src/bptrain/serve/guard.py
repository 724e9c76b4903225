"""What stands between a request and the app: the Host check, the capacity, the security
headers, and a JSON answer for anything that escapes the app.

- Host: on loopback, only the names of this machine (and the address bptrain listens on) are
  answered, so a page of another site that a DNS-rebinding trick points at 127.0.0.1 cannot use
  the API. The header is parsed as the `host[:port]` it must be; anything else is refused.
- Capacity: MAX_IN_FLIGHT requests are served at once; more get a 503. Open connections that
  send nothing are not requests (connection.py closes them), so they take no place here.
- Every answer is JSON {"error": ...}, a bug's 500 included, and carries HEADERS.
"""

from __future__ import annotations

import ipaddress
import logging
import re

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("bptrain.serve")

MAX_IN_FLIGHT = 64  # requests served at once; each may hold a 5 MiB body
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
HEADERS = {
    # The page loads nothing from elsewhere; scripts and styles come from this server only.
    "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
# host[:port]: a name or IPv4 address, or an IPv6 address in brackets (RFC 9110, 7.2).
_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::[0-9]*)?")


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def host_name(header: str) -> str | None:
    """The name in a Host header, lower case (an IPv6 address without brackets, in its short
    form); None when the header is not `host[:port]` ("[::1].evil.com", "a:80@evil.com")."""
    found = _HOST.fullmatch(header)
    if found is None:
        return None
    if found["ipv6"] is None:
        return found["name"].lower()
    try:
        return ipaddress.IPv6Address(found["ipv6"]).compressed
    except ValueError:
        return None


def names_of(address: str) -> frozenset[str]:
    """The Host names a loopback server on `address` answers to."""
    return LOOPBACK_HOSTS | {ipaddress.ip_address(address.split("%")[0]).compressed}


class Guard:
    """The app behind the Host check and the capacity, with HEADERS on every answer.

    `hosts`: the names answered (None: any, for a server that is not on loopback).
    """

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None) -> None:
        self.app, self.hosts = app, hosts
        self.in_flight = 0  # one event loop: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {key.lower() for key, _ in message.get("headers", [])}
                extra = [
                    (k.encode(), v.encode()) for k, v in HEADERS.items() if k.encode() not in names
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self._serve(scope, receive, with_headers)
        except Exception as error:  # a bug outside the app's own handlers: still JSON
            if started:  # the app's handler already answered (and logged) it
                return
            log.error(f"{scope['method']} {scope['path']}: internal error {error!r}")
            message = f"internal error: {type(error).__name__} (this is a bug in bptrain)"
            await json_error(500, message)(scope, receive, with_headers)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hosts is not None and not self._known_host(scope):
            shown = ", ".join(sorted(f"[{h}]" if ":" in h else h for h in self.hosts))
            await json_error(421, f"this server answers to {shown} only")(scope, receive, send)
            return
        if self.in_flight >= MAX_IN_FLIGHT:
            message = f"busy: {MAX_IN_FLIGHT} requests are being served; try again in a moment"
            log.debug(f"{scope['method']} {scope['path']} 503: {message}")
            busy = json_error(503, message, {"retry-after": "1", "connection": "close"})
            await busy(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _known_host(self, scope: Scope) -> bool:
        values = [value for key, value in scope.get("headers", []) if key == b"host"]
        if len(values) != 1:
            return False
        return host_name(values[0].decode("latin-1")) in (self.hosts or ())
