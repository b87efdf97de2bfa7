"""StartSegmentDetection: SHOT segments and TECHNICAL_CUE ``BlackFrames``, in Rekognition's shapes.

Every frame is decoded and shrunk to a thumbnail :data:`THUMB_WIDTH` px wide. FFmpeg's swscale
expands a LIMITED ("TV", 16-235) video to full range as it converts, so black is 0 and white 255
in the thumbnail whatever the video's ``ColorRange``: Rekognition's ``max_black_pixel_value =
minimum_luminance + MaxPixelThreshold * luminance_range`` is ``MaxPixelThreshold * 255`` there.

Shots (:class:`ShotFinder`) cover the whole video, one after the other, ``Index`` 0, 1, 2...
A new shot starts at a hard cut, at the centre of a dissolve, and where the picture turns black
or comes out of black (so a fade out and in through black, and a black gap, is a shot of its
own). A flash (a frame or a few that differ, then the picture comes back) is not a cut, nor is
a picture that only gets brighter or darker (a fade, a flicker). A shot change whose confidence
is below ``ShotFilter.MinSegmentConfidence`` is not made, so the shots returned still cover the
video. A shot's confidence is the lower of the confidences of the two changes that bound it (the
start and end of the video count 100).

Segments are emitted as they are found: a black run when it ends, a shot once the change that
ends it is final (at most a few seconds later). What is kept meanwhile does not grow with the
video; the cost is a thumbnail and a few comparisons a frame (about 0.03 CPU-s per second of
720p25 video on top of decoding's 0.03).

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
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from faceprint.errors import InvalidParameterException
from faceprint.video.types import SegmentDetection, ShotSegment, TechnicalCueSegment

if TYPE_CHECKING:
    from faceprint.video.context import JobContext
    from faceprint.video.decode import Frame, VideoInfo

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

    def segment(self, kind: str, first: tuple[int, int], last: tuple[int, int], **detail: Any) -> SegmentDetection:
        """The segment from frame ``first`` to frame ``last`` (inclusive), each ``(number, ms)``."""
        (start_frame, start), (end_frame, end) = first, last
        end = max(end, start)
        return SegmentDetection(
            type=kind, start_timestamp_millis=start, end_timestamp_millis=end, duration_millis=end - start,
            start_timecode_smpte=self.smpte(start_frame), end_timecode_smpte=self.smpte(end_frame),
            duration_smpte=self.smpte(end_frame - start_frame), start_frame_number=start_frame,
            end_frame_number=end_frame, duration_frames=end_frame - start_frame, **detail)


# -- per-frame measures -----------------------------------------------------------------------------

class Look:
    """What the finders need of one frame: its number and time, a BT.709 luma thumbnail and an
    HSV colour histogram (the BGR thumbnail is kept for :meth:`gain_change`)."""

    __slots__ = ("number", "ms", "bgr", "luma", "hist", "mean")

    def __init__(self, number: int, ms: int, bgr: np.ndarray) -> None:
        import cv2

        self.number = number
        self.ms = ms
        self.bgr = bgr
        self.luma = bgr.astype(np.float32) @ LUMA_709
        hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, [16, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
        self.hist = hist / max(float(hist.sum()), 1.0)
        self.mean = float(self.luma.mean())

    @property
    def mark(self) -> tuple[int, int]:
        return self.number, self.ms

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


    def gain_change(self, other: Look) -> bool:
        """Whether the two frames are the same picture but for its brightness (each colour
        channel scaled): a step of a fade, not a cut. An encoder's colour drift in a fade can move
        many pixels across a histogram bin at once, which :meth:`change` takes for a cut."""
        mine = self.bgr.astype(np.float32) / np.maximum(self.bgr.mean(axis=(0, 1)), 1.0)
        theirs = other.bgr.astype(np.float32) / np.maximum(other.bgr.mean(axis=(0, 1)), 1.0)
        return float(np.abs(mine - theirs).mean()) < FADE_STEP


# -- shots ------------------------------------------------------------------------------------------

CUT_MIN = 0.3
"""The least frame-to-frame change that can be a cut (confidence 50)."""
CUT_SURE = 0.6
CUT_RATIO = 2.5
"""A cut's change is at least this many times the mean change of the frames around it."""
CUT_RATIO_SURE = 8.0
FADE_STEP = 0.06
"""Most mean difference of two frames, each channel divided by its mean, for the second to be the
first made brighter or darker (a fade's steps measure under 0.03; cuts, 0.15 and more)."""
FLASH_RETURN = 0.4
"""A change is a flash, not a cut, when the picture comes back within :data:`FLASH_SECONDS` to
within this fraction of the change (or went back to one seen just before)."""
WINDOW_SECONDS = 0.5
FLASH_SECONDS = 0.25
DISSOLVE_SECONDS = 0.5
"""Half the span over which a dissolve is looked for."""
LONGEST_DISSOLVE_SECONDS = 4.0
"""A gradual change whose middle frames blend their ends for longer is a slow change within a
shot (a pan over a gradient), not a dissolve: its frames are not kept."""
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
    """A shot change: the first frame of the new shot (its number and time), and the time of
    the frame before it (the last of the shot before)."""

    frame: int
    confidence: float
    ms: int = 0
    before_ms: int = 0


