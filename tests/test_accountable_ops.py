"""Every identification and enrolment through the Python API is recorded: real LFW faces, the real
fast models, the real audit log on disk. Who (the OS user, or the caller given), why (purpose,
case), the collection and its size, the threshold and its false-match rate, the probe's digest and
quality, and the candidates; a required case missing is refused before any work; a log that
cannot be written gives no result; a caller that refuses low-quality probes is refused, on record."""

from __future__ import annotations

import getpass
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest

from conftest import LFW, models_dir
from faceprint.audit.caller import Caller
from faceprint.audit.config import AuditSettings
from faceprint.audit.fmr import false_match_rate
from faceprint.audit.log import AuditFilter
from faceprint.errors import AccessDeniedException, AuditUnavailable, InvalidParameterException
from faceprint.service import Faceprint

PEOPLE = ("Aaron_Peirsol", "Aaron_Sorkin", "Abdullah_Gul", "Colin_Powell")
ALICE = Caller("alice", "key", "AKIAALICE0000000", purpose="missing person", require_case=True)


def lfw_image(name: str, n: int) -> Path:
    """The ``n``-th photo of an LFW person (1: the first; their numbers have gaps)."""
    return sorted((LFW / "images" / name).glob("*.jpg"))[n - 1]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make(home: Path, **audit: Any) -> Faceprint:
    return Faceprint(home, profile="fast", models_dir=models_dir(), threads=1, audit=AuditSettings(**audit))


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Faceprint, dict[str, str]]]:
    """A home with collection "people": the first photo of each of PEOPLE; and their face ids."""
    fp = make(tmp_path_factory.mktemp("accountable"))
    fp.create_collection("people")
    faces = {}
    for name in PEOPLE:
        result = fp.index_faces("people", lfw_image(name, 1), external_image_id=name, max_faces=1, case="ENROL-1",
                                purpose="enrolment")
        faces[name] = result.face_records[0].face.face_id
    yield fp, faces


def entry(fp: Faceprint, seq: int | None) -> dict[str, Any]:
    assert seq is not None
    record = fp.audit_log.get(seq)
    assert record is not None
    return record.to_json()


def low_quality_probe() -> bytes:
    """An LFW photo as a CCTV still: 80 x 80 px (the face about 33 px wide), JPEG quality 30."""
    small = cv2.resize(cv2.imread(str(lfw_image("Aaron_Peirsol", 2))), (80, 80), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 30])[1].tobytes()


def test_index_faces_is_recorded_with_the_new_face_ids(enrolled) -> None:
    fp, faces = enrolled
    first = fp.audit_log.query(AuditFilter(operation="IndexFaces"), limit=10)
    assert [r.entry.details["ExternalImageId"] for r in first] == list(PEOPLE)
    got = first[0].to_json()
    assert (got["Actor"], got["ActorKind"], got["KeyId"]) == (getpass.getuser(), "os", None)  # the OS user
    assert (got["Purpose"], got["Case"], got["CollectionId"]) == ("enrolment", "ENROL-1", "people")
    assert got["Details"]["FaceIds"] == [faces[PEOPLE[0]]] and got["Details"]["UnindexedFaces"] == 0
    assert got["Details"]["ImageSha256"] == sha(lfw_image(PEOPLE[0], 1).read_bytes())
    assert got["Candidates"] == [] and got["Threshold"] is None


def test_search_by_image_records_probe_threshold_rate_and_candidates(enrolled) -> None:
    fp, faces = enrolled
    probe = lfw_image("Aaron_Peirsol", 2)
    result = fp.search_faces_by_image("people", str(probe), face_match_threshold=90, case="CASE-1", purpose="test")
    assert [m.face.face_id for m in result.face_matches] == [faces["Aaron_Peirsol"]]
    assert result.probe is not None and not result.probe.low_quality and result.probe.face_width > 60
    assert "AuditId" not in str(result.to_dict())  # internal fields stay out of Rekognition's JSON
    got = entry(fp, result.audit_id)
    assert got["Operation"] == "SearchFacesByImage" and got["Seq"] == result.audit_id
    assert (got["Actor"], got["Purpose"], got["Case"]) == (getpass.getuser(), "test", "CASE-1")
    assert (got["CollectionId"], got["CollectionSize"]) == ("people", len(PEOPLE))
    assert got["Threshold"] == 90.0 and got["FalseMatchRate"] == pytest.approx(1e-5)
    assert got["FalseMatchRate"] == false_match_rate(fp.profile, 90)
    assert got["ProbeSha256"] == sha(probe.read_bytes())
    assert got["ProbeQuality"] == result.probe.to_json() and got["LowQuality"] is False
    assert got["Candidates"] == [{"FaceId": faces["Aaron_Peirsol"], "Similarity": result.face_matches[0].similarity,
                                  "ExternalImageId": "Aaron_Peirsol"}]
    assert got["Started"] <= got["Ended"]
    # a search that finds nobody is recorded too, with no candidates
    nobody = fp.search_faces_by_image("people", lfw_image("Christopher_Walken", 1).read_bytes())
    assert nobody.face_matches == [] and entry(fp, nobody.audit_id)["Candidates"] == []


