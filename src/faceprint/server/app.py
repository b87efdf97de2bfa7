"""The ASGI application: ``create_app(...)`` builds a Starlette app around one Faceprint.

Routes: ``POST /`` (Rekognition, AWS JSON 1.1), ``GET /health``, ``GET /metrics`` and
``GET /stream-processors/{name}/events`` (Server-Sent Events, :mod:`faceprint.server.events`).
The event loop only moves bytes: each request is verified, validated and run on a worker
thread, image operations on a pool of their own (one thread per core by default) so that
light calls (ListFaces, ...) never queue behind inference. Request bodies are capped per
operation before they are read. A request takes one of the ``max_in_flight`` places only once
its body has arrived: bodies still arriving (a slow client's) hold no place, and what they hold
in memory, all together, is bounded by ``body_budget`` bytes, counted as they arrive. At
shutdown the pools finish what they hold first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from faceprint.errors import FaceprintError, ImageTooLargeException, error_body
from faceprint.server.events import STOPPING, EventSettings, EventStreams
from faceprint.server.handler import HttpRequest, Outcome, RekognitionHandler
from faceprint.server.metrics import CONTENT_TYPE as METRICS_TYPE
from faceprint.server.metrics import Metrics, stream_metrics
from faceprint.server.protocol import (
    Reply,
    RequestTimeoutException,
    RequestTooLargeException,
    ThrottlingException,
    error_reply,
    internal_error_reply,
    response_headers,
)
from faceprint.server.retention import RetentionRunner
from faceprint.server.shared_limits import open_limiter
from faceprint.server.streams import RunnerHolder

if TYPE_CHECKING:
    from faceprint.server.auth import KeyStore
    from faceprint.server.s3 import Buckets
    from faceprint.service import Faceprint

ACCESS_LOG = "faceprint.access"
BASE_BODY_BYTES = 1024 * 1024
"""Room for everything but images in a request body (4,096 face ids are 160 kB)."""
DRAIN_LIMIT = 64 * 1024 * 1024
"""An oversized body is read and dropped up to this much, so that the client sees the error."""


@dataclass(frozen=True)
class AppOptions:
    """Settings of one app (one process): pools, body caps, shared metrics folder."""

    inference_threads: int = 0
    """Threads running image operations (0: one per core)."""
    light_threads: int = 8
    """Threads running the other operations and authentication failures."""
    metrics_dir: Path | None = None
    """Folder where sibling worker processes share their metrics (None: this process alone)."""
    warm: bool = True
    """Load the face models at startup (``/health`` says ``starting`` until they are)."""
    max_in_flight: int = 64
    """Requests queued or running at once, their bodies in (each may hold an 8 MB body); more answer
    ``ThrottlingException``, which the AWS SDKs retry with backoff. A body still arriving holds no place."""
    body_budget: int = 256 * 1024 * 1024
    """Bytes of the request bodies still arriving, all requests together, counted as they arrive (not
    as ``Content-Length`` announces them); a request whose next bytes would pass it answers
    ``ThrottlingException`` and its connection is closed."""
    body_timeout: float = 30.0
    """Seconds a request's body may take to arrive; then ``RequestTimeoutException`` (HTTP 408)."""
    video_runner: bool = False
    """Run the home's stored-video jobs from this process (``fp.video.start_runner()`` at startup,
    ``fp.video.close()`` at shutdown); of several processes on one home, one runs them at a time."""
    streams_runner: Callable[[], Any] | None = None
    """Makes the home's stream host supervisor (``faceprint.streams.runner.StreamRunner``), run from
    this process and closed at shutdown; None: another process runs the home's stream processors."""
    streams_start: Callable[[], bool] | None = None
    """Whether to start the stream host now: asked at startup, then every ``STREAMS_CHECK`` seconds
    until it says yes (e.g. once ``faceprint streams add`` made the home's streams folder); the first
    StartStreamProcessor this process answers starts it anyway. None: only that."""
    events: EventSettings = EventSettings()
    processes: int = 1
    """Server processes serving the home (``--workers``): above one, the keys' rate limits are
    counted in a file they share (with keys in PostgreSQL, always in the database: every node)."""
    """The Server-Sent Events endpoint's client cap, heartbeat and polling."""
    retention_every: float = 0.0
    """Seconds between two runs of the collections' face retention (0: none from this app;
    ``faceprint serve`` runs it hourly, from one process of the home)."""


