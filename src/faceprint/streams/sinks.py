"""Sinks: where a stream processor's records go.

A record is Rekognition's Kinesis frame record (a dict); an alert is faceprint's own record of a
track's first match. Each sink has a bounded queue (:data:`QUEUE_SIZE`) drained by a thread of its
own (:class:`faceprint.streams.delivery.Lane`), so ``put`` returns at once whatever the network or
the disk does: when the queue is full the OLDEST record is dropped and counted. Deliveries are
retried with back-off; what is given up is counted as failed. ``close`` delivers what it can within
its timeout and never blocks longer: what is left is counted as dropped and the stats are final.

- :class:`FileSink`: JSON lines (one record a line), rotated at ``max_bytes`` keeping ``keep`` old
  files ``PATH.1`` (newest) .. ``PATH.N``, files 0600, fsync at most once a second (and when idle).
- :class:`WebhookSink`: one POST (``application/json``) per record or alert, 2xx = delivered.
- :class:`KinesisSink`: boto3 ``put_records`` (PartitionKey = processor name), so Kinesis consumers
  read exactly Rekognition's records; failed records (``FailedRecordCount``) retried.
- :class:`EventsSink`: the store's event ring, read by the server's Server-Sent Events.

Alerts go only to webhook and events sinks, never into the Kinesis-format ones (kinesis, file).
A sink set to ``matches_only`` ignores frame records without a match. Frames are kept only by a
sink with ``snapshots``: the file sink writes a matched record's frame as JPEG into
``PATH.snapshots/`` (bounded in bytes like the log), the webhook sink adds it to alerts.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

from faceprint.errors import InvalidParameterException
from faceprint.streams.config import redact, redact_all
from faceprint.streams.delivery import (
    ATTEMPTS,
    BACKOFF,
    QUEUE_SIZE,
    Item,
    Lane,
    SinkStats,
    compact,
    describe,
    take_snapshot,
)
from faceprint.streams.filelog import KEEP, MAX_BYTES, RotatingLog, SnapshotFolder
from faceprint.streams.records import has_match
from faceprint.streams.scrub import url_secrets

if TYPE_CHECKING:
    from faceprint.streams.config import SinkSpec
    from faceprint.streams.store import ProcessorStore

__all__ = ["EventsSink", "FileSink", "KinesisSink", "QueuedSink", "Sink", "SinkStats", "WebhookSink", "open_sinks"]

TIMEOUT = 5.0
"""Seconds one HTTP request (webhook POST, Kinesis call) may take."""
KINESIS_BATCH = 500
KINESIS_BATCH_BYTES = 5 << 20
KINESIS_RECORD_BYTES = 1 << 20
"""Kinesis's limits: records per put_records, bytes per call, bytes per record (data + key)."""
EVENTS_BATCH = 200


class Sink(Protocol):
    """What a processor's run hands records to. ``label`` is the sink's redacted name (metrics,
    describe). ``put`` never blocks for long; ``snapshot()`` gives the frame's JPEG and is called
    only by a sink kept with snapshots (on the caller's thread). ``close`` is bounded by ``timeout``."""

    label: str

    def put(self, record: dict[str, Any], *, alert: bool = False,
            snapshot: Callable[[], bytes] | None = None) -> None: ...

    def close(self, timeout: float = 5.0) -> None: ...

    @property
    def stats(self) -> SinkStats: ...


class QueuedSink:
    """What every sink shares: its redacted ``label`` and its :class:`Lane` (set by the sink's
    constructor), which ``close`` and ``stats`` answer for."""

    label: str
    _lane: Lane

    def close(self, timeout: float = 5.0) -> None:
        self._lane.close(timeout)

    @property
    def stats(self) -> SinkStats:
        return self._lane.stats


class FileSink(QueuedSink):
    """Frame records as JSON lines in a rotated log (see :class:`RotatingLog`)."""

    def __init__(self, spec: SinkSpec, *, max_bytes: int = MAX_BYTES, keep: int = KEEP,
                 capacity: int = QUEUE_SIZE, attempts: int = ATTEMPTS, backoff: float = BACKOFF) -> None:
        self.label = spec.display()
        self.matches_only, self.snapshots = spec.matches_only, spec.snapshots
        path = Path(spec.target)
        self.log = RotatingLog(path, max_bytes, keep)
        self.pictures = SnapshotFolder(path.with_name(path.name + ".snapshots"), max_bytes * (keep + 1))
        self._lane = Lane(f"faceprint-sink {self.label}", self._send, capacity=capacity, batch=200, attempts=attempts,
                          backoff=backoff, tick=self.log.sync, finish=self.log.close)

    def put(self, record: dict[str, Any], *, alert: bool = False,
            snapshot: Callable[[], bytes] | None = None) -> None:
        if alert:
            return
        matched = has_match(record)
        if self.matches_only and not matched:
            return
        jpeg = take_snapshot(snapshot, self._lane) if self.snapshots and matched else None
        self._lane.offer(Item(record, snapshot=jpeg))

    def _send(self, items: list[Item]) -> list[Item]:
        self.log.follow()
        for done, item in enumerate(items):
            try:
                self.log.write(compact(item.record) + b"\n")
            except OSError as exc:
                self.log.drop()
                self._lane.count(error=describe(exc))
                return items[done:]  # the lines before were written
            if item.snapshot is not None:
                try:
                    self.pictures.save(item.record, item.snapshot)
                except OSError as exc:
                    self._lane.count(error=f"snapshot: {describe(exc)}")
        try:
            self.log.sync()
        except OSError as exc:  # the lines are written (in the page cache): not sent again
            self.log.drop()
            self._lane.count(error=f"fsync: {describe(exc)}")
        return []


