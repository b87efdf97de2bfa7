"""The video job store on both back-ends (SQLite's ``JobStore``, PostgreSQL's ``PgJobStore``): the
same behaviour, call for call; then what several nodes on one PostgreSQL need (each job claimed
once, the job limit across nodes, a node whose lease lapsed losing its job) and one face search
started on one node, run by another and read from both (two homes, one database)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import LFW, models_dir
from faceprint.errors import InvalidPaginationTokenException, LimitExceededException
from faceprint.video.context import Item
from faceprint.video.store import FAILED, QUEUED, RUNNING, SUCCEEDED, JobRow, JobStore, new_secret
from pg import PgServer, pg  # noqa: F401

ARN = {"SNSTopicArn": "arn:aws:sns:us-east-1:123456789012:t", "RoleArn": "r", "URL": "http://127.0.0.1:9/x"}


@pytest.fixture(params=["sqlite", "postgresql"])
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``nodes(lease_seconds=...)`` opens one more node's job store on the same jobs (SQLite: the
    same file; PostgreSQL: the same database, each node with its own input folder)."""
    url = request.getfixturevalue("pg").database() if request.param == "postgresql" else None
    opened: list[Any] = []

    def open_node(lease_seconds: float = 30.0) -> Any:
        if url is None:
            store: Any = JobStore(tmp_path / "video" / "jobs.db")
        else:
            from faceprint.video.store_pg import PgJobStore

            store = PgJobStore(url, tmp_path / f"node{len(opened)}" / "inputs", lease_seconds=lease_seconds)
        opened.append(store)
        return store

    yield open_node
    for store in opened:
        store.close()


def row(api: str = "StartFaceSearch", token: str | None = None, created: float | None = None,
        notification: dict[str, str] | None = None, kind: str = "input", expiry: float = 3600.0) -> JobRow:
    return JobRow(job_id=uuid.uuid4().hex, api=api, status=QUEUED, status_message=None,
                  params={"CollectionId": "c"}, request_hash="h", client_token=token, job_tag=None,
                  notification=notification, notify_pending=False, source_kind=kind, source="",
                  profile="fast", owner=None, secret=new_secret(), created=time.time() if created is None else created,
                  started=None, finished=None, expiry_seconds=expiry, expires=None, attempts=0, frames_done=0,
                  frames_total=0, metadata=None, limits={"max_bytes": 100})


def items(n: int) -> list[Item]:
    """``n`` face-search items: person i at (n - i) * 10 ms, matching face ``f{i}``."""
    return [Item(timestamp_ms=(n - i) * 10, index=i, body={"Timestamp": (n - i) * 10, "Person": {"Index": i},
                                                           "FaceMatches": [{"Face": {"FaceId": f"f{i}"}}]})
            for i in range(n)]


def test_start_tokens_limit_and_listing(nodes) -> None:
    a, b = nodes(), nodes()
    first = a.insert(row(token="t1", created=1.0), 2)
    assert b.insert(row(token="t1"), 2) == first  # the same ClientRequestToken, from another node
    assert b.by_token("StartFaceSearch", "t1") == first and b.get(first.job_id) == first
    second = b.insert(row(created=2.0), 2)
    with pytest.raises(LimitExceededException):
        a.insert(row(), 2)
    with pytest.raises(LimitExceededException):
        b.check_limit(2)
    assert [r.job_id for r in a.listing(0.0, None, 10)] == [second.job_id, first.job_id]
    assert [r.job_id for r in a.listing(0.0, (2.0, second.job_id), 10)] == [first.job_id]


