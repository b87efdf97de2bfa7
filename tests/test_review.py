"""Two-person review of search candidates (faceprint.audit.review) over a real audit log in a temporary
folder: search entries are appended to the log as the recorder would, so no model is needed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from faceprint.audit.caller import Caller
from faceprint.audit.log import AuditFilter, AuditLog, Entry
from faceprint.audit.pgparts import open_reviews, open_settings
from faceprint.audit.review import Reviews, list_page, status_of
from faceprint.audit.settings import CollectionSettings, SettingsStore
from faceprint.errors import (
    AccessDeniedException,
    AuditUnavailable,
    InvalidPaginationTokenException,
    InvalidParameterException,
    ResourceNotFoundException,
)
from pg import pg  # noqa: F401

FACE_A = "11111111-1111-4111-8111-111111111111"
FACE_B = "22222222-2222-4222-8222-222222222222"
FACE_C = "33333333-3333-4333-8333-333333333333"
ALICE, BOB, CAROL = Caller("alice"), Caller("bob", "console"), Caller("carol", "key", "AKIDCAROL")


class Home:
    """An audit folder with a log, settings and reviews (in the home's files, or in PostgreSQL where
    ``url`` names a database: the same tests run on both), and helpers to record searches."""

    def __init__(self, root, url=None):
        self.root, self.url = root, url
        self.log = AuditLog(root / "audit")
        self.settings = self.open_settings()
        self.reviews = self.open_reviews()

    def open_settings(self) -> SettingsStore:
        return open_settings(self.root, self.url or f"sqlite:///{self.root}")

    def open_reviews(self, log=None, settings=None) -> Reviews:
        """Another process's (or node's) view of the same queue."""
        return open_reviews(self.root, self.url or f"sqlite:///{self.root}", log or self.log, settings or self.settings)

    def drop_queue(self) -> None:
        """Lose the review queue (not the log)."""
        self.reviews.close()
        if self.url is None:
            for name in ("reviews.db", "reviews.db-wal", "reviews.db-shm"):
                (self.root / "audit" / name).unlink(missing_ok=True)
        else:
            with psycopg.connect(self.url) as db:
                db.execute("TRUNCATE review_decisions, review_candidates, review_log_position")

    def search(self, collection="people", faces=(FACE_A, FACE_B), two_person=True, case="case-7",
               operation="SearchFacesByImage") -> int:
        self.settings.put(collection, CollectionSettings(two_person_rule=two_person))
        candidates = tuple({"FaceId": f, "Similarity": 99.0 - i, "ExternalImageId": f"person-{i}"}
                           for i, f in enumerate(faces))
        entry = Entry(operation, Caller("investigator", purpose="fraud inquiry", case=case), 1.0, 2.0,
                      collection_id=collection, collection_size=1000, threshold=80.0, probe_sha256="ab" * 32,
                      candidates=candidates)
        return self.log.append(entry).seq

    def decisions(self) -> list:
        return self.log.query(AuditFilter(operation="ReviewDecision"))


@pytest.fixture(scope="module")
def pg_url(request) -> str:
    """One database for the module's PostgreSQL runs (emptied before each: see ``home``)."""
    return request.getfixturevalue("pg").database()


@pytest.fixture(params=["sqlite", "postgres"])
def home(tmp_path, request):
    h = Home(tmp_path, request.getfixturevalue("pg_url") if request.param == "postgres" else None)
    if h.url is not None:
        h.drop_queue()
        with psycopg.connect(h.url) as db:
            db.execute("TRUNCATE settings_collections")
        h.reviews = h.open_reviews()
    yield h
    h.reviews.close()
    h.settings.close()
    h.log.close()


def test_two_person_rule_needs_two_different_reviewers(home):
    search = home.search()
    assert home.reviews.decide(search, FACE_A, "CONFIRMED", ALICE).status == "awaiting-second"
    assert home.reviews.decide(search, FACE_A, "CONFIRMED", ALICE).status == "awaiting-second"
    # the same person by another channel, name in other case: still one person
    again = home.reviews.decide(search, FACE_A, "CONFIRMED", Caller("Alice", "console"), note="sure")
    assert again.status == "awaiting-second" and again.confirmations == 1 and again.required == 2
    done = home.reviews.decide(search, FACE_A, "CONFIRMED", BOB)
    assert done.status == "confirmed" and done.confirmations == 2
    assert [d["Reviewer"] for d in done.decisions] == ["alice", "alice", "Alice", "bob"]
    entries = home.decisions()
    assert [e.entry.details["Status"] for e in entries] == ["awaiting-second"] * 3 + ["confirmed"]
    assert [d["AuditId"] for d in done.decisions] == [e.seq for e in entries]
    assert entries[-1].entry.collection_id == "people" and entries[-1].entry.probe_sha256 == "ab" * 32
    assert home.reviews.get(search)[1].status == "pending"  # the other candidate is untouched


