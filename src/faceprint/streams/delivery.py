"""The delivery machinery every sink shares: a bounded queue drained by a thread of its own, with
retries and back-off, and its counters (:class:`SinkStats`).

``put`` never waits on the network or the disk: a full queue drops its OLDEST item and counts it.
``close(timeout)`` delivers what it can within ``timeout`` and never blocks longer: what is left is
counted as dropped and the counters are final.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faceprint.streams.scrub import Pairs, scrub

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
"""Records a sink holds before it drops the oldest."""
ATTEMPTS = 5
"""Deliveries tried per record or batch (the first and 4 retries)."""
BACKOFF = 0.5
"""Seconds before the first retry; doubled before each next one."""
TICK = 1.0
"""An idle lane's thread wakes this often (the file sink fsyncs then)."""
BACKLOG = 8
"""Items queued past which alerts go ahead of frame records (an alert is due within a second)."""
SNAPSHOT_BYTES = 64 << 20
"""JPEG bytes a lane holds queued at most; a record queued past that goes without its snapshot."""


@dataclass
class SinkStats:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class Item:
    """One queued record: an alert or a frame record, with its frame's JPEG when a sink asked."""
    record: dict[str, Any]
    alert: bool = False
    snapshot: bytes | None = None


ERROR_CHARS = 300
"""Characters of an error text kept (after its secrets were scrubbed: a cut first could leave part of one)."""


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:64 * ERROR_CHARS]  # bounded, and long enough to scrub whole


