"""The audit log: appends chained and signed, queries, and no entry when it cannot be written."""

from __future__ import annotations

import hmac
import os
import stat
import threading

import pytest

from faceprint.audit.caller import Caller
from faceprint.audit.chain import GENESIS, canonical_json, link
from faceprint.audit.log import BROKEN, HEAD_EVERY, NOT_AN_ENTRY, AuditFilter, AuditLog, Entry
from faceprint.audit.signing import head_message, verifies
from faceprint.errors import AuditUnavailable, InvalidParameterException


def entry(n: int = 0, operation: str = "SearchFaces", actor: str = "alice", collection: str | None = "c1",
          case: str | None = None, started: float = 1_800_000_000.0) -> Entry:
    return Entry(operation, Caller(actor, "key", "AKIA1", purpose="test", case=case), started + n, started + n + 0.25,
                 collection_id=collection, collection_size=10, threshold=80.0, false_match_rate=1e-5,
                 probe_sha256="ab" * 32, candidates=({"FaceId": f"f{n}", "Similarity": 99.5},),
                 details={"FaceId": f"f{n}", "n": n})


def test_append_chains_signs_and_reads_back(tmp_path):
    log = AuditLog(tmp_path / "audit", clock=lambda: 1_800_000_100.0)
    assert log.head() == (0, GENESIS)
    first = log.append(entry(0))
    second = log.append(entry(1))
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS and second.prev_hash == first.hash
    assert second.hash == link(first.hash, canonical_json(entry(1).fields(2)))
    assert log.head() == (2, second.hash)
    assert log.get(2) == second and log.get(3) is None
    assert log.get(1).entry == entry(0)  # what comes back is what went in
    as_json = second.to_json()
    assert as_json["Started"] == "2027-01-15T08:00:01.000Z" and as_json["Actor"] == "alice"
    assert as_json["Candidates"] == [{"FaceId": "f1", "Similarity": 99.5}] and as_json["PrevHash"] == first.hash
    head = log.latest_head()
    assert (head.seq, head.hash, head.time) == (2, second.hash, 1_800_000_100.0)
    assert verifies(log.signer.public, head.signature, head_message(2, second.hash, head.time))
    assert not verifies(log.signer.public, head.signature, head_message(1, first.hash, head.time))
    key = tmp_path / "audit" / "online-ed25519.pem"
    for path in (key, tmp_path / "audit" / "audit.db"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "audit").st_mode) == 0o700


def test_only_checkpoint_heads_and_the_latest_are_kept(tmp_path):
    log = AuditLog(tmp_path / "audit")
    log.append_many([entry(n) for n in range(HEAD_EVERY + 5)])
    log.append(entry(0))
    assert [h.seq for h in log.signed_heads()] == [HEAD_EVERY, HEAD_EVERY + 6]
    assert [r.seq for r in log.records(HEAD_EVERY + 4)] == [HEAD_EVERY + 4, HEAD_EVERY + 5, HEAD_EVERY + 6]


def test_values_are_stored_as_plain_json(tmp_path):
    import numpy as np

    log = AuditLog(tmp_path / "audit")
    odd = Entry("IndexFaces", Caller("bob"), 1.0, 2.0, collection_size=np.int64(7), threshold=float("nan"),
                details={"FaceIds": ("a", "b"), 3: np.float32(0.5), "path": tmp_path})
    record = log.append(odd)
    assert record.entry.collection_size == 7 and record.entry.threshold is None
    assert record.entry.details == {"FaceIds": ["a", "b"], "3": 0.5, "path": str(tmp_path)}
    assert log.get(1) == record


def test_columns_agree_with_the_body_whatever_the_entry_holds(tmp_path):
    import numpy as np

    from faceprint.audit.verify import verify

    log = AuditLog(tmp_path / "audit")
    plain = log.append_seq(entry(0, case="K-1"))
    odd = log.append_seq(Entry("IndexFaces", Caller("bob", case="K-2"), np.float32(1.5), np.float64(2.0),
                               collection_id="c9"))
    assert (plain, odd) == (1, 2) and log.head()[0] == 2
    assert log.query(AuditFilter(case="K-2"))[0].seq == 2 and log.index_top() == 0  # found past the index
    log.index()
    assert log.index_top() == 2
    row = log._one("SELECT started, operation, actor, collection_id, case_ref FROM entry_columns WHERE seq = 2", ())
    assert row == (1.5, "IndexFaces", "bob", "c9", "K-2") and type(row[0]) is float
    assert log.query(AuditFilter(case="K-1"))[0].seq == 1 and verify(log).ok


