"""Attributes beyond DEFAULT where users see them: DetectFaces, IndexFaces and StartFaceDetection
through the Python API, the command line and boto3 against `faceprint serve`. The ALL FaceDetail is
checked against botocore's model; named attributes give only those fields (and load only their
models); a known face gets its known attributes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from conftest import FACES, ROOT, lfw_image, models_dir
from contract import output_shape, service_model, validate
from serverkit import RawBodies, Server, photo_server

ASTRONAUT = ROOT / "samples" / "astronaut.jpg"
"""Eileen Collins, NASA portrait (public domain): a smiling woman, eyes open, no glasses."""
GROUP = FACES / "identities" / "faceapi_bbt" / "group" / "bbt2.jpg"
"""Three faces."""
DEFAULT_KEYS = {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}
ALL_KEYS = set(service_model()["shapes"]["FaceDetail"]["members"])
VIDEO_KEYS = ALL_KEYS - {"FaceOccluded", "EyeDirection"}
LANDMARK_TYPES = set(service_model()["shapes"]["LandmarkType"]["enum"])
EMOTIONS = set(service_model()["shapes"]["EmotionName"]["enum"]) - {"UNKNOWN"}
BOOLS = ("Smile", "Eyeglasses", "Sunglasses", "Beard", "Mustache", "EyesOpen", "MouthOpen", "FaceOccluded")


def check_attributes(face: dict[str, Any], keys: set[str] = ALL_KEYS) -> dict[str, tuple[float, float]]:
    """Assert ``face`` (a FaceDetail's JSON) holds exactly ``keys``, with Rekognition's meaning;
    return its landmarks by type."""
    validate(face, "FaceDetail")
    assert set(face) == keys
    points = {m["Type"]: (m["X"], m["Y"]) for m in face["Landmarks"]}
    assert len(face["Landmarks"]) == 30 and set(points) == LANDMARK_TYPES
    box = face["BoundingBox"]
    for x, y in points.values():  # on the face: within its box and a quarter of its size around
        assert box["Left"] - box["Width"] / 4 <= x <= box["Left"] + box["Width"] * 1.25, (x, box)
        assert box["Top"] - box["Height"] / 4 <= y <= box["Top"] + box["Height"] * 1.25, (y, box)
    emotions = face["Emotions"]
    assert {e["Type"] for e in emotions} == EMOTIONS and len(emotions) == 8
    assert [e["Confidence"] for e in emotions] == sorted((e["Confidence"] for e in emotions), reverse=True)
    assert sum(e["Confidence"] for e in emotions) == pytest.approx(100, abs=1)
    assert 0 <= face["AgeRange"]["Low"] <= face["AgeRange"]["High"] <= 100
    assert face["Gender"]["Value"] in ("Male", "Female") and 50 <= face["Gender"]["Confidence"] <= 100
    for name in BOOLS:
        if name in keys:
            assert isinstance(face[name]["Value"], bool) and 50 <= face[name]["Confidence"] <= 100, name
    return points


# -- the Python API -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def astronaut(fast) -> dict[str, Any]:
    answer = fast.detect_faces(ASTRONAUT, ["ALL"]).to_dict()
    validate(answer, output_shape("DetectFaces"))
    assert len(answer["FaceDetails"]) == 1
    return answer["FaceDetails"][0]


def test_all_fills_every_face_detail_field(astronaut: dict[str, Any]) -> None:
    check_attributes(astronaut)


def test_thirty_landmarks_left_and_right_as_seen_in_the_picture(astronaut: dict[str, Any], fast) -> None:
    """The 30 landmarks keep DEFAULT's five where the detector put them, and "left" is the
    picture's left (as DEFAULT's eyeLeft and Rekognition's own example answer)."""
    points = check_attributes(astronaut)
    five = {m["Type"]: m for m in fast.detect_faces(ASTRONAUT).face_details[0].to_dict()["Landmarks"]}
    eyes = abs(five["eyeRight"]["X"] - five["eyeLeft"]["X"])
    for name, m in five.items():
        assert np.hypot(points[name][0] - m["X"], points[name][1] - m["Y"]) < 0.25 * eyes, name
    for left, right in (("eyeLeft", "eyeRight"), ("leftPupil", "rightPupil"), ("mouthLeft", "mouthRight"),
                        ("noseLeft", "noseRight"), ("leftEyeBrowLeft", "rightEyeBrowRight"),
                        ("leftEyeLeft", "leftEyeRight"), ("rightEyeLeft", "rightEyeRight"),
                        ("upperJawlineLeft", "upperJawlineRight"), ("midJawlineLeft", "midJawlineRight"),
                        ("leftEyeRight", "rightEyeLeft")):
        assert points[left][0] < points[right][0], (left, right)
    for up, down in (("leftEyeBrowUp", "leftEyeUp"), ("leftEyeUp", "leftEyeDown"), ("nose", "mouthUp"),
                     ("mouthUp", "mouthDown"), ("mouthDown", "chinBottom")):
        assert points[up][1] < points[down][1], (up, down)
    assert points["leftEyeLeft"][0] < points["leftPupil"][0] < points["leftEyeRight"][0]


def test_known_face(astronaut: dict[str, Any]) -> None:
    """Eileen Collins at about 36 (NASA portrait, 1992): smiling, eyes open, no glasses or beard."""
    assert astronaut["Gender"]["Value"] == "Female"
    assert astronaut["Smile"]["Value"] and astronaut["EyesOpen"]["Value"]
    assert astronaut["Emotions"][0]["Type"] == "HAPPY"
    for name in ("Eyeglasses", "Sunglasses", "Beard", "Mustache", "FaceOccluded"):
        assert astronaut[name]["Value"] is False, name
    assert astronaut["AgeRange"]["Low"] <= 40 and astronaut["AgeRange"]["High"] >= 30


@pytest.mark.parametrize(("asked", "extra"), [
    (["DEFAULT"], set()),
    ([], set()),
    (["AGE_RANGE", "EMOTIONS"], {"AgeRange", "Emotions"}),
    (["DEFAULT", "SMILE", "EYE_DIRECTION"], {"Smile", "EyeDirection"}),
    (["GENDER", "BEARD"], {"Gender", "Beard"}),
    (["MOUTH_OPEN", "FACE_OCCLUDED"], {"MouthOpen", "FaceOccluded"}),
    (["ALL", "DEFAULT"], ALL_KEYS - DEFAULT_KEYS),
], ids=["default", "none", "age-emotions", "smile-eye-direction", "gender-beard", "mouth-occluded", "all-default"])
def test_named_attributes_give_only_those(fast, astronaut: dict[str, Any], asked: list[str], extra: set[str]) -> None:
    face = fast.detect_faces(ASTRONAUT, asked).to_dict()["FaceDetails"][0]
    assert set(face) == DEFAULT_KEYS | extra
    assert len(face["Landmarks"]) == (30 if "ALL" in asked else 5)
    for name in extra:  # the same numbers as ALL's: one computation whatever else is asked
        assert face[name] == astronaut[name], name


def test_named_attributes_load_only_their_models(tmp_path: Path) -> None:
    from faceprint.service import Faceprint

    fp = Faceprint(tmp_path, profile="fast", models_dir=models_dir())
    fp.detect_faces(ASTRONAUT, ["DEFAULT"])
    assert fp.attributes.loaded == frozenset()
    fp.detect_faces(ASTRONAUT, ["AGE_RANGE"])
    assert fp.attributes.loaded == {"age_gender"}
    fp.detect_faces(ASTRONAUT, ["SMILE"])
    assert fp.attributes.loaded == {"age_gender", "mesh"}


NEEDS = {"AGE_RANGE": {"age_gender"}, "GENDER": {"age_gender"}, "EMOTIONS": {"mesh", "emotions"},
         "SMILE": {"mesh"}, "EYES_OPEN": {"mesh"}, "MOUTH_OPEN": {"mesh"}, "EYE_DIRECTION": {"mesh"},
         "EYEGLASSES": {"wear"}, "SUNGLASSES": {"wear"}, "BEARD": {"wear"}, "MUSTACHE": {"wear"},
         "FACE_OCCLUDED": {"mesh", "wear"}}
"""What each named attribute may load (FaceOccluded combines the mesh and the wear heads)."""


def test_each_named_attribute_loads_only_its_models(fast) -> None:
    """Every name alone, on an engine of its own: exactly its models load, and only its field comes back."""
    from faceprint.attributes import ATTRIBUTE_NAMES, requested
    from faceprint.attributes.engine import AttributeEngine

    assert set(NEEDS) == set(ATTRIBUTE_NAMES)
    image = fast.load_image(ASTRONAUT)
    (face,) = fast.analyze(image, embed=False).faces
    for name, parts in NEEDS.items():
        engine = AttributeEngine(fast.models)
        described = engine.describe(image, face, requested([name]))
        assert engine.loaded == parts, name
        assert len(described.values) == 1, (name, sorted(described.values))


def test_thirty_landmarks_follow_exif_rotation_and_reduced_decoding(fast, astronaut: dict[str, Any]) -> None:
    """The 30 landmarks are ratios of the picture as shown: a JPEG stored sideways with EXIF
    orientation 6, and one so large it is decoded at half size, give the upright picture's points."""
    import io

    from PIL import Image

    upright = Image.open(ASTRONAUT)
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways, huge = io.BytesIO(), io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(sideways, "JPEG", exif=exif.tobytes(), quality=95)
    upright.resize((6600, 6600), Image.Resampling.BICUBIC).save(huge, "JPEG", quality=60)
    assert fast.load_image(huge.getvalue()).reduced_by > 1
    want = check_attributes(astronaut)
    eyes = np.hypot(*np.subtract(want["eyeRight"], want["eyeLeft"]))
    for data in (sideways.getvalue(), huge.getvalue()):
        (face,) = fast.detect_faces(data, ["ALL"]).to_dict()["FaceDetails"]
        got = check_attributes(face)
        worst = max(np.hypot(*np.subtract(got[k], want[k])) for k in want)
        assert worst < 0.1 * eyes, worst / eyes  # measured: 0.004 (EXIF) and 0.034 (reduced) eye spans


def test_index_faces_detection_attributes(fast) -> None:
    """Every FaceDetail of the answer, indexed or not, carries the attributes asked for."""
    fast.create_collection("attributes-all")
    answer = fast.index_faces("attributes-all", GROUP, "bbt2", detection_attributes=["ALL"], max_faces=1).to_dict()
    validate(answer, output_shape("IndexFaces"))
    assert len(answer["FaceRecords"]) == 1 and len(answer["UnindexedFaces"]) == 2
    for detail in [answer["FaceRecords"][0]["FaceDetail"]] + [u["FaceDetail"] for u in answer["UnindexedFaces"]]:
        check_attributes(detail)
    named = fast.index_faces("attributes-all", GROUP, detection_attributes=["GENDER"]).to_dict()
    assert all(set(r["FaceDetail"]) == DEFAULT_KEYS | {"Gender"} for r in named["FaceRecords"])
    plain = fast.index_faces("attributes-all", GROUP).to_dict()
    assert all(set(r["FaceDetail"]) == DEFAULT_KEYS for r in plain["FaceRecords"])


def test_attributes_of_faces_in_a_group(fast) -> None:
    """Each face of a group photo is described from its own box: three different crops."""
    faces = fast.detect_faces(GROUP, ["ALL"]).to_dict()["FaceDetails"]
    assert len(faces) == 3
    chins = {check_attributes(f)["chinBottom"] for f in faces}
    assert len(chins) == 3


def test_face_detection_all_in_video(fast, tmp_path: Path) -> None:
    """StartFaceDetection FaceAttributes=ALL: each sampled face gets what DetectFaces gives
    for ALL but FaceOccluded and EyeDirection (not in Rekognition Video), measured on the
    full-size frame: the same answer as DetectFaces on that frame as a still picture."""
    from faceprint.video import faces
    from faceprint.video.context import LocalContext
    from videokit import background, face_sprite, paste, write_video

    sprite = face_sprite(lfw_image("Aaron_Peirsol", 2), 160)
    frame = background(1280, 720, seed=5)
    paste(frame, sprite, 500, 200)
    path = write_video(tmp_path / "still.mp4", [frame] * 10, fps=25)
    ctx = LocalContext(path, {"FaceAttributes": "ALL"}, fast)
    faces.detect(ctx)
    assert [item.timestamp_ms for item in ctx.items] == [0, 200]
    video_face = ctx.items[0].body["Face"]
    validate(ctx.items[0].body, "FaceDetection")
    points = check_attributes(video_face, VIDEO_KEYS)
    still = fast.detect_faces(frame[:, :, ::-1].copy(), ["ALL"]).to_dict()["FaceDetails"][0]
    assert video_face["Gender"]["Value"] == still["Gender"]["Value"]
    assert video_face["Emotions"][0]["Type"] == still["Emotions"][0]["Type"]
    assert abs(video_face["AgeRange"]["Low"] - still["AgeRange"]["Low"]) <= 3
    for m in still["Landmarks"]:  # within 2 px of the still's (160 px face, 1280 px frame)
        assert abs(points[m["Type"]][0] - m["X"]) * 1280 < 2 and abs(points[m["Type"]][1] - m["Y"]) * 720 < 2


def test_cli_detect_faces_all(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "faceprint.cli", "--home", str(tmp_path), "--profile", "fast",
                           "detect-faces", str(ASTRONAUT), "--attributes", "ALL"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "FACEPRINT_MODELS_DIR": str(models_dir())})
    assert done.returncode == 0, done.stderr
    assert "XNNPACK" not in done.stderr  # LiteRT's INFO line is kept off stderr, where the CLI's errors go
    body = json.loads(done.stdout)
    validate(body, output_shape("DetectFaces"))
    check_attributes(body["FaceDetails"][0])


