"""Read video files with PyAV (FFmpeg inside the wheel): probe, then decode every frame.

Decoding every frame is cheap (about 0.06 CPU-s per second of 720p25 H.264) and cannot be
skipped anyway (later frames refer to earlier ones); what costs is turning a frame into pixels,
so :class:`Frame` converts only when asked, at the size asked (FFmpeg's swscale shrinks while it
converts). Frames come upright: a phone video's display rotation is applied.

Everything here treats the file as hostile: the size a stream claims is checked before a frame
is decoded, the frames and time decoded are counted against the limits as they come (a
container's declared duration may lie), and FFmpeg's errors become :class:`VideoError` with a
message fit for a job's ``StatusMessage``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceprint.video.types import AudioMetadata, VideoMetadata

MAX_VIDEO_BYTES = 10 * 1024**3
"""Rekognition Video's limit: 10 GB."""
MAX_VIDEO_SECONDS = 6 * 3600
"""Rekognition Video's limit: 6 hours."""
MAX_FRAME_PIXELS = 8192 * 4352
"""The largest frame decoded (8K); larger claims are refused before any frame is decoded."""
MAX_FRAME_RATE = 300.0
"""Frames a second at most (phones film slow motion at 240)."""
MAX_BAD_PACKETS = 200
"""Undecodable packets skipped in a row before the file is taken for corrupt."""
MIN_SHARE_DEMUXED = 0.95
"""A file whose stream holds fewer than this share of the frames its index lists is truncated."""


class VideoError(Exception):
    """The video cannot be read: the job fails with ``message`` as its ``StatusMessage``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class VideoTooLong(VideoError):
    """The video is longer than the limit (found while decoding: the container may have lied)."""


@dataclass(frozen=True)
class VideoLimits:
    max_bytes: int = MAX_VIDEO_BYTES
    max_seconds: float = MAX_VIDEO_SECONDS
    max_frame_pixels: int = MAX_FRAME_PIXELS
    max_frame_rate: float = MAX_FRAME_RATE
    """Frames decoded a second of the video's time, on average from its start (plus a second's
    worth): frames whose times do not advance would otherwise make a short video cost days."""


@dataclass(frozen=True)
class VideoInfo:
    """What the file says of its first video stream (sizes as displayed, after rotation)."""

    codec: str
    format: str
    duration_ms: int
    frame_rate: float
    width: int
    height: int
    rotation: int
    """Degrees counterclockwise that frames are turned to be upright (the display matrix's
    rotation, as PyAV reads it): 0, 90, 180 or 270."""
    frames: int
    """The number of frames, exact when the container says, else estimated from duration and rate."""
    color_range: str | None = None
    audio: tuple[AudioMetadata, ...] = field(default=())

    def metadata(self) -> VideoMetadata:
        return VideoMetadata(codec=self.codec, duration_millis=self.duration_ms, format=self.format,
                             frame_rate=round(self.frame_rate, 3), frame_height=self.height,
                             frame_width=self.width, color_range=self.color_range)


class Frame:
    """One decoded frame: ``number`` counts from 0, ``timestamp_ms`` from the stream's start."""

    def __init__(self, av_frame: Any, number: int, timestamp_ms: int, rotation: int) -> None:
        self.av_frame = av_frame
        self.number = number
        self.timestamp_ms = timestamp_ms
        self.rotation = rotation
        self._bgr: np.ndarray | None = None

    @property
    def width(self) -> int:
        """Width as displayed (after rotation)."""
        return int(self.av_frame.height if self.rotation in (90, 270) else self.av_frame.width)

    @property
    def height(self) -> int:
        return int(self.av_frame.width if self.rotation in (90, 270) else self.av_frame.height)

    def bgr(self, width: int | None = None) -> np.ndarray:
        """The upright frame as a BGR ``uint8`` array, ``width`` pixels wide (None: full size;
        the full-size array is kept, so asking twice converts once)."""
        if width is None or width >= self.width:
            if self._bgr is None:
                self._bgr = self._convert(None, None, "bgr24")
            return self._bgr
        height = max(2, round(self.height * width / self.width))
        return self._convert(width, height, "bgr24")

    def grey(self, width: int, height: int) -> np.ndarray:
        """A small upright greyscale (luma) thumbnail, ``width`` x ``height``: for change and
        black-frame measures."""
        return self._convert(width, height, "gray")

    def _convert(self, width: int | None, height: int | None, fmt: str) -> np.ndarray:
        if self.rotation in (90, 270) and width is not None:
            width, height = height, width
        array = self.av_frame.to_ndarray(width=width, height=height, format=fmt,
                                         interpolation="AREA" if width is not None else None)
        return _upright(array, self.rotation)


