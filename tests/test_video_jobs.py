"""Stored-video jobs that really run: real encoded clips (PyAV), the segment analyser in real
worker processes, the real job store, runners as threads and as ``python -m
faceprint.video.runner`` processes killed with SIGKILL, and a real HTTP server receiving the SNS
notifications."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import models_dir
from faceprint.server.s3 import Buckets
from faceprint.service import Faceprint
from faceprint.video.notify import Notifier
from faceprint.video.runner import MAX_ATTEMPTS, ORPHANED, RunnerSettings, VideoRunner, ensure_runner, lock_free
from faceprint.video.service import VideoJobs, VideoSettings
from faceprint.video.store import QUEUED, RUNNING
from videokit import background, write_video

TOPIC = "arn:aws:sns:us-east-1:123456789012:faceprint-jobs"
ROLE = "arn:aws:iam::123456789012:role/RekognitionSNS"
BOTH = ["SHOT", "TECHNICAL_CUE"]
LONG_SHOTS = 21
"""The long clip: 20 scenes of 100 frames, the 11th cut short by 50 black frames (a shot of its own)."""


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    scenes = [background(160, 120, seed) for seed in range(4)]
    black = np.zeros((120, 160, 3), np.uint8)
    short = write_video(folder / "short.mp4", (scenes[i // 25] for i in range(50)))
    long = write_video(folder / "long.mp4",
                       (black if 1000 <= i < 1050 else scenes[(i // 100) % 4] for i in range(2000)))
    return {"short": short, "long": long}


def make(home: Path, **settings: Any) -> Faceprint:
    return Faceprint(home, profile="fast", models_dir=models_dir(), video=VideoSettings(**settings))


@pytest.fixture()
def opened() -> Iterator[list[Faceprint]]:
    """Faceprints whose runners are closed after the test."""
    made: list[Faceprint] = []
    yield made
    for fp in made:
        fp.video.close()


def wait_for(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"still not true after {timeout} s")


def worker_pids(parent: int) -> list[int]:
    """The video workers whose parent is ``parent`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z" and b"faceprint.video.worker" in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def segments(fp: Faceprint, job_id: str) -> list[dict[str, Any]]:
    answer = fp.get_segment_detection(job_id)
    assert answer.job_status == "SUCCEEDED", answer.status_message
    return answer.segments


def check_long(found: list[dict[str, Any]]) -> None:
    """The long clip's segments (asked for as SHOT, TECHNICAL_CUE), each once, by type then time:
    the shots cover it end to end, one black run."""
    assert [s["Type"] for s in found] == ["SHOT"] * LONG_SHOTS + ["TECHNICAL_CUE"]
    shots = [s for s in found if s["Type"] == "SHOT"]
    assert [s["ShotSegment"]["Index"] for s in shots] == list(range(LONG_SHOTS))
    assert shots[0]["StartFrameNumber"] == 0 and shots[-1]["EndFrameNumber"] == 1999
    assert all(a["EndFrameNumber"] + 1 == b["StartFrameNumber"] for a, b in zip(shots, shots[1:], strict=False))
    cues = [s for s in found if s["Type"] == "TECHNICAL_CUE"]
    assert [(c["StartFrameNumber"], c["EndFrameNumber"]) for c in cues] == [(1000, 1049)]


def test_a_job_runs_in_a_worker(tmp_path: Path, clips: dict[str, Path], opened: list[Faceprint]) -> None:
    fp = make(tmp_path / "home")
    opened.append(fp)
    job = fp.start_segment_detection(clips["short"].read_bytes(), BOTH, job_tag="clip-1").job_id
    assert fp.video.wait(job, timeout=60) == "SUCCEEDED"
    answer = fp.get_segment_detection(job).to_dict()
    assert answer["JobTag"] == "clip-1" and "StatusMessage" not in answer and "Video" not in answer
    assert [(s["Type"], s["StartFrameNumber"], s["EndFrameNumber"]) for s in answer["Segments"]] == [
        ("SHOT", 0, 24), ("SHOT", 25, 49)]
    assert answer["VideoMetadata"][0]["FrameWidth"] == 160 and answer["VideoMetadata"][0]["Codec"] == "h264"
    assert answer["AudioMetadata"] == []
    assert [t["Type"] for t in answer["SelectedSegmentTypes"]] == BOTH
    assert fp.video.progress(job) == (50, 50)
    page = fp.get_segment_detection(job, max_results=1)
    rest = fp.get_segment_detection(job, max_results=1, next_token=page.next_token)
    assert page.segments + rest.segments == answer["Segments"] and rest.next_token is None
    wait_for(lambda: not fp.video.store.input_path(job).exists())  # deleted after the job


def test_bad_videos_fail_with_a_message(tmp_path: Path, clips: dict[str, Path], opened: list[Faceprint]) -> None:
    fp = make(tmp_path / "home", workers=2)
    opened.append(fp)
    data = clips["short"].read_bytes()
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    silent = tmp_path / "silent.mp4"
    silent.write_bytes(b"")
    jobs = {"garbage": fp.start_segment_detection(os.urandom(5000), ["SHOT"]).job_id,
            "truncated": fp.start_segment_detection(data[: len(data) // 2], ["SHOT"]).job_id,
            "text": fp.start_face_detection(text).job_id,
            "empty": fp.start_segment_detection(silent, ["SHOT"]).job_id}
    for name, job in jobs.items():
        assert fp.video.wait(job, timeout=60) == "FAILED", name
    for name in ("garbage", "truncated", "empty"):
        answer = fp.get_segment_detection(jobs[name]).to_dict()
        assert re.search(r"not a video|damaged|truncated|no video stream|empty", answer["StatusMessage"]), answer
        assert "Segments" not in answer and "Traceback" not in answer["StatusMessage"]
    assert "not a video" in fp.get_face_detection(jobs["text"]).status_message
    assert text.exists()  # a path is read in place, never deleted
    wait_for(lambda: not list(fp.video.store.inputs.iterdir()))


class Receiver:
    """A real HTTP endpoint: the first POST is answered 500 (to be retried, unless not
    ``fail_first``), the others 200."""

    def __init__(self, fail_first: bool = True) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(500 if fail_first and len(receiver.posts) == 1 else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sns"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_s3_input_and_notification(tmp_path: Path, clips: dict[str, Path], receiver: Receiver,
                                   opened: list[Faceprint]) -> None:
    bucket = tmp_path / "bucket"
    (bucket / "news").mkdir(parents=True)
    (bucket / "news" / "clip.mp4").write_bytes(clips["short"].read_bytes())
    fp = make(tmp_path / "home", sns_topics={TOPIC: receiver.url}, buckets=Buckets({"videos": bucket}))
    opened.append(fp)
    s3 = {"Bucket": "videos", "Name": "news/clip.mp4"}
    job = fp.start_segment_detection({"S3Object": s3}, ["SHOT"], job_tag="news-1",
                                     notification_channel={"SNSTopicArn": TOPIC, "RoleArn": ROLE}).job_id
    assert fp.video.wait(job, timeout=60) == "SUCCEEDED"
    answer = fp.get_segment_detection(job).to_dict()
    assert answer["Video"] == {"S3Object": s3} and len(answer["Segments"]) == 2
    wait_for(lambda: len(receiver.posts) == 2, timeout=30)  # the first was answered 500, then retried
    (headers, first), (_, second) = receiver.posts
    envelope = json.loads(second)
    assert json.loads(first) == envelope  # a retry sends the same notification (same MessageId)
    assert headers["x-amz-sns-message-type"] == "Notification" and headers["x-amz-sns-topic-arn"] == TOPIC
    assert headers["x-amz-sns-message-id"] == envelope["MessageId"]
    assert envelope["Type"] == "Notification" and envelope["TopicArn"] == TOPIC
    assert envelope["SignatureVersion"] == "1" and envelope["Subject"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", envelope["Timestamp"])
    message = json.loads(envelope["Message"])
    assert message == {"JobId": job, "Status": "SUCCEEDED", "API": "StartSegmentDetection", "JobTag": "news-1",
                       "Timestamp": message["Timestamp"], "Video": {"S3ObjectName": "news/clip.mp4",
                                                                    "S3Bucket": "videos"}}
    assert abs(message["Timestamp"] / 1000 - time.time()) < 120
    wait_for(lambda: not fp.video.store.input_path(job).exists())  # the copy is deleted, not the object
    assert (bucket / "news" / "clip.mp4").exists()
    wait_for(lambda: not fp.video.store.get(job).notify_pending)


def test_a_killed_worker_fails_its_job(tmp_path: Path, clips: dict[str, Path], opened: list[Faceprint]) -> None:
    fp = make(tmp_path / "home")
    opened.append(fp)
    job = fp.start_segment_detection(clips["long"], BOTH).job_id
    wait_for(lambda: fp.video.progress(job)[0] > 0)
    (worker,) = wait_for(lambda: worker_pids(os.getpid()))
    os.kill(worker, signal.SIGKILL)
    assert fp.video.wait(job, timeout=60) == "FAILED"
    assert fp.get_segment_detection(job).status_message == (
        "The worker process running the job stopped unexpectedly (signal 9).")


def test_close_requeues_for_the_next_runner(tmp_path: Path, clips: dict[str, Path], opened: list[Faceprint]) -> None:
    first = make(tmp_path / "home")
    job = first.start_segment_detection(clips["long"], BOTH).job_id
    wait_for(lambda: first.video.progress(job)[0] > 0)
    first.video.close()
    row = first.video.store.get(job)
    assert (row.status, row.attempts, row.frames_done) == (QUEUED, 0, 0)  # a clean stop is no attempt
    assert not worker_pids(os.getpid())
    second = make(tmp_path / "home")
    opened.append(second)
    assert second.video.wait(job, timeout=60) == "SUCCEEDED"
    check_long(segments(second, job))


def runner(home: Path, log: Path) -> subprocess.Popen:
    """``python -m faceprint.video.runner``, exiting when idle."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "faceprint.video.runner", "--home", str(home),
                                 "--models-dir", str(models_dir()), "--exit-when-idle"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)


def kill_while_running(jobs: VideoJobs, job: str, proc: subprocess.Popen, attempt: int, progressed: bool) -> None:
    """SIGKILL ``proc`` (a runner) once it runs ``job``'s ``attempt`` (and has decoded frames, if
    ``progressed``); its worker then exits by itself."""
    wait_for(lambda: (row := jobs.store.get(job)).status == RUNNING and row.attempts == attempt
             and (row.frames_done > 0 or not progressed))
    workers = wait_for(lambda: worker_pids(proc.pid)) if progressed else worker_pids(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    for pid in workers:
        wait_for(lambda pid=pid: not alive(pid), timeout=15)


def test_a_killed_runner_resumes_in_the_next(tmp_path: Path, clips: dict[str, Path]) -> None:
    home, log = tmp_path / "home", tmp_path / "runner.log"
    jobs = make(home, run_jobs=False).video
    job = jobs.start_segment_detection(clips["long"], BOTH).job_id
    kill_while_running(jobs, job, runner(home, log), 1, progressed=True)
    assert jobs.store.get(job).status == RUNNING  # as the dead runner left it
    second = runner(home, log)
    assert second.wait(60) == 0, log.read_text()  # it ran the job, then left, idle
    row = jobs.store.get(job)
    assert (row.status, row.attempts) == ("SUCCEEDED", 2)
    check_long(jobs.get_segment_detection(job).segments)


def test_a_job_orphaned_twice_fails(tmp_path: Path, clips: dict[str, Path]) -> None:
    home, log = tmp_path / "home", tmp_path / "runner.log"
    jobs = make(home, run_jobs=False).video
    job = jobs.start_segment_detection(clips["long"].read_bytes(), BOTH).job_id
    for attempt in (1, 2):
        kill_while_running(jobs, job, runner(home, log), attempt, progressed=False)
    third = runner(home, log)
    assert third.wait(60) == 0, log.read_text()
    answer = jobs.get_segment_detection(job)
    assert (answer.job_status, answer.status_message) == ("FAILED", ORPHANED)
    assert not jobs.store.input_path(job).exists()


def test_ensure_runner_starts_a_detached_runner(tmp_path: Path, clips: dict[str, Path]) -> None:
    home = tmp_path / "home"
    jobs = make(home, run_jobs=False).video
    job = jobs.start_segment_detection(clips["short"], ["SHOT"]).job_id
    ensure_runner(home, models_dir())
    assert jobs.wait(job, timeout=60) == "SUCCEEDED"
    wait_for(lambda: lock_free(home))  # it exits once idle
    log = home / "video" / "runner.log"
    assert log.stat().st_mode & 0o777 == 0o600


def test_a_job_failed_as_an_orphan_is_notified_once(tmp_path: Path, clips: dict[str, Path]) -> None:
    """A runner taking the lock fails a job orphaned twice, and sends the notifications left
    pending: the job failed now is one of them, and is sent once."""
    receiver = Receiver(fail_first=False)
    try:
        home = tmp_path / "home"
        jobs = make(home, run_jobs=False, sns_topics={TOPIC: receiver.url}).video
        job = jobs.start_segment_detection(clips["short"], ["SHOT"], notification_channel={
            "SNSTopicArn": TOPIC, "RoleArn": ROLE}).job_id
        for attempt in range(1, MAX_ATTEMPTS + 1):  # claimed, then left RUNNING by a runner that died
            assert jobs.store.claim(f"dead-{attempt}", time.time(), ("path",)).job_id == job
            if attempt < MAX_ATTEMPTS:
                assert jobs.store.recover(time.time(), MAX_ATTEMPTS, ORPHANED) == []
        notifier = Notifier(jobs.store.notified, backoff=0.01)
        VideoRunner(home, jobs.store, RunnerSettings(exit_when_idle=True), notifier=notifier).run()
        notifier.close(timeout=60)
        assert jobs.get_segment_detection(job).status_message == ORPHANED
        assert [json.loads(json.loads(body)["Message"])["JobId"] for _, body in receiver.posts] == [job]
    finally:
        receiver.close()


def test_a_dead_endpoint_holds_up_only_its_own_notifications(tmp_path: Path, clips: dict[str, Path]) -> None:
    """One endpoint accepts connections and never answers: the other's notification is sent at
    once, not after the first one's timeout (10 minutes here)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel accepts; nobody answers
    receiver = Receiver(fail_first=False)
    notifier = Notifier(lambda job_id: None, attempts=1, timeout=600)
    try:
        dead = TOPIC + "-dead"
        jobs = make(tmp_path / "home", run_jobs=False, sns_topics={
            TOPIC: receiver.url, dead: f"http://127.0.0.1:{silent.getsockname()[1]}/"}).video
        ids = [jobs.start_segment_detection(clips["short"], ["SHOT"], notification_channel={
            "SNSTopicArn": topic, "RoleArn": ROLE}).job_id for topic in (dead, TOPIC)]
        for job in ids:
            assert jobs.store.claim("run", time.time(), ("path",)).job_id == job
            assert jobs.store.finish(job, "run", "SUCCEEDED", None, time.time())
            notifier.notify(jobs.store.get(job))
        wait_for(lambda: receiver.posts, timeout=60)
        assert json.loads(json.loads(receiver.posts[0][1])["Message"])["JobId"] == ids[1]
    finally:
        silent.close()  # the waiting delivery fails at once
        notifier.close(timeout=30)
        receiver.close()


def test_a_runner_without_buckets_leaves_s3_jobs_to_one_with_them(tmp_path: Path, clips: dict[str, Path],
                                                                  opened: list[Faceprint]) -> None:
    """A Python program's runner holds the home's lock first; a server on the same home queues a
    Video.S3Object job that only it can fetch: the idle program's runner lets it run it."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / "clip.mp4").write_bytes(clips["short"].read_bytes())
    home = tmp_path / "home"
    program = make(home)
    opened.append(program)
    program.video.start_runner()
    wait_for(lambda: not lock_free(home))  # the program runs the home's jobs
    server = make(home, buckets=Buckets({"videos": bucket}))
    opened.append(server)
    job = server.start_segment_detection({"S3Object": {"Bucket": "videos", "Name": "clip.mp4"}}, ["SHOT"]).job_id
    assert server.video.wait(job, timeout=60) == "SUCCEEDED"
