"""The face mesh (MediaPipe's landmarker on LiteRT) and what it says about real faces whose
state is plain to see: LFW dev faces (looked at, and labelled so in benchmarks/labels), CK+
expression crops (evaluation data: only checked here, nothing is fitted on them) and the
repository's sample portrait."""

from __future__ import annotations

import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DATA, ROOT, lfw_image, models_dir
from faceprint.attributes import face_state
from faceprint.attributes.mesh import BLENDSHAPE_NAMES, BLENDSHAPE_SUBSET, FaceMesh, crop_transform
from faceprint.faces import LANDMARK_TYPES
from faceprint.imaging import DecodedImage
from faceprint.models import catalog

CK = DATA / "attributes" / "ck48-dev"
LANDMARK_TYPES_30 = (
    "eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight", "leftEyeBrowLeft", "leftEyeBrowRight",
    "leftEyeBrowUp", "rightEyeBrowLeft", "rightEyeBrowRight", "rightEyeBrowUp", "leftEyeLeft",
    "leftEyeRight", "leftEyeUp", "leftEyeDown", "rightEyeLeft", "rightEyeRight", "rightEyeUp",
    "rightEyeDown", "noseLeft", "noseRight", "mouthUp", "mouthDown", "leftPupil", "rightPupil",
    "upperJawlineLeft", "midJawlineLeft", "chinBottom", "midJawlineRight", "upperJawlineRight")
"""botocore's LandmarkType enum, copied so a change on either side shows."""


@pytest.fixture(scope="module")
def mesher(fp) -> FaceMesh:
    return FaceMesh(fp.models.path(catalog.FACE_LANDMARKER))


def centre_face(fp, image: DecodedImage) -> tuple[np.ndarray, np.ndarray]:
    faces = fp.engine.detect(image)
    assert len(faces), "no face found"
    centres = faces.boxes[:, :2] + faces.boxes[:, 2:] / 2
    i = int(np.argmin(((centres - [image.width / 2, image.height / 2]) ** 2).sum(1)))
    return faces.boxes[i], faces.landmarks[i]


def lfw(fp, mesher, name: str, number: int):
    image = fp.load_image(lfw_image(name, number))
    box, lm5 = centre_face(fp, image)
    return image, box, lm5, mesher.run(image.bgr, box, lm5)


def ck_image(path: Path) -> DecodedImage:
    """A 48x48 CK+ crop, enlarged 4 times and given a margin so the detector sees a whole face."""
    grey = cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), None, fx=4, fy=4,
                      interpolation=cv2.INTER_CUBIC)
    grey = cv2.copyMakeBorder(grey, 96, 96, 96, 96, cv2.BORDER_REPLICATE)
    return DecodedImage(rgb=cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB))


def ck_scores(fp, mesher, expression: str, count: int) -> list[tuple[float, float]]:
    out = []
    for path in sorted((CK / expression).glob("*.png"))[:count]:
        image = ck_image(path)
        mesh = mesher.run(image.bgr, *centre_face(fp, image))
        out.append((face_state.score_smile(mesh), face_state.score_mouth_open(mesh)))
    return out


def test_the_mesh_has_478_points_on_the_face_and_52_blendshapes(fp, mesher):
    image, box, lm5, mesh = lfw(fp, mesher, "Camille_Lewis", 1)
    assert mesh.points.shape == (478, 3) and mesh.blendshapes.shape == (52,)
    assert mesh.presence > 0.99
    assert len(BLENDSHAPE_NAMES) == 52 and len(set(BLENDSHAPE_SUBSET)) == 146
    x, y, w, h = box
    inside = ((mesh.points[:, 0] > x - 0.25 * w) & (mesh.points[:, 0] < x + 1.25 * w)
              & (mesh.points[:, 1] > y - 0.25 * h) & (mesh.points[:, 1] < y + 1.25 * h))
    assert inside.all()
    assert np.all((mesh.blendshapes >= 0) & (mesh.blendshapes <= 1))
    assert mesher.run(image.bgr, box, lm5, blendshapes=False).blendshapes is None


def test_the_crop_levels_the_eyes():
    box = np.array([100.0, 100.0, 80.0, 100.0])
    lm5 = np.array([[120.0, 130.0], [160.0, 150.0], [140, 160], [125, 180], [155, 190]])
    to_image = crop_transform(box, lm5)
    left, right = (to_image[:, :2] @ [[100.0], [128.0]]).ravel(), (to_image[:, :2] @ [[150.0], [128.0]]).ravel()
    direction = right - left
    assert direction[1] / direction[0] == pytest.approx(0.5)  # the crop's horizontal is the eye line
    centre = to_image[:, :2] @ [128.0, 128.0] + to_image[:, 2]
    assert centre == pytest.approx([140.0, 150.0])
    assert np.linalg.norm(to_image[:, 0]) * 256 == pytest.approx(150.0)  # 1.5 x the longer side


