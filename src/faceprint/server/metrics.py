"""Prometheus metrics in the text exposition format (version 0.0.4), written here.

Counters of requests (by operation and HTTP status) and errors (by operation and code), a
latency histogram by operation, and requests in flight. With several worker processes each
writes a snapshot to a shared folder when it starts and as each request begins and ends, and
``/metrics`` adds them up, so a scrape sees the whole server whichever worker answers it. A
worker that died (``kill -9`` included) keeps its counters, which never go backwards, but has
no requests in flight and is not counted among the worker processes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Thread-safe counters of one process; ``share_dir`` makes them visible to its siblings."""

    def __init__(self, share_dir: Path | None = None) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = defaultdict(int)
        self.errors: dict[tuple[str, str], int] = defaultdict(int)
        self.histogram: dict[str, list[float]] = {}  # operation -> bucket counts..., +Inf, sum
        self.in_flight = 0
        self.started = time.time()
        self.share_dir = share_dir
        self._file = share_dir / f"metrics-{os.getpid()}.json" if share_dir else None
        self._write_lock = threading.Lock()
        self._seq = self._written = 0
        self._pid, self._pid_start = os.getpid(), process_start(os.getpid())
        self._share()  # counted by the siblings from the start, before its first request

    def begin(self) -> None:
        with self._lock:
            self.in_flight += 1
        self._share()

    def end(self, operation: str, status: int, error_code: str | None, seconds: float) -> None:
        with self._lock:
            self.in_flight -= 1
            self.requests[(operation, str(status))] += 1
            if error_code:
                self.errors[(operation, error_code)] += 1
            counts = self.histogram.setdefault(operation, [0.0] * (len(BUCKETS) + 2))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-2] += 1
            counts[-1] += seconds
        self._share()

    def _share(self) -> None:
        """Write this process's snapshot for its siblings (if there is a shared folder)."""
        if self._file is None:
            return
        with self._lock:
            self._seq += 1
            seq, snapshot = self._seq, self._snapshot()
        self._write(seq, snapshot)

    def _snapshot(self) -> dict[str, Any]:
        return {"requests": [[*k, v] for k, v in self.requests.items()],
                "errors": [[*k, v] for k, v in self.errors.items()],
                "histogram": {k: list(v) for k, v in self.histogram.items()},
                "in_flight": self.in_flight, "started": self.started, "pid": self._pid,
                "pid_start": self._pid_start}

    def _write(self, seq: int, snapshot: dict[str, Any]) -> None:
        assert self._file is not None
        with self._write_lock:
            if seq < self._written:  # a later snapshot is already there
                return
            self._written = seq
            tmp = self._file.with_suffix(".tmp")
            try:
                tmp.write_text(json.dumps(snapshot))
                os.replace(tmp, self._file)
            except OSError:  # metrics never fail a request
                pass

    def render(self) -> str:
        """All processes' metrics (this one's live, the others' last snapshots) as text."""
        with self._lock:
            mine = self._snapshot()
        snapshots = [mine]
        if self.share_dir is not None:
            for path in sorted(self.share_dir.glob("metrics-*.json")):
                if path != self._file:
                    try:
                        snapshots.append(_sibling(path, json.loads(path.read_text())))
                    except (OSError, ValueError, TypeError):
                        continue
        return _exposition(_merge(snapshots))


