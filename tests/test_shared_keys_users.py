"""Access keys, console users and their sessions, and collection settings as two nodes share them: two
instances on one home (SQLite, JSON: two processes of one machine) or on one PostgreSQL database (two
nodes anywhere, ``faceprint.server.pgkeys``, ``faceprint.console.pgusers``, ``faceprint.audit.pgparts``).
The same tests run on both."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from faceprint.audit.pgparts import open_settings
from faceprint.audit.settings import CollectionSettings
from faceprint.console.pgusers import open_console_users, signing_secret
from faceprint.console.sessions import Sessions
from faceprint.console.users import MAX_FAILURES, ConsoleUsers, PasswordHasher, SignInRefused
from faceprint.errors import FaceprintError, ResourceAlreadyExistsException, ResourceNotFoundException
from faceprint.server.auth import AuthError
from faceprint.server.pgkeys import REFRESH, PgKeyStore, open_keys
from pg import pg  # noqa: F401
from test_auth import check, sign

PASSWORD = "correct horse battery staple"
CHEAP = PasswordHasher(params={"n": 2**4, "r": 8, "p": 1, "maxmem": 1 << 20, "dklen": 32})
"""Real scrypt at a cost that keeps these tests quick (the lock-out logic is what is tested here)."""


@pytest.fixture(scope="module")
def pg_url(request) -> str:
    return request.getfixturevalue("pg").database()


@pytest.fixture(params=["files", "postgres"])
def open_node(request, tmp_path) -> Callable[[str], object]:
    """``open_node(kind)``: a new node's ``keys``, ``users`` or ``settings`` over the shared state (an
    emptied database for the PostgreSQL runs)."""
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        with psycopg.connect(url, autocommit=True) as db:
            for table in ("keys_access_keys", "console_sessions", "console_users", "settings_collections"):
                db.execute(f"DO $$ BEGIN IF to_regclass('{table}') IS NOT NULL THEN DELETE FROM {table}; END IF; "
                           "END $$")
    store_url = url or f"sqlite:///{tmp_path}"
    opened: list = []

    def node(kind: str):
        if kind == "keys":
            made = open_keys(tmp_path, store_url)
        elif kind == "users":
            made = open_console_users(tmp_path, store_url)
            made.hasher = CHEAP
        else:
            made = open_settings(tmp_path, store_url)
        opened.append(made)
        return made

    yield node
    for made in opened:
        if hasattr(made, "close"):
            made.close()
        elif isinstance(made, ConsoleUsers):
            made.db.close()


def within_a_second(probe: Callable[[], bool]) -> bool:
    """Whether ``probe()`` holds within the keys' refresh period (and a little)."""
    deadline = time.monotonic() + REFRESH + 0.5
    while not probe():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- access keys ----------------------------------------------------------------------------------------

def test_a_key_made_disabled_or_deleted_on_one_node_is_honoured_by_the_other(open_node):
    a, b = open_node("keys"), open_node("keys")
    assert b.list() == []  # b has read (and, on PostgreSQL, cached) the keys before a makes one
    key = a.create("alice", operations=["DetectFaces"])
    assert within_a_second(lambda: b.get(key.access_key_id) == key)
    assert check(sign(key.access_key_id, key.secret_access_key), b) == key  # SigV4 verified on b
    a.update(key.access_key_id, status="Inactive")
    assert within_a_second(lambda: b.get(key.access_key_id).status == "Inactive")
    with pytest.raises(AuthError) as refused:
        check(sign(key.access_key_id, key.secret_access_key), b)
    assert refused.value.code == "UnrecognizedClientException"
    new = b.rotate(key.access_key_id)
    assert [k.access_key_id for k in a.list()] == [key.access_key_id, new.access_key_id]  # creation order
    b.delete(key.access_key_id)
    assert within_a_second(lambda: a.get(key.access_key_id) is None)
    with pytest.raises(ResourceNotFoundException):
        a.delete(key.access_key_id)


