"""``GET /stream-processors/{name}/events``: a stream processor's records and alerts as Server-Sent Events.

The host writes every record and alert of a processor to the store's events ring
(``HOME/streams/processors.db``, the last 1,000 per processor); this endpoint follows it:

    id: 42
    event: record            (or: alert)
    data: {"InputInformation": ...}

A client resumes after the last event it saw with the ``Last-Event-ID`` header (browsers' EventSource
sends it when it reconnects) or ``?after=SEQ``; without either it gets the events from now on
(``?after=0``: every event the ring still holds). A comment line (``: heartbeat``) comes every 15 s
when nothing else does, so that proxies keep the connection and a client that went away is noticed.

A request is authorised by a SigV4-presigned query (``X-Amz-Algorithm``, ``X-Amz-Credential``,
``X-Amz-Date``, ``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature``, as botocore's
``SigV4QueryAuth`` makes them for the service ``rekognition``) of a key whose policy allows
``DescribeStreamProcessor`` on the processor's collection; a ``--no-auth`` server needs none. An
unknown processor answers 404 with ``ResourceNotFoundException``; past ``max_clients`` streams in
this process, 503 with ``ThrottlingException``. The store is read on a pool of its own (never on
the event loop, never on the pools that answer Rekognition requests): one poller per followed
processor looks for new events every 0.1 s and wakes its streams, which then read what they have not
sent. A stream ends when its client goes away, when its processor is deleted, and when the server
shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from faceprint.errors import FaceprintError, InvalidParameterException, ResourceNotFoundException
from faceprint.server.protocol import Reply, ThrottlingException, error_reply, internal_error_reply

if TYPE_CHECKING:
    from faceprint.server.handler import RekognitionHandler

log = logging.getLogger("faceprint.server")
OPERATION = "DescribeStreamProcessor"
"""What a key's policy must allow (on the processor's collection) to follow its events."""
STOPPING = "faceprint.stopping"
"""The lifespan state's key of the event the connection guard sets when shutdown begins."""

_STATUS = {ResourceNotFoundException.code: 404, ThrottlingException.code: 503}
"""HTTP statuses of this endpoint that differ from Rekognition's (a GET of an unknown resource is a 404)."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Answered = Callable[[int, str | None, str | None], None]


@dataclass(frozen=True)
class EventSettings:
    max_clients: int = 32
    """Streams open at once in one process; more answer 503 ``ThrottlingException``."""
    heartbeat: float = 15.0
    """Seconds between comment lines when there is nothing to send."""
    poll: float = 0.1
    """Seconds between two looks at a followed processor's last event (one look for all its streams)."""
    batch: int = 200
    """Events read from the store at once."""


