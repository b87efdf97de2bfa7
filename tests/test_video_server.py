"""Stored video through `faceprint serve` and boto3: every Start/Get pair on real encoded clips in a
local bucket, Rekognition's errors, the limits, SNS notifications to a real HTTP receiver, and a
server killed during a job then restarted. Also Buckets' video copies (local folders and moto's S3).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from conftest import lfw_image
from contract import output_shape, validate
from faceprint.errors import InvalidParameterException, InvalidS3ObjectException, VideoTooLargeException
from faceprint.server.run import parse_job_expiry, sns_topics
from faceprint.server.s3 import Buckets
from serverkit import RawBodies, Server
from videokit import background, face_sprite, paste, write_video

TOPIC = "arn:aws:sns:us-east-1:123456789012:AmazonRekognitionJobs"
ROLE = "arn:aws:iam::123456789012:role/RekognitionSNS"


# -- clips ----------------------------------------------------------------------------------------------

def face_clip(path: Path, seconds: float = 2.0, width: int = 480, height: int = 272, fps: int = 25,
              person: tuple[str, int] = ("Aaron_Peirsol", 2)) -> Path:
    """One LFW face (120 px wide) drifting over a textured background."""
    sprite = face_sprite(lfw_image(*person), 120)
    scene = background(width, height, seed=3)
    frames = int(seconds * fps)

    def draw() -> Iterator[np.ndarray]:
        for i in range(frames):
            frame = scene.copy()
            paste(frame, sprite, 40 + (i * 200) // max(frames, 1), 60)
            yield frame

    return write_video(path, draw(), fps=fps)


def shots_clip(path: Path) -> Path:
    """Two shots (different backgrounds) with a second of black between them."""
    first, second = background(320, 240, seed=1), background(320, 240, seed=9)[::-1].copy()
    black = np.zeros((240, 320, 3), np.uint8)
    return write_video(path, [first] * 25 + [black] * 25 + [second] * 25, fps=25)


def text_clip(path: Path) -> Path:
    """Half a second of black, then a still picture with the words FACEPRINT VIDEO."""
    import cv2

    words = np.full((240, 320, 3), 235, np.uint8)
    cv2.putText(words, "FACEPRINT", (20, 110), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (20, 20, 20), 3, cv2.LINE_AA)
    cv2.putText(words, "VIDEO", (20, 170), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (20, 20, 20), 3, cv2.LINE_AA)
    return write_video(path, [np.zeros_like(words)] * 12 + [words] * 13, fps=25)


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    (folder / "clips").mkdir()
    face_clip(folder / "clips" / "peirsol.mp4")
    shots_clip(folder / "shots.mp4")
    text_clip(folder / "text.mp4")
    (folder / "junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    os.mkfifo(folder / "fifo.mp4")
    outside = folder.parent / "outside.mp4"
    outside.write_bytes((folder / "shots.mp4").read_bytes())
    (folder / "link-out.mp4").symlink_to(outside)
    return folder


# -- a receiver for SNS notifications ------------------------------------------------------------------------

class Receiver:
    """A real HTTP server on loopback that records every POST (headers and JSON body)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.arrived:
                    receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/sns"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, job_id: str, timeout: float = 60.0) -> tuple[dict[str, str], dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for headers, body in self.posts:
                    if json.loads(body["Message"])["JobId"] == job_id:
                        return headers, body
                left = deadline - time.monotonic()
                assert left > 0, f"no notification for job {job_id}: {self.posts}"
                self.arrived.wait(left)

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, bucket: Path, receiver: Receiver) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("video-home")
    srv = Server(home, "--no-auth", "--bucket", f"videos={bucket}", "--sns-topic", f"{TOPIC}={receiver.url}")
    yield srv
    assert srv.stop() in (0, -signal.SIGTERM)


@pytest.fixture(scope="module")
def rek(server: Server) -> Any:
    return server.client()


def video(name: str) -> dict[str, Any]:
    return {"S3Object": {"Bucket": "videos", "Name": name}}


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def finished(get: Any, job_id: str, timeout: float = 120.0, **kwargs: Any) -> dict[str, Any]:
    """The Get answer once the job has left IN_PROGRESS."""
    deadline = time.monotonic() + timeout
    while True:
        answer = get(JobId=job_id, **kwargs)
        if answer["JobStatus"] != "IN_PROGRESS":
            return answer
        assert time.monotonic() < deadline, f"job {job_id} still IN_PROGRESS after {timeout} s"
        time.sleep(0.2)


# -- the operations -----------------------------------------------------------------------------------------

