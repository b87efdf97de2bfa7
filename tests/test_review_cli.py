"""``faceprint review`` and ``faceprint collection-settings`` run in-process against a home whose audit
log holds a recorded search (appended as the recorder would: no model needed)."""

from __future__ import annotations

import json

import pytest

from faceprint.audit.caller import Caller, os_user
from faceprint.audit.log import AuditFilter, Entry
from faceprint.cli import main
from faceprint.service import Faceprint

FACE_A = "11111111-1111-4111-8111-111111111111"
FACE_B = "22222222-2222-4222-8222-222222222222"


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    fp = Faceprint(home)
    fp.create_collection("people")
    fp.update_collection_settings("people", two_person_rule=True)
    candidates = ({"FaceId": FACE_A, "Similarity": 99.1, "ExternalImageId": "ann"},
                  {"FaceId": FACE_B, "Similarity": 91.0, "ExternalImageId": "bea"})
    fp.audit_log.append(Entry("SearchFacesByImage", Caller("investigator", case="case-7"), 1.0, 2.0,
                              collection_id="people", candidates=candidates))
    return home


def cli(capsys, home, *argv):
    status = main(["--home", str(home), *argv])
    out = capsys.readouterr()
    return status, json.loads(out.out) if out.out.strip() else json.loads(out.err)


def search_id(home):
    return str(Faceprint(home).audit_log.query(AuditFilter(operation="SearchFacesByImage"))[0].seq)


def test_one_os_user_cannot_confirm_alone(capsys, home):
    sid = search_id(home)
    status, out = cli(capsys, home, "review", "request", "--search-id", sid, "--face-ids", FACE_A)
    assert status == 0 and [c["Status"] for c in out["Candidates"]] == ["pending"]
    for _ in range(2):
        status, out = cli(capsys, home, "review", "confirm", "--search-id", sid, "--face-id", FACE_A,
                          "--note", "same ear")
        assert status == 0 and out["Candidate"]["Status"] == "awaiting-second"
    assert [d["Reviewer"] for d in out["Candidate"]["Decisions"]] == [os_user()] * 2
    # a second person (here through the Python API) completes it
    Faceprint(home).review_candidate(int(sid), FACE_A, "CONFIRMED", caller=Caller("second-reviewer", "console"))
    status, out = cli(capsys, home, "review", "list", "--status", "confirmed")
    assert [(c["FaceId"], c["Confirmations"]) for c in out["Candidates"]] == [(FACE_A, 2)]
    status, out = cli(capsys, home, "review", "reject", "--search-id", sid, "--face-id", FACE_B, "--home", str(home))
    assert out["Candidate"]["Status"] == "rejected"
    status, out = cli(capsys, home, "review", "show", "--search-id", sid)
    assert [(c["FaceId"], c["Status"]) for c in out["Candidates"]] == [(FACE_A, "confirmed"), (FACE_B, "rejected")]
    decision = Faceprint(home).audit_log.query(AuditFilter(operation="ReviewDecision"))[0]
    assert (decision.entry.caller.kind, decision.entry.caller.case) == ("os", "case-7")


def test_errors_are_rekognition_codes(capsys, home):
    sid = search_id(home)
    status, out = cli(capsys, home, "review", "inconclusive", "--search-id", sid,
                      "--face-id", "33333333-3333-4333-8333-333333333333")
    assert status == 1 and out["Code"] == "ResourceNotFoundException"
    status, out = cli(capsys, home, "review", "confirm", "--search-id", "999", "--face-id", FACE_A)
    assert status == 1 and out["Code"] == "ResourceNotFoundException"
    status, out = cli(capsys, home, "review", "list", "--next-token", "forged")
    assert status == 1 and out["Code"] == "InvalidPaginationTokenException"
    status, out = cli(capsys, home, "collection-settings", "set", "--collection-id", "people",
                      "--face-retention-days", "soon")
    assert status == 1 and out["Code"] == "InvalidParameterException"


def test_collection_settings_get_and_set(capsys, home):
    status, out = cli(capsys, home, "collection-settings", "set", "--collection-id", "people",
                      "--keep-face-crops", "true", "--face-retention-days", "365", "--case", "policy-1")
    assert status == 0 and out == {"CollectionId": "people", "TwoPersonRule": True, "KeepFaceCrops": True,
                                   "FaceRetentionDays": 365}
    status, out = cli(capsys, home, "collection-settings", "set", "--collection-id", "people",
                      "--two-person-rule", "false", "--face-retention-days", "none")
    assert out["TwoPersonRule"] is False and out["FaceRetentionDays"] is None
    status, out = cli(capsys, home, "collection-settings", "get", "--collection-id", "people")
    assert (out["TwoPersonRule"], out["KeepFaceCrops"], out["FaceRetentionDays"]) == (False, True, None)
    changes = Faceprint(home).audit_log.query(AuditFilter(operation="CollectionSettingsChanged"))
    assert [c.entry.caller.case for c in changes] == [None, "policy-1", None]
    status, out = cli(capsys, home, "collection-settings", "get", "--collection-id", "missing")
    assert status == 1 and out["Code"] == "ResourceNotFoundException"
