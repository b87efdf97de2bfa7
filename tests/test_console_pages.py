"""The console's helpers without a browser: the latest entries read backwards from a real audit log,
the timeline's rows, the form bounds."""

from __future__ import annotations

from types import SimpleNamespace

from faceprint.audit.caller import Caller
from faceprint.audit.log import AuditLog, Entry
from faceprint.console.pages.common import recent_entries
from faceprint.console.pages.video import timeline


def test_recent_entries_are_the_newest_first_across_windows(tmp_path):
    log = AuditLog(tmp_path / "audit")
    entries = []
    for i in range(5000):  # ivy's searches among others' entries, over several of the reader's windows
        actor, kind = ("ivy", "console") if i % 97 == 0 else (("ivy", "key") if i % 101 == 0 else ("bob", "console"))
        operation = "SearchFacesByImage" if i % 2 == 0 else "ReviewDecision"
        entries.append(Entry(operation, Caller(actor, kind), float(i), float(i), details={"I": i}))
    log.append_many(entries)
    fp = SimpleNamespace(audit_log=log)
    wanted = [i for i in range(5000) if i % 97 == 0 and i % 2 == 0]
    found = recent_entries(fp, actor="ivy", kind="console", operations=("SearchFacesByImage",), limit=20)
    assert [r.entry.details["I"] for r in found] == wanted[::-1][:20]
    everything = recent_entries(fp, actor="ivy", kind="console", operations=("SearchFacesByImage",), limit=1000)
    assert [r.entry.details["I"] for r in everything] == wanted[::-1]  # the key "ivy" is someone else
    bobs = [r.seq for r in recent_entries(fp, actor="bob", limit=1500)]  # more than a page in one window
    assert len(bobs) == 1500 and bobs[:3] == [5000, 4999, 4998] and bobs == sorted(set(bobs), reverse=True)
    assert recent_entries(fp, actor="nobody", limit=5) == []
    assert recent_entries(SimpleNamespace(audit_log=AuditLog(tmp_path / "empty")), actor="ivy") == []


def test_timeline_rows_in_order_of_first_appearance():
    rows = timeline({"late": [(9000, 91.0), (9500, 95.0)], "early": [(0, 99.0), (5000, 98.0)]}, 0, 10_000)
    assert [r["who"] for r in rows] == ["early", "late"]
    assert rows[0]["marks"] == [0.0, 50.0] and rows[1]["marks"] == [90.0, 95.0]
    assert (rows[1]["count"], rows[1]["best"], rows[1]["first"], rows[1]["last"]) == (2, 95.0, 9000, 9500)
