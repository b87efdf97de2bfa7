"""Live face search over real encoded video: a clip of an enrolled LFW person and a stranger,
decoded with faceprint's decoder into captured frames at 5 a second and fed to
:class:`LiveFaceSearch` as a camera's frames would be, with a real collection and real models."""

from __future__ import annotations

import json
import threading

import pytest

from conftest import LFW
from faceprint.streams.live import CollectionGone, FrameResult, LiveFaceSearch, LiveSettings, Regions
from faceprint.streams.records import alert_record, frame_record, has_match
from faceprint.streams.sources import CapturedFrame
from faceprint.video import decode
from videokit import Walker, background, photos_of, walking_clip

WIDTH, HEIGHT, FPS = 960, 540, 25
T0 = 1_760_000_000.0
"""Wall-clock epoch seconds of the clip's first frame."""
KNOWN_FROM_MS = 1000
"""The enrolled person walks in at 1 s, on the right half; the stranger stays on the left half."""
STREAM_ARN = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/door-camera/1700000000000"
RIGHT_HALF = {"BoundingBox": {"Left": 0.5, "Top": 0.0, "Width": 0.5, "Height": 1.0}}
LEFT_TRIANGLE = {"Polygon": [{"X": 0.0, "Y": 0.0}, {"X": 0.5, "Y": 0.0}, {"X": 0.0, "Y": 1.0}]}


