"""Each collection's index, kept up to date with the store and saved to an index file.

The store is the source of truth. An index is opened from its file when there is one (fast),
else built from the store; either way it is then brought up to date: faces deleted since (by
any process: the store keeps a log of deleted face ids) are removed, faces added since are
added. Later calls pull in only what changed, seen cheaply through the store's per-collection
(writes, deletes) counters. Large indexes are saved again in the background once enough new
faces have arrived. Each collection has its own lock, so opening or catching up a large one
never holds up searches of the others.

An index file never keeps deleted faces: a delete removes the collection's file at once, from
whichever process deletes (the index need not be loaded there); a file is written without the
rows of removed faces; a save that a delete overtook removes what it wrote; a file found holding
deleted faces (its writer died before removing it, or an older faceprint wrote it) is removed
when it is opened. The process that deleted writes a new file once no delete has come for
``REWRITE_AFTER`` seconds (if the index is large enough to be worth a file), and every process
when it saves its indexes; until then the next process to open the collection builds it from the
store (at 1M faces about twice as long as from a file) and saves a current file itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from faceprint.index import files
from faceprint.index.hybrid import CollectionIndex
from faceprint.store import CollectionRow, Store

SAVE_MIN = 20_000
"""Indexes of fewer faces are cheap to build from the store and are not saved in the background."""

BATCH = 50_000
"""Faces read from the store at a time when an index catches up."""

REWRITE_AFTER = 60.0
"""Seconds without a delete before the deleting process writes the file a delete removed (a stream
of deletes does not rewrite a large file each time)."""

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
    erased: float | None = None
    """When a delete made here last removed the index file (None: since written again)."""
    erasures: int = 0
    """Deletes made here that removed the file: a save they overtook must not leave its file."""

    def grown(self) -> bool:
        """Enough new faces since the file was written to be worth writing it again."""
        size = len(self.index) if self.index is not None else 0
        return size >= SAVE_MIN and size - self.saved_size >= max(SAVE_MIN, self.saved_size // 5)


class IndexCache:
    def __init__(self, store: Store, folder: Path, dim: int, *, clock: Callable[[], float] = time.monotonic,
                 **settings: int) -> None:
        self.store, self.folder, self.dim, self.settings, self.clock = store, folder, dim, settings, clock
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
            if cached.grown() and not cached.saving and self._quiet(cached):
                self._save_later(cid, cached)
            return cached.index

    def _quiet(self, cached: CachedIndex) -> bool:
        return cached.erased is None or self.clock() - cached.erased >= REWRITE_AFTER

    def removed(self, collection_id: str, face_ids: list[str]) -> None:
        """Faces this process just deleted from the store: gone from every later search, and their
        vectors gone from disk (the index file is removed, loaded here or not)."""
        if not face_ids:
            return
        with self._lock:
            cached = self._cached.get(collection_id)
        if cached is not None:
            with cached.lock:
                if cached.index is not None:
                    cached.index.remove(face_ids)
                    if self.store.generation(collection_id)[1] == cached.deletes + 1:
                        cached.deletes += 1  # ours was the only delete since: no second pass to reconcile
                cached.saved_size, cached.saved_at = 0, None  # no file: written again once deletes pause
                cached.erased, cached.erasures = self.clock(), cached.erasures + 1
        files.erase(files.index_path(self.folder, collection_id))

    def drop(self, collection_id: str) -> None:
        """The collection is gone: forget its index and delete its file."""
        with self._lock:
            self._cached.pop(collection_id, None)
        files.erase(files.index_path(self.folder, collection_id))

    def wait(self) -> None:
        """Wait for the index files being saved in the background."""
        for thread in list(self._threads):
            thread.join()

    def save_all(self, min_faces: int = 0, grown_only: bool = False) -> None:
        """Save the loaded indexes of ``min_faces`` or more whose file is not current (e.g. after
        a bulk import or before shutting down); ``grown_only``: only those that grew enough. A
        file is current if it was written at the store's present (writes, deletes): a delete by
        another process removed it."""
        self.wait()
        with self._lock:
            loaded = [(cid, c) for cid, c in self._cached.items()
                      if c.index is not None and len(c.index) >= min_faces and (c.grown() or not grown_only)]
        todo = [(cid, c) for cid, c in loaded if c.saved_at != self.store.generation(cid)]
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
        path = files.index_path(self.folder, row.collection_id)
        loaded = files.load(path, self.dim, **self.settings)
        if loaded is not None:
            index, meta = loaded
            if meta.get("created") == row.created and meta.get("face_model_version") == row.face_model_version:
                cached.index, cached.writes, cached.deletes, cached.max_seq = (
                    index, meta["writes"], meta["deletes"], meta["max_seq"])
                current = meta["deletes"] == deletes and not meta["deleted_rows"]
                if current and meta["format"] == files.FORMAT:
                    cached.saved_size, cached.saved_at = len(index), (meta["writes"], meta["deletes"])
                elif not current:  # it holds deleted faces: read, it goes (``get`` removes them here and saves anew)
                    files.erase(path)
                # else an older layout: kept until the index is saved anew in this one
                return
        if path.exists():  # unreadable, or another collection's of the same id: it may hold deleted faces
            files.erase(path)
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
        """Write the index without the rows of removed faces; if a delete (here or elsewhere) or the
        collection's deletion overtook the write, remove the file instead."""
        path = files.index_path(self.folder, collection_id)
        try:
            with cached.lock:
                row = self.store.get_collection(collection_id)
                if cached.index is None or row is None or row.created != cached.created:
                    return
                if self.store.generation(collection_id)[1] != cached.deletes:
                    self._reconcile(collection_id, cached)  # not one face deleted elsewhere goes in the file
                meta = {"created": row.created, "face_model_version": row.face_model_version, "dim": self.dim,
                        "writes": cached.writes, "deletes": cached.deletes, "max_seq": cached.max_seq}
                index, size, state = cached.index, len(cached.index), cached.index.frozen()  # as of ``meta``
                at, erasures = (cached.writes, cached.deletes), cached.erasures
            files.save(path, CollectionIndex.arrays(index.compacted(state)), meta)
            with cached.lock:
                if cached.erasures != erasures or not self._current(collection_id, cached, at[1]):
                    files.erase(path)  # faces deleted meanwhile may be in it
                    return
                cached.saved_size, cached.saved_at, cached.erased = size, at, None
        except FileNotFoundError:  # a delete removed the file being written: saved again later
            pass
        except OSError as error:  # e.g. a full disk: not again before the index grows further
            log.warning("could not save the index of %s: %s", collection_id, error)
            cached.saved_size = len(cached.index) if cached.index is not None else 0
        finally:
            cached.saving = False

    def _current(self, collection_id: str, cached: CachedIndex, deletes: int) -> bool:
        """Read after a file is in place: the collection is still the one saved and no face was
        deleted since (a delete committed later removes the file itself)."""
        with self._lock:
            if self._cached.get(collection_id) is not cached:
                return False
        row = self.store.get_collection(collection_id)
        return row is not None and row.created == cached.created and self.store.generation(collection_id)[1] == deletes
