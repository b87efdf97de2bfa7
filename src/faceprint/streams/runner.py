"""The stream runner: supervises the home's stream host process (``python -m faceprint.streams.host``).

A server (and a Python program that calls ``fp.streams.start_runner()``) runs one
:class:`StreamRunner`. It spawns the host as a child in its own session, writes the run-time
config (camera URLs, sinks, region) as ONE JSON line on the child's stdin and keeps that pipe open:
the host stops when it reaches end-of-file, so it never outlives the runner's process (``kill -9``
included). A host that dies is started again after 1, 2, 4 ... 30 seconds (back to 1 s once a host
ran a minute); a host that exits with :data:`EXIT_LOCKED` found another host holding the home's lock
(another server worker or program): the runner tries again every 5 seconds, quietly, so exactly one
host runs a home's processors while any of its runners lives. :meth:`StreamRunner.close` closes the
pipe and SIGTERMs the host, then SIGKILLs it after 10 seconds.

Camera URLs carry passwords: they travel on the pipe only, never on a command line.
This module imports nothing heavy (a server imports it at start).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from faceprint.home import FileLock, private_file, private_folder
from faceprint.streams.config import host_lock_path, host_running

__all__ = ["EXIT_LOCKED", "HostLock", "StreamRunner", "host_lock_path", "host_running"]

log = logging.getLogger(__name__)

EXIT_LOCKED = 3
"""The host's exit code when another process holds ``HOME/streams/host.lock``."""
LOCK_RETRY = 5.0
"""Seconds between tries while another host holds the lock."""
BACKOFF = (1.0, 30.0)
"""First and longest wait (seconds) before a dead host is started again (doubling)."""
STEADY = 60.0
"""A host that ran this long resets the back-off."""
KILL_AFTER = 10.0
"""Seconds a host has to stop after SIGTERM (then SIGKILL)."""
MALLOC_ARENAS = "2"
"""glibc's malloc arenas in the host (``MALLOC_ARENA_MAX``, unless the environment sets it): with the
default (8 per core) the host's many decoder and sink threads each grew an arena and its memory
rose for the first hour of a soak; two keep it flat (benchmarks/streams_soak.py)."""


class HostLock(FileLock):
    """The home's host lock: ``flock`` on ``HOME/streams/host.lock``."""

    def __init__(self, home: Path) -> None:
        super().__init__(host_lock_path(home))