@pytest.mark.parametrize("seq, hash_, time_", [(7, "ab" * 32, 1_800_000_000.123456), (10**15, "0" * 64, 1e-7),
                                               (3, "AB", 1.0), (3, 'a"b', 1.0), (True, "ab", 1.0), (2, "ab", 5)])
def test_a_head_message_is_its_canonical_json(seq, hash_, time_):
    for latest, context in ((True, b"faceprint-audit-head:v1:"), (False, b"faceprint-audit-checkpoint:v1:")):
        expected = context + canonical_json({"Seq": seq, "Hash": hash_, "Time": time_}).encode("ascii")
        assert head_message(seq, hash_, time_, latest) == expected


def test_query_filters_and_pages(tmp_path):
    log = AuditLog(tmp_path / "audit")
    log.append_many([entry(0, actor="alice", case="K-1"), entry(1, actor="bob", collection="c2"),
                     entry(2, operation="IndexFaces", actor="alice", collection=None),
                     entry(3, actor="alice", case="K-1")])
    seqs = lambda records: [r.seq for r in records]  # noqa: E731
    assert seqs(log.query()) == [1, 2, 3, 4]
    assert seqs(log.query(AuditFilter(actor="alice"))) == [1, 3, 4]
    assert seqs(log.query(AuditFilter(actor="alice"), after=1, limit=1)) == [3]
    assert seqs(log.query(AuditFilter(operation="IndexFaces"))) == [3]
    assert seqs(log.query(AuditFilter(collection_id="c2"))) == [2]
    assert seqs(log.query(AuditFilter(case="K-1", actor="alice"))) == [1, 4]
    assert seqs(log.query(AuditFilter(since=1_800_000_001.0, until=1_800_000_002.0))) == [2, 3]
    assert seqs(log.query(AuditFilter(actor="nobody"))) == []
    for bad in (AuditFilter(case="\ud800"), AuditFilter(actor="a\udfff")):  # lone surrogates: no text to look for
        with pytest.raises(InvalidParameterException):
            log.query(bad)