class Clock:
    """The host's wall clock, following the frames (a frame is analysed 50 ms after capture)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def watch_list(fast) -> dict[str, str]:
    """David Beckham (first photo) among ten people with one photo; Christopher Walken is not enrolled."""
    fast.create_collection("live-watch")
    singles = [p for p in sorted((LFW / "images").iterdir()) if len(list(p.glob("*.jpg"))) == 1][:10]
    ids = {}
    for photo in [photos_of(LFW, "David_Beckham")[0]] + [photos_of(LFW, p.name)[0] for p in singles]:
        record = fast.index_faces("live-watch", photo, external_image_id=photo.parent.name, max_faces=1)
        ids[photo.parent.name] = record.face_records[0].face.face_id
    return ids


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[CapturedFrame]:
    """5 s of 960x540 H.264 decoded by faceprint and taken 5 times a second, as a source does."""
    path = tmp_path_factory.mktemp("live") / "door.mp4"
    stranger = Walker(photos_of(LFW, "Christopher_Walken")[1], 150, (40, 200), (200, 180), first_s=0.0, last_s=5.0)
    known = Walker(photos_of(LFW, "David_Beckham")[1], 170, (760, 150), (560, 170), first_s=KNOWN_FROM_MS / 1000,
                   last_s=5.0)
    walking_clip(path, WIDTH, HEIGHT, 5.0, [stranger, known], fps=FPS, seed=3)
    info = decode.probe(path)
    out, fragment, fragment_ms = [], -1, 0
    for frame in decode.frames(path, info):
        if frame.av_frame.key_frame:
            fragment, fragment_ms = fragment + 1, frame.timestamp_ms
        if frame.timestamp_ms % 200 == 0:
            out.append(CapturedFrame(image=frame.bgr(), number=frame.number, captured=T0 + frame.timestamp_ms / 1000,
                                     producer_ms=int(T0 * 1000) + frame.timestamp_ms, fragment=fragment,
                                     offset_s=(frame.timestamp_ms - fragment_ms) / 1000))
    assert len(out) == 25
    return out


def feed(live: LiveFaceSearch, clock: Clock, frames: list[CapturedFrame]) -> list[FrameResult]:
    results = []
    for frame in frames:
        clock.now = frame.captured + 0.05
        results.append(live.analyse(frame))
    return results


def stream_ms(result: FrameResult) -> int:
    return result.frame.producer_ms - int(T0 * 1000)


def who(face) -> str:
    """The enrolled person walks on the right half, the stranger on the left."""
    box = face.detail.bounding_box
    return "known" if box.left + box.width / 2 > 0.5 else "stranger"


def first_matched_ms(results: list[FrameResult]) -> int | None:
    return next((stream_ms(r) for r in results for f in r.faces if who(f) == "known" and f.matches), None)


@pytest.fixture(scope="module")
def watched(fast, watch_list, frames) -> tuple[LiveFaceSearch, list[FrameResult]]:
    clock = Clock()
    live = LiveFaceSearch(fast, "live-watch", 80.0, clock=clock)
    return live, feed(live, clock, frames)


def test_the_enrolled_person_is_matched_within_a_second_and_alerted_once(watch_list, watched) -> None:
    live, results = watched
    beckham = watch_list["David_Beckham"]
    seen = {name: [stream_ms(r) for r in results if any(who(f) == name for f in r.faces)]
            for name in ("known", "stranger")}
    assert seen["stranger"][0] == 0 and len(seen["stranger"]) >= 23
    assert seen["known"][0] >= KNOWN_FROM_MS and len(seen["known"]) >= 18
    matched_ms = first_matched_ms(results)
    assert matched_ms is not None and matched_ms - seen["known"][0] <= 1000
    for result in results:
        for face in result.faces:
            if who(face) == "stranger":
                assert face.matches == []
            elif stream_ms(result) >= matched_ms:
                assert face.matches and face.matches[0].face.face_id == beckham and face.matches[0].similarity >= 80
    alerts = [(stream_ms(r), a) for r in results for a in r.alerts]
    assert len(alerts) == 1
    at_ms, alert = alerts[0]
    assert at_ms == matched_ms and alert.frame.producer_ms - int(T0 * 1000) == matched_ms
    assert alert.matches[0].face.face_id == beckham and alert.matches[0].face.external_image_id == "David_Beckham"
    known_tracks = {f.track_id for r in results for f in r.faces if who(f) == "known" and f.matches}
    assert known_tracks == {alert.track_id}
    assert all(r.analysed_at == r.frame.captured + 0.05 for r in results)


def test_a_track_can_wait_for_more_views_before_its_first_decision(fast, watch_list, frames) -> None:
    """With ``first_decision_views`` 3 the first decision waits for three views, 400 ms apart."""
    clock = Clock()
    live = LiveFaceSearch(fast, "live-watch", 80.0, settings=LiveSettings(first_decision_views=3), clock=clock)
    results = feed(live, clock, frames[:15])
    matched_ms = first_matched_ms(results)
    assert matched_ms is not None and KNOWN_FROM_MS + 800 <= matched_ms <= KNOWN_FROM_MS + 1600
    assert [stream_ms(r) for r in results if r.alerts] == [matched_ms]


def test_nothing_about_a_track_outlives_it(fast, watch_list, frames) -> None:
    """A face's views and vectors are dropped when its track ends (unseen for the tracker's
    5 s window); close() drops every track."""
    clock = Clock()
    live = LiveFaceSearch(fast, "live-watch", 80.0, clock=clock)
    feed(live, clock, frames[:10])
    assert len(live._watched) == 2 and all(w.views.views for w in live._watched.values())
    empty = [CapturedFrame(image=background(WIDTH, HEIGHT, 3), number=200 + k, captured=T0 + 8 + k,
                           producer_ms=int((T0 + 8 + k) * 1000), fragment=9, offset_s=float(k)) for k in range(2)]
    results = feed(live, clock, empty)
    assert all(not r.faces for r in results)
    assert live._watched == {} and live.tracker.tracks == []
    feed(live, clock, frames[10:12])
    assert len(live._watched) == 2
    live.close()
    assert live._watched == {} and live.tracker.tracks == []


def test_regions_of_interest_leave_out_faces_outside_them(fast, watch_list, frames) -> None:
    clock = Clock()
    live = LiveFaceSearch(fast, "live-watch", 80.0, regions=[RIGHT_HALF], clock=clock)
    results = feed(live, clock, frames[:15])
    assert {who(f) for r in results for f in r.faces} == {"known"}
    assert first_matched_ms(results) is not None and sum(len(r.alerts) for r in results) == 1
    live.update(regions=[LEFT_TRIANGLE])
    results = feed(live, clock, frames[15:20])
    assert {who(f) for r in results for f in r.faces} == {"stranger"}
    live.update(regions=[])
    results = feed(live, clock, frames[20:])
    assert all({who(f) for f in r.faces} == {"known", "stranger"} for r in results)


def test_regions_are_boxes_and_polygons_of_frame_ratios() -> None:
    regions = Regions([RIGHT_HALF, LEFT_TRIANGLE])
    assert regions.inside(0.75, 0.9) and regions.inside(0.1, 0.1) and regions.inside(0.5, 0.5)
    assert not regions.inside(0.4, 0.5) and not regions.inside(0.05, 0.95)
    assert Regions(None).inside(0.4, 0.5) and not Regions([])
    with pytest.raises(ValueError):
        Regions([{"Name": "door"}])


def test_a_new_threshold_takes_effect_on_the_tracks_in_view(fast, watch_list, frames) -> None:
    """At threshold 100 nobody is matched; lowered to 80 mid-stream, the enrolled person in view
    is matched at his track's next decision (within a second), and alerted on once."""
    clock = Clock()
    live = LiveFaceSearch(fast, "live-watch", 100.0, clock=clock)
    before = feed(live, clock, frames[:15])
    assert first_matched_ms(before) is None and not any(r.alerts for r in before)
    assert sum(who(f) == "known" for r in before for f in r.faces) >= 8
    live.update(threshold=80.0)
    after = feed(live, clock, frames[15:])
    matched_ms = first_matched_ms(after)
    assert matched_ms is not None and matched_ms - stream_ms(after[0]) <= 1000
    assert sum(len(r.alerts) for r in after) == 1 and all(f.matches == [] for r in after for f in r.faces
                                                          if who(f) == "stranger")