# --- webhook ------------------------------------------------------------------------------------


class Poster:
    """POSTs to one URL over a kept-alive connection (http or https, no redirects followed);
    ``user:password@`` in the URL is sent as HTTP Basic authorization."""

    ANSWER_BYTES = 1 << 16
    """Bytes of an answer read (to keep the connection); a longer answer closes it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.parts = parts
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.headers = {"Content-Type": "application/json", "User-Agent": "faceprint-streams"}
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def post(self, body: bytes, timeout: float, headers: dict[str, str] | None = None) -> int:
        """The answer's status; raises ``OSError`` or ``http.client.HTTPException`` when none came."""
        conn = self._connection(timeout)
        try:
            conn.request("POST", self.path, body=body, headers=self.headers | (headers or {}))
            answer = conn.getresponse()
            answer.read(self.ANSWER_BYTES)
        except BaseException:
            self.reset()
            raise
        if answer.will_close or not answer.isclosed():
            self.reset()
        return answer.status

    def reset(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def abort(self) -> None:
        """Unblock a request in flight on another thread (its socket is shut down)."""
        with self._lock:
            sock = self._conn.sock if self._conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        with self._lock:
            if self._conn is None:
                host, port = self.parts.hostname or "", self.parts.port
                if self.parts.scheme == "https":
                    import ssl

                    self._conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                                             context=ssl.create_default_context())
                else:
                    self._conn = http.client.HTTPConnection(host, port, timeout=timeout)
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
            return self._conn


class WebhookSink(QueuedSink):
    """Each frame record and alert POSTed as JSON (header ``X-Faceprint-Record: frame|alert``);
    with snapshots, an alert gets ``"Snapshot": {"Format": "jpeg", "Bytes": BASE64}`` beside
    ``"Alert"``."""

    def __init__(self, spec: SinkSpec, *, capacity: int = QUEUE_SIZE, attempts: int = ATTEMPTS,
                 backoff: float = BACKOFF, timeout: float = TIMEOUT) -> None:
        self.label = spec.display()
        self.matches_only, self.snapshots, self.timeout = spec.matches_only, spec.snapshots, timeout
        self.poster = Poster(spec.target)
        self._lane = Lane(f"faceprint-sink {self.label}", self._send, capacity=capacity, attempts=attempts,
                          backoff=backoff, finish=self.poster.reset, abort=self.poster.abort,
                          secrets=url_secrets(spec.target, redact_all(spec.target), path=True))  # path: a secret?

    def put(self, record: dict[str, Any], *, alert: bool = False,
            snapshot: Callable[[], bytes] | None = None) -> None:
        if not alert and self.matches_only and not has_match(record):
            return
        jpeg = take_snapshot(snapshot, self._lane) if self.snapshots and alert else None
        self._lane.offer(Item(record, alert, jpeg))

    def _send(self, items: list[Item]) -> list[Item]:
        left: list[Item] = []
        for item in items:
            body = item.record
            if item.snapshot is not None:
                body = body | {"Snapshot": {"Format": "jpeg", "Bytes": base64.b64encode(item.snapshot).decode()}}
            timeout = min(self.timeout, max(0.05, self._lane.remaining()))
            kind = "alert" if item.alert else "frame"
            status = self.poster.post(compact(body), timeout, {"X-Faceprint-Record": kind})
            if not 200 <= status < 300:
                self._lane.count(error=f"HTTP {status} from the webhook")
                left.append(item)
        return left


# --- Kinesis ------------------------------------------------------------------------------------


