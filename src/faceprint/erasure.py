"""Erasing one person everywhere, and face retention: :class:`Eraser`.

``erase(external_image_id=X)`` (or ``user_id=U``) removes the person from every collection of the
home (or one): the faces with that ExternalImageId (owned by a user or not; a user left with no
face goes too), or the user's faces and the user; their index rows and index files (as
DeleteFaces: ``faceprint.index.cache``), their face crops, their matches in stored-video
face-search results, the stream processors' recent events that name them, and the stored probes
of searches whose candidates included them. It writes one ``Erase`` audit entry saying what was
erased (face ids, user ids, counts; never a vector or an image).

``apply_retention(now)`` deletes the faces older than their collection's ``face_retention_days``
(``faceprint.audit.settings``), with one ``RetentionDeleted`` entry per batch of faces deleted.
:class:`RetentionSchedule` runs it periodically in a long-running process (the server).

Every delete here erases as DeleteFaces does: SQLite ``secure_delete`` and the WAL checkpointed
and truncated (``faceprint.store.database``), index files removed and written again without the
faces, crops and probes overwritten before they are unlinked. docs/privacy.md says what is kept
where and for how long.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceprint.audit.caller import Caller
from faceprint.collections import COLLECTION_ID, EXTERNAL_IMAGE_ID, check_pattern
from faceprint.errors import FaceprintError, InvalidParameterException, ResourceNotFoundException

if TYPE_CHECKING:
    from faceprint.audit.log import AuditLog
    from faceprint.audit.probe_store import ProbeStore
    from faceprint.audit.settings import SettingsStore
    from faceprint.crops import CropStore
    from faceprint.index import Indexes
    from faceprint.store import FaceRow, Store
    from faceprint.streams.config import StreamConfig
    from faceprint.streams.store import ProcessorStore
    from faceprint.video.store import JobStore

BATCH = 4096
"""Faces deleted per store transaction (and per RetentionDeleted entry)."""
DAY = 86400.0
RETENTION_CALLER = Caller("face-retention", "system", purpose="collection face retention period")

Record = Callable[..., "int | None"]
"""``record(operation, caller, collection_id=None, details=None, started=None) -> audit id``
(``faceprint.audit.recorder.Recorder.changed``)."""

log = logging.getLogger(__name__)


@dataclass
class Erased:
    """What one erasure removed, collection by collection."""

    faces: dict[str, list[str]] = field(default_factory=dict)
    users: dict[str, list[str]] = field(default_factory=dict)
    crops: int = 0

    @property
    def face_ids(self) -> list[str]:
        return [f for ids in self.faces.values() for f in ids]

    def collections(self) -> list[dict[str, Any]]:
        return [{"CollectionId": cid, "FaceIds": sorted(self.faces.get(cid, [])), "UserIds": self.users.get(cid, [])}
                for cid in sorted(set(self.faces) | set(self.users))]


class Eraser:
    """Erasure over one home's parts: ``store`` and ``indexes`` (faces and vectors; ``lock`` is the
    collections' delete lock), ``crops``, ``settings`` (face retention), ``record`` (audit entries),
    and, where the home has them, ``log`` (to find the searches whose stored probes go), ``probes``,
    ``jobs`` (stored-video results), ``events`` (stream processors' recent events) and ``snapshots``
    (the folders where file sinks keep match snapshots, ``{ms}-{FaceId}.jpg``). With
    ``probe_retention_days``, face retention also erases the stored probes older than that."""

    def __init__(self, store: Store, indexes: Indexes, lock: threading.RLock, crops: CropStore,
                 settings: SettingsStore, record: Record, *, log: AuditLog | None = None,
                 probes: ProbeStore | None = None, jobs: JobStore | None = None, events: ProcessorStore | None = None,
                 snapshots: Iterable[Path] = (), probe_retention_days: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.indexes, self.lock, self.crops, self.settings = store, indexes, lock, crops, settings
        self.record, self.log, self.probes, self.jobs, self.events = record, log, probes, jobs, events
        self.snapshots, self.probe_retention_days, self.clock = list(snapshots), probe_retention_days, clock

    # -- one person ------------------------------------------------------------------------------
    def erase(self, caller: Caller, external_image_id: str | None = None, user_id: str | None = None,
              collection_id: str | None = None) -> dict[str, Any]:
        """Remove the person with this ExternalImageId, or this UserId, from every collection (or from
        ``collection_id``) and from what names their faces; answers what was erased (and the Erase
        entry's id as ``AuditId``)."""
        started = self.clock()
        self._check(external_image_id, user_id, collection_id)
        erased = Erased()
        if external_image_id is not None:
            self._erase_named(external_image_id, collection_id, erased)
        else:
            assert user_id is not None
            self._erase_user(user_id, collection_id, erased)
        face_ids = erased.face_ids
        video = self.jobs.erase_matches(face_ids, external_image_id) if self.jobs is not None else None
        events = self._erase_events(face_ids, external_image_id)
        snapshots = self._erase_snapshots(face_ids)
        probes = self._erase_probes(face_ids, external_image_id, user_id, set(erased.users))
        summary: dict[str, Any] = {
            **({"ExternalImageId": external_image_id} if external_image_id is not None else {"UserId": user_id}),
            **({"CollectionId": collection_id} if collection_id is not None else {}),
            "Collections": erased.collections(), "FacesErased": len(face_ids),
            "UsersErased": sum(len(u) for u in erased.users.values()), "CropsErased": erased.crops,
            "VideoJobs": video["Jobs"] if video else [], "VideoMatchesErased": video["Matches"] if video else 0,
            "StreamEventsErased": events, "SnapshotsErased": snapshots, "ProbesErased": probes}
        audit_id = self.record("Erase", caller, collection_id, details=summary, started=started)
        return {**summary, "AuditId": audit_id}

    @staticmethod
    def _check(external_image_id: str | None, user_id: str | None, collection_id: str | None) -> None:
        if (external_image_id is None) == (user_id is None):
            raise InvalidParameterException("Give ExternalImageId or UserId (one of them).")
        if external_image_id is not None:
            check_pattern("ExternalImageId", external_image_id, EXTERNAL_IMAGE_ID)
        else:
            from faceprint.users import USER_ID

            check_pattern("UserId", user_id, USER_ID)
        if collection_id is not None:
            check_pattern("CollectionId", collection_id, COLLECTION_ID)

    def _require(self, collection_id: str | None) -> None:
        if collection_id is not None and self.store.get_collection(collection_id) is None:
            raise ResourceNotFoundException(f"The collection {collection_id!r} does not exist.")

    def _erase_named(self, external_image_id: str, collection_id: str | None, erased: Erased) -> None:
        self._require(collection_id)
        by_collection: dict[str, list[FaceRow]] = {}
        for face in self.store.faces_named(external_image_id, collection_id):
            by_collection.setdefault(face.collection_id, []).append(face)
        for cid, faces in by_collection.items():
            self._delete(cid, [f.face_id for f in faces], erased)
            for owner in sorted({f.user_id for f in faces if f.user_id}):
                if not self.store.user_faces(cid, owner) and self.store.delete_user(cid, owner):
                    erased.users.setdefault(cid, []).append(owner)  # a user of none but this person's faces

    def _erase_user(self, user_id: str, collection_id: str | None, erased: Erased) -> None:
        self._require(collection_id)
        for cid in self.store.user_collections(user_id, collection_id):
            self._delete(cid, [f.face_id for f in self.store.user_faces(cid, user_id)], erased)
            if self.store.delete_user(cid, user_id):
                erased.users.setdefault(cid, []).append(user_id)

    def _delete(self, collection_id: str, face_ids: list[str], erased: Erased) -> list[str]:
        """Delete faces (owned by a user or not) as DeleteFaces does, with their crops."""
        deleted: list[str] = []
        for start in range(0, len(face_ids), BATCH):
            with self.lock:
                gone = self.store.delete_faces(collection_id, face_ids[start:start + BATCH])
                self.indexes.removed(collection_id, gone)  # gone from searches; index file erased
            deleted += gone
        if deleted:
            erased.faces.setdefault(collection_id, []).extend(deleted)
        erased.crops += self.crops.delete(collection_id, face_ids)
        return deleted

    # -- what names the erased faces ---------------------------------------------------------------
    def _erase_events(self, face_ids: list[str], external_image_id: str | None) -> int:
        """Delete the stream processors' recent events (the SSE ring) that name the erased faces."""
        if self.events is None or not face_ids and external_image_id is None:
            return 0
        wanted = set(face_ids)
        needles = [*face_ids, *([json.dumps(external_image_id)] if external_image_id is not None else [])]
        return self.events.erase_events(needles, lambda body: names(body, wanted, external_image_id))

    def _erase_snapshots(self, face_ids: list[str]) -> int:
        """Erase the file sinks' match snapshots of the erased faces: the frame shows the person, so
        every name the frame has (one a matched face) goes with it."""
        erased = 0
        for folder in self.snapshots:
            for face_id in face_ids:
                for path in folder.glob(f"*-{face_id}.jpg"):
                    erased += _shred_links(path)
        return erased

    def _erase_probes(self, face_ids: list[str], external_image_id: str | None, user_id: str | None,
                      user_collections: set[str]) -> int:
        """Erase the stored probes of the searches whose candidates included the erased faces (or, for
        a user, the user in a collection it was erased from)."""
        if self.log is None or self.probes is None or not self.probes.digests():
            return 0
        wanted = set(face_ids)
        needles = [*face_ids, *(json.dumps(v) for v in (external_image_id, user_id) if v is not None)]
        if not needles:
            return 0
        digests: set[str] = set()
        for _, body, *_ in self.log.rows():
            if not any(needle in body for needle in needles):
                continue
            entry = json.loads(body)
            probe = entry.get("ProbeSha256")
            if probe and any(_candidate_named(c, wanted, external_image_id, user_id, entry.get("CollectionId"),
                                              user_collections) for c in entry.get("Candidates") or ()):
                digests.add(probe)
        return sum(self.probes.delete(digest) for digest in sorted(digests))

    # -- face retention ----------------------------------------------------------------------------
    def apply_retention(self, now: float | None = None, caller: Caller = RETENTION_CALLER) -> dict[str, Any]:
        """Delete every face stored more than its collection's ``face_retention_days`` before ``now``
        (owned by a user or not; users stay), with its crop; one RetentionDeleted entry per batch.
        Answers ``{"Collections": [{"CollectionId", "RetentionDays", "FacesDeleted", "AuditIds"}],
        "FacesDeleted": total}``."""
        now = self.clock() if now is None else now
        report = []
        for cid, settings in self.settings.all().items():
            days = settings.face_retention_days
            if days is None or self.store.get_collection(cid) is None:
                continue
            deleted, audit_ids = self._retain(cid, days, now - days * DAY, caller)
            report.append({"CollectionId": cid, "RetentionDays": days, "FacesDeleted": deleted, "AuditIds": audit_ids})
        out: dict[str, Any] = {"Collections": report, "FacesDeleted": sum(r["FacesDeleted"] for r in report)}
        if self.probes is not None and self.probe_retention_days is not None:
            out["ProbesErased"] = self.probes.prune(self.probe_retention_days, now)
        return out

    def _retain(self, collection_id: str, days: int, before: float, caller: Caller) -> tuple[int, list[int]]:
        from faceprint.audit.log import iso

        total, audit_ids = 0, []
        while True:
            started = self.clock()
            rows = self.store.faces_before(collection_id, before, BATCH)
            erased = Erased()
            deleted = self._delete(collection_id, [r.face_id for r in rows], erased)
            if deleted:
                total += len(deleted)
                audit_id = self.record("RetentionDeleted", caller, collection_id, started=started, details={
                    "FaceIds": deleted, "FaceCount": len(deleted), "RetentionDays": days,
                    "StoredBefore": iso(before), "CropsErased": erased.crops})
                if audit_id is not None:
                    audit_ids.append(audit_id)
            if len(rows) < BATCH or not deleted:
                return total, audit_ids


def names(value: Any, face_ids: set[str], external_image_id: str | None) -> bool:
    """Whether a record (a stream event, a video item: any JSON) names one of ``face_ids``, or a
    face with ``external_image_id``, in a ``Face`` member."""
    if isinstance(value, dict):
        face = value.get("Face")
        if isinstance(face, dict) and (face.get("FaceId") in face_ids or (
                external_image_id is not None and face.get("ExternalImageId") == external_image_id)):
            return True
        return any(names(v, face_ids, external_image_id) for v in value.values())
    if isinstance(value, list):
        return any(names(v, face_ids, external_image_id) for v in value)
    return False


def _candidate_named(candidate: Any, face_ids: set[str], external_image_id: str | None, user_id: str | None,
                     collection_id: str | None, user_collections: set[str]) -> bool:
    if not isinstance(candidate, dict):
        return False
    if candidate.get("FaceId") in face_ids:
        return True
    if external_image_id is not None and candidate.get("ExternalImageId") == external_image_id:
        return True
    return user_id is not None and candidate.get("UserId") == user_id and (
        collection_id is None or collection_id in user_collections)


def snapshot_folders(config: StreamConfig) -> list[Path]:
    """The folders where the file sinks of ``config``'s data streams keep match snapshots."""
    from faceprint.streams.config import parse_sink

    folders = []
    try:
        for specs in config.data_streams().values():
            for spec in map(parse_sink, specs):
                if spec.kind == "file" and spec.snapshots:
                    folders.append(Path(spec.target).with_name(Path(spec.target).name + ".snapshots"))
    except FaceprintError as error:  # a damaged listing: the rest of the erasure goes on
        log.warning("file sinks' snapshots not erased: %s", error)
    return folders


def _shred_links(path: Path) -> int:
    """Overwrite and remove ``path`` and every other name of the same file in its folder; answers how
    many names were removed."""
    from faceprint.crops import shred

    try:
        inode = path.stat().st_ino
    except FileNotFoundError:
        return 0
    names = [p for p in path.parent.glob("*.jpg") if p != path and _inode(p) == inode]
    removed = int(shred(path))
    for other in names:
        with contextlib.suppress(FileNotFoundError):
            other.unlink()
            removed += 1
    return removed


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


class RetentionSchedule:
    """Runs ``apply(caller=RETENTION_CALLER)`` (``Faceprint.apply_retention``) every ``every`` seconds
    on a daemon thread, from ``start`` until ``stop`` (a long-running process such as the server). A
    run that fails is logged and tried again at the next period."""

    def __init__(self, apply: Callable[..., Any], every: float = 3600.0) -> None:
        self.apply, self.every = apply, every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="face-retention", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.apply(caller=RETENTION_CALLER)
            except Exception:  # noqa: BLE001 - a failed run (disk full, audit unwritable) waits for the next
                log.exception("face retention failed; trying again in %.0f s", self.every)
            self._stop.wait(self.every)
