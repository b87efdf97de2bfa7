"""Text detection and recognition: PP-OCRv6 (det + rec) and the PP-OCR angle classifier,
run by rapidocr on onnxruntime from the model files inside its wheel.

The files are located in the installed rapidocr package, checked against pinned SHA-256
digests and passed to rapidocr by path, so rapidocr never downloads anything. The recogniser
reads whole lines; rapidocr's column alignment splits each line into words with their own
quadrilaterals, which follow rotated text.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceprint.errors import ModelUnavailableError
from faceprint.models.catalog import RAPIDOCR_VERSION, TEXT_MODELS
from faceprint.models.store import sha256_of

TEXT_MODEL_VERSION = f"faceprint-text-1 (rapidocr-{RAPIDOCR_VERSION}, PP-OCRv6 small det+rec, PP-OCR cls)"

MAX_ASPECT = 4
"""rapidocr scales an image's short side up to 736 px for detection, so its work grows with the
aspect ratio: a 4000 x 80 strip became a 36,800 x 736 detection input, and a 20000 x 100 one
failed to resize at all. A longer picture is brought within rapidocr's 2,000 px first and padded
to this ratio, so that any picture costs about what a 2944 x 736 one does."""
MAX_SIDE = 2000
"""rapidocr's ``Global.max_side_len``: larger pictures are shrunk to it anyway."""


@dataclass
class TextWord:
    text: str
    confidence: float
    """0-1."""
    quad: np.ndarray
    """4 x 2 pixels: top-left, top-right, bottom-right, bottom-left along the text."""


@dataclass
class TextLine:
    text: str
    confidence: float
    quad: np.ndarray
    words: list[TextWord]


def packaged_model_paths() -> dict[str, Path]:
    """The text model files inside the installed rapidocr, verified against the pinned digests."""
    try:
        import rapidocr
    except ImportError as exc:  # pragma: no cover - a dependency
        raise ModelUnavailableError(f"rapidocr=={RAPIDOCR_VERSION} is not installed: {exc}") from exc
    folder = Path(rapidocr.__file__).parent / "models"
    paths = {}
    for role, (name, digest) in TEXT_MODELS.items():
        path = folder / name
        if not path.is_file() or sha256_of(path) != digest:
            raise ModelUnavailableError(
                f"{path} is missing or fails its SHA-256 check; reinstall rapidocr=={RAPIDOCR_VERSION}."
            )
        paths[role] = path
    return paths


class TextReader:
    """Thread-safe wrapper around one rapidocr engine (calls are serialised)."""

    def __init__(self, threads: int = 0) -> None:
        from rapidocr import RapidOCR

        paths = packaged_model_paths()
        params: dict[str, Any] = {
            "Global.log_level": "error",
            "Global.return_word_box": True,
            "Det.model_path": str(paths["det"]),
            "Rec.model_path": str(paths["rec"]),
            "Cls.model_path": str(paths["cls"]),
            "EngineConfig.onnxruntime.intra_op_num_threads": threads if threads > 0 else -1,
        }
        self._engine = RapidOCR(params=params)
        self._lock = threading.Lock()

    def read(self, bgr: np.ndarray) -> list[TextLine]:
        """The lines of text in ``bgr``, with quads in its pixels."""
        picture, scale = bounded(bgr)
        with self._lock:
            out = self._engine(picture, return_word_box=True)
        if out.boxes is None or out.txts is None:
            return []
        words_per_line = out.word_results or [()] * len(out.txts)
        lines = []
        for quad, text, score, words in zip(out.boxes, out.txts, out.scores, words_per_line, strict=False):
            line = TextLine(text=str(text).strip(), confidence=float(score), quad=_pixels(quad, scale),
                            words=[TextWord(str(w[0]).strip(), float(w[1]), _pixels(w[2], scale))
                                   for w in words if isinstance(w, tuple) and len(w) == 3 and str(w[0]).strip()])
            if line.text and not line.words:
                line.words = split_evenly(line)
            if line.text:
                lines.append(line)
        return lines


def bounded(bgr: np.ndarray) -> tuple[np.ndarray, float]:
    """``bgr`` as rapidocr reads it in bounded time, and the scale it was shrunk by: unchanged
    within ``MAX_ASPECT``; else shrunk to ``MAX_SIDE`` and padded (right or bottom, with its mean
    colour) to ``MAX_ASPECT``, so that its quads only need the scale undone."""
    import cv2

    height, width = bgr.shape[:2]
    if max(height, width) <= MAX_ASPECT * min(height, width):
        return bgr, 1.0
    scale = min(1.0, MAX_SIDE / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        height, width = bgr.shape[:2]
    short = -(-max(height, width) // MAX_ASPECT)
    colour = [float(c) for c in bgr.reshape(-1, bgr.shape[2]).mean(axis=0)] if bgr.ndim == 3 else float(bgr.mean())
    return cv2.copyMakeBorder(bgr, 0, max(short - height, 0), 0, max(short - width, 0), cv2.BORDER_CONSTANT,
                              value=colour), scale


def _pixels(quad: Any, scale: float) -> np.ndarray:
    return np.asarray(quad, np.float32) / np.float32(scale)


def split_evenly(line: TextLine) -> list[TextWord]:
    """Words of a line whose word boxes are unknown: the quad cut in proportion to characters."""
    tokens = line.text.split()
    total = max(len(line.text), 1)
    top_left, top_right, bottom_right, bottom_left = line.quad
    words, start = [], 0
    for token in tokens:
        start = line.text.index(token, start)
        a, b = start / total, (start + len(token)) / total
        start += len(token)
        quad = np.array([top_left + (top_right - top_left) * a, top_left + (top_right - top_left) * b,
                         bottom_left + (bottom_right - bottom_left) * b,
                         bottom_left + (bottom_right - bottom_left) * a], np.float32)
        words.append(TextWord(token, line.confidence, quad))
    return words
