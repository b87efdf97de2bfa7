"""The stream host: runs every stream processor of a home whose desired state is RUNNING.

``python -m faceprint.streams.host --home H [--models-dir D] [--profile P] [--threads N]`` is started
by a :class:`faceprint.streams.runner.StreamRunner`. It takes the home's host lock (exit code 3 at
once if another process holds it), reads its run-time config as one JSON line on stdin
(``{"sources": {NAME: URL}, "data_streams": {NAME: [SINK, ...]}, "region": R, "connect_timeout": S}``,
the maps merged over the home's own files) and keeps reading: end-of-file (its runner is gone) or SIGTERM stops it.

:class:`StreamHost` looks at the processor store every ``poll`` seconds and reconciles: a
:class:`ProcessorRun` (a thread: camera → live face search → records → sinks) per wanted processor,
stopped when it is no longer wanted (then STOPPED), updated in place when a RUNNING processor's
settings change (UPDATING → RUNNING, the camera stays connected). Status writes carry the
generation they answer, so a run never overwrites a newer request. A stopping host stops its runs
without touching their desired state: the next host resumes them (STARTING → RUNNING; a camera
that was reached before is retried forever, not FAILED).

Each second it writes every run's health to the store and ``HOME/streams/metrics.json`` (0600,
replaced atomically): per processor its status, camera counters, records, alerts, latency from frame
capture to record handed to the sinks (histogram: ``buckets`` are upper bounds in seconds,
``counts`` one more than ``buckets``, the last for slower records) and each sink's counters.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faceprint.errors import FaceprintError
from faceprint.home import create_private, private_folder
from faceprint.streams.runner import EXIT_LOCKED, HostLock
from faceprint.streams.types import FAILED, RUNNING, STARTING, STOPPED, STOPPING, UPDATING, ProcessorRow

log = logging.getLogger(__name__)

TAKE_TIMEOUT = 0.25
"""Seconds a run waits for a frame before it looks at its requests again."""
JOIN_TIMEOUT = 8.0
"""Seconds a stopping host waits for its runs to end (its runner kills it after 10)."""
MAPPING_EVERY = 2.0
"""Seconds between checks that a running processor's stream and data stream are still mapped."""
SINKS_CLOSE = 5.0
"""Seconds an ending run gives its sinks, together, to deliver what they hold."""
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)


class HostLocked(Exception):
    """Another process holds the home's host lock."""


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
            self._close()
            self._finish()
            self._stop_source()  # last: a stalled camera's read takes seconds to time out

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
        """The source's last error, with the camera URL (it may hold a password) redacted."""
        from faceprint.streams.config import redact

        reason = stats.last_error or "no frame yet"
        return reason.replace(self.url, redact(self.url))

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
        for sink in self.sinks:
            sink.put(record, snapshot=snapshot if has_match(record) else None)
        self.frames_analysed += 1
        self.records += 1
        self.latency.observe(clock() - result.frame.captured)
        for alert in result.alerts:
            body = alert_record(alert, row.name, row.arn, stream_arn)
            shot = snapshot if alert.frame is result.frame else _snapshot(alert.frame)
            for sink in self.sinks:
                sink.put(body, alert=True, snapshot=shot)
            self.alerts += 1
            self.alert_latency.observe(clock() - alert.frame.captured)

    def _apply_update(self) -> None:
        with self._lock:
            row, self._pending = self._pending, None
        if row is None:
            return
        self._live.update(threshold=row.threshold, regions=row.regions)
        self.row = row
        self.generation = row.generation
        self._say(RUNNING if self._running_since is not None else STARTING, self.message, force=True)

    def _say(self, status: str, message: str | None, force: bool = False) -> None:
        """Write ``status`` and ``message`` (when they change, or ``force``), at this run's generation."""
        if (status, message) == (self.status, self.message) and not force:
            return
        self.status, self.message = status, message
        self.host.store.set_status(self.row.name, status, message, generation=self.generation)

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
        if not self.host.store.set_status(self.row.name, end.status, end.message, generation=end.generation):
            log.info("Stream processor %s: a newer request overrode the end (%s).", self.row.name, end.status)

    # -- reports (read from the host's thread) ----------------------------------------------------------

    def health(self) -> dict[str, Any]:
        stats = self.source.stats if self.source is not None else None
        return {"connected": bool(stats and stats.connected), "reconnects": stats.reconnects if stats else 0,
                "frames_read": stats.frames_read if stats else 0, "frames_analysed": self.frames_analysed,
                "frames_dropped": stats.frames_dropped if stats else 0, "last_frame": self._last_frame,
                "session": self.row.session_id}

    def metrics(self) -> dict[str, Any]:
        health = self.health()
        sinks = {}
        for sink in list(self.sinks):
            s = sink.stats
            sinks[sink.label] = {"delivered": s.delivered, "failed": s.failed, "dropped": s.dropped,
                                 "retries": s.retries}
        return {"status": self.status, "connected": health["connected"], "reconnects": health["reconnects"],
                "frames_read": health["frames_read"], "frames_analysed": self.frames_analysed,
                "frames_dropped": health["frames_dropped"], "frames_skipped": self.skipped, "records": self.records,
                "alerts": self.alerts, "latency": self.latency.as_dict(),
                "alert_latency": self.alert_latency.as_dict(), "sinks": sinks}


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


