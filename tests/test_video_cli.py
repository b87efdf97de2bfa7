"""`faceprint video ...` as a real subprocess on real encoded clips: each synchronous command's JSON
and table, the progress lines on stderr, errors, and the asynchronous start/get pair (a detached
runner runs the job). Also the progress bar and the tables on their own."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, lfw_image, models_dir
from contract import output_shape, validate
from faceprint.cli_video import copy_limited, write_whole_answer
from faceprint.progress import ProgressBar, clock_time
from faceprint.video.tables import face_search_table, faces_table, segments_table, text_table
from test_video_server import face_clip, shots_clip, text_clip


def faceprint(home: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """``faceprint --home HOME --profile fast ARGS``, its output decoded."""
    env = os.environ | {"FACEPRINT_MODELS_DIR": str(models_dir())}
    done = subprocess.run([sys.executable, "-m", "faceprint.cli", "--home", str(home), "--profile", "fast", *args],
                          input=stdin, capture_output=True, env=env, cwd=ROOT, timeout=300)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {"face": face_clip(folder / "peirsol.mp4"), "shots": shots_clip(folder / "shots.mp4"),
            "text": text_clip(folder / "text.mp4")}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose collection "swimmers" holds Aaron Peirsol (another photo than the clip's) and
    Aaron Sorkin."""
    from faceprint.service import Faceprint

    folder = tmp_path_factory.mktemp("cli-home")
    fp = Faceprint(folder, profile="fast", models_dir=models_dir())
    fp.create_collection("swimmers")
    fp.index_faces("swimmers", lfw_image("Aaron_Peirsol", 1), "peirsol")
    fp.index_faces("swimmers", lfw_image("Aaron_Sorkin", 1), "sorkin")
    return folder


def test_search_faces_prints_the_get_json_and_progress(home: Path, clips: dict[str, Path]) -> None:
    done = faceprint(home, "video", "search-faces", "--collection-id", "swimmers", str(clips["face"]))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    validate(answer, output_shape("GetFaceSearch"))
    assert answer["JobStatus"] == "SUCCEEDED" and answer["VideoMetadata"]["FrameWidth"] == 480
    stamps = [p["Timestamp"] for p in answer["Persons"]]
    assert len(stamps) >= 5 and stamps == sorted(stamps) and "NextToken" not in answer
    assert {m["Face"]["ExternalImageId"] for p in answer["Persons"] for m in p.get("FaceMatches", [])} == {"peirsol"}
    lines = done.stderr.strip().splitlines()  # not a terminal: a line every 5%
    assert lines and all("frames/s" in line and "ETA" in line for line in lines), done.stderr
    assert "100.0%" in lines[-1] and len(lines) <= 21


def test_search_faces_table_has_one_line_per_appearance(home: Path, clips: dict[str, Path]) -> None:
    done = faceprint(home, "video", "search-faces", "--collection-id", "swimmers", "--format", "table",
                     str(clips["face"]))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    when, person, who, similarity = lines[0].split("  ")
    start, end = when.split("-")
    assert start.startswith("00:00:00.") and end.startswith("00:00:01.") and person.startswith("person ")
    assert who == "peirsol" and 80 <= float(similarity) <= 100


def test_detect_faces_json_and_table(home: Path, clips: dict[str, Path]) -> None:
    done = faceprint(home, "video", "detect-faces", "--face-attributes", "ALL", str(clips["face"]))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    validate(answer, output_shape("GetFaceDetection"))
    assert len(answer["Faces"]) >= 5 and {"BoundingBox", "Landmarks", "Pose"} <= set(answer["Faces"][0]["Face"])
    table = faceprint(home, "video", "detect-faces", "--format", "table", str(clips["face"]))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.strip().splitlines()
    assert len(lines) == 1 and "  1 face  confidence " in lines[0], table.stdout


def test_segments_and_text_from_stdin(home: Path, clips: dict[str, Path]) -> None:
    done = faceprint(home, "video", "segments", "--format", "table", "-", stdin=clips["shots"].read_bytes())
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    black = [line for line in lines if "BlackFrames" in line]
    assert len(black) == 1 and black[0].startswith("00:00:01.0-00:00:0"), done.stdout
    assert sum("SHOT" in line for line in lines) >= 2
    text = faceprint(home, "video", "detect-text", str(clips["text"]), "--filters",
                     '{"WordFilter": {"MinConfidence": 50}}')
    assert text.returncode == 0, text.stderr
    answer = json.loads(text.stdout)
    validate(answer, output_shape("GetTextDetection"))
    assert "FACEPRINT" in {d["TextDetection"]["DetectedText"].upper() for d in answer["TextDetections"]}


