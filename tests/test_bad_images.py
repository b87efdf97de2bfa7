"""The bad-image corpus (tests/badimages.py) through every image operation of the Python API.

Each entry must decode as the corpus says, and every operation given it must either succeed or
raise a FaceprintError whose code the operation models in botocore; an IndexFaces that fails
leaves the collection's faces as they were.

Cost: every operation starts with the same ``load_image``; what follows depends only on the
decoded pixels. So the face models run once per distinct decoded picture (26 of the ~100 valid
entries) and DetectText, the costly one, once per distinct decoded shape (its robustness to
content is tests/test_detect_text.py's); an entry whose pixels were seen before checks that it
decodes to them and reuses the answers (IndexFaces always runs, for the stored-faces check).
About 10 s on a quiet 2-core machine (fast profile), 20-50 s when the machine is busy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from badimages import OK, Case, corpus
from conftest import lfw_image
from contract import output_shape, service_model, validate
from faceprint.errors import FaceprintError

COLLECTION = "bad-image-corpus"
FACE = lfw_image("Aaron_Peirsol", 1)
BASE = Image.open(FACE).resize((160, 160))
CASES = corpus(BASE)

Operation = Callable[[Any, Any], Any]
OPERATIONS: dict[str, tuple[str, Operation]] = {
    "DetectFaces": ("DetectFaces", lambda fp, image: fp.detect_faces(image)),
    "CompareFaces as source": ("CompareFaces", lambda fp, image: fp.compare_faces(image, FACE)),
    "CompareFaces as target": ("CompareFaces", lambda fp, image: fp.compare_faces(FACE, image)),
    "DetectText": ("DetectText", lambda fp, image: fp.detect_text(image)),
    "IndexFaces": ("IndexFaces", lambda fp, image: fp.index_faces(COLLECTION, image)),
    "SearchFacesByImage": ("SearchFacesByImage", lambda fp, image: fp.search_faces_by_image(COLLECTION, image)),
    "SearchUsersByImage": ("SearchUsersByImage", lambda fp, image: fp.search_users_by_image(COLLECTION, image)),
}

def modelled_errors(operation: str) -> set[str]:
    return {e["shape"] for e in service_model()["operations"][operation].get("errors", [])}


@pytest.fixture(scope="module")
def world(fast) -> dict[str, Any]:
    """A collection holding one face owned by a user, and the outcomes seen per decoded picture."""
    if COLLECTION not in fast.list_collections().collection_ids:
        fast.create_collection(COLLECTION)
    face_id = fast.index_faces(COLLECTION, FACE).face_records[0].face.face_id
    fast.create_user(COLLECTION, "someone")
    fast.associate_faces(COLLECTION, "someone", [face_id])
    return {"fp": fast, "seen": {}}


def face_ids(fp) -> set[str]:
    ids, token = set(), None
    while True:
        page = fp.list_faces(COLLECTION, next_token=token)
        ids |= {f.face_id for f in page.faces}
        token = page.next_token
        if not token:
            return ids


def run(fp, name: str, data: bytes) -> tuple[str, Any]:
    """('ok', result) or (error code, message); any other exception fails the test."""
    _, call = OPERATIONS[name]
    try:
        return OK, call(fp, data)
    except FaceprintError as exc:
        return exc.code, exc.message


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decodes_as_the_corpus_says(fast, case: Case) -> None:
    try:
        fast.load_image(case.data)
        outcome = OK
    except FaceprintError as exc:
        outcome = exc.code
        assert exc.message
    assert outcome == case.expected


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_image_operation(world, case: Case) -> None:
    fp = world["fp"]
    keys = _keys(fp, case)
    for name, (operation, _) in OPERATIONS.items():
        key = keys and (keys[1] if operation == "DetectText" else keys[0])
        seen = world["seen"].get((name, key)) if key else None
        before = face_ids(fp) if operation == "IndexFaces" else None
        code, result = run(fp, name, case.data) if seen is None or operation == "IndexFaces" else seen
        if key and seen is None:
            world["seen"][name, key] = (code, result if code != OK else None)
        assert code == OK or code in modelled_errors(operation), (name, code, result)
        if case.expected != OK:
            assert code == case.expected, (name, code, result)
        elif code != OK:  # decodable: only "no face" may refuse it
            assert code == "InvalidParameterException", (name, code, result)
        if code == OK and seen is None:
            validate(result.to_dict(), output_shape(operation))
        if before is not None:
            added = {r.face.face_id for r in result.face_records} if code == OK else set()
            assert face_ids(fp) == before | added, name


def _keys(fp, case: Case) -> tuple[str, str] | None:
    """A digest of the decoded picture and its shape, for entries that decode."""
    if case.expected != OK:
        return None
    rgb = fp.load_image(case.data).rgb
    return hashlib.sha256(rgb.tobytes()).hexdigest() + repr(rgb.shape), repr(rgb.shape)
