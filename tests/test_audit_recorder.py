"""What an audited operation records (faceprint.audit.recorder), the false-match rate of a
threshold (faceprint.audit.fmr) and the stored probes (faceprint.audit.probe_store), against the
real audit log on disk. No models: these are the parts under the facade."""

from __future__ import annotations

import hashlib
import math
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import lfw_image
from faceprint.audit.caller import Caller
from faceprint.audit.config import AuditSettings
from faceprint.audit.fmr import describe_rate, expected_false_matches, false_match_rate
from faceprint.audit.log import AuditLog
from faceprint.audit.probe_store import Probe, ProbeStore, png, read_probe
from faceprint.audit.recorder import Recorder, face_candidates, refusal, user_candidates
from faceprint.errors import AuditUnavailable
from faceprint.imaging import DecodedImage, load_image
from faceprint.models.profiles import FMR_LEVELS, get_profile
from faceprint.probes import ProbeQuality
from faceprint.types import BoundingBox, Face, FaceMatch, User, UserMatch

FAST = get_profile("fast")
ALICE = Caller("alice", "key", "AKIAALICE", purpose="missing person", case="CASE-7")


def recorder(tmp_path: Path, **settings: object) -> Recorder:
    home = tmp_path / "home"
    return Recorder(AuditLog(home / "audit", clock=lambda: 1_800_000_000.0), FAST, AuditSettings(**settings),
                    ProbeStore(home / "audit" / "probes"), clock=lambda: 1_800_000_002.5)


def match(face_id: str, similarity: float, external: str | None = None, user: str | None = None) -> FaceMatch:
    return FaceMatch(similarity=similarity, face=Face(face_id=face_id, bounding_box=BoundingBox(0.1, 0.1, 0.2, 0.2),
                                                      image_id="i", confidence=99.0, external_image_id=external,
                                                      user_id=user))


