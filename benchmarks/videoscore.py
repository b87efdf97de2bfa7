"""Scoring a face search of a generated clip (benchmarks/videogen.py) against its ground truth.

Definitions (the issue's, made precise):

- A true (person, second) pair: a whole second of video (``[s, s + 1)``) in which the person's
  face box is at least ``MIN_WIDTH`` (40) px wide in the original frame and at least
  ``MIN_VISIBLE`` (75%) of it can be seen (inside the frame, not under a nearer face) in some
  frame. Recall counts the true pairs of enrolled people that were reported.
- A reported pair: (the best FaceMatch's ExternalImageId, the second of the item's Timestamp)
  for every item whose best match is at least the threshold. Precision counts the reported pairs
  in which that person is in the picture at all during that second (any size, even partly):
  naming someone who is there is never a false match, naming someone who is not always is.
- Tracks: every reported item is put on the true face its box overlaps best (IoU >= 0.3, one to
  one per timestamp); a Person.Index belongs to the true person that holds most of its items.
  Tracks per person: indices per true person that got any (the goal is <= 1.2). Identity switches:
  times the index changes along a true person's items, in time order. Stray tracks: indices
  whose items mostly overlap no true face.
- Appearance boundaries: a true appearance is a run of frames in which the face is in the picture
  (gaps under 1 s bridged) that holds at least one frame meeting the pair criterion. Its start may
  be reported anywhere from the first frame in which the face shows to the first frame meeting
  the criterion (the end likewise); the error is the distance from that window, in seconds, of
  the first (last) timestamp of the items put on that person within the appearance (1 s around).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MIN_WIDTH = 40.0
MIN_VISIBLE = 0.75
MIN_IOU = 0.3
BRIDGE_S = 1.0


@dataclass(frozen=True)
class Report:
    """One reported item (a PersonMatch): timestamp, person index, face box in frame pixels,
    best match's ExternalImageId and similarity (None when unmatched)."""

    timestamp_ms: int
    index: int
    box: tuple[float, float, float, float] | None
    name: str | None
    similarity: float


def reports(items: list[Any], width: int, height: int) -> list[Report]:
    """Reports from ``faceprint.video.context.Item``s, or from PersonMatch dicts (GetFaceSearch's
    ``Persons``)."""
    out = []
    for item in items:
        body = item.body if hasattr(item, "body") else item
        person = body.get("Person", {})
        box = (person.get("Face") or {}).get("BoundingBox") or person.get("BoundingBox")
        px = None if not box else (box["Left"] * width, box["Top"] * height, box["Width"] * width,
                                   box["Height"] * height)
        matches = body.get("FaceMatches") or []
        best = max(matches, key=lambda m: m["Similarity"]) if matches else None
        out.append(Report(int(body["Timestamp"]), int(person.get("Index", -1)), px,
                          best["Face"].get("ExternalImageId") if best else None,
                          float(best["Similarity"]) if best else 0.0))
    return out


@dataclass
class Truth:
    clip: str
    width: int
    height: int
    fps: int
    enrolled: dict[str, bool]
    frames: list[list[list[Any]]]
    """Per frame: [person, x, y, w, h, visible share]."""
    aliases: dict[str, str] = field(default_factory=dict)
    """Names of one person: alias -> the name used (reported names are mapped too)."""

    @classmethod
    def load(cls, path: Path, aliases: dict[str, str] | None = None, enrolled: set[str] | None = None) -> Truth:
        """The ground truth of a clip; with ``aliases``, people named twice are one person (by
        the name on the right), enrolled when that name is in ``enrolled``."""
        d = json.loads(Path(path).read_text())
        aliases = aliases or {}
        people: dict[str, bool] = {}
        for name, flag in d["people"].items():
            name = aliases.get(name, name)
            people[name] = bool(flag) or name in (enrolled or set())
        frames = [[[aliases.get(f[0], f[0]), *f[1:]] for f in faces] for faces in d["truth"]]
        return cls(d["clip"], d["width"], d["height"], d["fps"], people, frames, dict(aliases))

    def name(self, reported: str) -> str:
        return self.aliases.get(reported, reported)

    def second(self, frame: int) -> int:
        return frame // self.fps

    def frame_at(self, timestamp_ms: int) -> int:
        return min(len(self.frames) - 1, max(0, int(round(timestamp_ms * self.fps / 1000))))

    def pairs(self, strict: bool = True, window: tuple[float, float] | None = None) -> set[tuple[str, int]]:
        """(person, second) pairs: strict, the pair criterion; else any sight of the person
        (only in the ``window`` of seconds (start, end) when given)."""
        out = set()
        first, last = (0, len(self.frames)) if window is None else (int(window[0] * self.fps),
                                                                      int(window[1] * self.fps))
        for number, faces in enumerate(self.frames[first:last], start=first):
            for person, _x, _y, w, _h, visible in faces:
                if (w >= MIN_WIDTH and visible >= MIN_VISIBLE) if strict else visible > 0:
                    out.add((person, self.second(number)))
        return out

    def busiest(self, seconds: float) -> float:
        """The start (a whole second) of the ``seconds`` window showing the most faces."""
        shown = [sum(f[5] > 0 for f in faces) for faces in self.frames]
        span = int(seconds * self.fps)
        starts = range(0, max(1, len(shown) - span + 1), self.fps)
        return max(starts, key=lambda i: (sum(shown[i:i + span]), -i)) / self.fps

    def appearances(self) -> list[tuple[str, int, int, int, int]]:
        """(person, first frame shown, first frame meeting the criterion, last meeting it, last shown)."""
        shown: dict[str, list[int]] = defaultdict(list)
        strict: dict[str, set[int]] = defaultdict(set)
        for number, faces in enumerate(self.frames):
            for person, _x, _y, w, _h, visible in faces:
                if visible > 0:
                    shown[person].append(number)
                if w >= MIN_WIDTH and visible >= MIN_VISIBLE:
                    strict[person].add(number)
        out = []
        for person, numbers in shown.items():
            for run in _runs(numbers, int(BRIDGE_S * self.fps)):
                hits = [n for n in run if n in strict[person]]
                if hits:
                    out.append((person, run[0], hits[0], hits[-1], run[-1]))
        return out