@pytest.mark.parametrize("face", [("Justin_Guarini", 3), ("Camille_Lewis", 1)])
def test_a_broad_smile_is_a_smile(fp, mesher, face):
    mesh = lfw(fp, mesher, *face)[3]
    assert min(mesh.blend("mouthSmileLeft"), mesh.blend("mouthSmileRight")) > 0.6
    attr = face_state.smile(mesh)
    assert attr.value and attr.confidence > 90


@pytest.mark.parametrize("face", [("Garry_Kasparov", 2), ("Slobodan_Milosevic", 3), ("Hillary_Clinton", 2)])
def test_a_neutral_closed_mouth_is_neither_smile_nor_open(fp, mesher, face):
    mesh = lfw(fp, mesher, *face)[3]
    assert face_state.smile(mesh).value is False
    assert face_state.smile(mesh).confidence > 90
    assert face_state.mouth_open(mesh).value is False
    assert face_state.eyes_open(mesh).value is True


@pytest.mark.parametrize("face", [("Roberto_Tovar", 1), ("Marcelo_Rios", 5), ("Justin_Guarini", 3)])
def test_an_open_mouth_is_open(fp, mesher, face):
    mesh = lfw(fp, mesher, *face)[3]
    assert face_state.mouth_open(mesh).value is True
    assert face_state.mouth_open(mesh).confidence > 90


@pytest.mark.parametrize("face", [("Gunter_Pleuger", 2), ("Barbara_Brezigar", 1)])
def test_closed_eyes_are_not_open(fp, mesher, face):
    mesh = lfw(fp, mesher, *face)[3]
    assert max(mesh.blend("eyeBlinkLeft"), mesh.blend("eyeBlinkRight")) > 0.55
    assert face_state.eyes_open(mesh).value is False


def test_ck_happy_faces_smile_and_surprised_ones_open_their_mouths(fp, mesher):
    happy = ck_scores(fp, mesher, "happy", 4)
    surprise = ck_scores(fp, mesher, "surprise", 4)
    assert all(smile >= 0.5 for smile, _ in happy)
    assert all(smile < 0.5 and mouth >= 0.5 for smile, mouth in surprise)


def test_the_sample_portrait_smiles_with_open_eyes(fp, mesher):
    image = fp.load_image(ROOT / "samples" / "astronaut.jpg")
    mesh = mesher.run(image.bgr, *centre_face(fp, image))
    assert face_state.smile(mesh).value is True
    assert face_state.eyes_open(mesh).value is True
    assert face_state.face_occluded(mesh, image.width, image.height).value is False


def test_confidences_are_the_probability_of_the_answer(fp, mesher):
    mesh = lfw(fp, mesher, "Garry_Kasparov", 2)[3]
    for score, attr in ((face_state.score_smile(mesh), face_state.smile(mesh)),
                        (face_state.score_mouth_open(mesh), face_state.mouth_open(mesh)),
                        (face_state.score_eyes_open(mesh), face_state.eyes_open(mesh))):
        assert 0 <= score <= 1
        assert attr.value == (score >= 0.5)
        assert 50 <= attr.confidence <= 100
        assert attr.confidence == pytest.approx(100 * (score if attr.value else 1 - score), abs=1e-3)


def test_a_tiny_face_gives_the_same_answers_less_surely(fp, mesher):
    """The same mesh at a sixth of the size (a face 20 px wide; every measure is a ratio, so only
    the size changes): same answers, confidences nearer 50, as measured on shrunk LFW faces."""
    from faceprint.attributes.mesh import Mesh

    mesh = lfw(fp, mesher, "Justin_Guarini", 3)[3]
    tiny = Mesh(points=mesh.points * 0.17, presence=mesh.presence, blendshapes=mesh.blendshapes)
    assert face_state.eye_span(mesh) > 30 and 9 < face_state.eye_span(tiny) < 14
    for attr in (face_state.smile, face_state.eyes_open, face_state.mouth_open):
        big, small = attr(mesh), attr(tiny)
        assert small.value == big.value
        assert 50 < small.confidence < 50 + 0.9 * (big.confidence - 50), attr.__name__
    assert face_state.eye_direction(tiny).confidence < face_state.eye_direction(mesh).confidence


