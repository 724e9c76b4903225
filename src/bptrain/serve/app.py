"""The Starlette app: the page's files and the JSON API, with capped bodies and JSON errors.

    GET  /                    the page (static/index.html; static/app.js and style.css beside it)
    GET  /api/model           the model's summary
    POST /api/predict         one image -> the record of `predict`; ?details=1 adds the layers

A request body is PNG/JPEG/... bytes (Content-Type: image/*) or JSON {"image": "data:...;base64,
...", "name": ...}. Every failure is a 4xx (or 500) with a JSON body {"error": "..."}; nothing a
client sends can stop the server.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .inference import Engine, RequestError

log = logging.getLogger("bptrain.serve")

STATIC = Path(__file__).parent / "static"
MAX_BODY = 5 << 20  # 5 MiB: a phone photo fits; a larger body gets 413
DRAIN = 32 << 20  # a refused body up to this size is read to its end before the 413
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
HEADERS = {
    # The page loads nothing from elsewhere; scripts and styles come from this server only.
    "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
_HEADERS = [(k.encode(), v.encode()) for k, v in HEADERS.items()]


def create_app(engine: Engine, *, loopback: bool = True) -> Starlette:
    """The app for one engine; `loopback`: refuse Host headers of other names (DNS rebinding)."""

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    async def model(request: Request) -> Response:
        return JSONResponse(summary)

    async def predict(request: Request) -> Response:
        return await _predict(engine, request)

    summary = engine.summary()
    app = Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/api/model", model, methods=["GET"]),
            Route("/api/predict", predict, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    return _Guard(app, loopback)  # type: ignore[return-value]


# --------------------------------------------------------------------- POST /api/predict


async def _predict(engine: Engine, request: Request) -> Response:
    started = time.perf_counter()
    try:
        options = _options(request, len(engine.class_names))
        data, name = await _image_of(request)
        out = await run_in_threadpool(engine.predict, data, name=name, **options)
    except RequestError as error:
        log.debug(f"POST /api/predict {error.status}: {error.message}")
        return _error(error.status, error.message)
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is listening any more
    except Exception as error:  # a bug: this request fails, the server goes on
        return await _internal_error(request, error)
    log.debug(
        f"POST /api/predict 200: {out['class_name']} ({out['confidence']:.3f}) in "
        f"{(time.perf_counter() - started) * 1000:.1f} ms"
    )
    return JSONResponse(out)


def _options(request: Request, classes: int) -> dict[str, Any]:
    """?details=1, ?class=K (whose gradient), ?top_k=N."""
    query = request.query_params
    details = query.get("details", "0").lower()
    if details not in ("0", "1", "true", "false", "yes", "no", ""):
        raise RequestError(400, f"details={details!r}: use details=1 or details=0")
    target = _integer(query, "class", 0, classes - 1)
    top_k = _integer(query, "top_k", 0, classes)
    return {
        "details": details in ("1", "true", "yes"),
        "target": target,
        "top_k": 3 if top_k is None else top_k,
    }


def _integer(query: Any, key: str, low: int, high: int) -> int | None:
    text = query.get(key)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise RequestError(400, f"{key}={text!r} is not a whole number") from None
    if not low <= value <= high:
        raise RequestError(400, f"{key}={value} is out of range {low}..{high}")
    return value


async def _image_of(request: Request) -> tuple[bytes, str]:
    """The image's bytes and a name for the record, from an image/* or a JSON body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (kind.startswith("image/") or kind == "application/json"):
        shown = kind or "none"
        raise RequestError(
            415,
            f"Content-Type {shown} is not accepted: send the image's bytes with "
            'Content-Type: image/png (or image/jpeg, ...), or JSON {"image": "data:..."} '
            "with Content-Type: application/json",
        )
    body = await _body(request)
    name = request.query_params.get("name") or "upload"
    if kind == "application/json":
        return _from_json(body, name)
    return body, name


async def _body(request: Request, cap: int = MAX_BODY) -> bytes:
    """The request body, refusing (413) one over `cap` by its header or as it arrives.

    A refused body is still read (and dropped) up to DRAIN bytes: a client that sends its
    whole body before it reads the answer (most do) would otherwise see the connection reset
    instead of the 413. A client that waits for "100 Continue" is answered at once.
    """
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise RequestError(400, f"Content-Length {declared!r} is not a number")
    if declared is not None and int(declared) > cap:
        if "100-continue" not in request.headers.get("expect", "").lower():
            await _drain(request, int(declared))
        raise RequestError(413, f"the body is {int(declared):,} bytes; the limit is {cap:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            await _drain(request, size)
            raise RequestError(413, f"the body is over the limit of {cap:,} bytes")
        chunks.append(chunk)
    if not size:
        raise RequestError(400, "the body is empty: send an image")
    return b"".join(chunks)


async def _drain(request: Request, size: int) -> None:
    """Read and drop the rest of a refused body, unless it is larger than DRAIN."""
    if size > DRAIN:
        return
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > DRAIN:
            return


def _from_json(body: bytes, name: str) -> tuple[bytes, str]:
    """{"image": "data:image/png;base64,...", "name": "..."} -> the image's bytes."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise RequestError(400, f"malformed JSON ({error})") from None
    if not isinstance(message, dict) or not isinstance(message.get("image"), str):
        raise RequestError(400, 'the JSON must be an object {"image": "data:image/png;base64,..."}')
    given = message.get("name")
    if isinstance(given, str) and given:
        name = given[:200]
    url = message["image"]
    head, comma, payload = url.partition(",")
    if not (url.startswith("data:") and comma and head.endswith(";base64")):
        raise RequestError(400, '"image" must be a base64 data URL: data:image/png;base64,...')
    try:
        return base64.b64decode(payload, validate=True), name
    except (binascii.Error, ValueError) as error:
        raise RequestError(400, f'"image" holds invalid base64 ({error})') from None


# --------------------------------------------------------------------- errors, headers, hosts


def _error(status: int, message: str) -> JSONResponse:
    # Connection: close when the body may not have been read to its end.
    headers = {"connection": "close"} if status == 413 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return _error(error.status_code, f"{request.method} {request.url.path}: {error.detail}")


async def _internal_error(request: Request, error: Exception) -> Response:
    log.error(
        f"{request.method} {request.url.path}: internal error {type(error).__name__}: {error}"
    )
    return _error(500, f"internal error: {type(error).__name__} (this is a bug in bptrain)")


class _Guard:
    """Security headers on every response, and (on loopback) only loopback Host names."""

    def __init__(self, app: ASGIApp, loopback: bool) -> None:
        self.app, self.loopback = app, loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.loopback and not _loopback_host(scope):
            response = _error(421, "this server answers to 127.0.0.1 and localhost only")
            await response(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {key.lower() for key, _ in message.get("headers", [])}
                extra = [
                    (k.encode(), v.encode()) for k, v in HEADERS.items() if k.encode() not in names
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def _loopback_host(scope: Scope) -> bool:
    host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1").lower()
    if host.startswith("["):  # [::1]:8000
        name = host.split("]")[0] + "]"
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in LOOPBACK_HOSTS
