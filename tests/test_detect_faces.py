"""DetectFaces on real photos: recall against ground-truth boxes, sizes, shapes, orientation."""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import FACES, lfw_image
from contract import output_shape, validate
from groundtruth import dlib_boxes, matched, wider_boxes

GROUPS = FACES / "groups"


def found_boxes(fp, path, max_faces: int = 100) -> np.ndarray:
    if max_faces > 100:  # past Rekognition's cap of 100 faces: the engine itself
        image = fp.load_image(path)
        return fp.engine.detect(image, max_faces).boxes
    result = fp.detect_faces(path)
    img = fp.load_image(path)
    return np.array([[f.bounding_box.left * img.width, f.bounding_box.top * img.height,
                      f.bounding_box.width * img.width, f.bounding_box.height * img.height]
                     for f in result.face_details], dtype=np.float32).reshape(-1, 4)


def recall(fp, folder, truth: dict[str, np.ndarray], min_side: float = 0, max_faces: int = 100) -> float:
    hits = total = 0
    for name, boxes in truth.items():
        hit = matched(boxes, found_boxes(fp, folder / name, max_faces))
        keep = np.minimum(boxes[:, 2], boxes[:, 3]) >= min_side
        hits += int(hit[keep].sum())
        total += int(keep.sum())
    return hits / total


def test_recall_on_dlib_faces(fp, data) -> None:
    folder = GROUPS / "dlib_faces"
    # measured: testing 25/25, training 17/18
    assert recall(fp, folder, dlib_boxes(folder / "testing.xml")) >= 0.96
    assert recall(fp, folder, dlib_boxes(folder / "training.xml")) >= 0.94


def test_recall_in_crowds_wider(fp, data) -> None:
    folder = GROUPS / "wider_val_samples"
    truth = wider_boxes(folder / "wider_val_gt_boxes.json")
    # measured 0.854 over all 328 faces (many under 12 px) and 0.827 on faces of 20 px or more
    assert recall(fp, folder, truth, max_faces=1000) >= 0.83
    assert recall(fp, folder, truth, min_side=20, max_faces=1000) >= 0.80
    crowd = folder / "0_Parade_Parade_0_873.jpg"  # 142 faces: DetectFaces returns the 100 largest
    assert len(fp.detect_faces(crowd).face_details) == 100


def test_result_matches_rekognition_contract(fp, data) -> None:
    path = FACES / "identities" / "faceapi_bbt" / "group" / "bbt1.jpg"
    result = fp.detect_faces(path).to_dict()
    validate(result, output_shape("DetectFaces"))
    assert len(result["FaceDetails"]) >= 4
    for face in result["FaceDetails"]:
        box = face["BoundingBox"]
        marks = {m["Type"]: (m["X"], m["Y"]) for m in face["Landmarks"]}
        assert set(marks) == {"eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight"}
        assert marks["eyeLeft"][0] < marks["eyeRight"][0]  # left as seen in the picture
        assert marks["mouthLeft"][0] < marks["mouthRight"][0]
        assert max(marks["eyeLeft"][1], marks["eyeRight"][1]) < marks["mouthLeft"][1]
        for x, y in marks.values():
            assert box["Left"] <= x <= box["Left"] + box["Width"]
            assert box["Top"] <= y <= box["Top"] + box["Height"]
        assert 0 < face["Confidence"] <= 100
        assert 0 <= face["Quality"]["Brightness"] <= 100 and 0 <= face["Quality"]["Sharpness"] <= 100
    assert "OrientationCorrection" not in result  # Rekognition: "always null"


def test_small_face_in_1080p_frame(fp, data) -> None:
    face = cv2.imread(str(lfw_image("Aaron_Peirsol", 1)))[60:200, 70:180]  # ~110 px wide head
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    small = cv2.resize(face, (40, 51), interpolation=cv2.INTER_AREA)
    frame[700:751, 1500:1540] = small
    found = found_boxes(fp, frame[:, :, ::-1].copy())
    assert matched(np.array([[1500, 700, 40, 51]], np.float32), found, 0.3).all()


def test_face_filling_the_image(fp, data) -> None:
    face = cv2.imread(str(lfw_image("Aaron_Peirsol", 1)))[40:230, 40:210]
    big = cv2.resize(face, (1700, 1900), interpolation=cv2.INTER_CUBIC)
    result = fp.detect_faces(big[:, :, ::-1].copy())
    assert len(result.face_details) == 1
    box = result.face_details[0].bounding_box
    assert box.width > 0.45 and box.height > 0.5


