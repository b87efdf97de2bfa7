"""faceprint's own operations over the wire: ``boto3.client("faceprint")`` with the model shipped in
the package (``faceprint.client.faceprint_client``) against a real `faceprint serve`: two-person
review, collection settings, the audit record, erasure, and key policies that name them."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import lfw_image
from faceprint.client import faceprint_client, with_case
from serverkit import REGION, Server, faceprint_keys

COLLECTION = "reviewed"
OTHER = "other-people"
CASE = "CASE-2026-0099"


def _key(home: Path, name: str, *args: str) -> dict[str, str]:
    return faceprint_keys(home, "create", "--name", name, *args)["AccessKey"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faceprint-service-home")


@pytest.fixture(scope="module")
def keys(home: Path) -> dict[str, dict[str, str]]:
    return {"alice": _key(home, "alice"), "bob": _key(home, "bob"),
            "auditor": _key(home, "auditor", "--operations", "ListAuditEntries,VerifyAudit,GetAuditReport"),
            "team": _key(home, "team", "--collections", "other-*")}


@pytest.fixture(scope="module")
def server(home: Path, keys: dict[str, dict[str, str]]):
    srv = Server(home)
    try:
        rek = srv.client(keys["alice"]["AccessKeyId"], keys["alice"]["SecretAccessKey"])
        for collection in (COLLECTION, OTHER):
            rek.create_collection(CollectionId=collection)
        for n in (1, 3):
            rek.index_faces(CollectionId=COLLECTION, Image={"Bytes": lfw_image("Aaron_Peirsol", n).read_bytes()},
                            ExternalImageId=f"aaron-{n}")
        rek.index_faces(CollectionId=OTHER, Image={"Bytes": lfw_image("Abdullah_Gul", 13).read_bytes()},
                        ExternalImageId="abdullah")
        yield srv
    finally:
        assert srv.stop() in (0, -signal.SIGTERM)


def fpc(server: Server, key: dict[str, str]) -> Any:
    return faceprint_client(endpoint_url=server.url, region_name=REGION, aws_access_key_id=key["AccessKeyId"],
                            aws_secret_access_key=key["SecretAccessKey"],
                            config=Config(retries={"total_max_attempts": 1}))


def rekognition(server: Server, key: dict[str, str]) -> Any:
    return server.client(key["AccessKeyId"], key["SecretAccessKey"])


def code_of(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    return exc.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def search_id(server: Server, keys: dict[str, dict[str, str]]) -> int:
    rek = with_case(rekognition(server, keys["alice"]), CASE, purpose="identify a suspect")
    found = rek.search_faces_by_image(CollectionId=COLLECTION,
                                      Image={"Bytes": lfw_image("Aaron_Peirsol", 2).read_bytes()})
    assert len(found["FaceMatches"]) == 2
    return int(found["ResponseMetadata"]["HTTPHeaders"]["x-faceprint-audit-id"])


def test_new_collections_on_the_server_have_the_two_person_rule(server: Server,
                                                                keys: dict[str, dict[str, str]]) -> None:
    settings = fpc(server, keys["alice"]).describe_collection_settings(CollectionId=COLLECTION)
    assert settings["CollectionId"] == COLLECTION and settings["TwoPersonRule"] is True
    assert settings["KeepFaceCrops"] is False and "FaceRetentionDays" not in settings


def test_two_people_confirm_a_candidate(server: Server, keys: dict[str, dict[str, str]], search_id: int) -> None:
    alice, bob = fpc(server, keys["alice"]), fpc(server, keys["bob"])
    requested = alice.request_review(SearchId=search_id)["Candidates"]
    assert len(requested) == 2 and {c["Status"] for c in requested} == {"pending"}
    face_id = requested[0]["FaceId"]
    once = alice.review_candidate(SearchId=search_id, FaceId=face_id, Decision="CONFIRMED")["Candidate"]
    assert once["Status"] == "awaiting-second"
    twice = alice.review_candidate(SearchId=search_id, FaceId=face_id, Decision="CONFIRMED", Note="sure")
    assert twice["Candidate"]["Status"] == "awaiting-second"  # one user twice never counts twice
    done = bob.review_candidate(SearchId=search_id, FaceId=face_id, Decision="CONFIRMED")["Candidate"]
    assert done["Status"] == "confirmed" and done["CollectionId"] == COLLECTION
    assert [d["Reviewer"] for d in done["Decisions"]] == ["alice", "alice", "bob"]
    review = bob.get_review(SearchId=search_id)
    assert review["SearchId"] == search_id and len(review["Candidates"]) == 2
    confirmed = alice.list_reviews(Status="confirmed", CollectionId=COLLECTION)["Candidates"]
    assert [(c["SearchId"], c["FaceId"]) for c in confirmed] == [(search_id, face_id)]
    assert code_of(alice.review_candidate, SearchId=search_id, FaceId=face_id, Decision="MAYBE") == \
        "ValidationException"  # the server validates against the shipped model (botocore does not check enums)
    assert code_of(alice.review_candidate, SearchId=search_id, FaceId="00000000-0000-0000-0000-000000000000",
                   Decision="REJECTED") == "ResourceNotFoundException"


def test_a_user_found_by_search_users_is_reviewed_by_its_user_id(server: Server,
                                                                   keys: dict[str, dict[str, str]]) -> None:
    rek = rekognition(server, keys["alice"])
    faces = [f["FaceId"] for f in rek.list_faces(CollectionId=COLLECTION)["Faces"]]
    rek.create_user(CollectionId=COLLECTION, UserId="aaron:peirsol")
    rek.associate_faces(CollectionId=COLLECTION, UserId="aaron:peirsol", FaceIds=faces)
    found = rek.search_users_by_image(CollectionId=COLLECTION,
                                      Image={"Bytes": lfw_image("Aaron_Peirsol", 4).read_bytes()})
    assert [m["User"]["UserId"] for m in found["UserMatches"]] == ["aaron:peirsol"]
    search = int(found["ResponseMetadata"]["HTTPHeaders"]["x-faceprint-audit-id"])
    alice = fpc(server, keys["alice"])
    assert [c["FaceId"] for c in alice.request_review(SearchId=search, FaceIds=["aaron:peirsol"])["Candidates"]] == \
        ["aaron:peirsol"]
    decided = alice.review_candidate(SearchId=search, FaceId="aaron:peirsol", Decision="REJECTED")["Candidate"]
    assert decided["Status"] == "rejected"


def test_collection_settings_change_and_are_audited(server: Server, keys: dict[str, dict[str, str]]) -> None:
    alice = with_case(fpc(server, keys["alice"]), CASE)
    changed = alice.update_collection_settings(CollectionId=OTHER, TwoPersonRule=False, FaceRetentionDays=30)
    assert (changed["TwoPersonRule"], changed["FaceRetentionDays"]) == (False, 30)
    cleared = alice.update_collection_settings(CollectionId=OTHER, FaceRetentionDays=0)
    assert cleared["TwoPersonRule"] is False and "FaceRetentionDays" not in cleared
    entries = alice.list_audit_entries(Operation="CollectionSettingsChanged", CollectionId=OTHER)["Entries"]
    assert [e["Actor"] for e in entries] == ["alice", "alice"] and entries[0]["Case"] == CASE
    assert code_of(alice.describe_collection_settings, CollectionId="no-such") == "ResourceNotFoundException"


def test_the_audit_record_over_the_wire(server: Server, keys: dict[str, dict[str, str]], search_id: int) -> None:
    auditor = fpc(server, keys["auditor"])
    entries = auditor.list_audit_entries(CaseReference=CASE, Operation="SearchFacesByImage")["Entries"]
    assert [e["Seq"] for e in entries] == [search_id]
    assert entries[0]["Purpose"] == "identify a suspect" and len(entries[0]["Candidates"]) == 2
    assert entries[0]["ProbeQuality"]["FaceWidth"] > 40 and entries[0]["Started"].year >= 2026
    page = auditor.list_audit_entries(MaxResults=1, EndTime=time.time() + 60)
    assert len(page["Entries"]) == 1 and "NextToken" in page
    verified = auditor.verify_audit()
    assert verified["Ok"] is True and verified["Entries"] >= 3 and verified["Problems"] == []
    report = auditor.get_audit_report()
    purpose = next(p for p in report["ByPurpose"] if p["Purpose"] == "identify a suspect")
    assert (purpose["Searches"], purpose["CandidatesReturned"], purpose["Cases"]) == (1, 2, 1)
    assert report["Totals"]["Enrolments"] == 3 and report["Totals"]["Searches"] >= 1
    assert code_of(rekognition(server, keys["auditor"]).list_collections) == "AccessDeniedException"
    assert code_of(auditor.review_candidate, SearchId=search_id, FaceId="00000000-0000-0000-0000-000000000000",
                   Decision="CONFIRMED") == "AccessDeniedException"


def test_a_key_limited_to_some_collections(server: Server, keys: dict[str, dict[str, str]], search_id: int) -> None:
    team = fpc(server, keys["team"])
    assert team.describe_collection_settings(CollectionId=OTHER)["CollectionId"] == OTHER
    assert code_of(team.describe_collection_settings, CollectionId=COLLECTION) == "AccessDeniedException"
    assert code_of(team.get_review, SearchId=search_id) == "AccessDeniedException"  # the search was on COLLECTION
    for call in (team.verify_audit, team.get_audit_report, team.list_audit_entries, team.list_reviews):
        assert code_of(call) == "AccessDeniedException"
    assert team.list_audit_entries(CollectionId=OTHER)["Entries"]


def test_erase_removes_a_person_everywhere(server: Server, keys: dict[str, dict[str, str]]) -> None:
    alice = fpc(server, keys["alice"])
    assert code_of(alice.erase) == "InvalidParameterException"
    erased = alice.erase(ExternalImageId="abdullah")
    assert erased["ExternalImageId"] == "abdullah" and erased["FacesErased"] == 1
    assert erased["ResponseMetadata"]["HTTPHeaders"]["x-faceprint-audit-id"] == str(erased["AuditId"])
    assert rekognition(server, keys["alice"]).list_faces(CollectionId=OTHER)["Faces"] == []
    entry = alice.list_audit_entries(Operation="Erase")["Entries"][-1]
    assert entry["Seq"] == erased["AuditId"] and entry["Actor"] == "alice"


def test_an_unknown_faceprint_target(server: Server, keys: dict[str, dict[str, str]]) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest("POST", server.url + "/", data=b"{}",
                         headers={"X-Amz-Target": "FaceprintService.DropEverything",
                                  "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials(keys["alice"]["AccessKeyId"], keys["alice"]["SecretAccessKey"]), "rekognition",
              REGION).add_auth(request)
    status, body = server.post(b"{}", dict(request.headers.items()))
    assert status == 400 and body["__type"] == "UnknownOperationException"
    assert "FaceprintService.<Operation>" in body["Message"]


def test_the_shipped_model_describes_what_the_server_answers(tmp_path: Path) -> None:
    """Every operation served is modelled (and the reverse), and the members the facade answers are in the
    model: botocore drops what its model lacks, so a member missing here would vanish from boto3's answers."""
    from faceprint.audit.caller import Caller
    from faceprint.audit.log import AuditLog, Entry, Record
    from faceprint.audit.report import audit_report
    from faceprint.audit.review import CandidateReview
    from faceprint.audit.verify import VerifyReport
    from faceprint.probes import ProbeQuality
    from faceprint.server.faceprint_ops import FACEPRINT_SERVED
    from faceprint.server.model import ServiceModel

    model = ServiceModel.faceprint()
    assert set(model.operations) == set(FACEPRINT_SERVED)
    assert faceprint_client(region_name=REGION, endpoint_url="http://127.0.0.1:9").meta.service_model.metadata[
        "targetPrefix"] == "FaceprintService"

    def members(shape: str) -> set[str]:
        return set(model.shape(shape)["members"])

    entry = Entry("SearchFaces", Caller("a"), 1.0, 2.0, probe_quality=ProbeQuality(80, 50.0, 97.0, 90.0).to_json())
    assert set(Record(1, entry, "0" * 64, "1" * 64).to_json()) <= members("AuditEntry")
    assert set(ProbeQuality(80, 50.0, 97.0, 90.0).to_json()) <= members("ProbeQuality")
    review = CandidateReview(1, "f", "c", 99.0, "pending", ({"Reviewer": "a", "Decision": "CONFIRMED", "Time": "t",
                                                             "Note": None, "AuditId": 2},))
    assert set(review.to_json()) <= members("CandidateReview")
    assert set(review.to_json()["Decisions"][0]) <= members("ReviewerDecision")
    assert set(VerifyReport(True, 0, []).to_json()) <= members("VerifyAuditResponse")
    log = AuditLog(tmp_path)
    try:
        assert set(audit_report(log, None, None)) <= members("GetAuditReportResponse")
    finally:
        log.close()
