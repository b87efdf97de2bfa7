"""A video worker process: ``python -m faceprint.video.worker --parent PID``, started by the runner
(:mod:`faceprint.video.runner`) for one job, told the job as JSON on stdin. It runs the job's
analyser with its own ``Faceprint`` through a :class:`StoreContext`, writing items, progress and the
final status straight to the job store (every write conditional on the job still being its run's),
stops when the runner sends SIGTERM, and exits by itself once its runner is gone."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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

from faceprint.backends import STORE_ENV
from faceprint.errors import FaceprintError
from faceprint.processes import exit_with_parent
from faceprint.video.decode import VideoLimits
from faceprint.video.store import FAILED, SUCCEEDED, JobStore, open_job_store

log = logging.getLogger(__name__)



class StoreContext:
    """A :class:`faceprint.video.context.JobContext` writing to the job store: items in batches
    (every ``batch`` items or second), progress at most once a second, and ``cancelled()`` once the
    runner asks the worker to stop (SIGTERM) or the job is no longer this worker's. ``on_progress``
    is also told every progress report (the synchronous CLI draws its progress bar with it)."""

    def __init__(self, store: JobStore, job: dict[str, Any], fp: Any, stop: threading.Event,
                 batch: int = 1000, every: float = 1.0,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
        self.store = store
        self.job_id: str = job["job_id"]
        self.owner: str = job["owner"]
        self.path = Path(job["path"])
        self.params: dict[str, Any] = job["params"]
        self.fp = fp
        self.limits = VideoLimits(**job["limits"])
        self.stop = stop
        self.batch = batch
        self.every = every
        self.on_progress = on_progress
        self.pending: list = []
        self.done = (0, 0)
        self._flushed = self._reported = time.monotonic()
        self.began = time.time()
        self.audit: dict[str, Any] | None = self.params.get("Audit")
        """A face search's audit (its Start entry and caller): its end is recorded with what it matched."""
        self.matched: dict[str, dict[str, Any]] = {}
        """The faces the job matched, each with its best similarity (face searches with an audit only)."""

    def metadata(self, info: Any) -> None:
        body = {"video": dataclasses.asdict(info.metadata()), "audio": [dataclasses.asdict(a) for a in info.audio]}
        self._owned(self.store.set_metadata(self.job_id, self.owner, body))

    def emit(self, items: list) -> None:
        if self.audit is not None:
            self._note_matches(items)
        self.pending.extend(items)
        if len(self.pending) >= self.batch or time.monotonic() - self._flushed >= self.every:
            self.flush()

    def _note_matches(self, items: list) -> None:
        for item in items:
            for match in item.body.get("FaceMatches") or ():
                face, similarity = match.get("Face") or {}, match.get("Similarity", 0.0)
                face_id = face.get("FaceId")
                if face_id and similarity > self.matched.get(face_id, {}).get("Similarity", -1.0):
                    self.matched[face_id] = {"FaceId": face_id, "Similarity": similarity,
                                             **{k: face[k] for k in ("ExternalImageId", "UserId") if face.get(k)}}

    def record_end(self, status: str, message: str | None) -> tuple[str, str | None]:
        """Write a face search's end to the audit log (with the faces it matched): the status and
        message to finish with (FAILED, results withheld, where the entry cannot be written)."""
        if self.audit is None:
            return status, message
        from faceprint.audit.caller import Caller
        from faceprint.errors import AuditUnavailable

        who = self.audit.get("Caller") or {}
        caller = Caller(who.get("Actor") or "unknown", who.get("Kind") or "os", who.get("KeyId"), who.get("Purpose"),
                        who.get("Case"))
        candidates = sorted(self.matched.values(), key=lambda c: -c["Similarity"])
        collection_id = self.params.get("CollectionId")
        size = None
        if status == SUCCEEDED:
            with contextlib.suppress(FaceprintError):  # deleted while the job ran: no size
                size = self.fp.collections.size(collection_id)  # its index is loaded: the job searched it
        try:
            self.fp.recorder.searched(
                "FaceSearchJobCompleted", caller, self.began, collection_id, size,
                float(self.params.get("FaceMatchThreshold", 80.0)), candidates,
                details={"JobId": self.job_id, "StartAuditId": self.audit.get("StartId"), "Status": status,
                         "StatusMessage": message})
        except AuditUnavailable:
            return FAILED, "The job's audit entry could not be written, so its results are withheld."
        return status, message

    def flush(self) -> None:
        items, self.pending = self.pending, []
        self._flushed = time.monotonic()
        if items:
            self._owned(self.store.add_items(self.job_id, self.owner, items))

    def progress(self, frames_done: int, frames_total: int) -> None:
        self.done = (frames_done, frames_total)
        if self.on_progress is not None:
            self.on_progress(frames_done, frames_total)
        now = time.monotonic()
        if now - self._reported >= self.every or frames_done <= 1:
            self._reported = now
            self._owned(self.store.set_progress(self.job_id, self.owner, frames_done, frames_total))

    def cancelled(self) -> bool:
        return self.stop.is_set()

    def _owned(self, still: bool) -> None:
        if not still:  # requeued or finished by someone else: stop at once
            self.stop.set()

    def finish(self, status: str, message: str | None) -> bool:
        done, total = self.done
        if status == SUCCEEDED and total:
            self.store.set_progress(self.job_id, self.owner, done, max(done, total))
        items, self.pending = (self.pending, []) if status == SUCCEEDED else ([], [])
        return self.store.finish(self.job_id, self.owner, status, message, time.time(), items)


def worker_main(parent: int) -> int:
    """A worker process: read the job (JSON) from stdin, run its analyser, write its final status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the runner's to handle
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    exit_with_parent(parent)
    job = json.loads(sys.stdin.read())
    store = JobStore(job["db"]) if job["db"] is not None else open_job_store(job["home"], os.environ.get(STORE_ENV))
    ctx = StoreContext(store, job, None, stop)
    status, message = _analyse(job, ctx)
    if status is not None and not stop.is_set():
        if ctx.audit is not None and ctx.fp is None:  # it failed before its Faceprint was made
            from faceprint.service import Faceprint

            ctx.fp = Faceprint(job["home"], profile=job["profile"], models_dir=job["models_dir"])
        ctx.finish(*ctx.record_end(status, message))
    return 0


def _analyse(job: dict[str, Any], ctx: StoreContext) -> tuple[str | None, str | None]:
    """Run the job's analyser: (final status, StatusMessage), or (None, None) if it was stopped."""
    from faceprint.video.analysers import load
    from faceprint.video.decode import VideoError

    try:
        if ctx.cancelled():
            return None, None
        from faceprint.service import Faceprint

        ctx.fp = Faceprint(job["home"], profile=job["profile"], models_dir=job["models_dir"], threads=job["threads"])
        load(job["analyser"])(ctx)
    except VideoError as exc:
        return FAILED, exc.message
    except FaceprintError as exc:
        return FAILED, exc.message
    except Exception as exc:  # a defect: the job fails with a message, the traceback goes to the log
        log.exception("Job %s failed", job["job_id"])
        return FAILED, f"The job failed on an internal error ({type(exc).__name__}); see the runner's log."
    if ctx.cancelled():
        return None, None
    return SUCCEEDED, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faceprint.video.worker", description="Run one video job "
                                     "(its JSON on stdin); started by faceprint.video.runner.")
    parser.add_argument("--parent", type=int, required=True, metavar="PID", help="exit once this process is gone")
    return worker_main(parser.parse_args(argv).parent)


if __name__ == "__main__":
    sys.exit(main())
