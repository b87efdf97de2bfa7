"""StartSegmentDetection: SHOT segments and TECHNICAL_CUE ``BlackFrames``, in Rekognition's shapes.

Every frame is decoded and shrunk to a thumbnail :data:`THUMB_WIDTH` px wide. FFmpeg's swscale
expands a LIMITED ("TV", 16-235) video to full range as it converts, so black is 0 and white 255
in the thumbnail whatever the video's ``ColorRange``: Rekognition's ``max_black_pixel_value =
minimum_luminance + MaxPixelThreshold * luminance_range`` is ``MaxPixelThreshold * 255`` there.

Shots (:class:`ShotFinder`) cover the whole video, one after the other, ``Index`` 0, 1, 2...
A new shot starts at a hard cut, at the centre of a dissolve, and where the picture turns black
or comes out of black (so a fade out and in through black, and a black gap, is a shot of its
own). A flash (a frame or a few that differ, then the picture comes back) is not a cut. A shot
change whose confidence is below ``ShotFilter.MinSegmentConfidence`` is not made, so the shots
returned still cover the video. A shot's confidence is the lower of the confidences of the two
changes that bound it (the start and end of the video count 100).

Black frames (:class:`BlackFinder`): runs of frames in which at least ``MinCoveragePercentage``
percent of the pixels are at most ``MaxPixelThreshold`` of the luminance range (BT.709 luma).

Times as Rekognition reports them: a segment runs from its first frame to its last frame,
inclusive; ``EndTimestampMillis`` and ``EndTimecodeSMPTE`` are those of its last frame;
``DurationMillis``, ``DurationSMPTE`` and ``DurationFrames`` are end minus start (a one-frame
segment lasts 0). Timecodes are ``HH:MM:SS:FF``, and drop-frame ``HH:MM:SS;FF`` at 29.97 and
59.94 frames a second.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from faceprint.errors import InvalidParameterException
from faceprint.video.types import SegmentDetection, ShotSegment, TechnicalCueSegment

if TYPE_CHECKING:
    from faceprint.video.context import JobContext
    from faceprint.video.decode import Frame

MODEL_VERSIONS = {"SHOT": "faceprint-shot-1.0", "TECHNICAL_CUE": "faceprint-black-frames-1.0"}
SEGMENT_TYPES = ("TECHNICAL_CUE", "SHOT")
DEFAULT_MIN_SEGMENT_CONFIDENCE = 50.0
"""Rekognition: without ``MinSegmentConfidence``, segments of confidence 50 or more are returned."""
DEFAULT_MAX_PIXEL_THRESHOLD = 0.2
DEFAULT_MIN_COVERAGE_PERCENTAGE = 99.0
THUMB_WIDTH = 128
DIM = 24.0
"""Mean luma (0-255) under which a frame's colours count less in the change between frames."""
LUMA_709 = np.array([0.0722, 0.7152, 0.2126], np.float32)
"""BT.709 luma weights, in BGR order."""


@dataclass(frozen=True)
class SegmentFilters:
    """A validated StartSegmentDetection request: the types asked for, in order, and the filters."""

    types: tuple[str, ...]
    shot_min_confidence: float = DEFAULT_MIN_SEGMENT_CONFIDENCE
    cue_min_confidence: float = DEFAULT_MIN_SEGMENT_CONFIDENCE
    max_pixel_threshold: float = DEFAULT_MAX_PIXEL_THRESHOLD
    min_coverage_percentage: float = DEFAULT_MIN_COVERAGE_PERCENTAGE


