"""Console users: scrypt digests, lock-out, sessions and their signed cookies, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys

import pytest

from conftest import ROOT
from faceprint.console import csrf
from faceprint.console.sessions import Sessions, load_secret
from faceprint.console.users import LOCK_SECONDS, MAX_FAILURES, ConsoleUsers, SignInRefused
from faceprint.errors import InvalidParameterException, ResourceAlreadyExistsException, ResourceNotFoundException

PASSWORD = "correct horse battery staple"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def users(tmp_path, clock) -> ConsoleUsers:
    return ConsoleUsers(tmp_path / "console", clock=clock)


def test_password_is_kept_as_a_salted_scrypt_digest(users, tmp_path):
    users.add("alice", "reviewer", PASSWORD)
    users.add("bob", "reviewer", PASSWORD)
    db = sqlite3.connect(tmp_path / "console" / "users.db")
    rows = dict((name, (salt, digest)) for name, salt, digest in db.execute("SELECT name, salt, digest FROM users"))
    (salt_a, digest_a), (salt_b, digest_b) = rows["alice"], rows["bob"]
    assert salt_a != salt_b and digest_a != digest_b  # one password, two users: nothing in common
    assert digest_a == hashlib.scrypt(PASSWORD.encode(), salt=salt_a, n=2**15, r=8, p=1, maxmem=64 << 20, dklen=32)
    raw = (tmp_path / "console" / "users.db").read_bytes() + b"".join(
        p.read_bytes() for p in (tmp_path / "console").iterdir())
    assert PASSWORD.encode() not in raw
    assert stat.S_IMODE(os.stat(tmp_path / "console").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "console" / "users.db").st_mode) == 0o600


def test_sign_in_and_lock_out(users, clock):
    users.add("alice", "investigator", PASSWORD)
    assert users.authenticate("alice", PASSWORD).role == "investigator"
    for attempt in range(1, MAX_FAILURES):
        with pytest.raises(SignInRefused, match="Wrong user name or password") as refused:
            users.authenticate("alice", f"wrong {attempt}")
        assert not refused.value.locked
    with pytest.raises(SignInRefused, match="locked") as refused:
        users.authenticate("alice", "wrong again")
    assert refused.value.locked
    with pytest.raises(SignInRefused, match="locked"):  # the right password does not open a locked account
        users.authenticate("alice", PASSWORD)
    clock.now += LOCK_SECONDS + 1
    assert users.authenticate("alice", PASSWORD).name == "alice"
    assert users.get("alice").failures == 0


def test_a_success_resets_the_count_and_unlock_lifts_a_lock(users):
    users.add("alice", "reviewer", PASSWORD)
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(SignInRefused):
            users.authenticate("alice", "nope")
    users.authenticate("alice", PASSWORD)
    with pytest.raises(SignInRefused, match="Wrong"):  # counting starts again
        users.authenticate("alice", "nope")
    for _ in range(MAX_FAILURES):
        with pytest.raises(SignInRefused):
            users.authenticate("alice", "nope")
    assert users.get("alice").locked(users.clock())
    users.unlock("alice")
    assert users.authenticate("alice", PASSWORD).name == "alice"


def test_unknown_names_and_odd_input_are_refused_alike(users):
    for name, password in (("nobody", PASSWORD), ("../etc", PASSWORD), ("x" * 5000, "p"), ("alice", None)):
        with pytest.raises(SignInRefused, match="Wrong user name or password"):
            users.authenticate(name, password)


def test_user_management_errors(users):
    users.add("alice", "admin", PASSWORD)
    with pytest.raises(ResourceAlreadyExistsException):
        users.add("alice", "admin", PASSWORD)
    for name, role, password in (("bad name", "admin", PASSWORD), ("carol", "boss", PASSWORD),
                                 ("carol", "admin", "short")):
        with pytest.raises(InvalidParameterException):
            users.add(name, role, password)
    with pytest.raises(ResourceNotFoundException):
        users.delete("carol")
    assert users.update("alice", role="auditor", refuse_low_quality=True).refuse_low_quality


def test_sessions_are_signed_expire_and_end(users, clock, tmp_path):
    alice = users.add("alice", "reviewer", PASSWORD)
    sessions = Sessions(users, load_secret(tmp_path / "console"), idle=600, lifetime=3600)
    cookie = sessions.open(alice)
    assert sessions.find(cookie).user.name == "alice"
    sid, mac = cookie.rsplit(".", 1)
    assert sessions.find(f"{sid}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}") is None  # edited signature
    assert sessions.find(f"{os.urandom(24).hex()}.{mac}") is None  # another id, the old signature
    other = Sessions(users, os.urandom(32))
    assert other.find(cookie) is None  # signed with another secret
    clock.now += 599
    assert sessions.find(cookie) is not None  # in use: the idle time starts again
    clock.now += 599
    assert sessions.find(cookie) is not None
    clock.now += 601
    assert sessions.find(cookie) is None  # idle too long
    cookie = sessions.open(alice)
    for _ in range(8):  # 4,000 s, each step inside the idle time
        clock.now += 500
        sessions.find(cookie)
    assert sessions.find(cookie) is None  # past its lifetime, however busy
    cookie = sessions.open(alice)
    sessions.close(cookie)
    assert sessions.find(cookie) is None  # signed out
    cookie = sessions.open(alice)
    users.set_password("alice", PASSWORD + "!")
    assert sessions.find(cookie) is None  # a new password ends every session
    cookie = sessions.open(alice)
    users.delete("alice")
    assert sessions.find(cookie) is None


def test_csrf_tokens_are_bound_to_the_session(users, tmp_path):
    sessions = Sessions(users, load_secret(tmp_path / "console"))
    token = csrf.token(sessions, "sid-1")
    assert csrf.valid(sessions, "sid-1", token)
    assert not csrf.valid(sessions, "sid-2", token)
    assert not csrf.valid(sessions, "sid-1", "")
    assert not csrf.valid(sessions, "sid-1", None)
    assert not csrf.valid(sessions, None, token)
    assert load_secret(tmp_path / "console") == sessions.secret  # made once, then read
    assert stat.S_IMODE(os.stat(tmp_path / "console" / "secret").st_mode) == 0o600


def _cli(home, *args, stdin=""):
    return subprocess.run([sys.executable, "-m", "faceprint.cli", "--home", str(home), "console-users", *args],
                          input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_cli_adds_lists_changes_and_deletes(tmp_path):
    done = _cli(tmp_path, "add", "alice", "--role", "reviewer", "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ConsoleUser"]["Role"] == "reviewer"
    users = ConsoleUsers(tmp_path / "console")
    assert users.authenticate("alice", PASSWORD).name == "alice"
    for _ in range(MAX_FAILURES):
        with pytest.raises(SignInRefused):
            users.authenticate("alice", "nope")
    listed = json.loads(_cli(tmp_path, "list").stdout)["ConsoleUsers"]
    assert [(u["Name"], u["Locked"]) for u in listed] == [("alice", True)]
    assert "digest" not in json.dumps(listed).lower() and "salt" not in json.dumps(listed).lower()
    assert _cli(tmp_path, "unlock", "alice").returncode == 0
    assert _cli(tmp_path, "passwd", "alice", "--password-stdin", stdin="another long password\n").returncode == 0
    assert users.authenticate("alice", "another long password").name == "alice"
    assert _cli(tmp_path, "set", "alice", "--role", "admin").returncode == 0
    assert users.get("alice").role == "admin"
    assert _cli(tmp_path, "delete", "alice").returncode == 0
    assert users.get("alice") is None
    missing = _cli(tmp_path, "delete", "alice")
    assert missing.returncode == 1 and json.loads(missing.stderr)["__type"] == "ResourceNotFoundException"
    no_tty = _cli(tmp_path, "add", "bob", "--role", "admin")
    assert no_tty.returncode == 1 and "--password-stdin" in json.loads(no_tty.stderr)["Message"]
    from faceprint.audit.log import AuditFilter, AuditLog

    changes = [r.to_json() for r in AuditLog(tmp_path / "audit").query(AuditFilter(operation="ConsoleUserChanged"))]
    assert [(c["Details"]["ConsoleUser"], c["Details"]["Change"]) for c in changes] == [
        ("alice", "added"), ("alice", "unlocked"), ("alice", "password"), ("alice", "updated"), ("alice", "deleted")]
    assert {c["ActorKind"] for c in changes} == {"os"} and changes[3]["Details"]["Role"] == "admin"
    raw = b"".join(p.read_bytes() for p in (tmp_path / "audit").iterdir() if p.is_file())
    assert PASSWORD.encode() not in raw and b"another long password" not in raw
