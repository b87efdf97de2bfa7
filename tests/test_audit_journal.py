"""A relaxed audit log's journal: single appends go to ``audit.journal`` (one line each, the latest
head at its start), move into ``audit.db`` in batches and before any read, and tampering with it
still shows."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from faceprint.audit.caller import Caller
from faceprint.audit.journal import HEAD_SIZE
from faceprint.audit.log import BROKEN, CHECKPOINT_EVERY, JOURNAL_BATCH, AuditLog, Entry
from faceprint.audit.verify import verify
from faceprint.errors import AuditUnavailable

T0 = 1_800_000_000.0


def entry(n: int, actor: str = "alice") -> Entry:
    return Entry("SearchFaces", Caller(actor, "key", "AKIA1", purpose="inquiry", case=f"K-{n}"), T0 + n, T0 + n + 0.1,
                 collection_id="c1", collection_size=100, threshold=80.0, false_match_rate=1e-4,
                 candidates=({"FaceId": f"face-{n}", "Similarity": 91.5},), details={"n": n})


def stored(log: AuditLog) -> list[int]:
    """The seqs in audit.db itself, read by another connection (no journal moved)."""
    with closing(sqlite3.connect(log.path)) as db:
        return [row[0] for row in db.execute("SELECT seq FROM entries ORDER BY seq")]


def journal_lines(log: AuditLog) -> list[str]:
    """The entries' lines (after the head)."""
    return log.journal.path.read_bytes()[HEAD_SIZE:].decode().splitlines()


def rewrite_lines(log: AuditLog, lines: list[str]) -> None:
    """Replace the entries' lines by hand, the head left as it is."""
    head = log.journal.path.read_bytes()[:HEAD_SIZE]
    log.journal.path.write_bytes(head + "".join(line + "\n" for line in lines).encode())


def problems(log: AuditLog) -> list[tuple]:
    return [(p.seq, p.kind) for p in verify(log).problems]


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit", durable=False)


def test_single_appends_go_to_the_journal_and_every_read_sees_them(log):
    assert log.append_seq(entry(1)) == 1  # the first goes to audit.db, and signs its head there
    assert [log.append_seq(entry(n)) for n in range(2, 6)] == [2, 3, 4, 5]
    assert stored(log) == [1] and [line.split(" ")[0] for line in journal_lines(log)] == ["2", "3", "4", "5"]
    assert stat.S_IMODE(os.stat(log.journal.path).st_mode) == 0o600
    assert log.journal.head()[0] == 5
    assert log.head()[0] == 5  # a read moves the journal into audit.db first
    assert stored(log) == [1, 2, 3, 4, 5] and journal_lines(log) == []
    assert [r.entry.details["n"] for r in log.records()] == [1, 2, 3, 4, 5]
    assert log.latest_head().seq == 5 and problems(log) == []


def test_the_journal_moves_every_batch_and_the_chain_verifies(log):
    log.background_moves = False  # the append that fills the batch moves it
    log.append_seq(entry(0))
    for n in range(1, JOURNAL_BATCH + 3):
        log.append_seq(entry(n))
    assert stored(log) == list(range(1, JOURNAL_BATCH + 2)) and len(journal_lines(log)) == 2
    assert verify(log).ok and verify(log).entries == JOURNAL_BATCH + 3 and log.mover.runs == 0


def test_a_full_batch_moves_on_the_movers_thread(log):
    log.append_seq(entry(0))
    for n in range(1, JOURNAL_BATCH + 3):
        log.append_seq(entry(n))
    assert log.mover.join(60) and log.mover.runs >= 1
    moved, waiting = stored(log), [int(line.split(" ")[0]) for line in journal_lines(log)]
    assert len(moved) >= JOURNAL_BATCH + 1 and moved + waiting == list(range(1, JOURNAL_BATCH + 4))
    assert verify(log).ok and verify(log).entries == JOURNAL_BATCH + 3 and BROKEN not in {
        r.entry.operation for r in log.records()}


