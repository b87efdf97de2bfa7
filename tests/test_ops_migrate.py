"""``faceprint migrate``: a real embedded home (real faces, users, tokens, a delete) moved to a real
PostgreSQL server answers every search as before, similarities equal, vectors byte for byte; a
second run finds it moved; a target holding other data is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FACES, models_dir
from faceprint.ops.migrate import TargetNotEmpty, migrate, rebuild_indexes
from pg import pg  # noqa: F401

BBT = FACES / "identities" / "faceapi_bbt" / "identities"
PEOPLE = ("sheldon", "penny", "raj", "amy")


def searches(fp, face_ids: list[str]) -> list:
    """Every face's SearchFaces answer: (face, [(match, similarity)])."""
    out = []
    for face_id in face_ids:
        result = fp.search_faces("cast", face_id, max_faces=20, face_match_threshold=0).to_dict()
        out.append((face_id, [(m["Face"]["FaceId"], m["Similarity"]) for m in result["FaceMatches"]]))
    return out


@pytest.fixture(scope="module")
def home(fast, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An embedded home: 4 people x 3 photos, two users, tokens, a deleted face, saved index files."""
    from faceprint.service import Faceprint

    folder = tmp_path_factory.mktemp("embedded")
    fp = Faceprint(folder, profile="fast", models_dir=models_dir())
    fp.create_collection("cast")
    fp.create_collection("empty")
    ids: dict[str, list[str]] = {}
    for person in PEOPLE:
        for path in sorted((BBT / person).glob("*"))[:3]:
            result = fp.store_analysis("cast", fast.analyze(path), external_image_id=person, max_faces=1)
            ids.setdefault(person, []).extend(r.face.face_id for r in result.face_records)
    fp.create_user("cast", "sheldon", client_request_token="t-1")
    fp.create_user("cast", "penny")
    fp.associate_faces("cast", "sheldon", ids["sheldon"], client_request_token="a-1")
    fp.delete_faces("cast", ids["raj"][:1])
    kept = [f for person in PEOPLE for f in ids[person]][1:]
    kept.remove(ids["raj"][0])
    before = {"search": searches(fp, kept), "faces": fp.list_faces("cast").to_dict(),
              "users": fp.list_users("cast").to_dict(), "describe": fp.describe_collection("cast").to_dict()}
    fp.save_indexes()
    return {"folder": folder, "ids": kept, "before": before}


@pytest.fixture(scope="module")
def moved(home: dict, request: pytest.FixtureRequest) -> dict:
    url = request.getfixturevalue("pg").database()
    report = migrate(home["folder"], None, url)
    return {"url": url, "report": report, "again": migrate(home["folder"], None, url)}


def test_the_store_moves_with_every_row_and_the_digest_checked(moved: dict) -> None:
    store = moved["report"][0]
    assert store.part == "store" and store.outcome == "moved"
    assert store.counts == {"collections": 2, "faces": 11, "users": 2, "request_tokens": 2, "imports": 0,
                            "deleted_faces": 1}
    assert len(store.digest) == 64


def test_searches_over_postgresql_answer_as_before(home: dict, moved: dict, tmp_path: Path) -> None:
    from faceprint.service import Faceprint

    for folder in (home["folder"], tmp_path / "new-node"):  # its index files reused; a new node's rebuilt
        fp = Faceprint(folder, profile="fast", models_dir=models_dir(), store_url=moved["url"])
        assert searches(fp, home["ids"]) == home["before"]["search"]
        assert fp.list_faces("cast").to_dict() == home["before"]["faces"]
        assert fp.list_users("cast").to_dict() == home["before"]["users"]
        assert fp.describe_collection("cast").to_dict() == home["before"]["describe"]  # the same ARN too


def test_vectors_are_byte_identical_and_tokens_still_answer(home: dict, moved: dict) -> None:
    from faceprint.store.postgres import PostgresStore
    from faceprint.store.sqlite import SQLiteStore

    old, new = SQLiteStore(home["folder"] / "faceprint.db"), PostgresStore(moved["url"])
    try:
        a, b = old.get_faces("cast", home["ids"]), new.get_faces("cast", home["ids"])
        assert [f.vector.tobytes() for f in a] == [f.vector.tobytes() for f in b]
        assert [(f.face_id, f.seq, f.created, f.user_id) for f in a] == [(f.face_id, f.seq, f.created, f.user_id)
                                                                            for f in b]
        assert new.get_token("cast", "CreateUser", "t-1") == old.get_token("cast", "CreateUser", "t-1") is not None
        assert new.generation("cast") == old.generation("cast")
    finally:
        new.close()


def test_the_audit_chain_moves_with_its_hashes(home: dict, moved: dict) -> None:
    from faceprint.audit.log import AuditLog
    from faceprint.audit.pglog import PgAuditLog
    from faceprint.audit.verify import verify

    audit = {m.part: m for m in moved["report"]}["audit"]
    assert audit.outcome == "moved" and audit.counts["audit_entries"] > 10 and audit.counts["audit_heads"] >= 1
    source, target = AuditLog(home["folder"] / "audit"), PgAuditLog(moved["url"], home["folder"] / "audit")
    assert [r[:4] for r in target.rows()][:audit.counts["audit_entries"]] == [r[:4] for r in source.rows()]
    assert verify(target).ok


def test_running_it_again_finds_it_moved_and_other_data_is_refused(home: dict, moved: dict,
                                                                    request: pytest.FixtureRequest) -> None:
    again = moved["again"]
    assert {m.outcome for m in again} <= {"already moved", "nothing to move"}
    assert [m.digest for m in again] == [m.digest for m in moved["report"]]
    other = request.getfixturevalue("pg").database()
    from faceprint.store import CollectionRow
    from faceprint.store.postgres import PostgresStore

    store = PostgresStore(other)
    store.create_collection(CollectionRow("other", "arn:x", "6.0", 128, 1.0))
    store.close()
    with pytest.raises(TargetNotEmpty, match="already holds other data"):
        migrate(home["folder"], None, other)


def test_the_index_is_rebuilt_from_the_new_store(home: dict, moved: dict, tmp_path: Path) -> None:
    assert rebuild_indexes(tmp_path, moved["url"], None) == {"cast": 11, "empty": 0}
    assert len(list((tmp_path / "indexes").glob("*.fpindex"))) >= 1


def test_the_command_line_moves_and_refuses_bad_urls(home: dict, moved: dict, capsys,
                                                     request: pytest.FixtureRequest) -> None:
    from faceprint.cli import main

    url = request.getfixturevalue("pg").database()
    assert main(["--home", str(home["folder"]), "migrate", "--to", url]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["Moved"][0]["Outcome"] == "moved" and out["Indexed"] == {"cast": 11, "empty": 0}
    assert url not in json.dumps(out)
    assert main(["--home", str(home["folder"]), "migrate", "--to", "sqlite:///tmp/x.db"]) == 1
    assert "InvalidParameterException" in capsys.readouterr().err
    assert main(["--home", str(home["folder"]), "migrate", "--from", "sqlite:///nowhere/x.db", "--to",
                 moved["url"]]) == 1
    assert "There is no SQLite store" in capsys.readouterr().err