def test_threads_append_one_unbroken_chain(tmp_path):
    log = AuditLog(tmp_path / "audit")
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for n in range(25):
                log.append(entry(n, actor=f"t{t}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    records = list(log.records())
    assert [r.seq for r in records] == list(range(1, 101))
    assert all(r.prev_hash == p.hash for p, r in zip(records, records[1:], strict=False))


@pytest.mark.parametrize("how", ["folder-is-a-file", "db-is-a-folder", "disk-full"])
def test_append_fails_with_audit_unavailable_when_it_cannot_write(tmp_path, how):
    folder = tmp_path / "audit"
    if how == "folder-is-a-file":
        folder.write_text("not a folder")  # root cannot write under a regular file either
    elif how == "db-is-a-folder":
        (folder / "audit.db").mkdir(parents=True)
    log = AuditLog(folder)
    if how == "disk-full":
        log.append(entry(0))
        page_count = log._db().db().execute("PRAGMA page_count").fetchone()[0]
        log._db().db().execute(f"PRAGMA max_page_count={page_count}")
        big = Entry("SearchFaces", Caller("alice"), 1.0, 2.0, details={"x": "y" * 200_000})
        with pytest.raises(AuditUnavailable) as caught:
            log.append(big)
        assert log.head()[0] == 1  # nothing half written
        assert caught.value.code == "InternalServerError" and caught.value.http_status == 500
        return
    with pytest.raises(AuditUnavailable) as caught:
        log.append(entry(0))
    assert "audit record could not be written" in str(caught.value) and str(tmp_path) not in str(caught.value)


def test_a_log_that_is_not_durable_still_chains_and_syncs(tmp_path):
    log = AuditLog(tmp_path / "audit", durable=False)
    log.append_many([entry(0), entry(1)])
    assert log._db().db().execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    log.sync()
    assert AuditLog(tmp_path / "audit").head() == log.head() and log.head()[0] == 2
    assert AuditLog(tmp_path / "audit")._db().db().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_appends_go_on_after_the_tail_was_cut_and_keep_the_cut_in_the_chain(tmp_path):
    import sqlite3
    from contextlib import closing

    log = AuditLog(tmp_path / "audit")
    log.append_many([entry(n) for n in range(5)])
    cut = log.latest_head()
    with closing(sqlite3.connect(log.path)) as db, db:
        db.execute("DELETE FROM entries WHERE seq > 3")  # the head of seq 5 stays
    assert log.append(entry(9)).seq == 5  # the record stays writable (verify tells what happened)...
    broken = log.get(4).entry  # ...and the chain itself says what this append found
    assert (broken.operation, broken.caller.kind) == (BROKEN, "system")
    assert broken.details == {"SignedHead": {"Seq": 5, "Hash": cut.hash}, "LastEntry": {"Seq": 3, "Hash":
                                                                                       log.get(3).hash}}
    assert [h.seq for h in log.signed_heads()] == [5]

    from faceprint.audit.verify import verify

    assert [(p.seq, p.kind) for p in verify(log).problems] == [(4, "truncated")]


def test_a_log_removed_under_it_fails_then_starts_again(tmp_path):
    import shutil

    folder = tmp_path / "audit"
    log = AuditLog(folder)
    log.append(entry(0))
    shutil.rmtree(folder)  # SQLite would write on into the deleted file
    with pytest.raises(AuditUnavailable):
        log.append(entry(1))
    assert log.append(entry(2)).seq == 1 and AuditLog(folder).head()[0] == 1  # a new log, in the file
    assert verify_ok(folder)


def verify_ok(folder) -> bool:
    from faceprint.audit.verify import verify

    return verify(AuditLog(folder)).ok


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"Seq": 2}', "[" * 100_000,
                                  '{"Operation": "SearchFaces", "Actor": ["a"], "Started": 1, "Ended": 2}',
                                  '{"Operation": "X", "Actor": "a", "Started": 1, "Ended": 2, "Candidates": 7}',
                                  '{"Operation": "X", "Actor": "a", "Started": 1, "Ended": 2, "Details": [1]}'])
def test_an_entry_edited_into_something_else_still_lists_with_the_others(tmp_path, body):
    import io
    import sqlite3
    from contextlib import closing

    from faceprint.audit.export import export
    from faceprint.audit.report import audit_report
    from faceprint.audit.verify import verify

    log = AuditLog(tmp_path / "audit")
    log.append_many([entry(n) for n in range(3)])
    with closing(sqlite3.connect(log.path)) as db, db:
        db.execute("UPDATE entries SET body = ? WHERE seq = 2", (body,))
    records = log.query()
    assert [r.entry.operation for r in records] == ["SearchFaces", NOT_AN_ENTRY, "SearchFaces"]
    assert records[1].to_json()["Details"] == {"Body": body[:2000]} and records[1].to_json()["Started"] == "nan"
    out = io.StringIO()
    assert export(log, out, "csv") == 3 and export(log, io.StringIO(), "jsonl") == 3
    assert audit_report(log)["Operations"] == {NOT_AN_ENTRY: 1, "SearchFaces": 2}
    assert [(p.seq, p.kind) for p in verify(log).problems] == [(2, "edited")]


def test_queries_read_through_the_filter_index_and_past_its_top(tmp_path):
    from faceprint.audit.columns import INDEX_EVERY

    log = AuditLog(tmp_path / "audit")
    for n in range(INDEX_EVERY + 10):  # one batch indexed by the append that filled it, ten past it
        log.append_seq(entry(n, actor=("alice", "bob")[n % 2], case=f"K-{n % 3}"))
    top = log.index_top()
    assert top == INDEX_EVERY and log.count() == INDEX_EVERY + 10
    alices = [n + 1 for n in range(INDEX_EVERY + 10) if n % 2 == 0]
    seqs = lambda records: [r.seq for r in records]  # noqa: E731
    assert seqs(log.query(AuditFilter(actor="alice"))) == alices
    assert seqs(log.query(AuditFilter(actor="alice"), after=top - 4, limit=4)) == [s for s in alices if s > top - 4][:4]
    paged, after = [], 0
    while page := log.query(AuditFilter(actor="alice", case="K-0"), after=after, limit=7):
        paged, after = paged + seqs(page), page[-1].seq
    assert paged == [s for s in alices if (s - 1) % 3 == 0]
    assert log.first_started_since(1_800_000_000.0 + top + 2) == top + 3  # past the top
    assert log.first_started_since(1_800_000_000.0 + 5) == 6  # under it
    log.index()
    assert log.index_top() == INDEX_EVERY + 10 and seqs(log.query(AuditFilter(actor="alice"))) == alices


