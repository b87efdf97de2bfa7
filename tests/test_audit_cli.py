"""``faceprint audit ...``: keygen, seal, verify (exit status 1 on tampering), export, report, prune."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest

from faceprint.audit.caller import Caller
from faceprint.audit.log import AuditLog, Entry
from faceprint.cli import main

T0 = 1_800_000_000.0


def faceprint(capsys, home: Path, *args: str) -> tuple[int, str, str]:
    status = main(["--home", str(home), *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def home(tmp_path: Path) -> Path:
    log = AuditLog(tmp_path / "home" / "audit")
    log.append(Entry("SearchFacesByImage", Caller("analyst", "key", "AKIA1", purpose="=HYPERLINK(\"x\")",
                                                       case="K-1"), T0, T0 + 0.2, "suspects", 10, 80.0, 1e-5,
                     "ab" * 32, {"FaceWidth": 30}, True, ({"FaceId": "f1", "Similarity": 90.0},)))
    log.append(Entry("IndexFaces", Caller("clerk"), T0 + 60, T0 + 61, "suspects", details={"FaceIds": ["f1"]}))
    log.append(Entry("ReviewDecision", Caller("rev1", "console"), T0 + 120, T0 + 120, "suspects",
                     details={"SearchId": 1, "FaceId": "f1", "Decision": "CONFIRMED", "Status": "awaiting-second"}))
    log.append(Entry("ReviewDecision", Caller("rev2", "console"), T0 + 180, T0 + 180, "suspects",
                     details={"SearchId": 1, "FaceId": "f1", "Decision": "CONFIRMED", "Status": "confirmed"}))
    log.close()
    return tmp_path / "home"


def test_keygen_seal_and_verify(capsys, home, tmp_path):
    key = tmp_path / "offline" / "seal.pem"
    key.parent.mkdir()
    status, out, _ = faceprint(capsys, home, "audit", "keygen", "--out", str(key))
    made = json.loads(out)
    assert status == 0 and len(made["PublicKey"]) == 64 and stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert faceprint(capsys, home, "audit", "keygen", "--out", str(key))[0] == 1  # never overwritten

    status, out, _ = faceprint(capsys, home, "audit", "seal", "--offline-key", str(key))
    seal = json.loads(out)
    assert status == 0 and seal["Seq"] == 4 and seal["OfflinePublicKey"] == made["PublicKey"]
    assert json.loads((home / "audit" / "seals.jsonl").read_text()) == seal

    status, out, _ = faceprint(capsys, home, "audit", "verify", "--offline-public-key", f"{key}.pub")
    report = json.loads(out)
    assert status == 0 and report["Ok"] and report["SealedThrough"] == 4 and report["Entries"] == 4

    with closing(sqlite3.connect(home / "audit" / "audit.db")) as db, db:
        db.execute("UPDATE entries SET body = replace(body, '\"clerk\"', '\"nobody\"') WHERE seq = 2")
    status, out, _ = faceprint(capsys, home, "audit", "verify")
    report = json.loads(out)
    assert status == 1 and not report["Ok"] and [(p["Seq"], p["Kind"]) for p in report["Problems"]] == [(2, "edited")]

    status, out, err = faceprint(capsys, home, "audit", "seal", "--offline-key", str(key))
    assert status == 1 and "not sealed" in err and len((home / "audit" / "seals.jsonl").read_text().splitlines()) == 1
    status, _, err = faceprint(capsys, home, "audit", "seal", "--offline-key", str(home / "audit" / "audit.db"))
    assert status == 1 and "not an Ed25519 private key" in json.loads(err)["Message"]


def test_export_jsonl_and_csv_with_filters(capsys, home, tmp_path):
    status, out, _ = faceprint(capsys, home, "audit", "export", "--operation", "ReviewDecision")
    lines = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and [r["Seq"] for r in lines] == [3, 4] and lines[0]["Details"]["Decision"] == "CONFIRMED"
    status, out, _ = faceprint(capsys, home, "audit", "export", "--since", "2027-01-15T08:01:00Z", "--until",
                               str(T0 + 120), "--format", "csv")
    assert status == 0 and [row["Seq"] for row in csv.DictReader(io.StringIO(out))] == ["2", "3"]

    target = tmp_path / "out.csv"
    status, out, _ = faceprint(capsys, home, "audit", "export", "--format", "csv", "--case", "K-1", "--out",
                               str(target))
    assert status == 0 and json.loads(out)["Exported"] == 1 and stat.S_IMODE(os.stat(target).st_mode) == 0o600
    row, = csv.DictReader(io.StringIO(target.read_text()))
    assert row["Purpose"] == "'=HYPERLINK(\"x\")"  # no formula for the spreadsheet
    assert row["LowQuality"] == "True" and json.loads(row["Candidates"]) == [{"FaceId": "f1", "Similarity": 90.0}]
    assert row["Started"] == "2027-01-15T08:00:00.000Z" and row["Actor"] == "analyst"

    status, _, err = faceprint(capsys, home, "audit", "export", "--since", "last tuesday")
    assert status == 1 and json.loads(err)["__type"] == "InvalidParameterException"


@pytest.mark.parametrize("typed", ["=1+1", " =1+1", "\u00a0@SUM(A1)", "\uff1dcmd|' /C calc'!A0", "\uff0b1",
                                   "-2+3", "\n=1", "\t=1", "\r=1", "\u3000+1"])
def test_export_quotes_every_formula_start(typed):
    from faceprint.audit.export import cell

    assert cell(typed) == "'" + typed


@pytest.mark.parametrize("typed", ["K-1", "inquiry = yes", "", "{\"a\": 1}"])
def test_export_leaves_other_text_as_typed(typed):
    from faceprint.audit.export import cell

    assert cell(typed) == typed and cell(None) == "" and cell(-1.5) == -1.5


def test_report_and_prune(capsys, home):
    status, out, _ = faceprint(capsys, home, "audit", "report")
    report = json.loads(out)
    assert status == 0 and report["Totals"]["Searches"] == 1 and report["Totals"]["LowQualitySearches"] == 1
    assert report["Reviews"] == {"Decisions": {"CONFIRMED": 2}, "Candidates": {"confirmed": 1},
                                 "CandidatesReviewed": 1}
    assert [a["Actor"] for a in report["ByActor"]] == ["analyst", "clerk", "rev1", "rev2"]
    status, out, _ = faceprint(capsys, home, "audit", "report", "--since", "2027-01-15T08:00:30Z")
    assert json.loads(out)["Totals"]["Searches"] == 0

    status, _, err = faceprint(capsys, home, "audit", "prune", "--older-than-days", "30")
    assert status == 1 and "at least 183 days" in json.loads(err)["Message"]
    status, out, _ = faceprint(capsys, home, "audit", "prune", "--older-than-days", "200")
    assert status == 0 and json.loads(out)["Pruned"] == 0  # T0 is in 2027: nothing is that old


def test_prune_removes_old_entries_and_verify_accepts_the_marker(capsys, tmp_path):
    import time

    from faceprint.audit.probe_store import Probe, ProbeStore

    home = tmp_path / "home"
    log = AuditLog(home / "audit")
    old = time.time() - 300 * 86400
    log.append_many([Entry("SearchFaces", Caller("analyst"), old + n, old + n, "c") for n in range(3)]
                    + [Entry("SearchFaces", Caller("analyst"), time.time(), time.time(), "c")])
    probes = ProbeStore(home / "audit" / "probes")  # stored probes follow the entries (no probe retention set)
    stale, fresh = Probe.of(b"\xff\xd8\xff old search"), Probe.of(b"\xff\xd8\xff new search")
    for probe in (stale, fresh):
        probes.save(probe)
    os.utime(probes.path(stale.sha256, "jpg"), (old, old))
    status, out, _ = faceprint(capsys, home, "audit", "prune", "--older-than-days", "250")
    assert status == 0 and json.loads(out) | {"Cutoff": None} == {"Pruned": 3, "FirstSeq": 1, "LastSeq": 3,
                                                                   "Cutoff": None, "MarkerSeq": 5,
                                                                   "ProbesErased": 1}
    assert probes.digests() == [fresh.sha256]
    status, out, _ = faceprint(capsys, home, "audit", "verify")
    report = json.loads(out)
    assert status == 0 and report["Ok"] and (report["FirstSeq"], report["LastSeq"], report["Entries"]) == (4, 5, 2)
    status, out, _ = faceprint(capsys, home, "audit", "export", "--operation", "Prune")
    marker = json.loads(out)["Details"]
    assert (marker["FirstSeq"], marker["LastSeq"], marker["Count"]) == (1, 3, 3) and len(marker["Signature"]) == 128


def test_a_log_that_does_not_verify_is_pruned_only_by_force_and_the_marker_says_so(capsys, tmp_path):
    import time

    home = tmp_path / "home"
    log = AuditLog(home / "audit")
    old = time.time() - 300 * 86400
    log.append_many([Entry("SearchFaces", Caller("analyst"), old + n, old + n, "c") for n in range(4)]
                    + [Entry("SearchFaces", Caller("analyst"), time.time(), time.time(), "c")])
    with closing(sqlite3.connect(home / "audit" / "audit.db")) as db, db:
        db.execute("UPDATE entries SET body = replace(body, 'analyst', 'someone') WHERE seq = 2")
        db.execute("DELETE FROM entries WHERE seq = 4")  # the last of the old ones, by hand
    status, _, err = faceprint(capsys, home, "audit", "prune", "--older-than-days", "250")
    assert status == 1 and "does not verify" in json.loads(err)["Message"] and log.count() == 4
    status, out, _ = faceprint(capsys, home, "audit", "prune", "--older-than-days", "250", "--force")
    assert status == 0 and (json.loads(out)["Pruned"], json.loads(out)["LastSeq"]) == (3, 3)
    marker = log.get(json.loads(out)["MarkerSeq"]).entry.details
    assert (marker["Verified"], marker["Problems"]) == (False, 2)
    status, out, _ = faceprint(capsys, home, "audit", "verify")
    assert status == 1 and [(p["Seq"], p["Kind"]) for p in json.loads(out)["Problems"]] == [(1, "missing")]
