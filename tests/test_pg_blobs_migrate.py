"""``faceprint migrate`` and the video jobs still in progress: refused before anything is written (a
clear message, a non-zero exit), unless forced; forced, they arrive FAILED (partial results gone,
their notification due) and the finished ones as they were, checked against the source so changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceprint.errors import InvalidParameterException
from faceprint.ops.migrate import migrate
from faceprint.store import CollectionRow
from faceprint.store.sqlite import SQLiteStore
from pg import PgServer, pg  # noqa: F401


def job(job_id: str, status: str, notification: dict | None = None):
    from faceprint.video.store import JobRow

    return JobRow(job_id=job_id, api="StartFaceDetection", status=status, status_message=None,
                  params={"FaceAttributes": "DEFAULT"}, request_hash="h" + job_id, client_token="tok-" + job_id,
                  job_tag="tag", notification=notification, notify_pending=False, source_kind="path",
                  source="/v.mp4", profile="fast", owner="runner" if status == "RUNNING" else None, secret="s" * 32,
                  created=1000.5, started=None, finished=None, expiry_seconds=86400.0, expires=None, attempts=1,
                  frames_done=0, frames_total=0, metadata=None, limits={"max_seconds": 60})


def busy_home(folder: Path) -> Path:
    """A home with a job finished (5 results), one running (2 partial results) and one queued."""
    from faceprint.video.context import Item
    from faceprint.video.store import JobStore

    SQLiteStore(folder / "faceprint.db").create_collection(CollectionRow("c", "arn:c", "6.0", 128, 1.0))
    jobs = JobStore(folder / "video" / "jobs.db")
    items = [Item(40 * i, 0, {"Timestamp": 40 * i, "Face": {"Confidence": 99.0}}) for i in range(5)]
    jobs.insert(job("done", "RUNNING"), 10)
    jobs.add_items("done", None, items)
    jobs.finish("done", None, "SUCCEEDED", None, 2000.0)
    jobs.insert(job("running", "RUNNING", {"SNSTopicArn": "arn:aws:sns:us-east-1:1:t", "RoleArn": "r"}), 10)
    jobs.add_items("running", None, items[:2])
    jobs.insert(job("queued", "QUEUED"), 10)
    return folder


def test_jobs_in_progress_refuse_the_move_before_anything_is_written(pg: PgServer, tmp_path: Path,  # noqa: F811
                                                                     capsys) -> None:
    from faceprint.cli import main

    home, url = busy_home(tmp_path / "home"), pg.database()
    with pytest.raises(InvalidParameterException, match="video: 2 video jobs are queued or running.*--force"):
        migrate(home, None, url)
    assert main(["--home", str(home), "migrate", "--to", url]) != 0
    assert "2 video jobs are queued or running" in capsys.readouterr().err
    database = url.split("?")[0].rsplit("/", 1)[1]
    assert pg.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", database) == [(0,)]
    assert main(["--home", str(home), "migrate", "--to", url, "--force", "--no-index"]) == 0  # the CLI's --force
    assert pg.sql("SELECT job_id, status FROM video_jobs ORDER BY job_id", database) == [
        ("done", "SUCCEEDED"), ("queued", "FAILED"), ("running", "FAILED")]


def test_forced_jobs_in_progress_move_as_failed(pg: PgServer, tmp_path: Path) -> None:  # noqa: F811
    from faceprint.ops.part_movers import FORCED
    from faceprint.video.store import JobStore
    from faceprint.video.store_pg import PgJobStore

    home, url = busy_home(tmp_path / "home"), pg.database()
    report = {m.part: m for m in migrate(home, None, url, force=True)}
    assert report["video"].outcome == "moved"
    assert report["video"].counts == {"video_jobs": 3, "video_items": 5}  # the running job's 2 not moved
    jobs, source = PgJobStore(url, tmp_path / "node" / "inputs"), JobStore(home / "video" / "jobs.db")
    for job_id in ("running", "queued"):
        moved = jobs.get(job_id)
        assert (moved.status, moved.status_message, moved.owner) == ("FAILED", FORCED, None)
        assert moved.expires == moved.finished + 86400.0
    assert jobs.get("running").notify_pending and not jobs.get("queued").notify_pending
    assert jobs.get("done") == source.get("done")
    assert source.get("running").status == "RUNNING"  # the source is only read
    assert {m.outcome for m in migrate(home, None, url, force=True)} <= {"already moved", "nothing to move"}
    jobs.close()
