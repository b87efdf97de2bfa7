"""StartTextDetection's analyser: frames are read only when their picture changed, and a line is
reported when it appears, once, with DetectText's Ids and ParentIds unique within the job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from faceprint.errors import InvalidParameterException
from faceprint.types import BoundingBox, Geometry, TextDetection
from faceprint.video import text
from faceprint.video.context import LocalContext
from faceprint.video.decode import VideoError
from faceprint.video.text import ChangeWatch, LineMemory
from videokit import background, write_video

W, H = 320, 180


class CountingReader:
    """The real text reader, counting the frames it reads."""

    def __init__(self, reader) -> None:
        self.reader = reader
        self.reads = 0

    def read(self, bgr: np.ndarray):
        self.reads += 1
        return self.reader.read(bgr)


def drawn(count: int, seed: int, draw: Callable[[np.ndarray, int], None]) -> list[np.ndarray]:
    """``count`` frames of a still background, each drawn on by ``draw(frame, number)``."""
    bg = background(W, H, seed)
    frames = [bg.copy() for _ in range(count)]
    for i, frame in enumerate(frames):
        draw(frame, i)
    return frames


def put(frame: np.ndarray, words: str, org: tuple[int, int], scale: float, colour: tuple[int, int, int]) -> None:
    cv2.putText(frame, words, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 2)


def text_clip() -> list[np.ndarray]:
    """5 s at 25 fps on a still background: HELLO 2024 from 1 s to 3 s and again from 4 s;
    GOODBYE from 2 s to the end."""
    def draw(frame: np.ndarray, i: int) -> None:
        if 25 <= i < 75 or i >= 100:
            put(frame, "HELLO 2024", (20, 150), 0.9, (255, 255, 255))
        if i >= 50:
            put(frame, "GOODBYE", (150, 40), 0.8, (0, 0, 0))

    return drawn(125, 3, draw)


def read_lines(path: Path, params: dict, reader: CountingReader) -> tuple[LocalContext, list[tuple[int, str]]]:
    """Text detection of ``path``: the job's context and its LINEs (timestamp, text)."""
    ctx = LocalContext(path, params, SimpleNamespace(text_reader=reader, max_text_words=100))  # type: ignore[arg-type]
    text.run(ctx)
    return ctx, [(i.timestamp_ms, i.body["TextDetection"]["DetectedText"]) for i in ctx.items
                 if i.body["TextDetection"]["Type"] == "LINE"]


def test_text_is_reported_when_it_appears_and_once(fast, tmp_path: Path) -> None:
    path = write_video(tmp_path / "text.mp4", text_clip())
    reader = CountingReader(fast.text_reader)
    ctx, lines = read_lines(path, {}, reader)
    assert ctx.info is not None and ctx.done == (125, 125)
    assert reader.reads <= 6  # the still picture at 0 s, and its changes at 1, 2, 3 and 4 s: not 125 frames
    assert lines == [(1000, "HELLO 2024"), (2000, "GOODBYE"), (4000, "HELLO 2024")]
    found = [i.body["TextDetection"] for i in ctx.items]
    assert all(i.timestamp_ms == i.body["Timestamp"] for i in ctx.items)
    assert sorted(d["Id"] for d in found) == list(range(len(found)))  # unique within the job
    line_ids = {d["Id"]: d["DetectedText"] for d in found if d["Type"] == "LINE"}
    words = [(i.timestamp_ms, d["DetectedText"], line_ids[d["ParentId"]]) for i in ctx.items
             for d in [i.body["TextDetection"]] if d["Type"] == "WORD"]
    assert words == [(1000, "HELLO", "HELLO 2024"), (1000, "2024", "HELLO 2024"), (2000, "GOODBYE", "GOODBYE"),
                     (4000, "HELLO", "HELLO 2024"), (4000, "2024", "HELLO 2024")]
    goodbye = next(d for d in found if d["DetectedText"] == "GOODBYE" and d["Type"] == "LINE")
    box = goodbye["Geometry"]["BoundingBox"]
    assert box["Top"] < 0.3 and box["Left"] > 0.4 and goodbye["Confidence"] > 80


def test_a_stream_that_changes_its_frame_size_midway(fast, tmp_path: Path) -> None:
    """Two H.264 transport streams one after the other: 320x180 then 160x160 frames, no text."""
    first = write_video(tmp_path / "first.ts", [background(320, 180, 1)] * 10).read_bytes()
    second = write_video(tmp_path / "second.ts", [background(160, 160, 2)] * 10).read_bytes()
    (tmp_path / "both.ts").write_bytes(first + second)
    reader = CountingReader(fast.text_reader)
    ctx, _ = read_lines(tmp_path / "both.ts", {}, reader)
    assert (reader.reads, ctx.items, ctx.done) == (2, [], (20, 20))


