"""The Starlette app: the page's files and the JSON API, with capped bodies and JSON errors.

    GET  /                    the page (static/index.html; static/app.js and style.css beside it)
    GET  /api/model           the model's summary
    POST /api/predict         one image -> the record of `predict`; ?details=1 adds the layers

A request body is PNG/JPEG/... bytes (Content-Type: image/*) or JSON {"image": "data:...;base64,
...", "name": ...}. Every failure is a 4xx (or 500, or 503 when MAX_IN_FLIGHT requests are
already being served) with a JSON body {"error": "..."}; nothing a client sends can stop the
server. A body must keep arriving (BODY_GAP_SECONDS at most between its parts, BODY_SECONDS in
all; else 408), so a stalled upload does not hold its place among the requests in flight for
ever. guard.py stands before the app: Host check, capacity, headers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .guard import LOOPBACK_HOSTS, Guard, json_error
from .inference import Engine, RequestError

log = logging.getLogger("bptrain.serve")

STATIC = Path(__file__).parent / "static"
MAX_BODY = 5 << 20  # 5 MiB: a phone photo fits; a larger body gets 413
DRAIN = 32 << 20  # a refused body up to this size is read to its end before the 413
BODY_GAP_SECONDS = 10.0  # the longest pause allowed inside a body
BODY_SECONDS = 60.0  # a whole body: 5 MiB at 1 Mbit/s takes 42 s


def create_app(engine: Engine, *, hosts: frozenset[str] | None = LOOPBACK_HOSTS) -> Starlette:
    """The app for one engine; `hosts`: the Host names it answers (None: any), see guard.py."""

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
    return Guard(app, hosts)  # type: ignore[return-value]


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
    async for chunk in _chunks(request):
        size += len(chunk)
        if size > cap:
            await _drain(request, size)
            raise RequestError(413, f"the body is over the limit of {cap:,} bytes")
        chunks.append(chunk)
    if not size:
        raise RequestError(400, "the body is empty: send an image")
    return b"".join(chunks)


async def _chunks(request: Request) -> AsyncIterator[bytes]:
    """The body's parts as they arrive; RequestError 408 when they stop coming in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BODY_SECONDS
    parts = request.stream().__aiter__()
    while True:
        wait = min(BODY_GAP_SECONDS, deadline - loop.time())
        try:
            yield await asyncio.wait_for(parts.__anext__(), max(wait, 0))
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            stalled = wait >= BODY_GAP_SECONDS
            raise RequestError(
                408,
                f"the body stopped arriving for {BODY_GAP_SECONDS:g} seconds"
                if stalled
                else f"the body did not arrive within {BODY_SECONDS:g} seconds",
            ) from None


async def _drain(request: Request, size: int) -> None:
    """Read and drop the rest of a refused body, unless it is larger than DRAIN (or stalls)."""
    if size > DRAIN:
        return
    seen = 0
    try:
        async for chunk in _chunks(request):
            seen += len(chunk)
            if seen > DRAIN:
                return
    except RequestError:
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


# --------------------------------------------------------------------- errors


def _error(status: int, message: str) -> JSONResponse:
    # Connection: close when the body may not have been read to its end.
    headers = {"connection": "close"} if status in (408, 413) else None
    return json_error(status, message, headers)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return _error(error.status_code, f"{request.method} {request.url.path}: {error.detail}")


async def _internal_error(request: Request, error: Exception) -> Response:
    log.error(
        f"{request.method} {request.url.path}: internal error {type(error).__name__}: {error}"
    )
    return _error(500, f"internal error: {type(error).__name__} (this is a bug in bptrain)")