def compact(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


class Lane:
    """A bounded queue drained by a thread of its own, with retries: what every sink shares.

    ``send(items)`` delivers a batch and returns the items still to deliver (raising = all of
    them); the lane retries those ``attempts`` times with back-off, and counts. The thread starts
    with the first item. Items go in the order they came, except behind a backlog (more than
    :data:`BACKLOG` queued) where alerts go ahead of the frame records; a full queue drops its
    oldest frame record (an alert only when it holds nothing else). ``tick`` runs when the lane has
    been idle for :data:`TICK` seconds and ``finish`` when its thread ends; ``abort`` unblocks a
    delivery in flight when :meth:`close` runs out of time. Error texts (logged, in the stats) have
    the ``secrets`` pairs scrubbed out (:func:`faceprint.streams.scrub.scrub`: a library may quote the
    sink's URL whole)."""

    def __init__(self, name: str, send: Callable[[list[Item]], list[Item]], *, capacity: int = QUEUE_SIZE,
                 batch: int = 1, attempts: int = ATTEMPTS, backoff: float = BACKOFF,
                 tick: Callable[[], None] | None = None, finish: Callable[[], None] | None = None,
                 abort: Callable[[], None] | None = None, secrets: Pairs | None = None) -> None:
        self.name, self.send, self.capacity, self.batch = name, send, max(1, capacity), max(1, batch)
        self.attempts, self.backoff, self.tick, self.finish = max(1, attempts), backoff, tick, finish
        self.abort, self.secrets = abort, list(secrets or [])
        self._cond = threading.Condition()
        self._items: deque[tuple[int, Item]] = deque()
        self._alerts: deque[tuple[int, Item]] = deque()
        self._arrivals = 0
        self._snapshot_bytes = 0
        self._stats = SinkStats()
        self._inflight = 0
        self._rejected = 0
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._abandoned = threading.Event()
        self._deadline = float("inf")

    # --- the caller's side --------------------------------------------------------------------

    def offer(self, item: Item) -> None:
        """Queue ``item``, dropping the oldest when full; never blocks for long."""
        with self._cond:
            if self._closing.is_set():
                self._stats.dropped += 1
                return
            if len(self._items) + len(self._alerts) >= self.capacity:
                self._take(self._items if self._items else self._alerts)
                self._stats.dropped += 1
            if item.snapshot is not None:
                if self._snapshot_bytes + len(item.snapshot) > SNAPSHOT_BYTES:
                    item = dataclasses.replace(item, snapshot=None)
                    self._stats.last_error = "snapshot left out: too many queued"
                else:
                    self._snapshot_bytes += len(item.snapshot)
            self._arrivals += 1
            (self._alerts if item.alert else self._items).append((self._arrivals, item))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def close(self, timeout: float) -> None:
        """Deliver what can be within ``timeout`` seconds; then count what is left as dropped, call
        ``abort`` (to unblock a request in flight) and return: the stats are final."""
        with self._cond:
            if self._closing.is_set():
                thread = None
            else:
                self._deadline = time.monotonic() + max(0.0, timeout)
                self._closing.set()
                self._cond.notify_all()
                thread = self._thread
        if thread is None:
            return
        thread.join(max(0.0, self._deadline - time.monotonic()))
        if thread.is_alive():
            with self._cond:
                self._abandoned.set()
                self._stats.dropped += self._clear() + self._inflight
            if self.abort is not None:
                with contextlib.suppress(Exception):
                    self.abort()

    @property
    def stats(self) -> SinkStats:
        with self._cond:
            return dataclasses.replace(self._stats)

    def count(self, *, delivered: int = 0, failed: int = 0, dropped: int = 0, retries: int = 0,
              error: str | None = None, inflight: int | None = None) -> None:
        """Add to the stats (nothing once the lane was abandoned at close: its stats are final);
        ``inflight``: the items of the batch in hand still to deliver."""
        with self._cond:
            if self._abandoned.is_set():
                return
            if inflight is not None:
                self._inflight = inflight
            s = self._stats
            s.delivered, s.failed, s.dropped, s.retries = (s.delivered + delivered, s.failed + failed,
                                                           s.dropped + dropped, s.retries + retries)
            if error is not None:
                error = scrub(error[:64 * ERROR_CHARS], self.secrets)[:ERROR_CHARS]
                if error != s.last_error:
                    log.warning("%s: %s", self.name, error)
                s.last_error = error

    def reject(self, count: int, error: str) -> None:
        """Called by ``send``: ``count`` items of its batch can never be delivered (failed at once,
        not retried, not among those it returns)."""
        self._rejected += count
        self.count(failed=count, error=error)

    def remaining(self) -> float:
        """Seconds left before the close deadline (infinite while the sink is open)."""
        return self._deadline - time.monotonic()

    # --- the lane's thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while (batch := self._next()) is not None:
                if batch:
                    self._deliver(batch)
                elif self.tick is not None:
                    self._guarded(self.tick)
        finally:
            if self.finish is not None:
                self._guarded(self.finish)

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 (counted and logged: a sink's thread must not die)
            self.count(error=describe(exc))

    def _next(self) -> list[Item] | None:
        """The next batch; [] after an idle tick; None once closing found nothing left (or no time)."""
        with self._cond:
            self._inflight = 0
            if not self._items and not self._alerts and not self._closing.is_set():
                self._cond.wait(TICK)
            if self._abandoned.is_set():
                return None
            if (self._items or self._alerts) and self.remaining() > 0:
                batch = self._batch()
                self._inflight = len(batch)
                return batch
            if self._closing.is_set():
                self._stats.dropped += self._clear()
                return None
            return []

    def _batch(self) -> list[Item]:
        """Up to ``batch`` items in arrival order, alerts first behind a backlog (under the lock)."""
        backlog = len(self._items) + len(self._alerts) > max(BACKLOG, self.batch)
        batch: list[Item] = []
        while len(batch) < self.batch and (self._items or self._alerts):
            alert_first = bool(self._alerts) and (backlog or not self._items or self._alerts[0][0] < self._items[0][0])
            batch.append(self._take(self._alerts if alert_first else self._items))
        return batch

    def _take(self, queue: deque[tuple[int, Item]]) -> Item:
        _, item = queue.popleft()
        if item.snapshot is not None:
            self._snapshot_bytes -= len(item.snapshot)
        return item

    def _clear(self) -> int:
        """Empty the queues (under the lock); how many items they held."""
        count = len(self._items) + len(self._alerts)
        self._items.clear()
        self._alerts.clear()
        self._snapshot_bytes = 0
        return count

    def _deliver(self, items: list[Item]) -> None:
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            self._rejected = 0
            try:
                left = self.send(items)
            except Exception as exc:  # noqa: BLE001 (network, disk, botocore, sqlite: all retried)
                left = items
                self.count(error=describe(exc))
            self.count(delivered=max(0, len(items) - len(left) - self._rejected), inflight=len(left))
            items = left
            if not items:
                return
            if attempt == self.attempts:
                break
            if self._wait(delay):
                self.count(dropped=len(items), inflight=0)  # closing and out of time
                return
            self.count(retries=1)
            delay *= 2
        self.count(failed=len(items), inflight=0)

    def _wait(self, seconds: float) -> bool:
        """Back off ``seconds`` (less once closing: close wants what is left at once); True when
        the close deadline has passed."""
        if not self._closing.is_set():
            self._closing.wait(seconds)
        else:
            self._abandoned.wait(max(0.0, min(seconds, self.remaining())))
        return self._abandoned.is_set() or self.remaining() <= 0


def take_snapshot(snapshot: Callable[[], bytes] | None, lane: Lane) -> bytes | None:
    """The frame's JPEG, taken on the caller's thread (so a queued record never holds a frame)."""
    if snapshot is None:
        return None
    try:
        return snapshot() or None
    except Exception as exc:  # noqa: BLE001 (the record still goes, without its snapshot)
        lane.count(error=f"snapshot: {describe(exc)}")
        return None
