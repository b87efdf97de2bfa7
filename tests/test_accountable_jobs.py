"""Identifications that run beyond one call are recorded too, with real parts: a stored-video face
search (its start, and its end with the faces it matched, written by the worker process that ran
it), a stream processor's matches (one entry per alert, by ``stream-processor:NAME``), and the
command line (``--case``/``--purpose``, the OS user; a bulk import writes one entry per image)."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import LFW, models_dir, wait_for
from faceprint.audit.caller import Caller
from faceprint.audit.log import AuditFilter, AuditLog
from faceprint.errors import AccessDeniedException
from faceprint.service import Faceprint
from videokit import Walker, photos_of, walking_clip

PERSON = "Aaron_Peirsol"
ACCOUNT = "123456789012"


def entries(home: Path, operation: str) -> list[dict[str, Any]]:
    return [r.to_json() for r in AuditLog(home / "audit").query(AuditFilter(operation=operation))]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 15 fps, 480 x 272: the enrolled person (another photo of them) walks across."""
    path = tmp_path_factory.mktemp("clip") / "walk.mp4"
    walking_clip(path, 480, 272, 2.0, [Walker(photos_of(LFW, PERSON)[1], 120, (40, 60), (300, 80))], fps=15)
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Faceprint, str]]:
    """A home with collection "people" holding the person's first photo; the Faceprint's video
    runner is closed after the module."""
    fp = Faceprint(tmp_path_factory.mktemp("home"), profile="fast", models_dir=models_dir(), threads=1)
    fp.create_collection("people")
    face_id = fp.index_faces("people", photos_of(LFW, PERSON)[0], external_image_id=PERSON).face_records[0].face.face_id
    try:
        yield fp, face_id
    finally:
        fp.video.close()


def test_a_video_face_search_is_recorded_when_it_starts_and_when_it_ends(home, clip: Path) -> None:
    fp, face_id = home
    strict = Caller("alice", "key", "AKIAALICE0000000", require_case=True)
    with pytest.raises(AccessDeniedException):
        fp.start_face_search(str(clip), "people", caller=strict)
    assert fp.list_video_jobs()["Jobs"] == []  # refused before any job was queued
    job = fp.start_face_search(str(clip), "people", 85, job_tag="cam-3", caller=strict, case="V-1").job_id
    started = [e for e in entries(fp.home, "StartFaceSearch") if e["Details"]["JobId"] == job]
    assert len(started) == 1
    start = started[0]
    assert (start["Actor"], start["Case"], start["CollectionId"], start["CollectionSize"], start["Threshold"]) == \
        ("alice", "V-1", "people", 1, 85)
    assert start["Details"]["JobTag"] == "cam-3" and start["Candidates"] == []
    assert fp.video.wait(job, timeout=90) == "SUCCEEDED"
    persons = fp.get_face_search(job).to_dict()["Persons"]
    matched = {m["Face"]["FaceId"] for p in persons for m in p.get("FaceMatches") or []}
    assert matched == {face_id}
    ended = wait_for("the job's end in the audit log", lambda: [
        e for e in entries(fp.home, "FaceSearchJobCompleted") if e["Details"]["JobId"] == job])
    end = ended[0]
    assert end["Details"]["StartAuditId"] == start["Seq"] and end["Details"]["Status"] == "SUCCEEDED"
    assert (end["Actor"], end["KeyId"], end["Case"], end["Threshold"], end["CollectionSize"]) == \
        ("alice", "AKIAALICE0000000", "V-1", 85, 1)
    assert [c["FaceId"] for c in end["Candidates"]] == [face_id]
    assert end["Candidates"][0]["ExternalImageId"] == PERSON and end["Candidates"][0]["Similarity"] >= 85
    listed = fp.list_video_jobs()["Jobs"]
    assert [(j["JobId"], j["Api"], j["Status"], j["CollectionId"], j["JobTag"]) for j in listed] == [
        (job, "StartFaceSearch", "SUCCEEDED", "people", "cam-3")]