def _runs(numbers: list[int], bridge: int) -> list[list[int]]:
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n - runs[-1][-1] <= bridge:
            runs[-1].append(n)
        else:
            runs.append([n])
    return runs


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def assign(truth: Truth, found: list[Report]) -> list[str | None]:
    """The true person each report's box lies on (None: no true face there)."""
    out: list[str | None] = [None] * len(found)
    by_time: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(found):
        if r.box is not None:
            by_time[r.timestamp_ms].append(i)
    for ts, idx in by_time.items():
        faces = [f for f in truth.frames[truth.frame_at(ts)] if f[5] > 0]
        pairs = sorted(((_iou(found[i].box, tuple(f[1:5])), i, f[0]) for i in idx for f in faces), reverse=True)
        used_i, used_p = set(), set()
        for iou, i, person in pairs:
            if iou >= MIN_IOU and i not in used_i and person not in used_p:
                out[i] = person
                used_i.add(i)
                used_p.add(person)
    return out


@dataclass
class Score:
    """Counts, summable over clips (``+``); the rates are properties."""

    true_pairs: int = 0
    found_pairs: int = 0
    reported_pairs: int = 0
    right_pairs: int = 0
    persons: int = 0
    tracked_persons: int = 0
    tracks: int = 0
    switches: int = 0
    stray_tracks: int = 0
    appearances: int = 0
    missed_appearances: int = 0
    boundary_errors: list[float] = field(default_factory=list)
    false_pairs: list[tuple[str, str, int, str]] = field(default_factory=list)
    """(clip, reported name, second, who was at that box or '-')."""
    missed_pairs: list[tuple[str, str, int]] = field(default_factory=list)
    miss_reasons: Counter = field(default_factory=Counter)
    """Missed pairs by why: "not found" (no item on that face in that second), "no name" (found,
    matched to nobody), "other name" (found, matched to someone else), each with the face's
    largest width that second ("<60 px", "60-99 px", ">=100 px")."""

    def __add__(self, other: Score) -> Score:
        out = Score()
        for name, value in vars(self).items():
            setattr(out, name, value + getattr(other, name))
        return out

    @property
    def recall(self) -> float:
        return self.found_pairs / self.true_pairs if self.true_pairs else float("nan")

    @property
    def precision(self) -> float:
        return self.right_pairs / self.reported_pairs if self.reported_pairs else float("nan")

    @property
    def tracks_per_person(self) -> float:
        return self.tracks / self.tracked_persons if self.tracked_persons else float("nan")

    @property
    def switches_per_person(self) -> float:
        return self.switches / self.tracked_persons if self.tracked_persons else float("nan")

    def boundary(self, q: float) -> float:
        return float(np.quantile(self.boundary_errors, q)) if self.boundary_errors else float("nan")

    @property
    def within_half_second(self) -> float:
        e = self.boundary_errors
        return sum(v <= 0.5 for v in e) / len(e) if e else float("nan")


