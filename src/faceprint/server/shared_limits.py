"""Per-key rate limits that hold across processes and nodes (docs/server-auth.md, "Rate limits").

:class:`~faceprint.server.ratelimit.RateLimiter` keeps its token buckets in one process's memory:
right for one ``faceprint serve`` process, but with ``--workers N`` or several nodes each process
would allow the key's whole rate. The limiters here keep the buckets where every process sees them
and take a token in one atomic statement (an upsert that refills the bucket for the time since it
was last counted, takes a token if one is there, and says whether it did):

- :class:`PgRateLimiter`: in the store's PostgreSQL database, table ``keys_rate_buckets`` of the
  ``keys`` part, by the database's clock (nodes' clocks may differ); one round trip a request, and
  only for keys that have a limit.
- :class:`SqliteRateLimiter`: ``HOME/auth/rates.db``, for the worker processes of one machine.

:func:`open_limiter` picks the one a server needs. A bucket's row is all a key's limit needs: its
tokens after the last request and when that was counted. Rows are small and few (one a limited
key).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceprint.home import private_file, private_folder
from faceprint.server.ratelimit import RateLimit, RateLimiter, refuse_if_waiting

if TYPE_CHECKING:
    from faceprint.server.keys import KeyStore
    from faceprint.store.pgshared import PgPart

TABLE = "keys_rate_buckets"
V2 = f"""
CREATE TABLE {TABLE} (
    access_key_id TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    counted_at DOUBLE PRECISION NOT NULL,
    granted BOOLEAN NOT NULL
);
"""


def _take_sql(param: Callable[[str], str], now: str) -> str:
    """The upsert taking one token (``param(name)``: a placeholder; ``now``: the clock's SQL)."""
    burst, rate = param("burst"), param("rate")
    refilled = f"LEAST({burst}, b.tokens + MAX_(0.0, excluded.counted_at - b.counted_at) * {rate})"
    return (f"INSERT INTO {TABLE} AS b (access_key_id, tokens, counted_at, granted) "
            f"VALUES ({param('key')}, {burst} - 1.0, {now}, TRUE) "
            f"ON CONFLICT (access_key_id) DO UPDATE SET "
            f"granted = {refilled} >= 1.0, "
            f"tokens = {refilled} - CASE WHEN {refilled} >= 1.0 THEN 1.0 ELSE 0.0 END, "
            f"counted_at = excluded.counted_at "
            f"RETURNING granted, tokens")


PG_TAKE = _take_sql(lambda n: f"%({n})s", "extract(epoch from clock_timestamp())").replace("MAX_", "GREATEST")
SQLITE_TAKE = _take_sql(lambda n: f":{n}", ":now").replace("MAX_", "MAX").replace("LEAST(", "MIN(")


class _SharedLimiter:
    """What both shared limiters do with the row the upsert returns."""

    def _take(self, key_id: str, limit: RateLimit) -> tuple[bool, float]:
        raise NotImplementedError


    def wait(self, key_id: str, limit: RateLimit | None) -> float:
        """Take a token for one request: 0.0 when there was one, else the seconds until there is."""
        if limit is None:
            return 0.0
        granted, tokens = self._take(key_id, limit)
        return 0.0 if granted else (1.0 - float(tokens)) / limit.rate

    def check(self, key_id: str, limit: RateLimit | None) -> None:
        """Take a token, or raise :class:`~faceprint.server.ratelimit.RateExceeded`."""
        refuse_if_waiting(key_id, limit, self.wait(key_id, limit))


def _args(key_id: str, limit: RateLimit) -> dict[str, Any]:
    return {"key": key_id, "burst": float(limit.burst), "rate": limit.rate}


class PgRateLimiter(_SharedLimiter):
    """Token buckets in the ``keys`` part's table: one limit for a key across every node."""

    def __init__(self, part: PgPart) -> None:
        self.part = part

    def _take(self, key_id: str, limit: RateLimit) -> tuple[bool, float]:
        from faceprint.store.pgdb import reaching

        with reaching(), self.part.tx() as db:
            row = db.execute(PG_TAKE, _args(key_id, limit)).fetchone()
        return bool(row[0]), float(row[1])



class SqliteRateLimiter(_SharedLimiter):
    """Token buckets in an SQLite file that the worker processes of one machine share. The counts are
    not worth an fsync (a crash at worst refills buckets): ``synchronous=OFF``, WAL."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        private_file(private_folder(path.parent) / path.name)  # 0600, which SQLite's -wal and -shm follow
        self.path, self.clock = path, clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(V2.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))

    def _take(self, key_id: str, limit: RateLimit) -> tuple[bool, float]:
        with self._lock:
            row = self._db.execute(SQLITE_TAKE, {**_args(key_id, limit), "now": self.clock()}).fetchone()
        return bool(row[0]), float(row[1])


    def close(self) -> None:
        self._db.close()


Limiter = RateLimiter | PgRateLimiter | SqliteRateLimiter


def open_limiter(keys: KeyStore | None, home: Path, processes: int = 1) -> Limiter:
    """The limiter a server process needs: in PostgreSQL when the keys are (several nodes), in
    ``HOME/auth/rates.db`` when ``processes`` serve one home, else in this process's memory."""
    from faceprint.server.pgkeys import PgKeyStore

    if isinstance(keys, PgKeyStore):
        return PgRateLimiter(keys.part)
    if keys is not None and processes > 1:
        return SqliteRateLimiter(home / "auth" / "rates.db")
    return RateLimiter()

