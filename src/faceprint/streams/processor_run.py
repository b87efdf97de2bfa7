"""One stream processor's run (a thread of the stream host): its camera (a
:class:`faceprint.streams.sources.Source`) through :class:`faceprint.streams.live.LiveFaceSearch`,
each analysed frame's record and each alert handed to its data stream's sinks.

Every status it writes carries the generation it answers (``ProcessorStore.set_status``), so a run
never overwrites a newer request; the host's stop request decides the final status, else the run's
own ending (FAILED: camera never reached on a fresh start, collection deleted, an internal error;
STOPPED: StopSelector reached, stream over). Its counters and latency histograms are fixed-size:
nothing grows with the frames it sees.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from faceprint.errors import FaceprintError
from faceprint.streams.types import FAILED, RUNNING, STARTING, STOPPED, ProcessorRow

if TYPE_CHECKING:
    from faceprint.streams.host import StreamHost

log = logging.getLogger("faceprint.streams.host")

TAKE_TIMEOUT = 0.25
"""Seconds a run waits for a frame before it looks at its requests again."""
SINKS_CLOSE = 5.0
"""Seconds an ending run gives its sinks, together, to deliver what they hold."""
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)


class Histogram:
    """Counts of observations per bucket (upper bounds, seconds) plus one for the rest."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        value = max(0.0, value)
        index = next((i for i, bound in enumerate(self.buckets) if value <= bound), len(self.buckets))
        self.counts[index] += 1
        self.sum += value
        self.count += 1

    def as_dict(self) -> dict[str, Any]:
        return {"buckets": list(self.buckets), "counts": list(self.counts), "sum": round(self.sum, 6),
                "count": self.count}


class _Stop:
    """How a run ends when asked: the final status to write (None: leave it) and its generation."""

    def __init__(self, status: str | None, message: str | None = None, generation: int = 0) -> None:
        self.status, self.message, self.generation = status, message, generation


