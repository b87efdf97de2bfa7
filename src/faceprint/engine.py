"""The face engine: a detector and a profile's embedders, loaded lazily, once.

It works on decoded images and :class:`Detections`; it knows nothing of
Rekognition's shapes (see ``faces`` and ``service`` for those).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from faceprint.imaging import DecodedImage
from faceprint.models import catalog
from faceprint.models.detector import Detections, DetectorSettings, YuNetDetector
from faceprint.models.embedders import DlibEmbedder, Embedder, SFaceEmbedder
from faceprint.models.profiles import Profile
from faceprint.models.store import ModelStore

MAX_FACES = 100
"""Rekognition works on the 100 largest faces of an image."""


class FaceEngine:
    def __init__(self, store: ModelStore, profile: Profile,
                 detector_settings: DetectorSettings | None = None, threads: int = 0) -> None:
        self.store = store
        self.threads = threads
        """Threads per inference call (0: onnxruntime's default, all cores)."""
        self.profile = profile
        self._detector_settings = detector_settings
        self._lock = threading.Lock()
        self._detector: YuNetDetector | None = None
        self._embedders: list[Embedder] | None = None

    @property
    def detector(self) -> YuNetDetector:
        if self._detector is None:
            with self._lock:
                if self._detector is None:
                    self._detector = YuNetDetector(self.store.path(catalog.YUNET),
                                                   self._detector_settings)
        return self._detector

    @property
    def embedders(self) -> list[Embedder]:
        """One embedder per profile component, in the profile's order."""
        if self._embedders is None:
            with self._lock:
                if self._embedders is None:
                    self._embedders = [self._make(c.embedder) for c in self.profile.components]
        return self._embedders

    def _make(self, kind: str) -> Any:
        if kind in ("sface", "sface-flip"):
            return SFaceEmbedder(self.store.path(catalog.SFACE), flip=kind == "sface-flip",
                                 threads=self.threads)
        if kind == "dlib":
            return DlibEmbedder(self.store.path(catalog.DLIB_RESNET),
                                self.store.path(catalog.DLIB_SHAPE5))
        raise ValueError(f"unknown embedder {kind!r}")

    def load(self) -> None:
        """Load every model now (instead of on first use)."""
        _ = self.detector, self.embedders

    def detect(self, image: DecodedImage, max_faces: int = MAX_FACES) -> Detections:
        """Faces in ``image``, largest first, at most ``max_faces``."""
        found = self.detector.detect(image.bgr)
        order = np.argsort(-found.areas(), kind="stable")[:max_faces]
        return found.take(order)

    def embed(self, image: DecodedImage, faces: Detections) -> np.ndarray:
        """One fused unit vector per face: N x profile.dim, float32."""
        out = np.zeros((len(faces), self.profile.dim), np.float32)
        for i in range(len(faces)):
            out[i] = self.profile.fuse([emb.embed(image, faces.boxes[i], faces.landmarks[i])
                                        for emb in self.embedders])
        return out