def _upright(array: np.ndarray, rotation: int) -> np.ndarray:
    if rotation == 0:
        return array
    return np.ascontiguousarray(np.rot90(array, k=rotation // 90))


def probe(path: str | os.PathLike, limits: VideoLimits | None = None) -> VideoInfo:
    """The video's metadata, or :class:`VideoError` (not a video, no video stream, too large)."""
    limits = limits or VideoLimits()
    path = Path(path)
    size = _file_size(path)
    if size > limits.max_bytes:
        raise VideoTooLong(f"The video is {size} bytes; the limit is {limits.max_bytes} bytes.")
    if size == 0:
        raise VideoError("The video file is empty.")
    container = open_container(path)
    try:
        return _info(container, limits)
    finally:
        container.close()


def open_container(path: Path) -> Any:
    import av

    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"The file is not a video faceprint can read, or it is damaged or truncated "
                         f"({_reason(exc)}).") from None


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise VideoError(f"The video file cannot be read ({exc.strerror or type(exc).__name__}).") from None


def _info(container: Any, limits: VideoLimits) -> VideoInfo:
    if not container.streams.video:
        raise VideoError("The file has no video frames (it is audio only, its video track is empty, "
                         "or it is not a video).")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if width <= 0 or height <= 0:
        raise VideoError("The video stream has no frame size: the file is damaged or not a video.")
    if width * height > limits.max_frame_pixels:
        raise VideoTooLong(f"The video's frames are {width} x {height} pixels; the limit is "
                           f"{limits.max_frame_pixels} pixels a frame.")
    rate = frame_rate(stream)
    duration = _duration_seconds(container, stream)
    if duration > limits.max_seconds:
        raise VideoTooLong(f"The video is {duration:.0f} s long; the limit is {limits.max_seconds:.0f} s.")
    rotation = _first_frame_rotation(container, stream)
    if rotation in (90, 270):
        width, height = height, width
    frames = int(stream.frames or 0) or max(1, round(duration * rate))
    return VideoInfo(codec=ctx.name or "unknown", format=_format_name(container),
                     duration_ms=int(round(duration * 1000)), frame_rate=rate, width=width, height=height,
                     rotation=rotation, frames=frames, color_range=_color_range(ctx),
                     audio=tuple(_audio(s, duration) for s in container.streams.audio))


def _format_name(container: Any) -> str:
    """The container format as Rekognition names it ("QuickTime / MOV" for MP4 and MOV): FFmpeg's
    long name."""
    fmt = container.format
    return str(getattr(fmt, "long_name", None) or fmt.name or "unknown")


def frame_rate(stream: Any, lowest: float = 0.1, highest: float = 1000.0) -> float:
    """A video stream's frame rate: the first of its average, guessed and base rates that is a
    number from ``lowest`` to ``highest`` (a claim outside is not believed), else 25."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        try:
            value = float(rate) if rate is not None else 0.0
        except (ZeroDivisionError, TypeError, ValueError):
            value = 0.0
        if math.isfinite(value) and lowest <= value <= highest:
            return value
    return 25.0


def _duration_seconds(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    return 0.0


def _first_frame_rotation(container: Any, stream: Any) -> int:
    """Counterclockwise degrees to turn frames upright, from the first frame's display matrix
    (PyAV exposes it on frames); decoding that frame also proves that one decodes at all."""
    import av

    try:
        for av_frame in container.decode(stream):
            return int(round(float(av_frame.rotation or 0) / 90.0)) % 4 * 90
    except (av.FFmpegError, ValueError) as exc:
        raise VideoError(f"The video's first frame does not decode ({_reason(exc)}).") from None
    raise VideoError("The video has no frame that decodes (empty, truncated or damaged).")


def _color_range(ctx: Any) -> str | None:
    value = getattr(ctx, "color_range", None)
    return {1: "LIMITED", 2: "FULL"}.get(int(value)) if isinstance(value, int) else None


def _audio(stream: Any, video_seconds: float) -> AudioMetadata:
    ctx = stream.codec_context
    seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else video_seconds
    return AudioMetadata(codec=ctx.name or "unknown", duration_millis=int(round(seconds * 1000)),
                         sample_rate=int(ctx.sample_rate or 0), number_of_channels=int(ctx.channels or 0))


def frames(path: str | os.PathLike, info: VideoInfo, limits: VideoLimits | None = None) -> Iterator[Frame]:
    """Every frame of the first video stream, in order, upright. Undecodable packets are skipped
    (up to :data:`MAX_BAD_PACKETS` in a row); a stream that yields no frame at all, that holds
    clearly fewer frames than its index lists (a truncated file), or that runs past the time
    limit, raises :class:`VideoError`."""
    import av

    limits = limits or VideoLimits()
    container = open_container(Path(path))
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = stream.start_time or 0
        base = float(stream.time_base) if stream.time_base is not None else 0.0
        number = bad = packets = 0
        clock = _Clock(1000.0 / info.frame_rate)
        for packet in container.demux(stream):
            packets += packet.size > 0
            try:
                decoded = packet.decode()
            except (av.FFmpegError, ValueError) as exc:
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    raise VideoError(f"The video is damaged: {bad} packets in a row do not decode "
                                     f"({_reason(exc)}).") from None
                continue
            bad = 0
            for av_frame in decoded:
                ms = clock.time(_timestamp_ms(av_frame, start, base, number, info.frame_rate))
                if ms > limits.max_seconds * 1000:
                    raise VideoTooLong(f"The video runs past the limit of {limits.max_seconds:.0f} s.")
                if number > (ms / 1000 + 1) * limits.max_frame_rate:
                    raise VideoError(f"The video has more than {limits.max_frame_rate:.0f} frames a second "
                                     "(its frame times do not advance): faceprint does not read it.")
                yield Frame(av_frame, number, ms, info.rotation)
                number += 1
        if number == 0:
            raise VideoError("The video has no frame that decodes (empty, truncated or damaged).")
        _check_complete(packets, int(stream.frames or 0))
    except av.FFmpegError as exc:
        raise VideoError(f"The video could not be decoded ({_reason(exc)}).") from None
    finally:
        container.close()


class _Clock:
    """Frame times that never go back: a stream whose timestamps jump backwards (joined
    recordings, a reset camera clock) continues one frame after the last time given."""

    def __init__(self, frame_ms: float) -> None:
        self.frame_ms = frame_ms
        self.offset = 0
        self.last: int | None = None

    def time(self, ms: int) -> int:
        ms += self.offset
        if self.last is not None and ms <= self.last - self.frame_ms / 2:
            jump = self.last + max(1, math.floor(self.frame_ms)) - ms
            self.offset += jump
            ms += jump
        self.last = max(ms, self.last if self.last is not None else ms)
        return ms


def _check_complete(packets: int, listed: int) -> None:
    """A container whose index lists more frames than its data holds was cut short."""
    if listed and packets < listed * MIN_SHARE_DEMUXED - 1:
        raise VideoError(f"The video is truncated: its index lists {listed} frames, the file holds {packets}.")


def _timestamp_ms(av_frame: Any, start: int, base: float, number: int, rate: float) -> int:
    """Milliseconds rounded down, as Rekognition reports them (100.67 ms is 100); the epsilon
    keeps exact values (1001.0 computed as 1000.9999...) from dropping a millisecond."""
    if av_frame.pts is not None and base > 0:
        return max(0, math.floor((av_frame.pts - start) * base * 1000 + 1e-6))
    return math.floor(number * 1000 / rate + 1e-6)


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.split(": '")[0][:200]  # FFmpeg's messages end with the file name: keep paths out