def score(truth: Truth, found: list[Report], threshold: float = 80.0, window: tuple[float, float] | None = None,
          tracks: bool = True) -> Score:
    """Score ``found`` against ``truth`` (only the ``window`` of seconds (start, end) when
    given; tracks and boundaries only when ``tracks``)."""
    if window is not None:
        found = [r for r in found if window[0] * 1000 <= r.timestamp_ms < window[1] * 1000]
    s = Score()
    strict = {p for p in truth.pairs(True, window) if truth.enrolled.get(p[0])}
    shown = truth.pairs(False, window)
    on = assign(truth, found)
    reported: dict[tuple[str, int], str] = {}
    for r, person in zip(found, on, strict=True):
        if r.name is not None and r.similarity >= threshold:
            reported.setdefault((truth.name(r.name), r.timestamp_ms // 1000), person or "-")
    s.true_pairs, s.reported_pairs = len(strict), len(reported)
    s.found_pairs = len(strict & set(reported))
    s.right_pairs = len(set(reported) & shown)
    s.false_pairs = [(truth.clip, n, sec, who) for (n, sec), who in sorted(reported.items()) if (n, sec) not in shown]
    s.missed_pairs = [(truth.clip, n, sec) for n, sec in sorted(strict - set(reported))]
    s.miss_reasons = _why_missed(truth, found, on, s.missed_pairs, threshold)
    if tracks:
        _tracks(truth, found, on, s)
        _boundaries(truth, found, on, s)
    return s


def _why_missed(truth: Truth, found: list[Report], on: list[str | None], missed: list[tuple[str, str, int]],
                threshold: float) -> Counter:
    names: dict[tuple[str, int], set[str | None]] = defaultdict(set)
    for r, person in zip(found, on, strict=True):
        if person is not None:
            named = truth.name(r.name) if r.name is not None and r.similarity >= threshold else None
            names[(person, r.timestamp_ms // 1000)].add(named)
    widths: dict[tuple[str, int], float] = defaultdict(float)
    for number, faces in enumerate(truth.frames):
        for person, _x, _y, w, _h, visible in faces:
            key = (person, truth.second(number))
            if visible >= MIN_VISIBLE:
                widths[key] = max(widths[key], w)
    out: Counter = Counter()
    for _clip, person, sec in missed:
        seen = names.get((person, sec))
        why = "not found" if not seen else "no name" if seen == {None} else "other name"
        w = widths[(person, sec)]
        out[f"{why}, {'<60' if w < 60 else '60-99' if w < 100 else '>=100'} px"] += 1
    return out


def _tracks(truth: Truth, found: list[Report], on: list[str | None], s: Score) -> None:
    owner: dict[int, str] = {}
    votes: dict[int, Counter] = defaultdict(Counter)
    for r, person in zip(found, on, strict=True):
        votes[r.index][person] += 1
    for index, count in votes.items():
        person, n = count.most_common(1)[0]
        if person is None:
            s.stray_tracks += 1
        else:
            owner[index] = person
    present = {p for p, _sec in truth.pairs(True)}
    s.persons = len(present)
    per_person = Counter(owner.values())
    s.tracked_persons = len(per_person)
    s.tracks = sum(per_person.values())
    timeline: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r, person in zip(found, on, strict=True):
        if person is not None:
            timeline[person].append((r.timestamp_ms, r.index))
    for steps in timeline.values():
        steps.sort()
        s.switches += sum(a[1] != b[1] for a, b in zip(steps, steps[1:], strict=False))


def _boundaries(truth: Truth, found: list[Report], on: list[str | None], s: Score) -> None:
    times: dict[str, list[int]] = defaultdict(list)
    for r, person in zip(found, on, strict=True):
        if person is not None:
            times[person].append(r.timestamp_ms)
    ms = 1000.0 / truth.fps
    for person, shown0, strict0, strict1, shown1 in truth.appearances():
        s.appearances += 1
        lo, hi = (shown0 * ms - 1000, shown1 * ms + 1000)
        mine = [t for t in times.get(person, []) if lo <= t <= hi]
        if not mine:
            s.missed_appearances += 1
            continue
        start, end = min(mine), max(mine)
        s.boundary_errors.append(_outside(start, shown0 * ms, strict0 * ms) / 1000)
        s.boundary_errors.append(_outside(end, strict1 * ms, shown1 * ms) / 1000)


def _outside(t: float, lo: float, hi: float) -> float:
    return max(0.0, lo - t, t - hi)


def truth_reports(truth: Truth, every: int = 1) -> list[Report]:
    """The ground truth as a perfect analyser would report it (every ``every``-th frame; enrolled
    people matched at similarity 100): scores 1.0 everywhere when ``every`` is 1."""
    ids = {p: i for i, p in enumerate(sorted(truth.enrolled))}
    out = []
    for number in range(0, len(truth.frames), every):
        for person, x, y, w, h, visible in truth.frames[number]:
            if visible > 0:
                out.append(Report(int(round(number * 1000 / truth.fps)), ids[person], (x, y, w, h),
                                  person if truth.enrolled[person] else None, 100.0))
    return out
