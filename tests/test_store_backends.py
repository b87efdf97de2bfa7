"""The same behaviour from every store: each test runs against the embedded SQLite store and a
real PostgreSQL server (``tests/pg.py``), so that a difference between them is a failing test.

The first part calls the Store protocol itself (synthetic vectors); the second runs Faceprint's
collection, face, user and search operations end to end over a store chosen by URL, on real
faces (analysed once), and compares the two back-ends' whole transcripts."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import FACES, models_dir
from faceprint.backends import open_store
from faceprint.errors import (
    ConflictException,
    IdempotentParameterMismatchException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
)
from faceprint.store import CollectionRow, FaceRow
from pg import pg  # noqa: F401

BACKENDS = ["sqlite", "postgresql"]
DIM = 8


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/faceprint.db"
    return request.getfixturevalue("pg").database()


@pytest.fixture()
def store(store_url: str, tmp_path: Path):
    opened = open_store(store_url, tmp_path / "home")
    yield opened
    if hasattr(opened, "close"):
        opened.close()


def vector(i: int) -> np.ndarray:
    v = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def face(i: int, collection: str = "c", user: str | None = None, ext: str | None = None,
         created: float | None = None) -> FaceRow:
    return FaceRow(f"f{i:03d}", collection, f"img{i // 2}", ext, (0.25 + i / 1000, 0.5, 0.125, 1 / 3), 99.5 - i / 7,
                   vector(i), user, created=created)


def collection(cid: str, created: float = 1.5) -> CollectionRow:
    return CollectionRow(cid, f"arn:aws:rekognition:x:1:collection/{cid}", "6.0", DIM, created)


# -- the Store protocol ---------------------------------------------------------------------------
def test_collections_are_created_once_listed_in_byte_order_and_deleted(store) -> None:
    for cid in ("b", "B", "a.1", "_x", "Z-9", "a"):
        store.create_collection(collection(cid))
    with pytest.raises(ResourceAlreadyExistsException):
        store.create_collection(collection("a"))
    assert store.get_collection("a") == collection("a") and store.get_collection("nope") is None
    assert [c.collection_id for c in store.list_collections(None, 10)] == ["B", "Z-9", "_x", "a", "a.1", "b"]
    assert [c.collection_id for c in store.list_collections("Z-9", 2)] == ["_x", "a"]
    assert store.delete_collection("a") is True and store.delete_collection("a") is False
    store.create_collection(collection("a", created=2.5))  # the id is free again
    assert store.get_collection("a").created == 2.5 and store.count_faces("a") == 0


def test_faces_round_trip_exactly_in_seq_order(store) -> None:
    store.create_collection(collection("c"))
    store.create_collection(collection("d"))
    store.add_faces([face(i, ext="photo.jpg" if i % 2 else None, created=100.0 + i) for i in range(5)])
    store.add_faces([face(9, "d")])
    store.add_faces([face(i) for i in range(5, 7)])  # created: the store's clock
    assert store.count_faces("c") == 7 and store.count_faces("d") == 1 and store.generation("c") == (2, 0)
    listed = store.list_faces("c", 0, 100)
    assert [f.face_id for f in listed] == [f"f{i:03d}" for i in range(7)]
    assert [f.seq for f in listed] == sorted(f.seq for f in listed) and len({f.seq for f in listed}) == 7
    for got, i in zip(listed, range(7), strict=True):
        want = face(i, ext="photo.jpg" if i % 2 and i < 5 else None)
        assert (got.image_id, got.external_image_id, got.box, got.confidence, got.user_id) == (
            want.image_id, want.external_image_id, want.box, want.confidence, None)
        assert got.vector.dtype == np.float32 and got.vector.tobytes() == want.vector.tobytes()
    assert [f.created for f in listed[:5]] == [100.0 + i for i in range(5)]
    assert all(isinstance(f.created, float) and f.created > 1e9 for f in listed[5:])
    page = store.list_faces("c", 0, 3)
    assert [f.face_id for f in store.list_faces("c", page[-1].seq, 3)] == ["f003", "f004", "f005"]
    assert [f.face_id for f in store.get_faces("c", ["f004", "f001", "f009", "zzz"])] == ["f001", "f004"]
    assert store.get_faces("c", []) == [] and store.get_faces("d", ["f009"])[0].collection_id == "d"
    ids, vectors, last = store.faces_after("c", listed[1].seq, 2)
    assert ids == ["f002", "f003"] and vectors.shape == (2, DIM) and last == listed[3].seq
    ids, vectors, last = store.faces_after("c", 0)
    assert len(ids) == 7 and np.array_equal(vectors[6], vector(6)) and last == listed[-1].seq
    assert store.faces_after("c", last) == ([], pytest.approx(np.zeros((0, 0))), last)
    assert sorted(store.face_ids("c")) == [f"f{i:03d}" for i in range(7)]
    assert [f.face_id for f in store.faces_named("photo.jpg")] == ["f001", "f003"]
    assert store.faces_named("photo.jpg", "d") == []
    assert [f.face_id for f in store.faces_before("c", 102.5, 10)] == ["f000", "f001", "f002"]
    assert [f.face_id for f in store.faces_before("c", 102.5, 2)] == ["f000", "f001"]


def test_any_collection_id_is_only_data(store) -> None:
    """The store is below the API's id checks: quotes, semicolons and long ids are data, not SQL
    (PostgreSQL names each collection's partition by number, and quotes the id in its bound)."""
    odd = ["o'brien", 'x"); DROP TABLE faces; --', "ü" * 255, "a" * 300]
    for cid in odd:
        store.create_collection(collection(cid))
        store.add_faces([face(odd.index(cid), cid)])
    assert sorted(c.collection_id for c in store.list_collections(None, 10)) == sorted(odd)
    assert [store.count_faces(cid) for cid in odd] == [1, 1, 1, 1]
    assert all(store.delete_collection(cid) for cid in odd) and store.list_collections(None, 10) == []


def test_writes_to_a_missing_collection_are_refused(store) -> None:
    with pytest.raises(ResourceNotFoundException):
        store.add_faces([face(1, "gone")])
    with pytest.raises(ResourceNotFoundException):
        store.add_faces([], source=("gone", "sha", "done"))
    with pytest.raises(ResourceNotFoundException):
        store.create_user("gone", "u", 1.0)
    assert store.delete_faces("gone", ["f001"]) == [] and store.generation("gone") == (0, 0)
    assert store.deleted_since("gone", 0) is None


def test_imports_record_finished_sources_with_their_faces(store) -> None:
    store.create_collection(collection("c"))
    store.add_faces([face(1), face(2)], source=("c", "sha-1", "indexed"))
    store.add_faces([], source=("c", "sha-2", "no faces"))
    store.add_faces([], source=("c", "sha-2", "no faces again"))  # a retry replaces its record
    assert store.imported("c") == {"sha-1", "sha-2"} and store.count_faces("c") == 2
    assert store.generation("c") == (1, 0)


def test_deletes_are_logged_for_other_processes_indexes(store) -> None:
    store.create_collection(collection("c"))
    store.add_faces([face(i) for i in range(6)])
    assert store.delete_faces("c", ["f004", "nope", "f001", "f004"]) == ["f004", "f001"]  # as asked, found only
    assert store.delete_faces("c", ["nope"]) == [] and store.generation("c") == (2, 1)
    assert store.delete_faces("c", ["f002"]) == ["f002"] and store.generation("c") == (3, 2)
    assert sorted(store.deleted_since("c", 0)) == ["f001", "f002", "f004"]
    assert store.deleted_since("c", 1) == ["f002"] and store.deleted_since("c", 2) == []
    assert store.deleted_since("c", -1) is None  # further back than the log
    assert [f.face_id for f in store.list_faces("c", 0, 10)] == ["f000", "f003", "f005"]
    assert store.count_faces("c") == 3 and store.count_faces("nope") == 0
    assert [f.face_id for f in store.list_faces("c", 0, -1, face_ids=["f005", "f000", "f001"])] == ["f000", "f005"]
    assert [f.face_id for f in store.list_faces("c", 0, 1, face_ids=["f005", "f000"])] == ["f000"]


def test_users_and_their_faces(store) -> None:
    store.create_collection(collection("c"))
    store.create_collection(collection("d"))
    store.add_faces([face(i) for i in range(5)])
    assert store.create_user("c", "bob", 3.0) is True and store.create_user("c", "bob", 4.0) is False
    assert store.create_user("c", "Al", 3.0) and store.create_user("d", "bob", 3.0)
    store.set_user("c", ["f001", "f003", "missing"], "bob")
    store.set_user("c", ["f002"], "Al")
    assert store.user_exists("c", "bob") and not store.user_exists("c", "carol")
    assert store.list_users("c", None, 10) == [("Al", 1), ("bob", 2)]
    assert store.list_users("c", "Al", 1) == [("bob", 2)] and store.count_users("c") == 2
    assert [f.face_id for f in store.user_faces("c", "bob")] == ["f001", "f003"]
    assert store.face_users("c") == {"f001": "bob", "f002": "Al", "f003": "bob"}
    assert [f.face_id for f in store.list_faces("c", 0, 10, user_id="bob")] == ["f001", "f003"]
    assert store.user_collections("bob") == ["c", "d"] and store.user_collections("bob", "d") == ["d"]
    store.set_user("c", ["f003"], None)
    store.put_token("c", "AssociateFaces", "t1", '{"UserId": "bob"}', "{}")
    store.put_token("c", "AssociateFaces", "t2", '{"UserId": "Al"}', "{}")
    assert store.delete_user("c", "bob") is True and store.delete_user("c", "bob") is False
    assert store.face_users("c") == {"f002": "Al"} and store.list_users("c", None, 10) == [("Al", 1)]
    assert store.get_token("c", "AssociateFaces", "t1") is None  # a token naming the user goes with it
    assert tuple(store.get_token("c", "AssociateFaces", "t2")) == ('{"UserId": "Al"}', "{}")


def test_request_tokens_are_kept_per_collection_and_operation(store) -> None:
    store.create_collection(collection("c"))
    assert store.get_token("c", "CreateUser", "t") is None
    store.put_token("c", "CreateUser", "t", "p1", "r1")
    store.put_token("c", "CreateUser", "t", "p2", "r2")  # replaced
    store.put_token("c", "DeleteUser", "t", "p3", "r3")
    assert tuple(store.get_token("c", "CreateUser", "t")) == ("p2", "r2")
    assert tuple(store.get_token("c", "DeleteUser", "t")) == ("p3", "r3")
    assert store.get_token("other", "CreateUser", "t") is None


def test_deleting_a_collection_takes_everything_of_it(store) -> None:
    for cid in ("c", "d"):
        store.create_collection(collection(cid))
        store.add_faces([face(i, cid, ext="x") if cid == "c" else face(i + 50, cid, ext="x") for i in range(3)],
                        source=(cid, "sha", "ok"))
        store.create_user(cid, "u", 1.0)
        store.put_token(cid, "CreateUser", "t", "p", "r")
    store.delete_faces("c", ["f000"])
    assert store.delete_collection("c")
    assert store.get_collection("c") is None and store.count_faces("c") == 0 and store.generation("c") == (0, 0)
    assert store.list_faces("c", 0, 10) == [] and store.imported("c") == set() and store.count_users("c") == 0
    assert store.get_token("c", "CreateUser", "t") is None and store.user_collections("u") == ["d"]
    assert [f.collection_id for f in store.faces_named("x")] == ["d"] * 3
    store.create_collection(collection("c"))  # a new collection of the same id starts empty
    assert store.deleted_since("c", 0) == [] and store.list_faces("c", 0, 10) == []
    store.add_faces([face(0)])  # the same face id again, in the new collection
    assert store.count_faces("c") == 1 and store.count_faces("d") == 3


def test_concurrent_writers_commit_in_seq_order(store) -> None:
    """An index catches up with ``faces_after(last seq seen)``: a face committed after a higher seq
    was read would be missed for good. Four writers and a reader that follows along."""
    store.create_collection(collection("c"))
    seen: list[str] = []
    done = threading.Event()

    def follow() -> None:
        last = 0
        while True:
            finished = done.is_set()
            ids, _, last = store.faces_after("c", last)
            seen.extend(ids)
            if finished:
                return

    def write(w: int) -> None:
        for n in range(15):
            store.add_faces([face(w * 100 + n * 2), face(w * 100 + n * 2 + 1)])

    reader = threading.Thread(target=follow)
    reader.start()
    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    reader.join()
    assert len(seen) == len(set(seen)) == 120 and store.count_faces("c") == 120


# -- Faceprint end to end -------------------------------------------------------------------------
BBT = FACES / "identities" / "faceapi_bbt" / "identities"
PEOPLE = ("sheldon", "penny", "raj")


@pytest.fixture(scope="module")
def analyses(fast) -> dict[str, list]:
    """Three photos each of three people, analysed once (fast profile)."""
    return {p: [fast.analyze(path) for path in sorted((BBT / p).glob("*"))[:3]] for p in PEOPLE}


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def normalised(value: Any, names: dict[str, str]) -> Any:
    """Ids (uuids) numbered in order of appearance, account ids out of ARNs; timestamps and audit ids
    left out."""
    if isinstance(value, dict):
        found = {k: normalised(v, names) for k, v in value.items()
                 if "Timestamp" not in k and k not in ("AuditId", "audit_id")}
        if isinstance(found.get("FaceIds"), list):  # Erase lists them sorted by (random) id: as a set
            found["FaceIds"] = sorted(found["FaceIds"])
        return found
    if isinstance(value, list | tuple):
        return [normalised(v, names) for v in value]
    if isinstance(value, str):
        value = re.sub(r":\d{12}:", ":ACCOUNT:", value)  # each home has its own account id
        return UUID.sub(lambda m: names.setdefault(m.group(), f"id{len(names)}"), value)
    if isinstance(value, float):
        return round(value, 4)
    return value


def scenario(fp, analyses: dict[str, list]) -> list:
    """Collections, faces, users and searches; every answer, as its dict (or error code)."""
    out: list = []

    def call(name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            result = getattr(fp, name)(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the error's code is part of the transcript
            out.append((name, type(e).__name__))
            return None
        out.append((name, result if isinstance(result, dict) else result.to_dict()))
        return result

    call("create_collection", "cast")
    call("create_collection", "cast")
    call("create_collection", "Other")
    faces: dict[str, list[str]] = {}
    for person in PEOPLE:
        for analysis in analyses[person]:
            result = call("store_analysis", "cast", analysis, external_image_id=person, max_faces=1)
            faces.setdefault(person, []).extend(r.face.face_id for r in result.face_records)
    call("list_collections")
    call("describe_collection", "cast")
    call("list_faces", "cast", max_results=4)
    call("search_faces", "cast", faces["penny"][0], max_faces=5)
    call("create_user", "cast", "sheldon", client_request_token="t-1")
    call("create_user", "cast", "sheldon", client_request_token="t-1")
    call("create_user", "cast", "sheldon")
    call("create_user", "cast", "penny", client_request_token="t-1")
    call("create_user", "cast", "penny")
    call("associate_faces", "cast", "sheldon", faces["sheldon"] + faces["penny"][:1])
    call("associate_faces", "cast", "penny", faces["penny"], client_request_token="a-1")
    call("associate_faces", "cast", "penny", faces["penny"], client_request_token="a-1")
    call("list_users", "cast")
    call("search_users", "cast", user_id="sheldon")
    call("search_users", "cast", face_id=faces["penny"][1])
    call("delete_faces", "cast", [faces["sheldon"][0], faces["raj"][0], "00000000-0000-0000-0000-000000000000"])
    call("disassociate_faces", "cast", "sheldon", faces["sheldon"][:1])
    call("delete_faces", "cast", faces["sheldon"][:1])
    call("search_faces", "cast", faces["sheldon"][1], max_faces=5)
    call("list_faces", "cast", user_id="penny")
    call("delete_user", "cast", "penny")
    call("erase", external_image_id="raj")
    call("list_faces", "cast")
    call("list_users", "cast")
    call("describe_collection", "cast")
    call("delete_collection", "cast")
    call("describe_collection", "cast")
    call("list_collections")
    return out


@pytest.fixture(scope="module")
def transcripts(request: pytest.FixtureRequest, analyses, tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, list]:
    """The scenario's transcript from Faceprint over each store, chosen by URL."""
    from faceprint.service import Faceprint

    server = request.getfixturevalue("pg")
    found = {}
    for backend in BACKENDS:
        home = tmp_path_factory.mktemp(f"home-{backend}")
        url = f"sqlite://{home}/store.db" if backend == "sqlite" else server.database()
        fp = Faceprint(home, profile="fast", models_dir=models_dir(), store_url=url)
        found[backend] = normalised(scenario(fp, analyses), {})
    return found


@pytest.mark.parametrize("backend", BACKENDS)
def test_faceprint_operations_over_the_store(transcripts: dict[str, list], backend: str) -> None:
    transcript = transcripts[backend]
    answers = dict(transcript[:3])
    assert answers["create_collection"] is not None
    errors = [(name, r) for name, r in transcript if isinstance(r, str)]
    assert errors == [("create_collection", "ResourceAlreadyExistsException"),
                      ("create_user", ConflictException.__name__),
                      ("create_user", IdempotentParameterMismatchException.__name__),
                      ("describe_collection", "ResourceNotFoundException")]
    described = [r for name, r in transcript if name == "describe_collection"]
    assert described[0]["FaceCount"] == 9 and described[1]["FaceCount"] == 5 and described[1]["UserCount"] == 1
    listed = [r for name, r in transcript if name == "list_faces"][-1]["Faces"]
    assert len(listed) == 5 and all(f["ExternalImageId"] != "raj" for f in listed)
    searched = [r for name, r in transcript if name == "search_faces"]
    assert len(searched[0]["FaceMatches"]) == 2  # penny's other photos (threshold 80)
    assert [c["CollectionIds"] for _, c in transcript if isinstance(c, dict) and "CollectionIds" in c][-1] == [
        "Other"]


def test_sqlite_and_postgresql_answer_alike(transcripts: dict[str, list]) -> None:
    """The whole transcript, ids numbered in order of appearance, is the same from both stores."""
    assert transcripts["sqlite"] == transcripts["postgresql"]
