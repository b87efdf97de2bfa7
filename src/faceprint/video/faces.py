"""Faces in stored video: Rekognition Video's face search (``search``) and face detection
(``detect``) analysers.

Every frame is decoded (later frames refer to earlier ones, so skipping saves nothing), and
faces are detected on about ``detect_fps`` frames a second, on a copy of the frame shrunk so
that the smallest face wanted (``min_face`` pixels wide in the original frame) is still
``detect_face`` pixels wide for YuNet: one detector pass a frame, no small-face second pass.

Face search follows faces across detection frames with :class:`~faceprint.video.tracker.Tracker`
(box overlap plus plain SFace vectors of full-resolution crops, asked for only when needed), keeps
each track's best views, and decides each track's identity once, from those views
(:mod:`faceprint.video.identity`). A track's entries are held until it ends, so that every
entry of a person carries the same decision.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from faceprint.attributes import EVERYTHING
from faceprint.engine import MAX_FACES
from faceprint.errors import FaceprintError
from faceprint.faces import MeasuredFace, measure
from faceprint.imaging import DecodedImage
from faceprint.models import catalog
from faceprint.models.detector import Detections, DetectorSettings, YuNetDetector
from faceprint.models.embedders import SFaceEmbedder
from faceprint.types import FaceDetail, FaceMatch
from faceprint.video import decode
from faceprint.video.context import Item, JobContext
from faceprint.video.identity import BestViews, Identifier, MatchRules, PersonIndexes, View, view_quality
from faceprint.video.tracker import Track, Tracker, TrackerSettings, iou_matrix
from faceprint.video.types import FaceDetection, PersonDetail, PersonMatch

if TYPE_CHECKING:
    from faceprint.service import Faceprint


VIDEO_MATCH = MatchRules(best_views=8, first_views=3)
"""Stored video decides a track's identity once, from up to 8 views (their quality-weighted
mean), by the collection-size bar (``faceprint.video.identity``), embedding the 3 best first and
the other 5 only when those leave the decision open (no agreeing majority, or the best match
within 6 below to 3 above the bar): 8 views gained 1.8 points of recall (accurate, 720p), and
embedding them all cost the accurate profile its real-time goal (0.88x at 720p25 on a quiet
machine, against 1.44x with 3), 3 first costs 1.1x the CPU of 3 views. The lead rule is off:
tuned on benchmarks/videogen.py's ``tune`` set (lead 2.4), it named a stranger of the evaluation set
(docs/benchmarks.md, Video)."""


@dataclass(frozen=True)
class FaceVideoSettings:
    detect_fps: float = 5.0
    """Frames a second that faces are detected on."""
    min_face: int = 40
    """Width (px, original frame) of the smallest face to be found."""
    detect_face: int = 20
    """Width (px) that such a face has in the frame the detector sees (YuNet finds faces from about 10 px)."""
    min_detect_side: int = 640
    """The detector's frame is never shrunk below this long side (small videos are seen whole)."""
    max_detect_side: int = 1280
    """...nor larger than this (in 4K, faces from about 60 px are found)."""
    detect_score: float = 0.6
    """YuNet's score threshold."""
    cut_correlation: float = 0.25
    """Two detection frames whose thumbnails correlate less than this are a shot cut: faces are
    not followed across it by position (only by their face vectors)."""
    crop_margin: float = 0.6
    """Crops for face vectors reach this share of the face's size beyond its box."""
    refine_face: int = 112
    """Before a best view is embedded, its landmarks are found again on the full-resolution crop
    scaled so that the face is about this wide (0: keep the shrunk frame's landmarks)."""
    max_buffered: int = 3000
    """A track's entries held before its identity is decided early and they are emitted."""
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    match: MatchRules = field(default_factory=lambda: VIDEO_MATCH)