def parse_segment_filters(filters: Any, segment_types: Any) -> SegmentFilters:
    """Validate ``SegmentTypes`` and ``Filters`` (StartSegmentDetectionFilters) as Rekognition
    does: InvalidParameterException for anything else. Needs no video and no decoder."""
    types = _segment_types(segment_types)
    if filters is None:
        return SegmentFilters(types)
    if not isinstance(filters, dict):
        raise InvalidParameterException("Filters must be an object with TechnicalCueFilter and/or ShotFilter.")
    _only(filters, ("TechnicalCueFilter", "ShotFilter"), "Filters")
    shot = _member_object(filters, "ShotFilter")
    _only(shot, ("MinSegmentConfidence",), "ShotFilter")
    cue = _member_object(filters, "TechnicalCueFilter")
    _only(cue, ("MinSegmentConfidence", "BlackFrame"), "TechnicalCueFilter")
    black = _member_object(cue, "BlackFrame")
    _only(black, ("MaxPixelThreshold", "MinCoveragePercentage"), "BlackFrame")
    return SegmentFilters(
        types,
        shot_min_confidence=_number(shot, "MinSegmentConfidence", 50.0, 100.0, DEFAULT_MIN_SEGMENT_CONFIDENCE),
        cue_min_confidence=_number(cue, "MinSegmentConfidence", 50.0, 100.0, DEFAULT_MIN_SEGMENT_CONFIDENCE),
        max_pixel_threshold=_number(black, "MaxPixelThreshold", 0.0, 1.0, DEFAULT_MAX_PIXEL_THRESHOLD),
        min_coverage_percentage=_number(black, "MinCoveragePercentage", 0.0, 100.0,
                                        DEFAULT_MIN_COVERAGE_PERCENTAGE),
    )


