"""CompareFaces on real faces: verdicts on LFW pairs, several target faces, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import lfw_image, lfw_pairs
from contract import output_shape, validate
from faceprint.errors import InvalidParameterException

VERIFY_AT = 70.0
"""Similarity used as the same/different cut in these tests (see docs/models.md)."""


def rgb(path) -> np.ndarray:
    return cv2.imread(str(path))[:, :, ::-1].copy()


def pair_subset(n: int) -> list:
    pairs = lfw_pairs("DevTest")
    same = [p for p in pairs if p[2]][:: 500 // n]
    diff = [p for p in pairs if not p[2]][:: 500 // n]
    return same[:n] + diff[:n]


@pytest.mark.parametrize("profile", ["fp", "fast"])
def test_lfw_devtest_verdicts(profile, request, data) -> None:
    engine = request.getfixturevalue(profile)
    correct = 0
    pairs = pair_subset(40)
    for a, b, same in pairs:
        result = engine.compare_faces(a, b, similarity_threshold=VERIFY_AT)
        correct += (len(result.face_matches) > 0) == same
    # measured on these 80 pairs: accurate 80/80, fast 79/80
    assert correct / len(pairs) >= 0.95


def test_several_target_faces(fp, data) -> None:
    a, b, c = (rgb(lfw_image(n, 1)) for n in ("Aaron_Peirsol", "Aaron_Sorkin", "Abdel_Nasser_Assidi"))
    target = np.concatenate([a, b, c], axis=1)
    source = lfw_image("Aaron_Sorkin", 2)
    result = fp.compare_faces(source, target)
    body = result.to_dict()
    validate(body, output_shape("CompareFaces"))
    assert len(result.face_matches) == 1
    match = result.face_matches[0]
    assert match.similarity >= 80
    assert 1 / 3 < match.face.bounding_box.left < 2 / 3  # the middle picture
    assert len(result.unmatched_faces) >= 2
    assert all(0 < f.bounding_box.left + f.bounding_box.width <= 1 for f in result.unmatched_faces)
    assert body["SourceImageFace"]["Confidence"] > 50
    assert set(body) <= {"SourceImageFace", "FaceMatches", "UnmatchedFaces"}


def test_threshold_zero_matches_every_face(fp, data) -> None:
    a, b = rgb(lfw_image("Aaron_Peirsol", 1)), rgb(lfw_image("Aaron_Sorkin", 1))
    result = fp.compare_faces(lfw_image("Aaron_Peirsol", 2), np.concatenate([a, b], axis=1), 0)
    assert len(result.face_matches) == 2 and not result.unmatched_faces
    sims = [m.similarity for m in result.face_matches]
    assert sims == sorted(sims, reverse=True)
    assert result.face_matches[0].face.bounding_box.left < 0.5


def test_same_image_is_near_100(fp, data) -> None:
    path = lfw_image("Aaron_Peirsol", 1)
    result = fp.compare_faces(path, path)
    assert result.face_matches[0].similarity > 99


def test_no_face_in_source_is_invalid_parameter(fp, data) -> None:
    blank = np.full((200, 200, 3), 128, np.uint8)
    with pytest.raises(InvalidParameterException):
        fp.compare_faces(blank, lfw_image("Aaron_Peirsol", 1))


def test_no_face_in_target_gives_empty_lists(fp, data) -> None:
    blank = np.full((200, 200, 3), 128, np.uint8)
    result = fp.compare_faces(lfw_image("Aaron_Peirsol", 1), blank)
    assert result.source_image_face is not None
    assert result.face_matches == [] and result.unmatched_faces == []
    validate(result.to_dict(), output_shape("CompareFaces"))


@pytest.mark.parametrize("threshold", [-1, 100.5, float("nan"), "high", 10**400, -(10**400)])
def test_bad_threshold(fp, threshold) -> None:
    path = lfw_image("Aaron_Peirsol", 1)
    with pytest.raises(InvalidParameterException):
        fp.compare_faces(path, path, similarity_threshold=threshold)


def test_bad_quality_filter(fp) -> None:
    path = lfw_image("Aaron_Peirsol", 1)
    with pytest.raises(InvalidParameterException):
        fp.compare_faces(path, path, quality_filter="BEST")


def test_quality_filter_drops_poor_faces(fp, data) -> None:
    sharp = rgb(lfw_image("Aaron_Peirsol", 1))
    dark_blurred = (cv2.GaussianBlur(sharp, (0, 0), 4) * 0.15).astype(np.uint8)
    source = lfw_image("Aaron_Peirsol", 2)
    kept = fp.compare_faces(source, dark_blurred, 0, quality_filter="NONE")
    assert len(kept.face_matches) == 1
    dropped = fp.compare_faces(source, dark_blurred, 0, quality_filter="HIGH")
    assert dropped.face_matches == [] and dropped.unmatched_faces == []