class ProcessorRun(threading.Thread):
    """One processor's run: frames from its camera through :class:`LiveFaceSearch`, each analysed
    frame's record (and each alert) handed to its data stream's sinks. RUNNING at the first frame;
    it ends FAILED (camera never reached on a fresh start, collection deleted), STOPPED (StopSelector,
    stream ended) or as :meth:`stop` says."""

    def __init__(self, host: StreamHost, row: ProcessorRow, url: str, specs: list[Any], fresh: bool) -> None:
        super().__init__(name=f"faceprint-stream-{row.name[:40]}", daemon=True)
        self.host = host
        self.row = row
        self.url = url
        self.specs = specs
        self._secrets: list[tuple[str, str]] | None = None
        self.fresh = fresh
        self.generation = row.generation
        self.target_generation = row.generation
        """The newest generation this run was asked to reach (an update not yet applied included)."""
        self.status = row.status
        self.message: str | None = None
        self.frames_analysed = self.records = self.alerts = self.skipped = 0
        self.latency = Histogram()
        self.alert_latency = Histogram()
        self.source: Any = None
        self.sinks: list[Any] = []
        self._live: Any = None
        self._halt = threading.Event()
        self._end_request: _Stop | None = None
        self._outcome: _Stop | None = None
        self._pending: ProcessorRow | None = None
        self._lock = threading.Lock()
        self._running_since: float | None = None
        self._last_frame: float | None = None
        self._start_at = _start_selector(row.start_selector)

    # -- requests (from the host's thread) ------------------------------------------------------------

    def stop(self, status: str | None = None, message: str | None = None, generation: int | None = None) -> None:
        """End the run; then write ``status`` (None: leave the status) at ``generation``."""
        with self._lock:
            if self._end_request is None:
                gen = self.target_generation if generation is None else generation
                self._end_request = _Stop(status, message, gen)
        self._halt.set()

    def request_update(self, row: ProcessorRow) -> None:
        """Apply ``row``'s threshold and regions to the live pipeline (camera kept), then RUNNING."""
        with self._lock:
            self._pending = row
            self.target_generation = row.generation

    # -- the thread ---------------------------------------------------------------------------------

    def run(self) -> None:
        from faceprint.streams.live import CollectionGone

        try:
            self._open()
            self._loop()
        except CollectionGone:
            self._outcome = _Stop(FAILED, f"Collection {self.row.collection_id} was deleted.")
        except FaceprintError as exc:
            self._outcome = _Stop(FAILED, exc.message)
        except Exception as exc:  # a defect: FAILED with a message, the traceback to the log
            log.exception("Stream processor %s failed", self.row.name)
            self._outcome = _Stop(FAILED, f"The stream processor failed on an internal error ({type(exc).__name__});"
                                          " see the stream host's log.")
        finally:
            self._end_quietly()

    def _open(self) -> None:
        from faceprint.streams.live import LiveFaceSearch

        host, row = self.host, self.row
        self.sinks = host.sink_factory(self.specs, processor=row.name, region=host.region, store=host.store)
        self._live = LiveFaceSearch(host.fp, row.collection_id, row.threshold, row.regions or None,
                                    settings=host.live_settings, clock=host.clock)
        fps = host.live_settings.detect_fps if host.live_settings is not None else 5.0
        self.source = host.source_factory(self.url, fps=fps, clock=host.clock,
                                          open_timeout=min(10.0, host.connect_timeout))
        self.source.start()

    def _loop(self) -> None:
        began = self.host.clock()
        while not self._halt.is_set():
            self._apply_update()
            frame = self.source.take(TAKE_TIMEOUT)
            if self._halt.is_set():
                return
            stats = self.source.stats
            if frame is None:
                if self._idle(stats, began):
                    return
                continue
            self._on_frame()
            if self._max_duration_reached():
                return
            if self._before_start(frame):
                self.skipped += 1
                continue
            self._deliver(self._live.analyse(frame))

    def _idle(self, stats: Any, began: float) -> bool:
        """No frame came: True if the run must end (camera unreachable on a fresh start, stream over)."""
        if stats.ended:
            self._outcome = _Stop(STOPPED, "The stream ended.")
            return True
        if self._max_duration_reached():
            return True
        if not stats.connected_once:
            reason = self._reason(stats)
            if self.fresh and self.host.clock() - began >= self.host.connect_timeout:
                self._outcome = _Stop(FAILED, f"Camera {self.row.video_stream} could not be reached: {reason}")
                return True
            if stats.last_error:
                self._say(self.status, f"Camera {self.row.video_stream} not reached yet (attempt "
                                       f"{stats.reconnects + 1}): {reason}")
        elif not stats.connected:
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stats.since or self.host.clock()))
            self._say(self.status, f"Camera reconnecting (attempt {max(1, stats.reconnects)}) since {since}: "
                                   f"{self._reason(stats)}")
        return False

    def _reason(self, stats: Any) -> str:
        """The source's last error (its secrets are scrubbed when it is said)."""
        return stats.last_error or "no frame yet"

    def _shown(self, message: str | None) -> str | None:
        """``message`` as DescribeStreamProcessor may show it: without this run's camera URL and sink
        specs, whole or in parts (a library's error may carry them), redacted."""
        if message is None:
            return None
        if self._secrets is None:
            from faceprint.streams.scrub import config_secrets

            self._secrets = config_secrets({"camera": self.url}, {"sinks": [s.text for s in self.specs]})
        from faceprint.streams.scrub import scrub

        return scrub(message, self._secrets)

    def _on_frame(self) -> None:
        now = self.host.clock()
        self._last_frame = now
        if self._running_since is None:
            self._running_since = now
            self._say(RUNNING, None)
        elif self.message is not None:
            self._say(self.status, None)  # frames flow again

    def _max_duration_reached(self) -> bool:
        seconds = (self.row.stop_selector or {}).get("MaxDurationInSeconds")
        if seconds is None or self._running_since is None:
            return False
        if self.host.clock() - self._running_since < float(seconds):
            return False
        self._outcome = _Stop(STOPPED, f"Stopped after MaxDurationInSeconds={seconds}.")
        return True

    def _before_start(self, frame: Any) -> bool:
        """Is ``frame`` before the StartSelector (its ProducerTimestamp, ms, or its FragmentNumber)?"""
        producer, fragment = self._start_at
        return (producer is not None and frame.producer_ms < producer) or \
            (fragment is not None and frame.fragment < fragment)

    def _deliver(self, result: Any) -> None:
        from faceprint.streams.records import alert_record, frame_record, has_match

        row, clock = self.row, self.host.clock
        stream_arn = row.request["Input"]["KinesisVideoStream"]["Arn"]
        record = frame_record(result, stream_arn, status=RUNNING, server_time=clock())
        snapshot = _snapshot(result.frame)
        for alert in result.alerts:  # no entry, no result: recorded before anything of the frame is delivered
            self._record_match(alert, snapshot if alert.frame is result.frame else _snapshot(alert.frame))
        for sink in self.sinks:
            sink.put(record, snapshot=snapshot if has_match(record) else None)
        self.frames_analysed += 1
        self.records += 1
        self.latency.observe(clock() - result.frame.producer_ms / 1000.0)  # a backlog before decoding included
        for alert in result.alerts:
            body = alert_record(alert, row.name, row.arn, stream_arn)
            shot = snapshot if alert.frame is result.frame else _snapshot(alert.frame)
            for sink in self.sinks:
                sink.put(body, alert=True, snapshot=shot)
            self.alerts += 1
            self.alert_latency.observe(clock() - alert.frame.producer_ms / 1000.0)

    def _record_match(self, alert: Any, snapshot: Callable[[], bytes]) -> None:
        """The alert's audit entry (caller ``stream-processor:NAME``, the matched faces as candidates, the
        frame's JPEG as the probe); AuditUnavailable ends the run FAILED: a processor that cannot
        record its matches delivers none."""
        from faceprint.audit.caller import Caller
        from faceprint.audit.recorder import face_candidates

        fp, row = self.host.fp, self.row
        if not fp.recorder.enabled:
            return
        caller = Caller(f"stream-processor:{row.name}", "system")
        fp.recorder.searched("StreamProcessorMatch", caller, alert.frame.captured, row.collection_id,
                             fp.collections.size(row.collection_id), row.threshold, face_candidates(alert.matches),
                             probe_bytes=snapshot(), details={
                                 "StreamProcessor": row.name, "TrackId": alert.track_id,
                                 "ProducerTimestamp": alert.frame.producer_ms,
                                 "FragmentNumber": alert.frame.fragment})

    def _apply_update(self) -> None:
        with self._lock:
            row, self._pending = self._pending, None
        if row is None:
            return
        self.generation = row.generation  # first: a failure applying it answers this update (FAILED)
        self._live.update(threshold=row.threshold, regions=row.regions)
        self.row = row
        self._say(RUNNING if self._running_since is not None else STARTING, self.message, force=True)

    def _say(self, status: str, message: str | None, force: bool = False) -> None:
        """Write ``status`` and ``message`` (when they change, or ``force``), at this run's generation."""
        if (status, message) == (self.status, self.message) and not force:
            return
        self.status, self.message = status, message
        self.host.store.set_status(self.row.name, status, self._shown(message), generation=self.generation)

    def _end_quietly(self) -> None:
        """Close the pipeline, write the final status, stop the camera: each step even if one before
        it failed (a store that cannot be written must not leave the camera connected)."""
        for step in (self._close, self._finish, self._stop_source):  # the camera last: a stalled read takes seconds
            try:
                step()
            except Exception:
                log.exception("Ending stream processor %s failed", self.row.name)

    def _close(self) -> None:
        """Forget the tracks, then let the sinks deliver what they hold."""
        if self._live is not None:
            with contextlib.suppress(Exception):
                self._live.close()
        deadline = time.monotonic() + SINKS_CLOSE
        for sink in self.sinks:
            try:
                sink.close(max(0.5, deadline - time.monotonic()))
            except Exception:  # one sink's defect must not keep the others open
                log.exception("Closing sink %s of %s failed", getattr(sink, "label", "?"), self.row.name)

    def _stop_source(self) -> None:
        if self.source is not None:
            try:
                self.source.stop()
            except Exception:
                log.exception("Stopping the camera of %s failed", self.row.name)

    def _finish(self) -> None:
        """The final status: the host's stop request wins over the run's own ending."""
        with self._lock:
            end = self._end_request
        if end is None and self._outcome is not None:
            end = _Stop(self._outcome.status, self._outcome.message, self.generation)
        if end is None or end.status is None:
            return
        self.status, self.message = end.status, end.message
        if not self.host.store.set_status(self.row.name, end.status, self._shown(end.message),
                                          generation=end.generation):
            log.info("Stream processor %s: a newer request overrode the end (%s).", self.row.name, end.status)

    # -- reports (read from the host's thread) ----------------------------------------------------------

    def health(self) -> dict[str, Any]:
        stats = self.source.stats if self.source is not None else None
        return {"connected": bool(stats and stats.connected), "reconnects": stats.reconnects if stats else 0,
                "frames_read": stats.frames_read if stats else 0, "frames_analysed": self.frames_analysed,
                "frames_dropped": stats.frames_dropped if stats else 0, "last_frame": self._last_frame,
                "lag": round(stats.lag_s, 3) if stats else 0.0, "skips": stats.skips if stats else 0,
                "session": self.row.session_id}

    def metrics(self) -> dict[str, Any]:
        health = self.health()
        sinks = sink_counters(self.sinks)
        return {"status": self.status, "connected": health["connected"], "reconnects": health["reconnects"],
                "frames_read": health["frames_read"], "frames_analysed": self.frames_analysed,
                "frames_dropped": health["frames_dropped"], "frames_skipped": self.skipped, "records": self.records,
                "lag": health["lag"], "skips": health["skips"],
                "alerts": self.alerts, "latency": self.latency.as_dict(),
                "alert_latency": self.alert_latency.as_dict(), "sinks": sinks}


