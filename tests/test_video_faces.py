"""Face detection and face search over real encoded video: synthetic clips of LFW people with
known positions (tests/videokit.py) and the real Hamilton clip with its reference photo."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, LFW
from faceprint.video import faces
from faceprint.video.context import LocalContext
from faceprint.video.identity import sure_similarity
from faceprint.video.tracker import Tracker, iou_matrix
from videokit import Walker, photos_of, walking_clip

FPS = 25
HAMILTON = DATA / "video" / "face_recognition__short_hamilton_clip.mp4"
LIN_REF = DATA / "video" / "refs" / "lin-manuel-miranda.png"
LACAMOIRE_REF = DATA / "video" / "refs" / "alex-lacamoire.png"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("video-faces")


def _centre(box: dict, width: int, height: int) -> tuple[float, float]:
    return ((box["Left"] + box["Width"] / 2) * width, (box["Top"] + box["Height"] / 2) * height)


def _on_sprite(box: dict, corner: tuple[int, int] | None, sprite: int, width: int, height: int) -> bool:
    """The face box lies in the middle of the sprite pasted at ``corner``."""
    if corner is None:
        return False
    cx, cy = _centre(box, width, height)
    return (abs(cx - (corner[0] + sprite / 2)) < sprite * 0.2 and abs(cy - (corner[1] + sprite / 2)) < sprite * 0.25
            and 0.25 * sprite < box["Width"] * width < 0.6 * sprite)


def test_face_detection_timestamps_and_boxes(fast, clip_dir: Path) -> None:
    """About five sampled frames a second, each face where it was drawn, none where none was."""
    path = clip_dir / "detect.mp4"
    a = Walker(photos_of(LFW, "Colin_Powell")[0], 150, (20, 100), (440, 140))
    b = Walker(photos_of(LFW, "Holly_Hunter")[0], 120, (470, 20), (470, 20), first_s=1.0, last_s=2.0)
    places = walking_clip(path, 640, 360, 3.0, [a, b], fps=FPS)
    ctx = LocalContext(path, {"FaceAttributes": "ALL"}, fast)
    faces.detect(ctx)
    assert ctx.info is not None and ctx.done == (75, 75)
    by_time = defaultdict(list)
    for item in ctx.items:
        assert item.timestamp_ms == item.body["Timestamp"]
        by_time[item.timestamp_ms].append(item.body["Face"])
    assert sorted(by_time) == list(range(0, 3000, 200))
    for timestamp, found in by_time.items():
        where = places[timestamp * FPS // 1000]
        drawn = [(c, w.width) for c, w in zip(where, (a, b), strict=True) if c is not None]
        assert len(found) == len(drawn), timestamp
        for face in found:
            assert any(_on_sprite(face["BoundingBox"], c, w, 640, 360) for c, w in drawn), (timestamp, face)
            assert face["Confidence"] > 60 and {m["Type"] for m in face["Landmarks"]} >= {"eyeLeft", "nose"}
            assert set(face["Pose"]) == {"Roll", "Yaw", "Pitch"} and "Sharpness" in face["Quality"]


@pytest.fixture(scope="module")
def gallery(fast) -> dict[str, str]:
    """A collection of one enrolled person (David Beckham, first photo) among distractors: the
    first photo of 30 people with one photo. Christopher Walken is not enrolled."""
    fast.create_collection("video-people")
    singles = [p for p in sorted((LFW / "images").iterdir()) if len(list(p.glob("*.jpg"))) == 1][:30]
    ids = {}
    for photo in [photos_of(LFW, "David_Beckham")[0]] + [photos_of(LFW, p.name)[0] for p in singles]:
        record = fast.index_faces("video-people", photo, external_image_id=photo.parent.name, max_faces=1)
        ids[photo.parent.name] = record.face_records[0].face.face_id
    return ids


@pytest.fixture(scope="module")
def search_clip(clip_dir: Path) -> tuple[Path, list[tuple[str, Walker]], list]:
    """An enrolled person (another photo than the enrolled one) crosses a stranger, leaves, and
    comes back more than 5 s later (after the tracker has let go of him) from the other side."""
    path = clip_dir / "search.mp4"
    beckham = photos_of(LFW, "David_Beckham")[1]
    walkers = [("known", Walker(beckham, 160, (-40, 30), (520, 60), first_s=0.0, last_s=4.0)),
               ("stranger", Walker(photos_of(LFW, "Christopher_Walken")[1], 150, (520, 180), (-30, 170),
                                   first_s=1.0, last_s=6.0)),
               ("known", Walker(beckham, 150, (500, 100), (300, 120), first_s=9.5, last_s=11.0))]
    places = walking_clip(path, 640, 360, 11.0, [w for _, w in walkers], fps=FPS, seed=2)
    return path, walkers, places


@pytest.mark.parametrize("max_buffered", [3000, 4])
def test_face_search_tracks_and_matches_the_enrolled_person(fast, gallery: dict[str, str], search_clip,
                                                            max_buffered: int) -> None:
    """Every entry on the enrolled person carries his FaceId, under one person index across both
    of his appearances; the stranger is never matched and has one index of his own. With
    ``max_buffered`` 4 a track's entries go out every few frames, before the track ends."""
    path, walkers, places = search_clip
    ctx = LocalContext(path, {"CollectionId": "video-people", "FaceMatchThreshold": 80}, fast)
    faces.search(ctx, faces.FaceVideoSettings(max_buffered=max_buffered))
    assert ctx.info is not None and ctx.info.duration_ms == 11000

    indexes: dict[str, set[int]] = defaultdict(set)
    seconds: dict[str, set[int]] = defaultdict(set)
    for item in ctx.items:
        body = item.body
        assert item.index == body["Person"]["Index"] and item.timestamp_ms == body["Timestamp"]
        box = body["Person"]["Face"]["BoundingBox"]
        where = places[min(item.timestamp_ms * FPS // 1000, len(places) - 1)]
        on = {name for (name, walker), corner in zip(walkers, where, strict=True)
              if _on_sprite(box, corner, walker.width, 640, 360)}
        assert len(on) == 1, (item.timestamp_ms, box)
        who = on.pop()
        indexes[who].add(item.index)
        seconds[who].add(item.timestamp_ms // 1000)
        if who == "known":
            matches = body["FaceMatches"]
            assert matches[0]["Face"]["FaceId"] == gallery["David_Beckham"] and matches[0]["Similarity"] >= 80
            assert matches[0]["Face"]["ExternalImageId"] == "David_Beckham"
        else:
            assert "FaceMatches" not in body
    assert len(indexes["known"]) == 1 and len(indexes["stranger"]) == 1
    assert indexes["known"] != indexes["stranger"]
    assert seconds["known"] >= {0, 1, 2, 3, 10} and seconds["stranger"] >= {1, 2, 3, 4, 5}


def test_hamilton_clip_is_matched_to_the_reference_photo(fp) -> None:
    """The real clip (640x360, 9 s): Lin-Manuel Miranda's close-up (2.7 s to 7.0 s) is matched to
    his reference photo, with the accurate profile; nobody is matched in the audience shots
    that follow."""
    fp.create_collection("hamilton")
    lin = fp.index_faces("hamilton", LIN_REF, external_image_id="lin-manuel-miranda", max_faces=1)
    fp.index_faces("hamilton", LACAMOIRE_REF, external_image_id="alex-lacamoire", max_faces=1)
    lin_id = lin.face_records[0].face.face_id
    ctx = LocalContext(HAMILTON, {"CollectionId": "hamilton"}, fp)
    faces.search(ctx)
    matched: dict[str, set[int]] = defaultdict(set)
    lin_indexes = set()
    for item in ctx.items:
        for match in item.body.get("FaceMatches", []):
            matched[match["Face"]["ExternalImageId"]].add(item.timestamp_ms)
            assert match["Similarity"] >= 80
        if item.body.get("FaceMatches", [{}])[0].get("Face", {}).get("FaceId") == lin_id:
            lin_indexes.add(item.index)
    lin_seconds = {t // 1000 for t in matched["lin-manuel-miranda"]}
    assert lin_seconds >= {3, 4, 5, 6} and max(matched["lin-manuel-miranda"]) < 7100
    assert all(t < 2800 for t in matched.get("alex-lacamoire", ()))
    assert len(lin_indexes) == 1


def test_tracker_keeps_two_crossing_faces_apart_by_their_vectors() -> None:
    """Two faces swap places between two looks: box overlap alone would swap the tracks; their
    face vectors keep each on its own track."""
    tracker = Tracker()
    v1, v2 = np.eye(4, dtype=np.float32)[0], np.eye(4, dtype=np.float32)[1]
    boxes = np.array([[100, 100, 50, 50], [140, 100, 50, 50]], np.float32)
    first = tracker.step(0, boxes, lambda idx: np.stack([(v1, v2)[j] for j in idx]))
    swapped = np.array([[135, 100, 50, 50], [105, 100, 50, 50]], np.float32)  # face 1 now right of face 2
    second = tracker.step(200, swapped, lambda idx: np.stack([(v1, v2)[j] for j in idx]))
    track_of = {j: t.id for t, j in first}
    assert {j: t.id for t, j in second} == track_of
    assert iou_matrix(boxes, swapped)[0, 1] > iou_matrix(boxes, swapped)[0, 0]  # overlap alone would swap


def test_tracker_splits_a_track_when_another_person_takes_its_place() -> None:
    tracker = Tracker()
    v1, v2 = np.eye(4, dtype=np.float32)[0], np.eye(4, dtype=np.float32)[1]
    box = np.array([[100, 100, 50, 50]], np.float32)
    (t1, _), = tracker.step(0, box, lambda idx: v1[None])
    (again, _), = tracker.step(200, box, lambda idx: v1[None])
    assert again is t1
    (other, _), = tracker.step(1200, box, lambda idx: v2[None])  # a vector is due: someone else
    assert other is not t1 and other.first_ms == 1200
    (same, _), = tracker.step(1400, box + 5, lambda idx: v2[None])
    assert same is other
    assert [t.id for t in tracker.finished(5300)] == [t1.id]  # unseen for over 5 s


def test_the_similarity_a_track_needs_grows_with_the_collection() -> None:
    """A stranger is matched to someone with a probability that grows with the collection's size:
    the similarity needed follows the calibration (1e-4 per pair at 80, 1e-5 at 90)."""
    assert abs(sure_similarity(1000, 0.1) - 80.0) < 1e-6  # 1000 x 1e-4 = 0.1
    assert abs(sure_similarity(100, 0.001) - 90.0) < 1e-6  # 100 x 1e-5 = 0.001
    levels = [sure_similarity(n, 0.015) for n in (1, 10, 100, 1000, 2500, 10_000, 10**6)]
    assert levels == sorted(levels) and levels[-1] == 99.0
    assert 91.5 < sure_similarity(2500, 0.015) < 92.5
