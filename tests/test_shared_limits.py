"""Rate limits that hold for a key across server processes (``HOME/auth/rates.db``) and nodes (the
store's PostgreSQL database): ``faceprint.server.shared_limits``. Each test opens two limiters over
the same shared buckets, as two processes or nodes would."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from faceprint.server.keys import KeyStore
from faceprint.server.pgkeys import open_keys
from faceprint.server.ratelimit import RateExceeded, RateLimit, RateLimiter
from faceprint.server.shared_limits import PgRateLimiter, SqliteRateLimiter, open_limiter
from pg import pg  # noqa: F401

Limiters = Callable[[], PgRateLimiter | SqliteRateLimiter]


@pytest.fixture(scope="module")
def pg_url(request) -> str:
    return request.getfixturevalue("pg").database()


@pytest.fixture(params=["sqlite", "postgres"])
def limiters(request, tmp_path: Path) -> Iterator[Limiters]:
    """``limiters()``: a new process's (or node's) limiter over the same buckets."""
    opened: list = []
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None

    def limiter() -> PgRateLimiter | SqliteRateLimiter:
        if url is None:
            made: PgRateLimiter | SqliteRateLimiter = SqliteRateLimiter(tmp_path / "auth" / "rates.db")
        else:
            made = PgRateLimiter(open_keys(tmp_path, url).part)
        opened.append(made)
        return made

    if url is not None:
        limiter()  # brings the keys part's schema up to date
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("DELETE FROM keys_rate_buckets")  # buckets an earlier test left
    yield limiter
    for made in opened:
        if isinstance(made, PgRateLimiter):
            made.part.close()
        else:
            made.close()


def test_two_processes_share_one_burst(limiters: Limiters) -> None:
    a, b = limiters(), limiters()
    limit = RateLimit.of(0.001, 3)  # three requests, then one every 1,000 s
    assert a.wait("K", limit) == 0.0 and b.wait("K", limit) == 0.0 and a.wait("K", limit) == 0.0
    assert b.wait("K", limit) == pytest.approx(1000.0, rel=0.01)  # the burst is spent, on either
    with pytest.raises(RateExceeded) as caught:
        a.check("K", limit)
    assert caught.value.code == "ThrottlingException" and "K" in caught.value.message
    assert b.wait("other", limit) == 0.0  # another key has its own bucket
    assert a.wait("K", None) == 0.0  # a key without a limit is not counted


def test_the_bucket_refills_with_time(limiters: Limiters) -> None:
    a, b = limiters(), limiters()
    limit = RateLimit.of(2, 1)  # one at once, one every half second
    assert a.wait("K", limit) == 0.0
    assert 0.0 < b.wait("K", limit) <= 0.5
    time.sleep(0.6)
    assert b.wait("K", limit) == 0.0
    assert a.wait("K", RateLimit.of(0.001, 1)) > 100  # a changed limit holds from the next request


def test_racing_processes_never_take_more_than_the_burst(limiters: Limiters) -> None:
    nodes = [limiters(), limiters()]
    limit = RateLimit.of(0.001, 25)
    granted: list[float] = []

    def spend(limiter: PgRateLimiter | SqliteRateLimiter) -> None:
        for _ in range(40):
            granted.append(limiter.wait("K", limit))

    threads = [threading.Thread(target=spend, args=(nodes[n % 2],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 160 and granted.count(0.0) == 25


def test_the_server_picks_its_limiter(tmp_path: Path, pg_url: str) -> None:
    files = KeyStore(tmp_path)
    assert isinstance(open_limiter(files, tmp_path), RateLimiter)  # one process: in memory
    assert isinstance(open_limiter(None, tmp_path, processes=4), RateLimiter)  # no keys: nothing to count
    shared = open_limiter(files, tmp_path, processes=2)
    assert isinstance(shared, SqliteRateLimiter) and shared.path == tmp_path / "auth" / "rates.db"
    assert shared.wait("K", RateLimit.of(1)) == 0.0
    assert {p.name: p.stat().st_mode & 0o777 for p in shared.path.parent.glob("rates.db*")} == {
        "rates.db": 0o600, "rates.db-wal": 0o600, "rates.db-shm": 0o600}  # private, as the home's files are
    shared.close()
    keys = open_keys(tmp_path, pg_url)
    try:
        assert isinstance(open_limiter(keys, tmp_path), PgRateLimiter)  # several nodes: the database
        with psycopg.connect(pg_url) as db:
            assert db.execute("SELECT to_regclass('keys_rate_buckets')").fetchone() == ("keys_rate_buckets",)
    finally:
        keys.part.close()