class HeldClock(Clock):
    """A clock that, once armed, holds the frame being analysed at its first reading (the start of
    ``analyse``) until released: another thread's calls then meet a frame half-way."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.inside, self.release = threading.Event(), threading.Event()

    def __call__(self) -> float:
        if self.armed:
            self.armed = False
            self.inside.set()
            self.release.wait(10)
        return self.now


def test_update_and_close_from_another_thread_wait_for_the_frame_being_analysed(fast, watch_list, frames) -> None:
    """The host updates and closes from its own thread: an update lands before the next frame,
    a close after the frame being analysed (which would otherwise leave its tracks behind)."""
    clock = HeldClock()
    live = LiveFaceSearch(fast, "live-watch", 80.0, clock=clock)
    feed(live, clock, frames[:10])
    both = frames[10]
    clock.now, clock.armed = both.captured + 0.05, True
    results: list[FrameResult] = []
    analysing = threading.Thread(target=lambda: results.append(live.analyse(both)), name="analyse")
    analysing.start()
    try:
        assert clock.inside.wait(10)
        live.update(regions=[LEFT_TRIANGLE])
        closing = threading.Thread(target=live.close, name="close")
        closing.start()
        closing.join(0.3)
        assert closing.is_alive()  # waits for the frame
    finally:
        clock.release.set()
        analysing.join(10)
    closing.join(10)
    assert not closing.is_alive() and {who(f) for f in results[0].faces} == {"known", "stranger"}
    assert live._watched == {} and live.tracker.tracks == []  # closed after the frame, not before its tracks
    clock.now = frames[11].captured + 0.05
    assert {who(f) for f in live.analyse(frames[11]).faces} == {"stranger"}  # the update, before the next frame


def test_a_face_indexed_while_running_is_found(fast, frames) -> None:
    """The watch list changes while the processor runs: the enrolled person, indexed 3 s into the
    stream, is matched within the next recount and re-decision (2 s + 1 s)."""
    fast.create_collection("live-later")
    for name in ("Colin_Powell", "Holly_Hunter"):
        fast.index_faces("live-later", photos_of(LFW, name)[0], external_image_id=name, max_faces=1)
    clock = Clock()
    live = LiveFaceSearch(fast, "live-later", 80.0, clock=clock)
    before = feed(live, clock, frames[:15])
    assert first_matched_ms(before) is None
    fast.index_faces("live-later", photos_of(LFW, "David_Beckham")[0], external_image_id="David_Beckham", max_faces=1)
    after = feed(live, clock, frames[15:])
    matched_ms = first_matched_ms(after)
    assert matched_ms is not None and matched_ms - stream_ms(after[0]) <= 3000
    assert [a.matches[0].face.external_image_id for r in after for a in r.alerts] == ["David_Beckham"]


def test_a_deleted_collection_stops_the_search(fast, frames) -> None:
    fast.create_collection("live-gone")
    fast.index_faces("live-gone", photos_of(LFW, "David_Beckham")[0], max_faces=1)
    clock = Clock()
    live = LiveFaceSearch(fast, "live-gone", 80.0, settings=LiveSettings(recount_s=2.0), clock=clock)
    feed(live, clock, frames[:2])
    fast.delete_collection("live-gone")
    with pytest.raises(CollectionGone, match="Collection live-gone was deleted"):
        feed(live, clock, frames[2:15])
    with pytest.raises(CollectionGone):
        LiveFaceSearch(fast, "live-gone", 80.0)


# -- records ------------------------------------------------------------------------------------
BOX_KEYS = {"Width", "Height", "Left", "Top"}


def _check_box(box: dict) -> None:
    assert set(box) == BOX_KEYS and all(isinstance(v, float) and 0 <= v <= 1 for v in box.values())


def _check_detected(face: dict, full: bool) -> None:
    _check_box(face["BoundingBox"])
    assert isinstance(face["Confidence"], float) and 0 < face["Confidence"] <= 100
    if not full:
        assert set(face) == {"BoundingBox", "Confidence"}
        return
    assert set(face) == {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}
    assert face["Landmarks"] and all(set(m) == {"Type", "X", "Y"} and isinstance(m["Type"], str)
                                     and isinstance(m["X"], float) for m in face["Landmarks"])
    assert set(face["Pose"]) == {"Pitch", "Roll", "Yaw"} and all(isinstance(v, float) for v in face["Pose"].values())
    assert set(face["Quality"]) == {"Brightness", "Sharpness"}


def _check_matched(matched: list, face_id: str) -> None:
    assert matched and all(set(m) == {"Similarity", "Face"} and 80 <= m["Similarity"] <= 100 for m in matched)
    face = matched[0]["Face"]
    assert set(face) == {"BoundingBox", "Confidence", "ExternalImageId", "FaceId", "ImageId"}
    _check_box(face["BoundingBox"])
    assert face["FaceId"] == face_id and face["ExternalImageId"] == "David_Beckham" and isinstance(face["ImageId"], str)


def test_frame_records_have_rekognitions_shape_key_by_key(watch_list, watched) -> None:
    """Rekognition's Kinesis face search record: every key, every type; the stranger's faces
    carry only a box and a confidence."""
    _, results = watched
    kinds = set()
    for result in results:
        record = json.loads(json.dumps(frame_record(result, STREAM_ARN)))
        assert set(record) == {"InputInformation", "StreamProcessorInformation", "FaceSearchResponse"}
        assert set(record["InputInformation"]) == {"KinesisVideo"}
        kvs = record["InputInformation"]["KinesisVideo"]
        assert set(kvs) == {"StreamArn", "FragmentNumber", "ServerTimestamp", "ProducerTimestamp",
                            "FrameOffsetInSeconds"}
        assert kvs["StreamArn"] == STREAM_ARN and kvs["FragmentNumber"] == str(result.frame.fragment)
        assert kvs["ProducerTimestamp"] == pytest.approx(T0 + stream_ms(result) / 1000, abs=1e-3)
        assert kvs["ServerTimestamp"] == pytest.approx(result.frame.captured, abs=1e-3)
        assert isinstance(kvs["FrameOffsetInSeconds"], float) and kvs["FrameOffsetInSeconds"] >= 0
        assert record["StreamProcessorInformation"] == {"Status": "RUNNING"}
        assert len(record["FaceSearchResponse"]) == len(result.faces)
        for entry, face in zip(record["FaceSearchResponse"], result.faces, strict=True):
            assert set(entry) == {"DetectedFace", "MatchedFaces"}
            _check_detected(entry["DetectedFace"], full=bool(face.matches))
            if face.matches:
                _check_matched(entry["MatchedFaces"], watch_list["David_Beckham"])
            else:
                assert entry["MatchedFaces"] == []
            kinds.add((who(face), bool(face.matches)))
        assert has_match(record) == any(f.matches for f in result.faces)
    assert kinds == {("stranger", False), ("known", False), ("known", True)} or kinds == {("stranger", False),
                                                                                          ("known", True)}
    served = frame_record(results[0], STREAM_ARN, status="STOPPING", server_time=T0 + 9.5)
    assert served["InputInformation"]["KinesisVideo"]["ServerTimestamp"] == T0 + 9.5
    assert served["StreamProcessorInformation"]["Status"] == "STOPPING"


def test_alert_records(watch_list, watched) -> None:
    _, results = watched
    (alert,) = [a for r in results for a in r.alerts]
    arn = "arn:aws:rekognition:us-east-1:123456789012:streamprocessor/door"
    record = json.loads(json.dumps(alert_record(alert, "door", arn, STREAM_ARN)))
    assert set(record) == {"Alert"}
    body = record["Alert"]
    assert set(body) == {"StreamProcessorName", "StreamProcessorArn", "StreamArn", "TrackId", "ProducerTimestamp",
                         "ServerTimestamp", "DetectedFace", "MatchedFaces"}
    assert (body["StreamProcessorName"], body["StreamProcessorArn"], body["StreamArn"]) == ("door", arn, STREAM_ARN)
    assert body["TrackId"] == alert.track_id and body["ServerTimestamp"] == pytest.approx(alert.decided_at, abs=1e-3)
    assert body["ProducerTimestamp"] == pytest.approx(alert.frame.producer_ms / 1000, abs=1e-3)
    _check_detected(body["DetectedFace"], full=True)
    _check_matched(body["MatchedFaces"], watch_list["David_Beckham"])
    assert has_match(record)
    assert not has_match({"FaceSearchResponse": [{"DetectedFace": {}, "MatchedFaces": []}]})