@pytest.mark.parametrize("twin", ["ALICE", "\uff41\uff4c\uff49\uff43\uff45", "\uff21lice", " alice ", "ali\u200bce",
                                  "\u2060alice\ufeff"])
def test_look_alike_forms_of_one_name_are_one_person(home, twin):
    search = home.search()
    home.reviews.decide(search, FACE_A, "CONFIRMED", ALICE)
    review = home.reviews.decide(search, FACE_A, "CONFIRMED", Caller(twin, "key", "AKIDTWIN"))
    assert review.status == "awaiting-second" and review.confirmations == 1


def test_a_note_may_join_letters_as_its_script_does(home):
    search = home.search()
    note = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # Persian, with a zero-width non-joiner
    assert home.reviews.decide(search, FACE_A, "INCONCLUSIVE", ALICE, note=note).decisions[0]["Note"] == note


def test_the_searcher_may_be_one_of_the_two(home):
    search = home.search()
    home.reviews.decide(search, FACE_A, "CONFIRMED", Caller("investigator"))
    assert home.reviews.decide(search, FACE_A, "CONFIRMED", BOB).status == "confirmed"


def test_one_confirmation_is_enough_without_the_rule(home):
    search = home.search(two_person=False)
    review = home.reviews.decide(search, FACE_A, "CONFIRMED", ALICE)
    assert review.status == "confirmed" and review.required == 1


def test_any_rejection_rejects_and_the_latest_decision_of_each_reviewer_counts(home):
    search = home.search()
    home.reviews.decide(search, FACE_A, "CONFIRMED", ALICE)
    home.reviews.decide(search, FACE_A, "CONFIRMED", BOB)
    assert home.reviews.decide(search, FACE_A, "REJECTED", CAROL).status == "rejected"
    assert home.reviews.decide(search, FACE_A, "CONFIRMED", CAROL).status == "confirmed"  # carol changed her mind
    assert len(home.reviews.get(search)[0].decisions) == 4  # every decision is kept


@pytest.mark.parametrize(("decisions", "required", "status"), [
    ((), 2, "pending"),
    ((("a", "INCONCLUSIVE"),), 2, "inconclusive"),
    ((("a", "CONFIRMED"), ("b", "INCONCLUSIVE")), 2, "inconclusive"),
    ((("a", "CONFIRMED"), ("b", "CONFIRMED"), ("c", "INCONCLUSIVE")), 2, "confirmed"),
    ((("a", "INCONCLUSIVE"), ("a", "CONFIRMED")), 2, "awaiting-second"),
    ((("a", "CONFIRMED"), ("A", "CONFIRMED")), 2, "awaiting-second"),
    ((("a", "CONFIRMED"),), 1, "confirmed"),
    ((("a", "CONFIRMED"), ("b", "REJECTED"), ("c", "CONFIRMED")), 2, "rejected"),
])
def test_status_of(decisions, required, status):
    assert status_of(decisions, required) == status


def test_the_decision_goes_to_the_reviewed_search_only(home):
    first, second = home.search(), home.search(faces=(FACE_C,))
    home.reviews.decide(first, FACE_A, "REJECTED", ALICE)
    with pytest.raises(ResourceNotFoundException, match="not a candidate"):
        home.reviews.decide(second, FACE_A, "CONFIRMED", ALICE)
    assert home.reviews.get(second)[0].status == "pending"