def body_limit(image_members: int, max_image_bytes: int) -> int:
    """The largest body an operation accepts: its images in base64, plus 1 MB."""
    return BASE_BODY_BYTES + image_members * 4 * ((max_image_bytes + 2) // 3)


class _State:
    """What the app holds while it runs (no module-level state)."""

    def __init__(self, handler: RekognitionHandler, options: AppOptions) -> None:
        self.handler = handler
        self.options = options
        self.metrics = Metrics(options.metrics_dir)
        self.access = logging.getLogger(ACCESS_LOG)
        self.ready = False
        self.load_error: str | None = None
        """Why the face models failed to load at startup (``/health`` then answers 503)."""
        self.held = 0
        """Requests with their body, queued or running (the event loop's alone)."""
        self.receiving = 0
        """Bytes received of the bodies still arriving (the event loop's alone)."""
        model = handler.model
        self.image_ops = {op for op in model.operations if model.image_members(op)}
        self.limits = {op: body_limit(len(model.image_members(op)), handler.fp.limits.max_bytes)
                       for op in model.operations}
        cores = os.cpu_count() or 1
        self.inference = ThreadPoolExecutor(options.inference_threads or cores, thread_name_prefix="fp-infer")
        self.light = ThreadPoolExecutor(options.light_threads, thread_name_prefix="fp-light")
        self.events = EventStreams(handler, options.events)
        self.streams = RunnerHolder(options.streams_runner)
        self.retention = RetentionRunner(handler.fp, options.retention_every)

    def pool(self, operation: str | None) -> ThreadPoolExecutor:
        return self.inference if operation in self.image_ops else self.light

    def start_video(self) -> None:
        """Start running the home's video jobs (queued ones, and those a stopped server left)."""
        try:
            self.handler.fp.video.start_runner()
        except Exception:  # the API still answers; jobs stay queued for the next runner
            logging.getLogger("faceprint.server").exception("starting the video job runner failed")

    def shutdown(self) -> None:
        self.retention.stop()
        self.inference.shutdown(wait=True)
        self.light.shutdown(wait=True)
        self.events.close()
        self.streams.close()  # the host stops its runs; RUNNING processors resume at the next start
        if self.options.video_runner:  # running jobs go back to the queue for the next runner
            self.handler.fp.video.close()
        self.handler.fp.save_indexes()  # the next start opens large collections from their files


def create_app(fp: Faceprint, *, keys: KeyStore | None = None, buckets: Buckets | None = None,
               options: AppOptions | None = None) -> Starlette:
    """A Rekognition-compatible app serving ``fp``. ``keys`` None disables authentication
    (the caller decides whether that is allowed; ``faceprint serve`` allows it on loopback only)."""
    options = options or AppOptions()
    limiter = open_limiter(keys, fp.home, options.processes)
    state = _State(RekognitionHandler(fp, keys, buckets, limiter=limiter), options)
    from faceprint.console.app import Console

    console = Console(fp)  # the web console at /console (faceprint.console; its users sign in themselves)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if state.options.warm:
            asyncio.get_running_loop().run_in_executor(state.inference, _warm, state)
        else:
            state.ready = True
        if state.options.video_runner:
            await asyncio.get_running_loop().run_in_executor(state.light, state.start_video)
        watch = asyncio.create_task(_watch_streams(state)) if state.options.streams_start else None
        state.retention.start()
        try:
            yield {STOPPING: state.events.stopping}  # the guard sets it when shutdown begins: SSE streams end
        finally:
            state.events.stopping.set()
            if watch is not None:
                watch.cancel()
            await asyncio.get_running_loop().run_in_executor(None, state.shutdown)
            await asyncio.get_running_loop().run_in_executor(None, console.close)

    async def rekognition(request: Request) -> Response:
        return await _rekognition(state, request)

    async def health(request: Request) -> Response:
        return _health(state, keys is not None)

    async def metrics(request: Request) -> Response:
        text = await asyncio.get_running_loop().run_in_executor(state.light, _metrics_text, state)
        return Response(text, media_type=METRICS_TYPE)

    async def events(request: Request) -> Response:
        return _EventsResponse(state)

    async def not_routed(request: Request, exc: Exception) -> Response:
        return _not_routed(state, request, exc)

    app = Starlette(routes=[Route("/", rekognition, methods=["POST"]),
                            Route("/health", health, methods=["GET"]),
                            Route("/metrics", metrics, methods=["GET"]),
                            Route("/stream-processors/{name}/events", events, methods=["GET"]),
                            Mount("/console", app=console.app)],
                    exception_handlers={404: not_routed, 405: not_routed}, lifespan=lifespan)
    app.state.faceprint = state
    return app


STREAMS_CHECK = 5.0
"""Seconds between two asks of ``AppOptions.streams_start`` while the stream host is not started."""


async def _watch_streams(state: _State) -> None:
    """Start the stream host once ``streams_start`` says so (or once it runs anyway)."""
    wanted = state.options.streams_start
    assert wanted is not None
    loop = asyncio.get_running_loop()
    while state.streams.runner is None and not state.streams.closed:
        try:
            if await loop.run_in_executor(state.light, wanted):
                await loop.run_in_executor(state.light, state.streams.ensure_started)
                return
        except Exception:  # never the app's end: asked again at the next check
            logging.getLogger("faceprint.server").exception("checking for configured streams failed")
        await asyncio.sleep(STREAMS_CHECK)


def _metrics_text(state: _State) -> str:
    clients = ["# HELP faceprint_event_streams_open Server-Sent Events streams open in this server process.",
               "# TYPE faceprint_event_streams_open gauge", f"faceprint_event_streams_open {state.events.clients}"]
    return state.metrics.render() + "\n".join(clients) + "\n" + stream_metrics(state.handler.fp.home)


class _EventsResponse(Response):
    """The SSE answer: :class:`EventStreams` writes it to the connection itself."""

    def __init__(self, state: _State) -> None:
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Counted and logged once admitted or refused (a stream that lasts hours is no request in flight)."""
        state = self.state
        started = time.perf_counter()
        done = False

        def answered(status: int, code: str | None, key_id: str | None) -> None:
            nonlocal done
            done = True
            seconds = time.perf_counter() - started
            state.metrics.end(_EVENTS, status, code, seconds)
            outcome = Outcome(Reply(status, error_body(code, "") if code else {}), _EVENTS, key_id=key_id)
            _log(state, Request(scope), str(uuid.uuid4()), outcome, seconds, 0, 0)

        state.metrics.begin()
        try:
            await state.events(scope, receive, send, answered)
        finally:
            if not done:  # a bug, or cancelled before its answer
                answered(500, "InternalServerError", None)


_EVENTS = "StreamProcessorEvents"
"""The access log's and metrics' name of the SSE endpoint."""


def _health(state: _State, auth: bool) -> Response:
    """200 once the face models are loaded; 503 while they load, or if they failed to."""
    body: dict[str, Any] = {"status": "ok", "faceModelVersion": state.handler.fp.face_model_version, "auth": auth}
    if state.load_error is not None:
        body |= {"status": "error", "error": state.load_error}
    elif not state.ready:
        body["status"] = "starting"
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)


def _warm(state: _State) -> None:
    try:
        state.handler.fp.engine.load()
    except Exception as exc:  # /health says so; each request reports it as an AWS error
        logging.getLogger("faceprint.server").exception("loading the face models failed")
        state.load_error = f"loading the face models failed ({type(exc).__name__}); see the server log"
    finally:
        state.ready = True


def _internal_error() -> Outcome:
    return Outcome(internal_error_reply())


async def _rekognition(state: _State, request: Request) -> Response:
    started = time.perf_counter()
    headers = _headers(request.scope["headers"])
    operation = state.handler.operation(headers.get("x-amz-target"))
    state.metrics.begin()
    outcome, bytes_in, close = _internal_error(), 0, True
    try:
        outcome, bytes_in, close = await _answer(state, request, headers, operation)
        data = outcome.reply.encode()
        if outcome.operation == "StartStreamProcessor" and outcome.reply.status == 200:
            await asyncio.get_running_loop().run_in_executor(state.light, state.streams.ensure_started)
    except Exception:  # a bug in this layer: an AWS error all the same, never a traceback on the wire
        logging.getLogger("faceprint.server").exception("internal error in %s", operation)
        outcome, bytes_in, close = _internal_error(), 0, True
        data = outcome.reply.encode()
    finally:  # the in-flight gauge comes down whatever happened, cancellation included
        outcome.operation = outcome.operation or operation
        seconds = time.perf_counter() - started
        state.metrics.end(outcome.operation or "unknown", outcome.reply.status, outcome.reply.error_code, seconds)
    return _respond(state, request, outcome, data, close, seconds, bytes_in)


def _respond(state: _State, request: Request, outcome: Outcome, data: bytes, close: bool, seconds: float,
             bytes_in: int, extra: dict[str, str] | None = None) -> Response:
    """The HTTP answer, logged."""
    request_id = str(uuid.uuid4())
    headers = (response_headers(request_id, len(data)) | ({"connection": "close"} if close else {}) | (extra or {})
               | outcome.reply.headers)  # X-Faceprint-Audit-Id, X-Faceprint-Probe-*
    _log(state, request, request_id, outcome, seconds, bytes_in, len(data))
    return Response(data, status_code=outcome.reply.status, headers=headers)


def _not_routed(state: _State, request: Request, exc: Exception) -> Response:
    """A path or method outside the routes: an AWS JSON error, counted and logged like the others."""
    status = getattr(exc, "status_code", 404)
    what = "method" if status == 405 else "path"
    outcome = Outcome(Reply(status, error_body("UnknownOperationException",
                                               f"No operation at {request.method} {request.url.path[:200]} "
                                               f"(unknown {what}); Rekognition requests are POST / with "
                                               "X-Amz-Target.")), operation="unknown")
    state.metrics.begin()
    state.metrics.end("unknown", status, "UnknownOperationException", 0.0)
    extra = dict(getattr(exc, "headers", None) or {})  # Allow, for a 405
    return _respond(state, request, outcome, outcome.reply.encode(), False, 0.0, 0, extra)


async def _answer(state: _State, request: Request, headers: dict[str, str], operation: str | None
                  ) -> tuple[Outcome, int, bool]:
    """The outcome of one request, the body's size and whether to close the connection.

    A request refused from its headers (no usable key) is answered without holding its body. The
    others read theirs (for at most ``body_timeout`` seconds, within ``body_budget``), then take
    one of the ``max_in_flight`` places to run, or are throttled."""
    limit = state.limits.get(operation or "", BASE_BODY_BYTES)
    if state.handler.keys is not None:
        refused = await asyncio.get_running_loop().run_in_executor(state.light, state.handler.refuse_early, headers)
        if refused is not None:
            return refused, 0, await _discard(request, headers, limit, state)
    body = await _receive(state, request, headers, operation, limit)
    if isinstance(body, tuple):
        return body
    if state.held >= state.options.max_in_flight:
        error = ThrottlingException(f"faceprint is handling {state.options.max_in_flight} requests; try again.")
        return Outcome(error_reply(error, state.handler.model)), len(body), False
    state.held += 1
    try:
        raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
        http = HttpRequest(request.method, raw_path.decode("latin-1"),
                           request.scope["query_string"].decode("latin-1"), headers, body)
        return await _run(state, http, operation), len(body), False
    finally:
        state.held -= 1


async def _receive(state: _State, request: Request, headers: dict[str, str], operation: str | None,
                   limit: int) -> bytes | tuple[Outcome, int, bool]:
    """The request's body, or the answer (outcome, bytes read, close) if it cannot be had."""
    try:
        async with asyncio.timeout(state.options.body_timeout):
            return await _read_body(state, request, headers, limit)
    except _OverBudget:
        error = ThrottlingException(f"faceprint is receiving {state.options.body_budget} bytes of request bodies; "
                                    "try again.")
        return Outcome(error_reply(error, state.handler.model)), 0, True
    except _TooLarge as exc:
        close = await _within(state.options.body_timeout, _drain(request, exc.size))
        return Outcome(Reply(413, _too_large(operation, exc.size, limit, state).to_dict())), 0, close
    except ClientDisconnect:  # nobody to answer; 499 in the log, as nginx writes it
        return Outcome(Reply(499, error_body("ClientDisconnected", "The client went away."))), 0, True
    except TimeoutError:
        error = RequestTimeoutException(f"The request body did not arrive within {state.options.body_timeout:g} "
                                        "seconds.")
        return Outcome(error_reply(error, state.handler.model)), 0, True


async def _run(state: _State, http: HttpRequest, operation: str | None) -> Outcome:
    """The handler's outcome. An image operation's signature is verified on the light pool first,
    so that only signed requests queue for inference."""
    loop = asyncio.get_running_loop()
    pool = state.pool(operation)
    signed = None
    if pool is state.inference and state.handler.keys is not None:
        checked = await loop.run_in_executor(state.light, state.handler.authenticate, http)
        if isinstance(checked, Outcome):
            return checked
        signed = checked
    return await loop.run_in_executor(pool, state.handler.handle, http, signed)


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case names (as ASGI gives them); a repeated header's values joined with ','."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]},{text}" if key in headers else text
    return headers


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


class _OverBudget(Exception):
    """The bodies arriving hold ``body_budget`` bytes already."""


def _declared_length(headers: dict[str, str]) -> int | None:
    declared = headers.get("content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


async def _read_body(state: _State, request: Request, headers: dict[str, str], limit: int) -> bytes:
    """The body, its bytes counted in ``state.receiving`` while it arrives."""
    declared = _declared_length(headers)
    if declared is not None and declared > limit:
        raise _TooLarge(declared)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            if size + len(chunk) > limit:
                raise _TooLarge(size + len(chunk))
            if state.receiving + len(chunk) > state.options.body_budget:
                raise _OverBudget
            state.receiving += len(chunk)
            size += len(chunk)
            chunks.append(chunk)
    finally:
        state.receiving -= size
    return b"".join(chunks)


async def _discard(request: Request, headers: dict[str, str], limit: int, state: _State) -> bool:
    """Read and drop the body of a request answered without it (refused, throttled), so that
    the client sees the answer rather than a reset connection; True if the connection must be
    closed instead (a body over the operation's cap, or one that does not arrive in time)."""
    declared = _declared_length(headers)
    if declared is not None and declared > limit:
        return True
    return await _within(state.options.body_timeout, _drain(request, 0))


async def _within(seconds: float, drain: Coroutine[Any, Any, bool]) -> bool:
    """``drain``'s answer, or True (close the connection) if it takes over ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            return await drain
    except TimeoutError:
        return True


async def _drain(request: Request, size: int) -> bool:
    """Read and drop the rest of an oversized body (up to DRAIN_LIMIT); True if the connection
    must be closed because it was not read to the end."""
    if size > DRAIN_LIMIT:
        return True
    seen = 0
    with contextlib.suppress(ClientDisconnect, RuntimeError):
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > DRAIN_LIMIT:
                return True
    return False


def _too_large(operation: str | None, size: int, limit: int, state: _State) -> FaceprintError:
    if operation in state.image_ops:
        mb = state.handler.fp.limits.max_bytes
        return ImageTooLargeException(f"The request body is {size} bytes, over the {limit} bytes that {operation} "
                                      f"accepts: image bytes may be at most {mb} bytes (use S3Object for larger "
                                      "images).")
    return RequestTooLargeException(f"The request body is {size} bytes, over the {limit} bytes that "
                                    f"{operation or 'this request'} accepts.")


def _log(state: _State, request: Request, request_id: str, outcome: Outcome, seconds: float,
         bytes_in: int, bytes_out: int) -> None:
    if not state.access.isEnabledFor(logging.INFO):
        return
    client = request.client
    record: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestId": request_id,
        "remote": client.host if client else None,
        "keyId": outcome.key_id,
        "operation": outcome.operation,
        "collectionId": outcome.collection_id,
        "status": outcome.reply.status,
        "error": outcome.reply.error_code,
        "durationMs": round(seconds * 1000, 2),
        "bytesIn": bytes_in,
        "bytesOut": bytes_out,
        "pid": os.getpid(),
    }
    state.access.info(json.dumps(record, separators=(",", ":")))