# -- faceprint serve and boto3 ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from photo_server(tmp_path_factory, "serve-attributes", ASTRONAUT)


@pytest.fixture(scope="module")
def rek(server: Server) -> Any:
    return server.client()


def test_served_detect_faces_all(rek: Any) -> None:
    raw = RawBodies(rek)
    answer = rek.detect_faces(Image={"S3Object": {"Bucket": "photos", "Name": "astronaut.jpg"}}, Attributes=["ALL"])
    validate(raw.last["DetectFaces"], output_shape("DetectFaces"))
    check_attributes(answer["FaceDetails"][0])
    named = rek.detect_faces(Image={"Bytes": ASTRONAUT.read_bytes()}, Attributes=["AGE_RANGE", "EMOTIONS"])
    face = named["FaceDetails"][0]
    assert set(face) == DEFAULT_KEYS | {"AgeRange", "Emotions"}
    assert face["AgeRange"] == answer["FaceDetails"][0]["AgeRange"]
    with pytest.raises(ClientError) as caught:
        rek.detect_faces(Image={"Bytes": ASTRONAUT.read_bytes()}, Attributes=["EVERYTHING"])
    assert caught.value.response["Error"]["Code"] == "ValidationException"  # the model's enum, as AWS answers


@pytest.mark.parametrize(("attributes", "status", "code"), [
    (["all"], 400, "ValidationException"),  # names are upper case, as in AWS's enum
    ("ALL", 400, "SerializationException"),  # not a list
    ([None], 400, "SerializationException"),
    (["ALL", "ALL", "DEFAULT"], 200, None),  # a name given twice counts once
], ids=["lower-case", "not-a-list", "null", "twice"])
def test_served_attributes_refused_as_aws_does(server: Server, attributes: Any, status: int, code: str | None
                                               ) -> None:
    import base64

    body = {"Image": {"Bytes": base64.b64encode(ASTRONAUT.read_bytes()).decode()}, "Attributes": attributes}
    got, answer = server.post(json.dumps(body).encode(), {"X-Amz-Target": "RekognitionService.DetectFaces",
                                                         "Content-Type": "application/x-amz-json-1.1"})
    assert (got, answer.get("__type")) == (status, code), answer
    if code is None:
        check_attributes(answer["FaceDetails"][0])


def test_served_index_faces_all(rek: Any) -> None:
    rek.create_collection(CollectionId="served-attributes")
    raw = RawBodies(rek)
    image = {"Bytes": lfw_image("Aaron_Peirsol", 1).read_bytes()}
    answer = rek.index_faces(CollectionId="served-attributes", Image=image, DetectionAttributes=["ALL"])
    validate(raw.last["IndexFaces"], output_shape("IndexFaces"))
    check_attributes(answer["FaceRecords"][0]["FaceDetail"])


def test_served_compare_faces_gives_default_fields(rek: Any) -> None:
    """CompareFaces has no Attributes parameter: its faces carry the DEFAULT fields (botocore's
    ComparedFace may also hold Emotions and Smile; faceprint leaves them out, docs/api.md)."""
    raw = RawBodies(rek)
    rek.compare_faces(SourceImage={"Bytes": lfw_image("Aaron_Peirsol", 1).read_bytes()},
                      TargetImage={"Bytes": lfw_image("Aaron_Peirsol", 2).read_bytes()})
    body = raw.last["CompareFaces"]
    validate(body, output_shape("CompareFaces"))
    assert set(body["FaceMatches"][0]["Face"]) == DEFAULT_KEYS