@pytest.mark.parametrize(("search", "face", "decision", "error"), [
    ("enrolment", FACE_A, "CONFIRMED", ResourceNotFoundException),
    ("missing", FACE_A, "CONFIRMED", ResourceNotFoundException),
    ("comparison", FACE_A, "CONFIRMED", ResourceNotFoundException),
    ("search", FACE_C, "CONFIRMED", ResourceNotFoundException),
    ("search", FACE_A, "confirmed", InvalidParameterException),
    ("search", FACE_A, "MAYBE", InvalidParameterException),
    ("search", FACE_A, None, InvalidParameterException),
    ("search", ["x"], "CONFIRMED", InvalidParameterException),
    ("text", FACE_A, "CONFIRMED", InvalidParameterException),
    ("negative", FACE_A, "CONFIRMED", InvalidParameterException),
    ("huge", FACE_A, "CONFIRMED", InvalidParameterException),
])
def test_bad_decisions_are_refused_and_leave_no_entry(home, search, face, decision, error):
    found = home.search()
    enrolment = home.log.append(Entry("IndexFaces", ALICE, 1.0, 2.0, collection_id="people")).seq
    comparison = home.log.append(Entry("CompareFaces", ALICE, 1.0, 2.0, candidates=({"Similarity": 99.0},))).seq
    search_id = {"search": found, "enrolment": enrolment, "comparison": comparison, "missing": 999, "text": "1",
                 "negative": -1, "huge": 2**80}[search]
    with pytest.raises(error):
        home.reviews.decide(search_id, face, decision, ALICE)
    assert home.decisions() == []


@pytest.mark.parametrize("note", ["", "x" * 1001, "bell\x07", 12, "not \u202eTON", "del\x7f", "c1\x85",
                                  "\u2067isolate\u2069"])
def test_a_bad_note_is_refused(home, note):
    with pytest.raises(InvalidParameterException, match="Note"):
        home.reviews.decide(home.search(), FACE_A, "CONFIRMED", ALICE, note=note)


def test_components_do_not_review(home):
    with pytest.raises(AccessDeniedException):
        home.reviews.decide(home.search(), FACE_A, "CONFIRMED", Caller("stream-processor:door", "system"))
    assert home.decisions() == []


def test_a_reviewer_whose_key_requires_a_case_reviews_under_the_search_case(home):
    strict = Caller("dave", "key", "AKIDDAVE", require_case=True)
    home.reviews.decide(home.search(case="case-7"), FACE_A, "INCONCLUSIVE", strict)
    assert home.decisions()[-1].entry.caller.case == "case-7"
    assert home.decisions()[-1].entry.caller.purpose == "fraud inquiry"
    with pytest.raises(AccessDeniedException):
        home.reviews.decide(home.search(case=None), FACE_A, "CONFIRMED", strict)


def test_no_entry_no_decision(home):
    search = home.search()
    home.reviews.decide(search, FACE_A, "CONFIRMED", ALICE)
    home.log._db().db().execute("PRAGMA query_only=ON")  # the log can be read but no longer written
    with pytest.raises(AuditUnavailable):
        home.reviews.decide(search, FACE_A, "CONFIRMED", BOB)
    review = home.reviews.get(search)[0]
    assert review.status == "awaiting-second" and len(review.decisions) == 1
    assert [r.status for r in home.reviews.queue()] == ["awaiting-second"]


def test_request_puts_candidates_in_the_queue(home):
    search = home.search(faces=(FACE_A, FACE_B, FACE_C))
    asked = home.reviews.request(search, [FACE_B, FACE_C, FACE_B], ALICE)
    assert [(r.face_id, r.status, r.required) for r in asked] == [(FACE_B, "pending", 2), (FACE_C, "pending", 2)]
    requested = home.log.query(AuditFilter(operation="ReviewRequested"))
    assert requested[0].entry.details["FaceIds"] == [FACE_B, FACE_C]
    assert [r.face_id for r in home.reviews.queue(status="pending")] == [FACE_B, FACE_C]
    home.reviews.decide(search, FACE_C, "CONFIRMED", ALICE)
    home.reviews.request(search, None, BOB)  # all of them; those in the queue stay as they are
    assert [(r.face_id, r.status) for r in home.reviews.queue()] == [
        (FACE_B, "pending"), (FACE_C, "awaiting-second"), (FACE_A, "pending")]
    with pytest.raises(ResourceNotFoundException):
        home.reviews.request(search, [FACE_A, "44444444-4444-4444-8444-444444444444"], ALICE)
    with pytest.raises(InvalidParameterException):
        home.reviews.request(search, FACE_A, ALICE)
    with pytest.raises(InvalidParameterException, match="no candidates"):
        home.reviews.request(home.search(faces=()), None, ALICE)


