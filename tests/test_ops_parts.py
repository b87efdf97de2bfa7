"""``faceprint migrate`` moves the home's parts into their PostgreSQL twins: access keys, console
users (their passwords still work) and the cookie secret, collection settings, the review queue with
the audit chain it reviews (a second reviewer completes the two-person rule there), finished video jobs
with their results, stream processors with their events (event ids kept); each read back through
the twin's own class. A video job still in progress stops the move of the video part."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceprint.errors import InvalidParameterException
from faceprint.ops.migrate import migrate
from faceprint.store import CollectionRow
from faceprint.store.sqlite import SQLiteStore
from pg import pg  # noqa: F401

PASSWORD = "correct horse battery staple"


def job(job_id: str, status: str):
    from faceprint.video.store import JobRow

    return JobRow(job_id=job_id, api="StartFaceDetection", status=status, status_message=None,
                  params={"FaceAttributes": "DEFAULT"}, request_hash="h" + job_id, client_token="tok-" + job_id,
                  job_tag="tag", notification=None, notify_pending=False, source_kind="path", source="/v.mp4",
                  profile="fast", owner=None, secret="s" * 32, created=1000.5, started=None, finished=None,
                  expiry_seconds=86400.0, expires=None, attempts=0, frames_done=0, frames_total=0, metadata=None,
                  limits={"max_seconds": 60})


def home_with_parts(folder: Path, video_status: str = "SUCCEEDED") -> dict:
    from faceprint.audit.settings import CollectionSettings, SettingsStore
    from faceprint.console.sessions import load_secret
    from faceprint.console.users import ConsoleUsers
    from faceprint.server.keys import KeyStore
    from faceprint.streams.store import ProcessorStore
    from faceprint.streams.types import ProcessorRow
    from faceprint.video.context import Item
    from faceprint.video.store import JobStore

    SQLiteStore(folder / "faceprint.db").create_collection(CollectionRow("c", "arn:c", "6.0", 128, 1.0))
    key = KeyStore(folder).create("alice")
    ConsoleUsers(folder / "console").add("ann", "admin", PASSWORD)
    SettingsStore(folder / "settings.db").put("c", CollectionSettings(True, False, 30))
    jobs = JobStore(folder / "video" / "jobs.db")
    jobs.insert(job("j1", "RUNNING") if video_status == "SUCCEEDED" else job("j1", video_status), 10)
    if video_status == "SUCCEEDED":
        jobs.add_items("j1", None, [Item(40 * i, 0, {"Timestamp": 40 * i, "Face": {"Confidence": 99.0}})
                                    for i in range(5)])
        jobs.finish("j1", None, "SUCCEEDED", None, 2000.0)
    processors = ProcessorStore(folder / "streams" / "processors.db")
    processors.insert(ProcessorRow("door", "arn:door", "STOPPED", None, 1.0, 2.0, {"Input": {}}), 10)
    processors.add_events("door", [("record", '{"n": 1}'), ("alert", '{"n": 2}')])
    processors.insert(ProcessorRow("gate", "arn:gate", "STOPPING", None, 1.0, 2.0, {"Input": {}}, "RUNNING"), 10)
    return {"key": key, "secret": load_secret(folder / "console"), "job": jobs.get("j1"),
            "events": processors.events_after("door", 0), "processor": processors.get("door")}


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict:
    folder = tmp_path_factory.mktemp("parts")
    made = home_with_parts(folder)
    url = request.getfixturevalue("pg").database()
    report = {m.part: m for m in migrate(folder, None, url)}
    return {"folder": folder, "url": url, "report": report, **made}


def test_every_part_is_moved_and_counted(moved: dict) -> None:
    report = moved["report"]
    assert {k: m.outcome for k, m in report.items()} == {
        "store": "moved", "account": "nothing to move", "keys": "moved", "console": "moved", "settings": "moved",
        "audit": "nothing to move",
        "review": "nothing to move", "video": "moved", "streams": "moved",
        "crops": "nothing to move", "probes": "nothing to move"}
    assert report["video"].counts == {"video_jobs": 1, "video_items": 5}
    assert report["streams"].counts == {"streams_processors": 2, "streams_events": 2}
    assert report["console"].counts == {"console_users": 1, "console_sessions": 0}


def test_the_twins_read_what_was_moved(moved: dict, tmp_path: Path) -> None:
    from faceprint.audit.pgparts import open_settings
    from faceprint.console.pgusers import open_console_users, signing_secret
    from faceprint.server.pgkeys import open_keys
    from faceprint.streams.store_pg import PgProcessorStore
    from faceprint.video.store_pg import PgJobStore

    url, node = moved["url"], tmp_path / "node2"
    key = open_keys(node, url).get(moved["key"].access_key_id)
    assert key is not None and key.secret_access_key == moved["key"].secret_access_key
    users = open_console_users(node, url)
    assert users.authenticate("ann", PASSWORD).role == "admin" and signing_secret(users) == moved["secret"]
    assert open_settings(node, url).get("c").face_retention_days == 30
    jobs = PgJobStore(url, node / "inputs")
    assert jobs.get("j1") == moved["job"]
    first = jobs.page(jobs.get("j1"), "TIMESTAMP", 10, None)
    assert [i["Timestamp"] for i in first[0]] == [0, 40, 80, 120, 160]
    processors = PgProcessorStore(url)
    assert processors.get("door") == moved["processor"]
    assert processors.events_after("door", 0) == moved["events"]  # the same event ids
    assert (processors.get("gate").status, processors.get("gate").desired) == ("STOPPED", "STOPPED")  # host gone
    processors.add_events("door", [("record", '{"n": 3}')])
    assert processors.last_seq("door") > moved["events"][-1][0]  # numbering goes on past them


def test_a_video_job_in_progress_stops_the_video_part(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    home_with_parts(tmp_path / "busy", video_status="QUEUED")
    with pytest.raises(InvalidParameterException, match="video: 1 video jobs are queued or running"):
        migrate(tmp_path / "busy", None, request.getfixturevalue("pg").database())



def test_the_review_queue_moves_with_the_audit_chain_it_reviews(tmp_path: Path,
                                                                request: pytest.FixtureRequest) -> None:
    from faceprint.audit.backend import open_audit_log
    from faceprint.audit.caller import Caller
    from faceprint.audit.log import AuditLog
    from faceprint.audit.pgparts import open_reviews, open_settings
    from faceprint.audit.records import Entry
    from faceprint.audit.settings import CollectionSettings

    home = tmp_path / "reviewed"
    SQLiteStore(home / "faceprint.db")
    log, settings = AuditLog(home / "audit"), open_settings(home, f"sqlite:///{home}")
    settings.put("people", CollectionSettings(two_person_rule=True))
    face = "11111111-1111-4111-8111-111111111111"
    search = log.append(Entry("SearchFacesByImage", Caller("investigator", purpose="p", case="c"), 1.0, 2.0,
                              collection_id="people", collection_size=10, threshold=80.0, probe_sha256="ab" * 32,
                              candidates=({"FaceId": face, "Similarity": 99.0, "ExternalImageId": "x"},))).seq
    reviews = open_reviews(home, f"sqlite:///{home}", log, settings)
    assert reviews.decide(search, face, "CONFIRMED", Caller("alice")).status == "awaiting-second"
    before = [c.to_json() for c in reviews.get(search)]
    reviews.close(), settings.close(), log.close()
    url = request.getfixturevalue("pg").database()
    report = {m.part: m for m in migrate(home, None, url)}
    assert report["review"].outcome == "moved" and report["review"].counts["review_decisions"] == 1
    pg_log, pg_settings = open_audit_log(home, url), open_settings(home, url)
    moved = open_reviews(home, url, pg_log, pg_settings)
    assert [c.to_json() for c in moved.get(search)] == before
    assert moved.decide(search, face, "CONFIRMED", Caller("bob")).status == "confirmed"  # the second reviewer
    moved.close(), pg_settings.close()
