"""Deletion erases in the PostgreSQL store: after DeleteCollection (its partition dropped), after a
delete of ``COMPACT_SHARE`` of a collection (its partition rewritten) and after ``compact()``, no
table file of the database holds a deleted face's vector (any 32 bytes of it), checked after a
CHECKPOINT wrote every page out. Each check is shown to find the vectors first, and still finds
the kept ones after. (WAL segments are not table files: see docs/scale.md.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceprint.store import CollectionRow, FaceRow
from faceprint.store.postgres import COMPACT_SHARE, PostgresStore
from pg import PgServer, pg  # noqa: F401

DIM = 128
PER_COLLECTION = 100


def vectors(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((PER_COLLECTION, DIM)).astype(np.float32)


@pytest.fixture()
def filled(pg: PgServer):  # noqa: F811
    """Collections "a" and "b", their faces added in turns (their rows share pages as a busy store's do)."""
    url = pg.database()
    store = PostgresStore(url)
    found = {"a": vectors(1), "b": vectors(2)}
    for cid in found:
        store.create_collection(CollectionRow(cid, "arn", "v", DIM, 1.0))
    for i in range(PER_COLLECTION):
        for cid, v in found.items():
            store.add_faces([FaceRow(f"{cid}{i}", cid, "img", None, (0.5, 0.5, 0.1, 0.1), 99.0, v[i])])
    yield store, found, url.split("?")[0].rsplit("/", 1)[1]
    store.close()


def traces(pg: PgServer, database: str, rows: np.ndarray) -> int:  # noqa: F811
    """How many of ``rows`` some table file of the database holds (32 bytes of it, whichever)."""
    pg.sql("CHECKPOINT", database)
    oid = pg.sql(f"SELECT oid FROM pg_database WHERE datname = '{database}'")[0][0]
    data = b"".join(p.read_bytes() for p in Path(pg.data, "base", str(oid)).iterdir() if p.is_file())
    return sum(any(row.tobytes()[i:i + 32] in data for i in (0, 200, 480)) for row in rows)


def test_delete_collection_drops_its_faces_files(pg, filled) -> None:  # noqa: F811
    store, found, database = filled
    assert traces(pg, database, found["a"]) == PER_COLLECTION
    assert store.delete_collection("a")
    assert traces(pg, database, found["a"]) == 0 and traces(pg, database, found["b"]) == PER_COLLECTION


def test_a_large_delete_rewrites_the_collection(pg, filled) -> None:  # noqa: F811
    """The last faces added (the lowest in their page, where pruning leaves their bytes) go first."""
    store, found, database = filled
    few = int(PER_COLLECTION * COMPACT_SHARE) // 2
    first, second = range(PER_COLLECTION - few, PER_COLLECTION), range(PER_COLLECTION - 2 * few, PER_COLLECTION - few)
    store.delete_faces("a", [f"a{i}" for i in first])
    assert traces(pg, database, found["a"][first.start:]) > 0  # below the share: their bytes may stay a while
    store.delete_faces("a", [f"a{i}" for i in second])  # the share reached: rewritten
    assert traces(pg, database, found["a"][second.start:]) == 0
    assert traces(pg, database, found["a"][:second.start]) == second.start
    assert traces(pg, database, found["b"]) == PER_COLLECTION
    assert [f.face_id for f in store.get_faces("a", ["a0", f"a{PER_COLLECTION - 1}"])] == ["a0"]


def test_compact_rewrites_a_collection_on_demand(pg, filled) -> None:  # noqa: F811
    store, found, database = filled
    last = PER_COLLECTION - 1
    store.delete_faces("a", [f"a{last}"])
    assert traces(pg, database, found["a"][last:]) == 1
    store.compact("a")
    assert traces(pg, database, found["a"][last:]) == 0 and traces(pg, database, found["a"]) == last


def test_rewriting_one_collection_leaves_the_others_alone(pg, filled) -> None:  # noqa: F811
    """While a collection's partition is locked for a rewrite, reads and writes of another go on:
    queries are planned for their collection's partition alone (no server-side generic plans, which
    would lock every partition)."""
    import threading

    import psycopg

    store, found, database = filled
    (part,) = pg.sql("SELECT part FROM collections WHERE collection_id = 'a'", database)[0]
    with psycopg.connect(pg.url(database)) as locker:
        locker.execute(f"LOCK TABLE faces_{part} IN ACCESS EXCLUSIVE MODE")  # as VACUUM FULL holds it
        answers: list[int] = []

        def other() -> None:
            for i in range(30):  # past psycopg's prepare threshold and the server's five custom plans
                answers.append(store.count_faces("b"))
                store.get_faces("b", [f"b{i}"])
            store.add_faces([FaceRow("b-new", "b", "img", None, (0.5, 0.5, 0.1, 0.1), 99.0, found["b"][0])])

        worker = threading.Thread(target=other, daemon=True)
        worker.start()
        worker.join(20)
        blocked = worker.is_alive()
        locker.rollback()
    worker.join(20)
    assert not blocked and answers == [PER_COLLECTION] * 30 and store.count_faces("b") == PER_COLLECTION + 1


def test_creating_a_collection_waits_out_a_long_read_then_gives_up(pg, filled,  # noqa: F811
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A partition is made (or dropped) under the faces table's exclusive lock, tried for LOCK_TIMEOUT
    at a time so that other reads are not held up behind it: a read that ends in time is waited
    out; one that does not makes CreateCollection answer ThrottlingException, with nothing made."""
    import threading
    import time

    import psycopg

    from faceprint.store import postgres

    store, _, database = filled
    with psycopg.connect(pg.url(database)) as reader:
        reader.execute("SELECT count(*) FROM faces WHERE collection_id = 'b'").fetchall()  # a read in progress
        threading.Timer(3.0, reader.rollback).start()  # ends after the first try's 2 s
        started = time.monotonic()
        store.create_collection(CollectionRow("late", "arn", "v", DIM, 1.0))
        assert time.monotonic() - started >= 2.0 and store.get_collection("late") is not None
    monkeypatch.setattr(postgres, "LOCK_TRIES", 2)
    with psycopg.connect(pg.url(database)) as reader:
        reader.execute("SELECT count(*) FROM faces WHERE collection_id = 'b'").fetchall()
        with pytest.raises(postgres.StoreBusy) as caught:
            store.create_collection(CollectionRow("never", "arn", "v", DIM, 1.0))
        assert caught.value.code == "ThrottlingException"
        reader.rollback()
    assert store.get_collection("never") is None and store.count_faces("b") == PER_COLLECTION
