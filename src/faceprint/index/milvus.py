"""Every collection's vectors in a Milvus server (``--index milvus://HOST:PORT``), behind ``Indexes``.

For deployments past one machine: any number of faceprint processes share one Milvus (2.3.x,
through ``pymilvus`` >= 2.3, < 2.4: ``pip install 'faceprint[milvus]'``). The store stays the
source of truth; Milvus holds a derived, rebuildable copy of the vectors.

- One Milvus collection per faceprint collection, named ``PREFIX`` + the id with characters
  Milvus refuses replaced + a digest of the id (distinct ids never share one). Its description
  records the faceprint collection's ``created`` time, model and dimension: a collection of the
  same id created again (here or by another process) gets a new Milvus collection.
- Created on first use and filled from the store (upserts, one row a face: two nodes that find it
  missing at the same moment both make and fill the same one; a collection whose description is
  this collection's is never dropped, even before its maker has recorded how far it is filled);
  later calls add the faces stored since
  (``store.faces_after``) and delete those deleted since (``store.deleted_since``), seen through
  the store's (writes, deletes) counters, exactly like the embedded ``faceprint.index.cache``.
  How far a collection is filled (highest face ``seq``, deletes applied) is kept in Milvus
  itself (the ``PREFIX + "sync"`` collection), so another process continues from there instead
  of filling it again. When a process first opens a collection it compares the number of faces
  in Milvus with the store's; if they differ (a lost write, a crash between store and index) the
  Milvus collection is repaired from the store: faces missing are added, faces deleted are removed.
- A search asks Milvus for ``max(k * candidates, min_candidates)`` candidates (approximate:
  ``IVF_SQ8``, 8-bit codes, ``nprobe`` of ``nlist`` lists) and ranks them again exactly with the
  stored vectors (``store.get_faces``): similarities are exact, and a face no longer in the store
  is never returned, whatever Milvus still holds.
- Deleting: ``removed`` deletes the faces in Milvus at once (a search that starts after it
  returned no longer sees them). A Milvus delete only masks rows; the vectors leave its segment
  files when the segments are compacted: faceprint flushes and compacts a collection once the
  faces deleted since its last compaction reach ``compact_share`` of it, or when the oldest such
  delete is ``compact_after`` seconds old (checked on the next use of the collection). Deleting
  a collection drops its Milvus collection; Milvus's garbage collector removes the files after
  ``dataCoord.gc.dropTolerance`` (3 hours by default). Milvus's message log keeps inserted rows
  for ``rocksmq.retentionTimeInMinutes`` (3 days by default): set it to the deletion deadline you
  need (docs/privacy.md).
- Milvus not answering is ``IndexUnavailable`` (Rekognition's ``InternalServerError`` with a
  message that names no address; the address and the cause go to the log) for searches and
  index reads. Deletes are the store's first: a delete whose Milvus half fails still succeeds (the
  faces are gone from the store, so from every answer); Milvus deletes them on the next call that
  reaches it (the store's deletion log), and a collection deleted meanwhile is dropped from Milvus
  by the next process that connects (it drops the Milvus collections under its prefix whose
  faceprint collection the store no longer has). So one ``prefix`` is one deployment (one store).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from faceprint.errors import FaceprintError, InvalidParameterException
from faceprint.store import CollectionRow, Store

log = logging.getLogger(__name__)

DEFAULT_PORT = 19530
BATCH = 10_000
"""Faces sent to Milvus in one insert (10,000 x 256-d is 10 MB, well under its 64 MB messages)."""
DELETE_BATCH = 1_000
MAX_TOPK = 16_384
"""The most results one Milvus search answers."""
SCHEMA_VERSION = 1
SEALED = (3, 4)
"""Milvus segment states Sealed and Flushed (``common.SegmentState``)."""


class IndexUnavailable(FaceprintError):
    """The vector index engine does not answer (or refused a call); the store is unchanged."""

    code = "InternalServerError"
    http_status = 500
    safe_message = True


@dataclass(frozen=True)
class MilvusSettings:
    candidates: int = 4
    """Milvus candidates a search ranks exactly: ``k`` times this (at least ``min_candidates``)."""
    min_candidates: int = 64
    index_type: str = "IVF_SQ8"
    """Milvus's index of each sealed segment: ``IVF_SQ8``, ``IVF_FLAT`` (``nlist``, searched with
    ``nprobe``) or ``HNSW`` (``hnsw_m``, ``ef_construction``, searched with ``ef``)."""
    nlist: int = 1024
    nprobe: int = 512
    hnsw_m: int = 16
    ef_construction: int = 128
    ef: int = 128
    consistency: str = "Session"
    """Milvus consistency of searches: a process sees its own writes at once (it adds every face
    it finds new in the store itself; deletes by others are masked by the exact re-rank)."""
    compact_share: float = 0.01
    compact_after: float = 3600.0
    timeout: float = 10.0
    prefix: str = "faceprint_"


@dataclass
class _State:
    """One collection as this process knows it in Milvus."""

    name: str
    collection_id: str
    created: float
    collection: Any  # pymilvus.Collection
    writes: int = -1
    deletes: int = 0
    max_seq: int = 0
    count: int = 0
    pending: int = 0
    pending_since: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def parse_url(url: str) -> dict[str, Any]:
    """``milvus://[USER:PASSWORD@]HOST[:PORT][?prefix=NAME]`` -> pymilvus connection arguments
    (host, port, user, password) and ``prefix``; InvalidParameterException if malformed."""
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as error:
        raise InvalidParameterException(f"The index URL's port is not a port number: {url!r}.") from error
    if parts.scheme.lower() != "milvus" or not parts.hostname or parts.path not in ("", "/") or parts.fragment:
        raise InvalidParameterException(f"The Milvus index URL must be milvus://HOST[:PORT]; got {url!r}.")
    found = {"host": parts.hostname, "port": port, "user": unquote(parts.username or ""),
             "password": unquote(parts.password or "")}
    for key, value in (p.split("=", 1) if "=" in p else (p, "") for p in parts.query.split("&") if p):
        if key != "prefix" or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", value):
            raise InvalidParameterException(f"The Milvus index URL takes only ?prefix=NAME (letters, digits, _); "
                                            f"got {parts.query!r}.")
        found["prefix"] = value
    return found


def milvus_name(prefix: str, collection_id: str) -> str:
    """A Milvus collection name for a faceprint collection id (letters, digits and _, under 255)."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", collection_id)[:64]
    return f"{prefix}{safe}_{hashlib.sha256(collection_id.encode()).hexdigest()[:16]}"