def test_claims_owned_writes_and_pages(nodes) -> None:
    a, b = nodes(), nodes()
    old, s3 = a.insert(row(created=1.0), 9), a.insert(row(created=0.5, kind="s3"), 9)
    new = a.insert(row(created=2.0), 9)
    assert a.claimable(("path", "input")) == 2 and a.claimable(("s3",)) == 1
    claimed = b.claim("run-b", 10.0, ("path", "input"))
    assert claimed.job_id == old.job_id and claimed.status == RUNNING and claimed.attempts == 1
    assert a.claim("run-a", 10.0, ("path", "input")).job_id == new.job_id
    assert a.claim("run-a2", 10.0, ("path", "input")) is None and a.get(s3.job_id).status == QUEUED
    assert not a.add_items(old.job_id, "run-a", items(1)) and not a.set_progress(old.job_id, "run-a", 1, 2)
    assert a.add_items(old.job_id, "run-b", items(3)[:2]) and a.set_progress(old.job_id, "run-b", 5, 9)
    assert a.set_metadata(old.job_id, "run-b", {"video": {"Codec": "h264"}})
    assert a.get(old.job_id).frames_done == 5 and b.get(old.job_id).metadata == {"video": {"Codec": "h264"}}
    assert not b.finish(old.job_id, "run-a", SUCCEEDED, None, 20.0)
    assert b.finish(old.job_id, "run-b", SUCCEEDED, None, 20.0, items(3)[2:])
    done = a.get(old.job_id)
    assert (done.status, done.owner, done.finished, done.expires) == (SUCCEEDED, None, 20.0, 3620.0)
    with a.reading():
        page, token = a.page(done, "TIMESTAMP", 2, None)
    assert [p["Timestamp"] for p in page] == [10, 20] and token is not None
    rest, end = b.page(done, "TIMESTAMP", 2, token)  # a token from another node
    assert [p["Timestamp"] for p in rest] == [30] and end is None
    by_index, _ = b.page(done, "INDEX", 5, None)
    assert [p["Person"]["Index"] for p in by_index] == [0, 1, 2]
    for forged in (token[:-2] + "AA", a.page(done, "INDEX", 1, None)[1]):
        with pytest.raises(InvalidPaginationTokenException):
            b.page(done, "TIMESTAMP", 2, forged)
    assert b.erase_matches(["f1"]) == {"Jobs": [old.job_id], "Matches": 1}
    assert [p["FaceMatches"] for p in a.page(done, "INDEX", 5, None)[0]][1] == []


def test_release_recover_and_failing_twice(nodes) -> None:
    dead, alive = nodes(lease_seconds=0.0), nodes()
    job = alive.insert(row(), 9)
    assert dead.claim("run-1", 1.0, ("input",)) is not None and dead.add_items(job.job_id, "run-1", items(2))
    assert dead.release(job.job_id, "run-1") and alive.get(job.job_id).attempts == 0  # a release is no attempt
    for attempt in (1, 2):
        dead.claim(f"dead-{attempt}", 1.0, ("input",))
        dead.add_items(job.job_id, f"dead-{attempt}", items(2))
        time.sleep(0.01)
        failed = alive.recover(5.0, 2, "gone twice")
        again = alive.get(job.job_id)
        if attempt == 1:
            assert failed == [] and (again.status, again.owner, again.attempts) == (QUEUED, None, 1)
            assert alive.page(again, "INDEX", 9, None)[0] == []  # its partial items deleted
    assert [r.job_id for r in failed] == [job.job_id]
    assert (again.status, again.status_message, again.attempts) == (FAILED, "gone twice", 2)
    assert not dead.add_items(job.job_id, "dead-2", items(1))


def test_notifications_are_pending_until_sent(nodes) -> None:
    a, b = nodes(), nodes()
    job = a.insert(row(notification=ARN), 9)
    quiet = a.insert(row(), 9)
    for j in (job, quiet):
        owner = f"run-{j.job_id}"
        a.claim(owner, 1.0, ("input",))
        a.finish(j.job_id, owner, FAILED, "bad", 2.0)
    assert a.get(job.job_id).notify_pending and not a.get(quiet.job_id).notify_pending
    assert [r.job_id for r in b.pending_notifications()] == [job.job_id]
    b.notified(job.job_id)
    assert a.pending_notifications() == [] and b.pending_notifications() == []


def test_inputs_travel_and_are_erased(nodes, tmp_path: Path) -> None:
    a, b = nodes(), nodes()
    job = a.insert(row(expiry=1.0), 9)
    data = bytes(range(256)) * 4099  # a few pieces in PostgreSQL (CHUNK made small below)
    if a.shared:
        import faceprint.video.store_pg as store_pg

        chunk, store_pg.CHUNK = store_pg.CHUNK, 100_000
        try:
            a.write_input(job.job_id, data)
        finally:
            store_pg.CHUNK = chunk
    else:
        a.write_input(job.job_id, data)
    seen: list[int] = []
    fetched = b.fetch_input(job.job_id, seen.append)
    assert fetched.read_bytes() == data and fetched.stat().st_mode & 0o777 == 0o600
    assert seen == ([100_000 * (k + 1) for k in range(10)] + [len(data)] if b.shared else [])
    b.claim("run", 1.0, ("input",))
    b.finish(job.job_id, "run", SUCCEEDED, None, 1.0, items(2))
    assert b.sweep(1.5) == []  # not expired: the input pieces of an ended job go, the row stays
    assert a.sweep(10.0) == [job.job_id] and a.get(job.job_id) is None
    b.sweep(10.0)
    assert not a.input_path(job.job_id).exists() and not b.input_path(job.job_id).exists()
    if a.shared:
        assert a._part.rows("SELECT count(*) FROM video_inputs") == [(0,)]
        assert a._part.rows("SELECT count(*) FROM video_items") == [(0,)]