def test_searches_by_face_and_user_and_compare_faces_are_recorded(enrolled) -> None:
    fp, faces = enrolled
    found = fp.search_faces("people", faces["Aaron_Peirsol"], face_match_threshold=0, caller=ALICE, case="C-2")
    got = entry(fp, found.audit_id)
    assert (got["Operation"], got["Actor"], got["KeyId"], got["Purpose"], got["Case"]) == \
        ("SearchFaces", "alice", "AKIAALICE0000000", "missing person", "C-2")
    assert got["Details"]["FaceId"] == faces["Aaron_Peirsol"] and got["ProbeSha256"] is None
    assert [c["FaceId"] for c in got["Candidates"]] == [m.face.face_id for m in found.face_matches]
    assert got["FalseMatchRate"] == 1e-1 and len(got["Candidates"]) == len(PEOPLE) - 1  # threshold 0: everyone
    assert got["Details"]["FalseMatchRateBound"] == "at-least"  # under the calibration: 1e-1 or more

    fp.create_user("people", "sorkin")
    fp.associate_faces("people", "sorkin", [faces["Aaron_Sorkin"]])
    probe = lfw_image("Aaron_Sorkin", 2).read_bytes()
    users = fp.search_users_by_image("people", probe, case="C-3")
    got = entry(fp, users.audit_id)
    assert got["Operation"] == "SearchUsersByImage" and got["ProbeSha256"] == sha(probe)
    assert got["Candidates"] == [{"UserId": "sorkin", "Similarity": users.user_matches[0].similarity}]
    assert users.probe is not None and got["ProbeQuality"] == users.probe.to_json()
    by_face = fp.search_users("people", face_id=faces["Aaron_Sorkin"], user_match_threshold=0, case="C-4")
    got = entry(fp, by_face.audit_id)
    assert got["Operation"] == "SearchUsers" and got["Details"]["FaceId"] == faces["Aaron_Sorkin"]

    source, target = lfw_image("Colin_Powell", 2), lfw_image("Colin_Powell", 1)
    compared = fp.compare_faces(str(source), str(target), case="C-5")
    got = entry(fp, compared.audit_id)
    assert got["Operation"] == "CompareFaces" and got["CollectionId"] is None
    assert got["ProbeSha256"] == sha(source.read_bytes())
    assert got["Details"]["TargetSha256"] == sha(target.read_bytes()) and got["Details"]["TargetFaces"] == 1
    assert [c["Similarity"] for c in got["Candidates"]] == [compared.face_matches[0].similarity]
    assert compared.probe is not None and got["ProbeQuality"] == compared.probe.to_json()


def test_a_required_case_is_asked_for_before_any_work(enrolled) -> None:
    fp, _ = enrolled
    before = fp.audit_log.head()
    for call in (lambda: fp.search_faces_by_image("people", b"not even an image", caller=ALICE),
                 lambda: fp.search_faces("people", "not-a-face-id", caller=ALICE),
                 lambda: fp.index_faces("people", b"not even an image", caller=ALICE),
                 lambda: fp.delete_collection("people", caller=ALICE),
                 lambda: fp.compare_faces(b"x", b"y", caller=ALICE)):
        with pytest.raises(AccessDeniedException):  # not InvalidImageFormat: nothing was decoded
            call()
    assert fp.audit_log.head() == before
    assert fp.describe_collection("people").face_count == len(PEOPLE)