# -- frames and faces ---------------------------------------------------------------------------
@dataclass
class SeenFrame:
    """One detection frame: faces measured on the shrunk frame, boxes in original pixels."""

    frame: decode.Frame
    faces: list[MeasuredFace]
    boxes: np.ndarray
    landmarks: np.ndarray
    scores: np.ndarray
    margin: float
    cut: bool = False
    """A shot cut happened since the previous detection frame."""

    @property
    def timestamp_ms(self) -> int:
        return self.frame.timestamp_ms

    def crop(self, j: int) -> tuple[DecodedImage, Detections]:
        """Face ``j`` cut from the full-resolution frame, with its box and landmarks in the crop."""
        full = self.frame.bgr()
        x, y, w, h = (float(v) for v in self.boxes[j])
        pad = self.margin * max(w, h)
        x0, y0 = max(0, int(math.floor(x - pad))), max(0, int(math.floor(y - pad)))
        x1 = min(full.shape[1], int(math.ceil(x + w + pad)))
        y1 = min(full.shape[0], int(math.ceil(y + h + pad)))
        bgr = np.ascontiguousarray(full[y0:y1, x0:x1])
        offset = np.array([x0, y0], np.float32)
        box = self.boxes[j].astype(np.float32).copy()
        box[:2] -= offset
        face = Detections(box[None], (self.landmarks[j] - offset)[None].astype(np.float32), self.scores[j:j + 1])
        return DecodedImage(rgb=np.ascontiguousarray(bgr[:, :, ::-1]), _bgr=bgr), face


def refine(detector: YuNetDetector, image: DecodedImage, face: Detections, width: int) -> Detections:
    """``face`` with its box and landmarks found again on ``image`` (a crop of the full frame)
    scaled so that the face is about ``width`` px wide: landmarks from the shrunk frame are a
    pixel or two off, which small faces' alignment feels. Unchanged when not found again."""
    if width <= 0:
        return face
    scale = min(4.0, max(0.25, width / max(float(face.boxes[0, 2]), 1.0)))
    found = detector.detect(cv2.resize(image.bgr, None, fx=scale, fy=scale,
                                       interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA))
    if not len(found):
        return face
    overlap = iou_matrix(found.boxes / scale, face.boxes)[:, 0]
    best = int(np.argmax(overlap))
    if overlap[best] < 0.5:
        return face
    return Detections(found.boxes[best:best + 1] / scale, found.landmarks[best:best + 1] / scale, face.scores)


def detection_width(info: decode.VideoInfo, settings: FaceVideoSettings) -> int:
    """Width of the frame the detector sees (see :class:`FaceVideoSettings`)."""
    return frame_detection_width(info.width, info.height, settings)


def frame_detection_width(width: int, height: int, settings: FaceVideoSettings) -> int:
    """Width of the frame the detector sees, for frames ``width`` x ``height`` px."""
    long_side = max(width, height)
    scale = max(settings.detect_face / settings.min_face, settings.min_detect_side / long_side)
    scale = min(1.0, scale, settings.max_detect_side / long_side)
    return max(16, int(round(width * scale / 2)) * 2)


def video_detector(fp: Faceprint, settings: FaceVideoSettings) -> YuNetDetector:
    """YuNet for shrunk video frames: one pass at the frame's size (no small-face or coarse pass:
    at detection sizes YuNet finds faces from ~10 px to the whole frame height)."""
    big = 1 << 30
    return YuNetDetector(fp.engine.store.path(catalog.YUNET),
                         DetectorSettings(score_threshold=settings.detect_score, max_side=big,
                                          coarse_side=big, small_face=0))


def scan(ctx: JobContext, info: decode.VideoInfo, settings: FaceVideoSettings) -> Iterator[SeenFrame]:
    """The detection frames of the video (about ``detect_fps`` a second), with their faces.
    Reports progress, and stops early when the job is cancelled."""
    detector = video_detector(ctx.fp, settings)
    width = detection_width(info, settings)
    period = 1000.0 / settings.detect_fps
    half_frame = 500.0 / info.frame_rate
    next_ms = -math.inf
    cuts = CutDetector(settings.cut_correlation)
    for frame in decode.frames(ctx.path, info, ctx.limits):
        if frame.number % 5 == 0:
            ctx.progress(frame.number, info.frames)
        if frame.timestamp_ms < next_ms - half_frame:
            continue
        if ctx.cancelled():
            return
        next_ms = max(next_ms, frame.timestamp_ms) + period
        seen = see_faces(frame, frame.bgr(width), detector, settings.crop_margin)
        seen.cut = cuts.cut(frame)
        yield seen
    ctx.progress(info.frames, info.frames)


