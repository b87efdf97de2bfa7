"""Collections and faces (the source of truth), behind a small interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class CollectionRow:
    collection_id: str
    arn: str
    face_model_version: str
    dim: int
    created: float


@dataclass
class FaceRow:
    face_id: str
    collection_id: str
    image_id: str
    external_image_id: str | None
    box: tuple[float, float, float, float]
    """width, height, left, top as ratios."""
    confidence: float
    vector: np.ndarray
    user_id: str | None = None
    seq: int = 0


class Store(Protocol):
    def create_collection(self, row: CollectionRow) -> None: ...
    def get_collection(self, collection_id: str) -> CollectionRow | None: ...
    def list_collections(self, after: str | None, limit: int) -> list[CollectionRow]: ...
    def delete_collection(self, collection_id: str) -> bool: ...
    def count_faces(self, collection_id: str) -> int: ...
    def add_faces(self, faces: list[FaceRow], source: tuple[str, str, str] | None = None) -> None: ...
    def imported(self, collection_id: str) -> set[str]: ...
    def list_faces(self, collection_id: str, after_seq: int, limit: int,
                   face_ids: list[str] | None = None) -> list[FaceRow]: ...
    def get_faces(self, collection_id: str, face_ids: list[str]) -> list[FaceRow]: ...
    def delete_faces(self, collection_id: str, face_ids: list[str]) -> list[str]: ...
    def all_vectors(self, collection_id: str) -> tuple[list[str], np.ndarray]: ...