def test_no_face_gives_empty_list(fp) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    assert fp.detect_faces(noise).face_details == []


def test_nan_rows_from_the_detector_are_dropped(fast) -> None:
    """YuNet sometimes answers NaN rows on a blank 4000 x 80 strip (detected at 480 x 9): they are
    dropped before NMS, which computed with them and warned."""
    from faceprint.models.detector import finite_rows

    rows = np.ones((3, 15), np.float32)
    rows[1, 2] = np.nan
    rows[2, 14] = np.inf
    assert finite_rows(rows).tolist() == rows[:1].tolist()
    garbage = np.ones((2, 15), np.float32)
    garbage[:, 2:4] = 10.0  # a 10 x 10 box at (1, 1)
    garbage[0, 9] = 70.0  # its nose 70 px down: 6 box heights below
    garbage[1, 3] = 0.0  # no height
    assert finite_rows(garbage).tolist() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for _ in range(3):
            assert fast.detect_faces(np.zeros((80, 4000, 3), np.uint8)).face_details == []


def test_boxes_with_their_landmarks_outside_the_picture_are_dropped(fast) -> None:
    """The garbage YuNet once answered in CI on a blank 4000 x 80 strip: a box reaching far below
    the picture with all five landmarks there. A face cut by the frame (two landmarks out) stays."""
    from faceprint.models.detector import Detections, _clip

    garbage = [[2556, 55, 178, 250], [[2486, 143], [2570, 92], [2524, 250], [2688, 254], [2705, 202]]]
    cut = [[100, 40, 60, 70], [[115, 60], [145, 60], [130, 75], [118, 90], [142, 90]]]
    found = Detections(np.array([garbage[0], cut[0]], np.float32),
                       np.array([garbage[1], cut[1]], np.float32), np.array([0.9, 0.9], np.float32))
    kept = _clip(found, 4000, 80)
    assert len(kept) == 1 and kept.boxes[0].tolist() == [100, 40, 60, 40]
    assert fast.engine.detector.scales(4000, 80)[1] is None  # no coarse pass on a strip
    assert fast.engine.detector.scales(4000, 3000)[1] is not None


def test_sideways_jpeg_with_exif_is_detected_upright(fp, data) -> None:
    upright = Image.open(lfw_image("Aaron_Peirsol", 1))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    a = fp.detect_faces(buf.getvalue()).face_details
    b = fp.detect_faces(lfw_image("Aaron_Peirsol", 1)).face_details
    assert len(a) == 1 and len(b) == 1
    assert abs(a[0].bounding_box.left - b[0].bounding_box.left) < 0.03
    assert abs(a[0].bounding_box.top - b[0].bounding_box.top) < 0.03
    assert abs(a[0].pose.roll) < 15


@pytest.mark.parametrize("folder", ["human_groups", "ultralight_imgs", "misc_group"])
def test_group_photos_smoke(fp, data, folder) -> None:
    paths = sorted((GROUPS / folder).glob("*.jp*g"))[:4]
    assert paths
    total = 0
    for path in paths:
        try:
            result = fp.detect_faces(path)
        except Exception as exc:  # only Rekognition errors for oversize inputs are acceptable
            assert getattr(exc, "code", "") == "ImageTooLargeException", exc
            continue
        validate(result.to_dict(), output_shape("DetectFaces"))
        total += len(result.face_details)
    assert total >= len(paths)


def test_at_most_100_largest_faces(fp, data) -> None:
    tile = cv2.imread(str(lfw_image("Aaron_Peirsol", 1)))[50:210, 60:190]
    tile = cv2.resize(tile, (65, 80))
    sheet = np.concatenate([np.concatenate([tile] * 14, axis=1)] * 11, axis=0)  # 154 faces
    sheet[:80, :65] = cv2.resize(tile, None, fx=1, fy=1)
    faces = fp.detect_faces(sheet[:, :, ::-1].copy()).face_details
    assert len(faces) == 100


def test_attributes_validation(fp, data) -> None:
    from faceprint.errors import InvalidParameterException

    path = lfw_image("Aaron_Peirsol", 1)
    assert len(fp.detect_faces(path, ["ALL"]).face_details) == 1
    with pytest.raises(InvalidParameterException):
        fp.detect_faces(path, ["EVERYTHING"])
    with pytest.raises(InvalidParameterException):
        fp.detect_faces(path, "DEFAULT")
