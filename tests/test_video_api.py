"""Stored video's Python API without a runner: what Start refuses (with Rekognition's errors) and
accepts, ClientRequestToken, the job limit, Get on unknown or unfinished jobs, paging in both sort
orders with tokens that cannot be forged, and expiry (an injected clock). Jobs that run are in
test_video_jobs.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import models_dir
from contract import output_shape, validate
from faceprint.collections import encode_token
from faceprint.errors import (
    IdempotentParameterMismatchException,
    InvalidPaginationTokenException,
    InvalidParameterException,
    InvalidS3ObjectException,
    LimitExceededException,
    ResourceNotFoundException,
    VideoTooLargeException,
)
from faceprint.server.s3 import Buckets
from faceprint.service import Faceprint
from faceprint.video.context import Item
from faceprint.video.decode import VideoLimits
from faceprint.video.service import VideoSettings
from faceprint.video.store import FAILED, SUCCEEDED, JobStore
from videokit import background, write_video

TOPIC = "arn:aws:sns:us-east-1:123456789012:faceprint-jobs"
ROLE = "arn:aws:iam::123456789012:role/RekognitionSNS"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds of real H.264: two backgrounds, one cut."""
    folder = tmp_path_factory.mktemp("clips")
    scenes = [background(160, 120, 1), background(160, 120, 2)]
    return write_video(folder / "clip.mp4", (scenes[i // 25] for i in range(50)))


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def make(tmp_path: Path, clock: Clock | None = None, **settings) -> Faceprint:
    """A Faceprint whose video jobs are queued, never run (no runner in these tests)."""
    fp = Faceprint(tmp_path / "home", profile="fast", models_dir=models_dir(),
                   video=VideoSettings(run_jobs=False, **settings))
    if clock is not None:
        fp.video.clock = clock
    return fp


@pytest.mark.parametrize(("call", "code"), [
    (lambda fp, v: fp.start_segment_detection(v, ["SHOT"], job_tag="a b"), InvalidParameterException),
    (lambda fp, v: fp.start_segment_detection(v, ["SHOT"], job_tag=""), InvalidParameterException),
    (lambda fp, v: fp.start_segment_detection(v, ["SHOT"], client_request_token="x" * 65), InvalidParameterException),
    (lambda fp, v: fp.start_segment_detection(v, ["SHOT"], client_request_token="a.b"), InvalidParameterException),
    (lambda fp, v: fp.start_segment_detection(v, []), InvalidParameterException),
    (lambda fp, v: fp.start_segment_detection(v, ["SHOTS"]), InvalidParameterException),
    (lambda fp, v: fp.start_segment_detection(v, ["SHOT"], {"ShotFilter": {"MinSegmentConfidence": 20}}),
     InvalidParameterException),
    (lambda fp, v: fp.start_face_detection(v, "SOME"), InvalidParameterException),
    (lambda fp, v: fp.start_face_detection(v, ["ALL"]), InvalidParameterException),
    (lambda fp, v: fp.start_face_search(v, "people", 101), InvalidParameterException),
    (lambda fp, v: fp.start_face_search(v, "people", float("nan")), InvalidParameterException),
    (lambda fp, v: fp.start_face_search(v, "nobody"), ResourceNotFoundException),
    (lambda fp, v: fp.start_face_search(v, "no way"), InvalidParameterException),
    (lambda fp, v: fp.start_text_detection(v, {"WordFilter": {"MinConfidence": 120}}), InvalidParameterException),
    (lambda fp, v: fp.start_text_detection(v, {"Words": {}}), InvalidParameterException),
    (lambda fp, v: fp.start_text_detection(v, "filters"), InvalidParameterException),
    (lambda fp, v: fp.start_face_detection(v, notification_channel={"SNSTopicArn": TOPIC}), InvalidParameterException),
    (lambda fp, v: fp.start_face_detection(v, notification_channel={"SNSTopicArn": "topic", "RoleArn": ROLE}),
     InvalidParameterException),
    (lambda fp, v: fp.start_face_detection(v, notification_channel={
        "SNSTopicArn": TOPIC.replace("jobs", "other"), "RoleArn": ROLE}), InvalidParameterException),
    (lambda fp, v: fp.start_face_detection(12), InvalidParameterException),
    (lambda fp, v: fp.start_face_detection({"Bytes": b"x"}), InvalidParameterException),
    (lambda fp, v: fp.start_face_detection(v.with_name("missing.mp4")), InvalidParameterException),
    (lambda fp, v: fp.start_face_detection(v.parent), InvalidParameterException),
    (lambda fp, v: fp.start_face_detection(str(v) + "\x00.mp4"), InvalidParameterException),
    (lambda fp, v: fp.start_face_detection(str(v) + "\ud800"), InvalidParameterException),
    (lambda fp, v: fp.start_face_detection({"S3Object": {"Bucket": "videos", "Name": "clip.mp4"}}),
     InvalidS3ObjectException),
])
def test_start_refuses_bad_members(tmp_path: Path, clip: Path, call, code) -> None:
    fp = make(tmp_path, sns_topics={TOPIC: "http://127.0.0.1:9/"})
    fp.create_collection("people")
    with pytest.raises(code):
        call(fp, clip)
    assert fp.video.store.check_limit(1) is None  # nothing was queued


def test_start_accepts_and_queues(tmp_path: Path, clip: Path) -> None:
    fp = make(tmp_path, sns_topics={TOPIC: "http://127.0.0.1:9/"})
    fp.create_collection("people")
    channel = {"SNSTopicArn": TOPIC, "RoleArn": ROLE}
    jobs = [fp.start_face_search(str(clip), "people", 90, job_tag="tag:1/x", notification_channel=channel),
            fp.start_face_detection(clip, "ALL"),
            fp.start_text_detection(clip.read_bytes(), {"WordFilter": {"MinConfidence": 60},
                                                        "RegionsOfInterest": []}),
            fp.start_segment_detection(clip, ["TECHNICAL_CUE", "SHOT", "SHOT"],
                                       {"TechnicalCueFilter": {"BlackFrame": {"MaxPixelThreshold": 0.1}}})]
    ids = [j.job_id for j in jobs]
    assert len(set(ids)) == 4 and all(len(i) == 32 for i in ids)
    search = fp.get_face_search(ids[0])
    assert search.to_dict() == {"JobStatus": "IN_PROGRESS", "JobId": ids[0], "JobTag": "tag:1/x"}
    row = fp.video.store.get(ids[3])
    assert row.params["SegmentTypes"] == ["TECHNICAL_CUE", "SHOT"]
    assert fp.video.progress(ids[3]) == (0, 0)
    assert fp.video.wait(ids[1], timeout=0.05) == "IN_PROGRESS"
    text_input = fp.video.store.input_path(ids[2])
    assert text_input.read_bytes() == clip.read_bytes()
    assert text_input.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "home" / "video" / "jobs.db").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "home" / "video").stat().st_mode & 0o777 == 0o700


def test_not_a_video_is_accepted_at_start(tmp_path: Path) -> None:
    """Rekognition accepts the job and fails it: the check is the runner's (see test_video_jobs)."""
    fp = make(tmp_path)
    assert fp.start_segment_detection(b"\x00\x00\x00\x18ftypmp42 this is no video", ["SHOT"]).job_id


def test_too_large(tmp_path: Path, clip: Path) -> None:
    """From the size (path, bytes, S3 object) and, from a probe, the duration."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / "clip.mp4").write_bytes(clip.read_bytes())
    small = make(tmp_path / "a", limits=VideoLimits(max_bytes=1000), buckets=Buckets({"videos": bucket}))
    for video in (clip, clip.read_bytes(), {"S3Object": {"Bucket": "videos", "Name": "clip.mp4"}}):
        with pytest.raises(VideoTooLargeException, match="bytes"):
            small.start_segment_detection(video, ["SHOT"])
    short = make(tmp_path / "b", limits=VideoLimits(max_seconds=1.5))
    with pytest.raises(VideoTooLargeException, match="2 s long"):
        short.start_segment_detection(clip, ["SHOT"])
    with pytest.raises(VideoTooLargeException):
        short.start_segment_detection(clip.read_bytes(), ["SHOT"])
    assert not list((tmp_path / "b" / "home" / "video" / "inputs").iterdir())  # the refused bytes are not kept


def test_s3_object_is_checked_at_start(tmp_path: Path, clip: Path) -> None:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / "clip.mp4").write_bytes(clip.read_bytes())
    fp = make(tmp_path, buckets=Buckets({"videos": bucket}))
    with pytest.raises(InvalidS3ObjectException):
        fp.start_segment_detection({"S3Object": {"Bucket": "videos", "Name": "other.mp4"}}, ["SHOT"])
    with pytest.raises(InvalidS3ObjectException):
        fp.start_segment_detection({"S3Object": {"Bucket": "elsewhere", "Name": "clip.mp4"}}, ["SHOT"])
    with pytest.raises(InvalidS3ObjectException):
        fp.start_segment_detection({"S3Object": {"Bucket": "videos", "Name": "../bucket/clip.mp4"}}, ["SHOT"])
    for s3 in ({"Bucket": "videos", "Name": "clip\ud800.mp4"},
               {"Bucket": "videos", "Name": "clip.mp4", "Version": "\udfff"}):
        with pytest.raises(InvalidParameterException):  # no file or key can be named so
            fp.start_segment_detection({"S3Object": s3}, ["SHOT"])
    job = fp.start_segment_detection({"S3Object": {"Bucket": "videos", "Name": "clip.mp4"}}, ["SHOT"]).job_id
    answer = fp.get_segment_detection(job).to_dict()
    assert answer["Video"] == {"S3Object": {"Bucket": "videos", "Name": "clip.mp4"}}
    assert answer["SelectedSegmentTypes"] == [{"Type": "SHOT", "ModelVersion": "faceprint-shot-1.0"}]
    assert not fp.video.store.input_path(job).exists()  # copied by the runner, not at Start


def test_client_request_token(tmp_path: Path, clip: Path) -> None:
    fp = make(tmp_path)
    first = fp.start_segment_detection(clip, ["SHOT"], client_request_token="run-1", job_tag="a").job_id
    assert fp.start_segment_detection(str(clip), ["SHOT"], client_request_token="run-1", job_tag="a").job_id == first
    for other in ({"segment_types": ["TECHNICAL_CUE"], "job_tag": "a"}, {"segment_types": ["SHOT"], "job_tag": "b"},
                  {"segment_types": ["SHOT"]}):
        with pytest.raises(IdempotentParameterMismatchException):
            fp.start_segment_detection(clip, client_request_token="run-1", **other)
    with pytest.raises(IdempotentParameterMismatchException):
        fp.start_segment_detection(clip.read_bytes(), ["SHOT"], client_request_token="run-1", job_tag="a")
    assert fp.start_face_detection(clip, client_request_token="run-1").job_id != first  # another operation
    data = clip.read_bytes()
    by_bytes = fp.start_segment_detection(data, ["SHOT"], client_request_token="run-2").job_id
    assert fp.start_segment_detection(bytearray(data), ["SHOT"], client_request_token="run-2").job_id == by_bytes
    assert len(list(fp.video.store.inputs.iterdir())) == 1  # the replay wrote no second input file
    with pytest.raises(IdempotentParameterMismatchException):
        fp.start_segment_detection(data[:-1], ["SHOT"], client_request_token="run-2")


def test_job_limit(tmp_path: Path, clip: Path) -> None:
    fp = make(tmp_path, max_jobs=2)
    first = fp.start_segment_detection(clip, ["SHOT"], client_request_token="t1").job_id
    fp.start_face_detection(clip.read_bytes())
    with pytest.raises(LimitExceededException):
        fp.start_segment_detection(clip, ["SHOT"])
    with pytest.raises(LimitExceededException):
        fp.start_text_detection(clip.read_bytes())
    assert len(list(fp.video.store.inputs.iterdir())) == 1  # the refused bytes were not written
    assert fp.start_segment_detection(clip, ["SHOT"], client_request_token="t1").job_id == first
    finish(fp, first, [])
    assert fp.start_segment_detection(clip, ["SHOT"]).job_id  # a finished job frees its place


def test_get_unknown_and_wrong_jobs(tmp_path: Path, clip: Path) -> None:
    fp = make(tmp_path)
    job = fp.start_segment_detection(clip, ["SHOT"]).job_id
    with pytest.raises(ResourceNotFoundException):
        fp.get_segment_detection("0" * 32)
    with pytest.raises(ResourceNotFoundException):
        fp.get_face_detection(job)
    with pytest.raises(ResourceNotFoundException):
        fp.video.wait("f" * 32)
    for bad in ("", "a" * 65, "../jobs", None):
        with pytest.raises(InvalidParameterException):
            fp.get_segment_detection(bad)
    for pages in ({"max_results": 0}, {"max_results": "10"}, {"max_results": True}):
        with pytest.raises(InvalidParameterException):
            fp.get_segment_detection(job, **pages)
    assert fp.get_segment_detection(job, max_results=5000).job_status == "IN_PROGRESS"
    with pytest.raises(InvalidPaginationTokenException):
        fp.get_segment_detection(job, next_token="garbage")


# -- finished jobs, written as a worker writes them ----------------------------------------------------------

def finish(fp: Faceprint, job_id: str, items: list[Item], metadata: dict | None = None) -> None:
    """Claim ``job_id`` and write its items and SUCCEEDED as a worker does (the real store, no runner)."""
    store = fp.video.store
    row = store.claim("test-run", time.time(), ("path", "input", "s3"))
    assert row is not None and row.job_id == job_id
    if metadata is not None:
        assert store.set_metadata(job_id, "test-run", metadata)
    assert store.add_items(job_id, "test-run", items[: len(items) // 2])
    assert store.finish(job_id, "test-run", SUCCEEDED, None, time.time(), items[len(items) // 2:])


def person(timestamp: int, index: int) -> Item:
    return Item(timestamp, index, {"Timestamp": timestamp, "Person": {"Index": index}})


def test_paging_in_both_orders(tmp_path: Path, clip: Path) -> None:
    fp = make(tmp_path)
    fp.create_collection("people")
    job = fp.start_face_search(clip, "people").job_id
    other = fp.start_face_search(clip, "people").job_id
    rng = np.random.default_rng(4)
    items = [person(int(t), int(i)) for t, i in zip(rng.integers(0, 2000, 57), rng.integers(0, 6, 57), strict=True)]
    items += [person(400, 2), person(400, 2)]  # equal keys: both are answered, once each
    video = {"codec": "h264", "duration_millis": 2000, "format": "mp4", "frame_rate": 25.0, "frame_height": 120,
             "frame_width": 160, "color_range": None}
    finish(fp, job, items, {"video": video, "audio": []})
    finish(fp, other, items[:30])

    for sort, key in (("TIMESTAMP", lambda b: (b["Timestamp"], b["Person"]["Index"])),
                      ("INDEX", lambda b: (b["Person"]["Index"], b["Timestamp"]))):
        seen, token, pages = [], None, 0
        while True:
            page = fp.get_face_search(job, max_results=10, next_token=token, sort_by=sort)
            assert page.job_status == "SUCCEEDED" and len(page.persons) <= 10
            assert page.video_metadata.frame_width == 160
            seen += page.persons
            pages += 1
            token = page.next_token
            if token is None:
                break
            assert len(token) <= 255
        assert pages == 6 and len(seen) == len(items)
        assert [key(b) for b in seen] == sorted(key(i.body) for i in items)
    whole = fp.get_face_search(job).to_dict()
    assert "NextToken" not in whole and len(whole["Persons"]) == len(items)
    assert whole["VideoMetadata"]["Codec"] == "h264"


def test_next_tokens_cannot_be_forged(tmp_path: Path, clip: Path) -> None:
    fp = make(tmp_path)
    fp.create_collection("people")
    job, other = (fp.start_face_search(clip, "people").job_id for _ in range(2))
    finish(fp, job, [person(t, t % 3) for t in range(40)])
    finish(fp, other, [person(t, t % 3) for t in range(40)])
    token = fp.get_face_search(job, max_results=5).next_token
    assert fp.get_face_search(job, max_results=5, next_token=token).persons[0]["Timestamp"] == 5
    other_token = fp.get_face_search(other, max_results=5).next_token
    position = __import__("json").loads(__import__("base64").urlsafe_b64decode(token))
    forged = [encode_token([0, 0, 0, position[3]]), encode_token(position[:3] + ["0" * 32]),
              encode_token([5, 2, 10 ** 30, position[3]]), encode_token(10), token[:-4], "", "x" * 300,
              encode_token("\ud800")]
    for bad in forged:
        with pytest.raises(InvalidPaginationTokenException):
            fp.get_face_search(job, next_token=bad)
    with pytest.raises(InvalidPaginationTokenException):
        fp.get_face_search(job, next_token=other_token)  # another job's
    with pytest.raises(InvalidPaginationTokenException):
        fp.get_face_search(job, next_token=token, sort_by="INDEX")  # another order's
    with pytest.raises(InvalidParameterException):
        fp.get_face_search(job, sort_by="NAME")


def test_results_expire(tmp_path: Path, clip: Path) -> None:
    clock = Clock()
    fp = make(tmp_path, clock, expiry_seconds=3600)
    job = fp.start_segment_detection(clip.read_bytes(), ["SHOT"]).job_id
    queued = fp.start_segment_detection(clip.read_bytes(), ["SHOT"]).job_id
    finish(fp, job, [Item(0, 0, {"Type": "SHOT"})])
    clock.offset = 3000
    assert fp.get_segment_detection(job).job_status == "SUCCEEDED"
    clock.offset = 3700
    with pytest.raises(ResourceNotFoundException):
        fp.get_segment_detection(job)
    assert fp.video.store.input_path(job).exists()
    assert fp.video.store.sweep(clock()) == [job]
    assert fp.video.store.get(job) is None and not fp.video.store.input_path(job).exists()
    assert fp.get_segment_detection(queued).job_status == "IN_PROGRESS"  # unfinished jobs do not expire
    assert fp.video.store.input_path(queued).exists()


def test_sweep_deletes_input_files_of_no_job_or_of_ended_jobs(tmp_path: Path, clip: Path) -> None:
    """Left by a process that died between writing a Start's bytes and adding its job (deleted
    once old, not while a Start may be about to add the job), or by a runner that died before
    deleting an ended job's input."""
    fp = make(tmp_path)
    store = fp.video.store
    ended = fp.start_segment_detection(clip.read_bytes(), ["SHOT"]).job_id
    finish(fp, ended, [])
    assert store.input_path(ended).exists()
    queued = fp.start_segment_detection(clip.read_bytes(), ["SHOT"]).job_id
    old, fresh = store.input_path("f" * 32), store.input_path("e" * 32)
    for path in (old, fresh):
        path.write_bytes(b"video")
    hour_ago = time.time() - 3700
    for path in (old, store.input_path(queued)):
        os.utime(path, (hour_ago, hour_ago))
    assert store.sweep(time.time()) == []
    assert not old.exists() and fresh.exists() and store.input_path(queued).exists()
    assert not store.input_path(ended).exists() and store.get(ended).status == SUCCEEDED