class ShotFinder:
    """Shot changes from a stream of :class:`Look`, each answered once it is final (no later frame
    can undo or outweigh it), in order. What it keeps is bounded: a second or so of frames, and
    the changes found but not yet final (a few seconds' worth at most)."""

    def __init__(self, rate: float) -> None:
        self.half = max(2, round(rate * WINDOW_SECONDS))
        self.ahead = max(2, round(rate * FLASH_SECONDS))
        self.span = max(2, round(rate * DISSOLVE_SECONDS))
        self.longest = max(2, round(rate * LONGEST_DISSOLVE_SECONDS))
        self.recent: deque[Look] = deque(maxlen=max(2 * self.span + 1, 2 * self.ahead + 3))
        self.changes: dict[int, float] = {}
        self.flashes: set[int] = set()
        self.cuts: list[Boundary] = []
        self.toggles: list[Boundary] = []
        self.dissolves: list[tuple[int, int, Boundary]] = []
        self.given: deque[int] = deque()
        """Frames of the cuts and dark toggles already answered: they still rule out dissolves."""
        self._run: list[tuple[int, int, int, float]] = []
        """The dissolve under way: its middle frames' (number, ms, ms of the frame before, score)."""
        self._long = False
        self._dark = False
        self._decided = 0

    def add(self, look: Look) -> list[Boundary]:
        """Take the next frame; answer the shot changes that became final."""
        self._dark_change(look)
        if self.recent:
            self.changes[look.number] = look.change(self.recent[-1])
            self._came_back(look)
        self.recent.append(look)
        self._dissolve(look)
        self._decide(look.number - max(self.half, self.ahead))
        return self._settle(self._final_upto(look.number))

    def finish(self) -> list[Boundary]:
        """At the end of the video: the shot changes not answered yet."""
        if self.recent:
            self._decide(self.recent[-1].number)
        self._end_dissolve()
        return self._settle(math.inf)

    def _final_upto(self, now: int) -> float:
        """The last frame up to which every shot change is final: cuts are decided, a dark
        toggle can no longer be undone by a flicker, no dissolve can still be found there, and
        each dissolve there knows every cut within its span (which rules it out)."""
        decided = min(self._decided, now - self.ahead - 1)
        upto = min(decided, (self._run[0][0] if self._run else now - self.span) - 1)
        for _, high, boundary in self.dissolves:
            if boundary.frame > upto:
                break
            if high > decided:
                return boundary.frame - 1
        return upto

    def _settle(self, upto: float) -> list[Boundary]:
        hard = [b for b in self.cuts + self.toggles if b.frame <= upto]
        self.cuts = [b for b in self.cuts if b.frame > upto]
        self.toggles = [b for b in self.toggles if b.frame > upto]
        found: dict[int, Boundary] = {}
        for b in hard:
            if b.frame not in found or found[b.frame].confidence < b.confidence:
                found[b.frame] = b
        self.given.extend(sorted(found))
        vetoes = [*self.given, *(b.frame for b in self.cuts + self.toggles)]
        for low, high, boundary in [d for d in self.dissolves if d[2].frame <= upto]:
            if not any(low <= frame <= high for frame in vetoes) and boundary.frame not in found:
                found[boundary.frame] = boundary
        self.dissolves = [d for d in self.dissolves if d[2].frame > upto]
        oldest = self.recent[-1].number - self.longest - 3 * self.span if self.recent else 0
        while self.given and self.given[0] < oldest:  # no dissolve still to come reaches back there
            self.given.popleft()
        return sorted(found.values(), key=lambda b: b.frame)

    def _dark_change(self, look: Look) -> None:
        dark = look.coverage(DEFAULT_MAX_PIXEL_THRESHOLD) >= DARK_COVERAGE
        if dark != self._dark and look.number > 0:
            toggles = self.toggles
            if toggles and look.number - toggles[-1].frame <= self.ahead:
                toggles.pop()  # a flicker: this toggle undoes the previous one
            else:
                toggles.append(Boundary(look.number, 100.0, look.ms, self.recent[-1].ms))
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
        before, look = self._look(t - 1), self._look(t)
        if look.gain_change(before):
            return None
        sure = min((change - CUT_MIN) / (CUT_SURE - CUT_MIN), (ratio - CUT_RATIO) / (CUT_RATIO_SURE - CUT_RATIO))
        return Boundary(t, _confidence(sure), look.ms, before.ms)

    def _look(self, number: int) -> Look:
        """A frame still in :attr:`recent` (which holds consecutive frames)."""
        return self.recent[number - self.recent[0].number]

    def _dissolve(self, look: Look) -> None:
        """Dissolves: the frame ``span`` back is the average of the frames ``span`` before it and
        now, and they differ (brightness aside). The shot changes at the middle of such a run."""
        if len(self.recent) < 2 * self.span + 1:
            return
        first, middle = self.recent[-2 * self.span - 1], self.recent[-self.span - 1]
        score = _blend_score(first, middle, look)
        if score is None:
            self._end_dissolve()
            self._long = False
        elif len(self._run) >= self.longest:  # too slow to be a dissolve: forget it until it ends
            self._run, self._long = [], True
        elif not self._long:
            self._run.append((middle.number, middle.ms, self.recent[-self.span - 2].ms, score))

    def _end_dissolve(self) -> None:
        if self._run:
            centre, ms, before_ms, _ = self._run[len(self._run) // 2]
            sure = max(score for *_, score in self._run)
            self.dissolves.append((self._run[0][0] - self.span, self._run[-1][0] + self.span,
                                   Boundary(centre, _confidence(sure), ms, before_ms)))
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


class Shots:
    """Shot segments from the shot changes kept at ``min_confidence``, one after the other from
    the first frame to the last, ``Index`` 0, 1, 2... A shot's confidence is the lower of those of
    the changes that bound it (the start and end of the video count 100)."""

    def __init__(self, timecode: Timecode, min_confidence: float) -> None:
        self.timecode = timecode
        self.min_confidence = min_confidence
        self.start: Boundary | None = None
        self.index = 0

    def cut(self, boundaries: list[Boundary]) -> list[SegmentDetection]:
        """The shots that the shot changes ``boundaries`` (final, in order) end."""
        out = []
        for b in boundaries:
            if self.start is not None and b.confidence >= self.min_confidence and b.frame > self.start.frame:
                out.append(self._shot(self.start, (b.frame - 1, b.before_ms), b.confidence))
                self.start = b
        return out

    def begin(self, look: Look) -> None:
        self.start = Boundary(look.number, 100.0, look.ms)

    def end(self, last: Look | None) -> list[SegmentDetection]:
        """The last shot, which ends with the video's last frame."""
        if self.start is None or last is None:
            return []
        return [self._shot(self.start, last.mark, 100.0)]

    def _shot(self, start: Boundary, last: tuple[int, int], end_confidence: float) -> SegmentDetection:
        shot = ShotSegment(index=self.index, confidence=min(start.confidence, end_confidence))
        self.index += 1
        return self.timecode.segment("SHOT", (start.frame, start.ms), last, shot_segment=shot)


# -- black frames -----------------------------------------------------------------------------------

class BlackFinder:
    """Runs of black frames, by Rekognition's BlackFrame filter, each answered when it ends."""

    def __init__(self, filters: SegmentFilters, timecode: Timecode) -> None:
        self.threshold = filters.max_pixel_threshold
        self.coverage = filters.min_coverage_percentage
        self.min_confidence = filters.cue_min_confidence
        self.timecode = timecode
        self._first: tuple[int, int] | None = None
        self._last = (0, 0)
        self._sure = 0.0

    def add(self, look: Look) -> list[SegmentDetection]:
        cover = look.coverage(self.threshold)
        if cover >= self.coverage and cover > 0:
            if self._first is None:
                self._first = look.mark
            self._last = look.mark
            self._sure += 1.0 if self.coverage >= 100 else (cover - self.coverage) / (100.0 - self.coverage)
            return []
        return self.finish()

    def finish(self) -> list[SegmentDetection]:
        """The run under way, if any (at a frame that is not black, and at the end of the video)."""
        if self._first is None:
            return []
        first, self._first = self._first, None
        sure, self._sure = self._sure, 0.0
        confidence = _confidence(sure / (self._last[0] - first[0] + 1))
        if confidence < self.min_confidence:
            return []
        return [self.timecode.segment("TECHNICAL_CUE", first, self._last, technical_cue_segment=TechnicalCueSegment(
            type="BlackFrames", confidence=confidence))]


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


class Segmenter:
    """The segments of one video, frame by frame: :meth:`add` answers those that each frame
    completes, :meth:`finish` the rest. Its memory does not grow with the video."""

    def __init__(self, info: VideoInfo, filters: SegmentFilters) -> None:
        timecode = Timecode.for_rate(info.frame_rate)
        self.size = thumb_size(info.width, info.height)
        self.shots = ShotFinder(info.frame_rate) if "SHOT" in filters.types else None
        self.cut = Shots(timecode, filters.shot_min_confidence)
        self.black = BlackFinder(filters, timecode) if "TECHNICAL_CUE" in filters.types else None
        self.last: Look | None = None

    def add(self, frame: Frame) -> list[SegmentDetection]:
        look = Look(frame.number, frame.timestamp_ms, thumb(frame, self.size))
        found = self.black.add(look) if self.black is not None else []
        if self.shots is not None:
            if self.last is None:
                self.cut.begin(look)
            found += self.cut.cut(self.shots.add(look))
        self.last = look
        return found

    def finish(self) -> list[SegmentDetection]:
        found = self.black.finish() if self.black is not None else []
        if self.shots is not None:
            found += self.cut.cut(self.shots.finish()) + self.cut.end(self.last)
        return found


PROGRESS_EVERY = 10
"""Frames between progress reports and cancellation checks."""


def run(ctx: JobContext) -> None:
    """The StartSegmentDetection analyser (see :mod:`faceprint.video.context`). Segments are
    emitted as they are found; Rekognition lists them by type, in the order SegmentTypes named
    them, then by time: an item's index is its type's place in SegmentTypes, so the INDEX order
    is Rekognition's."""
    from faceprint.video import decode
    from faceprint.video.context import Item

    filters = parse_segment_filters(ctx.params.get("Filters"), ctx.params.get("SegmentTypes"))
    info = decode.probe(ctx.path, ctx.limits)
    ctx.metadata(info)

    def emit(found: list[SegmentDetection]) -> None:
        if found:
            ctx.emit([Item(s.start_timestamp_millis, filters.types.index(s.type), s.to_dict()) for s in found])

    segmenter, done = Segmenter(info, filters), 0
    for frame in decode.frames(ctx.path, info, ctx.limits):
        emit(segmenter.add(frame))
        done = frame.number + 1
        if frame.number % PROGRESS_EVERY == 0:
            ctx.progress(done, max(info.frames, done))
            if ctx.cancelled():
                return
    emit(segmenter.finish())
    ctx.progress(done, done)