def test_keys_made_at_once_on_two_nodes_are_all_kept(open_node):
    nodes, made, errors = [open_node("keys"), open_node("keys")], [], []

    def create(store, n: int) -> None:
        try:
            for i in range(6):
                made.append(store.create(f"node{n}-{i}").access_key_id)
        except Exception as exc:  # noqa: BLE001 (collected for the assertion)
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(store, n)) for n, store in enumerate(nodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    fresh = open_node("keys")
    assert sorted(k.access_key_id for k in fresh.list()) == sorted(made) and len(made) == 12


def test_a_change_whose_audit_record_fails_is_not_made(open_node):
    store = open_node("keys")
    kept = store.create("kept")

    def fail(*_args) -> None:
        raise FaceprintError("the audit log is unavailable")

    store.on_change = fail
    with pytest.raises(FaceprintError):
        store.create("lost")
    with pytest.raises(FaceprintError):
        store.delete(kept.access_key_id)
    assert [k.user_name for k in open_node("keys").list()] == ["kept"]


def test_damaged_keys_are_a_clear_error(request, tmp_path):  # a damaged keys file: tests/test_auth.py
    url = request.getfixturevalue("pg").database()
    store = open_keys(tmp_path, url)
    assert isinstance(store, PgKeyStore)
    with psycopg.connect(url) as db:
        db.execute("INSERT INTO keys_access_keys (access_key_id, record) VALUES ('FPAKBROKEN', '{\"UserName\": 1')")
    with pytest.raises(FaceprintError, match="damaged"):
        store.list()
    store.close()


# -- console users and sessions -----------------------------------------------------------------------------

def test_wrong_passwords_on_two_nodes_count_together_and_an_unlock_holds_everywhere(open_node):
    a, b = open_node("users"), open_node("users")
    a.add("alice", "reviewer", PASSWORD)
    with pytest.raises(ResourceAlreadyExistsException):
        b.add("alice", "admin", PASSWORD)
    for i in range(MAX_FAILURES - 1):
        with pytest.raises(SignInRefused):
            (a, b)[i % 2].authenticate("alice", "wrong password!")
    assert a.get("alice").failures == MAX_FAILURES - 1
    with pytest.raises(SignInRefused) as locked:
        b.authenticate("alice", "wrong password!")
    assert locked.value.locked
    with pytest.raises(SignInRefused):
        a.authenticate("alice", PASSWORD)  # the right password, on the other node, while locked
    b.unlock("alice")
    assert a.authenticate("alice", PASSWORD).name == "alice"


def test_wrong_passwords_at_once_are_each_counted(open_node):
    a, b = open_node("users"), open_node("users")
    a.add("bob", "investigator", PASSWORD)
    errors = []

    def fail_twice(users: ConsoleUsers) -> None:
        for _ in range(2):
            try:
                users.authenticate("bob", "wrong password!")
            except SignInRefused:
                pass
            except Exception as exc:  # noqa: BLE001 (collected for the assertion)
                errors.append(exc)

    threads = [threading.Thread(target=fail_twice, args=(users,)) for users in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and a.get("bob").failures == 4


def test_a_session_opened_on_one_node_is_good_on_the_other_until_it_ends_anywhere(open_node):
    a, b = open_node("users"), open_node("users")
    assert signing_secret(a) == signing_secret(b) and len(signing_secret(a)) == 32
    user = a.add("carol", "admin", PASSWORD)
    on_a, on_b = Sessions(a, signing_secret(a)), Sessions(b, signing_secret(b))
    cookie = on_a.open(user)
    assert on_b.find(cookie).user == user
    assert on_b.find(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")) is None  # forged
    on_b.close(cookie)
    assert on_a.find(cookie) is None
    again = on_a.open(user)
    b.set_password("carol", PASSWORD + "!")  # a new password ends every session
    assert on_a.find(again) is None and on_b.find(again) is None
    b.delete("carol")
    with pytest.raises(ResourceNotFoundException):
        a.update("carol", role="reviewer")


# -- collection settings ----------------------------------------------------------------------------------

def test_settings_changed_on_one_node_hold_on_the_other(open_node):
    a, b = open_node("settings"), open_node("settings")
    assert b.get("people") == CollectionSettings()
    a.put("people", CollectionSettings(two_person_rule=True, face_retention_days=30))
    assert b.get("people") == CollectionSettings(True, False, 30)
    records = []
    after, changed = b.change("people", lambda s: s.updated(keep_face_crops=True), lambda *c: records.append(c))
    assert changed and after == CollectionSettings(True, True, 30) and len(records) == 1
    assert b.change("people", lambda s: s, lambda *c: records.append(c)) == (after, False) and len(records) == 1

    def refuse(*_changes) -> None:
        raise FaceprintError("no audit entry, no change")

    with pytest.raises(FaceprintError):
        a.change("people", lambda s: s.updated(two_person_rule=False), refuse)
    assert b.get("people").two_person_rule is True
    a.put("others", CollectionSettings())
    assert list(b.all()) == ["others", "people"]
    b.drop("people")
    assert a.get("people") == CollectionSettings() and list(a.all()) == ["others"]


def test_settings_changed_at_once_on_two_nodes_lose_nothing(open_node):
    nodes, errors = [open_node("settings"), open_node("settings")], []

    def later(settings: CollectionSettings) -> CollectionSettings:
        time.sleep(0.02)  # read, then write a while later: another node's change in between would be lost
        return settings.updated(face_retention_days=(settings.face_retention_days or 0) + 1)

    def bump(store) -> None:
        try:
            for _ in range(5):
                store.change("people", later, lambda *c: None)
        except Exception as exc:  # noqa: BLE001 (collected for the assertion)
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(store,)) for store in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and nodes[0].get("people").face_retention_days == 10


# -- where the commands and Faceprint keep them ------------------------------------------------------------

def test_the_commands_keep_keys_and_console_users_in_the_store_when_it_is_postgresql(pg_url, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from conftest import ROOT

    for table in ("keys_access_keys", "console_users"):
        with psycopg.connect(pg_url, autocommit=True) as db:
            db.execute(f"DO $$ BEGIN IF to_regclass('{table}') IS NOT NULL THEN DELETE FROM {table}; END IF; END $$")
    env = {**os.environ, "FACEPRINT_STORE": pg_url}

    def faceprint(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "faceprint.cli", *args], input=stdin, env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    home = tmp_path / "node-a"
    made = faceprint("keys", "create", "--name", "ops", "--home", str(home))
    assert made.returncode == 0, made.stderr
    key_id = json.loads(made.stdout)["AccessKey"]["AccessKeyId"]
    added = faceprint("console-users", "add", "dora", "--role", "reviewer", "--password-stdin", "--home", str(home),
                      stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert not (home / "auth" / "keys.json").exists() and not (home / "console" / "users.db").exists()
    other = tmp_path / "node-b"  # another machine's home, the same database
    keys, users = open_keys(other, pg_url), open_console_users(other, pg_url)
    assert [k.access_key_id for k in keys.list()] == [key_id]
    assert users.authenticate("dora", PASSWORD).role == "reviewer"
    keys.close()
    users.db.close()


def test_faceprint_keeps_collection_settings_in_the_store_when_it_is_postgresql(pg_url, tmp_path):
    from faceprint.service import Faceprint
    from faceprint.store.pgdb import PgDatabase

    a, b = Faceprint(tmp_path / "a", store_url=pg_url), Faceprint(tmp_path / "b", store_url=pg_url)
    assert isinstance(a.settings_store.database, PgDatabase)
    a.settings_store.put("shared", CollectionSettings(keep_face_crops=True))
    assert b.settings_store.get("shared").keep_face_crops is True
    assert not (tmp_path / "a" / "settings.db").exists()
    default = Faceprint(tmp_path / "c")  # the embedded default keeps them in the home
    assert default.settings_store.get("shared") == CollectionSettings()
    assert (tmp_path / "c" / "settings.db").exists()
    for fp in (a, b, default):
        fp.settings_store.close()


def test_a_serve_node_honours_a_key_changed_on_another_node_within_a_second(pg_url, tmp_path):
    from botocore.exceptions import ClientError

    from serverkit import Server

    keys = open_keys(tmp_path / "admin", pg_url)  # `faceprint --store URL keys ...` on another machine
    key = keys.create("shared-key", operations=["ListCollections"])
    (tmp_path / "node").mkdir()
    node = Server(tmp_path / "node", "--store", pg_url)  # a node started after the key was made
    try:
        client = node.client(key.access_key_id, key.secret_access_key)
        assert client.list_collections()["CollectionIds"] == []
        keys.update(key.access_key_id, status="Inactive")

        def refused() -> bool:
            try:
                client.list_collections()
            except ClientError as e:
                return e.response["Error"]["Code"] == "UnrecognizedClientException"
            return False

        assert within_a_second(refused)
        keys.update(key.access_key_id, status="Active")
        assert within_a_second(lambda: not refused())
    finally:
        node.stop()
        keys.close()


def test_a_database_gone_is_store_unavailable_not_a_crash(request, tmp_path, monkeypatch):
    from faceprint.store import postgres
    from faceprint.store.postgres import StoreUnavailable

    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT", 1.0)  # each call waits this long for a connection (open_pool)
    server = request.getfixturevalue("pg")
    url = server.database()
    keys, users, settings = open_keys(tmp_path, url), open_console_users(tmp_path, url), open_settings(tmp_path, url)
    key = keys.create("before")
    name = url.split("?")[0].rsplit("/", 1)[1]
    server.sql(f"DROP DATABASE {name} WITH (FORCE)")
    time.sleep(REFRESH)  # the keys' cache has lapsed
    with pytest.raises(StoreUnavailable):
        keys.get(key.access_key_id)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        keys.get(key.access_key_id)  # a request just after: refused at once, not after another wait
    assert time.monotonic() - started < 0.5
    for call in (keys.list, lambda: keys.create("after"), lambda: users.get("alice"),
                 lambda: users.add("alice", "admin", PASSWORD), lambda: signing_secret(users),
                 lambda: settings.get("people"), lambda: settings.put("people", CollectionSettings())):
        with pytest.raises(StoreUnavailable, match="PostgreSQL store is unavailable"):
            call()
    for made in (keys, settings):
        made.close()
    users.db.close()


def test_two_nodes_share_one_review_queue_and_one_person_confirming_on_both_counts_once(request, tmp_path):
    from faceprint.audit.caller import Caller
    from faceprint.audit.log import Entry
    from faceprint.service import Faceprint

    url = request.getfixturevalue("pg").database()  # its own audit chain
    a, b = Faceprint(tmp_path / "a", store_url=url), Faceprint(tmp_path / "b", store_url=url)
    face = "11111111-1111-4111-8111-111111111111"
    a.settings_store.put("people", CollectionSettings(two_person_rule=True))
    search = a.audit_log.append(Entry("SearchFacesByImage", Caller("investigator", purpose="inquiry", case="c-1"),
                                      1.0, 2.0, collection_id="people", collection_size=10, threshold=80.0,
                                      candidates=({"FaceId": face, "Similarity": 99.0},))).seq
    assert a.review_candidate(search, face, "CONFIRMED", caller=Caller("alice"))["Candidate"]["Status"] \
        == "awaiting-second"
    again = b.review_candidate(search, face, "CONFIRMED", caller=Caller("ALICE", "console"))["Candidate"]
    assert (again["Status"], again["Confirmations"]) == ("awaiting-second", 1)  # one person, two nodes: once
    assert b.review_candidate(search, face, "CONFIRMED", caller=Caller("bob"))["Candidate"]["Status"] == "confirmed"
    assert [c["Status"] for c in a.list_reviews()["Candidates"]] == ["confirmed"]
    assert not (tmp_path / "a" / "audit" / "reviews.db").exists()
    for fp in (a, b):
        fp.reviews.close()
        fp.settings_store.close()


def _asgi(app, method: str, path: str, cookies: dict[str, str], form: dict[str, str] | None = None):
    """One request to an ASGI app in this process: (status, headers as (name, value) pairs, body)."""
    import asyncio
    from urllib.parse import urlencode

    body = urlencode(form or {}).encode()
    headers = [(b"host", b"node"), (b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode())]
    if form is not None:
        headers += [(b"content-type", b"application/x-www-form-urlencoded"), (b"content-length", b"%d" % len(body))]
    scope = {"type": "http", "http_version": "1.1", "method": method, "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "server": ("node", 80), "client": ("127.0.0.1", 5000)}
    answer: dict = {"body": b""}
    sent = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return sent.pop(0) if sent else {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"], answer["headers"] = message["status"], message["headers"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return answer["status"], [(k.decode(), v.decode()) for k, v in answer["headers"]], answer["body"]


def test_a_console_sign_in_on_one_node_holds_on_the_other(request, tmp_path):
    import re

    from faceprint.console.app import Console
    from faceprint.console.csrf import PRE_COOKIE
    from faceprint.console.sessions import COOKIE
    from faceprint.service import Faceprint

    url = request.getfixturevalue("pg").database()
    consoles = [Console(Faceprint(tmp_path / name, store_url=url)) for name in ("a", "b")]
    a, b = (console.app for console in consoles)
    consoles[0].users.add("erin", "reviewer", PASSWORD)
    status, headers, page = _asgi(a, "GET", "/sign-in", {})
    pre = re.search(f"{PRE_COOKIE}=([0-9a-f]+)", dict(headers)["set-cookie"]).group(1)
    token = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
    # the form node a made is posted to node b (a balancer in between): b checks a's token
    status, headers, _ = _asgi(b, "POST", "/sign-in", {PRE_COOKIE: pre},
                               {"name": "erin", "password": PASSWORD, "csrf": token})
    assert status == 303
    cookie = next(re.search(f"{COOKIE}=([^;]+)", v).group(1) for k, v in headers
                  if k == "set-cookie" and v.startswith(COOKIE))
    status, headers, _ = _asgi(a, "GET", "/", {COOKIE: cookie})  # signed in on a with b's cookie
    assert status in (302, 303, 307) and dict(headers)["location"].endswith("/review")
    consoles[1].users.set_password("erin", PASSWORD + "?")  # ends the session everywhere
    status, headers, _ = _asgi(a, "GET", "/", {COOKIE: cookie})
    assert "sign-in" in dict(headers).get("location", "")
    for console in consoles:
        console.close()
        console.users.db.close()