def test_a_log_that_cannot_be_written_gives_no_result(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fp = make(home)
    fp.create_collection("c")
    face = fp.index_faces("c", lfw_image("Aaron_Peirsol", 1)).face_records[0].face.face_id
    shutil.rmtree(home / "audit")
    (home / "audit").write_text("the audit folder is gone")  # not even root can write a log under a file
    broken = make(home)
    probe = lfw_image("Aaron_Peirsol", 2).read_bytes()
    for call in (lambda: broken.search_faces_by_image("c", probe), lambda: broken.search_faces("c", face),
                 lambda: broken.compare_faces(probe, probe)):
        with pytest.raises(AuditUnavailable) as caught:
            call()
        assert caught.value.code == "InternalServerError" and str(home) not in caught.value.message
    with pytest.raises(AuditUnavailable):  # no entry, no enrolment: the faces are not stored
        broken.index_faces("c", lfw_image("Aaron_Sorkin", 1))
    assert [f.face_id for f in broken.list_faces("c").faces] == [face]
    for delete in (lambda: broken.delete_faces("c", [face]), lambda: broken.delete_collection("c")):
        with pytest.raises(AuditUnavailable) as caught:  # a deletion is made first: the error says it stands
            delete()
        assert "deletion was carried out" in caught.value.message and "not carried out" not in caught.value.message
    assert broken.list_collections().collection_ids == []


def test_a_low_quality_probe_is_flagged_and_refused_where_the_caller_asks(enrolled) -> None:
    fp, _ = enrolled
    probe = low_quality_probe()
    flagged = fp.search_faces_by_image("people", probe, case="C-6")
    assert flagged.probe.low_quality and flagged.probe.face_width < 48
    got = entry(fp, flagged.audit_id)
    assert got["LowQuality"] is True and got["ProbeQuality"]["LowQuality"] is True
    strict = Caller("bob", "console", refuse_low_quality=True)
    before = fp.audit_log.head()[0]
    with pytest.raises(InvalidParameterException, match="refuses low-quality probes"):
        fp.search_faces_by_image("people", probe, caller=strict, case="C-7")
    with pytest.raises(InvalidParameterException, match="refuses low-quality probes"):
        fp.search_users_by_image("people", probe, caller=strict, case="C-7")
    refused = [r.to_json() for r in fp.audit_log.query(after=before)]
    assert [(r["Operation"], r["Actor"], r["ActorKind"]) for r in refused] == \
        [("SearchFacesByImage", "bob", "console"), ("SearchUsersByImage", "bob", "console")]
    for got in refused:
        assert got["Details"] == {"Refused": "low-quality probe"} and got["Candidates"] == []
        assert got["LowQuality"] is True and got["ProbeSha256"] == sha(probe) and got["Case"] == "C-7"
    good = fp.search_faces_by_image("people", lfw_image("Aaron_Peirsol", 2).read_bytes(), caller=strict)
    assert good.face_matches and not good.probe.low_quality


def test_deletes_and_crops_are_recorded_and_follow_the_collection_settings(tmp_path: Path) -> None:
    fp = make(tmp_path / "home", two_person_default=True, store_probes=True)
    fp.create_collection("kept")
    assert fp.settings_store.get("kept").two_person_rule is True  # new collections get the default
    fp.update_collection_settings("kept", keep_face_crops=True)
    ids = [fp.index_faces("kept", lfw_image(name, 1), external_image_id=name).face_records[0].face.face_id
           for name in PEOPLE[:2]]
    crops = [fp.crops.get("kept", face_id) for face_id in ids]
    assert all(c is not None and c[:3] == b"\xff\xd8\xff" for c in crops)
    probe = lfw_image("Aaron_Peirsol", 2).read_bytes()
    found = fp.search_faces_by_image("kept", probe)
    assert entry(fp, found.audit_id)["Details"]["ProbeStored"] is True and fp.probe_store.get(sha(probe)) == probe

    deleted = fp.delete_faces("kept", [ids[0], "00000000-0000-0000-0000-000000000000"], case="D-1")
    got = fp.audit_log.query(AuditFilter(operation="DeleteFaces"))[-1].to_json()
    assert deleted.deleted_faces == [ids[0]] and got["Case"] == "D-1"
    assert got["Details"] == {"FaceIds": [ids[0]], "NotDeleted": 1, "CropsErased": 1}
    assert fp.crops.get("kept", ids[0]) is None and fp.crops.get("kept", ids[1]) is not None

    fp.delete_collection("kept", purpose="case closed")
    got = fp.audit_log.query(AuditFilter(operation="DeleteCollection"))[-1].to_json()
    assert (got["CollectionId"], got["Purpose"]) == ("kept", "case closed")
    assert got["Details"] == {"FaceCount": 1, "CropsErased": 1}
    assert "kept" not in fp.settings_store.all() and not fp.crops.collection_folder("kept").exists()


def test_with_the_record_off_nothing_is_written(tmp_path: Path) -> None:
    fp = make(tmp_path / "home", enabled=False)
    fp.create_collection("c")
    indexed = fp.index_faces("c", lfw_image("Aaron_Peirsol", 1))
    found = fp.search_faces_by_image("c", lfw_image("Aaron_Peirsol", 2))
    assert indexed.audit_id is None and found.audit_id is None and found.face_matches
    assert found.probe is not None  # the probe's quality is still reported
    assert not (tmp_path / "home" / "audit").exists()


def test_a_collection_of_the_other_profile_can_be_deleted_on_record(tmp_path: Path) -> None:
    """DeleteCollection needs no vectors: a collection made with one profile is deleted from the other
    (as before the record), and the deletion is recorded with its size."""
    Faceprint(tmp_path, profile="fast").create_collection("old-profile")
    accurate = Faceprint(tmp_path, profile="accurate")
    accurate.delete_collection("old-profile", case="CLEAN-1")
    assert accurate.list_collections().collection_ids == []
    got = accurate.audit_entries(AuditFilter(operation="DeleteCollection"))["Entries"]
    assert [(e["CollectionId"], e["Case"], e["Details"]["FaceCount"]) for e in got] == [("old-profile", "CLEAN-1", 0)]