def test_queue_filters_and_pages(home):
    people = home.search(faces=(FACE_A, FACE_B, FACE_C))
    others = home.search(collection="others", faces=(FACE_A,), two_person=False)
    home.reviews.request(people, None, ALICE)
    home.reviews.decide(others, FACE_A, "CONFIRMED", ALICE)
    home.reviews.decide(people, FACE_B, "REJECTED", ALICE)
    assert [(r.search_id, r.face_id) for r in home.reviews.queue(collection_id="people", status="pending")] == [
        (people, FACE_A), (people, FACE_C)]
    assert [r.collection_id for r in home.reviews.queue(status="confirmed")] == ["others"]
    pages, token = [], None
    while True:
        page = list_page(home.reviews, None, None, 3, token)
        pages.append([(c["SearchId"], c["FaceId"]) for c in page["Candidates"]])
        token = page.get("NextToken")
        if token is None:
            break
    assert pages == [[(people, FACE_A), (people, FACE_B), (people, FACE_C)], [(others, FACE_A)]]
    with pytest.raises(InvalidPaginationTokenException):
        list_page(home.reviews, None, None, 3, "not-a-token")
    for bad in (0, 1001, "3", True):
        with pytest.raises(InvalidParameterException):
            list_page(home.reviews, None, None, bad, None)
    with pytest.raises(InvalidParameterException):
        home.reviews.queue(status="done")
    for bad in ({"a": 1}, "bad/id", 7):
        with pytest.raises(InvalidParameterException):
            list_page(home.reviews, None, bad, 10, None)


def test_search_users_candidates_are_named_by_user_id(home):
    entry = Entry("SearchUsers", ALICE, 1.0, 2.0, collection_id="people",
                  candidates=({"UserId": "user-9", "Similarity": 97.5},))
    home.settings.put("people", CollectionSettings(two_person_rule=True))
    search = home.log.append(entry).seq
    review = home.reviews.decide(search, "user-9", "CONFIRMED", ALICE)
    assert (review.user_id, review.similarity, review.status) == ("user-9", 97.5, "awaiting-second")


def test_the_stricter_rule_applies_when_the_collection_changes(home):
    loose, strict = home.search(two_person=False), home.search(collection="strict")
    home.reviews.decide(loose, FACE_A, "CONFIRMED", ALICE)
    home.reviews.decide(strict, FACE_A, "CONFIRMED", ALICE)
    home.settings.put("people", CollectionSettings(two_person_rule=True))
    home.reviews.rule_changed("people")
    assert home.reviews.get(loose)[0].status == "awaiting-second"  # turned on: a second person is needed
    home.settings.put("people", CollectionSettings(two_person_rule=False))
    home.reviews.rule_changed("people")
    assert home.reviews.get(loose)[0].status == "confirmed"
    home.settings.put("strict", CollectionSettings(two_person_rule=False))
    home.reviews.rule_changed("strict")
    assert home.reviews.get(strict)[0].status == "awaiting-second"  # on when the review opened: still two


def test_a_rule_turned_on_behind_the_reviews_back_still_holds_a_one_person_confirmation(home):
    search = home.search(two_person=False)
    home.reviews.decide(search, FACE_A, "CONFIRMED", ALICE)
    home.settings.put("people", CollectionSettings(two_person_rule=True))  # without rule_changed
    review = home.reviews.get(search)[0]
    assert (review.status, review.required, review.confirmations) == ("awaiting-second", 2, 1)
    assert [r.status for r in home.reviews.queue()] == ["awaiting-second"]


def test_the_queue_is_rebuilt_from_the_log(home, tmp_path):
    search = home.search(faces=(FACE_A, FACE_B, FACE_C))
    home.reviews.request(search, [FACE_C], ALICE)
    home.reviews.decide(search, FACE_A, "CONFIRMED", ALICE)
    home.reviews.decide(search, FACE_A, "CONFIRMED", BOB, note="same scar")
    home.reviews.decide(search, FACE_B, "REJECTED", BOB)
    before = [r.to_json() for r in home.reviews.queue()]
    home.drop_queue()
    home.reviews = home.open_reviews()
    assert [r.to_json() for r in home.reviews.queue()] == before
    assert [r["Status"] for r in before] == ["pending", "confirmed", "rejected"]


