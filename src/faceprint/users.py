"""Users (one person, several faces) and user search: :class:`Users`, which ``Faceprint``
delegates to.

A user's similarity to a query is the highest similarity between the query and any of the
user's faces. ``client_request_token`` makes the writes idempotent as in Rekognition: the same
token with the same parameters replays the first answer; with other parameters it is refused.
The store keeps a salted digest of a token's parameters, not the parameters (a DeleteUser's
record must not keep the deleted user's id).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from faceprint.collections import (
    FACE_ID,
    Collections,
    Inspect,
    check_int,
    check_pattern,
    decode_token,
    encode_token,
)
from faceprint.errors import (
    ConflictException,
    IdempotentParameterMismatchException,
    InvalidParameterException,
    ResourceNotFoundException,
    ServiceQuotaExceededException,
)
from faceprint.faces import validate_percent, validate_quality_filter
from faceprint.types import (
    AssociatedFace,
    AssociateFacesResult,
    DisassociateFacesResult,
    EmptyResult,
    ListUsersResult,
    SearchedFaceDetails,
    SearchedFaceId,
    SearchedUserId,
    SearchUsersByImageResult,
    SearchUsersResult,
    UnsearchedFace,
    UnsuccessfulFaceAssociation,
    UnsuccessfulFaceDisassociation,
    User,
    UserMatch,
)

USER_ID = re.compile(r"[a-zA-Z0-9_.\-:]{1,128}")
TOKEN = re.compile(r"[a-zA-Z0-9\-_]{1,64}")
MAX_FACES_PER_USER = 100


USER_SEARCH_DEPTH = 4096
"""A user search ranks users by their best faces among this many best faces over the threshold."""


def _request_digest(key: str, salt: str | None = None) -> str:
    """``sha256:SALT:HEX`` of a request's parameters (JSON), salted so that equal requests leave
    different records."""
    salt = salt if salt is not None else secrets.token_hex(8)
    return f"sha256:{salt}:{hashlib.sha256(f'{salt}:{key}'.encode()).hexdigest()}"


def _same_request(recorded: str, key: str) -> bool:
    """Whether a token's record is of these parameters (a record written before digests holds the JSON)."""
    if not recorded.startswith("sha256:"):
        return recorded == key
    return hmac.compare_digest(recorded, _request_digest(key, recorded.split(":")[1]))


def _status(face_count: int) -> str:
    return "ACTIVE" if face_count else "CREATED"


def _face_ids(face_ids: Any) -> list[str]:
    if not isinstance(face_ids, list) or not 1 <= len(face_ids) <= MAX_FACES_PER_USER:
        raise InvalidParameterException(f"FaceIds must be a list of 1 to {MAX_FACES_PER_USER} face ids.")
    return [check_pattern("FaceId", f, FACE_ID) for f in dict.fromkeys(face_ids)]


