"""The stream host: runs every stream processor of a home whose desired state is RUNNING.

``python -m faceprint.streams.host --home H [--models-dir D] [--profile P] [--threads N]`` is started
by a :class:`faceprint.streams.runner.StreamRunner`. It takes the home's host lock (exit code 3 at
once if another process holds it), reads its run-time config as one JSON line on stdin
(``{"sources": {NAME: URL}, "data_streams": {NAME: [SINK, ...]}, "region": R, "connect_timeout": S}``,
the maps merged over the home's own files) and keeps reading: end-of-file (its runner is gone) or SIGTERM stops it.

:class:`StreamHost` looks at the processor store every ``poll`` seconds and reconciles: a
:class:`~faceprint.streams.processor_run.ProcessorRun` (a thread: camera → live face search → records
→ sinks) per wanted processor, stopped when it is no longer wanted (then STOPPED), updated in place
when a RUNNING processor's settings change (UPDATING → RUNNING, the camera stays connected). Status writes carry the
generation they answer, so a run never overwrites a newer request. A stopping host stops its runs
without touching their desired state: the next host resumes them (STARTING → RUNNING; a camera
that was reached before is retried forever, not FAILED).

With the PostgreSQL store (``FACEPRINT_STORE`` in its environment) every node's host looks at the
same processors and runs only those it holds a lease on (:mod:`faceprint.streams.leases`: taken
when free or lapsed, renewed, released when the run ends or the host stops); the config line's
``lease_seconds`` sets the lease's time (default 15).

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
from faceprint.streams.processor_run import ProcessorRun
from faceprint.streams.runner import EXIT_LOCKED, HostLock
from faceprint.streams.scrub import scrub_logs
from faceprint.streams.types import FAILED, RUNNING, STARTING, STOPPED, STOPPING, UPDATING, ProcessorRow

log = logging.getLogger(__name__)

JOIN_TIMEOUT = 8.0
"""Seconds a stopping host waits for its runs to end (its runner kills it after 10)."""
MAPPING_EVERY = 2.0
"""Seconds between checks that a running processor's stream and data stream are still mapped."""
FAILURE_LOG_EVERY = 60.0
"""Seconds before the same failure of the reconcile loop is logged again."""


class HostLocked(Exception):
    """Another process holds the home's host lock."""