def captioned_clip() -> list[np.ndarray]:
    """4 s at 25 fps: a disc moving across the top of the picture the whole time, the caption
    NEWS AT TEN under it from the start and BREAKING from 2 s."""
    def draw(frame: np.ndarray, i: int) -> None:
        cv2.circle(frame, (20 + 3 * i, 50), 30, (30, 200, 240), -1)
        put(frame, "NEWS AT TEN", (20, 160), 0.8, (255, 255, 255))
        if i >= 50:
            put(frame, "BREAKING", (200, 125), 0.7, (255, 255, 255))

    return drawn(100, 5, draw)


def test_with_regions_of_interest_only_changes_within_them_bring_reads(fast, tmp_path: Path) -> None:
    path = write_video(tmp_path / "captioned.mp4", captioned_clip())
    bottom = {"RegionsOfInterest": [{"BoundingBox": {"Left": 0.0, "Top": 0.6, "Width": 1.0, "Height": 0.4}}]}
    reader = CountingReader(fast.text_reader)
    assert read_lines(path, {"Filters": bottom}, reader)[1] == [(0, "NEWS AT TEN"), (2000, "BREAKING")]
    assert reader.reads == 2  # the moving disc, outside the region, brought a read every second or so


def test_bad_filters_and_unreadable_video_fail_before_any_read(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mov"
    junk.write_bytes(b"not a video at all" * 100)
    worker = SimpleNamespace(text_reader=None, max_text_words=100)
    with pytest.raises(InvalidParameterException):
        text.run(LocalContext(junk, {"Filters": {"WordFilter": {"MinConfidence": 101}}}, worker))  # type: ignore[arg-type]
    with pytest.raises(VideoError):
        text.run(LocalContext(junk, {}, worker))  # type: ignore[arg-type]


# -- which frames are read ------------------------------------------------------------------------

def still(value: int = 100) -> np.ndarray:
    return np.full((90, 160), value, np.uint8)


def with_word(thumb: np.ndarray) -> np.ndarray:
    out = thumb.copy()
    out[40:45, 20:40:2] = 255  # a short word's strokes: 50 pixels
    return out


def test_a_still_picture_is_read_once_and_a_change_when_it_began() -> None:
    watch = ChangeWatch()
    frames = [still()] * 25 + [with_word(still())] * 25
    reads = [(n * 40, at) for n, thumb in enumerate(frames) if (at := watch.offer(n * 40, thumb)) is not None]
    assert reads == [(40, 0), (1040, 1000)]  # read once steady, reported from when the change began
    assert watch.pending(1960) is None


def test_a_change_soon_after_a_read_waits_and_keeps_its_time() -> None:
    watch = ChangeWatch()
    frames = [still()] * 5 + [with_word(still())] * 20
    reads = [(n * 40, at) for n, thumb in enumerate(frames) if (at := watch.offer(n * 40, thumb)) is not None]
    assert reads == [(40, 0), (560, 200)]  # due 500 ms after the last read; the word came at 200 ms


def test_moving_pictures_are_read_twice_a_second_at_the_frame_read() -> None:
    watch = ChangeWatch()
    rng = np.random.default_rng(0)
    reads = [(n * 40, at) for n in range(50) if (at := watch.offer(n * 40, rng.integers(0, 256, (90, 160),
                                                                                          dtype=np.uint8))) is not None]
    assert [ms for ms, _ in reads] == [200, 720, 1240, 1760] and all(ms == at for ms, at in reads)


def test_moving_pictures_where_nothing_new_turns_up_are_read_once_a_second() -> None:
    watch = ChangeWatch()
    rng = np.random.default_rng(1)
    reads = []
    for n in range(100):
        if (watch.offer(n * 40, rng.integers(0, 256, (90, 160), dtype=np.uint8))) is not None:
            reads.append(n * 40)
            watch.found(1 if len(reads) == 3 else 0)  # the third read finds a new line
    assert reads == [200, 1200, 2200, 2720, 3720]


def test_a_change_at_the_very_end_is_read_with_the_last_frame() -> None:
    watch = ChangeWatch()
    for n in range(10):
        watch.offer(n * 40, still())
    assert watch.offer(400, with_word(still())) is None  # not steady yet
    assert watch.pending(400) == 400
    assert ChangeWatch().pending(0) is None


# -- which lines are new --------------------------------------------------------------------------

def line(text: str, left: float, top: float, first_id: int, width: float = 0.3) -> list[TextDetection]:
    """A LINE (id ``first_id``) with one WORD per token, as DetectText assembles them."""
    def geometry(x: float, w: float) -> Geometry:
        return Geometry(bounding_box=BoundingBox(width=w, height=0.05, left=x, top=top), polygon=[])

    tokens = text.split()
    out = [TextDetection(detected_text=text, type="LINE", id=first_id, confidence=99.0, geometry=geometry(left, width))]
    step = width / len(tokens)
    out += [TextDetection(detected_text=t, type="WORD", id=first_id + 1 + k, parent_id=first_id, confidence=99.0,
                          geometry=geometry(left + k * step, step)) for k, t in enumerate(tokens)]
    return out


def detections(*lines: list[TextDetection]) -> list[TextDetection]:
    """DetectText's order: the LINEs, then the WORDs."""
    flat = [d for group in lines for d in group]
    return [d for d in flat if d.type == "LINE"] + [d for d in flat if d.type == "WORD"]


def shown(*boxes: tuple[float, float, float]) -> np.ndarray:
    """A thumbnail with bright text-like marks in each (left, top, width) box (height 0.05)."""
    thumb = still(60)
    for left, top, width in boxes:
        y, x = int(top * 90), int(left * 160)
        thumb[y:y + 5, x:x + int(width * 160):2] = 250
    return thumb


def test_lines_read_again_are_not_new_and_ids_stay_unique() -> None:
    memory = LineMemory()
    first = memory.update(detections(line("HELLO 2024", 0.1, 0.8, 0)), shown((0.1, 0.8, 0.3)))
    assert [(d.type, d.id, d.parent_id, d.detected_text) for d in first] == [
        ("LINE", 0, None, "HELLO 2024"), ("WORD", 1, 0, "HELLO"), ("WORD", 2, 0, "2024")]
    both = shown((0.1, 0.8, 0.3), (0.5, 0.1, 0.3))
    second = memory.update(detections(line("HELL0 2024", 0.1, 0.8, 0), line("GOODBYE NOW", 0.5, 0.1, 3)), both)
    assert [(d.type, d.id, d.parent_id, d.detected_text) for d in second] == [
        ("LINE", 3, None, "GOODBYE NOW"), ("WORD", 4, 3, "GOODBYE"), ("WORD", 5, 3, "NOW")]
    # the reader misses HELLO while its part of the picture is unchanged: still there, not new again
    assert memory.update(detections(line("GOODBYE NOW", 0.5, 0.1, 0)), both) == []
    assert memory.update(detections(line("hello  2024", 0.1, 0.8, 0), line("GOODBYE NOW", 0.5, 0.1, 3)), both) == []
    # HELLO goes away (its part of the picture changes), then comes back: new again
    gone = shown((0.5, 0.1, 0.3))
    assert memory.update(detections(line("GOODBYE NOW", 0.5, 0.1, 0)), gone) == []
    again = memory.update(detections(line("HELLO 2024", 0.1, 0.8, 0), line("GOODBYE NOW", 0.5, 0.1, 3)), both)
    assert [(d.id, d.parent_id, d.detected_text) for d in again] == [
        (6, None, "HELLO 2024"), (7, 6, "HELLO"), (8, 6, "2024")]


def test_a_line_whose_text_and_picture_changed_is_new() -> None:
    memory = LineMemory()
    memory.update(detections(line("SCORE 1", 0.1, 0.1, 0)), shown((0.1, 0.1, 0.3)))
    assert memory.update(detections(line("SCORE 7", 0.1, 0.1, 0)), shown((0.1, 0.1, 0.3))) == []  # OCR noise
    changed = shown((0.1, 0.1, 0.3))
    changed[10:14, 60:64] = 0  # the digit's pixels change
    new = memory.update(detections(line("SCORE 2", 0.1, 0.1, 0)), changed)
    assert [(d.type, d.detected_text) for d in new] == [("LINE", "SCORE 2"), ("WORD", "SCORE"), ("WORD", "2")]


def test_the_same_text_twice_on_screen_is_two_lines() -> None:
    memory = LineMemory()
    two = detections(line("EXIT", 0.1, 0.1, 0, 0.1), line("EXIT", 0.7, 0.1, 2, 0.1))
    thumb = shown((0.1, 0.1, 0.1), (0.7, 0.1, 0.1))
    assert [d.id for d in memory.update(two, thumb) if d.type == "LINE"] == [0, 1]
    assert memory.update(two, thumb) == []
    three = detections(*[line("EXIT", x, 0.1, 2 * k, 0.1) for k, x in enumerate((0.1, 0.4, 0.7))])
    new = memory.update(three, shown((0.1, 0.1, 0.1), (0.4, 0.1, 0.1), (0.7, 0.1, 0.1)))
    assert [(d.type, round(d.geometry.bounding_box.left, 1)) for d in new] == [("LINE", 0.4), ("WORD", 0.4)]