def _append_one(log: AuditLog) -> None:
    log.append_seq(entry(99, "child"))


def test_a_child_forked_while_another_thread_writes_appends_with_the_same_log(log):
    import threading

    log.append_seq(entry(0))
    held, release = threading.Event(), threading.Event()

    def writer() -> None:  # as the mover is while it moves a batch
        with log._write_lock:
            held.set()
            release.wait(60)

    thread = threading.Thread(target=writer)
    thread.start()
    held.wait(60)
    child = multiprocessing.get_context("fork").Process(target=_append_one, args=(log,))
    child.start()
    child.join(30)
    if child.is_alive():
        child.kill()
    release.set()
    thread.join(60)
    assert child.exitcode == 0  # not stuck on a lock its parent's thread held when it was forked
    assert [r.entry.caller.actor for r in log.records()] == ["alice", "child"] and problems(log) == []


def test_a_relaxed_log_checkpoints_its_wal_on_a_thread_of_its_own(log):
    log.append_seq(entry(0))
    assert os.path.getsize(log.path) < 100_000 and log._checkpointer is None
    for n in range(1, CHECKPOINT_EVERY + JOURNAL_BATCH):
        log.append_seq(entry(n))
    assert log.mover.join(60)  # the batches moved (on the mover's thread, which starts the checkpoint)
    checkpointer = log._checkpointer
    assert checkpointer is not None and checkpointer.daemon
    checkpointer.join(60)
    assert os.path.getsize(log.path) > CHECKPOINT_EVERY * 300  # the entries' pages copied in from the WAL
    assert verify(log).ok and log.count() == CHECKPOINT_EVERY + JOURNAL_BATCH


def test_another_log_on_the_same_folder_continues_the_chain(tmp_path, log):
    other = AuditLog(tmp_path / "audit", durable=False)
    durable = AuditLog(tmp_path / "audit")
    for n in range(12):
        (log, other, durable)[n % 3].append_seq(entry(n))
        (log, other)[n % 2].append_seq(entry(100 + n))
    records = list(AuditLog(tmp_path / "audit").records())
    assert [r.seq for r in records] == list(range(1, 25)) and BROKEN not in {r.entry.operation for r in records}
    assert problems(log) == []


def test_entries_left_in_the_journal_by_a_process_that_ended_are_read_and_kept(tmp_path, log):
    for n in range(4):
        log.append_seq(entry(n))
    del log  # its files are closed, the journal stays as it was
    again = AuditLog(tmp_path / "audit", durable=False)
    assert again.count() == 4 and problems(again) == []


def test_a_line_cut_short_by_a_crash_was_never_written(log):
    for n in range(3):
        log.append_seq(entry(n))
    with open(log.journal.path, "ab") as journal:
        journal.write(b"4 abc def {\"Operation\":")  # a write the machine did not finish
    assert len(journal_lines(log)) == 3
    assert log.count() == 3 and problems(log) == []
    assert log.append_seq(entry(9)) == 4 and problems(log) == []


def test_an_edited_journal_line_shows_once_moved(log):
    for n in range(4):
        log.append_seq(entry(n))
    rewrite_lines(log, [line.replace('"K-2"', '"K-X"') for line in journal_lines(log)])
    assert problems(log) == [(3, "edited")]


def test_journal_lines_cut_off_the_end_show_and_stay_in_the_chain(log):
    for n in range(5):
        log.append_seq(entry(n))
    rewrite_lines(log, journal_lines(log)[:-2])  # entries 4 and 5 gone, the head says 5
    assert problems(log) == [(4, "truncated")]
    assert log.append_seq(entry(9)) == 5  # the append records what it found
    broken = log.get(4).entry
    assert broken.operation == BROKEN and broken.details["SignedHead"]["Seq"] == 5
    assert broken.details["LastEntry"]["Seq"] == 3 and problems(log) == [(4, "truncated")]