class StreamHost:
    """Runs the wanted processors of ``store`` (see the module's docstring) with ``fp``'s models;
    ``config`` maps stream and data-stream names to camera URLs and sinks. ``source_factory`` and
    ``sink_factory`` build a run's camera reader and sinks (:class:`faceprint.streams.sources.Source`,
    :func:`faceprint.streams.sinks.open_sinks`)."""

    def __init__(self, fp: Any, store: Any, config: Any, *, region: str, clock: Callable[[], float] = time.time,
                 poll: float = 0.25, connect_timeout: float = 30.0, metrics_path: Path | None = None,
                 source_factory: Callable[..., Any] | None = None, sink_factory: Callable[..., Any] | None = None,
                 live_settings: Any = None, lock: HostLock | None = None, leases: Any = None) -> None:
        from faceprint.streams.leases import LocalLeases
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
        self.leases = leases or LocalLeases()
        self._runs: dict[str, ProcessorRun] = {}
        self._ending: list[ProcessorRun] = []
        self._stop = threading.Event()
        self._last_report = float("-inf")
        self._last_mapping = float("-inf")
        self._failure = ("", float("-inf"))

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
                except Exception as exc:  # a store hiccup (locked, disk) must not end the host
                    self._log_failure(exc)
                    self._drop_if_lapsed()
                self._stop.wait(self.poll)
        finally:
            self._shutdown()

    def _log_failure(self, exc: Exception) -> None:
        """Log a failed look with its traceback; the same failure again only once a minute (a full disk
        or a locked store must not fill the log four times a second)."""
        now, what = time.monotonic(), f"{type(exc).__name__}: {exc}"
        if what == self._failure[0] and now - self._failure[1] < FAILURE_LOG_EVERY:
            return
        self._failure = (what, now)
        log.error("Reconciling the stream processors failed", exc_info=exc)

    def _drop_if_lapsed(self) -> None:
        """The store out of reach for a lease's time: another node may run these processors now."""
        if self._runs and self.leases.lapsed():
            log.warning("The processor store was out of reach for %g s: stopping %d runs (their leases lapsed).",
                        self.leases.ttl, len(self._runs))
            for run in list(self._runs.values()):
                self._end(run)

    # -- reconcile ---------------------------------------------------------------------------------------

    def _reconcile(self) -> None:
        rows = {row.name: row for row in self.store.all()}
        self._ending = [run for run in self._ending if run.is_alive()]
        for name in [n for n, run in self._runs.items() if not run.is_alive()]:
            del self._runs[name]
        check_mapping = self.clock() - self._last_mapping >= MAPPING_EVERY
        if check_mapping:
            self._last_mapping = self.clock()
        mine, others = self.leases.settle(rows, self._busy(), self._resolvable)
        for name, run in list(self._runs.items()):
            if name in mine:
                self._follow(run, rows.get(name), check_mapping)
            else:  # deleted, or its lease is another node's now (that node writes its status)
                self._end(run)
        busy = self._busy()
        for row in rows.values():
            if row.name in busy:
                continue
            if row.desired == RUNNING and row.status not in (STOPPED, FAILED):
                if row.name in mine:
                    self._start(row)
            elif row.desired != RUNNING and row.status == STOPPING and row.name not in others:
                self.store.set_status(row.name, STOPPED, None, generation=row.generation)  # its run is gone

    def _busy(self) -> set[str]:
        """The processors this host runs or is stopping."""
        return {run.row.name for run in self._ending} | set(self._runs)

    def _resolvable(self, row: ProcessorRow) -> bool:
        """Whether this host knows ``row``'s camera and sinks."""
        return self._mapping(row)[2] is None

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
            if problem is not None and self.leases.elsewhere(row):
                self._end(run)  # unmapped here, mapped by another node's host: its lease goes, another takes it
            elif problem is not None:
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
        """The camera URL and sinks of ``row``, or why it cannot run (a home file edited by hand into
        something wrong fails this processor, not the host's look at every other one)."""
        try:
            return self._mapped(row)
        except FaceprintError as exc:  # its messages show URLs and sinks redacted
            return "", [], f"The stream configuration of {row.name} cannot be used: {exc.message}"

    def _mapped(self, row: ProcessorRow) -> tuple[str, list[Any], str | None]:
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
            try:
                processors[name] = run.metrics()
                self.store.set_health(name, run.health())
            except Exception as exc:  # one run's report must not keep the others' from the store and metrics
                self._log_failure(exc)
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
        with contextlib.suppress(Exception):
            self.leases.close()  # others take them at their next look
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
    logging.captureWarnings(True)  # a library's warning goes through the log's handlers, scrubbed as the rest
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
    made: list[StreamHost] = []
    watch_stdin(stdin, stop.set)  # from here on: a runner gone while the models load is noticed too
    threading.Thread(target=_end_when_asked, args=(stop, made), name="faceprint-stream-host-end", daemon=True).start()
    host = _make_host(home, args, config, lock)
    scrub_logs(host.config)  # camera URLs and sink specs never reach the log, even in a library's traceback
    made.append(host)
    host.run()
    return 0


def _end_when_asked(stop: threading.Event, made: list[StreamHost]) -> None:
    """Once SIGTERM, SIGINT or stdin's end asks: stop the host, or exit at once while its models
    still load (nothing runs yet: nothing to stop, nothing to keep; the kernel lets the lock go)."""
    stop.wait()
    if not made:
        os._exit(0)
    made[0].stop()


def _make_host(home: Path, args: argparse.Namespace, config: dict[str, Any], lock: HostLock) -> StreamHost:
    import cv2

    from faceprint.service import Faceprint
    from faceprint.streams.config import StreamConfig
    from faceprint.streams.leases import LEASE_TTL, leases_for, node_id
    from faceprint.streams.store import is_shared, open_processor_store

    cv2.setNumThreads(max(1, args.threads))  # one analysis thread per processor: N cameras on few cores
    region = str(config.get("region") or "us-east-1")
    fp = Faceprint(home, profile=args.profile, models_dir=args.models_dir, threads=max(1, args.threads), region=region)
    node = node_id(home) if is_shared(fp.store_url) else None
    store = open_processor_store(home, fp.store_url, node=node)  # FACEPRINT_STORE from the runner's environment
    stream_config = StreamConfig(home, sources=config.get("sources") or {},
                                 data_streams=config.get("data_streams") or {})
    connect_timeout = float(config.get("connect_timeout") or 30.0)
    leases = leases_for(store, lambda: published(stream_config), ttl=float(config.get("lease_seconds") or LEASE_TTL))
    return StreamHost(fp, store, stream_config, region=region, lock=lock, connect_timeout=connect_timeout,
                      leases=leases)


def published(config: Any) -> tuple[list[str], list[str]]:
    """The names of the streams and data streams ``config`` resolves, as a host publishes them (a
    damaged home file: the server's flags alone)."""
    try:
        return list(config.sources()), list(config.data_streams())
    except FaceprintError:
        sources, data_streams = config.overrides()
        return list(sources), list(data_streams)


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
