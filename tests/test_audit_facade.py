"""The audit record through the Python API: ``fp.audit_log``, ``audit_entries`` (paged),
``verify_audit`` and ``audit_report``."""

from __future__ import annotations

import pytest

from faceprint.audit.caller import Caller
from faceprint.audit.log import AuditFilter, Entry
from faceprint.errors import InvalidParameterException
from faceprint.service import Faceprint


def test_entries_pages_verify_and_report(tmp_path):
    fp = Faceprint(tmp_path / "home")
    assert fp.audit_log is fp.audit_log and fp.audit_log.folder == tmp_path / "home" / "audit"
    assert fp.audit_entries() == {"Entries": []} and fp.verify_audit().ok
    fp.audit_log.append_many([Entry("SearchFaces", Caller(f"u{n % 2}", purpose="p" if n % 2 else None),
                                    1000.0 + n, 1000.5 + n, "c", candidates=({"FaceId": "x", "Similarity": 99.0},))
                              for n in range(5)])
    page = fp.audit_entries(max_results=2)
    assert [e["Seq"] for e in page["Entries"]] == [1, 2] and page["NextToken"] == "2"
    page = fp.audit_entries(max_results=2, next_token=page["NextToken"])
    assert [e["Seq"] for e in page["Entries"]] == [3, 4]
    page = fp.audit_entries(max_results=2, next_token=page["NextToken"])
    assert [e["Seq"] for e in page["Entries"]] == [5] and "NextToken" not in page
    assert [e["Seq"] for e in fp.audit_entries(AuditFilter(actor="u1"))["Entries"]] == [2, 4]
    for bad in ({"max_results": 0}, {"max_results": 1001}, {"next_token": "x1"}, {"next_token": "-1"},
                {"next_token": "9" * 19}):
        with pytest.raises(InvalidParameterException):
            fp.audit_entries(**bad)
    report = fp.verify_audit()
    assert report.ok and report.entries == 5 and report.to_json()["LastSeq"] == 5
    summary = fp.audit_report(since=1001.0, until=1003.0)
    assert summary["Totals"]["Searches"] == 3 and summary["Totals"]["CandidatesReturned"] == 3
    assert {p["Purpose"]: p["Searches"] for p in summary["ByPurpose"]} == {"(none given)": 1, "p": 2}
    assert summary["ByCollection"] == [{"CollectionId": "c", **summary["Totals"]}]
    assert summary["Period"]["Since"] == "1970-01-01T00:16:41.000Z"


@pytest.mark.parametrize("bad", [AuditFilter(since="yesterday"), AuditFilter(until=float("inf")),
                                 AuditFilter(since=True), AuditFilter(actor={"a": 1}), AuditFilter(case=""),
                                 AuditFilter(operation="x" * 1001), AuditFilter(since=10 ** 400),
                                 AuditFilter(until=-(10 ** 30))])
def test_bad_filters_are_invalid_parameters(tmp_path, bad):
    fp = Faceprint(tmp_path / "home")
    with pytest.raises(InvalidParameterException):
        fp.audit_entries(bad)
    with pytest.raises(InvalidParameterException):
        fp.audit_report(since=bad.since, until=bad.until) if bad.since is not None or bad.until is not None \
            else fp.audit_log.query(bad)


def test_the_report_lists_so_many_purposes_and_counts_the_rest_together(tmp_path):
    from faceprint.audit.report import MAX_GROUPS, OTHERS

    fp = Faceprint(tmp_path / "home")
    fp.audit_log.append_many(Entry("SearchFaces", Caller("u", purpose=f"purpose {n:05d}"), 1000.0 + n, 1000.5 + n,
                                   "c") for n in range(MAX_GROUPS + 3))
    report = fp.audit_report()
    assert report["Totals"]["Searches"] == MAX_GROUPS + 3 and len(report["ByPurpose"]) == MAX_GROUPS + 1
    others, = [p for p in report["ByPurpose"] if p["Purpose"] == OTHERS]
    assert others["Searches"] == 3 and report["ByActor"][0]["Searches"] == MAX_GROUPS + 3
