"""Review of a real search: LFW faces indexed with the fast profile, searched with another photo of the
same person; the search's audit id names it for review, and only two people confirm its candidate."""

from __future__ import annotations

import pytest

from conftest import lfw_image
from faceprint.audit.caller import Caller
from faceprint.errors import ResourceNotFoundException

INVESTIGATOR = Caller("investigator", "console", purpose="missing person", case="MP-12")


def test_a_real_search_is_reviewed_by_two_people(fast):
    fast.create_collection("review-e2e")
    fast.update_collection_settings("review-e2e", two_person_rule=True)
    indexed = {}
    for name, number in (("Aaron_Peirsol", 1), ("Abdullah_Gul", 13), ("Abel_Pacheco", 1)):
        record = fast.index_faces("review-e2e", str(lfw_image(name, number)), external_image_id=name)
        indexed[name] = record.face_records[0].face.face_id
    found = fast.search_faces_by_image("review-e2e", str(lfw_image("Aaron_Peirsol", 2)), max_faces=3,
                                       face_match_threshold=0.0, caller=INVESTIGATOR)
    assert found.audit_id is not None
    matched = [m.face.face_id for m in found.face_matches]
    assert matched[0] == indexed["Aaron_Peirsol"]

    asked = fast.request_review(found.audit_id, caller=INVESTIGATOR)
    assert [c["FaceId"] for c in asked["Candidates"]] == matched  # every candidate, best first
    assert asked["Candidates"][0]["ExternalImageId"] == "Aaron_Peirsol"
    top = matched[0]
    first = fast.review_candidate(found.audit_id, top, "CONFIRMED", note="same person", caller=INVESTIGATOR)
    assert first["Candidate"]["Status"] == "awaiting-second"
    second = fast.review_candidate(found.audit_id, top, "CONFIRMED", caller=Caller("reviewer-2", "console"))
    assert second["Candidate"]["Status"] == "confirmed"
    assert second["Candidate"]["Similarity"] == pytest.approx(found.face_matches[0].similarity)
    decision = fast.audit_log.get(second["Candidate"]["Decisions"][-1]["AuditId"])
    assert decision.entry.caller.case == "MP-12"  # the second reviewer works under the search's case
    assert decision.entry.probe_sha256 == fast.audit_log.get(found.audit_id).entry.probe_sha256
    with pytest.raises(ResourceNotFoundException):  # a face of the collection that the search did not return
        fast.review_candidate(found.audit_id, "00000000-0000-4000-8000-000000000000", "CONFIRMED")
    fast.delete_collection("review-e2e")
    # the review stays with the record after the collection is gone
    assert fast.get_review(found.audit_id)["Candidates"][0]["Status"] == "confirmed"