def process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, from /proc), to tell it from a later process
    given the same pid; None where there is no /proc."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def is_running(pid: int, started: int | None) -> bool:
    """Whether the process that was ``pid`` (started at ``started``, if known) still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # dead, not yet reaped by its parent
    except (OSError, IndexError):
        pass
    now = process_start(pid)
    return started is None or now is None or now == started


def _sibling(path: Path, snapshot: dict[str, Any]) -> dict[str, Any]:
    """A sibling's snapshot as it counts now: a dead one's counters, but none of its requests in flight."""
    pid = int(snapshot.get("pid") or path.stem.split("-")[1])
    alive = is_running(pid, snapshot.get("pid_start"))
    return snapshot | {"alive": alive, "in_flight": snapshot["in_flight"] if alive else 0}


def _merge(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    requests: dict[tuple[str, ...], float] = defaultdict(float)
    errors: dict[tuple[str, ...], float] = defaultdict(float)
    histogram: dict[str, list[float]] = {}
    for snap in snapshots:
        for *labels, value in snap["requests"]:
            requests[tuple(labels)] += value
        for *labels, value in snap["errors"]:
            errors[tuple(labels)] += value
        for op, counts in snap["histogram"].items():
            total = histogram.setdefault(op, [0.0] * len(counts))
            for i, v in enumerate(counts):
                total[i] += v
    return {"requests": requests, "errors": errors, "histogram": histogram,
            "in_flight": sum(s["in_flight"] for s in snapshots), "started": min(s["started"] for s in snapshots),
            "processes": sum(s.get("alive", True) for s in snapshots)}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _exposition(m: dict[str, Any]) -> str:
    out = ["# HELP faceprint_requests_total Requests answered, by Rekognition operation and HTTP status.",
           "# TYPE faceprint_requests_total counter"]
    for (op, status), v in sorted(m["requests"].items()):
        out.append(f'faceprint_requests_total{{operation="{_label(op)}",status="{status}"}} {_num(v)}')
    out += ["# HELP faceprint_errors_total Error answers, by operation and AWS error code.",
            "# TYPE faceprint_errors_total counter"]
    for (op, code), v in sorted(m["errors"].items()):
        out.append(f'faceprint_errors_total{{operation="{_label(op)}",code="{_label(code)}"}} {_num(v)}')
    out += ["# HELP faceprint_request_duration_seconds Time from the request's arrival to its answer.",
            "# TYPE faceprint_request_duration_seconds histogram"]
    for op, counts in sorted(m["histogram"].items()):
        name = _label(op)
        for bound, count in zip(BUCKETS, counts, strict=False):
            out.append(f'faceprint_request_duration_seconds_bucket{{operation="{name}",le="{bound}"}} {_num(count)}')
        out.append(f'faceprint_request_duration_seconds_bucket{{operation="{name}",le="+Inf"}} {_num(counts[-2])}')
        out.append(f'faceprint_request_duration_seconds_sum{{operation="{name}"}} {_num(counts[-1])}')
        out.append(f'faceprint_request_duration_seconds_count{{operation="{name}"}} {_num(counts[-2])}')
    out += ["# HELP faceprint_requests_in_flight Requests being handled now.",
            "# TYPE faceprint_requests_in_flight gauge",
            f"faceprint_requests_in_flight {m['in_flight']}",
            "# HELP faceprint_worker_processes Worker processes running now (a dead one's counts stay included).",
            "# TYPE faceprint_worker_processes gauge",
            f"faceprint_worker_processes {m['processes']}",
            "# HELP faceprint_start_time_seconds When the server started, in seconds since the epoch.",
            "# TYPE faceprint_start_time_seconds gauge",
            f"faceprint_start_time_seconds {m['started']:.3f}"]
    return "\n".join(out) + "\n"


# -- stream processors (HOME/streams/metrics.json, written by the stream host) -----------------------

STREAM_STALE = 10.0
"""Seconds after which the host's metrics are old: its processors are no longer shown connected."""
_STREAM_COUNTERS = (
    ("frames_read", "faceprint_stream_frames_read_total", "Frames decoded from the camera."),
    ("frames_analysed", "faceprint_stream_frames_analysed_total", "Frames analysed (faces detected and searched)."),
    ("frames_dropped", "faceprint_stream_frames_dropped_total",
     "Frames due for analysis that were not analysed: replaced by a newer one before analysis could take "
     "them, or skipped while the reader caught up with the camera."),
    ("reconnects", "faceprint_stream_reconnects_total", "Connection attempts after the first."),
    ("skips", "faceprint_stream_skips_total",
     "Times the reader fell more than a second behind the camera and skipped ahead to a key frame."),
    ("alerts", "faceprint_stream_alerts_total", "Alerts raised (a track's first match)."),
    ("records", "faceprint_stream_records_total", "Frame records handed to the sinks."),
)
_SINK_COUNTERS = (
    ("delivered", "faceprint_stream_sink_delivered_total", "Records a sink delivered."),
    ("failed", "faceprint_stream_sink_failed_total", "Records a sink gave up on after its retries."),
    ("dropped", "faceprint_stream_sink_dropped_total", "Records dropped from a sink's full queue (oldest first)."),
)


