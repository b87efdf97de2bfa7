"""``faceprint backup`` / ``restore``: an embedded home backed up while a thread writes faces comes
back whole (a consistent snapshot: every face up to some point, none torn), with its access keys;
a PostgreSQL store comes back with every row; a damaged backup or an occupied target is refused."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from faceprint.errors import InvalidParameterException
from faceprint.ops.backup import backup
from faceprint.ops.restore import TargetInUse, restore
from faceprint.server.keys import KeyStore
from faceprint.store import CollectionRow, FaceRow
from pg import pg  # noqa: F401

DIM = 16


def face(i: int) -> FaceRow:
    vector = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
    return FaceRow(f"f{i:05d}", "c", f"img{i}", f"person-{i}", (0.5, 0.5, 0.1, 0.2), 99.0, vector)


def fill(store, start: int, count: int) -> None:
    for i in range(start, start + count, 10):
        store.add_faces([face(j) for j in range(i, i + 10)])


@pytest.fixture(scope="module")
def sqlite_backup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A home with faces and a key, backed up while a thread keeps adding faces."""
    from faceprint.store.sqlite import SQLiteStore

    home = tmp_path_factory.mktemp("home")
    store = SQLiteStore(home / "faceprint.db")
    store.create_collection(CollectionRow("c", "arn:c", "6.0", DIM, 1.0))
    fill(store, 0, 200)
    key = KeyStore(home).create("alice")
    (home / "indexes").mkdir()
    (home / "indexes" / "x.fpindex").write_bytes(b"derived")
    stop, written = threading.Event(), []

    def writer() -> None:
        mine = SQLiteStore(home / "faceprint.db")
        i = 200
        while not stop.is_set():
            fill(mine, i, 10)
            i += 10
            written.append(i)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        dest = tmp_path_factory.mktemp("backups") / "b1"
        manifest = backup(home, None, dest)
    finally:
        stop.set()
        thread.join()
    return {"home": home, "dest": dest, "manifest": manifest, "key": key, "written": written[-1]}


def test_the_backup_lists_the_home_files_but_not_the_index(sqlite_backup: dict) -> None:
    files = {f["Path"]: f["Kind"] for f in sqlite_backup["manifest"]["Files"]}
    assert files["home/faceprint.db"] == "sqlite" and files["home/auth/keys.json"] == "file"
    assert not any("indexes" in p or p.endswith("-wal") for p in files)
    assert (sqlite_backup["dest"] / "manifest.json").stat().st_mode & 0o077 == 0


