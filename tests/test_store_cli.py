"""``--store`` / ``--index`` on the command line and ``faceprint serve``: a PostgreSQL store named by
URL, its credentials from libpq's environment, bad URLs and logins refused clearly, and two
server nodes (separate homes) sharing one real PostgreSQL server (``tests/pg.py``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FACES, ROOT, lfw_image, models_dir
from faceprint.backends import open_store
from faceprint.cli import main
from pg import pg  # noqa: F401
from serverkit import Server

BBT = FACES / "identities" / "faceapi_bbt" / "identities"


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out or err)


def test_the_cli_uses_the_store_the_url_or_environment_names(pg, tmp_path: Path, capsys,  # noqa: F811
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    url = pg.database()
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "--store", url, "create-collection", "--collection-id", "shared")[0] == 0
    monkeypatch.setenv("FACEPRINT_STORE", url)
    code, listed = run(capsys, "--home", str(tmp_path / "other-home"), "list-collections")
    assert code == 0 and listed["CollectionIds"] == ["shared"]
    assert not (tmp_path / "other-home" / "faceprint.db").exists()
    code, listed = run(capsys, "--home", home, "--store", f"sqlite://{tmp_path}/own.db", "list-collections")
    assert code == 0 and listed["CollectionIds"] == []  # the flag wins over the environment


def test_credentials_come_from_libpq_environment(pg, tmp_path: Path, capsys,  # noqa: F811
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    database = pg.database().split("?")[0].rsplit("/", 1)[1]
    pg.sql("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'alice') THEN "
           "CREATE ROLE alice LOGIN PASSWORD 'wonder'; END IF; END $$")
    pg.sql(f"GRANT ALL ON DATABASE {database} TO alice")
    pg.sql("GRANT ALL ON SCHEMA public TO alice", database)
    for key, value in pg.env(database, "alice", "wonder").items():
        monkeypatch.setenv(key, value)
    code, created = run(capsys, "--home", str(tmp_path), "--store", "postgresql://", "create-collection",
                        "--collection-id", "c")
    assert code == 0 and created["StatusCode"] == 200
    assert pg.sql("SELECT collection_id FROM collections", database) == [("c",)]
    monkeypatch.setenv("PGPASSWORD", "wrong")
    code, error = run(capsys, "--home", str(tmp_path), "--store", "postgresql://", "list-collections")
    assert code == 1 and "password authentication failed" in error["Message"] and "wrong" not in error["Message"]


@pytest.mark.parametrize("flags", [["--store", "mysql://h/db"], ["--index", "redis://h"], ["--store", "faceprint.db"]])
def test_an_unknown_url_is_invalid_parameter(tmp_path: Path, capsys, flags: list[str]) -> None:
    code, error = run(capsys, "--home", str(tmp_path), *flags, "list-collections")
    assert code == 1 and error["__type"] == "InvalidParameterException" and "URL" in error["Message"]


def test_serve_refuses_a_bad_store_url_at_start(tmp_path: Path, capsys) -> None:
    code, error = run(capsys, "--home", str(tmp_path), "serve", "--no-auth", "--store", "mongodb://x")
    assert code == 1 and error["__type"] == "InvalidParameterException"


@pytest.mark.parametrize("lease", ["1", "7200", "nan"])
def test_serve_refuses_a_stream_lease_out_of_bounds(tmp_path: Path, capsys, lease: str) -> None:
    code, error = run(capsys, "--home", str(tmp_path), "serve", "--no-auth", "--stream-lease", lease)
    assert code == 1 and error["__type"] == "InvalidParameterException" and "--stream-lease" in error["Message"]


def test_the_stream_lease_reaches_the_stream_host(tmp_path: Path) -> None:
    from faceprint.server.run import ServeSettings, check_settings
    from faceprint.server.streams import StreamFlags, runner_factory

    check_settings(ServeSettings(home=str(tmp_path), auth=False, stream_lease=4.0))
    runner = runner_factory(tmp_path, StreamFlags(), profile="fast", region="us-east-1", lease_seconds=4.0)()
    assert runner.config["lease_seconds"] == 4.0  # the host's config line: faceprint.streams.host reads it
    assert "lease_seconds" not in runner_factory(tmp_path, StreamFlags(), profile="fast", region="us-east-1")().config


@pytest.fixture(scope="module")
def nodes(pg, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    """Two ``faceprint serve`` nodes, each with its own home, sharing one PostgreSQL store."""
    url = pg.database()
    servers = []
    try:
        for name in ("node-a", "node-b"):
            servers.append(Server(tmp_path_factory.mktemp(name), "--no-auth", "--store", url))
        yield servers
    finally:
        for server in servers:
            assert server.stop() in (0, -signal.SIGTERM)


def test_two_nodes_share_one_postgresql_store(nodes) -> None:
    a, b = (server.client() for server in nodes)
    a.create_collection(CollectionId="cast")
    photos = sorted((BBT / "penny").glob("*"))[:2]
    indexed = a.index_faces(CollectionId="cast", Image={"Bytes": photos[0].read_bytes()}, MaxFaces=1)
    face_id = indexed["FaceRecords"][0]["Face"]["FaceId"]
    assert b.list_collections()["CollectionIds"] == ["cast"]
    found = b.search_faces_by_image(CollectionId="cast", Image={"Bytes": photos[1].read_bytes()})
    assert [m["Face"]["FaceId"] for m in found["FaceMatches"]] == [face_id]
    assert b.delete_faces(CollectionId="cast", FaceIds=[face_id])["DeletedFaces"] == [face_id]
    assert a.search_faces_by_image(CollectionId="cast", Image={"Bytes": photos[1].read_bytes()})["FaceMatches"] == []
    assert a.describe_collection(CollectionId="cast")["FaceCount"] == 0
    b.delete_collection(CollectionId="cast")
    assert a.list_collections()["CollectionIds"] == []


def test_a_video_job_searches_the_store_the_flag_names(pg, tmp_path: Path) -> None:  # noqa: F811
    """``faceprint --store URL video search-faces``: the job runs in other processes (a runner and its
    worker, each with its own Faceprint on the home), which search the same PostgreSQL store."""
    from faceprint.service import Faceprint
    from test_video_server import face_clip

    url = pg.database()
    enrolled = Faceprint(tmp_path / "enrolling-home", profile="fast", models_dir=models_dir(), store_url=url)
    enrolled.create_collection("swimmers")
    enrolled.index_faces("swimmers", lfw_image("Aaron_Peirsol", 1), "peirsol")
    clip = face_clip(tmp_path / "peirsol.mp4")
    env = {k: v for k, v in os.environ.items() if k not in ("FACEPRINT_STORE", "FACEPRINT_INDEX")}
    done = subprocess.run([sys.executable, "-m", "faceprint.cli", "--home", str(tmp_path / "home"), "--profile",
                           "fast", "--store", url, "video", "search-faces", "--collection-id", "swimmers", str(clip)],
                          capture_output=True, text=True, env=env | {"FACEPRINT_MODELS_DIR": str(models_dir())},
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["JobStatus"] == "SUCCEEDED"
    assert {m["Face"]["ExternalImageId"] for p in answer["Persons"] for m in p.get("FaceMatches", [])} == {"peirsol"}
    assert not (tmp_path / "home" / "faceprint.db").exists()  # the home's own store was never opened


def test_the_store_carries_on_after_postgresql_restarts(pg, tmp_path: Path) -> None:  # noqa: F811
    """Pooled connections cut by a restart are replaced, not lent: the next calls just work."""
    from faceprint.store import CollectionRow

    store = open_store(pg.database(), tmp_path)
    store.create_collection(CollectionRow("before", "arn", "v", 2, 1.0))
    pg.restart()
    assert [c.collection_id for c in store.list_collections(None, 10)] == ["before"]
    store.create_collection(CollectionRow("after", "arn", "v", 2, 1.0))
    assert store.get_collection("after") is not None
    store.close()