def test_false_match_rate_follows_the_calibrated_levels() -> None:
    for rate, similarity in FMR_LEVELS:
        assert false_match_rate(FAST, similarity) == pytest.approx(rate)
    # log-linear between two levels: half-way is the geometric mean
    assert false_match_rate(FAST, 85.0) == pytest.approx(math.sqrt(1e-4 * 1e-5), rel=1e-2)
    assert false_match_rate(FAST, 55.0) == pytest.approx(10 ** -1.5, rel=1e-2)
    # outside the calibration: a bound (at least 1e-1 under 50, at most 1e-6 over 99)
    assert false_match_rate(FAST, 0.0) == false_match_rate(FAST, 49.9) == 1e-1
    assert false_match_rate(FAST, 100.0) == 1e-6
    rates = [false_match_rate(FAST, s / 2) for s in range(0, 201)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    assert describe_rate(FAST, 80) == "about 1 in 10,000 comparisons"
    assert describe_rate(FAST, 30) == "at least 1 in 10 comparisons"
    assert expected_false_matches(1e-4, 1_000_000) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        false_match_rate(FAST, float("nan"))


def test_a_search_entry_holds_who_what_and_the_candidates(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    probe = lfw_image("Aaron_Peirsol", 2).read_bytes()
    quality = ProbeQuality(face_width=33, sharpness=18.5, expected_rank1=60.6, floor=90.0)
    candidates = face_candidates([match("f1", 99.1, "peirsol"), match("f2", 85.0, user="u2")])
    seq = rec.searched("SearchFacesByImage", ALICE, 1_800_000_001.0, "people", 1234, 90.0, candidates,
                       probe_bytes=probe, probe_quality=quality, details={"MaxFaces": 5})
    got = rec.log.get(seq).to_json()
    assert got["Operation"] == "SearchFacesByImage" and got["Seq"] == seq == 1
    assert (got["Actor"], got["ActorKind"], got["KeyId"]) == ("alice", "key", "AKIAALICE")
    assert (got["Purpose"], got["Case"]) == ("missing person", "CASE-7")
    assert got["Started"] == "2027-01-15T08:00:01.000Z" and got["Ended"] == "2027-01-15T08:00:02.500Z"
    assert (got["CollectionId"], got["CollectionSize"], got["Threshold"]) == ("people", 1234, 90.0)
    assert got["FalseMatchRate"] == pytest.approx(1e-5)
    assert got["ProbeSha256"] == hashlib.sha256(probe).hexdigest()
    assert got["ProbeQuality"] == quality.to_json() and got["LowQuality"] is True
    assert got["Candidates"] == [{"FaceId": "f1", "Similarity": 99.1, "ExternalImageId": "peirsol"},
                                 {"FaceId": "f2", "Similarity": 85.0, "UserId": "u2"}]
    assert got["Details"] == {"MaxFaces": 5}  # the probe is not kept unless the operator asks
    assert not (tmp_path / "home" / "audit" / "probes").exists()
    users = user_candidates([UserMatch(similarity=97.0, user=User(user_id="u1", user_status="ACTIVE"))])
    assert users == ({"UserId": "u1", "Similarity": 97.0},)
    assert "33 px" in refusal(quality) and "60.6%" in refusal(quality) and "90%" in refusal(quality)


def test_changes_are_recorded_and_the_record_can_be_off(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    seq = rec.changed("DeleteFaces", ALICE, "people", {"FaceIds": ["f1"]}, started=1_800_000_000.5)
    got = rec.log.get(seq).to_json()
    assert got["Operation"] == "DeleteFaces" and got["Details"] == {"FaceIds": ["f1"]}
    assert got["Threshold"] is None and got["Candidates"] == [] and got["ProbeSha256"] is None
    off = Recorder(None, FAST, AuditSettings(enabled=False), None)
    assert not off.enabled
    assert off.searched("SearchFaces", ALICE, 0.0, "c", 1, 80.0, ()) is None
    assert off.changed("IndexFaces", ALICE, "c") is None


def test_probes_are_kept_by_digest_where_the_operator_asks(tmp_path: Path) -> None:
    rec = recorder(tmp_path, store_probes=True)
    data = lfw_image("Aaron_Sorkin", 1).read_bytes()
    first = rec.searched("SearchFacesByImage", ALICE, 1.0, "c", 10, 80.0, (), probe_bytes=data)
    second = rec.searched("CompareFaces", ALICE, 2.0, None, None, 80.0, (), probe_bytes=Probe.of(data))
    digest = hashlib.sha256(data).hexdigest()
    for seq in (first, second):
        got = rec.log.get(seq).to_json()
        assert got["ProbeSha256"] == digest and got["Details"]["ProbeStored"] is True
    store = rec.probes
    path = store.find(digest)
    assert path == store.folder / f"{digest}.jpg" and store.get(digest) == data and store.digests() == [digest]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(store.folder.stat().st_mode) == 0o700
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # a kept probe hashes to its name
    os.utime(path, (1_000.0, 1_000.0))
    assert store.prune(30, now=1_000.0 + 29 * 86400) == 0
    assert store.prune(30, now=1_000.0 + 31 * 86400) == 1 and store.find(digest) is None
    assert store.delete(digest) is False and store.get(digest) is None


def test_a_probe_that_cannot_be_kept_fails_the_search_and_writes_no_entry(tmp_path: Path) -> None:
    rec = recorder(tmp_path, store_probes=True)
    rec.changed("IndexFaces", ALICE, "c")  # the log exists
    rec.probes.folder.write_text("a file where the probes folder should be")
    with pytest.raises(AuditUnavailable) as caught:
        rec.searched("SearchFacesByImage", ALICE, 1.0, "c", 10, 80.0, (), probe_bytes=b"\xff\xd8\xffnot much")
    assert caught.value.code == "InternalServerError" and str(tmp_path) not in str(caught.value)
    assert rec.log.head()[0] == 1


def test_a_probe_digest_is_of_what_was_searched(tmp_path: Path) -> None:
    path = lfw_image("Aaron_Peirsol", 1)
    data = path.read_bytes()
    read: list[Path] = []

    def read_path(p: Path) -> bytes:
        read.append(p)
        return p.read_bytes()

    source, probe = read_probe(str(path), read_path, load=lambda image: None)
    assert source == data and probe.sha256 == hashlib.sha256(data).hexdigest() and read == [path]
    source, probe = read_probe(bytearray(data), read_path, load=lambda image: None)
    assert source == data and probe.sha256 == hashlib.sha256(data).hexdigest() and probe.ext == "jpg"
    decoded = load_image(data)  # the server decodes a request's image before the search: its bytes' digest
    source, probe = read_probe(decoded, read_path, load=lambda image: image)
    assert source is decoded and probe.sha256 == hashlib.sha256(data).hexdigest() and probe.data == data
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    source, probe = read_probe(rgb, read_path, load=lambda image: DecodedImage(np.asarray(image)))
    assert isinstance(source, DecodedImage) and probe.ext == "png" and probe.data == png(rgb)
    decoded = cv2.imdecode(np.frombuffer(probe.data, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(decoded[:, :, ::-1], rgb)  # the PNG is the array, losslessly


def test_the_calibrated_levels_themselves_are_no_bound(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    for threshold, said in ((49.99, "at-least"), (50.0, None), (99.0, None), (99.01, "at-most")):
        got = rec.log.get(rec.searched("SearchFaces", ALICE, 1.0, "c", 1, threshold, ())).to_json()
        assert got["Details"].get("FalseMatchRateBound") == said, threshold
    assert describe_rate(FAST, 50) == "about 1 in 10 comparisons"
    assert describe_rate(FAST, 99) == "about 1 in 1,000,000 comparisons"


@pytest.mark.parametrize("text", ["CASE-\u202e4321", "a\u2066b\u2069", "line\u2028two", "c1\x85", "del\x7f",
                                  "tab\there"])
def test_a_purpose_or_case_that_would_not_show_as_it_is_is_refused(text: str) -> None:
    from faceprint.audit.caller import resolve
    from faceprint.errors import InvalidParameterException

    for given in ({"case": text}, {"purpose": text}):
        with pytest.raises(InvalidParameterException, match="printable"):
            resolve(ALICE, **given)
    persian = "\u067e\u0631\u0648\u0646\u062f\u0647\u200c\u06cc \u06f1\u06f2"  # with a ZWNJ, as Persian writes it
    assert resolve(ALICE, case=persian, purpose="\u05ea\u05d9\u05e7 \u200f12").case == persian


def test_a_probe_used_again_is_kept_for_its_retention_from_the_last_search(tmp_path: Path) -> None:
    rec = recorder(tmp_path, store_probes=True)
    data = lfw_image("Aaron_Sorkin", 1).read_bytes()
    rec.searched("SearchFacesByImage", ALICE, 1.0, "c", 10, 80.0, (), probe_bytes=data)
    path = rec.probes.find(hashlib.sha256(data).hexdigest())
    os.utime(path, (1_000.0, 1_000.0))  # first used long ago
    rec.searched("SearchFacesByImage", ALICE, 2.0, "c", 10, 80.0, (), probe_bytes=data)  # and again now
    assert rec.probes.prune(30) == 0 and path.exists()


def test_every_profile_is_calibrated_at_the_levels_the_rates_come_from() -> None:
    """false_match_rate reads FMR_LEVELS whatever the profile: right only while every profile's
    similarity knots sit at those levels (a recalibration that moves them must change fmr too)."""
    from faceprint.models.profiles import PROFILES

    for profile in PROFILES.values():
        knots = profile.knots
        assert {s for _, s in FMR_LEVELS} <= {s for _, s in knots}, profile.name
        assert [s for s, _ in knots] == sorted(s for s, _ in knots), profile.name
        for rate, similarity in FMR_LEVELS:
            assert false_match_rate(profile, similarity) == pytest.approx(rate)


def test_a_probe_stored_for_an_entry_that_cannot_be_written_is_not_kept(tmp_path: Path) -> None:
    (tmp_path / "audit").write_text("a file where the log's folder should be")
    probes = ProbeStore(tmp_path / "probes")
    rec = Recorder(AuditLog(tmp_path / "audit"), FAST, AuditSettings(store_probes=True), probes)
    data = lfw_image("Aaron_Sorkin", 1).read_bytes()
    with pytest.raises(AuditUnavailable):
        rec.searched("SearchFacesByImage", ALICE, 1.0, "c", 10, 80.0, (), probe_bytes=data)
    assert probes.digests() == []  # no entry, no probe image kept