def test_thirty_landmarks_on_the_face_left_and_right_as_seen(fp, mesher):
    image, box, lm5, mesh = lfw(fp, mesher, "Camille_Lewis", 1)
    marks = face_state.landmarks30(mesh, image.width, image.height)
    assert sorted(m.type for m in marks) == sorted(LANDMARK_TYPES_30)
    at = {m.type: np.array([m.x * image.width, m.y * image.height]) for m in marks}
    x, y, w, h = box
    for name, (px, py) in at.items():
        assert x - 0.1 * w <= px <= x + 1.1 * w and y <= py <= y + 1.1 * h, name
    assert len({tuple(np.round(p, 1)) for p in at.values()}) == 30
    # as seen in the picture: the picture's left eye is eyeLeft, and left of everything named right
    order = ("upperJawlineLeft", "leftEyeLeft", "leftEyeRight", "rightEyeLeft", "rightEyeRight", "upperJawlineRight")
    assert [at[n][0] for n in order] == sorted(at[n][0] for n in order)
    for left, right in (("eyeLeft", "eyeRight"), ("leftPupil", "rightPupil"), ("mouthLeft", "mouthRight"),
                        ("noseLeft", "noseRight"), ("leftEyeBrowLeft", "leftEyeBrowRight"),
                        ("rightEyeBrowLeft", "rightEyeBrowRight"), ("midJawlineLeft", "midJawlineRight")):
        assert at[left][0] < at[right][0], (left, right)
    assert at["leftEyeUp"][1] < at["leftEyeDown"][1] and at["rightEyeUp"][1] < at["rightEyeDown"][1]
    assert at["leftEyeBrowUp"][1] < at["leftEyeUp"][1] and at["mouthUp"][1] < at["mouthDown"][1]
    assert at["chinBottom"][1] == max(p[1] for p in at.values())
    # DEFAULT's five agree with the detector's within a few pixels (a frontal face 90 px wide)
    for i, name in enumerate(LANDMARK_TYPES):
        assert np.linalg.norm(at[name] - lm5[i]) < 6, name


def test_a_mirrored_face_swaps_left_and_right(fp, mesher):
    image, box, lm5, mesh = lfw(fp, mesher, "Camille_Lewis", 1)
    mirror = DecodedImage(rgb=np.ascontiguousarray(image.rgb[:, ::-1]))
    mirrored = mesher.run(mirror.bgr, *centre_face(fp, mirror))
    at = {m.type: (m.x, m.y) for m in face_state.landmarks30(mesh, image.width, image.height)}
    flip = {m.type: (m.x, m.y) for m in face_state.landmarks30(mirrored, image.width, image.height)}
    pairs = [("eyeLeft", "eyeRight"), ("leftPupil", "rightPupil"), ("mouthLeft", "mouthRight"),
             ("leftEyeLeft", "rightEyeRight"), ("leftEyeBrowUp", "rightEyeBrowUp"),
             ("upperJawlineLeft", "upperJawlineRight"), ("nose", "nose"), ("chinBottom", "chinBottom")]
    for a, b in pairs:
        assert abs(at[a][0] - (1 - flip[b][0])) * image.width < 4, (a, b)
        assert abs(at[a][1] - flip[b][1]) * image.height < 4, (a, b)
    gaze, mirrored_gaze = face_state.eye_direction(mesh), face_state.eye_direction(mirrored)
    assert abs(gaze.yaw + mirrored_gaze.yaw) < 5 and abs(gaze.pitch - mirrored_gaze.pitch) < 5


def test_eye_direction_of_a_face_looking_at_the_camera_is_near_straight(fp, mesher):
    mesh = lfw(fp, mesher, "Camille_Lewis", 1)[3]
    gaze = face_state.eye_direction(mesh)
    assert abs(gaze.yaw) < 15 and abs(gaze.pitch) < 15
    assert gaze.confidence > 80


def test_a_face_cut_by_the_picture_edge_is_occluded(fp, mesher):
    image, box, lm5, mesh = lfw(fp, mesher, "Hillary_Clinton", 2)
    assert face_state.face_occluded(mesh, image.width, image.height).value is False
    cut = int(lm5[2, 1])  # keep the picture down to the nose: mouth and chin are gone
    top = DecodedImage(rgb=np.ascontiguousarray(image.rgb[:cut]))
    half = mesher.run(top.bgr, box, lm5)
    occluded = face_state.face_occluded(half, top.width, top.height)
    assert occluded.value is True and occluded.confidence > 60