class CutDetector:
    """Shot cuts between detection frames, from the correlation of small grey thumbnails."""

    def __init__(self, min_correlation: float) -> None:
        self.min_correlation = min_correlation
        self._last: np.ndarray | None = None

    def cut(self, frame: decode.Frame) -> bool:
        thumb = frame.grey(48, 27).astype(np.float32).ravel()
        last, self._last = self._last, thumb
        if last is None:
            return False
        a, b = thumb - thumb.mean(), last - last.mean()
        norm = float(np.linalg.norm(a) * np.linalg.norm(b))
        if norm < 1e-3 * thumb.size:  # a flat picture: a cut if the brightness jumped
            return abs(float(thumb.mean() - last.mean())) > 20
        return float(a @ b) / norm < self.min_correlation


def see_faces(frame: decode.Frame, small: np.ndarray, detector: YuNetDetector, margin: float) -> SeenFrame:
    """The faces of ``frame`` found on ``small`` (its shrunk copy), boxes in ``frame``'s pixels."""
    found = detector.detect(small)
    found = found.take(np.argsort(-found.areas(), kind="stable")[:MAX_FACES])
    faces = measure(DecodedImage(rgb=small[:, :, ::-1], _bgr=small), found)
    scale = np.float32(frame.width / small.shape[1])
    return SeenFrame(frame, faces, found.boxes * scale, found.landmarks * scale, found.scores, margin)


VIDEO_ALL = EVERYTHING - {"FACE_OCCLUDED", "EYE_DIRECTION"}
"""FaceAttributes ``ALL`` in video: every attribute DetectFaces gives but FaceOccluded and
EyeDirection, which Rekognition Video does not return (botocore's ``Attributes`` doc)."""


def face_details(fp: Faceprint, seen: SeenFrame, attributes: str) -> list[FaceDetail]:
    """The details of a detection frame's faces for FaceAttributes ``DEFAULT`` or ``ALL``. ALL's
    attributes are measured on the full-resolution frame (the detector saw a shrunk copy)."""
    if attributes != "ALL" or not seen.faces:
        return [f.detail() for f in seen.faces]
    full = seen.frame.bgr()
    image = DecodedImage(rgb=np.ascontiguousarray(full[:, :, ::-1]), _bgr=full)
    return [fp.describe(image, dataclasses.replace(face, box_px=seen.boxes[j], landmarks_px=seen.landmarks[j],
                                                   reduced_by=1), VIDEO_ALL)
            for j, face in enumerate(seen.faces)]


# -- the analysers ------------------------------------------------------------------------------
def detect(ctx: JobContext, settings: FaceVideoSettings | None = None) -> None:
    """StartFaceDetection: every face of every detection frame (about 5 a second)."""
    settings = settings or FaceVideoSettings()
    attributes = ctx.params.get("FaceAttributes") or "DEFAULT"
    info = decode.probe(ctx.path, ctx.limits)
    ctx.metadata(info)
    for seen in scan(ctx, info, settings):
        items = [Item(seen.timestamp_ms, 0, FaceDetection(timestamp=seen.timestamp_ms, face=detail).to_dict())
                 for detail in face_details(ctx.fp, seen, attributes)]
        if items:
            ctx.emit(items)


def search(ctx: JobContext, settings: FaceVideoSettings | None = None) -> None:
    """StartFaceSearch: tracked persons, each with one index, matched against the collection."""
    settings = settings or FaceVideoSettings()
    collection_id = ctx.params["CollectionId"]
    threshold = float(ctx.params.get("FaceMatchThreshold", 80.0))
    try:
        ctx.fp.collections.collection(collection_id)
    except FaceprintError as exc:
        raise decode.VideoError(str(exc)) from None
    info = decode.probe(ctx.path, ctx.limits)
    ctx.metadata(info)
    identifier = Identifier(ctx.fp, collection_id, threshold, settings.match)
    people = FaceSearch(ctx.fp, identifier, settings, ctx.emit)
    for seen in scan(ctx, info, settings):
        people.add(seen)
    if not ctx.cancelled():
        people.close()


# -- face search --------------------------------------------------------------------------------
@dataclass
class Person:
    """What face search keeps of one track until it ends."""

    views: BestViews
    entries: list[tuple[int, FaceDetail]] = field(default_factory=list)
    matches: list[FaceMatch] | None = None
    """The identity decision (None: not decided yet)."""
    index: int | None = None


