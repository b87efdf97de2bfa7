"""Face crops and stored probes in PostgreSQL (``faceprint.store.pgblobs``), two nodes on one real
database: what one node keeps the other reads, what one deletes is gone for both, and the deleted
bytes leave the database's table files (looked for after a CHECKPOINT, as
``test_store_postgres_erasure.py`` looks for vectors), the check shown to find them first."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from faceprint.audit.probe_store import Probe
from faceprint.store.pgblobs import PARTITIONS, PgCropStore, PgProbeStore
from pg import PgServer, pg  # noqa: F401

SIZE = 6000
"""Bytes of a test crop: past PostgreSQL's 2 kB inline limit, kept out of line like a real crop."""


def blob(size: int = SIZE) -> bytes:
    return b"\xff\xd8\xff" + os.urandom(size - 3)  # a JPEG's first bytes, then bytes that never compress


def face_id() -> str:
    return str(uuid.uuid4())


def traces(pg: PgServer, url: str, blobs: list[bytes]) -> int:  # noqa: F811
    """How many of ``blobs`` some table file of the database holds (any of three 32-byte pieces)."""
    database = url.split("?")[0].rsplit("/", 1)[1]
    pg.sql("CHECKPOINT", database)
    oid = pg.sql(f"SELECT oid FROM pg_database WHERE datname = '{database}'")[0][0]
    data = b"".join(p.read_bytes() for p in Path(pg.data, "base", str(oid)).iterdir() if p.is_file())
    return sum(any(b[i:i + 32] in data for i in (100, 2100, 4100)) for b in blobs)


@pytest.fixture()
def url(pg: PgServer) -> str:  # noqa: F811
    return pg.database()


def test_a_crop_kept_on_one_node_is_read_and_deleted_through_the_other(url: str) -> None:
    a, b = PgCropStore(url), PgCropStore(url)
    ids, crops = [face_id() for _ in range(3)], [blob() for _ in range(3)]
    for fid, crop in zip(ids, crops, strict=True):
        a.save("people", fid, crop)
    assert b.get("people", ids[0]) == crops[0] and b.has("people", ids[1]) and b.path("people", ids[2]).is_file()
    assert b.path("people", ids[2]).read_bytes() == crops[2]
    assert sorted(b.face_ids("people")) == sorted(ids) and list(b.face_ids("others")) == []
    assert b.delete("people", [ids[0], face_id(), "../not-a-face"]) == 1
    assert a.get("people", ids[0]) is None and not a.path("people", ids[0]).is_file()
    assert b.drop("people") == 2 and list(a.face_ids("people")) == [] and a.drop("people") == 0
    with pytest.raises(ValueError):
        a.save("people", "../x", crops[0])
    with pytest.raises(ValueError):
        a.save("people", ids[0], b"")
    a.close(), b.close()


def test_a_probe_kept_on_one_node_is_found_used_pruned_and_erased_through_the_other(url: str) -> None:
    now = [1000.0]
    a, b = PgProbeStore(url, clock=lambda: now[0]), PgProbeStore(url, clock=lambda: now[0])
    old, new = Probe.of(blob()), Probe.of(b"\x89PNG\r\n\x1a\n" + os.urandom(3000))
    assert a.save(old) and not b.save(old)  # stored once, whichever node searched with it
    now[0] += 86400
    assert a.save(new)
    found = b.find(new.sha256)
    assert found is not None and found.read_bytes() == new.data and b.get(old.sha256) == old.data
    assert b.digests() == sorted([old.sha256, new.sha256]) and b.has(old.sha256) and not b.has("nope")
    assert a.prune(1.5, now=now[0] + 0.6 * 86400) == 1  # the old one, last used 1.6 days before
    assert b.get(old.sha256) is None and b.find(old.sha256) is None
    assert b.delete(new.sha256) and not a.delete(new.sha256) and a.digests() == []
    a.close(), b.close()


def test_a_probe_used_again_is_kept_from_its_last_use(url: str) -> None:
    now = [1000.0]
    a, b = PgProbeStore(url, clock=lambda: now[0]), PgProbeStore(url, clock=lambda: now[0])
    probe = Probe.of(blob())
    a.save(probe)
    now[0] += 2 * 86400
    assert not b.save(probe)  # a later search on the other node
    assert a.prune(1.0, now=now[0] + 0.5 * 86400) == 0 and a.get(probe.sha256) == probe.data
    a.close(), b.close()