# -- several nodes on one PostgreSQL ---------------------------------------------------------------------


@pytest.fixture()
def pg_nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    from faceprint.video.store_pg import PgJobStore

    url, opened = request.getfixturevalue("pg").database(), []

    def open_node(lease_seconds: float = 30.0) -> PgJobStore:
        opened.append(PgJobStore(url, tmp_path / f"n{len(opened)}", lease_seconds=lease_seconds))
        return opened[-1]

    yield open_node
    for store in opened:
        store.close()


def test_nodes_claiming_at_once_take_each_job_once(pg_nodes) -> None:
    a, b = pg_nodes(), pg_nodes()
    jobs = {a.insert(row(created=float(i)), 100).job_id for i in range(40)}
    taken: list[str] = []

    def claim_all(store: Any) -> None:
        while (found := store.claim(uuid.uuid4().hex, 1.0, ("input",))) is not None:
            taken.append(found.job_id)

    threads = [threading.Thread(target=claim_all, args=(s,)) for s in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == sorted(jobs)


def test_the_job_limit_holds_across_nodes(pg_nodes) -> None:
    stores, accepted, refused = [pg_nodes(), pg_nodes()], [], []

    def start(store: Any) -> None:
        for _ in range(6):
            try:
                accepted.append(store.insert(row(), 5).job_id)
            except LimitExceededException:
                refused.append(1)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 5 and len(refused) == 19


def test_a_node_whose_lease_lapsed_loses_its_job(pg_nodes) -> None:
    a, b = pg_nodes(lease_seconds=1.0), pg_nodes()
    job = a.insert(row(), 9)
    a.claim("a-run", 1.0, ("input",))
    a.renew(["a-run"])
    assert b.recover(2.0, 2, "x") == [] and b.get(job.job_id).owner == "a-run"  # within its lease
    time.sleep(1.3)  # node a stopped renewing: its lease lapses
    assert b.recover(2.0, 2, "x") == [] and b.get(job.job_id).status == QUEUED
    assert b.claim("b-run", 3.0, ("input",)).attempts == 2
    assert not a.add_items(job.job_id, "a-run", items(1)) and not a.finish(job.job_id, "a-run", SUCCEEDED, None, 4.0)
    assert b.finish(job.job_id, "b-run", SUCCEEDED, None, 4.0, items(1))


def test_a_notification_is_claimed_by_one_node(pg_nodes) -> None:
    a, b = pg_nodes(), pg_nodes()
    job = a.insert(row(notification=ARN), 9)
    a.claim("run", 1.0, ("input",))
    a.finish(job.job_id, "run", SUCCEEDED, None, 2.0)
    got = [a.pending_notifications(), b.pending_notifications()]
    assert sorted(len(g) for g in got) == [0, 1]  # one node sends it; the other does not see it


def test_a_stopped_fetch_leaves_no_partial_file(pg_nodes) -> None:
    a, b = pg_nodes(), pg_nodes()
    job = a.insert(row(), 9)
    a.write_input(job.job_id, b"video" * 10)

    def stop(done: int) -> None:
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError):
        b.fetch_input(job.job_id, stop)
    assert list(b.inputs.iterdir()) == []
    assert b.fetch_input(job.job_id).read_bytes() == b"video" * 10


# -- a face search across two nodes ------------------------------------------------------------------------


