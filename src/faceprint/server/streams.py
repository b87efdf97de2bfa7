"""What ``faceprint serve`` adds for stream processors: the ``--stream NAME=URL`` and
``--data-stream NAME=SINK`` flags, and the supervisor of the home's stream host.

Camera URLs and sink specs may carry passwords and tokens: they are checked here, but an error
names only the flag and the stream's name (a value is shown only redacted), the server never logs
them, and they reach the host on its stdin (``faceprint.streams.runner.StreamRunner``), never on a
command line. With several worker processes, the workers read them from a 0600 file in the server's
private scratch folder rather than from the environment.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faceprint.errors import FaceprintError, InvalidParameterException

log = logging.getLogger("faceprint.server")
NAME = re.compile(r"[a-zA-Z0-9_.-]{1,256}")
"""A Kinesis stream name (video and data streams alike)."""


@dataclass(frozen=True)
class StreamFlags:
    """The server's ``--stream`` and ``--data-stream`` flags, checked."""

    sources: dict[str, str] = field(default_factory=dict)
    data_streams: dict[str, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.sources or self.data_streams)

    def __repr__(self) -> str:  # never the values, even in a traceback or a debug log
        return f"StreamFlags(sources={sorted(self.sources)}, data_streams={sorted(self.data_streams)})"

    def to_json(self) -> str:
        return json.dumps({"sources": self.sources, "data_streams": self.data_streams})

    @classmethod
    def from_json(cls, text: str) -> StreamFlags:
        data = json.loads(text)
        return cls(dict(data["sources"]), {k: list(v) for k, v in data["data_streams"].items()})

    def write(self, path: Path) -> None:
        """Into a new file only its owner may read (for the worker processes)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.to_json())


def stream_flags(streams: Sequence[str], data_streams: Sequence[str]) -> StreamFlags:
    """``--stream NAME=URL`` and ``--data-stream NAME=SINK`` (both repeatable; one data stream may
    have several sinks, a video stream one URL)."""
    from faceprint.streams.config import parse_sink, parse_source_url, redact

    sources: dict[str, str] = {}
    for spec in streams:
        name, url = _split("--stream", "NAME=URL", spec)
        if name in sources:
            raise InvalidParameterException(f"--stream {name} is given twice.")
        sources[name] = _quietly("--stream", name, url, parse_source_url, redact(url))
    sinks: dict[str, list[str]] = {}
    for spec in data_streams:
        name, text = _split("--data-stream", "NAME=SINK", spec)
        _quietly("--data-stream", name, text, parse_sink, "***")
        if text not in sinks.setdefault(name, []):
            sinks[name].append(text)
    return StreamFlags(sources, sinks)


def _split(flag: str, form: str, spec: str) -> tuple[str, str]:
    name, sep, value = spec.partition("=")
    if not sep:  # what was given may be the secret itself
        raise InvalidParameterException(f"{flag}: give {form} (what was given is not shown here).")
    if not value:
        shown = name if NAME.fullmatch(name) else "..."
        raise InvalidParameterException(f"{flag} {shown}: give {form} (the value is empty).")
    if not NAME.fullmatch(name):
        raise InvalidParameterException(f"{flag}: a stream name is 1 to 256 letters, digits, '_', '.' or '-' "
                                        f"(the name given is {len(name)} characters; the value is not shown here).")
    return name, value


def _quietly(flag: str, name: str, value: str, check: Callable[[str], Any], shown: str) -> Any:
    """``check(value)``; its error names the flag and the stream, and never shows ``value`` but redacted."""
    try:
        return check(value)
    except FaceprintError as exc:
        message = _scrub(exc.message, value, shown)
        raise InvalidParameterException(f"{flag} {name}: {message}") from None


def _scrub(message: str, value: str, shown: str) -> str:
    """``message`` without ``value`` or its secret parts (a password, a query: those of 4 characters
    or more, lest every 'u' of the text go for a user 'u'; the checks' own messages are redacted already)."""
    from faceprint.streams.scrub import scrub, url_secrets

    return scrub(message, url_secrets(value, shown))


class RunnerHolder:
    """The home's stream host supervisor for one server: made by ``factory`` (E's ``StreamRunner``),
    started at most once (at startup, or at the first StartStreamProcessor), closed at shutdown."""

    def __init__(self, factory: Callable[[], Any] | None) -> None:
        self.factory = factory
        self.runner: Any = None
        self.closed = False
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        if self.factory is None or self.runner is not None:
            return
        with self._lock:
            if self.runner is not None or self.closed:
                return
            try:
                runner = self.factory()
                runner.start()
            except Exception:  # the API still answers; processors wait for the next start
                log.exception("starting the stream host failed")
                return
            self.runner = runner

    def close(self) -> None:
        with self._lock:
            self.closed = True
            runner, self.runner = self.runner, None
        if runner is not None:
            runner.close()


def runner_factory(home: Path, flags: StreamFlags, *, profile: str | None, region: str,
                   models_dir: Path | None = None, threads: int = 0, store_url: str | None = None,
                   lease_seconds: float | None = None) -> Callable[[], Any]:
    """A function making the StreamRunner of ``home`` with the server's flags (``store_url``: the
    store its host uses, through ``FACEPRINT_STORE``; None: the environment's; ``lease_seconds``:
    its leases' time on a shared store, None: the host's default)."""

    def make() -> Any:
        from faceprint.streams.runner import StreamRunner

        return StreamRunner(home, models_dir=models_dir, profile=profile or default_profile(), region=region,
                            sources=flags.sources, data_streams=flags.data_streams, threads=threads,
                            store_url=store_url, lease_seconds=lease_seconds)

    return make


def default_profile() -> str:
    from faceprint.models.profiles import DEFAULT_PROFILE

    return os.environ.get("FACEPRINT_PROFILE") or DEFAULT_PROFILE


def models_dir() -> Path | None:
    value = os.environ.get("FACEPRINT_MODELS_DIR")
    return Path(value) if value else None


def wants_runner(home: Path, flags: StreamFlags) -> bool:
    """Whether to start the stream host at startup: streams are configured (flags, or the home's
    own ``streams`` folder: sources added with ``faceprint streams add``, processors created)."""
    from faceprint.streams.config import STREAMS_DIR

    return bool(flags) or (home / STREAMS_DIR).is_dir()


def flags_of(settings: Mapping[str, Any]) -> StreamFlags:
    """The flags of a worker process: from the server's private file, if it names one."""
    path = settings.get("streams_file")
    if path:
        return StreamFlags.from_json(Path(path).read_text())
    return stream_flags(settings.get("streams") or [], settings.get("data_streams") or [])
