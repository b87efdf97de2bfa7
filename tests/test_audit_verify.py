"""Tampering with the audit log shows, and verification names the entry: edited, removed,
reordered, cut off the end, rewritten, forged; prune markers and seals."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from faceprint.audit.caller import Caller
from faceprint.audit.chain import link
from faceprint.audit.log import BROKEN, HEAD_EVERY, AuditLog, Entry
from faceprint.audit.retention import prune
from faceprint.audit.signing import make_seal, write_seal
from faceprint.audit.verify import verify
from faceprint.errors import InvalidParameterException

DAY = 86400.0
T0 = 1_800_000_000.0


def entry(n: int, started: float = T0) -> Entry:
    return Entry("SearchFacesByImage", Caller(f"user{n % 3}", "key", "AKIA1", purpose="inquiry", case=f"K-{n}"),
                 started + n, started + n + 0.1, collection_id="suspects", collection_size=100 + n,
                 threshold=80.0, false_match_rate=1e-5, probe_sha256=f"{n:064x}",
                 candidates=({"FaceId": f"face-{n}", "Similarity": 91.5},), details={"n": n})


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    log = AuditLog(tmp_path / "audit", clock=lambda: T0 + 100)
    for n in range(1, 11):
        log.append(entry(n))
    log.index()  # the filter index holds all ten (appends index every INDEX_EVERY entries)
    assert verify(log).ok
    return log


def sql(log: AuditLog, statement: str, params: tuple = ()) -> list:
    """Tamper as someone with the file would: another connection, straight SQL."""
    with closing(sqlite3.connect(log.path, isolation_level=None)) as db:
        return db.execute(statement, params).fetchall()


def problems(log: AuditLog, **kwargs) -> list[tuple]:
    report = verify(log, **kwargs)
    assert report.ok is not bool(report.problems)
    return [(p.seq, p.kind) for p in report.problems]


def body(log: AuditLog, seq: int) -> str:
    return sql(log, "SELECT body FROM entries WHERE seq = ?", (seq,))[0][0]


def test_an_intact_log_verifies(log):
    report = verify(log)
    assert report.ok and report.entries == 10 and (report.first_seq, report.last_seq) == (1, 10)
    assert report.head_hash == log.head()[1] and report.heads_checked == 1
    assert report.to_json()["Problems"] == [] and report.online_public_key == log.signer.public
    assert report.latest_head == log.latest_head() and "LatestHead" not in report.to_json()


def test_an_edited_entry_is_named(log):
    sql(log, "UPDATE entries SET body = ? WHERE seq = 4", (body(log, 4).replace("face-4", "face-x"),))
    assert problems(log) == [(4, "edited")]


def test_an_edited_index_column_is_named(log):
    sql(log, "UPDATE entry_columns SET actor = 'someone-else' WHERE seq = 6")
    report = verify(log)
    assert [(p.seq, p.kind) for p in report.problems] == [(6, "edited")] and "Actor" in report.problems[0].message


def test_an_entry_edited_and_rehashed_is_named(log):
    seq = 5
    prev_hash, = sql(log, "SELECT prev_hash FROM entries WHERE seq = ?", (seq,))[0]
    changed = body(log, seq).replace('"user2"', '"user0"')
    sql(log, "UPDATE entries SET body = ?, hash = ? WHERE seq = ?", (changed, link(prev_hash, changed), seq))
    sql(log, "UPDATE entry_columns SET actor = 'user0' WHERE seq = ?", (seq,))
    assert problems(log) == [(5, "edited")]


@pytest.mark.parametrize("edit", ["UPDATE entry_columns SET actor = x'41' WHERE seq = 4",
                                  "UPDATE entries SET body = CAST(x'7bff' AS TEXT) WHERE seq = 4",
                                  "UPDATE entry_columns SET actor = CAST(x'ff' AS TEXT) WHERE seq = 4",
                                  "UPDATE entry_columns SET started = 'soon' WHERE seq = 4",
                                  "DELETE FROM entry_columns WHERE seq = 4",
                                  "UPDATE entries SET body = replace(hex(zeroblob(60000)), '00', '[') WHERE seq = 4"])
def test_an_entry_edited_into_other_types_or_bytes_is_named_and_still_exported(log, edit):
    import io

    from faceprint.audit.export import export

    sql(log, edit)
    assert problems(log) == [(4, "edited")]
    assert export(log, io.StringIO(), "csv") == 10 and export(log, io.StringIO(), "jsonl") == 10


def test_a_removed_entry_is_named(log):
    sql(log, "DELETE FROM entries WHERE seq = 7")
    assert problems(log) == [(7, "missing")]
    sql(log, "DELETE FROM entries WHERE seq IN (1, 2)")
    assert problems(log) == [(1, "missing"), (7, "missing")]


def test_swapped_entries_are_named(log):
    rows = {seq: sql(log, "SELECT body, prev_hash, hash FROM entries WHERE seq = ?", (seq,))[0] for seq in (3, 8)}
    for seq, other in ((3, 8), (8, 3)):
        sql(log, "UPDATE entries SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?", (*rows[other], seq))
    assert problems(log) == [(3, "reordered"), (8, "reordered")]


def test_a_cut_off_tail_is_named(log):
    sql(log, "DELETE FROM entries WHERE seq > 8")
    assert problems(log) == [(9, "truncated")]


def test_a_cut_off_tail_with_its_heads_shows_against_a_seal(log, tmp_path):
    offline = Ed25519PrivateKey.generate()
    head = log.latest_head()
    seals = tmp_path / "kept-elsewhere.jsonl"
    write_seal(seals, make_seal(head.seq, head.hash, head.time, head.signature, log.signer.public, offline, T0 + 200))
    assert verify(log, seals=seals, offline_public_key=offline.public_key()).sealed_through == 10
    sql(log, "DELETE FROM entries WHERE seq > 8")
    assert sql(log, "SELECT seq FROM heads") == [(10,)]
    sql(log, "DELETE FROM heads")
    # the attacker re-signs a head at 8 with the online key (which sits beside the log)...
    new_head = sql(log, "SELECT hash FROM entries WHERE seq = 8")[0][0]
    sql(log, "INSERT INTO heads VALUES (8, ?, ?, ?)", (new_head, T0, log.signer.sign_head(8, new_head, T0)))
    assert problems(log) == []  # ...which only the seal, kept elsewhere, can show
    assert problems(log, seals=seals, offline_public_key=offline.public_key()) == [(9, "truncated")]


def test_a_rewritten_chain_shows_against_the_signed_head(log):
    prev = sql(log, "SELECT hash FROM entries WHERE seq = 5")[0][0]
    for seq in range(6, 11):
        changed = body(log, seq).replace("inquiry", "something else")
        hash_ = link(prev, changed)
        sql(log, "UPDATE entries SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?", (changed, prev, hash_, seq))
        prev = hash_
    report = verify(log)
    assert [(p.seq, p.kind) for p in report.problems] == [(10, "edited")]
    assert "entries 1 to 10 were rewritten" in report.problems[0].message


def test_a_tail_cut_back_to_a_checkpoint_with_its_latest_head_shows(tmp_path):
    log = AuditLog(tmp_path / "audit", durable=False)
    log.append_many(entry(n) for n in range(1, HEAD_EVERY + 6))
    sql(log, "DELETE FROM entries WHERE seq > ?", (HEAD_EVERY,))  # the checkpoint's head stays, signed as one
    sql(log, "DELETE FROM heads WHERE seq > ?", (HEAD_EVERY,))
    assert problems(log) == [(HEAD_EVERY + 1, "truncated")]


def test_a_latest_head_at_a_checkpoint_is_signed_again_as_one_when_the_log_goes_on(tmp_path):
    log = AuditLog(tmp_path / "audit", durable=False)
    log.append_many(entry(n) for n in range(1, HEAD_EVERY + 1))  # the latest head is the checkpoint's
    log.append(entry(HEAD_EVERY + 1))
    assert [h.seq for h in log.signed_heads()] == [HEAD_EVERY, HEAD_EVERY + 1] and problems(log) == []
    sql(log, "DELETE FROM entries WHERE seq > ?", (HEAD_EVERY,))
    sql(log, "DELETE FROM heads WHERE seq > ?", (HEAD_EVERY,))
    assert problems(log) == [(HEAD_EVERY + 1, "truncated")]


def test_a_wiped_log_whose_key_remains_shows(log):
    sql(log, "DELETE FROM entries")
    sql(log, "DELETE FROM heads")
    assert problems(log) == [(1, "truncated")]


def rehash_from(log: AuditLog, seq: int, change) -> None:
    """Change the entries from ``seq`` on and rehash the chain after them, as one without the key would."""
    prev = sql(log, "SELECT prev_hash FROM entries WHERE seq = ?", (seq,))[0][0]
    for (n,) in sql(log, "SELECT seq FROM entries WHERE seq >= ? ORDER BY seq", (seq,)):
        changed = change(body(log, n))
        hash_ = link(prev, changed)
        sql(log, "UPDATE entries SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?", (changed, prev, hash_, n))
        prev = hash_


def test_tampering_at_the_tail_still_shows_after_the_next_append(log):
    rehash_from(log, 9, lambda text: text.replace("inquiry", "routine"))
    assert problems(log) == [(10, "edited")]
    log.append(entry(11))  # signs a head over the rewritten chain, but keeps what it found in it
    assert problems(log) == [(10, "edited")]
    assert log.get(11).entry.operation == BROKEN and log.get(12).entry.details == {"n": 11}


def test_a_cut_is_kept_in_the_chain_once_however_many_appends_follow(log):
    sql(log, "DELETE FROM entries WHERE seq > 5")  # the head of seq 10 stays
    for n in range(11, 14):
        log.append(entry(n))
    assert [r.seq for r in log.records() if r.entry.operation == BROKEN] == [6]
    assert problems(log) == [(6, "truncated")]
    assert "the latest signed head named seq 10 but the log ended at seq 5" in verify(log).problems[0].message


def test_heads_removed_with_a_cut_tail_still_show_after_the_next_append(log):
    sql(log, "DELETE FROM entries WHERE seq > 7")
    sql(log, "DELETE FROM heads")
    log.append(entry(11))
    assert problems(log) == [(8, "bad-signature")]
    assert "the signed heads were removed" in verify(log).problems[0].message


def test_entries_added_without_faceprint_still_show_after_the_next_append(log):
    fields = json.loads(body(log, 10))
    fields["Seq"] = 11
    added = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    prev = log.head()[1]
    sql(log, "INSERT INTO entries VALUES (11, ?, ?, ?)", (added, prev, link(prev, added)))
    log.append(entry(12))
    assert problems(log) == [(11, "bad-signature")]


def test_forged_heads_and_entries_show(log):
    sql(log, "UPDATE heads SET signature = ? WHERE seq = 10", ("00" * 64,))
    assert problems(log) == [(10, "bad-signature")]
    sql(log, "DELETE FROM heads")
    assert problems(log) == [(1, "bad-signature")]


def test_entries_added_without_faceprint_show(log):
    fields = json.loads(body(log, 10))
    fields["Seq"] = 11
    added = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    prev = log.head()[1]
    sql(log, "INSERT INTO entries VALUES (11, ?, ?, ?)", (added, prev, link(prev, added)))
    assert problems(log) == [(11, "bad-signature")]


def test_seals_are_checked_against_the_offline_key(log, tmp_path):
    mine, theirs = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    head = log.latest_head()
    seals = tmp_path / "seals.jsonl"
    write_seal(seals, make_seal(head.seq, head.hash, head.time, head.signature, log.signer.public, theirs, T0))
    assert problems(log, seals=seals) == []  # whole, but whose?
    assert problems(log, seals=seals, offline_public_key=mine.public_key()) == [(10, "bad-signature")]
    seals.write_text(seals.read_text().replace('"Seq":10', '"Seq":9') + "not json\n")
    assert problems(log, seals=seals) == [(9, "bad-signature"), (None, "bad-signature")]
    seals.write_text("[" * 100_000 + "\n" + '{"Seq": 1}\n')
    assert problems(log, seals=seals) == [(None, "bad-signature"), (None, "bad-signature")]


def test_prune_keeps_the_retention_and_leaves_a_signed_marker(tmp_path):
    now = T0 + 400 * DAY
    log = AuditLog(tmp_path / "audit", clock=lambda: now)
    log.append_many([entry(n, started=T0) for n in range(1, 6)] + [entry(n, started=now - 10 * DAY)
                                                                    for n in range(6, 9)])
    with pytest.raises(InvalidParameterException, match="at least 183 days"):
        prune(log, 30)
    result = prune(log, 200)
    assert (result["Pruned"], result["FirstSeq"], result["LastSeq"], result["MarkerSeq"]) == (5, 1, 5, 9)
    assert log.first_seq() == 6 and log.get(9).entry.operation == "Prune"
    assert verify(log).ok
    assert prune(log, 200)["Pruned"] == 0
    assert b"face-3" not in (tmp_path / "audit" / "audit.db").read_bytes()  # secure_delete, WAL emptied
    details = json.loads(body(log, 9))["Details"]
    forged = dict(details, Signature="00" * 64)
    changed = body(log, 9).replace(details["Signature"], forged["Signature"])
    sql(log, "UPDATE entries SET body = ?, hash = ? WHERE seq = 9", (changed, link(log.get(9).prev_hash, changed)))
    assert (9, "bad-signature") in problems(log)


def test_a_prune_under_the_retention_shows(log):
    prune(log, 1, now=T0 + 100 + 2 * DAY, minimum_days=0)  # as a marker written with the online key by hand
    assert log.first_seq() == 11
    assert problems(log) == [(1, "missing")]
    assert problems(log, minimum_days=1) == []  # where the retention configured is one day


def test_a_prune_of_sealed_entries_written_after_its_cutoff_shows(log, tmp_path):
    offline = Ed25519PrivateKey.generate()
    head = log.latest_head()
    seals = tmp_path / "kept-elsewhere.jsonl"
    write_seal(seals, make_seal(head.seq, head.hash, head.time, head.signature, log.signer.public, offline, T0 + 200))
    prune(log, 200, now=T0 + 400 * DAY)  # its cutoff after entries sealed at T0 + 100: they were not that old
    kept = dict(seals=seals, offline_public_key=offline.public_key())
    assert problems(log, **kept) == [(10, "missing")]
    assert "removed sealed entries (seq 10)" in verify(log, **kept).problems[0].message


def test_a_prune_marker_dated_in_the_future_shows(log):
    later = AuditLog(log.folder, clock=lambda: T0 + 400 * DAY)
    marker = prune(later, 200)["MarkerSeq"]
    assert problems(later) == []
    assert problems(log) == [(marker, "edited")]  # verified at T0 + 100


def test_a_cut_start_without_a_marker_is_missing(log):
    sql(log, "DELETE FROM entries WHERE seq <= 3")
    assert problems(log) == [(1, "missing")]


def test_many_problems_are_counted_past_the_list(tmp_path):
    log = AuditLog(tmp_path / "audit")
    log.append_many(entry(n) for n in range(1, HEAD_EVERY + 1))
    sql(log, "UPDATE entry_columns SET actor = 'x'")
    report = verify(log, max_problems=10)
    assert len(report.problems) == 10 and report.more_problems == HEAD_EVERY - 10 and not report.ok


def test_entries_appended_while_verifying_do_not_show_as_unsigned(tmp_path):
    import threading

    class Busy(AuditLog):
        """A log another thread appends to just as verification starts reading entries."""

        def rows(self, start: int = 0):
            writer = threading.Thread(target=lambda: AuditLog(self.folder).append(entry(99)))
            writer.start()
            writer.join()
            yield from super().rows(start)

    log = Busy(tmp_path / "audit")
    log.append_many(entry(n) for n in range(1, 4))
    report = verify(log)
    assert report.ok and report.entries == 3 and log.count() == 4
    assert verify(AuditLog(tmp_path / "audit")).entries == 4


def _append_some(folder: str, actor: str) -> None:
    log = AuditLog(Path(folder))
    for n in range(15):
        log.append(Entry("SearchFaces", Caller(actor), T0 + n, T0 + n))


def test_processes_append_one_chain(tmp_path):
    import multiprocessing

    folder = tmp_path / "audit"
    AuditLog(folder).append(entry(0))  # the key exists before they start
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append_some, args=(str(folder), f"p{i}")) for i in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    report = verify(AuditLog(folder))
    assert report.ok and report.entries == 46