def test_a_home_restored_is_a_consistent_snapshot_with_its_keys(sqlite_backup: dict, tmp_path: Path) -> None:
    from faceprint.store.sqlite import SQLiteStore

    target = tmp_path / "restored"
    assert restore(sqlite_backup["dest"], target, None)["Store"] == "sqlite"
    with sqlite3.connect(target / "faceprint.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = SQLiteStore(target / "faceprint.db")
    count = store.count_faces("c")
    assert 200 <= count <= sqlite_backup["written"] and count % 10 == 0  # whole writes only
    faces = store.list_faces("c", 0, count + 10)
    assert [f.face_id for f in faces] == [f"f{i:05d}" for i in range(count)]
    assert all(np.array_equal(f.vector, face(i).vector) for i, f in enumerate(faces))
    restored = KeyStore(target).get(sqlite_backup["key"].access_key_id)
    assert restored is not None and restored.secret_access_key == sqlite_backup["key"].secret_access_key


def test_restore_refuses_an_occupied_home_unless_forced(sqlite_backup: dict, tmp_path: Path) -> None:
    from faceprint.store.sqlite import SQLiteStore

    target = tmp_path / "busy"
    other = SQLiteStore(target / "faceprint.db")
    other.create_collection(CollectionRow("other", "arn:o", "6.0", DIM, 2.0))
    (target / "indexes").mkdir()
    (target / "indexes" / "old.fpindex").write_bytes(b"stale")
    with pytest.raises(TargetInUse, match="--force"):
        restore(sqlite_backup["dest"], target, None)
    restore(sqlite_backup["dest"], target, None, force=True)
    assert [c.collection_id for c in other.list_collections(None, 10)] == ["c"]  # an open connection sees it
    assert not (target / "indexes" / "old.fpindex").exists()  # derived from another store: rebuilt


def test_a_damaged_backup_is_refused_before_anything_is_written(sqlite_backup: dict, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    import shutil

    shutil.copytree(sqlite_backup["dest"], damaged)
    with (damaged / "home" / "auth" / "keys.json").open("ab") as fh:
        fh.write(b" ")
    with pytest.raises(InvalidParameterException, match="damaged: home/auth/keys.json"):
        restore(damaged, tmp_path / "t", None)
    assert not (tmp_path / "t").exists()
    with pytest.raises(InvalidParameterException, match="not empty"):
        backup(sqlite_backup["home"], None, sqlite_backup["dest"])


def test_postgresql_round_trip_and_the_command_line(request: pytest.FixtureRequest, tmp_path: Path,
                                                     capsys) -> None:
    from faceprint.cli import main
    from faceprint.ops.store_mover import pg_tally as mover_tally
    from faceprint.store.postgres import PostgresStore

    server = request.getfixturevalue("pg")
    source, target = server.database(), server.database()
    store = PostgresStore(source)
    store.create_collection(CollectionRow("c", "arn:c", "6.0", DIM, 1.0))
    fill(store, 0, 50)
    store.delete_faces("c", ["f00003"])
    store.create_user("c", "u1", 5.0)
    store.close()
    home = tmp_path / "home"
    KeyStore(home).create("bob")
    assert main(["--home", str(home), "--store", source, "backup", str(tmp_path / "b")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {f["Kind"] for f in printed["Files"]} == {"file", "pg_dump"}
    assert source not in json.dumps(printed)  # the URL is not printed (nor given to pg_dump's command line)
    restored_home = tmp_path / "restored"
    assert main(["--home", str(restored_home), "--store", target, "restore", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert mover_tally(source).same(mover_tally(target))
    assert mover_tally(target).counts["faces"] == 49 and KeyStore(restored_home).list()[0].user_name == "bob"
    assert main(["--home", str(tmp_path / "third"), "--store", target, "restore", str(tmp_path / "b")]) == 1
    assert "ResourceInUseException" in capsys.readouterr().err
    assert main(["--home", str(tmp_path / "third"), "--store", target, "restore", "--force",
                 str(tmp_path / "b")]) == 0
    assert mover_tally(source).same(mover_tally(target))


@pytest.mark.parametrize("path", ["/etc/passwd", "home/../../outside", "other/x"])
def test_a_manifest_naming_paths_outside_the_backup_is_refused(sqlite_backup: dict, tmp_path: Path,
                                                                path: str) -> None:
    import shutil

    crafted = tmp_path / "crafted"
    shutil.copytree(sqlite_backup["dest"], crafted)
    manifest = json.loads((crafted / "manifest.json").read_text())
    manifest["Files"][0]["Path"] = path
    (crafted / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidParameterException, match="outside it"):
        restore(crafted, tmp_path / "t", None)
    (crafted / "manifest.json").write_text('{"Format": 1, "Files": [{}]}')
    with pytest.raises(InvalidParameterException, match="malformed"):
        restore(crafted, tmp_path / "t", None)


def test_a_store_outside_the_home_is_backed_up_and_not_overwritten(tmp_path: Path) -> None:
    from faceprint.store.sqlite import SQLiteStore

    url = f"sqlite://{tmp_path}/elsewhere/faces.db"
    store = SQLiteStore(tmp_path / "elsewhere" / "faces.db")
    store.create_collection(CollectionRow("c", "arn:c", "6.0", DIM, 1.0))
    fill(store, 0, 20)
    (tmp_path / "home").mkdir()
    manifest = backup(tmp_path / "home", url, tmp_path / "b")
    assert [f["Path"] for f in manifest["Files"]] == ["store/faceprint.db"]
    with pytest.raises(TargetInUse, match="faces.db exists"):
        restore(tmp_path / "b", tmp_path / "home2", None)
    restore(tmp_path / "b", tmp_path / "home2", f"sqlite://{tmp_path}/moved.db")
    assert SQLiteStore(tmp_path / "moved.db").count_faces("c") == 20


def test_an_audit_chain_written_during_the_backup_restores_and_verifies(tmp_path: Path) -> None:
    from faceprint.audit.caller import Caller
    from faceprint.audit.log import AuditLog
    from faceprint.audit.records import Entry
    from faceprint.audit.verify import verify

    home = tmp_path / "home"
    log = AuditLog(home / "audit", durable=False)  # entries go to the journal first
    search = Entry("SearchFacesByImage", Caller("investigator", purpose="p", case="c"), 1.0, 2.0,
                   collection_id="people", collection_size=10, threshold=80.0, probe_sha256="ab" * 32)
    for _ in range(20):
        log.append(search)
    stop, appended = threading.Event(), [0]

    def writer() -> None:
        while not stop.is_set():
            log.append(search)
            appended[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        backup(home, None, tmp_path / "b")
    finally:
        stop.set()
        thread.join()
        log.close()
    restore(tmp_path / "b", tmp_path / "restored", None)
    restored = AuditLog(tmp_path / "restored" / "audit")
    assert 20 <= restored.count() <= 20 + appended[0]
    assert verify(restored).ok
