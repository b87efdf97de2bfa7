"""Rewrite now what deleted faces' bytes may still sit in (``faceprint compact``, ``faceprint erase
--compact``; docs/scale.md, "How deletion erases in PostgreSQL").

The embedded store erases as it deletes (SQLite ``secure_delete``, the WAL checkpointed, index files
rewritten): nothing is left to do. The PostgreSQL store removes deleted rows from every read at once,
but their bytes leave the table files only when a partition is rewritten, which a delete does by
itself once a tenth of a collection (or of the crops' or probes' partition) was deleted since the
last rewrite. After erasing one person, an operator who wants the bytes gone now rewrites the
collections (each locked while it is rewritten: reads and writes of it wait) and the crops and
probes tables here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from faceprint.errors import ResourceNotFoundException
from faceprint.store import Store


def compact(store: Store, blobs: dict[str, Any], collection_ids: Iterable[str] | None = None) -> dict[str, Any]:
    """Rewrite ``collection_ids`` (None: every collection) and each of ``blobs`` (name: a crop or probe
    store) that can be rewritten; answers what was (``Collections``, ``Tables``), empty lists where
    the store erases as it deletes."""
    collection_ids = None if collection_ids is None else list(collection_ids)
    for collection_id in collection_ids or []:
        if store.get_collection(collection_id) is None:
            raise ResourceNotFoundException(f"The collection {collection_id!r} does not exist.")
    rewrite = getattr(store, "compact", None)
    done: list[str] = []
    if rewrite is not None:
        for collection_id in collection_ids if collection_ids is not None else _every_collection(store):
            rewrite(collection_id)
            done.append(collection_id)
    tables = [name for name, blob in blobs.items() if getattr(blob, "compact", None) is not None]
    for name in tables:
        blobs[name].compact()
    return {"Collections": done, "Tables": tables}


def _every_collection(store: Store) -> Iterator[str]:
    after = None
    while page := store.list_collections(after, 1000):
        yield from (row.collection_id for row in page)
        after = page[-1].collection_id