def test_a_get_reads_its_job_and_page_at_once(tmp_path: Path, clip: Path) -> None:
    """An expiry sweep (another process, another connection) deleting the job between the Get's
    look at the job and at its items: the Get answers what it saw first, not an empty last page."""
    fp = make(tmp_path, expiry_seconds=3600)
    job = fp.start_segment_detection(clip, ["SHOT"]).job_id
    finish(fp, job, [Item(0, 0, {"Type": "SHOT"}), Item(40, 0, {"Type": "SHOT"})])
    other = JobStore(fp.video.store.path)

    def clock() -> float:  # read by the Get after it has read the job
        assert other.sweep(time.time() + 7200) == [job]
        return time.time()

    fp.video.clock = clock
    assert fp.get_segment_detection(job).segments == [{"Type": "SHOT"}, {"Type": "SHOT"}]
    assert other.get(job) is None


def test_answers_fit_rekognitions_model_in_progress_and_failed(tmp_path: Path, clip: Path) -> None:
    """Every Start's answer, and every Get's while the job is queued and once it failed (the
    SUCCEEDED answers are checked against real results in test_video_server and test_video_cli)."""
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / "clip.mp4").write_bytes(clip.read_bytes())
    fp = make(tmp_path, buckets=Buckets({"videos": bucket}))
    fp.create_collection("people")
    video = {"S3Object": {"Bucket": "videos", "Name": "clip.mp4"}}
    pairs = {"FaceSearch": (lambda: fp.start_face_search(video, "people", job_tag="t"), fp.get_face_search),
             "FaceDetection": (lambda: fp.start_face_detection(video, job_tag="t"), fp.get_face_detection),
             "TextDetection": (lambda: fp.start_text_detection(video, job_tag="t"), fp.get_text_detection),
             "SegmentDetection": (lambda: fp.start_segment_detection(video, ["SHOT"], job_tag="t"),
                                  fp.get_segment_detection)}
    for api, (start, get) in pairs.items():
        started = start().to_dict()
        validate(started, output_shape(f"Start{api}"))
        queued = get(started["JobId"]).to_dict()
        validate(queued, output_shape(f"Get{api}"))
        assert (queued["JobStatus"], queued["JobTag"], queued["Video"]) == ("IN_PROGRESS", "t", video)
        assert "StatusMessage" not in queued and "NextToken" not in queued
        assert fp.video.store.claim("run", time.time(), ("s3",)).job_id == started["JobId"]
        assert fp.video.store.finish(started["JobId"], "run", FAILED, "The video is damaged.", time.time())
        failed = get(started["JobId"]).to_dict()
        validate(failed, output_shape(f"Get{api}"))
        assert (failed["JobStatus"], failed["StatusMessage"], failed["Video"]) == ("FAILED", "The video is damaged.",
                                                                                     video)