class SlowLog:
    """An audit log whose appends start a little late: a decision made meanwhile by another reviewer
    (thread, process or node) would be missed by one that does not wait for it."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def append(self, entry: Entry):
        time.sleep(0.01)
        return self.log.append(entry)

    def __getattr__(self, name: str):
        return getattr(self.log, name)


def test_concurrent_reviewers_are_ordered(home, tmp_path):
    search = home.search()
    home.reviews.close()
    home.reviews = home.open_reviews(SlowLog(home.log))
    other = home.open_reviews(SlowLog(AuditLog(tmp_path / "audit")), home.open_settings())
    errors = []

    def confirm(reviews, caller):
        try:
            for _ in range(5):
                reviews.decide(search, FACE_A, "CONFIRMED", caller)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=confirm, args=(r, c)) for r, c in ((home.reviews, ALICE), (other, BOB))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    statuses = [e.entry.details["Status"] for e in home.decisions()]
    first = statuses.index("confirmed")
    assert set(statuses[:first]) == {"awaiting-second"} and set(statuses[first:]) == {"confirmed"}
    made = [(e.entry.caller.actor, e.entry.details["Decision"]) for e in home.decisions()]
    assert statuses == [status_of(made[:n], 2) for n in range(1, 11)]  # each saw every decision before it
    assert home.reviews.get(search)[0].status == "confirmed" and len(home.reviews.get(search)[0].decisions) == 10


def _confirm_as(root: str, url: str | None, search: int, name: str) -> None:
    home = Home(Path(root), url)  # another node when url names PostgreSQL
    reviews = home.reviews
    for _ in range(5):
        reviews.decide(search, FACE_A, "CONFIRMED", Caller(name, "key", f"AKID{name.upper()}"))


def test_one_person_confirming_from_two_processes_at_once_is_still_one(home, tmp_path):
    import multiprocessing

    from faceprint.audit.verify import verify

    search = home.search()
    # spawn, not fork: a child forked from a test process that has talked to Milvus over gRPC can die
    # in gRPC's fork handlers (SIGSEGV/SIGABRT, seen in CI); faceprint's own processes are spawned too
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_confirm_as, args=(str(tmp_path), home.url, search, name))
               for name in ("alice", "ALICE")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    review = home.reviews.get(search)[0]
    assert (review.status, review.confirmations, len(review.decisions)) == ("awaiting-second", 1, 10)
    assert {e.entry.details["Status"] for e in home.decisions()} == {"awaiting-second"}
    assert home.reviews.decide(search, FACE_A, "CONFIRMED", BOB).status == "confirmed"
    assert verify(home.log).ok


def test_reviews_of_pruned_searches_go_with_them(home, tmp_path):
    from faceprint.audit.retention import prune

    old = home.search(faces=(FACE_A, FACE_B))  # started in 1970: older than any retention
    home.reviews.decide(old, FACE_A, "CONFIRMED", ALICE, note="kept only as long as the log")
    assert prune(home.log, 183)["Pruned"] >= 1
    home.reviews.refresh()
    assert home.reviews.queue() == []
    with pytest.raises(ResourceNotFoundException):
        home.reviews.get(old)
    for name in ("reviews.db", "reviews.db-wal"):
        path = tmp_path / "audit" / name
        assert not path.exists() or b"kept only as long" not in path.read_bytes()


def test_a_replaced_log_is_indexed_afresh(home, tmp_path):
    home.reviews.decide(home.search(faces=(FACE_A,)), FACE_A, "REJECTED", ALICE)
    home.reviews.close()
    home.log.close()
    for path in (tmp_path / "audit").glob("audit.db*"):
        path.unlink()
    home.log = AuditLog(tmp_path / "audit")
    search = home.search(faces=(FACE_C,))  # seq 1 again, another search
    home.reviews = home.open_reviews()
    assert home.reviews.queue() == []
    assert [(r.face_id, r.status) for r in home.reviews.get(search)] == [(FACE_C, "pending")]


def test_entries_the_queue_lacks_are_indexed_and_odd_ones_left_out(home):
    search = home.search()
    home.reviews.decide(search, FACE_A, "CONFIRMED", ALICE)
    # a process that wrote its decision and stopped before indexing it; and entries this code never writes
    for details in ({"SearchId": search, "FaceId": FACE_A, "Decision": "CONFIRMED", "RequiredConfirmations": 2},
                    {"SearchId": "one", "FaceId": FACE_A}, {"SearchId": search, "FaceId": FACE_C, "Decision": "X"},
                    {"SearchId": search}, {"SearchId": 2**70}):
        home.log.append(Entry("ReviewDecision", BOB, 3.0, 4.0, details=details))
    home.reviews.refresh()
    review = home.reviews.get(search)[0]
    assert review.status == "confirmed" and [d["Reviewer"] for d in review.decisions] == ["alice", "bob"]
    assert home.reviews.decide(search, FACE_B, "INCONCLUSIVE", CAROL).status == "inconclusive"
