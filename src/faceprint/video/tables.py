"""``faceprint video ... --format table``: the items of a Get answer as one line a finding (a
person's appearance, a run of faces, a text line's appearance, a segment). Each table reads items
in one order and holds only what it is merging, so that the items of hours of video can stream
through it."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from faceprint.progress import clock_time

GAP_MS = 1000
"""Timestamps of one person (one face count, one text line) further apart than this are two
appearances in a table."""


def span(first: int, last: int) -> str:
    return f"{clock_time(first)}-{clock_time(last)}"


@dataclass
class _Run:
    """One appearance while a table is made: from ``first`` to ``last`` (ms), the best seen."""

    first: int
    last: int
    best: Any = None
    score: float = float("-inf")

    def add(self, timestamp: int, best: Any, score: float) -> None:
        self.last = timestamp
        if score > self.score:
            self.best, self.score = best, score


def face_search_table(items: Iterable[dict[str, Any]]) -> list[str]:
    """One line a person's appearance: when, who (the person index), the collection's match (its
    ExternalImageId, else its FaceId, or '-') and the best similarity. ``items`` come by person
    index, then timestamp (GetFaceSearch's INDEX order): only the appearance being read is held."""
    rows: list[tuple[int, int, str]] = []
    index, run = None, None
    for item in items:
        timestamp = item["Timestamp"]
        if run is None or item["Person"]["Index"] != index or timestamp - run.last > GAP_MS:
            if run is not None:
                rows.append((run.first, index, _appearance(index, run)))
            index, run = item["Person"]["Index"], _Run(timestamp, timestamp)
        for match in item.get("FaceMatches") or []:
            run.add(timestamp, match, match["Similarity"])
        run.last = timestamp
    if run is not None:
        rows.append((run.first, index, _appearance(index, run)))
    return [line for _, _, line in sorted(rows)]


def _appearance(index: Any, run: _Run) -> str:
    face = run.best["Face"] if run.best is not None else None
    who = "-  -" if face is None else f"{face.get('ExternalImageId') or face['FaceId']}  {run.score:.1f}"
    return f"{span(run.first, run.last)}  person {index}  {who}"


def faces_table(items: Iterable[dict[str, Any]]) -> list[str]:
    """One line a run of sampled frames showing the same number of faces, with the range of their
    detection confidence. ``items`` come in timestamp order."""
    lines = []
    run: list[Any] | None = None  # first, last, faces, lowest, highest
    for timestamp, frame in itertools.groupby(items, key=lambda item: item["Timestamp"]):
        scores = [item["Face"].get("Confidence", 0.0) for item in frame]
        if run is not None and run[2] == len(scores) and timestamp - run[1] <= GAP_MS:
            run[1], run[3], run[4] = timestamp, min(run[3], *scores), max(run[4], *scores)
            continue
        if run is not None:
            lines.append(_faces_line(*run))
        run = [timestamp, timestamp, len(scores), min(scores), max(scores)]
    if run is not None:
        lines.append(_faces_line(*run))
    return lines


def _faces_line(first: int, last: int, count: int, low: float, high: float) -> str:
    return f"{span(first, last)}  {count} face{'s' if count != 1 else ''}  confidence {low:.1f}-{high:.1f}"


def text_table(items: Iterable[dict[str, Any]]) -> list[str]:
    """One line a text line's appearance: when, its best confidence and the text. ``items`` come
    in timestamp order: only each line's latest appearance is held."""
    rows: list[tuple[int, str, str]] = []
    latest: dict[str, _Run] = {}
    for item in items:
        detection = item["TextDetection"]
        if detection.get("Type") != "LINE":
            continue
        text, timestamp = detection["DetectedText"], item["Timestamp"]
        run = latest.get(text)
        if run is None or timestamp - run.last > GAP_MS:
            if run is not None:
                rows.append(_text_row(text, run))
            run = latest[text] = _Run(timestamp, timestamp)
        run.add(timestamp, None, detection.get("Confidence", 0.0))
    rows += [_text_row(text, run) for text, run in latest.items()]
    return [line for _, _, line in sorted(rows)]


def _text_row(text: str, run: _Run) -> tuple[int, str, str]:
    return run.first, text, f"{span(run.first, run.last)}  {run.score:5.1f}  {text}"


def segments_table(items: Iterable[dict[str, Any]]) -> list[str]:
    """One line a segment, in time order: when, its SMPTE timecodes and frames, what it is, its confidence."""
    lines = []
    for s in sorted(items, key=_segment_order):
        if s["Type"] == "SHOT":
            what, confidence = f"SHOT {s['ShotSegment']['Index']}", s["ShotSegment"]["Confidence"]
        else:
            what, confidence = f"{s['TechnicalCueSegment']['Type']}", s["TechnicalCueSegment"]["Confidence"]
        lines.append(f"{span(s['StartTimestampMillis'], s['EndTimestampMillis'])}  "
                     f"{s['StartTimecodeSMPTE']}-{s['EndTimecodeSMPTE']}  frames {s['StartFrameNumber']}-"
                     f"{s['EndFrameNumber']}  {what}  {confidence:.1f}")
    return lines


def _segment_order(segment: dict[str, Any]) -> tuple[int, str]:
    return segment["StartTimestampMillis"], segment["Type"]


def _by_time(item: dict[str, Any]) -> int:
    return item["Timestamp"]


def _by_person(item: dict[str, Any]) -> tuple[int, int]:
    return item["Person"]["Index"], item["Timestamp"]


TABLES: dict[str, tuple[Callable[[Iterable[dict[str, Any]]], list[str]], Callable[[dict[str, Any]], Any],
                        dict[str, str]]] = {
    "StartFaceSearch": (face_search_table, _by_person, {"sort_by": "INDEX"}),
    "StartFaceDetection": (faces_table, _by_time, {}),
    "StartTextDetection": (text_table, _by_time, {}),
    "StartSegmentDetection": (segments_table, _segment_order, {}),
}
"""Each operation's table: what makes it, the order it reads items in (a page is sorted so), and
the Get's SortBy that gives that order."""
