"""Per-key request rate limits: a token bucket for each access key, in one server process.

A key's :class:`RateLimit` (stored with the key) allows ``burst`` requests at once and
``rate`` a second on average. The :class:`RateLimiter` holds the buckets; the request
handler owns one and asks it after a request's signature is verified, so that nobody who
merely knows a key id can spend that key's budget. This limiter counts in one process;
``faceprint.server.shared_limits`` holds the buckets for several processes or nodes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from faceprint.errors import FaceprintError, InvalidParameterException

MAX_RATE = 1_000_000.0
MAX_BURST = 1_000_000
PRUNE_FLOOR = 1024
"""Buckets kept before full ones (as good as absent) are dropped."""


class RateExceeded(FaceprintError):
    """A key's request rate is over its limit: ``ThrottlingException``, which the AWS SDKs retry
    with backoff. Rekognition's model marks it as a server fault, hence HTTP 500 (the status the
    server answers for any modelled error is the model's)."""

    code = "ThrottlingException"
    http_status = 500


@dataclass(frozen=True)
class RateLimit:
    """``rate`` requests a second on average, ``burst`` at once."""

    rate: float
    burst: int

    @classmethod
    def of(cls, rate: float, burst: int | None = None) -> RateLimit:
        """A checked limit; ``burst`` defaults to one second's worth (at least 1)."""
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= MAX_RATE:
            raise InvalidParameterException(
                f"The rate must be more than 0 and at most {MAX_RATE:g} requests a second, not {rate!r}.")
        if burst is None:
            burst = max(1, math.ceil(rate))
        if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= MAX_BURST:
            raise InvalidParameterException(f"The burst must be a whole number from 1 to {MAX_BURST}, not {burst!r}.")
        return cls(float(rate), burst)

    @classmethod
    def changed(cls, old: RateLimit | None, rate: float | None, burst: int | None) -> RateLimit:
        """``old`` with a new rate or burst: a rate alone keeps the burst, a burst alone the rate."""
        if rate is None:
            if old is None:
                raise InvalidParameterException("A burst needs a rate: the key has no rate limit to change.")
            rate = old.rate
        if burst is None and old is not None:
            burst = old.burst
        return cls.of(rate, burst)

    def to_dict(self) -> dict[str, float | int]:
        return {"RequestsPerSecond": self.rate, "Burst": self.burst}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RateLimit | None:
        return None if data is None else cls.of(data["RequestsPerSecond"], data["Burst"])


def refuse_if_waiting(key_id: str, limit: RateLimit | None, wait: float) -> None:
    """:class:`RateExceeded` when a limiter said to ``wait`` before ``key_id``'s next request."""
    if wait > 0.0:
        assert limit is not None
        raise RateExceeded(f"Rate exceeded: access key {key_id} is limited to {limit.rate:g} requests a second "
                           f"(bursts of {limit.burst}); try again in {wait:.2g} s.")


class RateLimiter:
    """Token buckets by access key id. ``clock`` gives seconds (monotonic), so tests need no sleeps."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._prune_at = PRUNE_FLOOR

    def wait(self, key_id: str, limit: RateLimit | None) -> float:
        """Take a token for one request: 0.0 when there was one, else the seconds until there is."""
        if limit is None:
            return 0.0
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key_id)
            tokens = float(limit.burst) if bucket is None else bucket.tokens_at(now, limit)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / limit.rate
            if wait == 0.0:
                tokens -= 1.0
            self._buckets[key_id] = _Bucket(tokens, now, now + (limit.burst - tokens) / limit.rate)
            if len(self._buckets) > self._prune_at:
                self._prune(now)
            return wait

    def check(self, key_id: str, limit: RateLimit | None) -> None:
        """Take a token, or raise :class:`RateExceeded`."""
        refuse_if_waiting(key_id, limit, self.wait(key_id, limit))

    def __len__(self) -> int:
        """Buckets held (a full bucket may be dropped: it is as good as none)."""
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        self._buckets = {k: b for k, b in self._buckets.items() if b.full_at > now}
        self._prune_at = max(PRUNE_FLOOR, 2 * len(self._buckets))


@dataclass(frozen=True)
class _Bucket:
    tokens: float
    counted_at: float
    full_at: float
    """When the bucket is full again, at the limit it was last counted with."""

    def tokens_at(self, now: float, limit: RateLimit) -> float:
        """Tokens now, under ``limit`` (a key's limit may have changed since)."""
        return min(float(limit.burst), self.tokens + max(0.0, now - self.counted_at) * limit.rate)