class MilvusIndexes:
    """``faceprint.index.Indexes`` over a Milvus server: see the module's documentation."""

    def __init__(self, url: str, store: Store, dim: int, *, clock: Callable[[], float] = time.monotonic,
                 **settings: Any) -> None:
        found = parse_url(url)
        if importlib.util.find_spec("pymilvus") is None:
            raise InvalidParameterException("The Milvus index needs pymilvus 2.3: pip install 'faceprint[milvus]'.")
        settings.setdefault("prefix", found.pop("prefix", MilvusSettings.prefix))
        self.store, self.dim, self.clock = store, dim, clock
        self.settings = MilvusSettings(**settings)
        self.address = f"{found['host']}:{found['port']}"
        self._connection = found
        self._alias = f"faceprint-{uuid.uuid4().hex}"
        self._connected = False
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()  # guards ``_states`` and connecting
        self._sync: Any = None

    # -- Indexes -------------------------------------------------------------------------------
    def get(self, row: CollectionRow) -> MilvusIndex:
        """The collection's index, up to date with the store as of this call."""
        cid = row.collection_id
        writes, deletes = self.store.generation(cid)
        state = self._state(row)
        with state.lock, self._calls():
            if state.writes < 0:
                self._open(row, state)
            if state.writes != writes:
                self._catch_up(cid, state)
                state.writes = writes
                deletes = self.store.generation(cid)[1]  # read again after the adds (``_reconcile``)
            if deletes != state.deletes:
                self._reconcile(cid, state)
            self._maybe_compact(state)
        return MilvusIndex(self, cid, state)

    def removed(self, collection_id: str, face_ids: list[str]) -> None:
        """Faces this process just deleted from the store: deleted in Milvus now (gone from every
        later search), compacted away later (see the module's documentation)."""
        if not face_ids:
            return
        row = self.store.get_collection(collection_id)
        if row is None:
            return
        state = self._state(row)
        try:
            if state.collection is None:  # not opened here: opening it applies the store's deletes
                self.get(row)
                return
            with state.lock, self._calls():
                self._delete(state, face_ids)
                if state.writes >= 0 and self.store.generation(collection_id)[1] == state.deletes + 1:
                    state.deletes += 1  # ours was the only delete since: nothing more to reconcile
                    self._mark(state)
                self._maybe_compact(state)
        except IndexUnavailable:  # the store has deleted them: no search returns them (exact re-rank)
            log.warning("%d faces deleted from collection %s are deleted in Milvus by the next call that "
                        "reaches it (the store's deletion log)", len(face_ids), collection_id)

    def drop(self, collection_id: str) -> None:
        """The collection is gone: drop its Milvus collection (its files go at Milvus's next
        garbage collection); if Milvus does not answer, the next process to connect drops it."""
        with self._lock:
            self._states.pop(collection_id, None)
        try:
            with self._calls():
                self._drop(milvus_name(self.settings.prefix, collection_id))
        except IndexUnavailable:
            log.warning("the Milvus collection of deleted collection %s is dropped when a faceprint process "
                        "next connects to Milvus", collection_id)

    def _drop(self, name: str) -> None:
        from pymilvus import utility

        if utility.has_collection(name, using=self._alias, timeout=self.settings.timeout):
            utility.drop_collection(name, using=self._alias, timeout=self.settings.timeout)
        self._sync_collection().delete(f"key in {json.dumps([name])}", timeout=self.settings.timeout)

    def _sweep(self) -> None:
        """Drop the Milvus collections (under this prefix) of collections gone from the store: those
        deleted while Milvus did not answer. Run once a process, when it connects."""
        marks = self._sync_collection().query('key != ""', output_fields=["key", "mark"], consistency_level="Strong",
                                              timeout=self.settings.timeout)
        for found in marks:
            mark = _meta(found["mark"]) or {}
            collection_id = mark.get("collection_id")
            if not isinstance(collection_id, str):
                continue
            row = self.store.get_collection(collection_id)
            if row is None or row.created != mark.get("created"):
                log.info("dropping Milvus collection %s: collection %s is gone", found["key"], collection_id)
                self._drop(found["key"])

    def save_all(self, min_faces: int = 0, grown_only: bool = False) -> None:
        """Flush the collections of ``min_faces`` or more used here: their new rows become sealed,
        indexed segments (Milvus has them already; this only makes them faster to search)."""
        with self._lock:
            states = [s for s in self._states.values() if s.writes >= 0 and s.count >= min_faces]
        with self._calls():
            for state in states:
                state.collection.flush(timeout=max(60.0, self.settings.timeout))

    def settle(self, collection_id: str, timeout: float = 600.0) -> None:
        """Flush the collection and wait until every row is in a sealed segment searched through
        the collection's index (before that, Milvus searches new rows brute force or through its
        interim index: ``queryNode.segcore.interimIndex``, nprobe 16 of 128 lists by default)."""
        from pymilvus import utility

        name = milvus_name(self.settings.prefix, collection_id)
        deadline = time.monotonic() + timeout
        with self._calls():
            state = self._states[collection_id]
            state.collection.flush(timeout=timeout)
            utility.wait_for_index_building_complete(name, using=self._alias, timeout=timeout)
            rows = state.collection.num_entities  # deleted rows included, as in the segments
            while time.monotonic() < deadline:
                segments = utility.get_query_segment_info(name, using=self._alias, timeout=self.settings.timeout)
                indexed = [s for s in segments if s.indexID and s.state in SEALED]
                if len(indexed) == len(segments) and sum(s.num_rows for s in indexed) >= rows:
                    return
                time.sleep(0.5)
        raise TimeoutError(f"Milvus collection {name} not indexed and loaded after {timeout:g} s")

    def close(self) -> None:
        from pymilvus import connections

        with self._lock:
            if self._connected:
                connections.disconnect(self._alias)
                self._connected = False
            self._states.clear()
            self._sync = None

    # -- Milvus calls --------------------------------------------------------------------------
    @contextmanager
    def _calls(self) -> Iterator[None]:
        """Connect if need be; any Milvus failure becomes IndexUnavailable (details logged)."""
        import grpc
        from pymilvus.exceptions import MilvusException

        try:
            self._connect()
            yield
        except (MilvusException, grpc.RpcError, OSError, TimeoutError) as error:
            log.error("Milvus at %s failed: %s", self.address, error)
            raise IndexUnavailable("The vector index (Milvus) is unavailable or failed; try again later.") from None

    def _connect(self) -> None:
        from pymilvus import connections

        with self._lock:
            if not self._connected:
                c = self._connection
                connections.connect(alias=self._alias, host=c["host"], port=str(c["port"]), user=c["user"],
                                    password=c["password"], timeout=self.settings.timeout)
                self._connected = True
                self._sweep()

    def _state(self, row: CollectionRow) -> _State:
        cid = row.collection_id
        with self._lock:
            state = self._states.get(cid)
            if state is None or state.created != row.created:
                state = self._states[cid] = _State(milvus_name(self.settings.prefix, cid), cid, row.created, None)
        return state

    def _open(self, row: CollectionRow, state: _State) -> None:
        """Find (or create) the Milvus collection for ``row``, continue from its sync mark, and
        repair it from the store if its face count differs from the store's."""
        from pymilvus import Collection, utility

        timeout = self.settings.timeout
        meta = {"faceprint": SCHEMA_VERSION, "collection_id": row.collection_id, "created": row.created,
                "face_model_version": row.face_model_version, "dim": self.dim}
        writes, deletes = self.store.generation(row.collection_id)
        mark = None
        if utility.has_collection(state.name, using=self._alias, timeout=timeout):
            collection = Collection(state.name, using=self._alias)
            if _meta(collection.description) != meta:  # an earlier collection of the same id: never this one's
                log.info("rebuilding Milvus collection %s (%s): not this collection's", state.name, row.collection_id)
                utility.drop_collection(state.name, using=self._alias, timeout=timeout)
            else:  # this collection's, perhaps being made or filled by another node right now: never dropped
                mark = self._read_mark(state.name)
                if mark is None or mark.get("created") != row.created:
                    mark = {"deletes": deletes, "max_seq": 0}  # no mark yet: fill it again, upserting
        if mark is None:
            state.collection = self._create(state.name, json.dumps(meta, sort_keys=True))
            state.deletes, state.max_seq, state.count = deletes, 0, 0
            self._mark(state)
            return  # ``get`` fills it from the store
        state.collection = Collection(state.name, using=self._alias)
        state.collection.load(timeout=max(60.0, timeout))
        state.deletes, state.max_seq = mark["deletes"], mark["max_seq"]
        self._catch_up(row.collection_id, state)
        if self.store.generation(row.collection_id)[1] != state.deletes:
            self._reconcile(row.collection_id, state)
        state.writes = writes
        state.count = self.store.count_faces(row.collection_id)
        if self._count(state) != state.count:
            self._repair(row.collection_id, state)

    def _create(self, name: str, description: str) -> Any:
        from pymilvus import Collection, CollectionSchema, DataType, FieldSchema

        schema = CollectionSchema([
            FieldSchema("face_id", DataType.VARCHAR, is_primary=True, max_length=64),
            FieldSchema("seq", DataType.INT64),
            FieldSchema("vector", DataType.FLOAT_VECTOR, dim=self.dim)], description=description)
        s = self.settings
        collection = Collection(name, schema, using=self._alias, timeout=s.timeout)
        params = ({"M": s.hnsw_m, "efConstruction": s.ef_construction} if s.index_type == "HNSW"
                  else {"nlist": s.nlist})
        collection.create_index("vector", {"index_type": s.index_type, "metric_type": "IP", "params": params},
                                timeout=s.timeout)
        collection.load(timeout=max(60.0, s.timeout))
        return collection

    def _count(self, state: _State) -> int:
        found = state.collection.query("", output_fields=["count(*)"], consistency_level="Strong",
                                       timeout=self.settings.timeout)
        return int(found[0]["count(*)"])

    # -- keeping up with the store -------------------------------------------------------------
    def _catch_up(self, collection_id: str, state: _State) -> None:
        """Add the faces stored since ``state.max_seq``, a batch at a time."""
        added = False
        while True:
            ids, vectors, max_seq = self.store.faces_after(collection_id, state.max_seq, BATCH)
            if ids:  # a row's seq is its batch's last: a high-water mark for ``_repair``
                self._write(state, ids, [max_seq] * len(ids), vectors)
                state.max_seq, state.count, added = max_seq, state.count + len(ids), True
            if len(ids) < BATCH:
                break
        if added:
            self._mark(state)

    def _write(self, state: _State, ids: list[str], seqs: list[int], vectors: np.ndarray) -> None:
        data = [ids, seqs, np.asarray(vectors, np.float32).reshape(len(ids), self.dim).tolist()]  # 10x faster to send
        # Always an upsert, even into a collection this process just made: another node may be making and
        # filling the same one at the same moment (both find it missing), and one row a face must hold.
        state.collection.upsert(data, timeout=max(60.0, self.settings.timeout))

    def _reconcile(self, collection_id: str, state: _State) -> None:
        """Delete in Milvus the faces deleted from the store since ``state.deletes``. Called after
        adding faces, with the deletes counted after the adds: a face deleted (by another node)
        while this one was adding it is deleted again here, after its add, so no add brings a
        deleted face back into Milvus."""
        _, deletes = self.store.generation(collection_id)  # read first: the log is at least as new
        gone = self.store.deleted_since(collection_id, state.deletes)
        if gone is None:  # the log does not reach back that far
            self._repair(collection_id, state)
            return
        self._delete(state, gone)
        state.deletes = deletes
        self._mark(state)

    def _delete(self, state: _State, face_ids: list[str]) -> None:
        for start in range(0, len(face_ids), DELETE_BATCH):
            batch = face_ids[start:start + DELETE_BATCH]
            state.collection.delete(f"face_id in {json.dumps(batch)}", timeout=self.settings.timeout)
        state.count = max(0, state.count - len(face_ids))
        if not state.pending:
            state.pending_since = self.clock()
        state.pending += len(face_ids)

    def _repair(self, collection_id: str, state: _State) -> None:
        """Make the Milvus collection hold exactly the store's faces (compared id by id)."""
        writes, deletes = self.store.generation(collection_id)
        stored = set(self.store.face_ids(collection_id))
        held = self._held(state)
        extra = [f for f in held if f not in stored]
        missing = [f for f in stored if f not in held]
        log.warning("repairing Milvus collection %s: %d faces missing, %d deleted ones held", state.name,
                    len(missing), len(extra))
        if extra:
            self._delete(state, extra)
        max_seq = max(held.values(), default=0)
        for start in range(0, len(missing), BATCH):
            rows = self.store.get_faces(collection_id, missing[start:start + BATCH])
            if rows:
                self._write(state, [r.face_id for r in rows], [r.seq for r in rows], np.stack([r.vector for r in rows]))
                max_seq = max(max_seq, max(r.seq for r in rows))
        state.max_seq, state.deletes, state.writes = max(state.max_seq, max_seq), deletes, writes
        state.count = len(stored)
        self._mark(state)

    def _held(self, state: _State) -> dict[str, int]:
        """Every face id in the Milvus collection, with its seq."""
        state.collection.flush(timeout=max(60.0, self.settings.timeout))
        iterator = state.collection.query_iterator(batch_size=BATCH, expr='face_id != ""',
                                                   output_fields=["face_id", "seq"], consistency_level="Strong",
                                                   timeout=self.settings.timeout)
        held: dict[str, int] = {}
        try:
            while batch := iterator.next():
                held.update((r["face_id"], int(r["seq"])) for r in batch)
        finally:
            iterator.close()
        return held

    def _maybe_compact(self, state: _State) -> None:
        """Flush and compact once enough deletes (or an old enough one) wait: see the module."""
        s = self.settings
        if not state.pending:
            return
        if state.pending < max(1.0, s.compact_share * state.count) and self.clock() - state.pending_since < \
                s.compact_after:
            return
        state.collection.flush(timeout=max(60.0, s.timeout))  # deletes in growing segments are compacted once sealed
        state.collection.compact(timeout=s.timeout)
        log.info("compacting Milvus collection %s after %d deletes", state.name, state.pending)
        state.pending = 0

    # -- sync marks ----------------------------------------------------------------------------
    def _sync_collection(self) -> Any:
        from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, utility

        if self._sync is not None:
            return self._sync
        name, timeout = f"{self.settings.prefix}sync", self.settings.timeout
        if utility.has_collection(name, using=self._alias, timeout=timeout):
            sync = Collection(name, using=self._alias)
        else:
            schema = CollectionSchema([
                FieldSchema("key", DataType.VARCHAR, is_primary=True, max_length=128),
                FieldSchema("mark", DataType.VARCHAR, max_length=1024),
                FieldSchema("vector", DataType.FLOAT_VECTOR, dim=2)],
                description="faceprint: how far each collection is filled from the store")
            sync = Collection(name, schema, using=self._alias, timeout=timeout)
            sync.create_index("vector", {"index_type": "FLAT", "metric_type": "L2", "params": {}}, timeout=timeout)
        sync.load(timeout=max(60.0, timeout))
        self._sync = sync
        return sync

    def _read_mark(self, name: str) -> dict[str, Any] | None:
        found = self._sync_collection().query(f"key in {json.dumps([name])}", output_fields=["mark"],
                                              consistency_level="Strong", timeout=self.settings.timeout)
        return _meta(found[0]["mark"]) if found else None

    def _mark(self, state: _State) -> None:
        mark = json.dumps({"collection_id": state.collection_id, "created": state.created, "max_seq": state.max_seq,
                           "deletes": state.deletes})
        self._sync_collection().upsert([[state.name], [mark], [[0.0, 0.0]]], timeout=self.settings.timeout)


