"""The command line, run as a real subprocess: JSON out, error JSON and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import DATA, FACES, lfw_image, models_dir
from contract import output_shape, validate


def run(*args: str, stdin: bytes | None = None, home: Path | None = None) -> subprocess.CompletedProcess:
    env_home = ["--home", str(home)] if home else []
    import os

    env = dict(os.environ, FACEPRINT_MODELS_DIR=str(models_dir()))
    return subprocess.run([sys.executable, "-m", "faceprint.cli", *env_home, *args], input=stdin,
                          capture_output=True, env=env, timeout=300)


def test_detect_faces_prints_rekognition_json(tmp_path: Path, data) -> None:
    done = run("detect-faces", str(FACES / "identities" / "faceapi_bbt" / "group" / "bbt2.jpg"),
               home=tmp_path)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    validate(body, output_shape("DetectFaces"))
    assert len(body["FaceDetails"]) >= 3


def test_detect_faces_from_stdin(tmp_path: Path, data) -> None:
    done = run("detect-faces", "-", stdin=lfw_image("Aaron_Peirsol", 1).read_bytes(), home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["FaceDetails"]) == 1


def test_compare_faces_fast_profile(tmp_path: Path, data) -> None:
    done = run("--profile", "fast", "compare-faces", str(lfw_image("Aaron_Peirsol", 1)),
               str(lfw_image("Aaron_Peirsol", 2)), "--similarity-threshold", "50", home=tmp_path)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    validate(body, output_shape("CompareFaces"))
    assert body["FaceMatches"][0]["Similarity"] > 50


def test_errors_are_json_on_stderr(tmp_path: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    done = run("detect-faces", str(bad), home=tmp_path)
    assert done.returncode == 1 and done.stdout == b""
    assert json.loads(done.stderr)["__type"] == "InvalidImageFormatException"
    assert b"Traceback" not in done.stderr

    done = run("--max-image-bytes", "1000", "detect-faces", str(lfw_image("Aaron_Peirsol", 1)), home=tmp_path)
    assert json.loads(done.stderr)["__type"] == "ImageTooLargeException"

    done = run("compare-faces", "a.jpg", "b.jpg", "--similarity-threshold", "120", home=tmp_path)
    assert done.returncode == 1
    assert json.loads(done.stderr)["__type"] == "InvalidParameterException"


def test_usage_error(tmp_path: Path) -> None:
    done = run("detect-faces", home=tmp_path)
    assert done.returncode == 2
    assert json.loads(done.stderr.splitlines()[0])["__type"] == "InvalidParameterException"
    done = run("--profile", "huge", "detect-faces", str(lfw_image("Aaron_Peirsol", 1)), home=tmp_path)
    assert done.returncode == 1
    assert "huge" in json.loads(done.stderr)["Message"]


def test_models_pull_then_list(tmp_path: Path) -> None:
    done = run("models", "pull", "--all", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["Models"]) == 4
    done = run("models", "list", home=tmp_path)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    names = {m["Name"] for m in body["Models"]}
    assert "face_detection_yunet_2023mar.onnx" in names and len(names) == 4
    assert all(len(m["Sha256"]) == 64 and m["Present"] for m in body["Models"])
    assert body["ActiveProfile"] == "accurate"


def test_detect_text(tmp_path: Path, data) -> None:
    image = DATA / "text" / "icdar2015-train" / "images" / "img_1.jpg"
    done = run("detect-text", str(image), "--filters", '{"WordFilter": {"MinBoundingBoxHeight": 0.05}}',
               home=tmp_path)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    validate(body, output_shape("DetectText"))
    assert [d["DetectedText"] for d in body["TextDetections"]] == ["10", "10"]
    done = run("detect-text", str(image), "--filters", "{not json", home=tmp_path)
    assert done.returncode == 1
    assert json.loads(done.stderr)["__type"] == "InvalidParameterException"