class Users:
    """Rekognition's user operations on the collections of ``collections`` (its store, indexes,
    profile and lock); ``clock`` dates new users."""

    def __init__(self, collections: Collections, clock: Callable[[], float] = time.time) -> None:
        self.collections = collections
        self.store = collections.store
        self.profile = collections.profile
        self.clock = clock

    def _idempotent(self, collection_id: str, operation: str, token: str | None,
                    parameters: dict[str, Any], run: Any) -> Any:
        if token is None:
            return run()
        check_pattern("ClientRequestToken", token, TOKEN)
        key = json.dumps(parameters, sort_keys=True)
        seen = self.store.get_token(collection_id, operation, token)
        if seen is not None:
            if not _same_request(seen[0], key):
                raise IdempotentParameterMismatchException(
                    f"ClientRequestToken {token!r} was used with other parameters.")
            return json.loads(seen[1])
        result = run()
        self.store.put_token(collection_id, operation, token, _request_digest(key), json.dumps(result))
        return result

    def create_user(self, collection_id: str, user_id: str,
                    client_request_token: str | None = None) -> EmptyResult:
        self.collections.collection(collection_id)
        check_pattern("UserId", user_id, USER_ID)

        def run() -> dict[str, Any]:
            if not self.store.create_user(collection_id, user_id, self.clock()):
                raise ConflictException(f"User {user_id!r} already exists in {collection_id!r}.")
            return {}

        self._idempotent(collection_id, "CreateUser", client_request_token, {"UserId": user_id}, run)
        return EmptyResult()

    def delete_user(self, collection_id: str, user_id: str,
                    client_request_token: str | None = None) -> EmptyResult:
        self.collections.collection(collection_id)
        check_pattern("UserId", user_id, USER_ID)

        def run() -> dict[str, Any]:
            if not self.store.delete_user(collection_id, user_id):
                raise ResourceNotFoundException(f"User {user_id!r} does not exist in {collection_id!r}.")
            return {}

        self._idempotent(collection_id, "DeleteUser", client_request_token, {"UserId": user_id}, run)
        return EmptyResult()

    def list_users(self, collection_id: str, max_results: int = 100, next_token: str | None = None
                   ) -> ListUsersResult:
        self.collections.collection(collection_id)
        check_int("MaxResults", max_results, 1, 500)
        after = decode_token(next_token, lambda v: isinstance(v, str) and bool(USER_ID.fullmatch(v)))
        rows = self.store.list_users(collection_id, after, max_results + 1)
        page, more = rows[:max_results], len(rows) > max_results
        return ListUsersResult(users=[User(user_id=u, user_status=_status(n)) for u, n in page],
                               next_token=encode_token(page[-1][0]) if more and page else None)

    def associate_faces(self, collection_id: str, user_id: str, face_ids: list[str],
                        user_match_threshold: float = 75.0, client_request_token: str | None = None
                        ) -> AssociateFacesResult:
        """Attach faces to a user; a face must match the user's faces at ``user_match_threshold``."""
        self.collections.collection(collection_id)
        check_pattern("UserId", user_id, USER_ID)
        ids = _face_ids(face_ids)
        threshold = validate_percent("UserMatchThreshold", user_match_threshold)
        params = {"UserId": user_id, "FaceIds": ids, "UserMatchThreshold": threshold}
        body = self._idempotent(collection_id, "AssociateFaces", client_request_token, params,
                                lambda: self._associate(collection_id, user_id, ids, threshold).to_dict())
        return _associate_result(body)

    def _associate(self, collection_id: str, user_id: str, ids: list[str], threshold: float
                   ) -> AssociateFacesResult:
        if not self.store.user_exists(collection_id, user_id):
            raise ResourceNotFoundException(f"User {user_id!r} does not exist in {collection_id!r}.")
        with self.collections.lock:
            mine = self.store.user_faces(collection_id, user_id)
            found = {f.face_id: f for f in self.store.get_faces(collection_id, ids)}
            result = AssociateFacesResult()
            accepted = []
            for face_id in ids:
                face = found.get(face_id)
                reason, similarity = None, None
                if face is None:
                    reason = "FACE_NOT_FOUND"
                elif face.user_id not in (None, user_id):
                    reason = "ASSOCIATED_TO_A_DIFFERENT_USER"
                elif face.user_id is None and mine:
                    score = float(np.max(np.stack([m.vector for m in mine]) @ face.vector))
                    similarity = round(float(self.profile.similarity(score)), 4)
                    reason = "LOW_MATCH_CONFIDENCE" if similarity < threshold else None
                if reason:
                    result.unsuccessful_face_associations.append(UnsuccessfulFaceAssociation(
                        face_id=face_id, reasons=[reason], user_id=face.user_id if face else None,
                        confidence=similarity))
                else:
                    accepted.append(face_id)
                    result.associated_faces.append(AssociatedFace(face_id=face_id))
            total = len({m.face_id for m in mine} | set(accepted))
            if total > MAX_FACES_PER_USER:
                raise ServiceQuotaExceededException(
                    f"User {user_id!r} would have {total} faces; the limit is {MAX_FACES_PER_USER}.")
            self.store.set_user(collection_id, accepted, user_id)
        result.user_status = _status(total)
        return result

    def disassociate_faces(self, collection_id: str, user_id: str, face_ids: list[str],
                           client_request_token: str | None = None) -> DisassociateFacesResult:
        self.collections.collection(collection_id)
        check_pattern("UserId", user_id, USER_ID)
        ids = _face_ids(face_ids)

        def run() -> dict[str, Any]:
            if not self.store.user_exists(collection_id, user_id):
                raise ResourceNotFoundException(f"User {user_id!r} does not exist in {collection_id!r}.")
            found = {f.face_id: f for f in self.store.get_faces(collection_id, ids)}
            result = DisassociateFacesResult()
            for face_id in ids:
                face = found.get(face_id)
                if face is not None and face.user_id == user_id:
                    result.disassociated_faces.append(AssociatedFace(face_id=face_id))
                    continue
                reason = "ASSOCIATED_TO_A_DIFFERENT_USER" if face and face.user_id else "FACE_NOT_FOUND"
                result.unsuccessful_face_disassociations.append(UnsuccessfulFaceDisassociation(
                    face_id=face_id, reasons=[reason], user_id=face.user_id if face else None))
            self.store.set_user(collection_id, [f.face_id for f in result.disassociated_faces], None)
            result.user_status = _status(len(self.store.user_faces(collection_id, user_id)))
            return result.to_dict()

        body = self._idempotent(collection_id, "DisassociateFaces", client_request_token,
                                {"UserId": user_id, "FaceIds": ids}, run)
        return DisassociateFacesResult(
            disassociated_faces=[AssociatedFace(face_id=f["FaceId"]) for f in body.get("DisassociatedFaces", [])],
            unsuccessful_face_disassociations=[
                UnsuccessfulFaceDisassociation(face_id=u["FaceId"], reasons=u["Reasons"], user_id=u.get("UserId"))
                for u in body.get("UnsuccessfulFaceDisassociations", [])],
            user_status=body["UserStatus"])

    def search_users(self, collection_id: str, user_id: str | None = None, face_id: str | None = None,
                     user_match_threshold: float = 80.0, max_users: int = 100) -> SearchUsersResult:
        """Users most like a stored face (``face_id``) or a stored user's faces (``user_id``)."""
        self.collections.collection(collection_id)
        threshold = validate_percent("UserMatchThreshold", user_match_threshold)
        check_int("MaxUsers", max_users, 1, 500)
        if (user_id is None) == (face_id is None):
            raise InvalidParameterException("Give exactly one of UserId and FaceId.")
        result = SearchUsersResult(face_model_version=self.collections.face_model_version)
        if face_id is not None:
            check_pattern("FaceId", face_id, FACE_ID)
            faces = self.store.get_faces(collection_id, [face_id])
            if not faces:
                raise ResourceNotFoundException(f"Face {face_id} is not in collection {collection_id!r}.")
            result.searched_face = SearchedFaceId(face_id=face_id)
            queries, exclude = [faces[0].vector], None
        else:
            check_pattern("UserId", user_id, USER_ID)
            if not self.store.user_exists(collection_id, user_id):
                raise ResourceNotFoundException(f"User {user_id!r} does not exist in {collection_id!r}.")
            result.searched_user = SearchedUserId(user_id=user_id)
            queries, exclude = [f.vector for f in self.store.user_faces(collection_id, user_id)], user_id
        result.user_matches = self._user_matches(collection_id, queries, threshold, max_users, exclude)
        return result

    def search_users_by_image(self, collection_id: str, image: Any, user_match_threshold: float = 80.0,
                              max_users: int = 100, quality_filter: str = "NONE", inspect: Inspect | None = None
                              ) -> SearchUsersByImageResult:
        """Users most like the largest face of ``image``; ``inspect`` as SearchFacesByImage's
        (``faceprint.collections.Inspect``)."""
        self.collections.collection(collection_id)
        threshold = validate_percent("UserMatchThreshold", user_match_threshold)
        check_int("MaxUsers", max_users, 1, 500)
        validate_quality_filter(quality_filter)
        analysis = self.collections.analyze(image, quality_filter=quality_filter)
        if not analysis.faces:
            raise InvalidParameterException("There are no faces in the image" +
                                            (" that pass the quality filter." if analysis.rejected else "."))
        probe = inspect(analysis) if inspect is not None else None
        unsearched = [UnsearchedFace(face_details=f.detail(), reasons=["FACE_NOT_LARGEST"])
                      for f in analysis.faces[1:]]
        unsearched += [UnsearchedFace(face_details=f.detail(), reasons=[r]) for f, r in analysis.rejected]
        return SearchUsersByImageResult(
            user_matches=self._user_matches(collection_id, [analysis.vectors[0]], threshold, max_users, None),
            face_model_version=self.collections.face_model_version,
            searched_face=SearchedFaceDetails(face_detail=analysis.faces[0].detail()), unsearched_faces=unsearched,
            probe=probe)

    def _user_matches(self, collection_id: str, queries: list[np.ndarray], threshold: float,
                      max_users: int, exclude: str | None) -> list[UserMatch]:
        owners = self.store.face_users(collection_id)
        if not owners or not queries:
            return []
        index = self.collections.index(collection_id)
        floor = self.profile.score_for(threshold)
        best: dict[str, float] = {}
        for query in queries:
            for face_id, score in index.search(query, min(len(index), USER_SEARCH_DEPTH), floor):
                user = owners.get(face_id)
                if user is not None and user != exclude and score > best.get(user, -2.0):
                    best[user] = score
        counts = dict(self.store.list_users(collection_id, None, 1_000_000))
        ranked = sorted(best.items(), key=lambda item: -item[1])[:max_users]
        return [UserMatch(similarity=round(float(self.profile.similarity(score)), 4),
                          user=User(user_id=user, user_status=_status(counts.get(user, 0))))
                for user, score in ranked]


def _associate_result(body: dict[str, Any]) -> AssociateFacesResult:
    return AssociateFacesResult(
        associated_faces=[AssociatedFace(face_id=f["FaceId"]) for f in body.get("AssociatedFaces", [])],
        unsuccessful_face_associations=[
            UnsuccessfulFaceAssociation(face_id=u["FaceId"], reasons=u["Reasons"], user_id=u.get("UserId"),
                                        confidence=u.get("Confidence"))
            for u in body.get("UnsuccessfulFaceAssociations", [])],
        user_status=body["UserStatus"])
