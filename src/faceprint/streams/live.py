"""Live face search: the faces of a camera's frames, followed and matched as they come.

Stored video (:mod:`faceprint.video.faces`) decides a track's identity once, when the track
ends; a live feed cannot wait for that. Here each frame handed to :meth:`LiveFaceSearch.analyse`
is analysed at once, with the stored-video parts: faces are detected on a shrunk copy of the
frame (:func:`~faceprint.video.faces.frame_detection_width`), followed with
:class:`~faceprint.video.tracker.Tracker`, and each track keeps its best views
(:class:`~faceprint.video.identity.BestViews`, full-resolution crops). A track's identity is
decided as soon as it has ``first_decision_views`` views, by the
:class:`~faceprint.video.identity.Identifier`'s rules (the similarity a track needs grows with
the collection's size, never below the threshold); a track not matched yet is decided again
every ``redecide_ms`` with its best views so far (each view is embedded once; a re-decision
costs a search), so a person seen better later, or enrolled later, is still found. A track's
first match raises one :class:`Alert`.

Privacy: what is kept about a face (its views, its vectors, its decision) lives only as long as
its track; nothing is written anywhere. Frames are not kept.

The collection is read again (its face count, which sets the similarity needed) every
``recount_s`` seconds; a collection that was deleted makes :meth:`LiveFaceSearch.analyse` raise
:class:`CollectionGone`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from faceprint.errors import ResourceNotFoundException
from faceprint.types import FaceDetail, FaceMatch
from faceprint.video.faces import (
    CutDetector,
    FaceVideoSettings,
    SeenFrame,
    crop_vectors,
    frame_detection_width,
    plain_sface,
    refine,
    see_faces,
    video_detector,
)
from faceprint.video.identity import BestViews, Identifier, MatchRules, View, view_quality
from faceprint.video.tracker import Track, Tracker, TrackerSettings

if TYPE_CHECKING:
    from faceprint.service import Faceprint
    from faceprint.streams.sources import CapturedFrame


LIVE_STRANGER_RATE = MatchRules().stranger_rate / MatchRules().best_views
"""A live track is searched with up to ``best_views`` templates (its identity is decided at once,
then again as better views come), where stored video decides once per track: each search is held to
that share of stored video's stranger rate, so that a stranger's track is named with about the
same chance (1.5%) over all its searches."""

LIVE_FACES = FaceVideoSettings(tracker=TrackerSettings(embed_interval=2.0),
                               match=MatchRules(stranger_rate=LIVE_STRANGER_RATE))
"""Stored video's face settings, but a followed track's face is checked every 2 s rather than
every second (whether someone else took its place): those checks are most of a live feed's
embeddings (SFace, ~33 ms a face on one core), and the issue's budget is ~0.25 CPU-s per
camera-second. Measured on 720p with 2.8 faces in view, fast profile, one thread: 0.23 CPU-s per
camera-second with 1 s checks, 0.18 with 2 s (5 frames analysed a second). Matches are held to
:data:`LIVE_STRANGER_RATE`."""


@dataclass(frozen=True)
class LiveSettings:
    detect_fps: float = 5.0
    """Frames a second analysed (the source hands over frames at this rate; every frame handed
    to ``analyse`` is analysed)."""
    faces: FaceVideoSettings = field(default_factory=lambda: LIVE_FACES)
    """Detection sizes, crop margin, tracker and match rules: stored video's, but for the tracker's
    check of the face under a followed track (see :data:`LIVE_FACES`)."""
    first_decision_views: int = 1
    """A track's identity is decided as soon as it has this many views."""
    redecide_ms: int = 1000
    """A track not matched yet is decided again this often (stream time), with its best views so far."""
    reembed_gain: float = 1.2
    """A track not matched yet has its views embedded again (those not embedded yet) when it has
    more views than at its last embedding, or a view this many times better than the best one
    then; else it is decided again from the same vectors (a search: the collection may have
    changed). A face seen better later is looked at again, a stranger standing still costs no
    embeddings."""
    recount_s: float = 2.0
    """Seconds (of ``clock``) between reads of the collection's face count (which sets the
    similarity a track needs, and finds a deleted collection)."""