def stream_metrics(home: Path, now: float | None = None) -> str:
    """The stream processors' metrics in the exposition format ('' when the home runs none)."""
    try:
        data = json.loads((home / "streams" / "metrics.json").read_text())
        processors = data["processors"]
        updated = float(data.get("updated") or 0.0)
    except (OSError, ValueError, TypeError, KeyError):
        return ""
    if not isinstance(processors, dict):
        return ""
    fresh = (now if now is not None else time.time()) - updated <= STREAM_STALE
    out: list[str] = []
    for key, name, text in _STREAM_COUNTERS:
        out += [f"# HELP {name} {text}", f"# TYPE {name} counter"]
        out += [f'{name}{{processor="{_label(p)}"}} {_num(_value(m, key))}' for p, m in sorted(processors.items())]
    out += ["# HELP faceprint_stream_connected 1 while the processor's camera is connected and its host reports.",
            "# TYPE faceprint_stream_connected gauge"]
    out += [f'faceprint_stream_connected{{processor="{_label(p)}"}} {int(fresh and bool(_get(m, "connected")))}'
            for p, m in sorted(processors.items())]
    out += ["# HELP faceprint_stream_lag_seconds How far behind the camera the reader was at its last frame.",
            "# TYPE faceprint_stream_lag_seconds gauge"]
    out += [f'faceprint_stream_lag_seconds{{processor="{_label(p)}"}} {_num(_value(m, "lag"))}'
            for p, m in sorted(processors.items())]
    out += _stream_latency(processors, "latency", "faceprint_stream_latency_seconds",
                           "Time from a frame's producer time (the camera's clock) to its record handed to the sinks.")
    out += _stream_latency(processors, "alert_latency", "faceprint_stream_alert_latency_seconds",
                           "Time from the producer time of the frame that raised an alert to the alert handed to the "
                           "sinks.")
    out += _sink_lines(processors)
    out += ["# HELP faceprint_stream_metrics_updated_seconds When the stream host last wrote its metrics.",
            "# TYPE faceprint_stream_metrics_updated_seconds gauge", f"faceprint_stream_metrics_updated_seconds "
            f"{updated:.3f}"]
    return "\n".join(out) + "\n"


def _get(m: Any, key: str) -> Any:
    return m.get(key) if isinstance(m, dict) else None


def _value(m: Any, key: str) -> float:
    value = _get(m, key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _stream_latency(processors: dict[str, Any], key: str, name: str, text: str) -> list[str]:
    """A histogram of the host's (``buckets``: upper bounds; ``counts``: per bucket, one more for the
    slower ones), made cumulative as Prometheus has them."""
    out = [f"# HELP {name} {text}", f"# TYPE {name} histogram"]
    for p, m in sorted(processors.items()):
        hist = _get(m, key)
        if not isinstance(hist, dict) or not isinstance(hist.get("buckets"), list):
            continue
        label = _label(p)
        running = 0.0
        counts = hist.get("counts") or []
        for bound, count in zip(hist["buckets"], counts, strict=False):
            running += float(count)
            out.append(f'{name}_bucket{{processor="{label}",le="{bound}"}} {_num(running)}')
        out.append(f'{name}_bucket{{processor="{label}",le="+Inf"}} {_num(_value(hist, "count"))}')
        out.append(f'{name}_sum{{processor="{label}"}} {_num(_value(hist, "sum"))}')
        out.append(f'{name}_count{{processor="{label}"}} {_num(_value(hist, "count"))}')
    return out


def _sink_lines(processors: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, name, text in _SINK_COUNTERS:
        out += [f"# HELP {name} {text}", f"# TYPE {name} counter"]
        for p, m in sorted(processors.items()):
            sinks = _get(m, "sinks")
            for sink, stats in sorted(sinks.items()) if isinstance(sinks, dict) else ():
                out.append(f'{name}{{processor="{_label(p)}",sink="{_label(str(sink))}"}} {_num(_value(stats, key))}')
    return out