def test_facade_settings_are_validated(tmp_path: Path) -> None:
    for bad in ({"workers": 0}, {"max_jobs": 0}, {"expiry_seconds": 0},
                {"sns_topics": {"topic": "http://127.0.0.1/"}}, {"sns_topics": {TOPIC: "file:///etc/passwd"}},
                {"sns_topics": {TOPIC: "http://"}}, {"sns_topics": {TOPIC: "http://[::1/"}},
                {"sns_topics": {TOPIC: 5}}):
        with pytest.raises(InvalidParameterException):
            VideoSettings(**bad)


def test_sns_topic_arn_is_checked_in_linear_time(tmp_path: Path, clip: Path) -> None:
    """Rekognition's SNSTopicArn pattern, as written, is quadratic in Python's re on a value full of
    ':<12 chars>:' that ends in a newline (a 1 MB one: minutes). Checked in a subprocess so that a
    regression is a timeout, not a hung test run."""
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from conftest import models_dir
from contract import output_shape, validate
from faceprint.errors import InvalidParameterException
from faceprint.server.run import sns_topics
from faceprint.service import Faceprint
from faceprint.video.service import VideoSettings
arn = "arn:aws:sns:" + ":aaaaaaaaaaaa:" * 75_000 + "\\n"
fp = Faceprint({str(tmp_path / "home")!r}, profile="fast", models_dir=models_dir(),
               video=VideoSettings(run_jobs=False))
for call in (lambda: sns_topics([arn + "=http://127.0.0.1/"]),
             lambda: fp.start_face_detection({str(clip)!r}, notification_channel={{
                 "SNSTopicArn": arn, "RoleArn": "arn:aws:iam::123456789012:role/R"}})):
    try:
        call()
    except InvalidParameterException:
        continue
    sys.exit("accepted")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
