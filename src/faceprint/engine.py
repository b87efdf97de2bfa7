"""The face engine: a detector and a profile's embedders, loaded lazily, once.

The built-in profiles detect with YuNet and embed with SFace and dlib; an operator profile
(``Profile.operator``) detects with its SCRFD (or YuNet) and embeds with its ArcFace-style
recogniser, from the files in its folder, each checked against its SHA-256 when loaded.

It works on decoded images and :class:`Detections`; it knows nothing of
Rekognition's shapes (see ``faces`` and ``service`` for those).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from faceprint.imaging import DecodedImage
from faceprint.models import catalog
from faceprint.models.detector import Detections, DetectorSettings, YuNetDetector, face_confidence
from faceprint.models.embedders import DlibEmbedder, Embedder, SFaceEmbedder
from faceprint.models.profiles import Profile
from faceprint.models.store import ModelStore

if TYPE_CHECKING:
    from faceprint.models.arcface import ArcFaceEmbedder
    from faceprint.models.scrfd import ScrfdDetector

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
        self._detector: YuNetDetector | ScrfdDetector | None = None
        self._embedders: list[Embedder] | None = None

    @property
    def detector(self) -> YuNetDetector | ScrfdDetector:
        if self._detector is None:
            with self._lock:
                if self._detector is None:
                    self._detector = (operator_detector(self.profile, self.threads)
                                      or YuNetDetector(self.store.path(catalog.YUNET), self._detector_settings))
        return self._detector

    @property
    def scrfd(self) -> bool:
        """Whether faces are found by an operator's SCRFD (not YuNet)."""
        spec = self.profile.operator
        return spec is not None and spec.detector.kind == "scrfd"

    def face_confidence(self, score: float) -> float:
        """Rekognition's face ``Confidence`` for a raw detector score: YuNet's measured table
        (``detector.face_confidence``); an SCRFD score times 100, rounded to 4 places (not measured)."""
        return round(float(score) * 100.0, 4) if self.scrfd else face_confidence(score)

    @property
    def embedders(self) -> list[Embedder]:
        """One embedder per profile component, in the profile's order."""
        if self._embedders is None:
            with self._lock:
                if self._embedders is None:
                    self._embedders = [self._make(c.embedder) for c in self.profile.components]
        return self._embedders

    def _make(self, kind: str) -> Any:
        if self.profile.operator is not None:
            return operator_recogniser(self.profile, self.threads)
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


def operator_detector(profile: Profile, threads: int = 0, verify: bool = True) -> ScrfdDetector | None:
    """An operator profile's SCRFD detector (None where the profile detects with YuNet)."""
    spec = profile.operator
    if spec is None or spec.detector.kind == "yunet":
        return None
    from faceprint.models.registry import verified
    from faceprint.models.scrfd import ScrfdDetector

    det = spec.detector
    path = profile.file_path("detector")
    return ScrfdDetector(verified(path, det.sha256) if verify else path, score_threshold=det.score_threshold,
                         nms_threshold=det.nms_threshold, max_side=det.max_side, threads=threads)


def operator_recogniser(profile: Profile, threads: int = 0, verify: bool = True) -> ArcFaceEmbedder:
    """An operator profile's recogniser, with the conventions its profile declares."""
    from faceprint.models.arcface import ArcFaceEmbedder, Conventions
    from faceprint.models.registry import verified

    if profile.operator is None:
        raise ValueError(f"profile {profile.name!r} is not an operator profile")
    rec = profile.operator.recogniser
    path = profile.file_path("recogniser")
    conventions = Conventions(input_size=rec.input_size, mean=rec.mean, std=rec.std, colour=rec.colour,
                              layout=rec.layout, template=rec.template, output_dim=rec.output_dim)
    return ArcFaceEmbedder(verified(path, rec.sha256) if verify else path, conventions, name=rec.kind,
                           threads=threads)
