"""Each collection's index, kept up to date with the store and saved to an index file.

The store is the source of truth. An index is opened from its file when there is one (fast),
else built from the store; either way it is then brought up to date: faces deleted since (by
any process) are removed, faces added since are added. Later calls pull in only what changed,
seen cheaply through the store's per-collection (writes, deletes) counters. Large indexes are
saved again in the background once enough new faces have arrived.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from faceprint.index import files
from faceprint.index.hybrid import CollectionIndex
from faceprint.store import CollectionRow, Store

SAVE_MIN = 20_000
"""Indexes of fewer faces are cheap to build from the store and are not saved."""

log = logging.getLogger(__name__)


@dataclass
class CachedIndex:
    """A collection's index and how much of the store it reflects."""

    index: CollectionIndex
    created: float
    writes: int = -1
    deletes: int = -1
    max_seq: int = 0
    saved_size: int = 0
    saved_at: tuple[int, int] | None = None
    """(writes, deletes) of the store when the index file was last written or read."""


class IndexCache:
    def __init__(self, store: Store, folder: Path, dim: int, **settings: int) -> None:
        self.store, self.folder, self.dim, self.settings = store, folder, dim, settings
        self._cached: dict[str, CachedIndex] = {}
        self._lock = threading.RLock()
        self._saving: set[str] = set()
        self._threads: list[threading.Thread] = []

    def get(self, row: CollectionRow) -> CollectionIndex:
        """The collection's index, up to date with the store as of this call."""
        cid = row.collection_id
        writes, deletes = self.store.generation(cid)
        with self._lock:
            cached = self._cached.get(cid)
            if cached is None or cached.created != row.created:
                cached = self._cached[cid] = self._open(row)
            if cached.deletes != deletes:
                cached.index.keep_only(set(self.store.face_ids(cid)))
                cached.deletes = deletes
            if cached.writes != writes:
                ids, vectors, cached.max_seq = self.store.faces_after(cid, cached.max_seq)
                cached.index.add(ids, vectors)
                cached.writes = writes
            if len(cached.index) >= SAVE_MIN and len(cached.index) - cached.saved_size >= max(
                    SAVE_MIN, cached.saved_size // 5) and cid not in self._saving:
                self._saving.add(cid)
                thread = threading.Thread(target=self._save, args=(cid,), daemon=True, name=f"save-index-{cid}")
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
                thread.start()
            return cached.index

    def removed(self, collection_id: str, face_ids: list[str]) -> None:
        """Faces this process just deleted from the store: gone from every later search."""
        writes, deletes = self.store.generation(collection_id)
        with self._lock:
            cached = self._cached.get(collection_id)
            if cached is None or not face_ids:
                return
            cached.index.remove(face_ids)
            if deletes == cached.deletes + 1:
                cached.deletes = deletes  # ours was the only delete since: nothing to reconcile

    def drop(self, collection_id: str) -> None:
        """The collection is gone: forget its index and delete its file."""
        with self._lock:
            self._cached.pop(collection_id, None)
            files.remove(files.index_path(self.folder, collection_id))

    def wait(self) -> None:
        """Wait for the index files being saved in the background."""
        for thread in list(self._threads):
            thread.join()

    def save_all(self, min_faces: int = 0) -> None:
        """Save every loaded index of ``min_faces`` or more whose file is not current (e.g. after
        a bulk import, before shutting down, or at the end of a one-shot command)."""
        self.wait()
        with self._lock:
            names = [cid for cid, c in self._cached.items()
                     if c.saved_at != (c.writes, c.deletes) and len(c.index) >= min_faces]
        for cid in names:
            self._save(cid)

    def _open(self, row: CollectionRow) -> CachedIndex:
        loaded = files.load(files.index_path(self.folder, row.collection_id), self.dim, **self.settings)
        if loaded is not None:
            index, meta = loaded
            if meta.get("created") == row.created and meta.get("face_model_version") == row.face_model_version:
                return CachedIndex(index, row.created, meta["writes"], meta["deletes"], meta["max_seq"], len(index),
                                   (meta["writes"], meta["deletes"]))
        return CachedIndex(CollectionIndex(self.dim, **self.settings), row.created)

    def _save(self, collection_id: str) -> None:
        try:
            with self._lock:
                cached = self._cached.get(collection_id)
                if cached is None:
                    return
                row = self.store.get_collection(collection_id)
                if row is None or row.created != cached.created:
                    return
                meta = {"created": row.created, "face_model_version": row.face_model_version, "dim": self.dim,
                        "writes": cached.writes, "deletes": cached.deletes, "max_seq": cached.max_seq}
                size, state = len(cached.index), cached.index.frozen()  # consistent with ``meta``
                at = (cached.writes, cached.deletes)
            files.save(files.index_path(self.folder, collection_id), CollectionIndex.arrays(state), meta)
            with self._lock:
                if self._cached.get(collection_id) is cached:
                    cached.saved_size, cached.saved_at = size, at
        except OSError as error:
            log.warning("could not save the index of %s: %s", collection_id, error)
        finally:
            self._saving.discard(collection_id)