def sink_counters(sinks: list[Any]) -> dict[str, dict[str, int]]:
    """Each sink's counters by its label; two sinks whose redacted labels are alike (two webhooks
    differing only by a token) are told apart by a suffix, " (2)", rather than merged or lost."""
    found: dict[str, dict[str, int]] = {}
    for sink in list(sinks):
        s, label, n = sink.stats, sink.label, 1
        while label in found:
            n += 1
            label = f"{sink.label} ({n})"
        found[label] = {"delivered": s.delivered, "failed": s.failed, "dropped": s.dropped, "retries": s.retries}
    return found


def _start_selector(selector: dict[str, Any] | None) -> tuple[int | None, int | None]:
    """(ProducerTimestamp ms, FragmentNumber) of a ``KVSStreamStartSelector`` (None: not given)."""
    kvs = (selector or {}).get("KVSStreamStartSelector", selector or {})
    found: list[int | None] = []
    for key in ("ProducerTimestamp", "FragmentNumber"):
        try:
            found.append(int(kvs[key]) if kvs.get(key) is not None else None)
        except (TypeError, ValueError):  # the API checked it: ignore what cannot be read
            found.append(None)
    return found[0], found[1]


def _snapshot(frame: Any) -> Callable[[], bytes]:
    """The frame as JPEG, made only if a sink asks (sinks with snapshots), once for all of them."""
    made: list[bytes] = []

    def encode() -> bytes:
        if not made:
            import cv2

            ok, data = cv2.imencode(".jpg", frame.image, [int(cv2.IMWRITE_JPEG_QUALITY), 90])
            made.append(data.tobytes() if ok else b"")
        return made[0]

    return encode
