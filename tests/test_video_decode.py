"""Reading video files: rotated phone video comes upright, and files that cannot be read (empty,
garbage, truncated, audio only, an empty video track) fail the analysers with a clear VideoError.
Every file is real: encoded here with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import LFW
from faceprint.video import decode, faces
from faceprint.video.context import LocalContext
from videokit import Walker, background, photos_of, walking_clip, write_video


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("video-decode")


@pytest.mark.parametrize("rotation", [90, 270])
def test_rotated_phone_video_is_read_upright(fast, clip_dir: Path, rotation: int) -> None:
    """A portrait clip stored sideways with a display matrix (as phones record): the frames,
    sizes and faces are those of the upright picture."""
    path = clip_dir / f"phone-{rotation}.mp4"
    walker = Walker(photos_of(LFW, "Angelina_Jolie")[0], 200, (80, 200), (80, 200))
    walking_clip(path, 360, 640, 1.0, [walker], rotation=rotation)
    info = decode.probe(path)
    assert (info.width, info.height, info.rotation) == (360, 640, rotation)
    first = next(iter(decode.frames(path, info)))
    assert first.bgr().shape == (640, 360, 3) and first.bgr(180).shape == (320, 180, 3)

    ctx = LocalContext(path, {"FaceAttributes": "DEFAULT"}, fast)
    faces.detect(ctx)
    assert ctx.info == info and ctx.items
    for item in ctx.items:
        face = item.body["Face"]
        box = face["BoundingBox"]
        centre = ((box["Left"] + box["Width"] / 2) * 360, (box["Top"] + box["Height"] / 2) * 640)
        assert 140 < centre[0] < 220 and 260 < centre[1] < 340, centre  # the sprite's middle, upright
        marks = {m["Type"]: (m["X"] * 360, m["Y"] * 640) for m in face["Landmarks"]}
        assert marks["eyeLeft"][1] < marks["nose"][1] < marks["mouthLeft"][1]  # head up
        assert marks["eyeLeft"][0] < marks["eyeRight"][0]  # not mirrored
        assert abs(face["Pose"]["Roll"]) < 20


def test_metadata_of_a_clip(clip_dir: Path) -> None:
    path = write_video(clip_dir / "plain.mp4", [background(320, 240, i % 4) for i in range(50)], fps=25)
    info = decode.probe(path)
    assert (info.codec, info.width, info.height, info.frames, info.rotation) == ("h264", 320, 240, 50, 0)
    assert info.frame_rate == 25.0 and info.duration_ms == 2000
    numbers = [(f.number, f.timestamp_ms) for f in decode.frames(path, info)]
    assert numbers == [(n, n * 40) for n in range(50)]
    meta = info.metadata().to_dict()
    assert meta["Codec"] == "h264" and meta["FrameWidth"] == 320 and meta["DurationMillis"] == 2000
    assert meta["Format"] == "QuickTime / MOV"  # as Rekognition names MP4 and MOV


def test_more_frames_a_second_than_the_limit_fail(clip_dir: Path) -> None:
    """Frames whose times do not advance would make a short video cost days: past the frame-rate
    limit (here lowered to 10 a second, under the clip's 25) the video is refused."""
    path = write_video(clip_dir / "fast-frames.mp4", [background(160, 120, i % 4) for i in range(75)], fps=25)
    info = decode.probe(path)
    limits = decode.VideoLimits(max_frame_rate=10)
    with pytest.raises(decode.VideoError, match="more than 10 frames a second"):
        for _ in decode.frames(path, info, limits):
            pass
    assert sum(1 for _ in decode.frames(path, info)) == 75


def test_timestamps_are_rounded_down_as_rekognition_does(clip_dir: Path) -> None:
    """At 29.97 fps frame 2 is at 66.73 ms: Rekognition says 66 (and frame 3, at exactly 100.1, 100)."""
    path = write_video(clip_dir / "ntsc.mp4", [background(320, 240, i % 3) for i in range(31)],
                       fps=Fraction(30000, 1001))
    info = decode.probe(path)
    assert abs(info.frame_rate - 29.97) < 0.01
    stamps = [f.timestamp_ms for f in decode.frames(path, info)]
    assert stamps[:4] == [0, 33, 66, 100] and stamps[30] == 1001


def test_a_stream_that_changes_size_and_restarts_its_clock(fast, clip_dir: Path) -> None:
    """Two recordings joined (MPEG-TS bytes concatenated): the frame size changes midway and the
    timestamps start again from 0. Frames keep their own size, times keep going forward, and
    faces are found in both parts, as one person."""
    parts = []
    for name, (width, height) in (("first", (640, 360)), ("second", (400, 400))):
        part = clip_dir / f"{name}.ts"
        walking_clip(part, width, height, 1.0, [Walker(photos_of(LFW, "Colin_Powell")[0], 150, (100, 100), (200, 120))])
        parts.append(part.read_bytes())
    path = clip_dir / "joined.ts"
    path.write_bytes(b"".join(parts))
    info = decode.probe(path)
    frames = [(f.timestamp_ms, f.width, f.height, f.bgr(200).shape) for f in decode.frames(path, info)]
    assert len(frames) == 50 and [t for t, *_ in frames] == sorted({t for t, *_ in frames})
    assert frames[0][1:] == (640, 360, (112, 200, 3)) and frames[-1][1:] == (400, 400, (200, 200, 3))
    ctx = LocalContext(path, {"CollectionId": "joined"}, fast)
    fast.create_collection("joined")
    faces.search(ctx)
    stamps = sorted(item.timestamp_ms for item in ctx.items)
    assert stamps[0] < 1000 <= stamps[-1] and len(stamps) >= 8
    assert {item.index for item in ctx.items} == {0}
    for item in ctx.items:
        box = item.body["Person"]["Face"]["BoundingBox"]
        assert box["Left"] >= 0 and box["Left"] + box["Width"] <= 1 and 0.05 < box["Width"] < 0.3


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        for n in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, n * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _empty_video_track(path: Path) -> Path:
    """An MP4 whose video track holds no frame (its audio track has some)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("h264", rate=25)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        for n in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, n * 1024
            for packet in audio.encode(frame):
                container.mux(packet)
    return path


def _clip_bytes(clip_dir: Path, faststart: bool) -> bytes:
    path = clip_dir / f"whole-{faststart}.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream("h264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(75):
            for packet in stream.encode(av.VideoFrame.from_ndarray(background(320, 240, i % 5), format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def _bad_file(kind: str, clip_dir: Path) -> Path:
    path = clip_dir / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(3).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    elif kind == "truncated":  # the index (moov) is at the end: cut off
        data = _clip_bytes(clip_dir, faststart=False)
        path.write_bytes(data[:len(data) // 2])
    elif kind == "truncated-indexed":  # the index is first and lists frames the file no longer holds
        data = _clip_bytes(clip_dir, faststart=True)
        path.write_bytes(data[:len(data) * 6 // 10])
    elif kind == "damaged":  # a valid index over zeroed frame data
        data = bytearray(_clip_bytes(clip_dir, faststart=False))
        start = data.find(b"mdat") + 8
        data[start:start + 20_000] = bytes(20_000)
        path.write_bytes(bytes(data))
    elif kind == "audio-only":
        _audio_only(path)
    elif kind == "no-frames":
        _empty_video_track(path)
    return path


BAD = {
    "empty": "The video file is empty.",
    "garbage": "not a video faceprint can read",
    "truncated": "damaged or truncated",
    "truncated-indexed": "The video is truncated: its index lists 75 frames",
    "damaged": "first frame does not decode",
    "audio-only": "no video frames (it is audio only",
    "no-frames": "no video frames",
}


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("operation", ["detect", "search"])
def test_unreadable_video_fails_with_a_clear_message(fast, clip_dir: Path, kind: str, operation: str) -> None:
    path = _bad_file(kind, clip_dir)
    if operation == "search":
        fast.create_collection(f"bad-{kind}")
    ctx = LocalContext(path, {"CollectionId": f"bad-{kind}"} if operation == "search" else {}, fast)
    with pytest.raises(decode.VideoError) as caught:
        getattr(faces, operation)(ctx)
    assert BAD[kind] in caught.value.message
    assert str(path) not in caught.value.message and "Traceback" not in caught.value.message


def test_search_of_a_missing_collection_fails_the_job(fast, clip_dir: Path) -> None:
    path = write_video(clip_dir / "short.mp4", [background(320, 240, 1)] * 10)
    with pytest.raises(decode.VideoError, match="does not exist"):
        faces.search(LocalContext(path, {"CollectionId": "no-such-collection"}, fast))