class Receiver:
    """A real HTTP endpoint that answers 200 and keeps the bodies POSTed to it."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        posts = self.posts = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sns"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_face_search_started_on_one_node_runs_and_reads_on_another(request: pytest.FixtureRequest,
                                                                     tmp_path: Path) -> None:
    """Node a starts the job (and runs none); a node that claimed it dies; of nodes b and c, one takes
    it over and runs it, renewing its lease while a fourth looks for lapsed ones; a reads the results,
    b reads on from a's NextToken; the notification arrives once; the input is erased."""
    from faceprint.service import Faceprint
    from faceprint.video.service import VideoSettings
    from faceprint.video.store_pg import PgJobStore
    from videokit import Walker, photos_of, walking_clip

    url = request.getfixturevalue("pg").database()
    photo = photos_of(LFW, "David_Beckham")
    clip = tmp_path / "clip.mp4"
    walking_clip(clip, 320, 240, 2.0, [Walker(photo[1], 120, (20, 40), (180, 60))])
    receiver = Receiver()

    def node(name: str, run_jobs: bool) -> Faceprint:
        return Faceprint(tmp_path / name, profile="fast", models_dir=models_dir(), store_url=url,
                         video=VideoSettings(run_jobs=run_jobs, sns_topics={ARN["SNSTopicArn"]: receiver.url}))

    a, b, c = node("a", False), node("b", True), node("c", True)
    try:
        a.create_collection("people")
        face_id = a.index_faces("people", photo[0], external_image_id="beckham").face_records[0].face.face_id
        channel = {"SNSTopicArn": ARN["SNSTopicArn"], "RoleArn": "arn:aws:iam::123456789012:role/R"}
        job_id = a.start_face_search(clip.read_bytes(), "people", 80, notification_channel=channel).job_id
        assert a.get_face_search(job_id).job_status == "IN_PROGRESS"
        dead = PgJobStore(url, tmp_path / "dead", lease_seconds=0.0)  # a node that claims it, then dies
        assert dead.claim("dead-run", time.time(), ("input",)).job_id == job_id
        dead.close()
        for runner in (b, c):
            runner.video.store.lease_seconds = 3.0  # renewed every second while a job runs
            runner.video.start_runner()  # takes over the lapsed job, its video from PostgreSQL
        watcher = PgJobStore(url, tmp_path / "watcher")
        while (found := watcher.get(job_id)).owner in (None, "dead-run"):
            time.sleep(0.05)
        while found.status == RUNNING:
            assert watcher.recover(time.time(), 2, "lapsed") == [], "the running node's lease lapsed"
            time.sleep(0.2)
            found = watcher.get(job_id)
        watcher.close()
        assert a.video.wait(job_id, 120) == "SUCCEEDED"
        first = a.get_face_search(job_id, max_results=1)
        rest = b.get_face_search(job_id, max_results=1000, next_token=first.next_token)
        persons = first.persons + rest.persons
        matched = [m["Face"]["FaceId"] for p in persons for m in p.get("FaceMatches") or []]
        assert len(persons) >= 5 and face_id in matched
        assert b.video.store.get(job_id).attempts == 2
        wait_until(lambda: receiver.posts, "no notification")
        time.sleep(1.5)  # both runners look at pending notifications meanwhile
        assert [json.loads(p["Message"])["JobId"] for p in receiver.posts] == [job_id]
        inputs = [tmp_path / n / "video" / "inputs" / job_id for n in "bc"]
        wait_until(lambda: b.video.store._part.rows("SELECT count(*) FROM video_inputs") == [(0,)]
                   and not any(i.exists() for i in inputs), "the job's input was not erased")
        erased = node("d", False).erase(external_image_id="beckham")  # a node that never opened its video jobs
        assert erased["VideoJobs"] == [job_id] and erased["VideoMatchesErased"] >= 1
        after = a.get_face_search(job_id).persons
        assert not [m for p in after for m in p.get("FaceMatches") or [] if m["Face"]["FaceId"] == face_id]
    finally:
        for fp in (c, b, a):
            fp.video.close()
        receiver.close()


def test_an_embedded_homes_jobs_move_to_postgresql(pg_nodes, tmp_path: Path) -> None:
    """``copy_jobs`` (faceprint migrate's mover): rows as stored (tokens stay good), results, videos."""
    from faceprint.errors import InvalidParameterException
    from faceprint.video.store_pg import MOVED_PATH_GONE, copy_jobs

    home = JobStore(tmp_path / "home" / "video" / "jobs.db")
    done, queued, running = home.insert(row(created=1.0), 9), home.insert(row(created=2.0), 9), home.insert(
        row(created=3.0, kind="path"), 9)
    gone = home.insert(row(created=4.0, kind="path", notification=ARN), 9)
    home.claim("r1", 5.0, ("input",))
    home.finish(done.job_id, "r1", SUCCEEDED, None, 6.0, items(3))
    home.write_input(queued.job_id, b"queued video")
    (tmp_path / "clip.mp4").write_bytes(b"running video")
    home._db().execute("UPDATE jobs SET source = ? WHERE job_id = ?", (str(tmp_path / "clip.mp4"), running.job_id))
    home._db().execute("UPDATE jobs SET source = ? WHERE job_id = ?", (str(tmp_path / "nothing"), gone.job_id))
    home.claim("r2", 7.0, ("path",))
    home.add_items(running.job_id, "r2", items(2))
    before, token = home.page(home.get(done.job_id), "TIMESTAMP", 1, None)
    target = pg_nodes()
    assert copy_jobs(home, target) == {"Jobs": 4, "Items": 3, "InputBytes": 25}
    moved = target.get(done.job_id)
    assert moved == home.get(done.job_id)
    assert target.page(moved, "TIMESTAMP", 1, None) == (before, token)
    assert [p["Timestamp"] for p in target.page(moved, "TIMESTAMP", 5, token)[0]] == [20, 30]
    assert target.fetch_input(queued.job_id).read_bytes() == b"queued video"
    again = target.get(running.job_id)
    assert (again.status, again.source_kind, again.attempts, again.owner) == (QUEUED, "input", 0, None)
    assert target.fetch_input(running.job_id).read_bytes() == b"running video"
    failed = target.get(gone.job_id)
    assert (failed.status, failed.status_message, failed.notify_pending) == (FAILED, MOVED_PATH_GONE, True)
    with pytest.raises(InvalidParameterException):
        copy_jobs(home, target)
    home.close()