def test_tampered_models_are_refused(fp, tmp_path):
    source = fp.models.path(catalog.FACE_LANDMARKER)
    bad = tmp_path / "face_landmarker.task"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[:-1] + bytes([data[-1] ^ 1]) if name.endswith("blendshapes.tflite") else data)
    with pytest.raises(ValueError, match="face_blendshapes.tflite"):
        FaceMesh(bad)


def test_threads_share_one_mesh(fp, mesher):
    faces = [lfw(fp, mesher, name, number) for name, number in (("Camille_Lewis", 1), ("Garry_Kasparov", 2))]
    expected = [mesh.points for *_, mesh in faces]
    results: list[list[bool]] = [[] for _ in range(4)]

    def work(slot: int) -> None:
        for k in range(6):
            image, box, lm5, _ = faces[(slot + k) % 2]
            got = mesher.run(image.bgr, box, lm5).points
            results[slot].append(bool(np.allclose(got, expected[(slot + k) % 2], atol=1e-3)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(all(r) and len(r) == 6 for r in results)


def test_making_the_mesh_writes_nothing_on_stderr():
    """LiteRT announces its XNNPACK delegate on stderr; the CLI's stderr carries JSON errors."""
    code = ("import sys; from faceprint.attributes.mesh import FaceMesh; "
            "print('before', file=sys.stderr, flush=True); FaceMesh(sys.argv[1]); "
            "print('after', file=sys.stderr, flush=True)")
    task = models_dir() / catalog.FACE_LANDMARKER.name
    done = subprocess.run([sys.executable, "-c", code, str(task)], capture_output=True, timeout=120, check=True)
    assert done.stderr.decode().split() == ["before", "after"]


LOUD = r"""
import os, sys, threading, time
from faceprint.attributes.mesh import NOISE, allocate_quietly

class Loud:
    # An allocation writing to fd 2 as LiteRT does (os.write, unbuffered): its INFO line, then
    # more than a pipe holds (64 KiB), while other threads do the same.
    def __init__(self, tag):
        self.tag = tag

    def allocate_tensors(self):
        os.write(2, NOISE + b"\n")
        for k in range(2000):
            os.write(2, b"%s %04d " % (self.tag, k) + b"x" * 90 + b"\n")
        time.sleep(0.01)

threads = [threading.Thread(target=allocate_quietly, args=(Loud(b"t%d" % i),)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("after", file=sys.stderr, flush=True)
"""


def test_quiet_allocation_passes_everything_else_on_and_cannot_block():
    """Four threads allocate at once, each writing 200 KB to stderr (more than a pipe holds): no
    deadlock, no line lost, the INFO line hidden once (LiteRT prints it once a process, so later
    allocations are not redirected) and stderr still works afterwards."""
    done = subprocess.run([sys.executable, "-c", LOUD], capture_output=True, timeout=60, check=True)
    lines = done.stderr.decode().splitlines()
    assert lines[-1] == "after"
    assert sum(line.startswith("INFO: Created") for line in lines) == 3
    for i in range(4):
        assert [line[:7] for line in lines if line.startswith(f"t{i} ")] == [f"t{i} {k:04d}" for k in range(2000)]


def test_a_tilted_face_is_levelled_before_reading(fp, mesher):
    image = fp.load_image(lfw_image("Camille_Lewis", 1))
    turn = cv2.getRotationMatrix2D((image.width / 2, image.height / 2), 30, 1.0)
    tilted = DecodedImage(rgb=cv2.warpAffine(image.rgb, turn, (image.width, image.height)))
    mesh = mesher.run(tilted.bgr, *centre_face(fp, tilted))
    assert mesh.presence > 0.99
    assert face_state.smile(mesh).value is True and face_state.eyes_open(mesh).value is True


def test_no_face_in_the_box_says_little(mesher):
    wall = np.full((240, 240, 3), 128, np.uint8)
    box = np.array([70.0, 60.0, 100.0, 120.0])
    lm5 = np.array([[100.0, 100.0], [140.0, 100.0], [120.0, 125.0], [105.0, 150.0], [135.0, 150.0]])
    mesh = mesher.run(wall, box, lm5)
    assert mesh.presence < 0.5
    for attr in (face_state.smile(mesh), face_state.eyes_open(mesh), face_state.mouth_open(mesh)):
        assert attr.confidence < 75
    assert face_state.face_occluded(mesh, 240, 240).value is True
    with pytest.raises(ValueError, match="finite"):
        mesher.run(wall, np.full(4, np.nan), lm5)
