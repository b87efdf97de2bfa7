"""``faceprint doctor``'s index check: the embedded index's saved files against the store's write and
delete generation, or Milvus reachable and holding each collection (see ``faceprint.ops.doctor``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from faceprint.ops.findings import CONNECT_TIMEOUT, FAIL, OK, WARN, Deployment, Finding


def check_index(d: Deployment) -> Iterator[Finding]:
    from faceprint.backends import INDEX_SCHEMES, local_path, open_store, url_scheme

    store = open_store(d.store_url, d.home)
    try:
        rows = _collections(store)
        if d.index_url and url_scheme(d.index_url, INDEX_SCHEMES, "index") == "milvus":
            yield from _milvus(d.index_url, store, rows)
            return
        folder = local_path(d.index_url, "index") if d.index_url else d.home / "indexes"
        for row in rows:
            yield _embedded(folder, store, row)
        if not rows:
            yield Finding("index", OK, "no collections")
    finally:
        getattr(store, "close", lambda: None)()


def _collections(store: Any) -> list[Any]:
    rows, after = [], None
    while page := store.list_collections(after, 1000):
        rows += page
        after = page[-1].collection_id
    return rows


def _embedded(folder: Path, store: Any, row: Any) -> Finding:
    import json

    import numpy as np

    from faceprint.index.files import index_path

    name, faces = f"index {row.collection_id}", store.count_faces(row.collection_id)
    path = index_path(folder, row.collection_id)
    if not path.is_file():
        if not faces:
            return Finding(name, OK, "empty collection, no index file")
        return Finding(name, WARN, f"no index file: rebuilt from the store when first opened ({faces} faces)")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
    except Exception as e:  # noqa: BLE001 - any damage: the index is rebuilt
        return Finding(name, WARN, f"index file unreadable ({type(e).__name__}): rebuilt from the store when opened")
    writes, deletes = store.generation(row.collection_id)
    if meta.get("created") != row.created or meta.get("face_model_version") != row.face_model_version:
        return Finding(name, WARN, "index file of another collection of this id or model: rebuilt when opened")
    if (meta.get("writes"), meta.get("deletes")) == (writes, deletes):
        return Finding(name, OK, f"current ({faces} faces, generation {writes}/{deletes})")
    return Finding(name, WARN, f"index file at generation {meta.get('writes')}/{meta.get('deletes')}, store at "
                               f"{writes}/{deletes} ({faces} faces): caught up from the store when opened")


def _milvus(url: str, store: Any, rows: list[Any]) -> Iterator[Finding]:
    from faceprint.index.milvus import MilvusSettings, milvus_name, parse_url

    c = parse_url(url)
    alias = f"doctor-{id(store)}"
    try:
        socket.create_connection((c["host"], int(c["port"])), timeout=CONNECT_TIMEOUT).close()  # fails fast
        from pymilvus import Collection, connections, utility

        connections.connect(alias=alias, host=c["host"], port=str(c["port"]), user=c["user"],
                            password=c["password"], timeout=CONNECT_TIMEOUT)
    except Exception as e:  # noqa: BLE001 - pymilvus raises its own kinds
        yield Finding("index", FAIL, f"cannot reach Milvus at {c['host']}:{c['port']} ({type(e).__name__})")
        return
    try:
        version = utility.get_server_version(using=alias)
        yield Finding("index", OK, f"Milvus at {c['host']}:{c['port']}, server {version}")
        for row in rows:
            name = milvus_name(c.get("prefix", MilvusSettings.prefix), row.collection_id)
            faces = store.count_faces(row.collection_id)
            if not utility.has_collection(name, using=alias):
                yield Finding(f"index {row.collection_id}", WARN,
                              f"no Milvus collection: filled from the store when first opened ({faces} faces)")
            else:
                rows_held = Collection(name, using=alias).num_entities
                yield Finding(f"index {row.collection_id}", OK, f"{rows_held} rows in Milvus (deleted ones included "
                                                                f"until compaction), {faces} faces in the store")
    finally:
        connections.disconnect(alias)
