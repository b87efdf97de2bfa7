"""Users: one person, several faces; association rules, idempotency and user search."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FACES, models_dir
from contract import output_shape, validate
from faceprint.errors import (
    ConflictException,
    IdempotentParameterMismatchException,
    InvalidParameterException,
    ResourceNotFoundException,
)

BBT = FACES / "identities" / "faceapi_bbt" / "identities"


@pytest.fixture()
def cast(tmp_path: Path):
    """A collection with five faces of each of three people, not yet associated."""
    from faceprint.service import Faceprint

    fp = Faceprint(tmp_path, profile="fast", models_dir=models_dir())
    fp.create_collection("cast")
    faces = {}
    for person in ("sheldon", "penny", "raj"):
        faces[person] = [fp.index_faces("cast", p, external_image_id=person, max_faces=1).face_records[0].face.face_id
                         for p in sorted((BBT / person).glob("*"))]
    return fp, faces


def test_users_lifecycle_and_idempotency(cast) -> None:
    fp, faces = cast
    validate(fp.create_user("cast", "sheldon", client_request_token="t-1").to_dict(), output_shape("CreateUser"))
    fp.create_user("cast", "sheldon", client_request_token="t-1")  # same token: replayed, no error
    with pytest.raises(ConflictException):
        fp.create_user("cast", "sheldon")
    with pytest.raises(IdempotentParameterMismatchException):
        fp.create_user("cast", "penny", client_request_token="t-1")
    fp.create_user("cast", "penny")
    users = fp.list_users("cast")
    validate(users.to_dict(), output_shape("ListUsers"))
    assert [(u.user_id, u.user_status) for u in users.users] == [("penny", "CREATED"), ("sheldon", "CREATED")]
    assert fp.describe_collection("cast").user_count == 2
    page = fp.list_users("cast", max_results=1)
    assert [u.user_id for u in fp.list_users("cast", next_token=page.next_token).users] == ["sheldon"]
    with pytest.raises(InvalidParameterException):
        fp.create_user("cast", "bad user")
    validate(fp.delete_user("cast", "penny").to_dict(), output_shape("DeleteUser"))
    with pytest.raises(ResourceNotFoundException):
        fp.delete_user("cast", "penny")


def test_associate_rules(cast) -> None:
    fp, faces = cast
    fp.create_user("cast", "sheldon")
    fp.create_user("cast", "penny")
    first = fp.associate_faces("cast", "sheldon", faces["sheldon"][:1])
    validate(first.to_dict(), output_shape("AssociateFaces"))
    assert first.user_status == "ACTIVE" and [f.face_id for f in first.associated_faces] == faces["sheldon"][:1]
    missing = "00000000-0000-0000-0000-000000000000"
    mixed = fp.associate_faces("cast", "sheldon", [*faces["sheldon"][1:], faces["penny"][0], missing])
    assert {f.face_id for f in mixed.associated_faces} == set(faces["sheldon"][1:])
    reasons = {u.face_id: u.reasons for u in mixed.unsuccessful_face_associations}
    assert reasons == {faces["penny"][0]: ["LOW_MATCH_CONFIDENCE"], missing: ["FACE_NOT_FOUND"]}
    fp.associate_faces("cast", "penny", faces["penny"])
    taken = fp.associate_faces("cast", "sheldon", faces["penny"][:1], user_match_threshold=0)
    assert taken.unsuccessful_face_associations[0].reasons == ["ASSOCIATED_TO_A_DIFFERENT_USER"]
    assert taken.unsuccessful_face_associations[0].user_id == "penny"
    listed = fp.list_faces("cast", user_id="sheldon").faces
    assert {f.face_id for f in listed} == set(faces["sheldon"]) and all(f.user_id == "sheldon" for f in listed)
    # a face that belongs to a user is not deleted until it is disassociated
    blocked = fp.delete_faces("cast", faces["sheldon"][:1])
    assert blocked.unsuccessful_face_deletions[0].reasons == ["ASSOCIATED_TO_AN_EXISTING_USER"]
    out = fp.disassociate_faces("cast", "sheldon", [faces["sheldon"][0], faces["penny"][1]])
    validate(out.to_dict(), output_shape("DisassociateFaces"))
    assert [f.face_id for f in out.disassociated_faces] == faces["sheldon"][:1]
    assert out.unsuccessful_face_disassociations[0].reasons == ["ASSOCIATED_TO_A_DIFFERENT_USER"]
    assert fp.delete_faces("cast", faces["sheldon"][:1]).deleted_faces == faces["sheldon"][:1]
    with pytest.raises(ResourceNotFoundException):
        fp.associate_faces("cast", "nobody", faces["raj"][:1])


def test_search_users(cast) -> None:
    fp, faces = cast
    for person in ("sheldon", "penny"):
        fp.create_user("cast", person)
        fp.associate_faces("cast", person, faces[person][:4])
    by_face = fp.search_users("cast", face_id=faces["penny"][4])
    validate(by_face.to_dict(), output_shape("SearchUsers"))
    assert by_face.user_matches[0].user.user_id == "penny" and by_face.searched_face.face_id == faces["penny"][4]
    by_user = fp.search_users("cast", user_id="sheldon", user_match_threshold=0)
    assert [m.user.user_id for m in by_user.user_matches] == ["penny"]  # never itself
    raj = sorted((BBT / "raj").glob("*"))[0]
    unknown = fp.search_users_by_image("cast", raj)
    validate(unknown.to_dict(), output_shape("SearchUsersByImage"))
    assert unknown.user_matches == []  # raj has no user
    sheldon = sorted((BBT / "sheldon").glob("*"))[4]
    found = fp.search_users_by_image("cast", sheldon)
    assert found.user_matches[0].user.user_id == "sheldon" and found.user_matches[0].similarity >= 80
    with pytest.raises(InvalidParameterException):
        fp.search_users("cast")
    with pytest.raises(InvalidParameterException):
        fp.search_users("cast", user_id="sheldon", face_id=faces["penny"][0])
