"""Collection, face and search operations (Rekognition's): :class:`Collections`, which
``Faceprint`` delegates to.

SQLite (``HOME/faceprint.db``) is the source of truth, vectors included; each collection's
vector index is derived from it (``faceprint.index.cache``) and brought up to date before every
search, so a deleted face is gone from every search that starts after the delete returns.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from faceprint.attributes import requested
from faceprint.errors import (
    InvalidPaginationTokenException,
    InvalidParameterException,
    ResourceNotFoundException,
    shown,
)
from faceprint.faces import (
    Analysis,
    MeasuredFace,
    validate_attributes,
    validate_percent,
    validate_quality_filter,
)
from faceprint.imaging import DecodedImage
from faceprint.index import Indexes, VectorIndex
from faceprint.models.profiles import Profile
from faceprint.store import CollectionRow, FaceRow, Store
from faceprint.types import (
    BoundingBox,
    CreateCollectionResult,
    DeleteCollectionResult,
    DeleteFacesResult,
    DescribeCollectionResult,
    Face,
    FaceDetail,
    FaceMatch,
    FaceRecord,
    IndexFacesResult,
    ListCollectionsResult,
    ListFacesResult,
    SearchFacesByImageResult,
    SearchFacesResult,
    UnindexedFace,
    UnsuccessfulFaceDeletion,
)

COLLECTION_ID = re.compile(r"[a-zA-Z0-9_.\-]{1,255}")
EXTERNAL_IMAGE_ID = re.compile(r"[a-zA-Z0-9_.\-:]{1,255}")
FACE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def check_pattern(name: str, value: Any, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidParameterException(f"{name} {shown(value)} does not match {pattern.pattern}.")
    return value


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        top = f" to {high}" if high is not None else " or more"
        raise InvalidParameterException(f"{name} must be an integer from {low}{top}, got {shown(value)}.")
    return value


def encode_token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


MAX_TOKEN = 255
"""The model's PaginationToken length: every NextToken issued here fits."""
MAX_SEQ = 2**63 - 1
DIGEST = re.compile(r"[0-9a-f]{32}")


def decode_token(token: str | None, valid: Callable[[Any], bool]) -> Any:
    """The position a NextToken holds, if ``valid`` says this service could have issued it; else
    ``InvalidPaginationTokenException`` (a forged token never reaches the store)."""
    if token is None:
        return None
    value: Any = None
    if isinstance(token, str) and len(token) <= MAX_TOKEN:
        try:
            value = json.loads(base64.urlsafe_b64decode(token.encode()))
        except (ValueError, TypeError, RecursionError):  # bad base64, JSON or UTF-8; a lone surrogate
            value = None
    if value is None or not valid(value):
        raise InvalidPaginationTokenException("NextToken is not one this service issued.")
    return value


def is_face_position(value: Any) -> bool:
    """A ListFaces position: a face's sequence number."""
    return type(value) is int and 0 <= value <= MAX_SEQ


def is_collection_position(value: Any) -> bool:
    """A ListCollections position: a collection id, or ``["long", DIGEST]`` after a long one."""
    if isinstance(value, list):
        return len(value) == 2 and value[0] == "long" and isinstance(value[1], str) and bool(DIGEST.fullmatch(value[1]))
    return isinstance(value, str) and bool(COLLECTION_ID.fullmatch(value))


Analyze = Callable[..., Analysis]
"""``analyze(image, max_faces=..., quality_filter=...)``: detection, measures and vectors
(``Faceprint.analyze``)."""
Inspect = Callable[[Analysis], Any]
"""``inspect(analysis)``: sees a search's probe analysis before the search; its answer is the
result's ``probe`` (``Faceprint`` assesses the probe's quality, and refuses it where it must)."""
Record = Callable[[list[str], int], "int | None"]
"""``record(face_ids, unindexed)``: writes IndexFaces' audit entry before the faces are stored;
answers its id."""
Describe = Callable[[DecodedImage, MeasuredFace, frozenset[str]], FaceDetail]
"""``describe(image, face, wanted)``: a face's FaceDetail with the attributes ``wanted``
(``Faceprint.describe``)."""