def test_face_detection_end_to_end(rek: Any, receiver: Receiver) -> None:
    raw = RawBodies(rek)
    started = rek.start_face_detection(Video=video("clips/peirsol.mp4"), FaceAttributes="ALL", JobTag="clip-1",
                                       NotificationChannel={"SNSTopicArn": TOPIC, "RoleArn": ROLE})
    job_id = started["JobId"]
    answer = finished(rek.get_face_detection, job_id)
    assert answer["JobStatus"] == "SUCCEEDED", answer
    validate(raw.last["GetFaceDetection"], output_shape("GetFaceDetection"))
    assert answer["JobId"] == job_id and answer["JobTag"] == "clip-1"
    assert answer["Video"] == video("clips/peirsol.mp4")
    meta = answer["VideoMetadata"]
    assert (meta["FrameWidth"], meta["FrameHeight"]) == (480, 272) and 1900 <= meta["DurationMillis"] <= 2100
    faces = answer["Faces"]
    assert len(faces) >= 5, faces  # about 5 sampled frames a second, one face in each
    assert [f["Timestamp"] for f in faces] == sorted(f["Timestamp"] for f in faces)
    assert all(0 <= f["Timestamp"] <= meta["DurationMillis"] for f in faces)
    assert {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"} <= set(faces[0]["Face"])

    page = rek.get_face_detection(JobId=job_id, MaxResults=2)
    assert len(page["Faces"]) == 2 and page["NextToken"]
    rest = rek.get_face_detection(JobId=job_id, MaxResults=1000, NextToken=page["NextToken"])
    assert page["Faces"] + rest["Faces"] == faces and "NextToken" not in rest

    headers, body = receiver.wait_for(job_id)
    assert body["Type"] == "Notification" and body["TopicArn"] == TOPIC
    assert headers.get("x-amz-sns-message-type") == "Notification"
    message = json.loads(body["Message"])
    assert message["Status"] == "SUCCEEDED" and message["API"] == "StartFaceDetection"
    assert message["JobTag"] == "clip-1"
    assert message["Video"] == {"S3ObjectName": "clips/peirsol.mp4", "S3Bucket": "videos"}


def test_face_search_finds_the_enrolled_person(rek: Any) -> None:
    rek.create_collection(CollectionId="swimmers")
    rek.index_faces(CollectionId="swimmers", Image={"Bytes": lfw_image("Aaron_Peirsol", 1).read_bytes()},
                    ExternalImageId="peirsol")
    rek.index_faces(CollectionId="swimmers", Image={"Bytes": lfw_image("Aaron_Sorkin", 1).read_bytes()},
                    ExternalImageId="sorkin")
    raw = RawBodies(rek)
    job_id = rek.start_face_search(Video=video("clips/peirsol.mp4"), CollectionId="swimmers",
                                   FaceMatchThreshold=80)["JobId"]
    answer = finished(rek.get_face_search, job_id)
    assert answer["JobStatus"] == "SUCCEEDED", answer
    validate(raw.last["GetFaceSearch"], output_shape("GetFaceSearch"))
    persons = answer["Persons"]
    assert len(persons) >= 5 and {p["Person"]["Index"] for p in persons} == {persons[0]["Person"]["Index"]}
    matched = {m["Face"]["ExternalImageId"] for p in persons for m in p.get("FaceMatches", [])}
    assert matched == {"peirsol"}
    by_index = rek.get_face_search(JobId=job_id, SortBy="INDEX")
    assert sorted(p["Timestamp"] for p in by_index["Persons"]) == [p["Timestamp"] for p in persons]

    with pytest.raises(ClientError) as exc:
        rek.start_face_search(Video=video("clips/peirsol.mp4"), CollectionId="nobody-here")
    assert code_of(exc) == "ResourceNotFoundException"


def test_segment_detection_finds_shots_and_black_frames(rek: Any) -> None:
    raw = RawBodies(rek)
    job_id = rek.start_segment_detection(Video=video("shots.mp4"), SegmentTypes=["SHOT", "TECHNICAL_CUE"])["JobId"]
    answer = finished(rek.get_segment_detection, job_id)
    assert answer["JobStatus"] == "SUCCEEDED", answer
    validate(raw.last["GetSegmentDetection"], output_shape("GetSegmentDetection"))
    assert {s["Type"] for s in answer["SelectedSegmentTypes"]} == {"SHOT", "TECHNICAL_CUE"}
    assert isinstance(answer["VideoMetadata"], list) and answer["VideoMetadata"][0]["FrameWidth"] == 320
    black = [s for s in answer["Segments"] if s["Type"] == "TECHNICAL_CUE"]
    assert [s["TechnicalCueSegment"]["Type"] for s in black] == ["BlackFrames"], answer["Segments"]
    assert 900 <= black[0]["StartTimestampMillis"] <= 1100 and 1900 <= black[0]["EndTimestampMillis"] <= 2100
    assert len([s for s in answer["Segments"] if s["Type"] == "SHOT"]) >= 2


def test_text_detection_reads_the_words(rek: Any) -> None:
    raw = RawBodies(rek)
    job_id = rek.start_text_detection(Video=video("text.mp4"), Filters={"WordFilter": {"MinConfidence": 50}})["JobId"]
    answer = finished(rek.get_text_detection, job_id)
    assert answer["JobStatus"] == "SUCCEEDED", answer
    validate(raw.last["GetTextDetection"], output_shape("GetTextDetection"))
    assert answer["TextModelVersion"]
    words = {d["TextDetection"]["DetectedText"].upper() for d in answer["TextDetections"]
             if d["TextDetection"]["Type"] == "WORD"}
    assert {"FACEPRINT", "VIDEO"} <= words, answer["TextDetections"]
    assert all(400 <= d["Timestamp"] <= 600 for d in answer["TextDetections"])  # the words appear at 0.48 s


def test_client_request_token_is_idempotent(rek: Any) -> None:
    first = rek.start_face_detection(Video=video("shots.mp4"), ClientRequestToken="token-1")
    again = rek.start_face_detection(Video=video("shots.mp4"), ClientRequestToken="token-1")
    assert first["JobId"] == again["JobId"]
    with pytest.raises(ClientError) as exc:
        rek.start_face_detection(Video=video("clips/peirsol.mp4"), ClientRequestToken="token-1")
    assert code_of(exc) == "IdempotentParameterMismatchException"
    assert finished(rek.get_face_detection, first["JobId"])["JobStatus"] == "SUCCEEDED"


def test_a_file_that_is_no_video_fails_the_job_cleanly(rek: Any) -> None:
    job_id = rek.start_face_detection(Video=video("junk.mp4"))["JobId"]
    answer = finished(rek.get_face_detection, job_id)
    assert answer["JobStatus"] == "FAILED" and answer["StatusMessage"]
    assert "Traceback" not in answer["StatusMessage"] and "Faces" not in answer or answer["Faces"] == []


@pytest.mark.parametrize("name", ["missing.mp4", "../outside.mp4", "link-out.mp4", "fifo.mp4", "clips",
                                  "/etc/passwd"])
def test_objects_that_cannot_be_read(rek: Any, name: str) -> None:
    with pytest.raises(ClientError) as exc:
        rek.start_face_detection(Video=video(name))
    assert code_of(exc) == "InvalidS3ObjectException"


def test_unknown_buckets_jobs_and_tokens(rek: Any) -> None:
    with pytest.raises(ClientError) as exc:
        rek.start_segment_detection(Video={"S3Object": {"Bucket": "elsewhere", "Name": "a.mp4"}},
                                    SegmentTypes=["SHOT"])
    assert code_of(exc) == "InvalidS3ObjectException"
    for get in (rek.get_face_search, rek.get_face_detection, rek.get_text_detection, rek.get_segment_detection):
        with pytest.raises(ClientError) as exc:
            get(JobId="0" * 32)
        assert code_of(exc) == "ResourceNotFoundException"
    job_id = rek.start_segment_detection(Video=video("shots.mp4"), SegmentTypes=["SHOT"])["JobId"]
    with pytest.raises(ClientError) as exc:  # a segment job is no face search
        rek.get_face_search(JobId=job_id)
    assert code_of(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        rek.get_segment_detection(JobId=job_id, NextToken="bm90IGEgdG9rZW4=")
    assert code_of(exc) == "InvalidPaginationTokenException"
    with pytest.raises(ClientError) as exc:  # a topic the server does not map to a URL
        rek.start_face_detection(Video=video("shots.mp4"), NotificationChannel={
            "SNSTopicArn": "arn:aws:sns:us-east-1:123456789012:Unknown", "RoleArn": ROLE})
    assert code_of(exc) == "InvalidParameterException"
    assert finished(rek.get_segment_detection, job_id)["JobStatus"] == "SUCCEEDED"


# -- limits -------------------------------------------------------------------------------------------------

def test_size_and_job_limits(tmp_path: Path, bucket: Path) -> None:
    small = (bucket / "shots.mp4").stat().st_size
    big = (bucket / "clips" / "peirsol.mp4").stat().st_size
    assert small < big
    srv = Server(tmp_path, "--no-auth", "--bucket", f"videos={bucket}", "--max-video-jobs", "1",
                 "--max-video-bytes", str(small))
    try:
        rek = srv.client()
        with pytest.raises(ClientError) as exc:
            rek.start_face_detection(Video=video("clips/peirsol.mp4"))
        assert code_of(exc) == "VideoTooLargeException"
        job_id = rek.start_segment_detection(Video=video("shots.mp4"), SegmentTypes=["SHOT"])["JobId"]
        with pytest.raises(ClientError) as exc:  # the first job is still queued or running
            rek.start_segment_detection(Video=video("shots.mp4"), SegmentTypes=["TECHNICAL_CUE"])
        assert code_of(exc) == "LimitExceededException"
        assert finished(rek.get_segment_detection, job_id)["JobStatus"] == "SUCCEEDED"
        rek.start_segment_detection(Video=video("shots.mp4"), SegmentTypes=["TECHNICAL_CUE"])  # room again
    finally:
        assert srv.stop() in (0, -signal.SIGTERM)


def test_a_server_killed_during_a_job_finishes_it_after_a_restart(tmp_path: Path) -> None:
    folder = tmp_path / "bucket"
    folder.mkdir()
    face_clip(folder / "long.mp4", seconds=40.0, width=480, height=272)  # long enough to be caught mid-job
    home = tmp_path / "home"
    home.mkdir()
    srv = Server(home, "--no-auth", "--bucket", f"videos={folder}")
    job_id = srv.client().start_face_detection(Video=video("long.mp4"))["JobId"]
    status = _wait_mid_job(home, job_id)
    srv.process.send_signal(signal.SIGKILL)
    srv.stop()
    assert status[0] == "RUNNING" and 0 < status[1] < status[2], status  # killed mid-job

    again = Server(home, "--no-auth", "--bucket", f"videos={folder}")
    try:
        answer = finished(again.client().get_face_detection, job_id)
        assert answer["JobStatus"] == "SUCCEEDED", answer
        faces = [json.dumps(f, sort_keys=True) for f in answer["Faces"]]
        assert len(faces) == len(set(faces)), "the killed run's items were kept beside the new run's"
        assert max(f["Timestamp"] for f in answer["Faces"]) > 39000  # the whole video
    finally:
        assert again.stop() in (0, -signal.SIGTERM)


def _wait_mid_job(home: Path, job_id: str, timeout: float = 120.0) -> tuple[str, int, int]:
    """The job's (status, frames done, frames total) once it is running and has decoded some frames."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(home / "video" / "jobs.db", timeout=30) as db:
            row = db.execute("SELECT status, frames_done, frames_total FROM jobs WHERE job_id = ?",
                             (job_id,)).fetchone()
        if row is not None and (row[0] != "QUEUED" and (row[0] != "RUNNING" or row[1] > 0)):
            return row
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never ran")


def test_serve_checks_its_video_options(tmp_path: Path) -> None:
    assert parse_job_expiry("7d") == 7 * 86400 and parse_job_expiry("90") == 90 and parse_job_expiry("1h30m") == 5400
    for bad in ("0", "-5", "nan", "inf", "soon", "0s"):
        with pytest.raises(InvalidParameterException):
            parse_job_expiry(bad)
    assert sns_topics([f"{TOPIC}=https://hooks.example/rek"]) == {TOPIC: "https://hooks.example/rek"}
    for spec in (TOPIC, "arn:aws:sqs:us-east-1:123456789012:q=http://x", f"{TOPIC}=ftp://x", f"{TOPIC}=http://",
                 "=http://x", f"{TOPIC}=http://[::1/"):
        with pytest.raises(InvalidParameterException):
            sns_topics([spec])
    with pytest.raises(InvalidParameterException):
        sns_topics([f"{TOPIC}=http://a", f"{TOPIC}=http://b"])
    for args in (["--sns-topic", "arn:aws:sns:nowhere=http://x"], ["--job-expiry", "0"], ["--max-video-jobs", "0"]):
        done = subprocess.run([sys.executable, "-m", "faceprint.cli", "--home", str(tmp_path), "serve", "--no-auth",
                               *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and json.loads(done.stderr)["__type"] == "InvalidParameterException", done


# -- Buckets' video copies ----------------------------------------------------------------------------------

def test_copy_video_from_a_local_bucket(bucket: Path, tmp_path: Path) -> None:
    buckets = Buckets({"videos": bucket})
    clip = bucket / "clips" / "peirsol.mp4"
    obj = {"Bucket": "videos", "Name": "clips/peirsol.mp4"}
    assert buckets.video_size(obj) == clip.stat().st_size
    dest = tmp_path / "copy"
    assert buckets.copy_video(obj, dest, clip.stat().st_size) == clip.stat().st_size
    assert dest.read_bytes() == clip.read_bytes() and dest.stat().st_mode & 0o077 == 0
    with pytest.raises(VideoTooLargeException):
        buckets.copy_video(obj, tmp_path / "too-big", clip.stat().st_size - 1)
    assert not (tmp_path / "too-big").exists()
    for name in ("../outside.mp4", "link-out.mp4", "fifo.mp4", "clips", "missing.mp4"):
        with pytest.raises(InvalidS3ObjectException):
            buckets.video_size({"Bucket": "videos", "Name": name})
        with pytest.raises(InvalidS3ObjectException):
            buckets.copy_video({"Bucket": "videos", "Name": name}, tmp_path / "x", 10**9)
        assert not (tmp_path / "x").exists()


def test_copy_video_stops_when_its_progress_says_so(tmp_path: Path) -> None:
    """A runner that is closing stops a long copy at the next 1 MB (its job goes back to the queue)."""
    (tmp_path / "bucket").mkdir()
    (tmp_path / "bucket" / "big.mp4").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    buckets = Buckets({"videos": tmp_path / "bucket"})
    seen: list[int] = []

    def progress(copied: int) -> None:
        seen.append(copied)
        if len(seen) == 2:
            raise KeyboardInterrupt  # whatever it raises

    with pytest.raises(KeyboardInterrupt):
        buckets.copy_video({"Bucket": "videos", "Name": "big.mp4"}, tmp_path / "copy", 10**9, progress)
    assert seen == [1024 * 1024, 2 * 1024 * 1024] and not (tmp_path / "copy").exists()
    assert buckets.copy_video({"Bucket": "videos", "Name": "big.mp4"}, tmp_path / "copy", 10**9) == 3 * 1024 * 1024 + 5


def test_copy_video_from_an_s3_endpoint(bucket: Path, tmp_path: Path) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    from serverkit import free_port

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        url = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        s3.create_bucket(Bucket="remote-videos")
        clip = (bucket / "clips" / "peirsol.mp4").read_bytes()
        s3.put_object(Bucket="remote-videos", Key="a/clip.mp4", Body=clip)
        buckets = Buckets(endpoint_url=url, access_key_id="testing", secret_access_key="testing")
        obj = {"Bucket": "remote-videos", "Name": "a/clip.mp4"}
        assert buckets.video_size(obj) == len(clip)
        assert buckets.copy_video(obj, tmp_path / "copy", len(clip)) == len(clip)
        assert (tmp_path / "copy").read_bytes() == clip
        with pytest.raises(VideoTooLargeException):
            buckets.copy_video(obj, tmp_path / "small", len(clip) - 1)
        assert not (tmp_path / "small").exists()
        with pytest.raises(InvalidS3ObjectException):
            buckets.video_size({"Bucket": "remote-videos", "Name": "missing.mp4"})
    finally:
        moto.stop()


def test_a_key_limited_to_some_collections_reads_only_their_face_searches(tmp_path: Path, bucket: Path) -> None:
    """GetFaceSearch names no collection: the server checks the job's collection against the key's."""
    home = tmp_path / "home"

    def key(*args: str) -> dict[str, str]:
        done = subprocess.run([sys.executable, "-m", "faceprint.cli", "keys", "create", *args, "--home", str(home)],
                              capture_output=True, text=True, timeout=60, check=True)
        return json.loads(done.stdout)["AccessKey"]

    admin = key("--name", "admin")
    team_a = key("--name", "team-a", "--collections", "team-a-*")
    srv = Server(home, "--bucket", f"videos={bucket}")
    try:
        rek = srv.client(admin["AccessKeyId"], admin["SecretAccessKey"])
        mine = srv.client(team_a["AccessKeyId"], team_a["SecretAccessKey"])
        jobs = {}
        for cid in ("team-a-1", "team-b-1"):
            rek.create_collection(CollectionId=cid)
            jobs[cid] = rek.start_face_search(Video=video("clips/peirsol.mp4"), CollectionId=cid)["JobId"]
        assert mine.get_face_search(JobId=jobs["team-a-1"])["JobId"] == jobs["team-a-1"]
        with pytest.raises(ClientError) as exc:
            mine.get_face_search(JobId=jobs["team-b-1"])
        assert code_of(exc) == "AccessDeniedException"
        assert "collection/team-b-1" in exc.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as exc:
            mine.get_face_search(JobId="0" * 32)
        assert code_of(exc) == "ResourceNotFoundException"
    finally:
        assert srv.stop() in (0, -signal.SIGTERM)
