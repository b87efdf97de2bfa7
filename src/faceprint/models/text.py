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
        with self._lock:
            out = self._engine(bgr, return_word_box=True)
        if out.boxes is None or out.txts is None:
            return []
        words_per_line = out.word_results or [()] * len(out.txts)
        lines = []
        for quad, text, score, words in zip(out.boxes, out.txts, out.scores, words_per_line, strict=False):
            line = TextLine(text=str(text).strip(), confidence=float(score), quad=np.asarray(quad, np.float32),
                            words=[TextWord(str(w[0]).strip(), float(w[1]), np.asarray(w[2], np.float32))
                                   for w in words if isinstance(w, tuple) and len(w) == 3 and str(w[0]).strip()])
            if line.text and not line.words:
                line.words = split_evenly(line)
            if line.text:
                lines.append(line)
        return lines


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
