"""The audit log on both back-ends: the embedded one (``HOME/audit/audit.db``) and PostgreSQL's
(``faceprint.audit.pglog``), the same behaviour from the same tests; and what only the shared one
does: several nodes append one chain in one order, share the online key, and verify each other's
heads. Tampering is done as someone with the database would: straight SQL on another connection."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import pytest

from faceprint.audit.backend import open_audit_log
from faceprint.audit.caller import Caller
from faceprint.audit.log import BROKEN, AuditFilter, AuditLog, Entry
from faceprint.audit.pglog import PgAuditLog
from faceprint.audit.retention import prune
from faceprint.audit.verify import verify
from faceprint.errors import AuditUnavailable, InvalidParameterException
from pg import PgServer, pg  # noqa: F401

T0 = 1_800_000_000.0
DAY = 86400.0


def entry(n: int, actor: str | None = None, started: float = T0) -> Entry:
    return Entry("SearchFacesByImage", Caller(actor or f"user{n % 3}", "key", "AKIA1", purpose="inquiry",
                                              case=f"K-{n}"), started + n, started + n + 0.1,
                 collection_id="suspects", collection_size=100 + n, threshold=80.0, false_match_rate=1e-5,
                 probe_sha256=f"{n:064x}", candidates=({"FaceId": f"face-{n}", "Similarity": 91.5},),
                 details={"n": n})


class Backend:
    """One kind of audit log: opens logs on one store (two opened = two nodes) and tampers with SQL."""

    def __init__(self, kind: str, home: Path, url: str | None) -> None:
        self.kind, self.home, self.url = kind, home, url
        self.tables = ({"entries": "audit_entries", "heads": "audit_heads", "columns": "audit_entries"} if url
                       else {"entries": "entries", "heads": "heads", "columns": "entry_columns"})

    def open(self, clock: Any = lambda: T0 + 100, durable: bool = True) -> AuditLog | PgAuditLog:
        return open_audit_log(self.home, self.url or "", clock=clock, durable=durable)

    def sql(self, statement: str, params: tuple = ()) -> list:
        statement = statement.format(**self.tables)
        if self.url is None:
            with closing(sqlite3.connect(self.home / "audit" / "audit.db", isolation_level=None)) as db:
                return db.execute(statement, params).fetchall()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            cursor = db.execute(statement.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    url = request.getfixturevalue("pg").database() if request.param == "postgres" else None
    return Backend(request.param, tmp_path / "home", url)


@pytest.fixture
def log(backend: Backend):
    log = backend.open()
    log.append_many([entry(n) for n in range(1, 11)])
    log.index()
    assert verify(log).ok
    yield log
    log.close()


def problems(log: Any, **kwargs: Any) -> list[tuple]:
    report = verify(log, **kwargs)
    assert report.ok is not bool(report.problems)
    return [(p.seq, p.kind) for p in report.problems]


def test_appends_chain_sign_and_read_back(backend, log):
    assert log.count() == 10 and log.head()[0] == 10 and log.first_seq() == 1
    record = log.append(entry(11, actor="analyst"))
    assert record.seq == 11 and record.prev_hash == log.get(10).hash and log.get(11) == record
    assert log.append_seq(entry(12)) == 12
    assert [r.seq for r in log.query(AuditFilter(actor="analyst"))] == [11]
    assert [r.seq for r in log.query(AuditFilter(since=T0 + 3, until=T0 + 5))] == [3, 4, 5]
    assert [r.seq for r in log.query(AuditFilter(case="K-4", operation="SearchFacesByImage"))] == [4]
    assert [r.seq for r in log.query(after=5, limit=3)] == [6, 7, 8]
    assert log.query(AuditFilter(actor="a\x00b")) == []
    with suppress(InvalidParameterException):  # a lone surrogate: refused, or matching nothing; nothing else
        assert log.query(AuditFilter(case="\ud800")) == []
    assert [r.seq for r in log.records(11)] == [11, 12] and log.count_through(5) == 5
    assert log.first_started_since(T0 + 7) == 7 and log.last_before(7) == 6
    heads = log.signed_heads()
    assert [h.seq for h in heads] == [12] and log.latest_head().seq == 12
    report = verify(log)
    assert report.ok and report.entries == 12 and report.online_public_key == log.signer.public


@pytest.mark.parametrize("tamper, found", [
    ("UPDATE {entries} SET body = replace(body, 'face-4', 'face-x') WHERE seq = 4", [(4, "edited")]),
    ("DELETE FROM {entries} WHERE seq = 7", [(7, "missing")]),
    ("DELETE FROM {entries} WHERE seq > 8", [(9, "truncated")]),
    ("UPDATE {columns} SET actor = 'someone-else' WHERE seq = 6", [(6, "edited")]),
    ("UPDATE {entries} SET body = 'not an entry' WHERE seq = 2", [(2, "edited")]),
    ("DELETE FROM {heads}", [(1, "bad-signature")]),
])
def test_an_edited_removed_or_cut_entry_is_named(backend, log, tamper, found):
    backend.sql(tamper)
    assert problems(log) == found
    assert len(list(log.records())) == len(log.query()) == log.count()  # the rest still lists


def test_swapped_entries_are_named(backend, log):
    rows = {seq: backend.sql("SELECT body, prev_hash, hash FROM {entries} WHERE seq = ?", (seq,))[0] for seq in (3, 8)}
    for seq, other in ((3, 8), (8, 3)):
        backend.sql("UPDATE {entries} SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?", (*rows[other], seq))
    assert problems(log) == [(3, "reordered"), (8, "reordered")]


def test_a_cut_tail_stays_in_the_chain_after_the_next_append(backend, log):
    backend.sql("DELETE FROM {entries} WHERE seq > 8")
    backend.sql("DELETE FROM {heads}")
    record = log.append(entry(20))
    broken = log.get(9)
    assert broken.entry.operation == BROKEN and record.seq == 10
    assert broken.entry.details == {"SignedHead": None, "LastEntry": {"Seq": 8, "Hash": log.get(8).hash}}
    assert (9, "bad-signature") in problems(log)


def test_prune_leaves_a_signed_marker_that_verifies(backend):
    now = T0 + 400 * DAY
    log = backend.open(clock=lambda: now)
    log.append_many([entry(n) for n in range(1, 6)])
    log.append(entry(6, started=T0 + 300 * DAY))
    done = prune(log, 200, now=now)
    assert done["Pruned"] == 5 and log.first_seq() == 6 and log.count() == 2
    assert log.get(done["MarkerSeq"]).entry.operation == "Prune"
    assert problems(log) == []
    log.close()


def test_two_nodes_appending_at_once_make_one_unbroken_chain(backend):
    nodes = [backend.open(), backend.open()]
    errors: list[BaseException] = []

    def work(node: Any, t: int) -> None:
        try:
            for n in range(20):
                node.append(entry(n, actor=f"t{t}")) if n % 2 else node.append_many([entry(n, actor=f"t{t}")] * 2)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(nodes[t % 2], t)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    records = list(nodes[1].records())
    assert [r.seq for r in records] == list(range(1, 4 * 30 + 1))
    assert all(r.prev_hash == p.hash for p, r in zip(records, records[1:], strict=False))
    assert {r.entry.operation for r in records} == {"SearchFacesByImage"}  # no AuditChainBroken: never forked
    for node in nodes:
        assert problems(node) == []
        node.close()


# -- what only the shared log does ------------------------------------------------------------------

@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("pg").database()


def test_every_node_signs_with_the_one_key_and_verifies_the_others_heads(pg_url, tmp_path):
    one = open_audit_log(tmp_path / "a", pg_url)
    two = open_audit_log(tmp_path / "b", pg_url)
    assert isinstance(one, PgAuditLog) and one.signer.existing_public() is None
    one.append(entry(1))
    assert two.signer.existing_public() == one.signer.public
    two.append(entry(2))
    assert problems(one) == [] and verify(one).heads_checked == 1
    assert one.latest_head() == two.latest_head()
    assert not (tmp_path / "a" / "audit").exists()  # nothing of the log in the node's home
    one.close(), two.close()


def test_a_log_that_cannot_reach_its_database_fails_with_audit_unavailable(tmp_path, request):
    server: PgServer = request.getfixturevalue("pg")
    log = PgAuditLog(server.url("no_such_database"), tmp_path / "audit")
    with pytest.raises(AuditUnavailable, match="could not be written"):
        log.append(entry(1))
    with pytest.raises(AuditUnavailable):
        log.query()


def test_a_log_that_is_not_durable_still_chains_and_syncs(pg_url, tmp_path):
    log = PgAuditLog(pg_url, tmp_path, durable=False)
    log.append_many([entry(n) for n in range(1, 4)])
    log.sync()
    assert problems(log) == [] and log.count() == 3
    log.close()


def test_the_embedded_log_moves_to_postgresql_with_its_hashes_and_heads(pg_url, tmp_path):
    from faceprint.audit.backend import copy_log

    source = AuditLog(tmp_path / "home" / "audit", clock=lambda: T0 + 100)
    for n in range(1, 8):
        source.append(entry(n))
    target = PgAuditLog(pg_url, tmp_path / "node" / "audit", clock=lambda: T0 + 200)
    assert copy_log(source, target) == {"Entries": 7, "SignedHeads": 1, "OnlineKey": True}
    assert [(r.seq, r.hash) for r in target.records()] == [(r.seq, r.hash) for r in source.records()]
    assert target.signer.public == source.signer.public and problems(target) == []
    assert target.append(entry(8)).prev_hash == source.head()[1]
    with pytest.raises(InvalidParameterException, match="not empty"):
        copy_log(source, target)
    source.close(), target.close()


def test_the_store_url_chooses_the_log(tmp_path, monkeypatch):
    monkeypatch.delenv("FACEPRINT_STORE", raising=False)
    assert isinstance(open_audit_log(tmp_path), AuditLog)
    assert isinstance(open_audit_log(tmp_path, "sqlite:///x/y.db"), AuditLog)
    monkeypatch.setenv("FACEPRINT_STORE", "postgresql://nobody@/nothing")
    assert isinstance(open_audit_log(tmp_path), PgAuditLog)  # nothing connected yet
    assert isinstance(open_audit_log(tmp_path, ""), AuditLog)


def test_the_cli_records_and_verifies_in_the_stores_log(pg_url, tmp_path, capsys, monkeypatch):
    import json

    from faceprint.cli import main
    from faceprint.service import Faceprint

    monkeypatch.delenv("FACEPRINT_STORE", raising=False)
    home = tmp_path / "home"
    assert isinstance(Faceprint(home, store_url=pg_url).audit_log, PgAuditLog)
    assert main(["--home", str(home), "--store", pg_url, "keys", "create", "--name", "desk-7"]) == 0
    log = PgAuditLog(pg_url, home / "audit")
    assert [r.entry.operation for r in log.records()] == ["KeyCreated"]
    capsys.readouterr()
    assert main(["--home", str(home), "--store", pg_url, "audit", "verify"]) == 0
    assert json.loads(capsys.readouterr().out)["Entries"] == 1
    key, seals = tmp_path / "offline" / "seal.pem", tmp_path / "kept-elsewhere.jsonl"
    key.parent.mkdir()
    assert main(["audit", "keygen", "--out", str(key)]) == 0
    assert main(["--home", str(home), "--store", pg_url, "audit", "seal", "--offline-key", str(key),
                 "--seals", str(seals)]) == 0
    capsys.readouterr()
    assert main(["--home", str(home), "--store", pg_url, "audit", "verify", "--seals", str(seals),
                 "--offline-public-key", f"{key}.pub"]) == 0
    assert json.loads(capsys.readouterr().out)["SealedThrough"] == 1
    with psycopg_connect(pg_url) as db:
        db.execute("UPDATE audit_entries SET body = replace(body, 'desk-7', 'desk-8') WHERE seq = 1")
    assert main(["--home", str(home), "--store", pg_url, "audit", "verify"]) == 1
    assert [p["Kind"] for p in json.loads(capsys.readouterr().out)["Problems"]] == ["edited"]
    assert not (home / "audit" / "audit.db").exists()
    log.close()


def psycopg_connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


def test_an_append_behind_a_hung_node_fails_in_time_and_writes_nothing(pg_url, tmp_path, monkeypatch):
    from faceprint.audit import pglog

    log = PgAuditLog(pg_url, tmp_path)
    log.append(entry(1))
    monkeypatch.setattr(pglog, "LOCK_CHAIN", pglog.LOCK_CHAIN.replace(pglog.LOCK_WAIT, "200ms"))
    with psycopg_connect(pg_url) as hung:  # a node that took the chain's lock and stopped
        hung.execute("SELECT pg_advisory_lock(%s)", (pglog.CHAIN_LOCK,))
        with pytest.raises(AuditUnavailable, match="could not be written"):
            log.append(entry(2))
    assert log.count() == 1 and log.append(entry(3)).seq == 2 and problems(log) == []
    log.close()


def test_two_nodes_record_into_one_chain_and_each_lists_the_others_entries(pg_url, tmp_path, capsys, monkeypatch):
    import json

    from faceprint.cli import main

    monkeypatch.delenv("FACEPRINT_STORE", raising=False)
    a, b = (["--home", str(tmp_path / name), "--store", pg_url] for name in ("a", "b"))
    for n in range(2):
        assert main([*a, "create-collection", "--collection-id", f"c{n}"]) == 0
    assert main([*b, "delete-collection", "--collection-id", "c0", "--case", "K-1"]) == 0
    assert main([*a, "delete-collection", "--collection-id", "c1"]) == 0
    capsys.readouterr()
    assert main([*a, "audit", "export", "--operation", "DeleteCollection"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [(e["Seq"], e["CollectionId"], e["Case"]) for e in lines] == [(1, "c0", "K-1"), (2, "c1", None)]
    assert lines[1]["PrevHash"] == lines[0]["Hash"]
    assert main([*b, "audit", "verify"]) == 0
    assert not any((tmp_path / name / "audit" / "audit.db").exists() for name in ("a", "b"))


def test_checkpoints_are_kept_across_long_batches(backend):
    log = backend.open()
    log.append_many([entry(n) for n in range(1, 1501)])  # past a checkpoint, and more rows than one INSERT takes
    assert [h.seq for h in log.signed_heads()] == [1000, 1500]
    log.append_many([entry(n) for n in range(1501, 2001)])  # ends at a checkpoint's seq: the latest head for now
    log.append(entry(2001))  # ...then signed again as a checkpoint
    assert [h.seq for h in log.signed_heads()] == [1000, 2000, 2001]
    assert problems(log) == [] and log.count() == 2001
    log.close()


def test_appends_go_on_after_the_database_restarts(request, tmp_path):
    server: PgServer = request.getfixturevalue("pg")
    log = PgAuditLog(server.database(), tmp_path)
    log.append(entry(1))
    server.restart()  # a failover: every connection of the pool is cut
    assert log.append(entry(2)).seq == 2 and problems(log) == []
    log.close()


NODE = """
import os, sys, time
from pathlib import Path
from faceprint.audit.caller import Caller
from faceprint.audit.log import Entry
from faceprint.audit.pglog import PgAuditLog