def test_entries_another_writer_appended_are_indexed_from_their_bodies(tmp_path):
    from faceprint.audit.columns import INDEX_EVERY
    from faceprint.audit.verify import verify

    one, other = AuditLog(tmp_path / "audit"), AuditLog(tmp_path / "audit")
    for n in range(2 * INDEX_EVERY):
        (one if n % 3 else other).append_seq(entry(n, actor=f"a{n % 5}", collection=f"c{n % 4}"))
    rows = dict((r[0], r[1:]) for r in one._all("SELECT seq, started, operation, actor, collection_id, case_ref "
                                                 "FROM entry_columns", ()))
    assert len(rows) >= INDEX_EVERY
    for record in one.query(limit=len(rows)):
        e = record.entry
        assert rows[record.seq] == (e.started, e.operation, e.caller.actor, e.collection_id, e.caller.case)
    assert verify(one).ok


def test_a_log_of_the_first_layout_is_moved_to_the_filter_index_when_opened(tmp_path):
    import sqlite3
    from contextlib import closing

    from faceprint.audit.verify import verify

    log = AuditLog(tmp_path / "audit")
    log.append_many([entry(n, actor=("alice", "bob")[n % 2]) for n in range(5)])
    log.close()
    with closing(sqlite3.connect(log.path, isolation_level=None)) as db:  # as the first layout kept them
        db.executescript("""
            CREATE TABLE old (seq INTEGER PRIMARY KEY, started REAL NOT NULL, operation TEXT NOT NULL,
                actor TEXT NOT NULL, collection_id TEXT, case_ref TEXT, body TEXT NOT NULL, prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL);
            INSERT INTO old SELECT seq, json_extract(body, '$.Started'), json_extract(body, '$.Operation'),
                json_extract(body, '$.Actor'), json_extract(body, '$.CollectionId'), json_extract(body, '$.Case'),
                body, prev_hash, hash FROM entries;
            DROP TABLE entries; DROP TABLE entry_columns; ALTER TABLE old RENAME TO entries;
            CREATE INDEX entries_actor ON entries(actor, seq);""")
    moved = AuditLog(tmp_path / "audit")
    assert moved.index_top() == 5 and [r.seq for r in moved.query(AuditFilter(actor="bob"))] == [2, 4]
    assert verify(moved).ok and moved.append_seq(entry(5)) == 6 and verify(moved).ok
    names = {row[1] for row in moved._all("PRAGMA table_info(entries)", ())}
    assert names == {"seq", "body", "prev_hash", "hash"}


def test_the_latest_head_is_kept_with_a_mac_and_given_out_signed(tmp_path):
    log = AuditLog(tmp_path / "audit", clock=lambda: 1_800_000_100.0)
    log.append_many(entry(n) for n in range(3))
    (stored,) = log.signed_heads()
    assert stored.signature.startswith("hmac-sha256:") and len(stored.signature) == len("hmac-sha256:") + 64
    signer = log.signer
    message = head_message(stored.seq, stored.hash, stored.time)  # RFC 2104 HMAC-SHA256, as hmac makes it
    assert stored.signature == "hmac-sha256:" + hmac.new(signer.mac_key, message, "sha256").hexdigest()
    assert signer.verifies_head(stored.seq, stored.hash, stored.time, stored.signature)
    assert not signer.verifies_head(stored.seq, stored.hash, stored.time, stored.signature, latest=False)
    assert not signer.verifies_head(stored.seq - 1, stored.hash, stored.time, stored.signature)
    assert not signer.verifies_head(stored.seq, stored.hash, stored.time, stored.signature[:-1] + "é")
    given = log.latest_head()
    assert (given.seq, given.hash, given.time) == (stored.seq, stored.hash, stored.time)
    assert verifies(signer.public, given.signature, head_message(given.seq, given.hash, given.time))
    other = AuditLog(tmp_path / "other")
    other.append(entry(0))
    assert not other.signer.verifies_head(stored.seq, stored.hash, stored.time, stored.signature)
