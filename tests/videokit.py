"""Real encoded video for tests: write frames with PyAV (H.264 in MP4 by default), and compose
simple clips of LFW faces moving over a background."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np


def write_video(path: Path, frames: Iterable[np.ndarray], fps: int = 25, codec: str = "h264",
                rotation: int = 0, crf: int = 23) -> Path:
    """Encode BGR ``uint8`` frames (all the same size, even sides) to ``path``. ``rotation``
    sets the display matrix (counterclockwise degrees), as a phone does."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=fps)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
                if codec in ("h264", "libx264"):
                    stream.options = {"crf": str(crf), "preset": "veryfast"}
                if rotation:
                    stream.set_display_rotation(rotation)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return path


def face_sprite(image_path: Path, width: int) -> tuple[np.ndarray, np.ndarray]:
    """An LFW photo scaled to ``width`` px, with a feathered elliptical mask (so the detector sees
    a face, not the photo's square edges)."""
    img = cv2.imread(str(image_path))
    img = cv2.resize(img, (width, width), interpolation=cv2.INTER_AREA)
    mask = np.zeros((width, width), np.float32)
    cv2.ellipse(mask, (width // 2, width // 2), (int(width * 0.36), int(width * 0.46)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), width * 0.03 + 0.5)
    return img, mask[:, :, None]


def paste(frame: np.ndarray, sprite: tuple[np.ndarray, np.ndarray], x: int, y: int) -> None:
    """Blend ``sprite`` into ``frame`` with its top-left corner at (x, y), clipped to the frame."""
    img, mask = sprite
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, frame.shape[1]), min(y + h, frame.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    part = frame[y0:y1, x0:x1].astype(np.float32)
    src = img[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.float32)
    m = mask[y0 - y:y1 - y, x0 - x:x1 - x]
    frame[y0:y1, x0:x1] = (src * m + part * (1 - m)).astype(np.uint8)


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, textured, face-free background."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (max(2, height // 80), max(2, width // 80), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def write_luma_video(path: Path, lumas: Iterable[int], full_range: bool, size: tuple[int, int] = (64, 48),
                     fps: int = 25) -> Path:
    """Encode grey frames whose luma (Y) samples are exactly ``lumas`` (one value a frame), in
    LIMITED range (yuv420p, black is 16) or FULL range (yuvj420p, black is 0): to test what a
    video's ColorRange does to black."""
    import av

    fmt = "yuvj420p" if full_range else "yuv420p"
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, fmt
        stream.options = {"crf": "0", "preset": "veryfast"}
        for luma in lumas:
            frame = av.VideoFrame(width, height, fmt)
            for plane, value in zip(frame.planes, (luma, 128, 128), strict=True):
                plane.update(bytes([value]) * plane.buffer_size)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def photos_of(lfw: Path, name: str) -> list[Path]:
    """An LFW person's photos, in order (their numbers have gaps)."""
    return sorted((Path(lfw) / "images" / name).glob("*.jpg"))


class Walker:
    """A face sprite moving in a straight line from ``start`` to ``end`` (top-left corners, px)
    while it is shown, from ``first_s`` to ``last_s`` (seconds, inclusive)."""

    def __init__(self, photo: Path, width: int, start: tuple[float, float], end: tuple[float, float],
                 first_s: float = 0.0, last_s: float = float("inf")) -> None:
        self.sprite = face_sprite(photo, width)
        self.width = width
        self.start, self.end = start, end
        self.first_s, self.last_s = first_s, last_s

    def at(self, t: float, seconds: float) -> tuple[int, int] | None:
        """The sprite's top-left corner at ``t`` seconds of a ``seconds``-long clip, or None."""
        if not self.first_s <= t <= min(self.last_s, seconds):
            return None
        span = max(min(self.last_s, seconds) - self.first_s, 1e-9)
        k = (t - self.first_s) / span
        return (int(round(self.start[0] + k * (self.end[0] - self.start[0]))),
                int(round(self.start[1] + k * (self.end[1] - self.start[1]))))


def walking_clip(path: Path, width: int, height: int, seconds: float, walkers: list[Walker], fps: int = 25,
                 seed: int = 0, rotation: int = 0) -> list[list[tuple[int, int] | None]]:
    """Encode ``walkers`` over a still background; returns, per frame, each walker's sprite corner
    (None: not shown). With ``rotation``, frames are stored turned by ``-rotation`` degrees and the
    display matrix turns them back upright, as a phone does (sizes and corners are upright)."""
    bg = background(width, height, seed)
    places = [[w.at(n / fps, seconds) for w in walkers] for n in range(int(round(seconds * fps)))]

    def frames():
        for where in places:
            frame = bg.copy()
            for walker, corner in zip(walkers, where, strict=True):
                if corner is not None:
                    paste(frame, walker.sprite, *corner)
            yield np.ascontiguousarray(np.rot90(frame, k=-rotation // 90)) if rotation else frame

    write_video(path, frames(), fps=fps, rotation=rotation)
    return places
