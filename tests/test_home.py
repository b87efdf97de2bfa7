"""The home folder is private: created 0700, faceprint's files in it 0600, an older home tightened."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import lfw_image, models_dir
from faceprint.service import Faceprint


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask (022), under which files are created world-readable unless asked not to be."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def open_modes(home: Path) -> dict[str, str]:
    """Every folder and file under ``home`` (and ``home`` itself) that others can reach."""
    found = {}
    for path in [home, *home.rglob("*")]:
        wanted = 0o700 if path.is_dir() else 0o600
        if mode(path) & ~wanted:
            found[str(path.relative_to(home))] = oct(mode(path))
    return found


def test_a_new_home_and_its_files_are_private(tmp_path: Path, open_umask: None) -> None:
    home = tmp_path / "new" / "home"
    fp = Faceprint(home, profile="fast", models_dir=models_dir())
    fp.create_collection("private")
    face = lfw_image("Aaron_Peirsol", 1).read_bytes()
    assert fp.index_faces("private", face).face_records
    assert fp.search_faces_by_image("private", lfw_image("Aaron_Peirsol", 2).read_bytes()).face_matches
    fp.save_indexes()  # an index file too
    names = {p.name for p in home.rglob("*")}
    assert {"faceprint.db", "faceprint.db-wal", "indexes"} <= names and any(n.endswith(".fpindex") for n in names)
    assert mode(home) == 0o700
    assert open_modes(home) == {}


def test_an_open_home_is_tightened_when_opened(tmp_path: Path, open_umask: None) -> None:
    home = tmp_path / "old-home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    db = sqlite3.connect(home / "faceprint.db")  # as an older faceprint left it: 0644 files, WAL on
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()  # a -wal (and -shm) next to the database while it is open
    for name in ("faceprint.db", "faceprint.db-wal", "faceprint.db-shm"):
        os.chmod(home / name, 0o644)
    (home / "indexes").mkdir(mode=0o755)
    os.chmod(home / "indexes", 0o755)
    try:
        fp = Faceprint(home, profile="fast", models_dir=models_dir())
        fp.create_collection("upgraded")
        fp.list_collections()
        assert mode(home) == 0o700
        assert {n: oct(mode(home / n)) for n in ("faceprint.db", "faceprint.db-wal", "faceprint.db-shm")} == {
            n: "0o600" for n in ("faceprint.db", "faceprint.db-wal", "faceprint.db-shm")}
        fp.index_cache  # noqa: B018 - opening the indexes tightens their folder
        assert open_modes(home) == {}
    finally:
        db.close()


def test_models_fetched_into_a_new_home_do_not_open_it(tmp_path: Path, open_umask: None) -> None:
    from faceprint.models import catalog

    home = tmp_path / "fresh"
    fp = Faceprint(home, profile="fast")  # models in HOME/models: the first fetch creates the home
    fp.models.pull([catalog.YUNET], source_dir=models_dir())
    assert mode(home) == 0o700
    assert mode(home / "models" / catalog.YUNET.name) == 0o644  # weights are no secret