def _meta(text: str) -> dict[str, Any] | None:
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


class MilvusIndex:
    """A collection's ``VectorIndex`` in Milvus: approximate candidates, ranked exactly."""

    def __init__(self, owner: MilvusIndexes, collection_id: str, state: _State) -> None:
        self.owner, self.collection_id, self.state = owner, collection_id, state

    def __len__(self) -> int:
        """The faces in the collection as this process last saw them (no call to Milvus)."""
        return self.state.count

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        if ids:
            with self.state.lock, self.owner._calls():
                self.owner._write(self.state, list(ids), [0] * len(ids), vectors)
                self.state.count += len(ids)

    def remove(self, ids: list[str]) -> None:
        if ids:
            with self.state.lock, self.owner._calls():
                self.owner._delete(self.state, list(ids))

    def search(self, query: np.ndarray, k: int, min_score: float) -> list[tuple[str, float]]:
        if k <= 0:
            return []
        s = self.owner.settings
        query = np.asarray(query, np.float32).reshape(-1)
        wanted = min(MAX_TOPK, max(k * s.candidates, s.min_candidates))
        params = {"ef": max(s.ef, wanted)} if s.index_type == "HNSW" else {"nprobe": s.nprobe}
        with self.owner._calls():
            found = self.state.collection.search([query.tolist()], "vector", {"metric_type": "IP", "params": params},
                                                 wanted, consistency_level=s.consistency, timeout=s.timeout)
        ids = list(dict.fromkeys(hit.id for hit in found[0]))
        rows = self.owner.store.get_faces(self.collection_id, ids) if ids else []
        if not rows:
            return []
        scores = np.stack([r.vector for r in rows]).astype(np.float32) @ query
        order = np.argsort(-scores, kind="stable")[:k]
        return [(rows[i].face_id, float(scores[i])) for i in order if scores[i] >= min_score]
