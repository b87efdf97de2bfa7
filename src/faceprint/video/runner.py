"""The video runner: runs queued jobs in worker processes, one runner per home at a time.

A runner holds an exclusive ``flock`` on ``HOME/video/runner.lock`` while it runs jobs; a process
that cannot take it leaves the jobs to whoever holds it (a server, a Python program and the CLI may
share a home). On taking the lock it recovers the jobs a dead runner left RUNNING: each is
requeued (its partial items deleted) unless it was already started twice, then it FAILS. It then
claims queued jobs, oldest first, up to ``workers`` at a time; each runs in a worker process of
its own (a fresh interpreter: ``python -m faceprint.video.worker``, so nothing of the caller's
``__main__`` is re-run) with its own ``Faceprint``, writing items and progress straight to the
job store. A worker exits by itself when its runner dies (``kill -9`` included). After a
job's final status the runner deletes the job's input copy and posts its notification. Results
past their expiry are swept (rows and input files deleted).

With a PostgreSQL store (``faceprint.video.store_pg``) the jobs are every node's: each node's
runner (one per home, as above) claims queued jobs while it has a free worker, renews the leases of
the jobs it runs every third of a lease, and requeues (or fails) the jobs whose lease lapsed (their
node died); the job's video comes from the database, and its worker is told the store's URL in its
environment (``FACEPRINT_STORE``), never on its command line.

``python -m faceprint.video.runner --home H [--models-dir D] [--workers N] [--exit-when-idle]``
runs a runner in the foreground; :func:`ensure_runner` starts one detached
(the CLI's ``faceprint video start-*`` do) when none holds the lock.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from faceprint.backends import STORE_ENV
from faceprint.errors import FaceprintError
from faceprint.home import FileLock, lock_held, private_file, private_folder
from faceprint.video.analysers import ANALYSERS
from faceprint.video.decode import VideoLimits
from faceprint.video.notify import Notifier
from faceprint.video.store import FAILED, RUNNING, SUCCEEDED, JobRow, JobStore, open_job_store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
"""Times a job is started before a runner's death while it runs fails it."""
ORPHANED = ("The server stopped while the job ran, twice: the job was given up. Start it again; if it "
            "stops the server again, the video may be too large for this machine.")
POLL = 0.5
"""Seconds between a runner's looks at the queue (a Start in this process wakes it at once)."""
LOCK_POLL = 2.0
"""Seconds between tries at the lock while another process holds it."""
YIELD = 2 * LOCK_POLL + 1
"""Seconds an idle runner leaves the lock to others while jobs it cannot run wait (a runner
waiting for the lock tries every ``LOCK_POLL`` seconds)."""
SWEEP_EVERY = 60.0
STOP_GRACE = 10.0
"""Seconds a worker has to stop after it is asked to (then it is killed)."""


def video_folder(home: Path) -> Path:
    return Path(home) / "video"


def store_path(home: Path) -> Path:
    return video_folder(home) / "jobs.db"


class RunnerLock(FileLock):
    """The home's runner lock: ``flock`` on ``HOME/video/runner.lock``."""

    def __init__(self, home: Path) -> None:
        super().__init__(private_folder(video_folder(home)) / "runner.lock")


def lock_free(home: Path) -> bool:
    """True if no runner holds ``home``'s lock now."""
    return not lock_held(video_folder(home) / "runner.lock")


@dataclasses.dataclass(frozen=True)
class RunnerSettings:
    workers: int = 1
    models_dir: Path | None = None
    buckets: Any = None
    """Copies ``Video.S3Object`` videos (``copy_video``); without it, S3 jobs are left to a runner that has it."""
    analysers: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(ANALYSERS))
    worker_threads: int = 0
    """Inference threads in each worker (0: the cores divided among the workers)."""
    exit_when_idle: bool = False