log = PgAuditLog(os.environ["FACEPRINT_STORE"], Path(sys.argv[1]))
n = 0
while True:
    now = time.time()
    log.append_many([Entry("SearchFaces", Caller("doomed-node"), now, now)] * (1 + n % 3))
    n += 1
    if n == 20:
        print("appending", flush=True)
"""


def test_a_node_killed_while_appending_leaves_one_chain_that_others_go_on(pg_url, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    log = PgAuditLog(pg_url, tmp_path / "survivor")
    node = subprocess.Popen([sys.executable, "-c", NODE, str(tmp_path / "doomed")], stdout=subprocess.PIPE,
                            env={**os.environ, "FACEPRINT_STORE": pg_url}, text=True)
    try:
        assert node.stdout.readline() == "appending\n"
        for n in range(10):  # appending beside it
            log.append(entry(n))
        time.sleep(0.05)
    finally:
        node.send_signal(signal.SIGKILL)  # mid-append, most likely: it does nothing else
        node.wait()
    started = time.monotonic()
    seq = log.append(entry(99)).seq
    assert time.monotonic() - started < 5  # the dead node's lock went with its connection
    records = list(log.records())
    assert [r.seq for r in records] == list(range(1, seq + 1)) and problems(log) == []
    assert {r.entry.caller.actor for r in records} >= {"doomed-node", "user0"}
    log.close()