class KinesisSink(QueuedSink):
    """Frame records put on a Kinesis data stream with boto3 ``put_records`` (endpoint ``aws`` is
    boto3's own for the region; credentials from boto3's usual chain), PartitionKey = processor."""

    def __init__(self, spec: SinkSpec, *, processor: str, region: str, client: Any = None,
                 capacity: int = QUEUE_SIZE, attempts: int = ATTEMPTS, backoff: float = BACKOFF,
                 timeout: float = TIMEOUT) -> None:
        self.label = spec.display()
        self.matches_only, self.processor, self.region, self.timeout = spec.matches_only, processor, region, timeout
        self.endpoint = None if spec.target == "aws" else spec.target
        self.stream = spec.stream or ""
        self._client = client
        secrets = url_secrets(self.endpoint, redact(self.endpoint)) if self.endpoint else []
        self._lane = Lane(f"faceprint-sink {self.label}", self._send, capacity=capacity, batch=KINESIS_BATCH,
                          attempts=attempts, backoff=backoff, secrets=secrets)

    def put(self, record: dict[str, Any], *, alert: bool = False,
            snapshot: Callable[[], bytes] | None = None) -> None:
        if alert or (self.matches_only and not has_match(record)):
            return
        self._lane.offer(Item(record))

    def _send(self, items: list[Item]) -> list[Item]:
        client = self._connect()
        key = self.processor.encode()
        left: list[Item] = []
        chunks = self._chunks(items, len(key))
        for number, chunk in enumerate(chunks):
            entries = [{"Data": data, "PartitionKey": self.processor} for _, data in chunk]
            try:
                answer = client.put_records(StreamName=self.stream, Records=entries)
            except Exception as exc:  # noqa: BLE001 (endpoint down, throttled, no such stream: retried)
                self._lane.count(error=describe(exc))
                return left + [item for rest in chunks[number:] for item, _ in rest]
            results = answer.get("Records") or []
            missing = {"ErrorCode": "Missing", "ErrorMessage": "no result for this record"}
            failed = [(item, r) for n, (item, _) in enumerate(chunk)
                      if (r := results[n] if n < len(results) else missing).get("ErrorCode")]
            if failed:
                r = failed[0][1]
                self._lane.count(error=f"{answer.get('FailedRecordCount', len(failed))} records failed: "
                                       f"{r.get('ErrorCode')}: {r.get('ErrorMessage', '')}")
                left += [item for item, _ in failed]
        return left

    def _chunks(self, items: list[Item], key_bytes: int) -> list[list[tuple[Item, bytes]]]:
        """Items as put_records calls within Kinesis's limits; a record too big for Kinesis is failed."""
        chunks: list[list[tuple[Item, bytes]]] = [[]]
        size = 0
        for item in items:
            data = compact(item.record)
            if len(data) + key_bytes > KINESIS_RECORD_BYTES:
                self._lane.reject(1, f"a record of {len(data)} bytes is over Kinesis's 1 MiB")
                continue
            if len(chunks[-1]) == KINESIS_BATCH or size + len(data) + key_bytes > KINESIS_BATCH_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append((item, data))
            size += len(data) + key_bytes
        return [chunk for chunk in chunks if chunk]

    def _connect(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(connect_timeout=self.timeout, read_timeout=self.timeout,
                            retries={"total_max_attempts": 1})
            self._client = boto3.session.Session().client("kinesis", region_name=self.region,
                                                          endpoint_url=self.endpoint, config=config)
        return self._client


# --- Server-Sent Events -------------------------------------------------------------------------


class EventsSink(QueuedSink):
    """Frame records and alerts into the store's event ring (kinds ``record`` and ``alert``), which
    the server's ``GET /stream-processors/{name}/events`` streams."""

    label = "events"

    def __init__(self, store: ProcessorStore, processor: str, *, capacity: int = QUEUE_SIZE,
                 attempts: int = ATTEMPTS, backoff: float = BACKOFF) -> None:
        self.store, self.processor = store, processor
        self._lane = Lane(f"faceprint-sink events of {processor}", self._send, capacity=capacity, batch=EVENTS_BATCH,
                          attempts=attempts, backoff=backoff)

    def put(self, record: dict[str, Any], *, alert: bool = False,
            snapshot: Callable[[], bytes] | None = None) -> None:
        self._lane.offer(Item(record, alert))

    def _send(self, items: list[Item]) -> list[Item]:
        events = [("alert" if item.alert else "record", compact(item.record).decode()) for item in items]
        self.store.add_events(self.processor, events)
        return []


def open_sinks(specs: list[SinkSpec], *, processor: str, region: str, store: ProcessorStore) -> list[Sink]:
    """A data stream's sinks, then one :class:`EventsSink` (always). Nothing is opened or started
    before the first record."""
    sinks: list[Sink] = []
    for spec in specs:
        if spec.kind == "file":
            sinks.append(FileSink(spec))
        elif spec.kind == "webhook":
            sinks.append(WebhookSink(spec))
        elif spec.kind == "kinesis":
            sinks.append(KinesisSink(spec, processor=processor, region=region))
        else:
            raise InvalidParameterException(f"Unknown sink kind {spec.kind!r}: file, webhook or kinesis.")
    sinks.append(EventsSink(store, processor))
    return sinks
