"""``faceprint doctor`` on real deployments: a healthy embedded one (real faces, saved index) passes;
deleted index files, a file open to other users, a wrong model file, a wrong PostgreSQL URL, a
newer schema and an unreachable Milvus are each reported with the right message and exit status."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import FACES, models_dir
from faceprint.cli import main
from milvuskit import milvus_url  # noqa: F401
from pg import pg  # noqa: F401

BBT = FACES / "identities" / "faceapi_bbt" / "identities"


@pytest.fixture(scope="module")
def home(fast, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from faceprint.service import Faceprint

    folder = tmp_path_factory.mktemp("doctor")
    fp = Faceprint(folder, profile="fast", models_dir=models_dir())
    fp.create_collection("cast")
    for path in sorted((BBT / "penny").glob("*"))[:2]:
        fp.store_analysis("cast", fast.analyze(path), external_image_id="penny", max_faces=1)
    fp.search_faces_by_image("cast", sorted((BBT / "penny").glob("*"))[2])  # the index loaded, then saved
    fp.save_indexes()
    return folder


def doctor(capsys, home: Path, *extra: str, models: Path | None = None) -> tuple[int, dict[str, tuple[str, str]]]:
    saved = os.environ.get("FACEPRINT_MODELS_DIR")
    os.environ["FACEPRINT_MODELS_DIR"] = str(models or models_dir())
    try:
        status = main(["--home", str(home), *extra, "doctor", "--profile", "fast", "--json"])
    finally:
        if saved is None:
            os.environ.pop("FACEPRINT_MODELS_DIR")
        else:
            os.environ["FACEPRINT_MODELS_DIR"] = saved
    out = json.loads(capsys.readouterr().out)
    assert out["Status"] == status
    return status, {f["Check"]: (f["Status"], f["Detail"]) for f in out["Findings"]}


def not_ok(findings: dict) -> dict:
    """Findings that are not ``ok``, but the disk's (this machine's free space is not the test's)."""
    return {k: v for k, v in findings.items() if v[0] != "ok" and k != "disk"}


def test_a_healthy_embedded_deployment_passes(capsys, home: Path) -> None:
    status, found = doctor(capsys, home)
    assert not_ok(found) == {} and status in (0, 2)
    assert found["store schema"] == ("ok", "version 1 (current)") and found["faceprint"][1].startswith("version 0.")
    assert found["index cast"][1].startswith("current (2 faces")
    assert found["db faceprint.db"] == ("ok", "quick_check ok")
    assert found["model face_recognition_sface_2021dec.onnx"][1].startswith("sha256 0ba9fbfa")
    main(["--home", str(home), "doctor", "--profile", "fast"])
    assert "CHECK" in capsys.readouterr().out  # the table


def test_deleted_index_files_and_open_modes_are_reported(capsys, home: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(home, broken, ignore=shutil.ignore_patterns("models"))
    for path in (broken / "indexes").iterdir():
        path.unlink()
    status, found = doctor(capsys, broken)
    assert status == 2 and not_ok(found) == {
        "index cast": ("warn", "no index file: rebuilt from the store when first opened (2 faces)")}
    (broken / "account-id").chmod(0o644)
    status, found = doctor(capsys, broken)
    assert status == 1 and found["modes"][0] == "fail" and "account-id (0o644)" in found["modes"][1]


def test_a_model_file_with_the_wrong_digest_fails(capsys, home: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "face_detection_yunet_2023mar.onnx").write_bytes(b"not the model")
    status, found = doctor(capsys, home, models=models)
    assert status == 1
    assert found["model face_detection_yunet_2023mar.onnx"][0] == "fail"
    assert "replace the file" in found["model face_detection_yunet_2023mar.onnx"][1]
    assert found["model face_recognition_sface_2021dec.onnx"][0] == "warn"  # missing: fetched on first use


def test_postgresql_healthy_then_newer_then_unreachable(capsys, home: Path, request: pytest.FixtureRequest
                                                       ) -> None:
    from faceprint.ops.migrate import migrate

    url = request.getfixturevalue("pg").database()
    migrate(home, None, url)
    status, found = doctor(capsys, home, "--store", url)
    from faceprint.store.migrations import latest, postgres

    current = f"version {latest(postgres.MIGRATIONS)} (current)"
    assert not_ok(found) == {} and found["store schema"] == ("ok", current)
    assert found["store"][1].startswith("PostgreSQL 15") and found["index cast"][0] == "ok"
    request.getfixturevalue("pg").sql("INSERT INTO schema_migrations VALUES (99, 'future', 0)", url.split("/")[3]
                                      .split("?")[0])
    status, found = doctor(capsys, home, "--store", url)
    assert status == 1 and found["store schema"][0] == "fail"
    assert "newer than this faceprint" in found["store schema"][1]
    wrong = url.replace("faceprint@", "nobody:s3cret@")
    status, found = doctor(capsys, home, "--store", wrong)
    assert status == 1 and found["store"][0] == "fail"
    assert found["store"][1].startswith("cannot connect to the PostgreSQL store") and "s3cret" not in found["store"][1]
    assert "index cast" not in found  # nothing to compare the index with


def test_an_unreachable_milvus_fails(capsys, home: Path) -> None:
    status, found = doctor(capsys, home, "--index", "milvus://127.0.0.1:9")
    assert status == 1 and found["index"][0] == "fail" and "cannot reach Milvus at 127.0.0.1:9" in found["index"][1]


def test_a_store_from_before_versions_shows_migrations_pending_and_is_left_alone(capsys, tmp_path: Path) -> None:
    import sqlite3

    from faceprint.store.migrations.sqlite import SCHEMA_V1

    home = tmp_path / "old"
    home.mkdir(mode=0o700)
    with sqlite3.connect(home / "faceprint.db") as db:  # a home written before versions were recorded
        db.executescript(SCHEMA_V1)
    (home / "faceprint.db").chmod(0o600)
    status, found = doctor(capsys, home)
    assert status == 2 and found["store schema"] == (
        "warn", "version 0, migrations pending to 1 (applied when a node opens it)")
    assert found["index"][1].startswith("not checked: the store is missing or its schema is not current")
    with sqlite3.connect(home / "faceprint.db") as db:  # doctor migrated nothing
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'schema_migrations'").fetchone() is None


def test_a_milvus_index_is_checked_per_collection(capsys, home: Path, request: pytest.FixtureRequest,
                                                  tmp_path: Path) -> None:
    from faceprint.service import Faceprint

    url = request.getfixturevalue("milvus_url") + "?prefix=doctor_"
    status, found = doctor(capsys, home, "--index", url)
    assert found["index"][0] == "ok" and found["index"][1].startswith("Milvus at 127.0.0.1:")
    assert found["index cast"] == ("warn", "no Milvus collection: filled from the store when first opened (2 faces)")
    fp = Faceprint(home, profile="fast", models_dir=models_dir(), index_url=url)
    fp.search_faces_by_image("cast", sorted((BBT / "penny").glob("*"))[2])  # made and filled from the store
    fp.save_indexes()
    status, found = doctor(capsys, home, "--index", url)
    assert found["index cast"] == ("ok", "2 rows in Milvus (deleted ones included until compaction), 2 faces in "
                                         "the store")