class StreamRunner:
    """Supervises the stream host child of ``home`` (see the module's docstring). ``sources`` and
    ``data_streams`` are the server's ``--stream``/``--data-stream`` maps (merged by the host over the
    home's own); ``threads`` the host's inference threads (0: the host's default); ``log_path``, when
    given, takes the host's output (else it shares this process's stderr)."""

    def __init__(self, home: Path, *, models_dir: Path | None = None, profile: str = "fast", region: str = "us-east-1",
                 sources: Mapping[str, str] | None = None, data_streams: Mapping[str, Sequence[str]] | None = None,
                 threads: int = 0, log_path: Path | None = None, connect_timeout: float = 30.0,
                 store_url: str | None = None, lease_seconds: float | None = None) -> None:
        self.home = Path(home)
        self.models_dir = Path(models_dir) if models_dir else None
        self.profile = profile
        self.threads = threads
        self.log_path = log_path
        self.store_url = store_url
        self.config: dict[str, Any] = {
            "sources": dict(sources or {}),
            "data_streams": {name: list(specs) for name, specs in (data_streams or {}).items()},
            "region": region,
            "connect_timeout": connect_timeout,
        }
        if lease_seconds is not None:  # the host's leases on a shared store (faceprint.streams.leases)
            self.config["lease_seconds"] = lease_seconds
        self._config_line = (json.dumps(self.config) + "\n").encode()  # a value that is not JSON fails here, now
        self.starts = 0
        """Hosts started so far (tests and metrics read it)."""
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """The running host's process id, if one runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "faceprint.streams.host", "--home", str(self.home), "--profile", self.profile]
        if self.models_dir is not None:
            command += ["--models-dir", str(self.models_dir)]
        if self.threads > 0:
            command += ["--threads", str(self.threads)]
        return command

    def start(self) -> None:
        """Supervise the host from a daemon thread of this process (idempotent)."""
        with self._lock:
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(target=self._supervise, name="faceprint-stream-runner", daemon=True)
                self._thread.start()

    def close(self, timeout: float = 15.0) -> None:
        """Stop the host (stdin closed and SIGTERM; SIGKILL after 10 s) and the supervision."""
        self._closed.set()
        with self._lock:
            process = self._process
        if process is not None:
            self._terminate(process, min(KILL_AFTER, timeout))
        if self._thread is not None:
            self._thread.join(timeout)

    # -- supervision ---------------------------------------------------------------------------------

    def _supervise(self) -> None:
        delay = BACKOFF[0]
        while not self._closed.is_set():
            began = time.monotonic()
            try:
                code = self._run_once()
            except OSError as exc:  # could not start python at all
                log.error("The stream host could not be started: %s", exc)
                code = None
            except Exception:  # a defect: logged, and the host started again (never a supervision that ends)
                log.exception("Supervising the stream host failed")
                code = None
            if self._closed.is_set():
                return
            if code == EXIT_LOCKED:
                self._closed.wait(LOCK_RETRY)
                delay = BACKOFF[0]
                continue
            if time.monotonic() - began >= STEADY:
                delay = BACKOFF[0]
            log.warning("The stream host stopped (%s); starting it again in %g s.", _how(code), delay)
            self._closed.wait(delay)
            delay = min(delay * 2, BACKOFF[1])

    def _run_once(self) -> int | None:
        with self._output() as output:
            with self._lock:
                if self._closed.is_set():
                    return None
                process = subprocess.Popen(self.command(), stdin=subprocess.PIPE, stdout=output, stderr=output,
                                           close_fds=True, start_new_session=True, env=host_environment(self.store_url))
                self._process = process
                self.starts += 1
            try:
                self._send_config(process)
                return process.wait()
            except BaseException:  # never a host left running unsupervised (nor a zombie)
                self._terminate(process, KILL_AFTER)
                raise
            finally:
                with self._lock:
                    if self._process is process:
                        self._process = None
                _close_quietly(process.stdin)

    def _send_config(self, process: subprocess.Popen) -> None:
        """The config as one JSON line; the pipe stays open (its end tells the host to stop)."""
        assert process.stdin is not None
        try:
            process.stdin.write(self._config_line)
            process.stdin.flush()
        except (OSError, ValueError):  # it died at once (another host holds the lock), or close() closed the pipe
            pass

    @contextlib.contextmanager
    def _output(self):
        if self.log_path is None:
            yield None
            return
        private_folder(self.log_path.parent)
        with open(private_file(self.log_path), "ab") as out:
            yield out

    @staticmethod
    def _terminate(process: subprocess.Popen, grace: float) -> None:
        _close_quietly(process.stdin)
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning("The stream host did not stop within %g s: killed.", grace)
            process.kill()
            process.wait()


def _close_quietly(stream: IO[bytes] | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError):
            stream.close()


def _how(code: int | None) -> str:
    if code is None:
        return "not started"
    return f"exit code {code}" if code >= 0 else f"signal {-code}"


def host_environment(store_url: str | None = None) -> dict[str, str]:
    """The host's environment: this process's, with :data:`MALLOC_ARENAS` unless already set, and
    ``FACEPRINT_STORE`` set to ``store_url`` when given (the host's store: its URL never on a command line)."""
    from faceprint.backends import STORE_ENV

    return {"MALLOC_ARENA_MAX": MALLOC_ARENAS, **os.environ, **({STORE_ENV: store_url} if store_url else {})}