def _segment_types(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidParameterException("SegmentTypes must be a list of one or more of TECHNICAL_CUE and SHOT.")
    types: list[str] = []
    for item in value:
        if not isinstance(item, str) or item not in SEGMENT_TYPES:
            raise InvalidParameterException(f"SegmentTypes: {str(item)[:40]!r} is not one of TECHNICAL_CUE, SHOT.")
        if item not in types:
            types.append(item)
    return tuple(types)


def _member_object(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParameterException(f"{key} must be an object.")
    return value


def _only(obj: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(str(k)[:40] for k in set(obj) - set(allowed))
    if unknown:
        raise InvalidParameterException(f"{where} has unknown member(s) {unknown}; allowed: {', '.join(allowed)}.")


def _number(obj: dict[str, Any], key: str, low: float, high: float, default: float) -> float:
    value = obj.get(key, default)
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = None
    if number is None or not math.isfinite(number) or not low <= number <= high:
        raise InvalidParameterException(f"{key} must be a number from {low:g} to {high:g}.")
    return number


# -- times ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Timecode:
    """SMPTE timecodes of frame numbers at one frame rate."""

    nominal: int
    """Frames counted per timecode second (30 at 29.97)."""
    drop: int = 0
    """Frame numbers skipped at each minute but every tenth (2 at 29.97, 4 at 59.94; else 0)."""

    @classmethod
    def for_rate(cls, rate: float) -> Timecode:
        nominal = max(1, round(rate))
        ntsc = nominal in (30, 60) and abs(rate - nominal * 1000 / 1001) < 0.005
        return cls(nominal, nominal // 15 if ntsc else 0)

    def smpte(self, frame: int) -> str:
        """``HH:MM:SS:FF`` (``HH:MM:SS;FF`` drop-frame) of frame number ``frame`` (from 0)."""
        if self.drop:
            per_minute = self.nominal * 60 - self.drop
            tens, rest = divmod(frame, per_minute * 10 + self.drop)
            frame += 9 * self.drop * tens + self.drop * max(0, (rest - self.drop) // per_minute)
        seconds, ff = divmod(frame, self.nominal)
        minutes, ss = divmod(seconds, 60)
        hh, mm = divmod(minutes, 60)
        return f"{hh:02d}:{mm:02d}:{ss:02d}{';' if self.drop else ':'}{ff:02d}"


class FrameTimes:
    """Each decoded frame's timestamp (ms), by frame number (4 bytes a frame)."""

    def __init__(self, rate: float) -> None:
        self.timecode = Timecode.for_rate(rate)
        self._ms = array("l")

    def add(self, frame: Frame) -> None:
        self._ms.append(frame.timestamp_ms)

    @property
    def count(self) -> int:
        return len(self._ms)

    def segment(self, kind: str, first: int, last: int, **detail: Any) -> SegmentDetection:
        start, end = self._ms[first], max(self._ms[last], self._ms[first])
        tc = self.timecode
        return SegmentDetection(
            type=kind, start_timestamp_millis=start, end_timestamp_millis=end, duration_millis=end - start,
            start_timecode_smpte=tc.smpte(first), end_timecode_smpte=tc.smpte(last),
            duration_smpte=tc.smpte(last - first), start_frame_number=first, end_frame_number=last,
            duration_frames=last - first, **detail)


# -- per-frame measures -----------------------------------------------------------------------------

class Look:
    """What the finders need of one frame: a BT.709 luma thumbnail and an HSV colour histogram."""

    __slots__ = ("number", "luma", "hist", "mean")

    def __init__(self, number: int, bgr: np.ndarray) -> None:
        import cv2

        self.number = number
        self.luma = bgr.astype(np.float32) @ LUMA_709
        hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, [16, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
        self.hist = hist / max(float(hist.sum()), 1.0)
        self.mean = float(self.luma.mean())

    def coverage(self, threshold: float) -> float:
        """Percent of pixels at most ``threshold`` (0-1) of the luminance range."""
        return float(np.count_nonzero(self.luma <= threshold * 255.0 + 1e-3)) * 100.0 / self.luma.size

    def change(self, other: Look) -> float:
        """How different two frames are: colour histogram distance (0-1) plus twice the mean
        luma difference (0-1). Within a shot it stays under ~0.25; a cut scores 0.5 and more.
        The colours of dim frames count less (a near-black pixel's hue is noise)."""
        hist = 0.5 * float(np.abs(self.hist - other.hist).sum())
        light = min(1.0, max(self.mean, other.mean) / DIM)
        return hist * light + 2.0 * float(np.abs(self.luma - other.luma).mean()) / 255.0


# -- shots ------------------------------------------------------------------------------------------

CUT_MIN = 0.3
"""The least frame-to-frame change that can be a cut (confidence 50)."""
CUT_SURE = 0.6
CUT_RATIO = 2.5
"""A cut's change is at least this many times the mean change of the frames around it."""
CUT_RATIO_SURE = 8.0
FLASH_RETURN = 0.4
"""A change is a flash, not a cut, when the picture comes back within :data:`FLASH_SECONDS` to
within this fraction of the change (or went back to one seen just before)."""
WINDOW_SECONDS = 0.5
FLASH_SECONDS = 0.25
DISSOLVE_SECONDS = 0.5
"""Half the span over which a dissolve is looked for."""
DISSOLVE_MIN = 0.12
"""Least mean luma difference (0-1) between the ends of a dissolve."""
DISSOLVE_APART = 0.3
"""Least mean difference between the ends of a dissolve, each divided by its mean brightness (so
that a picture merely getting darker or brighter is no dissolve)."""
DISSOLVE_BLEND = 0.3
"""A dissolve's middle frame is the average of its ends to within this fraction of their difference."""
DARK_COVERAGE = DEFAULT_MIN_COVERAGE_PERCENTAGE
"""A frame is dark when 99% of it is black at Rekognition's default threshold (the default
BlackFrames rule): a shot starts where the picture turns dark and where it comes out of dark,
unless it turns back within :data:`FLASH_SECONDS` (a flicker)."""


@dataclass(frozen=True)
class Boundary:
    frame: int
    """The first frame of the new shot."""
    confidence: float


class ShotFinder:
    """Shot changes from a stream of :class:`Look` (kept: a second or so of them)."""

    def __init__(self, rate: float) -> None:
        self.half = max(2, round(rate * WINDOW_SECONDS))
        self.ahead = max(2, round(rate * FLASH_SECONDS))
        self.span = max(2, round(rate * DISSOLVE_SECONDS))
        self.recent: deque[Look] = deque(maxlen=max(2 * self.span + 1, 2 * self.ahead + 3))
        self.changes: dict[int, float] = {}
        self.flashes: set[int] = set()
        self.cuts: list[Boundary] = []
        self.dissolves: list[tuple[int, int, Boundary]] = []
        self._run: list[tuple[int, float]] = []
        self.dark_toggles: list[int] = []
        self._dark = False
        self._decided = 0

    def add(self, look: Look) -> None:
        self._dark_change(look)
        if self.recent:
            self.changes[look.number] = look.change(self.recent[-1])
            self._came_back(look)
        self.recent.append(look)
        self._dissolve(look)
        self._decide(look.number - max(self.half, self.ahead))

    def finish(self) -> list[Boundary]:
        """All shot changes (frames where a shot starts), in order."""
        last = self.recent[-1].number if self.recent else 0
        self._decide(last)
        self._end_dissolve()
        cuts = self.cuts + [Boundary(frame, 100.0) for frame in self.dark_toggles]
        cut_frames = [b.frame for b in cuts]
        found: dict[int, Boundary] = {}
        for b in cuts:
            if b.frame not in found or found[b.frame].confidence < b.confidence:
                found[b.frame] = b
        for low, high, boundary in self.dissolves:
            if not any(low <= frame <= high for frame in cut_frames) and boundary.frame not in found:
                found[boundary.frame] = boundary
        return sorted(found.values(), key=lambda b: b.frame)

    def _dark_change(self, look: Look) -> None:
        dark = look.coverage(DEFAULT_MAX_PIXEL_THRESHOLD) >= DARK_COVERAGE
        if dark != self._dark and look.number > 0:
            toggles = self.dark_toggles
            if toggles and look.number - toggles[-1] <= self.ahead:
                toggles.pop()  # a flicker: this toggle undoes the previous one
            else:
                toggles.append(look.number)
        self._dark = dark

    def _came_back(self, look: Look) -> None:
        """Mark flashes: the change at frame t is one if a frame soon after t looks like t-1,
        or frame t looks like one shortly before t-1."""
        frames = list(self.recent)
        n = look.number
        for k in range(1, self.ahead + 1):  # is `look` (frame n = t + k) close to frame t - 1?
            t = n - k
            if t in self.changes and len(frames) >= k + 1:
                before = frames[-k - 1]
                if look.change(before) < FLASH_RETURN * self.changes[t]:
                    self.flashes.add(t)
        change = self.changes[n]
        for back in frames[-self.ahead - 1:-1]:  # does frame n look like one before n - 1?
            if look.change(back) < FLASH_RETURN * change:
                self.flashes.add(n)
                break

    def _decide(self, upto: int) -> None:
        while self._decided < upto:
            self._decided += 1
            t = self._decided
            change = self.changes.get(t)
            if change is None:
                continue
            boundary = self._cut(t, change)
            if boundary is not None:
                self.cuts.append(boundary)
            self.changes.pop(t - self.half, None)
            self.flashes.discard(t - self.half)

    def _cut(self, t: int, change: float) -> Boundary | None:
        if change < CUT_MIN or t in self.flashes:
            return None
        around = [self.changes[i] for i in range(t - self.half, t + self.half + 1) if i != t and i in self.changes]
        if any(c > change for c in around):
            return None
        ratio = change / (sum(around) / len(around) + 0.01) if around else CUT_RATIO_SURE
        if ratio < CUT_RATIO:
            return None
        sure = min((change - CUT_MIN) / (CUT_SURE - CUT_MIN), (ratio - CUT_RATIO) / (CUT_RATIO_SURE - CUT_RATIO))
        return Boundary(t, _confidence(sure))

    def _dissolve(self, look: Look) -> None:
        """Dissolves: the frame ``span`` back is the average of the frames ``span`` before it and
        now, and they differ (brightness aside). The shot changes at the middle of such a run."""
        if len(self.recent) < 2 * self.span + 1:
            return
        first, middle = self.recent[-2 * self.span - 1], self.recent[-self.span - 1]
        score = _blend_score(first, middle, look)
        if score is not None:
            self._run.append((middle.number, score))
        else:
            self._end_dissolve()

    def _end_dissolve(self) -> None:
        if self._run:
            frames = [f for f, _ in self._run]
            centre = frames[len(frames) // 2]
            sure = max(s for _, s in self._run)
            self.dissolves.append((frames[0] - self.span, frames[-1] + self.span,
                                   Boundary(centre, _confidence(sure))))
            self._run = []


def _blend_score(a: Look, mid: Look, b: Look) -> float | None:
    if min(a.mean, b.mean) < 0.08 * 255:
        return None  # a fade through black: the dark boundaries take it
    apart = float(np.abs(a.luma / a.mean - b.luma / b.mean).mean())
    if apart < DISSOLVE_APART:
        return None
    spread = float(np.abs(a.luma - b.luma).mean())
    blend = float(np.abs(mid.luma - (a.luma + b.luma) / 2).mean()) / max(spread, 1e-6)
    if blend > DISSOLVE_BLEND or spread < DISSOLVE_MIN * 255:
        return None
    return min(1.0, (DISSOLVE_BLEND - blend) / DISSOLVE_BLEND) * 0.8


def _confidence(sure: float) -> float:
    return round(50.0 + 50.0 * min(max(sure, 0.0), 1.0), 3)


def shot_segments(times: FrameTimes, boundaries: list[Boundary], min_confidence: float) -> list[SegmentDetection]:
    """Shots between the boundaries kept at ``min_confidence``, covering all ``times.count`` frames."""
    if times.count == 0:
        return []
    kept = [b for b in boundaries if b.confidence >= min_confidence and 0 < b.frame < times.count]
    edges = [Boundary(0, 100.0), *kept, Boundary(times.count, 100.0)]
    return [times.segment("SHOT", start.frame, end.frame - 1,
                          shot_segment=ShotSegment(index=i, confidence=min(start.confidence, end.confidence)))
            for i, (start, end) in enumerate(zip(edges, edges[1:], strict=False))]


# -- black frames -----------------------------------------------------------------------------------

class BlackFinder:
    """Runs of black frames, by Rekognition's BlackFrame filter."""

    def __init__(self, filters: SegmentFilters) -> None:
        self.threshold = filters.max_pixel_threshold
        self.coverage = filters.min_coverage_percentage
        self.min_confidence = filters.cue_min_confidence
        self._first: int | None = None
        self._last = 0
        self._sure = 0.0
        self.runs: list[tuple[int, int, float]] = []

    def add(self, look: Look) -> None:
        cover = look.coverage(self.threshold)
        if cover >= self.coverage and cover > 0:
            if self._first is None:
                self._first = look.number
            self._last = look.number
            self._sure += 1.0 if self.coverage >= 100 else (cover - self.coverage) / (100.0 - self.coverage)
        else:
            self.finish()

    def finish(self) -> None:
        if self._first is not None:
            confidence = _confidence(self._sure / (self._last - self._first + 1))
            if confidence >= self.min_confidence:
                self.runs.append((self._first, self._last, confidence))
            self._first, self._sure = None, 0.0

    def segments(self, times: FrameTimes) -> list[SegmentDetection]:
        return [times.segment("TECHNICAL_CUE", first, last,
                              technical_cue_segment=TechnicalCueSegment(type="BlackFrames", confidence=confidence))
                for first, last, confidence in self.runs]


# -- the analyser -----------------------------------------------------------------------------------

def thumb_size(width: int, height: int) -> tuple[int, int]:
    """The thumbnail's (width, height) for a video of that size: :data:`THUMB_WIDTH` wide at most."""
    thumb_width = max(2, min(THUMB_WIDTH, width))
    return thumb_width, max(2, round(height * thumb_width / max(width, 1)))


def thumb(frame: Frame, size: tuple[int, int]) -> np.ndarray:
    """The frame as a BGR thumbnail of ``size``, also when the stream changes its frame size
    midway (then the picture is stretched to the size the video began with)."""
    import cv2

    bgr = frame.bgr(size[0])
    if bgr.shape[1::-1] != size:
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    return bgr


PROGRESS_EVERY = 10
"""Frames between progress reports and cancellation checks."""


def run(ctx: JobContext) -> None:
    """The StartSegmentDetection analyser (see :mod:`faceprint.video.context`)."""
    from faceprint.video import decode
    from faceprint.video.context import Item

    filters = parse_segment_filters(ctx.params.get("Filters"), ctx.params.get("SegmentTypes"))
    info = decode.probe(ctx.path, ctx.limits)
    ctx.metadata(info)
    times = FrameTimes(info.frame_rate)
    shots = ShotFinder(info.frame_rate) if "SHOT" in filters.types else None
    black = BlackFinder(filters) if "TECHNICAL_CUE" in filters.types else None
    size = thumb_size(info.width, info.height)
    for frame in decode.frames(ctx.path, info, ctx.limits):
        times.add(frame)
        look = Look(frame.number, thumb(frame, size))
        if shots is not None:
            shots.add(look)
        if black is not None:
            black.add(look)
        if frame.number % PROGRESS_EVERY == 0:
            ctx.progress(frame.number + 1, max(info.frames, frame.number + 1))
            if ctx.cancelled():
                return
    ctx.progress(times.count, times.count)
    segments: list[SegmentDetection] = []
    if black is not None:
        black.finish()
        segments += black.segments(times)
    if shots is not None:
        segments += shot_segments(times, shots.finish(), filters.shot_min_confidence)
    # Rekognition lists segments by type, in the order SegmentTypes named them, then by time: the
    # item's index is the type's place in SegmentTypes, so the INDEX order is Rekognition's.
    ctx.emit([Item(s.start_timestamp_millis, filters.types.index(s.type), s.to_dict()) for s in segments])