def test_errors(home: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    done = faceprint(home, "video", "detect-faces", str(junk))
    assert done.returncode == 1 and json.loads(done.stdout)["JobStatus"] == "FAILED"
    assert json.loads(done.stdout)["StatusMessage"] and "Traceback" not in done.stderr
    done = faceprint(home, "video", "search-faces", "--collection-id", "nobody", str(junk))
    assert done.returncode == 1 and json.loads(done.stderr)["__type"] == "ResourceNotFoundException"
    done = faceprint(home, "video", "detect-faces", str(tmp_path / "missing.mp4"))
    assert done.returncode == 1 and json.loads(done.stderr)["__type"] == "InvalidParameterException"
    done = faceprint(home, "video", "get-face-search", "--job-id", "0" * 32)
    assert done.returncode == 1 and json.loads(done.stderr)["__type"] == "ResourceNotFoundException"


def test_start_and_get_through_a_detached_runner(tmp_path: Path, clips: dict[str, Path]) -> None:
    home = tmp_path / "home"
    done = faceprint(home, "video", "start-segment-detection", "--segment-types", "TECHNICAL_CUE",
                     "--job-tag", "night-1", str(clips["shots"]))
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["JobId"]
    deadline = time.monotonic() + 120
    while True:
        got = faceprint(home, "video", "get-segment-detection", "--job-id", job_id)
        assert got.returncode == 0, got.stderr
        answer = json.loads(got.stdout)
        if answer["JobStatus"] != "IN_PROGRESS" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert answer["JobStatus"] == "SUCCEEDED" and answer["JobTag"] == "night-1", answer
    validate(answer, output_shape("GetSegmentDetection"))
    assert [s["TechnicalCueSegment"]["Type"] for s in answer["Segments"]] == ["BlackFrames"]
    table = faceprint(home, "video", "get-segment-detection", "--job-id", job_id, "--format", "table")
    assert table.returncode == 0 and "BlackFrames" in table.stdout
    _wait_runner_gone(home)


def _wait_runner_gone(home: Path, timeout: float = 30.0) -> None:
    """The detached runner exits once idle (so the test leaves no process behind)."""
    from faceprint.video.runner import lock_free

    deadline = time.monotonic() + timeout
    while not lock_free(home):
        assert time.monotonic() < deadline, "the detached runner did not exit when idle"
        time.sleep(0.2)


# -- the pieces on their own ------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_bar_off_a_terminal_prints_a_line_every_five_percent() -> None:
    out, clock = io.StringIO(), FakeClock()
    bar = ProgressBar(out, clock, tty=False)
    for done in range(0, 1001):
        clock.now = done / 100  # 100 frames/s
        bar.update(done, 1000)
    bar.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 21 and lines[0].startswith("[") and "  0.0%" in lines[0]
    assert " 50.0%  500/1000 frames  100.0 frames/s  ETA 00:00:05" in lines[10]
    assert "100.0%" in lines[-1] and "ETA 00:00:00" in lines[-1]


def test_progress_bar_on_a_terminal_redraws_in_place() -> None:
    out, clock = io.StringIO(), FakeClock()
    bar = ProgressBar(out, clock, tty=True)
    for done in range(0, 101):
        clock.now = done * 0.01  # 100 updates in one second: drawn at most 5 times a second
        bar.update(done, 100)
    bar.finish()
    text = out.getvalue()
    assert text.count("\r") <= 7 and text.endswith("\n") and text.count("\n") == 1
    assert "100/100 frames" in text.rsplit("\r", 1)[1]


def test_clock_time() -> None:
    assert clock_time(72_440) == "00:01:12.4" and clock_time(3_600_000 + 59_960) == "01:01:00.0"
    assert clock_time(3_599_600, tenths=False) == "01:00:00"


def person(ts: int, index: int, match: tuple[str | None, float] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"Timestamp": ts, "Person": {"Index": index}}
    if match:
        face = {"FaceId": "f" * 36} | ({"ExternalImageId": match[0]} if match[0] else {})
        item["FaceMatches"] = [{"Similarity": match[1], "Face": face}]
    return item


def test_face_search_table_merges_a_persons_timestamps_into_appearances() -> None:
    """Read in GetFaceSearch's INDEX order (person, then time)."""
    persons = [person(72_400, 3, ("booking-1234", 98.0)), person(72_600, 3, ("booking-1234", 99.2)),
               person(91_000, 3, ("booking-1234", 97.0)), person(72_600, 4), person(73_000, 4),
               person(80_000, 5, (None, 91.25))]
    assert face_search_table(persons) == [
        "00:01:12.4-00:01:12.6  person 3  booking-1234  99.2",
        "00:01:12.6-00:01:13.0  person 4  -  -",
        "00:01:20.0-00:01:20.0  person 5  " + "f" * 36 + "  91.2",
        "00:01:31.0-00:01:31.0  person 3  booking-1234  97.0",
    ]


def test_faces_and_segments_tables() -> None:
    def face(ts: int, confidence: float) -> dict[str, Any]:
        return {"Timestamp": ts, "Face": {"Confidence": confidence}}

    faces = [face(0, 99.0), face(200, 98.0), face(200, 90.0), face(400, 97.5), face(600, 95.0), face(5000, 99.9)]
    assert faces_table(iter(faces)) == [
        "00:00:00.0-00:00:00.0  1 face  confidence 99.0-99.0",
        "00:00:00.2-00:00:00.2  2 faces  confidence 90.0-98.0",
        "00:00:00.4-00:00:00.6  1 face  confidence 95.0-97.5",
        "00:00:05.0-00:00:05.0  1 face  confidence 99.9-99.9",
    ]
    segment = {"Type": "TECHNICAL_CUE", "StartTimestampMillis": 1000, "EndTimestampMillis": 2000,
               "StartTimecodeSMPTE": "00:00:01:00", "EndTimecodeSMPTE": "00:00:02:00", "StartFrameNumber": 25,
               "EndFrameNumber": 50, "TechnicalCueSegment": {"Type": "BlackFrames", "Confidence": 99.5}}
    assert segments_table([segment]) == [
        "00:00:01.0-00:00:02.0  00:00:01:00-00:00:02:00  frames 25-50  BlackFrames  99.5"]



def test_text_table_has_one_line_per_appearance_of_a_line() -> None:
    def text(ts: int, kind: str, words: str, confidence: float) -> dict[str, Any]:
        return {"Timestamp": ts, "TextDetection": {"Type": kind, "DetectedText": words, "Confidence": confidence}}

    items = [text(0, "LINE", "BREAKING NEWS", 97.0), text(0, "WORD", "BREAKING", 99.0),
             text(400, "LINE", "SCORE 1-0", 90.0), text(800, "LINE", "BREAKING NEWS", 98.7),
             text(3000, "LINE", "BREAKING NEWS", 95.0)]
    assert text_table(iter(items)) == [
        "00:00:00.0-00:00:00.8   98.7  BREAKING NEWS",
        "00:00:00.4-00:00:00.4   90.0  SCORE 1-0",
        "00:00:03.0-00:00:03.0   95.0  BREAKING NEWS",
    ]


def test_the_whole_answer_is_written_an_item_at_a_time(tmp_path: Path) -> None:
    """Items read page by page from the job store (never all in memory), written exactly as
    json.dumps would write the whole answer."""
    import random

    from faceprint.video.context import Item
    from faceprint.video.service import VideoJobs, VideoSettings
    from faceprint.video.store import FAILED, SUCCEEDED

    jobs = VideoJobs(tmp_path, "fast", None, None, VideoSettings(run_jobs=False))
    stamps = list(range(0, 2345 * 40, 40))
    random.Random(3).shuffle(stamps)
    items = [Item(ts, 0, {"Timestamp": ts, "Face": {"Confidence": 99.5}}) for ts in stamps]
    video = {"codec": "h264", "duration_millis": 93800, "format": "mp4", "frame_rate": 25.0, "frame_height": 120,
             "frame_width": 160, "color_range": None}
    written = {}
    for name, found, status in (("many", items, SUCCEEDED), ("few", items[:3], SUCCEEDED), ("none", [], SUCCEEDED),
                                ("failed", items[:5], FAILED)):
        job = jobs.start_face_detection(b"not read here", job_tag=name).job_id
        assert jobs.store.claim("here", time.time(), ("input",)).job_id == job
        assert jobs.store.set_metadata(job, "here", {"video": video, "audio": []})
        assert jobs.store.finish(job, "here", status, "The video is damaged." if status == FAILED else None,
                                 time.time(), found)
        out = io.StringIO()
        write_whole_answer(jobs.get_face_detection, job, "Faces", out)
        written[name] = out.getvalue()
        whole = jobs.get_face_detection(job).to_dict()
        del whole["JobId"]
        whole.pop("NextToken", None)
        if status == SUCCEEDED:
            whole["Faces"] = [{"Timestamp": ts, "Face": {"Confidence": 99.5}} for ts in sorted(t.timestamp_ms
                                                                                               for t in found)]
        assert written[name] == json.dumps(whole, indent=2) + "\n", name
    assert len(json.loads(written["many"])["Faces"]) == 2345 and len(json.loads(written["few"])["Faces"]) == 3
    assert json.loads(written["none"])["Faces"] == []
    assert "Faces" not in json.loads(written["failed"]) and "NextToken" not in written["many"]


def test_stdin_is_copied_up_to_the_size_limit(tmp_path: Path) -> None:
    from faceprint.errors import VideoTooLargeException

    data = os.urandom(3 * 1024 * 1024)
    assert copy_limited(io.BytesIO(data), tmp_path / "ok", len(data)) == len(data)
    assert (tmp_path / "ok").read_bytes() == data and (tmp_path / "ok").stat().st_mode & 0o077 == 0
    with pytest.raises(VideoTooLargeException):
        copy_limited(io.BytesIO(data + b"x"), tmp_path / "big", len(data))
    assert not (tmp_path / "big").exists()