class EventStreams:
    """The SSE endpoint of one app process: its clients, its reading pool, its shutdown."""

    def __init__(self, handler: RekognitionHandler, settings: EventSettings | None = None) -> None:
        self.handler = handler
        self.settings = settings or EventSettings()
        self.clients = 0
        """Streams open now (the event loop's alone)."""
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="fp-events")
        self.stopping = asyncio.Event()
        self.followers: dict[str, _Follower] = {}
        """Processors followed now, by name (the event loop's alone)."""

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, answered: Answered) -> None:
        """Answer one request. ``answered(status, error code, key id)`` is called once the answer is
        decided (before the events flow), for the access log and the request metrics."""
        name = scope["path_params"]["name"]
        loop = asyncio.get_running_loop()
        key_id = None
        try:
            self._check_room()  # before the work of admission, and again after it
            after, key_id = await loop.run_in_executor(self.pool, self._admit, scope, name)
            self._check_room()
        except Exception as exc:
            if isinstance(exc, FaceprintError):  # a server fault's message is logged, not answered
                reply = error_reply(exc, self.handler.model)
                reply = Reply(_STATUS.get(exc.code, reply.status), reply.body)
            else:  # a bug, or the store failed: an AWS error all the same, never a traceback
                log.exception("admitting an events stream of %s failed", name)
                reply = internal_error_reply()
            answered(reply.status, reply.error_code, key_id)
            await _json(send, reply.status, reply.body)
            return
        self.clients += 1
        answered(200, None, key_id)
        try:
            await self._stream(name, after, receive, send)
        finally:
            self.clients -= 1

    def _check_room(self) -> None:
        if self.clients >= self.settings.max_clients:
            raise ThrottlingException(f"This server process streams events to {self.settings.max_clients} clients "
                                      "already; try again later.")

    # -- admission (on the pool) ---------------------------------------------------------------------

    def _admit(self, scope: Scope, name: str) -> tuple[int, str | None]:
        """The sequence number to stream after and the key that signed, or a FaceprintError."""
        query = scope.get("query_string", b"").decode("latin-1")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        key_id = self._authorised(scope, query, headers, name)
        streams = self.handler.fp.streams
        streams.describe_stream_processor(name)  # ResourceNotFoundException if there is none
        after = _resume_point(query, headers)
        return (streams.store.last_seq(name) if after is None else after), key_id

    def _authorised(self, scope: Scope, query: str, headers: dict[str, str], name: str) -> str | None:
        keys = self.handler.keys
        if keys is None:
            return None
        from faceprint.server.auth import authorize, verify_presigned

        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        key = verify_presigned(scope["method"], raw_path, query, headers, keys)
        self.handler.limiter.check(key.access_key_id, key.rate_limit)
        collection = self.handler.fp.streams.collection_of(name) if key.policy.collections is not None else None
        authorize(key, OPERATION, collection)
        return key.access_key_id

    # -- streaming -----------------------------------------------------------------------------------

    async def _stream(self, name: str, after: int, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no")]})
            await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
            await self._follow(name, after, gone, send)
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away while we wrote
            pass
        finally:
            watcher.cancel()

    async def _follow(self, name: str, after: int, gone: asyncio.Event, send: Send) -> None:
        """Send the events after ``after`` until the client goes, the processor is deleted or the server stops."""
        loop = asyncio.get_running_loop()
        follower = self._join(name)
        quiet_since = loop.time()
        try:
            while not (gone.is_set() or self.stopping.is_set() or follower.ended):
                tick = follower.tick  # taken first: a notification from now on wakes the wait below
                if follower.latest > after:
                    try:
                        events = await loop.run_in_executor(self.pool, self._read, name, after)
                    except Exception:  # the store failed, or this process is closing: the client resumes elsewhere
                        log.exception("reading the events of stream processor %s failed", name)
                        return
                    if events:
                        after = events[-1][0]
                        await send({"type": "http.response.body", "body": b"".join(_event(*e) for e in events),
                                    "more_body": True})
                        quiet_since = loop.time()
                        continue
                    after = follower.latest  # trimmed from the ring meanwhile
                if loop.time() - quiet_since >= self.settings.heartbeat:
                    await send({"type": "http.response.body", "body": b": heartbeat\n\n", "more_body": True})
                    quiet_since = loop.time()
                wait = self.settings.heartbeat - (loop.time() - quiet_since)
                await _first(max(wait, 0.0), tick, gone, self.stopping)
        finally:
            self._leave(name, follower)

    def _join(self, name: str) -> _Follower:
        follower = self.followers.get(name)
        if follower is None:
            follower = self.followers[name] = _Follower()
            follower.task = asyncio.create_task(self._poll(name, follower))
        follower.users += 1
        return follower

    def _leave(self, name: str, follower: _Follower) -> None:
        follower.users -= 1
        if follower.users == 0 and self.followers.get(name) is follower:
            del self.followers[name]
            if follower.task is not None:
                follower.task.cancel()

    async def _poll(self, name: str, follower: _Follower) -> None:
        """Watch one processor's events for every stream of this process that follows it: its last
        event's number every ``poll`` seconds, whether it still exists every second."""
        loop = asyncio.get_running_loop()
        checks = max(1, round(1.0 / self.settings.poll))
        polls = 0
        while True:
            try:
                latest = await loop.run_in_executor(self.pool, self._store().last_seq, name)
                gone = polls % checks == 0 and await loop.run_in_executor(self.pool, self._deleted, name)
            except Exception:  # the store failed, or this process is closing: the clients resume elsewhere
                log.exception("watching the events of stream processor %s failed", name)
                gone = True
                latest = follower.latest
            polls += 1
            if latest > follower.latest or gone:
                follower.latest, follower.ended = latest, gone
                follower.notify()
            if gone:
                return
            await asyncio.sleep(self.settings.poll)

    def _store(self) -> Any:
        return self.handler.fp.streams.store

    def _deleted(self, name: str) -> bool:
        return self._store().get(name) is None

    def _read(self, name: str, after: int) -> list[tuple[int, str, str]]:
        return self._store().events_after(name, after, self.settings.batch)


class _Follower:
    """What the streams of one processor share: its last event's number, set by one poller (the event
    loop's alone), and the event that wakes them when it grows."""

    def __init__(self) -> None:
        self.latest = 0
        self.ended = False
        """The processor was deleted (or its store failed): its streams end."""
        self.users = 0
        self.task: asyncio.Task[None] | None = None
        self.tick = asyncio.Event()

    def notify(self) -> None:
        tick, self.tick = self.tick, asyncio.Event()
        tick.set()


def _resume_point(query: str, headers: dict[str, str]) -> int | None:
    """``?after=SEQ`` or the ``Last-Event-ID`` header (the query wins); None: from now on."""
    values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "after"]
    if len(values) > 1:
        raise InvalidParameterException("Give ?after= once.")
    text = values[0] if values else headers.get("last-event-id")
    if text is None or (not values and not text.strip()):
        return None
    text = text.strip()
    if not text.isdigit() or len(text) > 18:
        raise InvalidParameterException("?after= and Last-Event-ID must be an event id: a whole number of 0 or more.")
    return int(text)


def _event(seq: int, kind: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"id: {seq}\nevent: {kind}\n{lines}\n".encode()


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


async def _first(seconds: float, *events: asyncio.Event) -> None:
    """Sleep ``seconds``, or less if one of ``events`` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/x-amz-json-1.1"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
