"""StartSegmentDetection's analyser on real encoded video: shots at the cut frames (through black,
dissolves, not at a flash), BlackFrames runs, Rekognition's timecodes (25 fps and 29.97 drop-frame),
frame numbers, filters, and ColorRange."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceprint.errors import InvalidParameterException
from faceprint.video import segments
from faceprint.video.context import LocalContext
from faceprint.video.decode import VideoError
from faceprint.video.segments import Timecode, parse_segment_filters
from videokit import background, write_luma_video, write_video

W, H = 320, 180
BLACK = 0.2 * 255


def scene(seed: int, i: int) -> np.ndarray:
    """A textured background with a disc moving across it."""
    frame = background(W, H, seed).copy()
    colour = tuple(int(c) for c in np.random.default_rng(seed).integers(0, 256, 3))
    cv2.circle(frame, (40 + (i * 3) % 240, 90), 25, colour, -1)
    return frame


def cuts_clip() -> list[np.ndarray]:
    """250 frames: cut at 50, black 100-124, flash (a white frame) at 175, dissolve 200-219."""
    frames = []
    for i in range(250):
        if i < 50:
            frame = scene(1, i)
        elif i < 100:
            frame = scene(2, i)
        elif i < 125:
            frame = np.zeros((H, W, 3), np.uint8)
        elif i == 175:
            frame = np.full((H, W, 3), 255, np.uint8)
        elif i < 200:
            frame = scene(3, i)
        elif i < 220:
            w = (i - 199) / 21
            frame = cv2.addWeighted(scene(3, i), 1 - w, scene(4, i), w, 0)
        else:
            frame = scene(4, i)
        frames.append(frame)
    return frames


def fade_clip() -> list[np.ndarray]:
    """150 frames: scene, fade out over 50-74, black 75-84, fade in over 85-109, another scene."""
    frames = []
    for i in range(150):
        if i < 50:
            frame = scene(5, i)
        elif i < 75:
            frame = (scene(5, i) * (1 - (i - 49) / 25)).astype(np.uint8)
        elif i < 85:
            frame = np.zeros((H, W, 3), np.uint8)
        elif i < 110:
            frame = (scene(6, i) * ((i - 84) / 25)).astype(np.uint8)
        else:
            frame = scene(6, i)
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("segments")
    cuts = cuts_clip()
    return {
        "cuts": write_video(folder / "cuts.mp4", cuts),
        "ntsc": write_video(folder / "ntsc.mp4", cuts[:120], fps=Fraction(30000, 1001)),  # type: ignore[arg-type]
        "fade": write_video(folder / "fade.mp4", fade_clip()),
        "folder": folder,
    }


def analyse(path: Path, types: list[str], filters: dict | None = None) -> LocalContext:
    params: dict = {"SegmentTypes": types}
    if filters is not None:
        params["Filters"] = filters
    ctx = LocalContext(path, params, fp=None)  # type: ignore[arg-type]  # segments need no models
    segments.run(ctx)
    return ctx


def bodies(ctx: LocalContext, kind: str) -> list[dict]:
    return sorted((i.body for i in ctx.items if i.body["Type"] == kind), key=lambda b: b["StartFrameNumber"])


def spans(found: list[dict]) -> list[tuple[int, int]]:
    return [(b["StartFrameNumber"], b["EndFrameNumber"]) for b in found]


# -- timecodes ------------------------------------------------------------------------------------

def test_timecodes_count_frames_and_drop_two_numbers_a_minute_at_29_97() -> None:
    pal = Timecode.for_rate(25.0)
    assert [pal.smpte(n) for n in (0, 24, 25, 1500, 90000)] == [
        "00:00:00:00", "00:00:00:24", "00:00:01:00", "00:01:00:00", "01:00:00:00"]
    ntsc = Timecode.for_rate(30000 / 1001)
    assert ntsc == Timecode.for_rate(29.97) == Timecode(30, 2)
    assert [ntsc.smpte(n) for n in (0, 29, 30, 1799, 1800, 3597, 3598, 17981, 17982, 107892, 6 * 107892)] == [
        "00:00:00;00", "00:00:00;29", "00:00:01;00", "00:00:59;29", "00:01:00;02", "00:01:59;29",
        "00:02:00;02", "00:09:59;29", "00:10:00;00", "01:00:00;00", "06:00:00;00"]
    assert Timecode.for_rate(60000 / 1001).smpte(3600) == "00:01:00;04"
    film = Timecode.for_rate(24000 / 1001)  # 23.976: counted at 24, no drop-frame
    assert (film.drop, film.smpte(24), film.smpte(1440)) == (0, "00:00:01:00", "00:01:00:00")
    assert Timecode.for_rate(30.0).smpte(1800) == "00:01:00:00"


# -- filters --------------------------------------------------------------------------------------

def test_filters_default_as_rekognition_documents() -> None:
    parsed = parse_segment_filters(None, ["SHOT", "TECHNICAL_CUE", "SHOT"])
    assert parsed.types == ("SHOT", "TECHNICAL_CUE")
    assert (parsed.shot_min_confidence, parsed.cue_min_confidence) == (50.0, 50.0)
    assert (parsed.max_pixel_threshold, parsed.min_coverage_percentage) == (0.2, 99.0)
    parsed = parse_segment_filters({"ShotFilter": {"MinSegmentConfidence": 80},
                                    "TechnicalCueFilter": {"MinSegmentConfidence": 100, "BlackFrame": {
                                        "MaxPixelThreshold": 0, "MinCoveragePercentage": 100}}}, ["TECHNICAL_CUE"])
    assert (parsed.shot_min_confidence, parsed.cue_min_confidence) == (80.0, 100.0)
    assert (parsed.max_pixel_threshold, parsed.min_coverage_percentage) == (0.0, 100.0)


@pytest.mark.parametrize("filters, types", [
    (None, []), (None, "SHOT"), (None, ["SHOTS"]), (None, [None]), (None, None),
    ([], ["SHOT"]), ({"Shot": {}}, ["SHOT"]), ({"ShotFilter": []}, ["SHOT"]),
    ({"ShotFilter": {"MinSegmentConfidence": 49.9}}, ["SHOT"]),
    ({"ShotFilter": {"MinSegmentConfidence": 101}}, ["SHOT"]),
    ({"ShotFilter": {"MinSegmentConfidence": "80"}}, ["SHOT"]),
    ({"ShotFilter": {"MinSegmentConfidence": True}}, ["SHOT"]),
    ({"ShotFilter": {"MinSegmentConfidence": 10**400}}, ["SHOT"]),
    ({"ShotFilter": {"MinSegmentConfidence": math.nan}}, ["SHOT"]),
    ({"ShotFilter": {"BlackFrame": {}}}, ["SHOT"]),
    ({"TechnicalCueFilter": {"BlackFrame": {"MaxPixelThreshold": 1.5}}}, ["TECHNICAL_CUE"]),
    ({"TechnicalCueFilter": {"BlackFrame": {"MinCoveragePercentage": -1}}}, ["TECHNICAL_CUE"]),
    ({"TechnicalCueFilter": {"BlackFrame": {"Pixels": 3}}}, ["TECHNICAL_CUE"]),
])
def test_bad_filters_and_types_are_invalid_parameters(filters: object, types: object) -> None:
    with pytest.raises(InvalidParameterException):
        parse_segment_filters(filters, types)


# -- shots and black frames -------------------------------------------------------------------------

def test_shots_start_at_the_cuts_and_cover_the_video(clips: dict[str, Path]) -> None:
    ctx = analyse(clips["cuts"], ["TECHNICAL_CUE", "SHOT"])
    assert ctx.info is not None and ctx.done == (250, 250)
    shots = bodies(ctx, "SHOT")
    starts = [b["StartFrameNumber"] for b in shots]
    assert starts[:4] == [0, 50, 100, 125]  # a cut, into black, out of black; the flash at 175 is none
    assert len(starts) == 5 and abs(starts[4] - 210) <= 2  # the middle of the dissolve (200-219)
    assert [b["ShotSegment"]["Index"] for b in shots] == [0, 1, 2, 3, 4]
    assert all(50 <= b["ShotSegment"]["Confidence"] <= 100 for b in shots)
    assert [b["EndFrameNumber"] + 1 for b in shots[:-1]] == starts[1:] and shots[-1]["EndFrameNumber"] == 249
    assert shots[1] == {
        "Type": "SHOT", "StartTimestampMillis": 2000, "EndTimestampMillis": 3960, "DurationMillis": 1960,
        "StartTimecodeSMPTE": "00:00:02:00", "EndTimecodeSMPTE": "00:00:03:24", "DurationSMPTE": "00:00:01:24",
        "StartFrameNumber": 50, "EndFrameNumber": 99, "DurationFrames": 49,
        "ShotSegment": {"Index": 1, "Confidence": shots[1]["ShotSegment"]["Confidence"]}}
    assert shots[-1]["EndTimecodeSMPTE"] == "00:00:09:24" and shots[-1]["EndTimestampMillis"] == 9960
    black = bodies(ctx, "TECHNICAL_CUE")
    assert black == [{
        "Type": "TECHNICAL_CUE", "StartTimestampMillis": 4000, "EndTimestampMillis": 4960, "DurationMillis": 960,
        "StartTimecodeSMPTE": "00:00:04:00", "EndTimecodeSMPTE": "00:00:04:24", "DurationSMPTE": "00:00:00:24",
        "StartFrameNumber": 100, "EndFrameNumber": 124, "DurationFrames": 24,
        "TechnicalCueSegment": {"Type": "BlackFrames", "Confidence": 100.0}}]
    # items sort by type in the order SegmentTypes named them (index), then by time
    assert {(i.body["Type"], i.index) for i in ctx.items} == {("TECHNICAL_CUE", 0), ("SHOT", 1)}
    assert all(i.timestamp_ms == i.body["StartTimestampMillis"] for i in ctx.items)


def test_drop_frame_timecodes_at_29_97(clips: dict[str, Path]) -> None:
    ctx = analyse(clips["ntsc"], ["SHOT", "TECHNICAL_CUE"])
    assert spans(bodies(ctx, "SHOT")) == [(0, 49), (50, 99), (100, 119)]
    shot = bodies(ctx, "SHOT")[1]
    assert (shot["StartTimecodeSMPTE"], shot["EndTimecodeSMPTE"], shot["DurationSMPTE"]) == (
        "00:00:01;20", "00:00:03;09", "00:00:01;19")
    assert abs(shot["StartTimestampMillis"] - 50 * 1001 / 30) < 1
    assert abs(shot["EndTimestampMillis"] - 99 * 1001 / 30) < 1
    assert shot["DurationMillis"] == shot["EndTimestampMillis"] - shot["StartTimestampMillis"]
    (black,) = bodies(ctx, "TECHNICAL_CUE")
    assert (black["StartFrameNumber"], black["EndFrameNumber"]) == (100, 119)
    assert (black["StartTimecodeSMPTE"], black["EndTimecodeSMPTE"]) == ("00:00:03;10", "00:00:03;29")


def expected_black(frames: list[np.ndarray], threshold: float = BLACK, coverage: float = 99.0) -> list[int]:
    luma = [f.astype(np.float32) @ segments.LUMA_709 for f in frames]
    return [i for i, y in enumerate(luma) if np.count_nonzero(y <= threshold) * 100.0 / y.size >= coverage]


def test_fades_through_black_bound_the_shots_within_a_frame(clips: dict[str, Path]) -> None:
    ctx = analyse(clips["fade"], ["SHOT", "TECHNICAL_CUE"])
    truth = expected_black(fade_clip())
    assert truth == list(range(truth[0], truth[-1] + 1))  # one run, partway into each fade
    (black,) = bodies(ctx, "TECHNICAL_CUE")
    assert abs(black["StartFrameNumber"] - truth[0]) <= 1 and abs(black["EndFrameNumber"] - truth[-1]) <= 1
    assert spans(bodies(ctx, "SHOT")) == [(0, black["StartFrameNumber"] - 1),
                                          (black["StartFrameNumber"], black["EndFrameNumber"]),
                                          (black["EndFrameNumber"] + 1, 149)]


def test_filters_choose_what_is_black_and_which_shot_changes_count(clips: dict[str, Path]) -> None:
    frames = [np.full((90, 160, 3), level, np.uint8) for level in [128] * 10 + [40] * 10 + [8] * 10 + [128] * 10]
    frames[25][:2, :2] = 255  # 4 of 14,400 pixels: still black at 99% coverage, not at 100%
    path = write_video(clips["folder"] / "greys.mp4", frames, crf=0)
    black = bodies(analyse(path, ["TECHNICAL_CUE"]), "TECHNICAL_CUE")
    assert spans(black) == [(10, 29)]  # luma 40 is under 20% of the range
    strict = {"TechnicalCueFilter": {"BlackFrame": {"MaxPixelThreshold": 0.1}}}
    assert spans(bodies(analyse(path, ["TECHNICAL_CUE"], strict), "TECHNICAL_CUE")) == [(20, 29)]
    whole = {"TechnicalCueFilter": {"BlackFrame": {"MaxPixelThreshold": 0.1, "MinCoveragePercentage": 100}}}
    assert spans(bodies(analyse(path, ["TECHNICAL_CUE"], whole), "TECHNICAL_CUE")) == [(20, 24), (26, 29)]
    ctx = analyse(clips["cuts"], ["SHOT"], {"ShotFilter": {"MinSegmentConfidence": 95}})
    shots = bodies(ctx, "SHOT")  # the dissolve (less sure than a cut) is no shot change; still end to end
    assert spans(shots) == [(0, 49), (50, 99), (100, 124), (125, 249)]
    assert all(b["ShotSegment"]["Confidence"] >= 95 for b in shots)
    assert [b["ShotSegment"]["Index"] for b in shots] == [0, 1, 2, 3]


@pytest.mark.parametrize("full_range, black", [(False, True), (True, False)])
def test_black_is_measured_in_the_video_colour_range(clips: dict[str, Path], full_range: bool, black: bool) -> None:
    """Luma 27 is 5% of LIMITED range (16-235) but 10.6% of FULL range (0-255)."""
    path = write_luma_video(clips["folder"] / f"range{full_range}.mp4", [27] * 5, full_range)
    ctx = analyse(path, ["TECHNICAL_CUE"], {"TechnicalCueFilter": {"BlackFrame": {"MaxPixelThreshold": 0.08}}})
    assert ctx.info is not None and ctx.info.color_range == ("FULL" if full_range else None)
    assert spans(bodies(ctx, "TECHNICAL_CUE")) == ([(0, 4)] if black else [])


def test_real_footage_cuts(data: Path) -> None:
    hamilton = analyse(data / "video" / "face_recognition__short_hamilton_clip.mp4", ["SHOT"])
    assert [b["StartFrameNumber"] for b in bodies(hamilton, "SHOT")] == [0, 20, 82, 211]
    assert bodies(hamilton, "SHOT")[1]["StartTimecodeSMPTE"] == "00:00:00;20"
    walking = analyse(data / "video" / "facenet_pytorch__video.mp4", ["SHOT", "TECHNICAL_CUE"])
    assert spans(bodies(walking, "SHOT")) == [(0, 104)] and bodies(walking, "TECHNICAL_CUE") == []


def test_a_stream_that_changes_its_frame_size_midway(clips: dict[str, Path]) -> None:
    """Two H.264 transport streams one after the other: 320x180 then 160x160 frames."""
    folder = clips["folder"]
    first = write_video(folder / "first.ts", [background(320, 180, 1)] * 20).read_bytes()
    second = write_video(folder / "second.ts", [background(160, 160, 2)] * 20).read_bytes()
    (folder / "both.ts").write_bytes(first + second)
    ctx = analyse(folder / "both.ts", ["SHOT", "TECHNICAL_CUE"])
    assert spans(bodies(ctx, "SHOT")) == [(0, 19), (20, 39)] and bodies(ctx, "TECHNICAL_CUE") == []


def test_unreadable_video_and_cancelled_job(clips: dict[str, Path]) -> None:
    junk = clips["folder"] / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    with pytest.raises(VideoError):
        analyse(junk, ["SHOT"])

    class Cancelled(LocalContext):
        def cancelled(self) -> bool:
            return True

    ctx = Cancelled(clips["cuts"], {"SegmentTypes": ["SHOT"]}, fp=None)  # type: ignore[arg-type]
    segments.run(ctx)
    assert ctx.info is not None and ctx.items == [] and ctx.done[0] < 250


class Recording(LocalContext):
    """Keeps no items: counts them, and notes how far decoding was at each emit."""

    emitted = 0
    emitted_at: list[int]

    def emit(self, items: list) -> None:
        self.emitted += len(items)
        self.emitted_at = [*getattr(self, "emitted_at", []), self.done[0]]


def test_segments_are_emitted_as_they_are_found(clips: dict[str, Path]) -> None:
    ctx = Recording(clips["cuts"], {"SegmentTypes": ["SHOT", "TECHNICAL_CUE"]}, fp=None)  # type: ignore[arg-type]
    segments.run(ctx)
    assert ctx.emitted == 6 and ctx.done == (250, 250)
    assert ctx.emitted_at[0] <= 80  # the first shot (0-49) as soon as its cut is sure, not at the end
    assert ctx.emitted_at[1] <= 150  # the black run (100-124) once it ended


def test_memory_does_not_grow_with_the_video(clips: dict[str, Path]) -> None:
    """A new picture every 13 frames: a shot each, none kept once emitted."""
    import tracemalloc

    def peak(frames: int) -> tuple[int, int]:
        slides = [background(32, 32, i // 13) for i in range(frames)]
        path = write_video(clips["folder"] / f"slides{frames}.mp4", slides)
        ctx = Recording(path, {"SegmentTypes": ["SHOT", "TECHNICAL_CUE"]}, fp=None)  # type: ignore[arg-type]
        tracemalloc.start()
        try:
            segments.run(ctx)
            return ctx.emitted, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    (short, short_peak), (long, long_peak) = peak(300), peak(1200)
    assert long >= 3 * short >= 60  # about one shot every 13 frames
    assert long_peak - short_peak < 60_000  # ~2 kB a shot when segments were all kept to the end


def fading(photo: Path) -> list[np.ndarray]:
    """A real photo that fades out to black and back in, then dims to 30% and back (no cut anywhere)."""
    img = cv2.resize(cv2.imread(str(photo)), (W, H), interpolation=cv2.INTER_AREA).astype(np.float32)
    gains = [1.0] * 25 + [1 - i / 25 for i in range(1, 26)] + [0.0] * 10 + [i / 25 for i in range(1, 26)]
    gains += [1.0] * 10 + [0.65 + 0.35 * math.cos(i * math.pi / 30) for i in range(60)] + [1.0] * 10
    return [np.clip(img * g, 0, 255).astype(np.uint8) for g in gains]


@pytest.mark.parametrize("photo", ["img_10.jpg", "img_101.jpg", "img_102.jpg"])
def test_the_steps_of_a_fade_are_not_cuts(clips: dict[str, Path], data: Path, photo: str) -> None:
    """H.264 shifts a fading picture's colours now and then, which moved whole histogram bins."""
    path = write_video(clips["folder"] / f"fading-{photo}.mp4", fading(data / "text/icdar2015-train/images" / photo))
    ctx = analyse(path, ["SHOT", "TECHNICAL_CUE"])
    (black,) = spans(bodies(ctx, "TECHNICAL_CUE"))
    assert spans(bodies(ctx, "SHOT")) == [(0, black[0] - 1), black, (black[1] + 1, 164)]
