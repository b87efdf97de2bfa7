"""StartTextDetection: DetectText over a stored video, reading only frames whose picture changed.

DetectText costs about a second a frame, so a video is not read frame by frame. Every frame is
decoded and shrunk to a small grey thumbnail (cheap); :class:`ChangeWatch` has a frame read only
when its picture differs from the last frame read, at most once every :data:`MIN_INTERVAL_MS`,
and preferably once the picture has settled (text that fades or slides in is read when it
stops). A still picture is read once; a moving one twice a second, or once a second while those
reads find nothing new. With ``RegionsOfInterest``, only changes within the regions' bounding
box count (no word outside every region is reported): a still caption under moving pictures is
read once. So a video costs at most two reads per second of its timeline (plus one for its last
frame), whatever its frame rate, however its text changes.

Lines are reported when they appear, not at every read (:class:`LineMemory`): a line read again
(the same text, or nearly where the picture did not change) is the line already reported, also when a read in between
missed it while its part of the picture stayed the same. A line that went away and comes back is
reported again. A line comes with its words, as in DetectText: the line has an ``Id``, each
word its own ``Id`` and the line's as ``ParentId``; Ids are unique within the job. The timestamp
is when the change that brought the line began, when the picture then settled within
:data:`BACKDATE_MS`; else that of the frame read.

``Filters`` are DetectText's (``WordFilter``, ``RegionsOfInterest``: StartTextDetectionFilters has
the same members), validated by :func:`faceprint.text.parse_filters`, which needs no video.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from faceprint.text import TextFilters, assemble, parse_filters
from faceprint.types import BoundingBox, TextDetection
from faceprint.video.types import TextDetectionResult

if TYPE_CHECKING:
    from faceprint.video.context import JobContext
    from faceprint.video.decode import Frame

THUMB_WIDTH = 320
CHANGE_LEVEL = 24
"""Grey levels (of 255) a thumbnail pixel must move to count as changed."""
CHANGE_SHARE = 0.0005
"""Share of the thumbnail's pixels that must change for the picture to have changed (0.05%: a
short word of 20 px at 720p is well over it, compression noise well under)."""
MIN_INTERVAL_MS = 500
MAX_INTERVAL_MS = 1000
"""A picture that keeps changing is read every 500 ms; while those reads find nothing new, every
1000 ms (the reads are what costs)."""
SETTLE_MS = 200
"""How long a changing picture may be waited for to settle before it is read anyway."""
BACKDATE_MS = 1000
MAX_READ_WIDTH = 1920
"""Frames are read at most this wide (the text reader shrinks larger pictures anyway)."""
SAME_TEXT = 0.8
"""Two lines are the same line when their texts are this similar (difflib's ratio)."""
REGION_CHANGE = 0.01
"""Share of a line's part of the thumbnail that must change for its picture to have changed (one
character of a line of 14 changes some 3% of it; a still picture's compression noise, none)."""
MAX_SEEN = 500
"""Lines remembered at most (those just read first): memory and matching stay bounded."""
PROGRESS_EVERY = 10


def changed(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two grey thumbnails show different pictures."""
    moved = np.abs(a.astype(np.int16) - b.astype(np.int16)) > CHANGE_LEVEL
    return int(np.count_nonzero(moved)) > CHANGE_SHARE * a.size


class ChangeWatch:
    """Which frames to read: :meth:`offer` each frame's thumbnail in order; it answers the
    timestamp to report for a read of that frame, or None to skip it."""

    def __init__(self) -> None:
        self.read: np.ndarray | None = None
        self.read_ms: int | None = None
        self.since: int | None = None
        """When the picture began to differ from the last frame read (None: it does not)."""
        self.interval = MIN_INTERVAL_MS
        self._previous: np.ndarray | None = None

    def offer(self, ms: int, thumb: np.ndarray) -> int | None:
        previous, self._previous = self._previous, thumb
        if self.read is not None and not changed(thumb, self.read):
            self.since = None
            return None
        if self.since is None:
            self.since = ms
        steady = previous is not None and not changed(thumb, previous)
        due = self.read_ms is None or ms - self.read_ms >= self.interval
        if not due or not (steady or ms - self.since >= SETTLE_MS):
            return None
        at = self.since if steady and ms - self.since <= BACKDATE_MS else ms
        self.read, self.read_ms, self.since = thumb, ms, None
        return at

    def found(self, new_lines: int) -> None:
        """What the read just offered found: while reads find nothing new, the picture is read
        less often, down to every :data:`MAX_INTERVAL_MS` (a still picture's changes keep the
        time they began, so only a moving picture's text is reported later)."""
        self.interval = MIN_INTERVAL_MS if new_lines else min(2 * self.interval, MAX_INTERVAL_MS)

    def pending(self, ms: int) -> int | None:
        """At the end of the video: the timestamp for reading the last frame (at ``ms``) when
        its picture changed since the last read and was not read yet, else None."""
        if self.since is None:
            return None
        return self.since if ms - self.since <= BACKDATE_MS else ms


@dataclass
class _Seen:
    text: str
    box: BoundingBox
    patch: np.ndarray
    """The line's part of the thumbnail of the last read that found it."""


def _similarity(a: str, b: str) -> float:
    """difflib's ratio of two texts (its cheap upper bounds first: most pairs are far apart)."""
    if a == b:
        return 1.0
    matcher = difflib.SequenceMatcher(None, a, b)
    if matcher.real_quick_ratio() < SAME_TEXT or matcher.quick_ratio() < SAME_TEXT:
        return 0.0
    return matcher.ratio()


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def _overlap(a: BoundingBox, b: BoundingBox) -> float:
    width = min(a.left + a.width, b.left + b.width) - max(a.left, b.left)
    height = min(a.top + a.height, b.top + b.height) - max(a.top, b.top)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / (a.width * a.height + b.width * b.height - inter)


class LineMemory:
    """The lines on screen: :meth:`update` with a read's DetectText detections (and the frame's
    thumbnail) answers the detections of the lines that were not there before, with Ids unique
    within the job. A line read again is the same line if its text is the same, or differs by
    OCR noise while its part of the picture did not change. A line the read missed is still there
    if its part of the picture did not change (the reader missed it); it is gone if it did (it
    will be new when it comes back)."""

    def __init__(self) -> None:
        self.seen: list[_Seen] = []
        self.next_id = 0

    def update(self, detections: list[TextDetection], thumb: np.ndarray) -> list[TextDetection]:
        lines = [d for d in detections if d.type == "LINE"]
        texts = [_normal(line.detected_text) for line in lines]
        matched = self._match(lines, texts, thumb)
        now = [_Seen(t, line.geometry.bounding_box, _patch(thumb, line.geometry.bounding_box))
               for line, t in zip(lines, texts, strict=True)]
        kept = set(matched.values())
        now += [s for i, s in enumerate(self.seen) if i not in kept and not _region_changed(s, thumb)]
        self.seen = now[:MAX_SEEN]
        return self._numbered([line for k, line in enumerate(lines) if k not in matched], detections)

    def _match(self, lines: list[TextDetection], texts: list[str], thumb: np.ndarray) -> dict[int, int]:
        """Each line read that is a line seen: {line's place: seen line's place}, the most alike
        pairs first (similar text, then overlapping boxes). Texts must be the same, or nearly
        (OCR noise) where the picture did not change: a changed score or counter is a new line."""
        still = [not _region_changed(seen, thumb) for seen in self.seen]
        pairs = []
        for k, (line, text) in enumerate(zip(lines, texts, strict=True)):
            for i, seen in enumerate(self.seen):
                similar = _similarity(seen.text, text)
                if similar == 1.0 or (similar >= SAME_TEXT and still[i]):
                    pairs.append((similar + _overlap(seen.box, line.geometry.bounding_box), k, i))
        matched: dict[int, int] = {}
        used: set[int] = set()
        for _, k, i in sorted(pairs, reverse=True):
            if k not in matched and i not in used:
                matched[k] = i
                used.add(i)
        return matched

    def _numbered(self, fresh: list[TextDetection], detections: list[TextDetection]) -> list[TextDetection]:
        """``fresh`` lines then their words, renumbered from :attr:`next_id` (DetectText's order)."""
        ids = {line.id: self.next_id + i for i, line in enumerate(fresh)}
        out = [dataclasses.replace(line, id=ids[line.id]) for line in fresh]
        self.next_id += len(fresh)
        for word in detections:
            if word.type == "WORD" and word.parent_id in ids:
                out.append(dataclasses.replace(word, id=self.next_id, parent_id=ids[word.parent_id]))
                self.next_id += 1
        return out


def _patch(thumb: np.ndarray, box: BoundingBox) -> np.ndarray:
    height, width = thumb.shape[:2]
    x0 = min(max(int(box.left * width), 0), width - 1)
    y0 = min(max(int(box.top * height), 0), height - 1)
    x1 = max(x0 + 1, min(int(np.ceil((box.left + box.width) * width)), width))
    y1 = max(y0 + 1, min(int(np.ceil((box.top + box.height) * height)), height))
    return thumb[y0:y1, x0:x1].copy()


def _region_changed(seen: _Seen, thumb: np.ndarray) -> bool:
    now = _patch(thumb, seen.box)
    moved = np.abs(now.astype(np.int16) - seen.patch.astype(np.int16)) > CHANGE_LEVEL
    return int(np.count_nonzero(moved)) > max(REGION_CHANGE * now.size, 1)


def watched(filters: TextFilters, width: int, height: int) -> tuple[slice, slice]:
    """The rows and columns of a ``width`` x ``height`` thumbnail whose changes can bring text to
    report: all of it, or the bounding box of the regions of interest (a word kept is more than
    half in a region, so a change to it changes pixels there)."""
    if not filters.regions:
        return slice(None), slice(None)
    bounds = np.array([region.bounds for region in filters.regions])
    x0, y0 = np.clip(bounds[:, :2].min(axis=0), 0.0, 1.0)
    x1, y1 = np.clip(bounds[:, 2:].max(axis=0), 0.0, 1.0)
    left, top = min(int(x0 * width), width - 1), min(int(y0 * height), height - 1)
    return (slice(top, max(top + 1, int(np.ceil(y1 * height)))),
            slice(left, max(left + 1, int(np.ceil(x1 * width)))))


def run(ctx: JobContext) -> None:
    """The StartTextDetection analyser (see :mod:`faceprint.video.context`)."""
    from faceprint.video import decode
    from faceprint.video.context import Item

    filters = parse_filters(ctx.params.get("Filters"))
    info = decode.probe(ctx.path, ctx.limits)
    ctx.metadata(info)
    watch, memory = ChangeWatch(), LineMemory()

    def read(frame: Frame, at: int, thumb: np.ndarray) -> None:
        bgr = frame.bgr(min(frame.width, MAX_READ_WIDTH))
        lines = ctx.fp.text_reader.read(bgr)
        found = assemble(lines, bgr.shape[1], bgr.shape[0], filters, ctx.fp.max_text_words)
        new = memory.update(found, thumb)
        watch.found(sum(1 for d in new if d.type == "LINE"))
        ctx.emit([Item(at, 0, TextDetectionResult(timestamp=at, text_detection=d).to_dict()) for d in new])

    last: tuple[Frame, np.ndarray] | None = None
    width = max(2, min(THUMB_WIDTH, info.width))
    height = max(2, round(info.height * width / max(info.width, 1)))
    area = watched(filters, width, height)
    for frame in decode.frames(ctx.path, info, ctx.limits):
        last = frame, frame.grey(width, height)  # the size the video began with, should a stream change its size
        at = watch.offer(frame.timestamp_ms, last[1][area])
        if at is not None:
            read(frame, at, last[1])
        if at is not None or frame.number % PROGRESS_EVERY == 0:
            ctx.progress(frame.number + 1, max(info.frames, frame.number + 1))
            if ctx.cancelled():
                return
    if last is not None:
        frame, thumb = last
        at = watch.pending(frame.timestamp_ms)
        if at is not None:
            read(frame, at, thumb)
        ctx.progress(frame.number + 1, frame.number + 1)