def test_open_job_store_picks_the_back_end_and_makes_the_homes_video_folder(request: pytest.FixtureRequest,
                                                                            tmp_path: Path) -> None:
    """The runner's lock and log and the node's input files live in ``HOME/video`` (private) either way."""
    from faceprint.video.store import open_job_store
    from faceprint.video.store_pg import PgJobStore

    assert open_job_store(tmp_path / "none", None, existing=True) is None
    sqlite = open_job_store(tmp_path / "embedded", None)
    shared = open_job_store(tmp_path / "node", request.getfixturevalue("pg").database())
    assert type(sqlite) is JobStore and type(shared) is PgJobStore and shared.inputs == tmp_path / "node/video/inputs"
    for home in ("embedded", "node"):
        assert (tmp_path / home / "video").stat().st_mode & 0o777 == 0o700
    sqlite.close()
    shared.close()


def test_two_serve_nodes_share_video_jobs(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """``faceprint serve --store postgresql://`` twice (two homes, the same bucket folder): a job
    started on one node is run by a node's runner and read, page by page, from both."""
    import numpy as np

    from serverkit import Server
    from videokit import background, write_video

    url = request.getfixturevalue("pg").database()
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    scenes = [background(160, 120, s) for s in range(3)]
    black = np.zeros((120, 160, 3), np.uint8)
    write_video(bucket / "clip.mp4", (black if 50 <= i < 75 else scenes[i // 25 % 3] for i in range(100)))
    servers: list[Server] = []
    try:
        for name in ("node-a", "node-b"):
            (tmp_path / name).mkdir()
            servers.append(Server(tmp_path / name, "--no-auth", "--store", url, "--bucket", f"cctv={bucket}"))
        a, b = (s.client() for s in servers)
        job = a.start_segment_detection(Video={"S3Object": {"Bucket": "cctv", "Name": "clip.mp4"}},
                                        SegmentTypes=["SHOT", "TECHNICAL_CUE"])["JobId"]
        wait_until(lambda: b.get_segment_detection(JobId=job)["JobStatus"] != "IN_PROGRESS", "the job did not end")
        first = b.get_segment_detection(JobId=job, MaxResults=1)
        assert first["JobStatus"] == "SUCCEEDED" and len(first["Segments"]) == 1
        rest = a.get_segment_detection(JobId=job, NextToken=first["NextToken"])
        types = [s["Type"] for s in first["Segments"] + rest["Segments"]]
        assert types.count("SHOT") >= 3 and types.count("TECHNICAL_CUE") == 1
    finally:
        for server in servers:
            server.stop()


def test_the_job_store_carries_on_after_postgresql_restarts(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from faceprint.video.store_pg import PgJobStore

    server = request.getfixturevalue("pg")
    store = PgJobStore(server.database(), tmp_path / "inputs")
    job = store.insert(row(), 9)
    server.restart()  # pooled connections are cut: the next calls get new ones
    assert store.claim("run", 1.0, ("input",)).job_id == job.job_id
    assert store.finish(job.job_id, "run", SUCCEEDED, None, 2.0, items(2))
    store.close()


def test_deleted_inputs_are_vacuumed_soon(pg_nodes) -> None:
    """The input pieces live in video_inputs' TOAST table: it, like the tables, is set to be vacuumed
    after any delete (autovacuum's defaults would wait for 50 dead rows and a fifth of the table)."""
    store = pg_nodes()
    found = store._part.rows("SELECT c.relname, t.reloptions FROM pg_class c JOIN pg_class t ON t.oid = "
                             "c.reltoastrelid WHERE c.relname IN ('video_jobs', 'video_items', 'video_inputs') "
                             "ORDER BY c.relname")
    assert [name for name, _ in found] == ["video_inputs", "video_items", "video_jobs"]
    for _, options in found:
        assert {"autovacuum_vacuum_threshold=1", "autovacuum_vacuum_scale_factor=0"} <= set(options)