@dataclass
class LiveFace:
    track_id: int
    detail: FaceDetail
    matches: list[FaceMatch]
    """The track's matches so far ([] when not matched)."""


@dataclass
class Alert:
    track_id: int
    detail: FaceDetail
    matches: list[FaceMatch]
    frame: CapturedFrame
    decided_at: float
    """``clock()`` when the match was decided."""


@dataclass
class FrameResult:
    frame: CapturedFrame
    faces: list[LiveFace]
    alerts: list[Alert]
    analysed_at: float


class CollectionGone(Exception):
    """The collection was deleted: the stream processor fails."""

    def __init__(self, collection_id: str) -> None:
        super().__init__(f"Collection {collection_id} was deleted.")
        self.collection_id = collection_id


@dataclass
class _Watch:
    """What is known of one live track, for as long as it lives."""

    views: BestViews
    vectors: dict[int, tuple[View, np.ndarray]] = field(default_factory=dict)
    """Identity vectors of the views, by ``id(view)`` (the view is held, so its id stays its own)."""
    template: np.ndarray | None = None
    embedded: tuple[int, float] = (0, 0.0)
    """Views, and the best view's quality, when the template was made."""
    matches: list[FaceMatch] = field(default_factory=list)
    decided_ms: int | None = None
    """Stream time of the last decision (None: not decided since it began or since an update)."""
    alerted: bool = False