class Host:
    """A stream host for ``fp``'s home on a thread of this process, with camera "cam" (the clip,
    looped) and data stream "out" (a file); :meth:`run` runs processor ``name`` on them."""

    def __init__(self, fp: Faceprint, clip: Path) -> None:
        from faceprint.streams.config import StreamConfig, streams_folder
        from faceprint.streams.host import StreamHost
        from faceprint.streams.store import ProcessorStore

        self.fp = fp
        config = StreamConfig(fp.home)
        config.add_source("cam", f"file://{clip}?loop=1")
        self.sink = fp.home / "out.jsonl"
        config.add_data_stream("out", f"file:{self.sink}")
        store = ProcessorStore(streams_folder(fp.home) / "processors.db")
        self.host = StreamHost(fp, store, config, region="us-east-1", poll=0.1, connect_timeout=3.0)
        self.thread = threading.Thread(target=self.host.run, name="test-stream-host", daemon=True)

    def __enter__(self) -> Host:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.host.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()

    def start(self, name: str) -> None:
        self.fp.streams.create_stream_processor(
            {"KinesisVideoStream": {"Arn": f"arn:aws:kinesisvideo:us-east-1:{ACCOUNT}:stream/cam/1700000000000"}},
            {"KinesisDataStream": {"Arn": f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/out"}}, name,
            {"FaceSearch": {"CollectionId": "people", "FaceMatchThreshold": 80.0}},
            f"arn:aws:iam::{ACCOUNT}:role/faceprint")
        self.fp.streams.start_stream_processor(name)

    def status(self, name: str) -> tuple[str, str | None]:
        answer = self.fp.streams.describe_stream_processor(name).to_dict()
        return answer["Status"], answer.get("StatusMessage")


def test_a_stream_processor_records_each_alert(home, clip: Path) -> None:
    fp, face_id = home
    with Host(fp, clip) as host:
        host.start("lobby")
        alert = wait_for("a match entry", lambda: entries(fp.home, "StreamProcessorMatch"))[0]
        fp.streams.stop_stream_processor("lobby")
    assert (alert["Actor"], alert["ActorKind"], alert["KeyId"]) == ("stream-processor:lobby", "system", None)
    assert (alert["CollectionId"], alert["CollectionSize"], alert["Threshold"]) == ("people", 1, 80.0)
    assert alert["FalseMatchRate"] == pytest.approx(1e-4)
    assert [c["FaceId"] for c in alert["Candidates"]] == [face_id] and alert["Candidates"][0]["Similarity"] >= 80
    assert alert["Details"]["StreamProcessor"] == "lobby" and alert["Details"]["TrackId"] >= 0
    assert len(alert["ProbeSha256"]) == 64  # the frame that led to the match, as JPEG


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, FACEPRINT_MODELS_DIR=str(models_dir()))
    return subprocess.run([sys.executable, "-m", "faceprint.cli", "--home", str(home), "--profile", "fast", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_every_audited_command_takes_case_and_purpose_and_serve_its_audit_settings() -> None:
    import argparse

    from faceprint.cli import AUDITED, build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices

    def options(name: str) -> set[str]:
        return {o for action in commands[name]._actions for o in action.option_strings}

    for name in AUDITED:
        assert {"--case", "--purpose"} <= options(name) and "--store-probes" not in options(name), name
    assert "--store-probes" in options("serve") and "--case" not in options("serve")


def test_the_command_line_declares_case_and_purpose_and_bulk_imports_write_an_entry_per_image(
        tmp_path: Path, clip: Path) -> None:
    from faceprint.crops import CropStore

    home = tmp_path / "home"
    photos = photos_of(LFW, PERSON)
    assert cli(home, "create-collection", "--collection-id", "c").returncode == 0
    assert cli(home, "collection-settings", "set", "--collection-id", "c", "--keep-face-crops", "true").returncode == 0
    done = cli(home, "index-faces", "--collection-id", "c", "--workers", "1", "--case", "B-1", "--purpose", "enrol",
               str(photos[0]), str(photos[2]))
    assert done.returncode == 0, done.stderr
    indexed = entries(home, "IndexFaces")
    assert [e["Details"]["ImageSha256"] for e in indexed] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in (photos[0], photos[2])]
    assert {(e["Actor"], e["ActorKind"], e["Case"], e["Purpose"]) for e in indexed} == {
        (getpass.getuser(), "os", "B-1", "enrol")}
    assert all(len(e["Details"]["FaceIds"]) == 1 for e in indexed)
    crops = CropStore(home / "crops")  # the workers cropped each face: the collection keeps crops
    assert sorted(crops.face_ids("c")) == sorted(e["Details"]["FaceIds"][0] for e in indexed)
    done = cli(home, "search-faces-by-image", "--collection-id", "c", str(photos[1]), "--case", "CLI-7",
               "--purpose", "a test")
    assert done.returncode == 0, done.stderr
    matches = json.loads(done.stdout)["FaceMatches"]
    searched = entries(home, "SearchFacesByImage")[-1]
    assert (searched["Actor"], searched["Case"], searched["Purpose"]) == (getpass.getuser(), "CLI-7", "a test")
    assert [c["FaceId"] for c in searched["Candidates"]] == [m["Face"]["FaceId"] for m in matches] != []
    assert searched["ProbeSha256"] == hashlib.sha256(photos[1].read_bytes()).hexdigest()
    # a video searched here and now (no job queued) is recorded as a queued search is
    done = cli(home, "video", "search-faces", str(clip), "--collection-id", "c", "--case", "VS-1")
    assert done.returncode == 0, done.stderr
    start, end = entries(home, "StartFaceSearch")[-1], entries(home, "FaceSearchJobCompleted")[-1]
    assert (start["Case"], end["Case"], end["Details"]["StartAuditId"]) == ("VS-1", "VS-1", start["Seq"])
    assert {c["FaceId"] for c in end["Candidates"]} <= {e["Details"]["FaceIds"][0] for e in indexed}
    assert end["Candidates"] and end["Details"]["Status"] == "SUCCEEDED"


def test_video_jobs_are_listed_newest_first_a_page_at_a_time(tmp_path: Path, clip: Path) -> None:
    from faceprint.errors import InvalidPaginationTokenException
    from faceprint.video.service import VideoSettings

    fp = Faceprint(tmp_path / "home", profile="fast", models_dir=models_dir(), video=VideoSettings(run_jobs=False))
    fp.create_collection("c")
    jobs = [fp.start_face_detection(str(clip), job_tag=f"t{i}").job_id for i in range(2)]
    jobs.append(fp.start_face_search(str(clip), "c").job_id)
    first = fp.list_video_jobs(max_results=2)
    rest = fp.list_video_jobs(max_results=2, next_token=first["NextToken"])
    assert [j["JobId"] for j in first["Jobs"] + rest["Jobs"]] == jobs[::-1] and "NextToken" not in rest
    assert [(j["Api"], j["Status"], j["CollectionId"]) for j in first["Jobs"]] == [
        ("StartFaceSearch", "IN_PROGRESS", "c"), ("StartFaceDetection", "IN_PROGRESS", None)]
    with pytest.raises(InvalidPaginationTokenException):
        fp.list_video_jobs(next_token="bm90IGEgdG9rZW4=")


def test_a_face_search_whose_end_cannot_be_recorded_fails_with_its_results_withheld(tmp_path: Path) -> None:
    import dataclasses

    from faceprint.video.context import Item
    from faceprint.video.decode import VideoLimits
    from faceprint.video.store import JobStore
    from faceprint.video.worker import StoreContext

    home = tmp_path / "home"
    home.mkdir()
    (home / "audit").write_text("not a folder: no log can be written here")
    fp = Faceprint(home, profile="fast", models_dir=models_dir())
    who = Caller("alice", "key").to_json()
    job = {"job_id": "j1", "owner": "o1", "path": str(tmp_path / "v.mp4"), "limits": dataclasses.asdict(VideoLimits()),
           "params": {"CollectionId": "c", "Audit": {"StartId": 7, "Caller": who}}}
    ctx = StoreContext(JobStore(tmp_path / "jobs.db"), job, fp, threading.Event())
    ctx.emit([Item(0, 0, {"FaceMatches": [{"Similarity": 97.5, "Face": {"FaceId": "f1", "ExternalImageId": "x"}}]}),
              Item(40, 0, {"FaceMatches": [{"Similarity": 99.0, "Face": {"FaceId": "f1", "ExternalImageId": "x"}}]})])
    assert ctx.matched == {"f1": {"FaceId": "f1", "Similarity": 99.0, "ExternalImageId": "x"}}
    status, message = ctx.record_end("SUCCEEDED", None)
    assert status == "FAILED" and message is not None and "withheld" in message


def test_a_stream_processor_that_cannot_record_its_match_delivers_none_and_fails(tmp_path: Path, clip: Path) -> None:
    fp = Faceprint(tmp_path / "home", profile="fast", models_dir=models_dir(), threads=1)
    fp.create_collection("people")
    fp.index_faces("people", photos_of(LFW, PERSON)[0])
    shutil.rmtree(fp.home / "audit")
    (fp.home / "audit").write_text("not a folder: no log can be written here")
    with Host(fp, clip) as host:
        host.start("door")
        wait_for("FAILED", lambda: host.status("door")[0] == "FAILED")
        records = [json.loads(line) for line in host.sink.read_text().splitlines()] if host.sink.exists() else []
    assert "audit record could not be written" in (host.status("door")[1] or "")
    assert not [f for r in records for f in r["FaceSearchResponse"] if f["MatchedFaces"]]  # no match delivered