def test_a_wiped_head_shows(log):
    for n in range(4):
        log.append_seq(entry(n))
    with open(log.journal.path, "r+b") as journal:
        journal.write(b" " * HEAD_SIZE)
    fresh = AuditLog(log.folder, durable=False)  # another process: the head it reads is gone
    assert problems(fresh) == [(2, "bad-signature")]  # entries past the last head it can vouch for


def test_audit_db_changed_by_hand_while_entries_wait_in_the_journal(log):
    for n in range(3):
        log.append_seq(entry(n))
    log.index()  # all in audit.db
    for n in range(3, 6):
        log.append_seq(entry(n))
    with closing(sqlite3.connect(log.path)) as db, db:
        db.execute("DELETE FROM entries WHERE seq = 3")
    assert log.append_seq(entry(9)) == 7  # audit.db changed: this append goes there, after the journal
    assert (3, "missing") in problems(log)


def test_a_removed_folder_fails_the_next_append_then_a_new_log_starts(tmp_path, log):
    for n in range(3):
        log.append_seq(entry(n))
    shutil.rmtree(tmp_path / "audit")
    with pytest.raises(AuditUnavailable):
        log.append_seq(entry(3))
    assert log.append_seq(entry(4)) == 1 and AuditLog(tmp_path / "audit").count() == 1


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_a_journal_removed_or_replaced_under_the_log_loses_no_entry(tmp_path, log, how):
    for n in range(4):
        log.append_seq(entry(n))
    path = log.journal.path
    if how == "removed":
        path.unlink()
    else:
        other = path.with_name("other")
        other.write_bytes(b" " * HEAD_SIZE)
        os.replace(other, path)
    assert [log.append_seq(entry(n)) for n in range(4, 7)] == [5, 6, 7]  # none into a file no one reads again
    assert stored(log) == [1, 2, 3, 4, 5, 6, 7] and problems(AuditLog(log.folder, durable=False)) == []


def test_a_journal_that_cannot_grow_fails_the_append_and_leaves_no_half_line(tmp_path, log):
    for n in range(3):
        log.append_seq(entry(n))
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from faceprint.audit.caller import Caller\n"
        "from faceprint.audit.log import AuditLog, Entry\n"
        "from faceprint.errors import AuditUnavailable\n"
        "log = AuditLog(Path(sys.argv[1]), durable=False)\n"
        "log.append_seq(Entry('SearchFaces', Caller('bob'), 1.0, 2.0))\n"
        "log.count()\n"
        "log.append_seq(Entry('SearchFaces', Caller('bob'), 1.0, 2.0))\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "limit = log.journal.path.stat().st_size + 2000\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
        "try:\n"
        "    log.append_seq(Entry('SearchFaces', Caller('bob'), 1.0, 2.0, details={'x': 'y' * 100_000}))\n"
        "except AuditUnavailable:\n"
        "    print('refused')\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "audit")], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "refused", done.stderr
    assert len(journal_lines(log)) == 1 and log.journal.path.read_bytes().endswith(b"\n")  # the one before
    assert log.journal.head()[0] == 5  # the head of the line before, not of the refused one
    assert log.count() == 5 and problems(log) == []


def _append_some(folder: str, actor: str) -> None:
    log = AuditLog(Path(folder), durable=False)
    for n in range(40):
        log.append_seq(entry(n, actor))


def test_processes_and_threads_append_one_chain(tmp_path, log):
    import threading

    log.append_seq(entry(0))
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append_some, args=(str(tmp_path / "audit"), f"p{i}")) for i in range(2)]
    threads = [threading.Thread(target=lambda: [log.append_seq(entry(n, "t")) for n in range(40)]) for _ in range(2)]
    for w in workers + threads:
        w.start()
    for t in threads:
        t.join(60)
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    report = verify(AuditLog(tmp_path / "audit"))
    assert report.ok and report.entries == 161


def test_a_durable_log_writes_no_journal(tmp_path):
    log = AuditLog(tmp_path / "audit")
    for n in range(3):
        log.append_seq(entry(n))
    assert stored(log) == [1, 2, 3] and journal_lines(log) == [] and log.journal.head()[0] == 3  # its head moves