class FaceSearch:
    """Tracks, views, decisions and person indexes over a video's detection frames."""

    def __init__(self, fp: Faceprint, identifier: Identifier, settings: FaceVideoSettings,
                 emit: Callable[[list[Item]], None]) -> None:
        self.settings = settings
        self.identifier = identifier
        self.emit = emit
        self.tracker = Tracker(settings.tracker)
        self.sface = plain_sface(fp)
        self.refiner = video_detector(fp, settings)
        self.people: dict[int, Person] = {}
        self.indexes = PersonIndexes()

    def add(self, seen: SeenFrame) -> None:
        pairs = self.tracker.step(seen.timestamp_ms, seen.boxes, lambda idx: self._vectors(seen, idx), seen.cut)
        for track, j in pairs:
            self._observe(track, seen, j)
        for track in self.tracker.finished(seen.timestamp_ms):
            self._finish(track)

    def close(self) -> None:
        for track in self.tracker.close():
            self._finish(track)

    def _vectors(self, seen: SeenFrame, indexes: list[int]) -> np.ndarray:
        return crop_vectors(self.sface, seen, indexes)

    def _observe(self, track: Track, seen: SeenFrame, j: int) -> None:
        person = self.people.get(track.id)
        if person is None:
            match = self.settings.match
            person = self.people[track.id] = Person(BestViews(match.best_views, match.view_gap_ms))
        face = seen.faces[j]
        person.entries.append((seen.timestamp_ms, face.detail()))
        quality = view_quality(face, float(seen.boxes[j, 2]))
        if person.views.wants(quality, seen.timestamp_ms):
            person.views.add(View(quality, seen.timestamp_ms, *seen.crop(j)))
        if len(person.entries) >= self.settings.max_buffered:
            self._emit(track, person)

    def _finish(self, track: Track) -> None:
        person = self.people.pop(track.id, None)
        if person is not None and track.hits >= self.settings.tracker.min_hits:
            self._emit(track, person)

    def _emit(self, track: Track, person: Person) -> None:
        if person.matches is None or person.index is None:
            self._decide(track, person)
        else:  # the rest of a long track whose first entries went out early
            self.indexes.extend(person.index, track)
        items = []
        for timestamp, detail in person.entries:
            body = PersonMatch(timestamp=timestamp, person=PersonDetail(index=person.index, face=detail),
                               face_matches=person.matches or None)
            items.append(Item(timestamp, person.index, body.to_dict()))
        person.entries.clear()
        if items:
            self.emit(items)


    def _decide(self, track: Track, person: Person) -> None:
        """The track's identity and person index. A track that is not sure enough by itself but
        continues an earlier, identified person (same face by the tracking vectors) is named as
        that person when its own best match is that face, at the request's threshold."""
        template = self.identifier.template_in_steps(person.views.views, self._refined)
        matches = [] if template is None else self.identifier.match(template)
        index = self.indexes.find(track, _face_id(matches))
        known = None if index is None else self.indexes.face_of(index)
        if not matches and known is not None and template is not None:
            matches = self.identifier.confirm(template, known)
        person.matches = matches
        person.index = self.indexes.add(track, index, _face_id(matches))

    def _refined(self, view: View) -> View:
        return dataclasses.replace(view, face=refine(self.refiner, view.image, view.face, self.settings.refine_face))


def crop_vectors(sface: Any, seen: SeenFrame, indexes: list[int]) -> np.ndarray:
    """Plain SFace vectors (for tracking) of faces ``indexes`` of ``seen``, from full-resolution crops."""
    out = []
    for j in indexes:
        image, face = seen.crop(j)
        out.append(sface.embed(image, face.boxes[0], face.landmarks[0]))
    return np.stack(out)


def _face_id(matches: list[FaceMatch]) -> str | None:
    return matches[0].face.face_id if matches else None


def plain_sface(fp: Faceprint) -> Any:
    """The plain SFace embedder (the profile's own when it has one): vectors for tracking."""
    for embedder in fp.engine.embedders:
        if embedder.name == "sface":
            return embedder
    return SFaceEmbedder(fp.engine.store.path(catalog.SFACE), threads=fp.threads)
