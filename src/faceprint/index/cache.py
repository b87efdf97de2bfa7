"""Each collection's index, kept up to date with the store and saved to an index file.

The store is the source of truth. An index is opened from its file when there is one (fast),
else built from the store; either way it is then brought up to date: faces deleted since (by
any process: the store keeps a log of deleted face ids) are removed, faces added since are
added. Later calls pull in only what changed, seen cheaply through the store's per-collection
(writes, deletes) counters. Large indexes are saved again in the background once enough new
faces have arrived. Each collection has its own lock, so opening or catching up a large one
never holds up searches of the others.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from faceprint.index import files
from faceprint.index.hybrid import CollectionIndex
from faceprint.store import CollectionRow, Store

SAVE_MIN = 20_000
"""Indexes of fewer faces are cheap to build from the store and are not saved in the background."""

BATCH = 50_000
"""Faces read from the store at a time when an index catches up."""

log = logging.getLogger(__name__)


@dataclass
class CachedIndex:
    """A collection's index and how much of the store it reflects."""

    created: float
    index: CollectionIndex | None = None  # None until opened
    writes: int = -1
    deletes: int = -1
    max_seq: int = 0
    saved_size: int = 0
    saved_at: tuple[int, int] | None = None
    """(writes, deletes) of the store when the index file was last written or read."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    saving: bool = False

    def grown(self) -> bool:
        """Enough new faces since the file was written to be worth writing it again."""
        size = len(self.index) if self.index is not None else 0
        return size >= SAVE_MIN and size - self.saved_size >= max(SAVE_MIN, self.saved_size // 5)


class IndexCache:
    def __init__(self, store: Store, folder: Path, dim: int, **settings: int) -> None:
        self.store, self.folder, self.dim, self.settings = store, folder, dim, settings
        self._cached: dict[str, CachedIndex] = {}
        self._lock = threading.Lock()  # guards ``_cached`` only
        self._threads: list[threading.Thread] = []

    def get(self, row: CollectionRow) -> CollectionIndex:
        """The collection's index, up to date with the store as of this call."""
        cid = row.collection_id
        writes, deletes = self.store.generation(cid)
        with self._lock:
            cached = self._cached.get(cid)
            if cached is None or cached.created != row.created:
                cached = self._cached[cid] = CachedIndex(row.created)
                self._forget_gone()
        with cached.lock:
            if cached.index is None:
                self._open(row, cached, deletes)
            assert cached.index is not None
            if cached.deletes != deletes:
                self._reconcile(cid, cached)
            if cached.writes != writes:
                self._catch_up(cid, cached)
                cached.writes = writes
            if cached.grown() and not cached.saving:
                self._save_later(cid, cached)
            return cached.index

    def removed(self, collection_id: str, face_ids: list[str]) -> None:
        """Faces this process just deleted from the store: gone from every later search."""
        with self._lock:
            cached = self._cached.get(collection_id)
        if cached is None or not face_ids:
            return
        with cached.lock:
            if cached.index is not None:
                cached.index.remove(face_ids)
                if self.store.generation(collection_id)[1] == cached.deletes + 1:
                    cached.deletes += 1  # ours was the only delete since: no second pass to reconcile

    def drop(self, collection_id: str) -> None:
        """The collection is gone: forget its index and delete its file."""
        with self._lock:
            self._cached.pop(collection_id, None)
        files.remove(files.index_path(self.folder, collection_id))

    def wait(self) -> None:
        """Wait for the index files being saved in the background."""
        for thread in list(self._threads):
            thread.join()

    def save_all(self, min_faces: int = 0, grown_only: bool = False) -> None:
        """Save the loaded indexes of ``min_faces`` or more whose file is not current (e.g. after
        a bulk import or before shutting down); ``grown_only``: only those that grew enough."""
        self.wait()
        with self._lock:
            todo = [(cid, c) for cid, c in self._cached.items()
                    if c.index is not None and len(c.index) >= min_faces and c.saved_at != (c.writes, c.deletes)
                    and (c.grown() or not grown_only)]
        for cid, cached in todo:
            with cached.lock:
                if cached.saving:
                    continue
                cached.saving = True
            self._save(cid, cached)

    # -- opening and catching up ---------------------------------------------------------------
    def _open(self, row: CollectionRow, cached: CachedIndex, deletes: int) -> None:
        """From the index file, or empty (to be filled from the store with the faces alive now,
        so that no delete up to ``deletes`` needs replaying)."""
        loaded = files.load(files.index_path(self.folder, row.collection_id), self.dim, **self.settings)
        if loaded is not None:
            index, meta = loaded
            if meta.get("created") == row.created and meta.get("face_model_version") == row.face_model_version:
                cached.index, cached.writes, cached.deletes, cached.max_seq = (
                    index, meta["writes"], meta["deletes"], meta["max_seq"])
                cached.saved_size, cached.saved_at = len(index), (meta["writes"], meta["deletes"])
                return
        cached.index = CollectionIndex(self.dim, **self.settings)
        cached.writes, cached.deletes, cached.max_seq = -1, deletes, 0

    def _reconcile(self, collection_id: str, cached: CachedIndex) -> None:
        """Drop the faces deleted since ``cached.deletes`` (by this process or another)."""
        assert cached.index is not None
        _, deletes = self.store.generation(collection_id)  # read first: the log is at least as new
        gone = self.store.deleted_since(collection_id, cached.deletes)
        if gone is not None:
            cached.index.remove(gone)
        else:  # the log does not reach back that far: compare with every face id
            cached.index.keep_only(set(self.store.face_ids(collection_id)))
        cached.deletes = deletes

    def _catch_up(self, collection_id: str, cached: CachedIndex) -> None:
        """Add the faces stored since ``cached.max_seq``, in batches (bounded memory), quantizing
        once at the end; each batch is added whole or not at all."""
        assert cached.index is not None
        index = cached.index
        first = True
        while True:
            ids, vectors, max_seq = self.store.faces_after(collection_id, cached.max_seq, BATCH)
            if first and len(ids) == BATCH:  # a large catch-up: make room once
                index.reserve(max(0, self.store.count_faces(collection_id) - len(index)))
            first = False
            index.add(ids, vectors, quantize=False)
            cached.max_seq = max_seq
            if len(ids) < BATCH:
                break
        index.quantize()

    def _forget_gone(self) -> None:
        """Forget indexes of collections deleted (or re-created) by other processes."""
        for cid, cached in list(self._cached.items()):
            row = self.store.get_collection(cid)
            if row is None or row.created != cached.created:
                self._cached.pop(cid, None)

    # -- saving --------------------------------------------------------------------------------
    def _save_later(self, collection_id: str, cached: CachedIndex) -> None:
        cached.saving = True
        thread = threading.Thread(target=self._save, args=(collection_id, cached), daemon=True,
                                  name=f"save-index-{collection_id}")
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _save(self, collection_id: str, cached: CachedIndex) -> None:
        path = files.index_path(self.folder, collection_id)
        try:
            with cached.lock:
                row = self.store.get_collection(collection_id)
                if cached.index is None or row is None or row.created != cached.created:
                    return
                meta = {"created": row.created, "face_model_version": row.face_model_version, "dim": self.dim,
                        "writes": cached.writes, "deletes": cached.deletes, "max_seq": cached.max_seq}
                size, state = len(cached.index), cached.index.frozen()  # consistent with ``meta``
                at = (cached.writes, cached.deletes)
            files.save(path, CollectionIndex.arrays(state), meta)
            with self._lock:
                if self._cached.get(collection_id) is not cached:  # dropped meanwhile: no stale file
                    files.remove(path)
                    return
            cached.saved_size, cached.saved_at = size, at
        except OSError as error:  # e.g. a full disk: not again before the index grows further
            log.warning("could not save the index of %s: %s", collection_id, error)
            cached.saved_size = len(cached.index) if cached.index is not None else 0
        finally:
            cached.saving = False