class StreamHost:
    """Runs the wanted processors of ``store`` (see the module's docstring) with ``fp``'s models;
    ``config`` maps stream and data-stream names to camera URLs and sinks. ``source_factory`` and
    ``sink_factory`` build a run's camera reader and sinks (:class:`faceprint.streams.sources.Source`,
    :func:`faceprint.streams.sinks.open_sinks`)."""

    def __init__(self, fp: Any, store: Any, config: Any, *, region: str, clock: Callable[[], float] = time.time,
                 poll: float = 0.25, connect_timeout: float = 30.0, metrics_path: Path | None = None,
                 source_factory: Callable[..., Any] | None = None, sink_factory: Callable[..., Any] | None = None,
                 live_settings: Any = None, lock: HostLock | None = None) -> None:
        from faceprint.streams.live import LiveSettings

        self.fp = fp
        self.store = store
        self.config = config
        self.region = region
        self.clock = clock
        self.poll = poll
        self.connect_timeout = connect_timeout
        self.home = Path(fp.home)
        self.metrics_path = metrics_path or self.home / "streams" / "metrics.json"
        self.source_factory = source_factory or _default_source()
        self.sink_factory = sink_factory or _default_sinks()
        self.live_settings = live_settings or LiveSettings()
        self.lock = lock or HostLock(self.home)
        self._runs: dict[str, ProcessorRun] = {}
        self._ending: list[ProcessorRun] = []
        self._stop = threading.Event()
        self._last_report = float("-inf")
        self._last_mapping = float("-inf")

    def stop(self) -> None:
        """Ask :meth:`run` to return (from a signal handler or another thread)."""
        self._stop.set()

    def run(self) -> None:
        """Take the host lock (:class:`HostLocked` if another holds it), then reconcile until :meth:`stop`."""
        if not self.lock.acquire():
            raise HostLocked(str(self.lock.path))
        try:
            while not self._stop.is_set():
                try:
                    self._reconcile()
                    self._report()
                except Exception:  # a store hiccup (locked, disk) must not end the host
                    log.exception("Reconciling the stream processors failed")
                self._stop.wait(self.poll)
        finally:
            self._shutdown()

    # -- reconcile ---------------------------------------------------------------------------------------

    def _reconcile(self) -> None:
        rows = {row.name: row for row in self.store.all()}
        self._ending = [run for run in self._ending if run.is_alive()]
        for name in [n for n, run in self._runs.items() if not run.is_alive()]:
            del self._runs[name]
        check_mapping = self.clock() - self._last_mapping >= MAPPING_EVERY
        if check_mapping:
            self._last_mapping = self.clock()
        for name, run in list(self._runs.items()):
            self._follow(run, rows.get(name), check_mapping)
        busy = {run.row.name for run in self._ending} | set(self._runs)
        for row in rows.values():
            if row.name in busy:
                continue
            if row.desired == RUNNING and row.status not in (STOPPED, FAILED):
                self._start(row)
            elif row.desired != RUNNING and row.status == STOPPING:  # its run is gone (or never was)
                self.store.set_status(row.name, STOPPED, None, generation=row.generation)

    def _follow(self, run: ProcessorRun, row: ProcessorRow | None, check_mapping: bool) -> None:
        """Stop, update or restart ``run`` as its row now says."""
        if row is None:  # deleted
            self._end(run)
        elif row.desired != RUNNING:
            self._end(run, STOPPED, None, row.generation)
        elif row.generation != run.target_generation:
            if row.status == UPDATING and row.session_id == run.row.session_id:
                run.request_update(row)
            else:  # a new session (stopped and started again between two looks): start afresh
                self._end(run)
        elif check_mapping:
            url, specs, problem = self._mapping(row)
            if problem is not None:
                self._end(run, FAILED, problem, run.target_generation)
            elif url != run.url or [s.text for s in specs] != [s.text for s in run.specs]:
                self._end(run)  # the camera or the sinks changed: the next look starts it again

    def _end(self, run: ProcessorRun, status: str | None = None, message: str | None = None,
             generation: int | None = None) -> None:
        run.stop(status, message, generation)
        del self._runs[run.row.name]
        self._ending.append(run)

    def _start(self, row: ProcessorRow) -> None:
        url, specs, problem = self._mapping(row)
        if problem is not None:
            self.store.set_status(row.name, FAILED, problem, generation=row.generation)
            return
        fresh = not (row.health.get("session") == row.session_id and row.health.get("last_frame"))
        if row.status != STARTING and not self.store.set_status(row.name, STARTING, None, generation=row.generation):
            return  # changed meanwhile: the next look decides
        row.status = STARTING
        run = ProcessorRun(self, row, url, specs, fresh)
        self._runs[row.name] = run
        run.start()

    def _mapping(self, row: ProcessorRow) -> tuple[str, list[Any], str | None]:
        """The camera URL and sinks of ``row``, or why it cannot run."""
        url = self.config.source_url(row.video_stream)
        if url is None:
            return "", [], (f"Stream {row.video_stream} is not mapped to a camera (faceprint streams add "
                            f"{row.video_stream} URL, or serve --stream {row.video_stream}=URL).")
        specs = self.config.sinks_of(row.data_stream) if row.data_stream else []
        if not specs:
            return url, [], (f"Data stream {row.data_stream} has no sink (faceprint data-streams add "
                             f"{row.data_stream} SINK, or serve --data-stream {row.data_stream}=SINK).")
        return url, specs, None

    # -- reports ---------------------------------------------------------------------------------------

    def _report(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_report < 1.0:
            return
        self._last_report = now
        processors = {}
        for name, run in list(self._runs.items()):
            self.store.set_health(name, run.health())
            processors[name] = run.metrics()
        self._write_metrics({"updated": now, "processors": processors})

    def _write_metrics(self, body: dict[str, Any]) -> None:
        path = self.metrics_path
        private_folder(path.parent)
        temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        fd = create_private(temp)
        with os.fdopen(fd, "w") as out:
            json.dump(body, out)
        os.replace(temp, path)

    def _shutdown(self) -> None:
        runs = list(self._runs.values()) + self._ending
        for run in runs:
            run.stop()  # desired and status left as they are: the next host resumes them
        deadline = time.monotonic() + JOIN_TIMEOUT
        for run in runs:
            run.join(max(0.0, deadline - time.monotonic()))
        self._runs.clear()
        self._ending.clear()
        with contextlib.suppress(Exception):
            self._write_metrics({"updated": self.clock(), "processors": {}})
        self.lock.release()


def _default_source() -> Callable[..., Any]:
    from faceprint.streams.sources import Source

    return Source


def _default_sinks() -> Callable[..., Any]:
    from faceprint.streams.sinks import open_sinks

    return open_sinks


# -- the process ---------------------------------------------------------------------------------------------


def read_config(stream: Any) -> dict[str, Any] | None:
    """The runner's config line; None at end-of-file. ValueError if it is not a JSON object."""
    line = stream.readline()
    if not line:
        return None
    config = json.loads(line)
    if not isinstance(config, dict):
        raise ValueError("the host's config must be a JSON object")
    return config


def watch_stdin(stream: Any, stop: Callable[[], None]) -> threading.Thread:
    """Call ``stop`` once ``stream`` reaches end-of-file (the runner is gone)."""

    def watch() -> None:
        with contextlib.suppress(OSError, ValueError):
            while stream.read(4096):
                pass
        stop()

    thread = threading.Thread(target=watch, name="faceprint-stream-host-stdin", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    home = Path(args.home)
    lock = HostLock(home)
    if not lock.acquire():
        return EXIT_LOCKED
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stdin = sys.stdin.buffer
    try:
        config = read_config(stdin)
    except ValueError as exc:
        log.error("The stream host's config is not valid: %s", exc)
        return 2
    if stop.is_set() or config is None:
        return 0
    host = _make_host(home, args, config, lock)
    watch_stdin(stdin, host.stop)
    threading.Thread(target=lambda: (stop.wait(), host.stop()), name="faceprint-stream-host-signal",
                     daemon=True).start()
    host.run()
    return 0


def _make_host(home: Path, args: argparse.Namespace, config: dict[str, Any], lock: HostLock) -> StreamHost:
    import cv2

    from faceprint.service import Faceprint
    from faceprint.streams.config import StreamConfig, streams_folder
    from faceprint.streams.store import ProcessorStore

    cv2.setNumThreads(max(1, args.threads))  # one analysis thread per processor: N cameras on few cores
    region = str(config.get("region") or "us-east-1")
    fp = Faceprint(home, profile=args.profile, models_dir=args.models_dir, threads=max(1, args.threads), region=region)
    store = ProcessorStore(streams_folder(home) / "processors.db")
    stream_config = StreamConfig(home, sources=config.get("sources") or {},
                                 data_streams=config.get("data_streams") or {})
    connect_timeout = float(config.get("connect_timeout") or 30.0)
    return StreamHost(fp, store, stream_config, region=region, lock=lock, connect_timeout=connect_timeout)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m faceprint.streams.host",
                                     description="Run a home's stream processors (started by the stream runner; "
                                                 "its config as one JSON line on stdin, stops at end-of-file).")
    parser.add_argument("--home", required=True, help="the faceprint home whose stream processors to run")
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--profile", default=None, help="fast or accurate (default: the home's default)")
    parser.add_argument("--threads", type=int, default=1, help="inference threads of each analysis (default 1)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
