"""Collection settings (faceprint.audit.settings) and their facade: the two-person rule, face crops and
face retention of each collection, changed with an audit entry, dropped with the collection."""

from __future__ import annotations

import stat

import pytest

from faceprint.audit.caller import Caller
from faceprint.audit.config import AuditSettings
from faceprint.audit.log import AuditFilter, Entry
from faceprint.audit.settings import KEEP, CollectionSettings, SettingsStore
from faceprint.errors import AuditUnavailable, InvalidParameterException, ResourceNotFoundException
from faceprint.service import Faceprint

FACE = "11111111-1111-4111-8111-111111111111"


def test_the_store_keeps_settings_privately_and_forgets_a_dropped_collection(tmp_path):
    store = SettingsStore(tmp_path / "home" / "settings.db")
    assert store.get("people") == CollectionSettings()  # a collection made before settings existed
    store.put("people", CollectionSettings(True, True, 30))
    store.put("others", CollectionSettings(keep_face_crops=True))
    again = SettingsStore(tmp_path / "home" / "settings.db")
    assert again.get("people") == CollectionSettings(True, True, 30)
    assert list(again.all()) == ["others", "people"]
    again.drop("people")
    again.drop("never-there")
    assert store.get("people") == CollectionSettings() and list(store.all()) == ["others"]
    assert stat.S_IMODE((tmp_path / "home" / "settings.db").stat().st_mode) == 0o600
    store.close()
    again.close()


@pytest.mark.parametrize("changes", [{"two_person_rule": "yes"}, {"keep_face_crops": 1}, {"face_retention_days": 0},
                                     {"face_retention_days": 36501}, {"face_retention_days": 2.5},
                                     {"face_retention_days": True}, {"face_retention_days": "30"}])
def test_bad_values_are_refused(changes):
    with pytest.raises(InvalidParameterException):
        CollectionSettings().updated(**changes)


def test_an_update_changes_only_what_it_names():
    s = CollectionSettings(True, False, 30)
    assert s.changed() == s
    assert s.changed(keep_face_crops=True) == CollectionSettings(True, True, 30)
    assert s.changed(face_retention_days=None) == CollectionSettings(True, False, None)
    assert s.changed(two_person_rule=False, face_retention_days=KEEP) == CollectionSettings(False, False, 30)


@pytest.fixture
def fp(tmp_path):
    return Faceprint(tmp_path / "home", profile="fast", audit=AuditSettings(two_person_default=True))


def settings_entries(fp):
    return fp.audit_log.query(AuditFilter(operation="CollectionSettingsChanged"))


def test_new_collections_take_the_default_and_deleted_ones_lose_their_settings(fp, tmp_path):
    fp.create_collection("people")
    assert fp.describe_collection_settings("people") == {"CollectionId": "people", "TwoPersonRule": True,
                                                         "KeepFaceCrops": False, "FaceRetentionDays": None}
    fp.update_collection_settings("people", keep_face_crops=True, face_retention_days=90)
    fp.delete_collection("people")
    assert "people" not in fp.settings_store.all()
    plain = Faceprint(tmp_path / "home", profile="fast")  # the Python API's default: rule off
    plain.create_collection("people")
    assert plain.describe_collection_settings("people")["TwoPersonRule"] is False
    assert plain.describe_collection_settings("people")["KeepFaceCrops"] is False


def test_a_change_is_recorded_first_and_a_non_change_is_not(fp):
    fp.create_collection("people")
    alice = Caller("alice", "console")
    out = fp.update_collection_settings("people", two_person_rule=False, face_retention_days=30, caller=alice,
                                        case="policy-2026")
    assert out == {"CollectionId": "people", "TwoPersonRule": False, "KeepFaceCrops": False, "FaceRetentionDays": 30}
    fp.update_collection_settings("people", two_person_rule=False)  # nothing changes: nothing recorded
    [entry] = settings_entries(fp)
    assert (entry.entry.caller.actor, entry.entry.caller.case, entry.entry.collection_id) == (
        "alice", "policy-2026", "people")
    assert entry.entry.details == {"Before": {"TwoPersonRule": True, "KeepFaceCrops": False, "FaceRetentionDays": None},
                                   "After": {"TwoPersonRule": False, "KeepFaceCrops": False, "FaceRetentionDays": 30}}
    fp.update_collection_settings("people", face_retention_days=None)
    assert fp.describe_collection_settings("people")["FaceRetentionDays"] is None
    assert len(settings_entries(fp)) == 2


def test_no_entry_no_change(fp):
    fp.create_collection("people")
    fp.audit_log.append(Entry("Marker", Caller("alice"), 1.0, 2.0))
    fp.audit_log.journaled = False  # every append goes to audit.db (not the journal: faceprint.audit.log)
    fp.audit_log._db().db().execute("PRAGMA query_only=ON")  # readable, no longer writable
    with pytest.raises(AuditUnavailable):
        fp.update_collection_settings("people", two_person_rule=False)
    assert fp.describe_collection_settings("people")["TwoPersonRule"] is True


@pytest.mark.parametrize(("collection", "changes", "error"), [
    ("missing", {"two_person_rule": True}, ResourceNotFoundException),
    ("bad/id", {}, InvalidParameterException),
    ("people", {"two_person_rule": "true"}, InvalidParameterException),
    ("people", {"face_retention_days": -3}, InvalidParameterException),
])
def test_bad_updates_are_refused_without_an_entry(fp, collection, changes, error):
    fp.create_collection("people")
    with pytest.raises(error):
        fp.update_collection_settings(collection, **changes)
    assert settings_entries(fp) == []
    with pytest.raises((ResourceNotFoundException, InvalidParameterException)):
        fp.describe_collection_settings("missing" if collection == "people" else collection)


def test_turning_the_rule_on_holds_a_one_person_confirmation(fp):
    fp.create_collection("people")
    fp.update_collection_settings("people", two_person_rule=False)
    search = fp.audit_log.append(Entry("SearchFaces", Caller("investigator"), 1.0, 2.0, collection_id="people",
                                       candidates=({"FaceId": FACE, "Similarity": 98.0},))).seq
    assert fp.review_candidate(search, FACE, "CONFIRMED", caller=Caller("alice"))["Candidate"]["Status"] == "confirmed"
    fp.update_collection_settings("people", two_person_rule=True)
    [candidate] = fp.get_review(search)["Candidates"]
    assert (candidate["Status"], candidate["RequiredConfirmations"]) == ("awaiting-second", 2)
    assert fp.list_reviews(status="awaiting-second")["Candidates"][0]["FaceId"] == FACE
