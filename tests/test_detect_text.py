"""DetectText on real street photos (ICDAR 2015): reading, geometry, filters, errors."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from conftest import DATA
from contract import output_shape, validate
from faceprint.errors import InvalidImageFormatException, InvalidParameterException
from groundtruth import icdar_words, score_words

ICDAR = DATA / "text" / "icdar2015-train"


def image(n: int):
    return ICDAR / "images" / f"img_{n}.jpg"


def words_px(fp, result, path) -> list[tuple[np.ndarray, str]]:
    img = fp.load_image(path)
    scale = np.array([img.width, img.height], np.float32)
    return [(np.array([[p.x, p.y] for p in d.geometry.polygon], np.float32) * scale, d.detected_text)
            for d in result.text_detections if d.type == "WORD"]


@pytest.fixture(scope="module")
def img8(fp):
    return fp.detect_text(image(8))


def test_detection_and_reading_against_ground_truth(fp, data) -> None:
    totals = {"matched": 0, "correct": 0, "truth": 0, "found": 0}
    for n in range(1, 11):
        found = words_px(fp, fp.detect_text(image(n), {"WordFilter": {"MinConfidence": 0}}), image(n))
        counts = score_words(icdar_words(ICDAR / "gt" / f"gt_img_{n}.txt"), found)
        for key in totals:
            totals[key] += counts[key]
    # measured on img_1..img_10 (MinConfidence 0): precision 15/18, recall 15/21, read exactly 9/21
    assert totals["matched"] / totals["found"] >= 0.8
    assert totals["matched"] / totals["truth"] >= 0.68
    assert totals["correct"] / totals["truth"] >= 0.40


def test_reads_a_sign(img8) -> None:
    words = [d.detected_text.upper() for d in img8.text_detections if d.type == "WORD"]
    for expected in ("WHY", "PAY", "FOR", "NOTHING?"):
        assert expected in words


def test_shape_ids_and_parents(img8) -> None:
    body = img8.to_dict()
    validate(body, output_shape("DetectText"))
    assert body["TextModelVersion"].startswith("faceprint-text-1")
    dets = body["TextDetections"]
    lines = [d for d in dets if d["Type"] == "LINE"]
    words = [d for d in dets if d["Type"] == "WORD"]
    assert lines and words and dets[: len(lines)] == lines  # lines first, as Rekognition
    assert [d["Id"] for d in dets] == list(range(len(dets)))
    line_ids = {d["Id"] for d in lines}
    assert all("ParentId" not in d for d in lines)
    assert all(d["ParentId"] in line_ids for d in words)
    for line in lines:
        children = [w["DetectedText"] for w in words if w["ParentId"] == line["Id"]]
        assert " ".join(children).replace(" ", "") == line["DetectedText"].replace(" ", "")
    for d in dets:
        box, poly = d["Geometry"]["BoundingBox"], d["Geometry"]["Polygon"]
        assert len(poly) == 4
        assert all(box["Left"] - 1e-6 <= p["X"] <= box["Left"] + box["Width"] + 1e-6 for p in poly)
        assert all(box["Top"] - 1e-6 <= p["Y"] <= box["Top"] + box["Height"] + 1e-6 for p in poly)


def test_polygon_follows_rotated_text(fp, data) -> None:
    img = cv2.imread(str(image(8)))
    h, w = img.shape[:2]
    rotated = cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0), (w, h))
    result = fp.detect_text(rotated[:, :, ::-1].copy())
    word = next(d for d in result.text_detections if d.type == "WORD" and d.detected_text.upper() == "NOTHING?")
    (x0, y0), (x1, y1) = [(p.x * w, p.y * h) for p in word.geometry.polygon[:2]]
    angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
    assert -30 < angle < -10  # the top edge runs up at about 20 degrees (counter-clockwise)


@pytest.fixture(scope="module")
def img1(fp):
    return fp.detect_text(image(1))


def words_of(result) -> list:
    return [d for d in result.text_detections if d.type == "WORD"]


def test_word_filter(fp, img1, data) -> None:
    everything = words_of(img1)
    assert len(everything) >= 6
    confident = words_of(fp.detect_text(image(1), {"WordFilter": {"MinConfidence": 99}}))
    assert confident and all(d.confidence >= 99 for d in confident)
    assert len(confident) < len(everything)
    tall = fp.detect_text(image(1), {"WordFilter": {"MinBoundingBoxHeight": 0.05}})
    assert [d.detected_text for d in words_of(tall)] == ["10"]
    assert [d.detected_text for d in tall.text_detections if d.type == "LINE"] == ["10"]
    wide = words_of(fp.detect_text(image(1), {"WordFilter": {"MinBoundingBoxWidth": 0.032}}))
    assert wide and all(d.geometry.bounding_box.width >= 0.032 for d in wide)
    assert len(wide) < len(everything)


def test_regions_of_interest(fp, img1, data) -> None:
    region = {"BoundingBox": {"Left": 0.28, "Top": 0.145, "Width": 0.095, "Height": 0.05}}
    result = fp.detect_text(image(1), {"RegionsOfInterest": [region]})
    assert [d.detected_text for d in words_of(result)] == ["Genexis", "Theatre"]
    assert [d.detected_text for d in result.text_detections if d.type == "LINE"] == ["Genexis Theatre"]
    polygon = {"Polygon": [{"X": 0.28, "Y": 0.145}, {"X": 0.375, "Y": 0.145}, {"X": 0.375, "Y": 0.195},
                           {"X": 0.28, "Y": 0.195}]}
    same = fp.detect_text(image(1), {"RegionsOfInterest": [polygon]})
    assert [d.detected_text for d in same.text_detections] == [d.detected_text for d in result.text_detections]
    half_of_theatre = {"BoundingBox": {"Left": 0.28, "Top": 0.145, "Width": 0.06, "Height": 0.05}}
    two = fp.detect_text(image(1), {"RegionsOfInterest": [half_of_theatre, {"BoundingBox": {
        "Left": 0.28, "Top": 0.26, "Width": 0.06, "Height": 0.05}}]})
    assert [d.detected_text for d in words_of(two)] == ["Genexis", "Carpark"]  # Theatre is < half inside
    assert [d.detected_text for d in two.text_detections if d.type == "LINE"] == ["Genexis", "Carpark"]
    nowhere = {"BoundingBox": {"Left": 0.9, "Top": 0.9, "Width": 0.05, "Height": 0.05}}
    assert fp.detect_text(image(1), {"RegionsOfInterest": [nowhere]}).text_detections == []


@pytest.mark.parametrize("filters", [
    {"WordFilter": {"MinConfidence": 101}},
    {"WordFilter": {"MinConfidence": "high"}},
    {"WordFilter": {"MinBoundingBoxHeight": 1.5}},
    {"WordFilter": {"MinWords": 3}},
    {"Regions": []},
    {"RegionsOfInterest": [{"BoundingBox": {"Left": 0, "Top": 0, "Width": 0.1, "Height": 0.1}}] * 11},
    {"RegionsOfInterest": [{}]},
    {"RegionsOfInterest": [{"Polygon": [{"X": 0, "Y": 0}, {"X": 1, "Y": 1}]}]},
    {"RegionsOfInterest": [{"BoundingBox": {"Left": 0.1, "Top": 0.1, "Width": 0, "Height": 0.2}}]},
    {"WordFilter": {"MinConfidence": 10**400}},
    {"RegionsOfInterest": [{"BoundingBox": {"Left": 10**400, "Top": 0.1, "Width": 0.1, "Height": 0.2}}]},
    {"RegionsOfInterest": [{"Polygon": [{"X": 0.1, "Y": 0.1}, {"X": -(10**400), "Y": 0.5}, {"X": 0.5, "Y": 0.5}]}]},
    "WordFilter",
    {1: 2, "x": 1},
    {"WordFilter": {None: 1}},
])
def test_bad_filters(fp, filters) -> None:
    with pytest.raises(InvalidParameterException):
        fp.detect_text(image(8), filters)


def test_max_words_keeps_the_largest(img8, tmp_path, data) -> None:
    from conftest import models_dir
    from faceprint.service import Faceprint

    def area(d) -> float:
        return d.geometry.bounding_box.width * d.geometry.bounding_box.height

    all_words = sorted((d for d in img8.text_detections if d.type == "WORD"), key=area, reverse=True)
    assert len(all_words) > 2
    capped = Faceprint(tmp_path, models_dir=models_dir(), max_text_words=2)
    words = [d for d in capped.detect_text(image(8)).text_detections if d.type == "WORD"]
    assert sorted(d.detected_text for d in words) == sorted(d.detected_text for d in all_words[:2])
    lines = [d for d in capped.detect_text(image(8)).text_detections if d.type == "LINE"]
    assert 1 <= len(lines) <= 2


def test_no_text_and_bad_input(fp, data) -> None:
    blank = np.full((300, 400, 3), 200, np.uint8)
    result = fp.detect_text(blank)
    assert result.text_detections == [] and result.to_dict()["TextModelVersion"]
    with pytest.raises(InvalidImageFormatException):
        fp.detect_text(b"GIF89a not really")
    with pytest.raises(InvalidParameterException):
        fp.detect_text(np.zeros((40, 400, 3), np.uint8))


def _ring(points: int) -> list[dict[str, float]]:
    return [{"X": 0.5 + 0.4 * math.cos(2 * math.pi * i / points), "Y": 0.5 + 0.4 * math.sin(2 * math.pi * i / points)}
            for i in range(points)]


def test_polygons_of_more_than_ten_points_are_refused_before_any_work(fp, data) -> None:
    """Rekognition's limit: a polygon of at most 10 points (the model states none). More is an
    InvalidParameterException before the image is even decoded, whatever the count."""
    assert fp.detect_text(image(1), {"RegionsOfInterest": [{"Polygon": _ring(10)}] * 10}).text_detections
    for points in (11, 4_000, 100_000):
        with pytest.raises(InvalidParameterException, match="10 points"):
            fp.detect_text(b"not an image at all", {"RegionsOfInterest": [{"Polygon": _ring(points)}]})


def test_long_thin_pictures_cost_a_bounded_amount(fp, data) -> None:
    """rapidocr scales a picture's short side up to 736 px: a 4000 x 80 strip standing up took
    100 s, a 20000 x 100 one failed to resize (a 500 through the server). Such pictures are shrunk
    and padded first, and the text on them is still read, at the right place."""
    assert fp.detect_text(np.zeros((20000, 100, 3), np.uint8)).text_detections == []
    sign = cv2.imread(str(image(8)))[325:410, 540:760]  # "WHY PAY FOR / NOTHING?"
    strip = np.concatenate([sign] * 18, axis=1)[:, :, ::-1].copy()  # 3960 x 85, RGB
    words = words_of(fp.detect_text(strip, {"WordFilter": {"MinConfidence": 50}}))
    pays = [w.geometry.bounding_box.left for w in words if w.detected_text.upper() == "PAY"]
    assert len(pays) >= 12 and min(pays) < 0.1 and max(pays) > 0.85  # all along it, in its own pixels
