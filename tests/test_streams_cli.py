"""`faceprint streams`, `faceprint data-streams` and `faceprint stream-processor`: the home's camera and
sink maps (0600, never echoed but redacted, a value read from stdin), the processor commands with the
ARNs they build, their errors, and `stream-processor run` running a processor on a real clip with no
server."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, lfw_image, models_dir
from faceprint.cli import main

SECRET = "s3cr3t-Pa55"


def cli(capsys: pytest.CaptureFixture[str], home: Path, *args: str, stdin: str | None = None,
        monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, Any, str]:
    """``faceprint --home HOME ARGS`` in this process: exit status, JSON output (or None), stderr."""
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = main(["--home", str(home), "--profile", "fast", *args])
    out, err = capsys.readouterr()
    return status, json.loads(out) if out.strip() else None, err


def test_streams_add_list_remove_keep_urls_private(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"rtsp://admin:{SECRET}@10.0.0.7:554/Streaming/101?transport=udp"
    status, out, err = cli(capsys, tmp_path, "streams", "add", "door", url)
    assert status == 0, err
    assert out == {"Name": "door", "Url": "rtsp://***:***@10.0.0.7:554/Streaming/101?transport=udp"}
    status, out, err = cli(capsys, tmp_path, "streams", "add", "yard", "-", stdin=f"https://cam/live.m3u8?token="
                           f"{SECRET}\n", monkeypatch=monkeypatch)
    assert status == 0 and out["Url"] == "https://cam/live.m3u8?token=***", (out, err)
    status, out, err = cli(capsys, tmp_path, "streams", "list")
    assert status == 0 and [s["Name"] for s in out["Streams"]] == ["door", "yard"]
    assert SECRET not in json.dumps(out) and {s["From"] for s in out["Streams"]} == {"home"}

    files = list((tmp_path / "streams").iterdir())
    assert stat.S_IMODE((tmp_path / "streams").stat().st_mode) == 0o700
    sources = tmp_path / "streams" / "sources.json"
    assert sources in files and stat.S_IMODE(sources.stat().st_mode) == 0o600
    assert json.loads(sources.read_text())["door"] == url  # kept as given: the host needs the password

    assert cli(capsys, tmp_path, "streams", "remove", "door")[0] == 0
    status, out, err = cli(capsys, tmp_path, "streams", "remove", "door")
    assert status == 1 and json.loads(err)["__type"] == "ResourceNotFoundException"
    assert [s["Name"] for s in cli(capsys, tmp_path, "streams", "list")[1]["Streams"]] == ["yard"]


@pytest.mark.parametrize("url", [f"srt://cam:9000?passphrase={SECRET}", f"ftp://u:{SECRET}@cam/x",
                                 f"rtsp://u:{SECRET}@", "not a url " + SECRET])
def test_bad_urls_are_refused_without_showing_them(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   url: str) -> None:
    status, out, err = cli(capsys, tmp_path, "streams", "add", "cam", url)
    assert status == 1 and out is None
    error = json.loads(err)
    assert error["__type"] == "InvalidParameterException" and SECRET not in err, err
    assert not (tmp_path / "streams" / "sources.json").exists()


def test_data_streams_keep_several_sinks_redacted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hook = f"https://alerts.example/hook?token={SECRET}"
    for spec in (f"file:{tmp_path}/faces.jsonl", hook + ";matches-only", "kinesis:aws#faces",
                 f"file:{tmp_path}/faces.jsonl"):  # the same sink twice: kept once
        status, out, err = cli(capsys, tmp_path, "data-streams", "add", "faces", spec)
        assert status == 0 and SECRET not in json.dumps(out), (out, err)
    status, out, err = cli(capsys, tmp_path, "data-streams", "list")
    assert status == 0 and len(out["DataStreams"]) == 1
    sinks = out["DataStreams"][0]["Sinks"]
    assert len(sinks) == 3 and SECRET not in json.dumps(out), out
    path = tmp_path / "streams" / "data-streams.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    status, out, err = cli(capsys, tmp_path, "data-streams", "add", "faces", f"gopher://x?key={SECRET}")
    assert status == 1 and json.loads(err)["__type"] == "InvalidParameterException" and SECRET not in err
    assert cli(capsys, tmp_path, "data-streams", "remove", "faces")[0] == 0
    assert cli(capsys, tmp_path, "data-streams", "list")[1] == {"DataStreams": []}


def test_processor_commands_build_the_arns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from faceprint.account import account_id
    from faceprint.service import Faceprint

    Faceprint(tmp_path, profile="fast", models_dir=models_dir()).create_collection("watch")
    assert cli(capsys, tmp_path, "streams", "add", "door", f"rtsp://u:{SECRET}@127.0.0.1:9/cam")[0] == 0
    assert cli(capsys, tmp_path, "data-streams", "add", "faces", f"file:{tmp_path}/faces.jsonl")[0] == 0
    status, out, err = cli(capsys, tmp_path, "stream-processor", "create", "--name", "door-watch", "--stream", "door",
                           "--collection", "watch", "--threshold", "85", "--data-stream", "faces",
                           "--region", "eu-west-1")
    assert status == 0, err
    account = account_id(tmp_path)
    assert out == {"StreamProcessorArn": f"arn:aws:rekognition:eu-west-1:{account}:streamprocessor/door-watch"}
    status, out, err = cli(capsys, tmp_path, "stream-processor", "describe", "door-watch")
    assert status == 0 and out["Status"] == "STOPPED" and SECRET not in json.dumps(out)
    assert out["Input"] == {"KinesisVideoStream": {"Arn": f"arn:aws:kinesisvideo:eu-west-1:{account}:stream/door"}}
    assert out["Output"] == {"KinesisDataStream": {"Arn": f"arn:aws:kinesis:eu-west-1:{account}:stream/faces"}}
    assert out["Settings"] == {"FaceSearch": {"CollectionId": "watch", "FaceMatchThreshold": 85.0}}
    assert out["RoleArn"] == f"arn:aws:iam::{account}:role/faceprint"

    status, out, err = cli(capsys, tmp_path, "stream-processor", "update", "door-watch", "--threshold", "90",
                           "--regions", '[{"BoundingBox": {"Left": 0, "Top": 0, "Width": 0.5, "Height": 1}}]')
    assert status == 0, err
    described = cli(capsys, tmp_path, "stream-processor", "describe", "door-watch")[1]
    assert described["Settings"]["FaceSearch"]["FaceMatchThreshold"] == 90.0
    assert len(described["RegionsOfInterest"]) == 1
    assert cli(capsys, tmp_path, "stream-processor", "update", "door-watch", "--clear-regions")[0] == 0
    assert not cli(capsys, tmp_path, "stream-processor", "describe", "door-watch")[1].get("RegionsOfInterest")
    status, out, err = cli(capsys, tmp_path, "stream-processor", "update", "door-watch")
    assert status == 1 and json.loads(err)["__type"] == "InvalidParameterException"

    status, out, err = cli(capsys, tmp_path, "stream-processor", "start", "door-watch", "--max-duration", "30")
    assert status == 0 and out["SessionId"] and "no stream host runs" in err, err
    listed = cli(capsys, tmp_path, "stream-processor", "list")[1]
    assert listed["StreamProcessors"] == [{"Name": "door-watch", "Status": "STARTING"}]
    status, out, err = cli(capsys, tmp_path, "stream-processor", "delete", "door-watch")
    assert status == 1 and json.loads(err)["__type"] == "ResourceInUseException"
    assert cli(capsys, tmp_path, "stream-processor", "stop", "door-watch")[0] == 0  # no host: STOPPED at once
    assert cli(capsys, tmp_path, "stream-processor", "describe", "door-watch")[1]["Status"] == "STOPPED"
    assert cli(capsys, tmp_path, "stream-processor", "delete", "door-watch")[0] == 0
    status, out, err = cli(capsys, tmp_path, "stream-processor", "describe", "door-watch")
    assert status == 1 and json.loads(err)["__type"] == "ResourceNotFoundException"


def test_create_refuses_unmapped_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from faceprint.service import Faceprint

    Faceprint(tmp_path, profile="fast", models_dir=models_dir()).create_collection("watch")
    status, out, err = cli(capsys, tmp_path, "stream-processor", "create", "--name", "p", "--stream", "nowhere",
                           "--collection", "watch", "--data-stream", "faces")
    assert status == 1 and json.loads(err)["__type"] == "InvalidParameterException"
    assert "faceprint streams add" in json.loads(err)["Message"]


def test_run_is_a_foreground_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`stream-processor run` runs a started processor on a clip played at its real rate, writes its records
    to the file sink and, at SIGINT, stops, leaving the processor to resume at the next run."""
    from faceprint.service import Faceprint

    fp = Faceprint(tmp_path, profile="fast", models_dir=models_dir())
    fp.create_collection("watch")
    fp.index_faces("watch", lfw_image("Aaron_Peirsol", 1), "peirsol")
    clip = person_clip(tmp_path / "walk.mp4", "Aaron_Peirsol", 2)
    sink = tmp_path / "faces.jsonl"
    assert cli(capsys, tmp_path, "streams", "add", "lobby", f"file://{clip}?loop=1")[0] == 0
    assert cli(capsys, tmp_path, "data-streams", "add", "faces", f"file:{sink}")[0] == 0
    assert cli(capsys, tmp_path, "stream-processor", "create", "--name", "lobby", "--stream", "lobby",
               "--collection", "watch", "--data-stream", "faces")[0] == 0
    assert cli(capsys, tmp_path, "stream-processor", "start", "lobby")[0] == 0
    env = os.environ | {"FACEPRINT_MODELS_DIR": str(models_dir())}
    # Ctrl-C as on a terminal: SIGINT handled even where this test runs in a background job (whose
    # children inherit SIGINT ignored, and a Python started so never raises KeyboardInterrupt)
    run = subprocess.Popen([sys.executable, "-m", "faceprint.cli", "--home", str(tmp_path), "--profile", "fast",
                            "stream-processor", "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    try:
        while not (matched := _matched(sink, "peirsol")) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.25)
        status = fp.describe_stream_processor("lobby").to_dict()["Status"]
    finally:
        run.send_signal(signal.SIGINT)
        try:
            out, err = run.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # never left behind: SIGTERM closes its runner (and its host)
            run.terminate()
            run.communicate(timeout=30)
            raise
    assert matched and status == "RUNNING", (status, err.decode()[-3000:])
    assert run.returncode == 0, err
    assert b"Traceback" not in err
    assert fp.streams.store.get("lobby").desired == "RUNNING"  # resumes at the next host


def person_clip(path: Path, name: str, number: int, seconds: float = 4.0) -> Path:
    """An LFW person's face (130 px wide) walking across a 480 x 272 scene at 15 frames a second."""
    from videokit import Walker, walking_clip

    walking_clip(path, 480, 272, seconds, [Walker(lfw_image(name, number), 130, (30, 60), (320, 80))], fps=15)
    return path


def _matched(path: Path, external_id: str) -> bool:
    if not path.exists():
        return False
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for face in record.get("FaceSearchResponse", []):
            if any(m["Face"].get("ExternalImageId") == external_id for m in face["MatchedFaces"]):
                return True
    return False