class Collections:
    """Rekognition's collection, face and search operations over ``store`` (the source of truth)
    and ``indexes`` (each collection's vector index, derived from the store). ``profile`` gives the
    face model version and the similarity scale, ``analyze`` turns an image into faces and vectors,
    ``arn`` gives a collection's ARN (``faceprint.account.CollectionArns``: computed on every
    answer, never read from the store, so collections stored by earlier versions answer it too),
    ``lock`` serializes deletes against the index (shared with :class:`faceprint.users.Users`),
    ``clock`` dates new collections and ``describe`` measures the attributes IndexFaces'
    ``DetectionAttributes`` ask for (None: DEFAULT only)."""

    def __init__(self, store: Store, indexes: Indexes, profile: Profile, analyze: Analyze,
                 arn: Callable[[str], str], lock: threading.RLock | None = None,
                 clock: Callable[[], float] = time.time, describe: Describe | None = None) -> None:
        self.store = store
        self.indexes = indexes
        self.profile = profile
        self.analyze = analyze
        self.arn = arn
        self.lock = lock if lock is not None else threading.RLock()
        self.clock = clock
        self.describe = describe

    @property
    def face_model_version(self) -> str:
        return self.profile.face_model_version

    # -- collections ---------------------------------------------------------------------------
    def create_collection(self, collection_id: str) -> CreateCollectionResult:
        check_pattern("CollectionId", collection_id, COLLECTION_ID)
        arn = self.arn(collection_id)
        self.store.create_collection(CollectionRow(collection_id, arn, self.face_model_version,
                                                   self.profile.dim, self.clock()))
        return CreateCollectionResult(status_code=200, collection_arn=arn,
                                      face_model_version=self.face_model_version)

    def describe_collection(self, collection_id: str) -> DescribeCollectionResult:
        row = self.collection(collection_id)
        return DescribeCollectionResult(face_count=self.store.count_faces(collection_id),
                                        face_model_version=row.face_model_version,
                                        collection_arn=self.arn(collection_id),
                                        creation_timestamp=row.created,
                                        user_count=self.store.count_users(collection_id))

    def list_collections(self, max_results: int = 1000, next_token: str | None = None
                         ) -> ListCollectionsResult:
        check_int("MaxResults", max_results, 0, 4096)
        after = self._collection_after(decode_token(next_token, is_collection_position))
        rows = self.store.list_collections(after, max_results + 1)
        page, more = rows[:max_results], len(rows) > max_results
        token = self._collection_token(page[-1].collection_id) if more and page else None
        return ListCollectionsResult(collection_ids=[r.collection_id for r in page],
                                     face_model_versions=[r.face_model_version for r in page], next_token=token)

    def _collection_after(self, token: str | list | None) -> str | None:
        """The collection id a NextToken points after (see ``_collection_token``)."""
        if not isinstance(token, list):
            return token
        found = self.store.get_token("", "ListCollections", token[1])
        if found is None:
            raise InvalidPaginationTokenException("NextToken is not one this service issued.")
        return found[0]

    def _collection_token(self, collection_id: str) -> str:
        """A NextToken within the model's 255 characters: after an id too long for that, a
        digest of it, with the id kept in the store (so it works even if that collection goes)."""
        token = encode_token(collection_id)
        if len(token) <= 255:
            return token
        digest = hashlib.sha256(collection_id.encode()).hexdigest()[:32]
        if self.store.get_token("", "ListCollections", digest) is None:
            self.store.put_token("", "ListCollections", digest, collection_id, "")
        return encode_token(["long", digest])

    def delete_collection(self, collection_id: str) -> DeleteCollectionResult:
        check_pattern("CollectionId", collection_id, COLLECTION_ID)
        with self.lock:
            if not self.store.delete_collection(collection_id):
                raise ResourceNotFoundException(f"The collection {collection_id!r} does not exist.")
            self.indexes.drop(collection_id)
        return DeleteCollectionResult(status_code=200)

    # -- faces ---------------------------------------------------------------------------------
    def index_faces(self, collection_id: str, image: Any, external_image_id: str | None = None,
                    detection_attributes: tuple[str, ...] | list[str] = (), max_faces: int | None = None,
                    quality_filter: str = "AUTO", record: Record | None = None) -> IndexFacesResult:
        """Rekognition IndexFaces: detect, filter, store and index the faces of one image
        (``record``: see :meth:`store_analysis`)."""
        self.collection(collection_id)
        if external_image_id is not None:
            check_pattern("ExternalImageId", external_image_id, EXTERNAL_IMAGE_ID)
        wanted = requested(validate_attributes(detection_attributes))
        validate_quality_filter(quality_filter)
        if max_faces is not None:
            check_int("MaxFaces", max_faces, 1)
        if wanted and self.describe is None:
            raise InvalidParameterException("This service computes no attributes beyond DEFAULT.")
        analysis = self.analyze(image, quality_filter=quality_filter)
        return self.store_analysis(collection_id, analysis, external_image_id, max_faces, wanted=wanted, record=record)

    def store_analysis(self, collection_id: str, analysis: Analysis,
                       external_image_id: str | None = None, max_faces: int | None = None,
                       source_sha256: str | None = None, wanted: frozenset[str] = frozenset(),
                       record: Record | None = None) -> IndexFacesResult:
        """The storing half of IndexFaces, for an analysis made here or in a worker process.
        With ``source_sha256`` the source image is recorded as done in the same transaction.
        ``wanted``: the attributes every FaceDetail (indexed or not) gets (measured before
        anything is stored; the analysis must still hold its image). ``record(face_ids,
        unindexed)`` is called with the new faces' ids before they are stored (its audit entry:
        what it raises stores nothing) and answers the result's ``audit_id``."""
        detail = self._detailer(analysis, wanted)
        keep = len(analysis.faces) if max_faces is None else min(max_faces, len(analysis.faces))
        kept = [detail(f) for f in analysis.faces[:keep]]
        unindexed = ([UnindexedFace(reasons=["EXCEEDS_MAX_FACES"], face_detail=detail(f))
                      for f in analysis.faces[keep:]] +
                     [UnindexedFace(reasons=[reason], face_detail=detail(f)) for f, reason in analysis.rejected])
        image_id = str(uuid.uuid4())
        rows = [FaceRow(str(uuid.uuid4()), collection_id, image_id, external_image_id,
                        _box_tuple(f), f.confidence, analysis.vectors[i])
                for i, f in enumerate(analysis.faces[:keep])]
        source = None if source_sha256 is None else (collection_id, source_sha256, f"{len(rows)} faces")
        audit_id = record([r.face_id for r in rows], len(unindexed)) if record is not None else None
        if rows or source:
            self.store.add_faces(rows, source)  # the index pulls new faces in on its next use
        records = [FaceRecord(face=self._face(row), face_detail=d) for row, d in zip(rows, kept, strict=True)]
        return IndexFacesResult(face_records=records, unindexed_faces=unindexed,
                                face_model_version=self.face_model_version, audit_id=audit_id)

    def _detailer(self, analysis: Analysis, wanted: frozenset[str]) -> Callable[[MeasuredFace], FaceDetail]:
        """What turns one of ``analysis``'s faces into its FaceDetail with the ``wanted`` attributes."""
        if not wanted:
            return MeasuredFace.detail
        image, describe = analysis.image, self.describe
        if image is None or describe is None:
            raise ValueError("attributes need the analysis's image and a describe function")
        return lambda face: describe(image, face, wanted)

    def list_faces(self, collection_id: str, max_results: int = 1000, next_token: str | None = None,
                   face_ids: list[str] | None = None, user_id: str | None = None) -> ListFacesResult:
        self.collection(collection_id)
        if user_id is not None:
            from faceprint.users import USER_ID

            check_pattern("UserId", user_id, USER_ID)
        check_int("MaxResults", max_results, 0, 4096)
        if face_ids is not None:
            _check_face_ids(face_ids)
        after = decode_token(next_token, is_face_position) or 0
        rows = self.store.list_faces(collection_id, after, max_results + 1, face_ids, user_id)
        page, more = rows[:max_results], len(rows) > max_results
        return ListFacesResult(faces=[self._face(r) for r in page], face_model_version=self.face_model_version,
                               next_token=encode_token(page[-1].seq) if more and page else None)

    def delete_faces(self, collection_id: str, face_ids: list[str]) -> DeleteFacesResult:
        """Rekognition DeleteFaces; a face that belongs to a user is kept (disassociate it first)."""
        self.collection(collection_id)
        _check_face_ids(face_ids)
        wanted = list(dict.fromkeys(face_ids))
        with self.lock:
            owned = {f.face_id: f.user_id for f in self.store.get_faces(collection_id, wanted) if f.user_id}
            deleted = self.store.delete_faces(collection_id, [f for f in wanted if f not in owned])
            self.indexes.removed(collection_id, deleted)  # gone from every search from now on
        gone = set(deleted)
        failures = [UnsuccessfulFaceDeletion(face_id=f, reasons=["ASSOCIATED_TO_AN_EXISTING_USER"], user_id=owned[f])
                    if f in owned else UnsuccessfulFaceDeletion(face_id=f, reasons=["FACE_NOT_FOUND"])
                    for f in wanted if f not in gone]
        return DeleteFacesResult(deleted_faces=deleted, unsuccessful_face_deletions=failures)

    # -- search --------------------------------------------------------------------------------
    def search_faces(self, collection_id: str, face_id: str, max_faces: int = 80,
                     face_match_threshold: float = 80.0) -> SearchFacesResult:
        """Rekognition SearchFaces: the faces of the collection most like a stored face."""
        row = self.collection(collection_id)
        check_pattern("FaceId", face_id, FACE_ID)
        check_int("MaxFaces", max_faces, 1, 4096)
        threshold = _threshold(face_match_threshold)
        found = self.store.get_faces(collection_id, [face_id])
        if not found:
            raise ResourceNotFoundException(f"Face {face_id} is not in collection {collection_id!r}.")
        matches, compared = self.search_sized(row, found[0].vector, max_faces + 1, threshold)
        return SearchFacesResult(searched_face_id=face_id, face_model_version=self.face_model_version,
                                 face_matches=[m for m in matches if m.face.face_id != face_id][:max_faces],
                                 compared=compared)

    def search_faces_by_image(self, collection_id: str, image: Any, max_faces: int = 80,
                              face_match_threshold: float = 80.0, quality_filter: str = "NONE",
                              inspect: Inspect | None = None) -> SearchFacesByImageResult:
        """Rekognition SearchFacesByImage: the largest face of ``image`` against the collection.
        ``inspect(analysis)`` sees the probe's analysis before the search (it may refuse it by
        raising) and answers the result's ``probe`` (its quality)."""
        row = self.collection(collection_id)
        check_int("MaxFaces", max_faces, 1, 4096)
        threshold = _threshold(face_match_threshold)
        validate_quality_filter(quality_filter)
        analysis = self.analyze(image, max_faces=1, quality_filter=quality_filter)
        if not analysis.faces:
            raise InvalidParameterException("There are no faces in the image" +
                                            (" that pass the quality filter." if analysis.rejected else "."))
        probe = inspect(analysis) if inspect is not None else None
        face = analysis.faces[0]
        matches, compared = self.search_sized(row, analysis.vectors[0], max_faces, threshold)
        return SearchFacesByImageResult(
            searched_face_bounding_box=face.bounding_box, searched_face_confidence=face.confidence,
            face_matches=matches, face_model_version=self.face_model_version, probe=probe, compared=compared)

    # -- helpers -------------------------------------------------------------------------------
    def collection(self, collection_id: str) -> CollectionRow:
        check_pattern("CollectionId", collection_id, COLLECTION_ID)
        row = self.store.get_collection(collection_id)
        if row is None:
            raise ResourceNotFoundException(f"The collection {collection_id!r} does not exist.")
        if row.face_model_version != self.face_model_version:
            raise InvalidParameterException(
                f"Collection {collection_id!r} holds vectors of {row.face_model_version!r}; this faceprint "
                f"runs {self.face_model_version!r}. Use the matching profile.")
        return row

    def size(self, collection_id: str) -> int:
        """The number of faces a search of the collection compares with now (its index's size:
        no count of the store's rows, which costs tens of milliseconds at a million faces)."""
        return len(self.index(collection_id))

    def index(self, collection_id: str) -> VectorIndex:
        """The collection's index, brought up to date with the store first (faces added or
        deleted by this process or any other)."""
        return self.indexes.get(self.collection(collection_id))

    def search(self, collection_id: str, query: np.ndarray, k: int, threshold: float
                ) -> list[FaceMatch]:
        return self.search_sized(self.collection(collection_id), query, k, threshold)[0]

    def search_sized(self, row: CollectionRow, query: np.ndarray, k: int, threshold: float
                     ) -> tuple[list[FaceMatch], int]:
        """:meth:`search` on a collection already looked up, and how many faces it compared with
        (the index's size at the search: what an audit entry records, without asking again)."""
        collection_id = row.collection_id
        index = self.indexes.get(row)
        hits = index.search(query, k, self.profile.score_for(threshold))
        compared = len(index)
        rows = {r.face_id: r for r in self.store.get_faces(collection_id, [h[0] for h in hits])}
        matches = []
        for face_id, score in hits:
            similarity = round(float(self.profile.similarity(score)), 4)
            if face_id in rows and similarity >= threshold:  # a face deleted meanwhile is left out
                matches.append(FaceMatch(similarity=similarity, face=self._face(rows[face_id])))
        return matches, compared

    def _face(self, row: FaceRow) -> Face:
        w, h, left, top = row.box
        return Face(face_id=row.face_id, bounding_box=BoundingBox(width=w, height=h, left=left, top=top),
                    image_id=row.image_id, confidence=row.confidence, external_image_id=row.external_image_id,
                    index_faces_model_version=self.face_model_version, user_id=row.user_id)


def _box_tuple(face: MeasuredFace) -> tuple[float, float, float, float]:
    b = face.bounding_box
    return (b.width, b.height, b.left, b.top)


def _check_face_ids(face_ids: Any) -> None:
    if not isinstance(face_ids, list) or not 1 <= len(face_ids) <= 4096:
        raise InvalidParameterException("FaceIds must be a list of 1 to 4096 face ids.")
    for face_id in face_ids:
        check_pattern("FaceId", face_id, FACE_ID)


def _threshold(value: Any) -> float:
    return validate_percent("FaceMatchThreshold", value)