def test_deleted_crops_leave_the_table_files_once_a_share_of_their_partition_is_deleted(
        pg: PgServer, url: str) -> None:  # noqa: F811
    """About 20 crops in each of the 16 partitions: one deleted (1 in 20) leaves its partition as it
    is; four deleted from one partition (past COMPACT_SHARE of it) rewrite that partition alone."""
    a, b = PgCropStore(url), PgCropStore(url)
    crops = {face_id(): blob() for _ in range(20 * PARTITIONS)}
    for fid, crop in crops.items():
        a.save("c", fid, crop)
    database = url.split("?")[0].rsplit("/", 1)[1]
    pg.sql("ANALYZE crops_faces", database)  # the statistics know each partition's rows
    partition, first = pg.sql("SELECT tableoid::regclass::text, min(face_id) FROM crops_faces "
                              "GROUP BY 1 HAVING count(*) BETWEEN 11 AND 40 LIMIT 1", database)[0]
    neighbours = [r[0] for r in pg.sql(f"SELECT face_id FROM {partition} WHERE face_id > '{first}' "
                                       "ORDER BY face_id LIMIT 3", database)]
    doomed = [first, *neighbours]
    assert traces(pg, url, [crops[f] for f in doomed]) == 4

    def uncompacted() -> int:
        return pg.sql(f"SELECT uncompacted FROM crops_state WHERE partition = '{partition}'", database)[0][0]
    assert b.delete("c", [first]) == 1 and uncompacted() == 1  # 1 of 11 or more: not rewritten yet
    assert b.delete("c", neighbours) == 3 and uncompacted() == 0  # 4 of 40 or fewer: rewritten
    assert traces(pg, url, [crops[f] for f in doomed]) == 0
    kept = [crop for fid, crop in crops.items() if fid not in doomed]
    assert traces(pg, url, kept) == len(kept) and all(a.get("c", fid) == crops[fid] for fid in list(crops)[:20]
                                                      if fid not in doomed)
    a.close(), b.close()


def test_compact_erases_a_few_deleted_crops_and_probes_on_demand(pg: PgServer, url: str) -> None:  # noqa: F811
    crops, probes = PgCropStore(url, compact_share=1e9), PgProbeStore(url, compact_share=1e9)  # never by share
    kept, gone = face_id(), face_id()
    kept_crop, gone_crop = blob(), blob()
    crops.save("c", kept, kept_crop)
    crops.save("c", gone, gone_crop)
    kept_probe, gone_probe = Probe.of(blob()), Probe.of(blob())
    probes.save(kept_probe), probes.save(gone_probe)
    crops.delete("c", [gone])
    probes.delete(gone_probe.sha256)
    crops.compact()
    probes.compact()
    assert traces(pg, url, [gone_crop, gone_probe.data]) == 0
    assert traces(pg, url, [kept_crop, kept_probe.data]) == 2
    crops.close(), probes.close()


def test_a_dropped_collection_s_crops_leave_the_table_files(pg: PgServer, url: str) -> None:  # noqa: F811
    store = PgCropStore(url)
    others, dropped = [blob() for _ in range(4)], [blob() for _ in range(4)]
    for crop in others:
        store.save("others", face_id(), crop)
    for crop in dropped:
        store.save("dropped", face_id(), crop)
    assert store.drop("dropped") == 4
    assert traces(pg, url, dropped) == 0 and traces(pg, url, others) == 4
    store.close()


def test_backup_and_restore_carry_the_crops_and_probes_kept_not_the_deleted(pg: PgServer, tmp_path: Path) -> None:  # noqa: F811
    """``faceprint backup`` of a PostgreSQL deployment (pg_dump) holds the crops and probes kept, and
    ``restore`` into another database brings them back; a crop deleted before the backup is not in it."""
    from faceprint.ops.backup import backup
    from faceprint.ops.restore import restore

    source, target = pg.database(), pg.database()
    crops, probes = PgCropStore(source), PgProbeStore(source)
    kept, deleted, probe = (face_id(), blob()), (face_id(), blob()), Probe.of(blob())
    crops.save("c", *kept), crops.save("c", *deleted), probes.save(probe)
    crops.delete("c", [deleted[0]])
    (tmp_path / "home").mkdir()
    backup(tmp_path / "home", source, tmp_path / "backup")
    dump = (tmp_path / "backup" / "store.pgdump").read_bytes()  # bytea in hex, as COPY writes it

    def dumped(data: bytes) -> bool:
        return data[100:132].hex().encode() in dump
    assert dumped(kept[1]) and dumped(probe.data) and not dumped(deleted[1])
    restore(tmp_path / "backup", tmp_path / "restored", target)
    there, probes_there = PgCropStore(target), PgProbeStore(target)
    assert list(there.face_ids("c")) == [kept[0]] and there.get("c", kept[0]) == kept[1]
    assert probes_there.get(probe.sha256) == probe.data
    for store in (crops, probes, there, probes_there):
        store.close()


def test_a_database_out_of_reach_answers_store_unavailable(pg: PgServer) -> None:  # noqa: F811
    from faceprint.store.postgres import StoreUnavailable

    crops, probes = PgCropStore(pg.url("no_such_database")), PgProbeStore(pg.url("no_such_database"))
    with pytest.raises(StoreUnavailable, match="no_such_database"):
        crops.get("c", face_id())
    with pytest.raises(StoreUnavailable):
        probes.save(Probe.of(blob()))