class LiveFaceSearch:
    """Face search over one camera's frames (``update`` and ``close`` may come from another
    thread than ``analyse``'s)."""

    def __init__(self, fp: Faceprint, collection_id: str, threshold: float, regions: list[dict] | None = None,
                 settings: LiveSettings | None = None, clock: Callable[[], float] = time.time) -> None:
        self.fp = fp
        self.collection_id = collection_id
        self.settings = settings or LiveSettings()
        self.clock = clock
        faces = self.settings.faces
        self.identifier = self._guarded(lambda: Identifier(fp, collection_id, threshold, faces.match))
        self.regions = Regions(regions)
        self.detector = video_detector(fp, faces)
        self.sface = plain_sface(fp)
        self.tracker = Tracker(faces.tracker)
        self.cuts = CutDetector(faces.cut_correlation)
        self._watched: dict[int, _Watch] = {}
        self._counted = clock()
        self._stream = _StreamClock()
        self._last: tuple[int, tuple[int, ...]] = (-1, ())
        """The last frame's number and shape."""
        self._lock = threading.Lock()
        """Guards ``_pending``."""
        self._busy = threading.Lock()
        """Held while a frame is analysed, and by ``close``."""
        self._pending: dict[str, Any] = {}

    # -- the public operations ------------------------------------------------------------------
    def analyse(self, frame: CapturedFrame) -> FrameResult:
        """The faces of ``frame`` (inside the regions of interest, when set) with their tracks'
        matches, and the alerts of tracks matched for the first time on it."""
        with self._busy:
            return self._analyse(frame)

    def _analyse(self, frame: CapturedFrame) -> FrameResult:
        self._apply_pending()
        self._recount()
        now_ms = self._stream.time(frame.producer_ms)
        seen = self._see(frame, now_ms)
        pairs = self.tracker.step(now_ms, seen.boxes, lambda idx: crop_vectors(self.sface, seen, idx), seen.cut)
        faces: list[LiveFace] = []
        alerts: list[Alert] = []
        for track, j in sorted(pairs, key=lambda pair: pair[1]):
            watch = self._observe(track, seen, j, now_ms)
            detail = seen.faces[j].detail()
            faces.append(LiveFace(track.id, detail, list(watch.matches)))
            if watch.matches and not watch.alerted:
                watch.alerted = True
                alerts.append(Alert(track.id, detail, list(watch.matches), frame, self.clock()))
        for track in self.tracker.finished(now_ms):
            self._watched.pop(track.id, None)
        return FrameResult(frame, faces, alerts, self.clock())

    def update(self, threshold: float | None = None, regions: list[dict] | None = None) -> None:
        """A new threshold and/or regions of interest (``[]``: none, the whole frame), applied
        before the next frame. A new threshold applies to every decision from then on, those of
        the tracks in view included (a track already alerted on is not alerted on again)."""
        with self._lock:
            if threshold is not None:
                self._pending["threshold"] = float(threshold)
            if regions is not None:
                self._pending["regions"] = Regions(regions)

    def close(self) -> None:
        """Forget every track (views, vectors, decisions)."""
        with self._busy:
            self.tracker.close()
            self._watched.clear()

    # -- frames ---------------------------------------------------------------------------------
    def _see(self, frame: CapturedFrame, now_ms: int) -> SeenFrame:
        image = frame.image
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError("A captured frame must be a BGR uint8 image (H x W x 3).")
        height, width = image.shape[:2]
        small_width = frame_detection_width(width, height, self.settings.faces)
        if small_width < width:
            size = (small_width, max(2, round(height * small_width / width)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        else:
            small = image
        still: Any = _Still(image, small, frame.number, now_ms)  # read as a decode.Frame
        seen = self.regions.keep(see_faces(still, small, self.detector, self.settings.faces.crop_margin))
        reconnected = self._last[0] >= 0 and (frame.number < self._last[0] or image.shape != self._last[1])
        seen.cut = self.cuts.cut(still) or reconnected
        self._last = (frame.number, image.shape)
        return seen

    # -- tracks ---------------------------------------------------------------------------------
    def _observe(self, track: Track, seen: SeenFrame, j: int, now_ms: int) -> _Watch:
        watch = self._watched.get(track.id)
        if watch is None:
            rules = self.settings.faces.match
            watch = self._watched[track.id] = _Watch(BestViews(rules.best_views, rules.view_gap_ms))
        if not watch.matches:  # a matched track is not decided again (unless the threshold changes)
            quality = view_quality(seen.faces[j], float(seen.boxes[j, 2]))
            if watch.views.wants(quality, now_ms):
                watch.views.add(View(quality, now_ms, *seen.crop(j)))
        if self._due(watch, now_ms):
            self._decide(watch, now_ms)
        return watch

    def _due(self, watch: _Watch, now_ms: int) -> bool:
        wanted = min(max(1, self.settings.first_decision_views), self.settings.faces.match.best_views)
        if len(watch.views.views) < wanted:
            return False
        if watch.decided_ms is None:
            return True
        return not watch.matches and now_ms - watch.decided_ms >= self.settings.redecide_ms

    def _decide(self, watch: _Watch, now_ms: int) -> None:
        views = watch.views.views
        count, best = watch.embedded
        quality = max(v.quality for v in views)
        if len(views) > count or quality >= best * self.settings.reembed_gain:
            watch.vectors = {id(v): (v, self._vector(watch, v)) for v in views}
            vectors = np.concatenate([watch.vectors[id(v)][1] for v in views])
            watch.template, watch.embedded = self.identifier.template_of(vectors), (len(views), quality)
        template = watch.template
        watch.matches = [] if template is None else self._guarded(lambda: self.identifier.match(template))
        watch.decided_ms = now_ms

    def _vector(self, watch: _Watch, view: View) -> np.ndarray:
        known = watch.vectors.get(id(view))
        if known is not None:
            return known[1]
        face = refine(self.detector, view.image, view.face, self.settings.faces.refine_face)
        return self.fp.engine.embed(view.image, face)

    # -- the collection and updates -------------------------------------------------------------
    def _recount(self) -> None:
        now = self.clock()
        if now - self._counted >= self.settings.recount_s or now < self._counted:
            self._guarded(self.identifier.recount)
            self._counted = now

    def _apply_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if "regions" in pending:
            self.regions = pending["regions"]
        if "threshold" in pending:
            self.identifier.threshold = pending["threshold"]
            self._guarded(self.identifier.recount)
            self._counted = self.clock()
            for watch in self._watched.values():
                watch.decided_ms = None

    def _guarded(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except ResourceNotFoundException:
            raise CollectionGone(self.collection_id) from None


class Regions:
    """Regions of interest (Rekognition's ``RegionOfInterest``: a ``BoundingBox`` or a
    ``Polygon`` of ``{X, Y}`` points, ratios of the frame): a face is kept when its box's centre
    is inside one of them. No regions: the whole frame."""

    def __init__(self, regions: list[dict] | None) -> None:
        self.boxes: list[tuple[float, float, float, float]] = []
        self.polygons: list[np.ndarray] = []
        for region in regions or []:
            if region.get("BoundingBox") is not None:
                b = region["BoundingBox"]
                left, top = float(b["Left"]), float(b["Top"])
                self.boxes.append((left, top, left + float(b["Width"]), top + float(b["Height"])))
            elif region.get("Polygon"):
                self.polygons.append(np.array([[float(p["X"]), float(p["Y"])] for p in region["Polygon"]]))
            else:
                raise ValueError("A region of interest has a BoundingBox or a Polygon.")

    def __bool__(self) -> bool:
        return bool(self.boxes or self.polygons)

    def inside(self, x: float, y: float) -> bool:
        if not self:
            return True
        if any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in self.boxes):
            return True
        return any(_in_polygon(x, y, poly) for poly in self.polygons)

    def keep(self, seen: SeenFrame) -> SeenFrame:
        """``seen`` with only the faces whose box centre is inside a region."""
        if not self:
            return seen
        keep = [j for j, face in enumerate(seen.faces)
                if self.inside(face.bounding_box.left + face.bounding_box.width / 2,
                               face.bounding_box.top + face.bounding_box.height / 2)]
        if len(keep) == len(seen.faces):
            return seen
        return SeenFrame(seen.frame, [seen.faces[j] for j in keep], seen.boxes[keep], seen.landmarks[keep],
                         seen.scores[keep], seen.margin, seen.cut)


def _in_polygon(x: float, y: float, poly: np.ndarray) -> bool:
    """Even-odd rule (ray casting to the right)."""
    inside = False
    n = len(poly)
    for i in range(n):
        (xa, ya), (xb, yb) = poly[i], poly[(i + 1) % n]
        if (ya > y) != (yb > y) and x < xa + (y - ya) * (xb - xa) / (yb - ya):
            inside = not inside
    return inside


class _StreamClock:
    """Stream time (ms) that never goes back: a producer clock that jumps back (a camera that
    reset, a file that looped) continues just after the last time given."""

    def __init__(self) -> None:
        self.offset = 0
        self.last: int | None = None

    def time(self, ms: int) -> int:
        ms = int(ms) + self.offset
        if self.last is not None and ms <= self.last:
            self.offset += self.last + 1 - ms
            ms = self.last + 1
        self.last = ms
        return ms


class _Still:
    """A captured frame with the members of :class:`faceprint.video.decode.Frame` that
    :mod:`faceprint.video.faces` reads."""

    def __init__(self, image: np.ndarray, small: np.ndarray, number: int, timestamp_ms: int) -> None:
        self.image = image
        self.small = small
        self.number = number
        self.timestamp_ms = timestamp_ms
        self.height, self.width = image.shape[:2]

    def bgr(self, width: int | None = None) -> np.ndarray:
        if width is None or width >= self.width:
            return self.image
        height = max(2, round(self.height * width / self.width))
        return cv2.resize(self.image, (width, height), interpolation=cv2.INTER_AREA)

    def grey(self, width: int, height: int) -> np.ndarray:
        thumb = cv2.resize(self.small, (width, height), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY)
