"""What an analyser gets to run one video job, and what it gives back.

An analyser is a function ``run(ctx: JobContext) -> None`` (see ``faceprint.video.analysers``):
it reads ``ctx.path`` with :mod:`faceprint.video.decode`, reports the video's metadata once,
emits result items as it finds them (in any order: the job store sorts them), reports progress,
and stops early when ``ctx.cancelled()``. A video it cannot read raises
:class:`faceprint.video.decode.VideoError`: the job fails with that message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from faceprint.video.decode import VideoInfo, VideoLimits

if TYPE_CHECKING:
    from faceprint.service import Faceprint


@dataclass(frozen=True)
class Item:
    """One result item: Rekognition's JSON of a ``PersonMatch``, ``FaceDetection``,
    ``TextDetectionResult`` or ``SegmentDetection``, with the keys the Get operations sort by."""

    timestamp_ms: int
    index: int
    """The person index (face search), else 0."""
    body: dict[str, Any]


class JobContext(Protocol):
    path: Path
    """The video file."""
    params: dict[str, Any]
    """The Start request's members in Rekognition's names (``CollectionId``, ``FaceMatchThreshold``,
    ``FaceAttributes``, ``Filters``, ``SegmentTypes``), validated; defaults not filled in."""
    fp: Faceprint
    """This worker's Faceprint: engine, profile, collections, text reader."""
    limits: VideoLimits

    def metadata(self, info: VideoInfo) -> None:
        """The video's metadata, once, before any item."""

    def emit(self, items: list[Item]) -> None:
        """Result items found so far (any order; may be called many times)."""

    def progress(self, frames_done: int, frames_total: int) -> None:
        """Frames decoded so far, of about how many (cheap: call it every frame or every few)."""

    def cancelled(self) -> bool:
        """True once the job should stop (the server is shutting down, the job expired)."""


@dataclass
class LocalContext:
    """A :class:`JobContext` that keeps everything in memory: for running an analyser directly
    (tests, benchmarks, the synchronous CLI)."""

    path: Path
    params: dict[str, Any]
    fp: Faceprint
    limits: VideoLimits = field(default_factory=VideoLimits)
    info: VideoInfo | None = None
    items: list[Item] = field(default_factory=list)
    done: tuple[int, int] = (0, 0)

    def metadata(self, info: VideoInfo) -> None:
        self.info = info

    def emit(self, items: list[Item]) -> None:
        self.items.extend(items)

    def progress(self, frames_done: int, frames_total: int) -> None:
        self.done = (frames_done, frames_total)

    def cancelled(self) -> bool:
        return False