class VideoRunner:
    """Runs the jobs of ``store`` (see the module's docstring). ``clock`` dates starts and ends and
    decides expiry; ``notifier`` posts completion notifications."""

    def __init__(self, home: Path, store: JobStore, settings: RunnerSettings | None = None,
                 clock: Callable[[], float] = time.time, notifier: Notifier | None = None) -> None:
        self.home = Path(home)
        self.store = store
        self.settings = settings or RunnerSettings()
        self.clock = clock
        self.notifier = notifier or Notifier(store.notified, clock=clock)
        self.lock = RunnerLock(self.home)
        self.kinds = ("path", "input", "s3") if self.settings.buckets is not None else ("path", "input")
        self._runs: dict[str, _JobRun] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = float("-inf")
        self._last_lease = float("-inf")

    # -- life ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run in a background thread of this process (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="faceprint-video-runner", daemon=True)
            self._thread.start()
            atexit.register(self.close)  # a program that ends without close() requeues its running jobs

    def wake(self) -> None:
        """A job was queued: look at the queue now."""
        self._wake.set()

    def stop(self) -> None:
        """Ask :meth:`run` to return (from a signal handler or another thread)."""
        self._stop.set()
        self._wake.set()

    def close(self, timeout: float = STOP_GRACE + 5) -> None:
        """Stop: running jobs are asked to stop and requeued for the next runner; the lock is released."""
        self.stop()
        atexit.unregister(self.close)
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Take the lock (or wait for it), then run jobs until :meth:`stop` (or, with
        ``exit_when_idle``, until nothing is left that this runner can run)."""
        if self.store.lease_seconds:
            threading.Thread(target=self._heartbeat, name="faceprint-video-leases", daemon=True).start()
        try:
            while not self._stop.is_set():
                try:
                    if self._turn():
                        return
                except Exception:  # the job store out of reach for a while (a PostgreSQL store's server)
                    log.exception("The video runner could not use the job store; trying again in %s s.", LOCK_POLL)
                    self._stop.wait(LOCK_POLL)
        finally:
            self._shutdown()

    def _turn(self) -> bool:
        """One look at the lock and the queue (then a wait); True once this runner is done."""
        if not self.lock.held and not self._take_lock():
            if self.settings.exit_when_idle:
                return True
            self._stop.wait(LOCK_POLL)
            return False
        self._step()
        if self.settings.exit_when_idle and self._idle() and self._leave():
            return True
        if self._idle() and self._others_wait():
            self.lock.release()  # for a runner that can fetch them
            self._stop.wait(YIELD)
            return False
        self._wake.wait(POLL)
        self._wake.clear()
        return False

    def _take_lock(self) -> bool:
        if not self.lock.acquire():
            return False
        self._recover()
        return True

    def _recover(self) -> None:
        """Requeue (or fail) the jobs of dead runners; send the notifications no one is sending."""
        for row in self.store.recover(self.clock(), MAX_ATTEMPTS, ORPHANED):
            log.warning("Job %s failed: its runner died while it ran, twice.", row.job_id)
            self.store.delete_input(row.job_id)  # notified below, with the others pending
        self._send_pending()

    def _send_pending(self) -> None:
        for row in self.store.pending_notifications():
            self.notifier.notify(row)

    def _leases(self) -> None:
        """A store shared by several nodes (PostgreSQL): look for jobs whose node died (lease lapsed)
        and notifications no node sends, every third of a lease."""
        lease = self.store.lease_seconds
        if not lease or time.monotonic() - self._last_lease < lease / 3:
            return
        self._last_lease = time.monotonic()
        self._recover()

    def _heartbeat(self) -> None:
        """A thread of its own renews the leases of this runner's jobs every third of a lease, so that
        a long sweep or claim on the runner's thread never lets them lapse."""
        lease = self.store.lease_seconds
        assert lease
        while not self._stop.wait(lease / 3):
            try:
                self.store.renew([run.row.owner for run in list(self._runs.values()) if run.row.owner])
            except Exception:  # the database out of reach: the next beat tries again (the lease may lapse)
                log.exception("The video runner could not renew its jobs' leases.")

    def _idle(self) -> bool:
        return not self._runs and self.store.claimable(self.kinds) == 0

    def _others_wait(self) -> bool:
        """Queued jobs that this runner cannot run (S3 videos, and it has no buckets) while it is
        idle: it leaves the lock to a runner that may (a server's), or they would wait for as long
        as this process lives."""
        return "s3" not in self.kinds and self.store.claimable(("s3",)) > 0

    def _leave(self) -> bool:
        """Release the lock; True unless a job was queued meanwhile (then the lock is taken again).
        Looking after releasing closes the gap with a Start that saw the lock held."""
        self.lock.release()
        if self.store.claimable(self.kinds) == 0:
            return True
        return not self._take_lock()

    def _step(self) -> None:
        now = self.clock()
        if now - self._last_sweep >= SWEEP_EVERY:
            self._last_sweep = now
            for job_id in self.store.sweep(now):
                log.info("Job %s expired: deleted.", job_id)
        for job_id in [j for j, r in self._runs.items() if not r.is_alive()]:
            del self._runs[job_id]
        self._leases()
        while len(self._runs) < max(1, self.settings.workers):
            row = self.store.claim(uuid.uuid4().hex, self.clock(), self.kinds)
            if row is None:
                break
            run = _JobRun(self, row)
            self._runs[row.job_id] = run
            run.start()

    def _shutdown(self) -> None:
        self._stop.set()
        for run in list(self._runs.values()):
            run.cancel()
        for run in list(self._runs.values()):
            run.join()
        self._runs.clear()
        self.notifier.close()
        self.lock.release()

    # -- one job's end ------------------------------------------------------------------------------

    def settle(self, row: JobRow, exit_code: int | None, cancelled: bool) -> None:
        """After the worker of ``row`` exited: fail it if it died without a final status, or give it
        back to the queue if this runner is stopping; then the job's end (input deleted, notification)."""
        current = self.store.get(row.job_id)
        if current is None:
            return
        if current.status == RUNNING and current.owner == row.owner:
            if cancelled:
                self.store.release(row.job_id, row.owner)
                if row.source_kind == "s3":
                    self.store.delete_input(row.job_id)
                return
            how = f"exit code {exit_code}" if exit_code is None or exit_code >= 0 else f"signal {-exit_code}"
            self.store.finish(row.job_id, row.owner, FAILED,
                              f"The worker process running the job stopped unexpectedly ({how}).", self.clock())
            current = self.store.get(row.job_id)
        if current is not None and current.status in (SUCCEEDED, FAILED):
            self._finalize(current)

    def _finalize(self, row: JobRow) -> None:
        if row.source_kind in ("input", "s3"):
            self.store.delete_input(row.job_id)
        if self.store.shared:  # claimed from the store, so that one node sends it
            self._send_pending()
        else:
            self.notifier.notify(row)

    def fail(self, row: JobRow, message: str) -> None:
        if self.store.finish(row.job_id, row.owner, FAILED, message, self.clock()):
            final = self.store.get(row.job_id)
            if final is not None:
                self._finalize(final)

    def worker_job(self, row: JobRow, path: Path) -> dict[str, Any]:
        """What a worker process is told (JSON on its stdin)."""
        cores = os.cpu_count() or 1
        threads = self.settings.worker_threads or max(1, cores // max(1, self.settings.workers))
        return {"job_id": row.job_id, "owner": row.owner, "analyser": self.settings.analysers[row.api],
                "path": str(path), "params": row.params, "profile": row.profile, "home": str(self.home),
                "models_dir": str(self.settings.models_dir) if self.settings.models_dir else None,
                "limits": row.limits, "threads": threads,
                "db": str(self.store.path) if self.store.path is not None else None}  # None: FACEPRINT_STORE


class _Cancelled(Exception):
    """The job's run was cancelled while its video was being fetched."""


class _JobRun(threading.Thread):
    """One job on its way through a worker process: fetch the S3 input, run the worker, settle."""

    def __init__(self, runner: VideoRunner, row: JobRow) -> None:
        super().__init__(name=f"faceprint-video-job-{row.job_id[:8]}", daemon=True)
        self.runner = runner
        self.row = row
        self._process: subprocess.Popen | None = None
        self._cancelled = threading.Event()
        self._cancel_time = 0.0

    def cancel(self) -> None:
        self._cancel_time = time.monotonic()
        self._cancelled.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a defect here must not leave the job RUNNING until the next runner
            log.exception("Running job %s failed", self.row.job_id)
            self.runner.fail(self.row, f"The job failed on an internal error ({type(exc).__name__}).")

    def _run(self) -> None:
        try:
            path = self._input()
        except _Cancelled:  # the runner is closing: the job goes back to the queue
            self.runner.settle(self.row, None, True)
            return
        except FaceprintError as exc:
            self.runner.fail(self.row, f"The video could not be fetched: {exc.message}")
            return
        except OSError as exc:
            self.runner.fail(self.row, f"The video could not be fetched ({exc.strerror or type(exc).__name__}).")
            return
        if self._cancelled.is_set():
            self.runner.settle(self.row, None, True)
            return
        exit_code = self._work(path)
        self.runner.settle(self.row, exit_code, self._cancelled.is_set())

    def _input(self) -> Path:
        row, store = self.row, self.runner.store
        if row.source_kind == "path":
            return Path(row.source)
        if row.source_kind == "input":
            return store.fetch_input(row.job_id, self._copying)  # another node's Start: from the database
        if row.source_kind == "s3":
            private_folder(store.inputs)
            store.delete_input(row.job_id)
            limits = VideoLimits(**row.limits)
            self.runner.settings.buckets.copy_video(row.s3_object, store.input_path(row.job_id), limits.max_bytes,
                                                    self._copying)
        return store.input_path(row.job_id)

    def _copying(self, copied: int) -> None:
        """After each piece of an S3 video's copy: a closing runner stops a long copy at once."""
        if self._cancelled.is_set():
            raise _Cancelled

    def _work(self, path: Path) -> int | None:
        job = json.dumps(self.runner.worker_job(self.row, path))
        store = self.runner.store
        env = {**os.environ, STORE_ENV: store.url} if store.shared else None  # not on its command line
        process = subprocess.Popen([sys.executable, "-m", "faceprint.video.worker", "--parent", str(os.getpid())],
                                   stdin=subprocess.PIPE, close_fds=True, env=env)
        self._process = process
        if self._cancelled.is_set():
            process.send_signal(signal.SIGTERM)
        try:
            assert process.stdin is not None
            process.stdin.write(job.encode())
            process.stdin.close()
        except OSError:  # it died at once
            pass
        return self._wait(process)

    def _wait(self, process: subprocess.Popen) -> int | None:
        while True:
            try:
                return process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if self._cancelled.is_set() and time.monotonic() - self._cancel_time >= STOP_GRACE:
                    process.kill()
                    return process.wait()


# -- a detached runner -----------------------------------------------------------------------------------


def ensure_runner(home: str | os.PathLike, models_dir: str | os.PathLike | None = None, workers: int = 1) -> None:
    """Start a detached runner for ``home`` (its own session, exiting when idle) unless a runner
    holds the lock. Its log goes to ``HOME/video/runner.log``."""
    home = Path(home)
    if not lock_free(home):
        return
    command = [sys.executable, "-m", "faceprint.video.runner", "--home", str(home), "--exit-when-idle",
               "--workers", str(workers)]
    if models_dir:
        command += ["--models-dir", str(models_dir)]
    log_path = private_file(video_folder(home) / "runner.log")
    with open(log_path, "ab") as log_file:
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                         start_new_session=True, close_fds=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    home = Path(args.home)
    store = open_job_store(private_folder(home), os.environ.get(STORE_ENV))
    runner = VideoRunner(home, store, RunnerSettings(workers=args.workers, models_dir=args.models_dir,
                                                     exit_when_idle=args.exit_when_idle))
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    signal.signal(signal.SIGINT, lambda *_: runner.stop())
    runner.run()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m faceprint.video.runner", description="Run queued video jobs.")
    parser.add_argument("--home", required=True, help="the faceprint home whose jobs to run")
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--exit-when-idle", action="store_true", help="stop once no job is queued or running")
    return parser


if __name__ == "__main__":
    sys.exit(main())
