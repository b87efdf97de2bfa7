"""Access keys that faceprint manages, each with a policy (operations and collections).

Keys live in ``<home>/auth/keys.json`` (folder 0700, file 0600, written atomically under a
file lock). A running server sees keys created or deleted by ``faceprint keys`` in another
process: :meth:`KeyStore.get` reloads the file when it changes on disk. With a PostgreSQL store
they live in its database instead (:class:`faceprint.server.pgkeys.PgKeyStore`, opened by
:func:`faceprint.server.pgkeys.open_keys`), shared by every node.

A key may expire (``Expiration``), be rotated (a new key with the same name, policy and rate
limit, while the old one expires after a grace period) and carry a request rate limit
(:class:`~faceprint.server.ratelimit.RateLimit`). A key also says what it is for: its ``purpose``
(recorded in the audit entry of each search it makes unless the request declares another),
whether its searches must give a case reference (``require_case``), and whether a search with a
low-quality probe is refused (``refuse_low_quality``). Files written before these existed load as
keys that never expire, have no limit, no purpose and neither requirement.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from faceprint.errors import FaceprintError, InvalidParameterException, ResourceNotFoundException
from faceprint.home import private_folder
from faceprint.server.ratelimit import RateLimit

SERVICE = "rekognition"
KEY_ID_PREFIX = "FPAK"
"""Access key ids are 20 characters like AWS's, but start with FPAK rather than AKIA:
secret scanners and people then never take a faceprint key for an AWS one."""
KEY_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # AWS key ids use base32 characters
SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
SECRET_LENGTH = 40  # 40 base64 characters: 240 bits from `secrets`
USER_NAME_PATTERN = re.compile(r"[\w+=,.@-]{1,64}")  # IAM's UserName
COLLECTION_PATTERN = re.compile(r"[a-zA-Z0-9_.\-*?\[\]!]{1,255}")  # collection id characters + fnmatch
STATUSES = ("Active", "Inactive")  # IAM's access key statuses
DURATION_PATTERN = re.compile(r"(?:\d{1,9}[wdhms])+")
DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
MAX_LIFETIME = timedelta(days=36525)  # 100 years: past that, datetime arithmetic overflows soon
DEFAULT_GRACE = timedelta(hours=24)
"""How long a rotated key keeps working beside its successor, unless told."""


class _Keep:
    """The default of :meth:`KeyStore.update`'s settings: leave it as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()


@dataclass(frozen=True)
class Policy:
    """Which operations and which collections a key may use; ``None`` means all.

    ``operations`` are Rekognition operation names (``"DetectFaces"``);
    ``collections`` are case-sensitive :mod:`fnmatch` patterns of collection ids.
    An operation that names no collection (DetectFaces, ListCollections, ...) is
    allowed by the operation list alone.
    """

    operations: frozenset[str] | None = None
    collections: tuple[str, ...] | None = None

    def allows_operation(self, operation: str) -> bool:
        return self.operations is None or operation in self.operations

    def allows_collection(self, collection_id: str) -> bool:
        """Whether the collection is covered by the key's patterns (e.g. to filter ListCollections)."""
        return self.collections is None or any(fnmatchcase(collection_id, p) for p in self.collections)

    def allows(self, operation: str, collection_id: str | None) -> bool:
        if not self.allows_operation(operation):
            return False
        return collection_id is None or self.allows_collection(collection_id)

    def to_dict(self) -> dict[str, list[str] | None]:
        return {"Operations": sorted(self.operations) if self.operations is not None else None,
                "Collections": list(self.collections) if self.collections is not None else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        operations, collections = data.get("Operations"), data.get("Collections")
        return cls(frozenset(operations) if operations is not None else None,
                   tuple(collections) if collections is not None else None)


@dataclass(frozen=True)
class AccessKey:
    user_name: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    status: str
    create_date: datetime
    policy: Policy
    expiration: datetime | None = None
    """When the key stops working (None: never)."""
    rate_limit: RateLimit | None = None
    rotated_to: str | None = None
    """The id of the key that replaced this one by :meth:`KeyStore.rotate`."""
    purpose: str | None = None
    """What the key's searches are for (the audit entries' purpose, unless a request says another)."""
    require_case: bool = False
    """Its audited operations must give a case reference (``X-Faceprint-Case``), else AccessDeniedException."""
    refuse_low_quality: bool = False
    """Its searches with a probe under the quality floor are refused (InvalidParameterException)."""

    def expired(self, now: datetime) -> bool:
        return self.expiration is not None and now >= self.expiration

    def to_iam_dict(self) -> dict[str, dict[str, str]]:
        """What ``aws iam create-access-key`` prints for a new key (with ``Expiration`` when it has one)."""
        expiration = {"Expiration": _iso(self.expiration)} if self.expiration is not None else {}
        return {"AccessKey": {
            "UserName": self.user_name,
            "AccessKeyId": self.access_key_id,
            "Status": self.status,
            "SecretAccessKey": self.secret_access_key,
            "CreateDate": self.create_date.isoformat(),
            **expiration,
        }}

    def metadata(self) -> dict[str, Any]:
        """``aws iam list-access-keys``'s AccessKeyMetadata (no secret), plus the policy, the
        expiration, the rate limit and the successor of a rotated key (each None when absent), its
        purpose and its two accountability requirements."""
        return {"UserName": self.user_name, "AccessKeyId": self.access_key_id, "Status": self.status,
                "CreateDate": self.create_date.isoformat(), "Policy": self.policy.to_dict(),
                "Expiration": _iso(self.expiration), "RateLimit": self.rate_limit and self.rate_limit.to_dict(),
                "RotatedTo": self.rotated_to, "Purpose": self.purpose, "RequireCase": self.require_case,
                "RefuseLowQuality": self.refuse_low_quality}

    def to_record(self) -> dict[str, Any]:
        return {**self.to_iam_dict()["AccessKey"], **self.metadata()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AccessKey:
        expiration = record.get("Expiration")
        return cls(user_name=record["UserName"], access_key_id=record["AccessKeyId"],
                   secret_access_key=record["SecretAccessKey"], status=record["Status"],
                   create_date=datetime.fromisoformat(record["CreateDate"]),
                   policy=Policy.from_dict(record.get("Policy") or {}),
                   expiration=_utc(datetime.fromisoformat(expiration)) if expiration is not None else None,
                   rate_limit=RateLimit.from_dict(record.get("RateLimit")),
                   rotated_to=record.get("RotatedTo"), purpose=_purpose(record.get("Purpose")),
                   require_case=_flag(record.get("RequireCase"), "RequireCase"),
                   refuse_low_quality=_flag(record.get("RefuseLowQuality"), "RefuseLowQuality"))


# --- the key store ------------------------------------------------------------------


class KeyStore:
    """faceprint's access keys, in ``<home>/auth/keys.json``.

    Writes hold an exclusive ``flock`` (so ``faceprint keys`` in several processes
    never lose each other's keys) and replace the file atomically; reads reload the
    file whenever its inode, size or times change, so a running server sees keys
    created or deleted elsewhere on its next request.

    ``on_change(operation, key, details)`` (``faceprint keys`` passes one that writes the audit
    record) is called for each change (``KeyCreated``, ``KeyUpdated``, ``KeyRotated``,
    ``KeyDeleted``) under the lock, after the change is made in memory and before it is written:
    if it raises, nothing is written (no entry, no change).
    """

    FILE_VERSION = 1

    def __init__(self, home: str | os.PathLike[str],
                 on_change: Callable[[str, AccessKey, dict[str, Any]], None] | None = None) -> None:
        self.folder = Path(home) / "auth"
        self.path = self.folder / "keys.json"
        self.on_change = on_change
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None
        self._keys: dict[str, AccessKey] = {}

    def create(self, name: str, operations: Iterable[str] | None = None,
               collections: Iterable[str] | None = None, *, expiration: datetime | None = None,
               rate_limit: RateLimit | None = None, purpose: str | None = None, require_case: bool = False,
               refuse_low_quality: bool = False) -> AccessKey:
        """A new active key. ``expiration`` must be in the future: a key that never works is a mistake."""
        policy = Policy(_check_operations(operations), _check_collections(collections))
        duties = Duties(_purpose(purpose), _flag(require_case, "require_case"),
                        _flag(refuse_low_quality, "refuse_low_quality"))
        if not isinstance(name, str) or not USER_NAME_PATTERN.fullmatch(name):
            raise InvalidParameterException(
                f"Key name {name!r} must be 1 to 64 letters, digits or any of _+=,.@- (like an IAM user name).")
        now = _now()
        if expiration is not None and _utc(expiration) <= now:
            raise InvalidParameterException(f"The expiration {_iso(expiration)} is not in the future.")
        with self._writing() as keys:
            key = _new_key(keys, name, policy, now, expiration, rate_limit, duties)
            keys[key.access_key_id] = key
            self._changed("KeyCreated", key, key.metadata())
        return key

    def update(self, access_key_id: str, *, status: str | None = None,
               expiration: datetime | None | _Keep = KEEP, rate_limit: RateLimit | None | _Keep = KEEP,
               purpose: str | None | _Keep = KEEP, require_case: bool | _Keep = KEEP,
               refuse_low_quality: bool | _Keep = KEEP) -> AccessKey:
        """Change a key's status, expiration (None: never; a past time expires it now), rate limit
        (None: none), purpose (None: none) or requirements; what is not given stays."""
        if status is not None and status not in STATUSES:
            raise InvalidParameterException(f"The status must be Active or Inactive, not {status!r}.")
        changes: dict[str, Any] = {} if status is None else {"status": status}
        if not isinstance(purpose, _Keep):
            changes["purpose"] = _purpose(purpose)
        for name, value in (("require_case", require_case), ("refuse_low_quality", refuse_low_quality)):
            if not isinstance(value, _Keep):
                changes[name] = _flag(value, name)
        if not isinstance(expiration, _Keep):
            changes["expiration"] = None if expiration is None else _utc(expiration)
        if not isinstance(rate_limit, _Keep):
            changes["rate_limit"] = rate_limit
        with self._writing() as keys:
            old = _find(keys, access_key_id)
            key = keys[access_key_id] = dataclasses.replace(old, **changes)
            before, after = old.metadata(), key.metadata()
            self._changed("KeyUpdated", key, {"Changes": {k: {"Before": before[k], "After": v}
                                                          for k, v in after.items() if before[k] != v}})
        return key

    def rotate(self, access_key_id: str, grace: timedelta = DEFAULT_GRACE,
               expiration: datetime | None | _Keep = KEEP, now: datetime | None = None) -> AccessKey:
        """A new key (new id and secret; same name, policy and rate limit) replacing ``access_key_id``,
        which expires ``grace`` from now (or when it already would, if sooner), so that both work while
        clients change over. The new key expires at ``expiration``; by default it gets the old key's
        lifetime (its expiration less its creation) from now, or none if the old key had none.
        A key already rotated to a key that still exists is refused: rotate its successor."""
        if grace < timedelta(0) or grace > MAX_LIFETIME:
            raise InvalidParameterException("The grace period must be from 0 seconds to 100 years.")
        now = _utc(now) if now is not None else _now()
        with self._writing() as keys:
            old = _find(keys, access_key_id)
            if old.rotated_to is not None and old.rotated_to in keys:
                raise InvalidParameterException(
                    f"Access key {access_key_id} was already rotated to {old.rotated_to}: rotate that key, or "
                    f"delete it first to rotate {access_key_id} again.")
            if isinstance(expiration, _Keep):
                expiration = _same_lifetime(old, now)
            elif expiration is not None and _utc(expiration) <= now:
                raise InvalidParameterException(f"The expiration {_iso(expiration)} is not in the future.")
            new = _new_key(keys, old.user_name, old.policy, now, expiration, old.rate_limit, Duties.of(old))
            ends = now + grace if old.expiration is None else min(old.expiration, now + grace)
            keys[access_key_id] = dataclasses.replace(old, expiration=ends, rotated_to=new.access_key_id)
            keys[new.access_key_id] = new
            self._changed("KeyRotated", old, {"NewAccessKeyId": new.access_key_id, "OldKeyExpiration": _iso(ends),
                                              "Expiration": _iso(new.expiration)})
        return new

    def list(self) -> list[AccessKey]:
        """The keys in the order they were created."""
        return list(self._current().values())

    def delete(self, access_key_id: str) -> None:
        with self._writing() as keys:
            key = _find(keys, access_key_id)
            del keys[access_key_id]
            self._changed("KeyDeleted", key, {})

    def get(self, access_key_id: str) -> AccessKey | None:
        return self._current().get(access_key_id)

    def close(self) -> None:
        """Nothing held between calls here (the PostgreSQL keys, :class:`~faceprint.server.pgkeys.PgKeyStore`,
        close their connections)."""

    def _changed(self, operation: str, key: AccessKey, details: dict[str, Any]) -> None:
        if self.on_change is not None:
            self.on_change(operation, key, details)

    # reading

    def _current(self) -> dict[str, AccessKey]:
        try:
            stamp = _stamp(os.stat(self.path))
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._stamp, self._keys = self._load()
            return self._keys

    def _load(self) -> tuple[tuple[int, ...] | None, dict[str, AccessKey]]:
        try:
            with open(self.path, "rb") as fh:
                stamp = _stamp(os.fstat(fh.fileno()))
                raw = fh.read()
        except FileNotFoundError:
            return None, {}
        return stamp, self._parse(raw)

    def _parse(self, raw: bytes) -> dict[str, AccessKey]:
        try:
            data = json.loads(raw)
            keys = [AccessKey.from_record(r) for r in data["AccessKeys"]]
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, InvalidParameterException) as exc:
            raise FaceprintError(f"The keys file {self.path} is damaged ({type(exc).__name__}: {exc}).") from exc
        return {k.access_key_id: k for k in keys}

    # writing

    @contextmanager
    def _writing(self) -> Iterator[dict[str, AccessKey]]:
        """Lock, yield the keys as on disk now, then write them back atomically."""
        private_folder(self.folder.parent)  # a home made here is private too (0700), as the store makes it
        self.folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.folder, 0o700)
        lock_fd = os.open(self.folder / "keys.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            _, keys = self._load()
            keys = dict(keys)
            yield keys
            self._write(keys)
        finally:
            os.close(lock_fd)  # releases the flock

    def _write(self, keys: Mapping[str, AccessKey]) -> None:
        body = json.dumps({"Version": self.FILE_VERSION, "AccessKeys": [k.to_record() for k in keys.values()]},
                          indent=2).encode() + b"\n"
        tmp = self.folder / f".keys.json.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _find(keys: Mapping[str, AccessKey], access_key_id: str) -> AccessKey:
    key = keys.get(access_key_id)
    if key is None:
        raise ResourceNotFoundException(f"The access key with id {access_key_id} cannot be found.")
    return key


@dataclass(frozen=True)
class Duties:
    """What a key owes the audit record: its purpose and its two requirements."""

    purpose: str | None = None
    require_case: bool = False
    refuse_low_quality: bool = False

    @classmethod
    def of(cls, key: AccessKey) -> Duties:
        return cls(key.purpose, key.require_case, key.refuse_low_quality)


def _new_key(keys: Mapping[str, AccessKey], name: str, policy: Policy, now: datetime,
             expiration: datetime | None, rate_limit: RateLimit | None, duties: Duties = Duties()) -> AccessKey:
    return AccessKey(user_name=name, access_key_id=_new_key_id(keys), secret_access_key=_new_secret(),
                     status="Active", create_date=now, policy=policy,
                     expiration=_utc(expiration) if expiration is not None else None, rate_limit=rate_limit,
                     purpose=duties.purpose, require_case=duties.require_case,
                     refuse_low_quality=duties.refuse_low_quality)


def _purpose(value: Any) -> str | None:
    """A key's purpose: None, or 1 to 500 printable characters (what an audit entry's purpose may hold)."""
    from faceprint.audit.caller import MAX_PURPOSE, printable

    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_PURPOSE or not printable(value):
        raise InvalidParameterException(f"A key's purpose must be 1 to {MAX_PURPOSE} printable characters.")
    return value


def _flag(value: Any, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidParameterException(f"{name} must be true or false.")
    return value


def _same_lifetime(old: AccessKey, now: datetime) -> datetime | None:
    """``old``'s lifetime (creation to expiration) from ``now``; None if it has none."""
    if old.expiration is None or old.expiration <= old.create_date:
        return None
    return now + (old.expiration - old.create_date)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _utc(when: datetime) -> datetime:
    """An aware time in UTC (a naive one is taken as UTC)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _iso(when: datetime | None) -> str | None:
    return None if when is None else _utc(when).isoformat()


def parse_duration(text: str) -> timedelta:
    """``90d``, ``24h``, ``1h30m``, ``2w``, ``45s``: weeks, days, hours, minutes, seconds."""
    if not isinstance(text, str) or not DURATION_PATTERN.fullmatch(text.strip()):
        raise InvalidParameterException(
            f"{text!r} is not a duration: write a number and a unit (w, d, h, m or s), e.g. 90d, 24h or 1h30m.")
    seconds = sum(int(n) * DURATION_UNITS[u] for n, u in re.findall(r"(\d+)([wdhms])", text))
    if seconds > MAX_LIFETIME.total_seconds():
        raise InvalidParameterException(f"The duration {text} is longer than 100 years.")
    return timedelta(seconds=seconds)


def parse_time(text: str) -> datetime:
    """An ISO 8601 time such as ``2027-03-01T00:00:00Z`` or ``2027-03-01`` (UTC unless it says)."""
    try:
        when = _utc(datetime.fromisoformat(text.strip()))
    except (AttributeError, ValueError):
        raise InvalidParameterException(
            f"{text!r} is not an ISO 8601 time like 2027-03-01T00:00:00Z (UTC unless an offset is given).") from None
    if when > _now() + MAX_LIFETIME:
        raise InvalidParameterException(f"The time {text} is more than 100 years away.")
    return when


def expiration_from(expires_in: str | None, expires_at: str | None) -> datetime | None:
    """The expiration that ``--expires-in DURATION`` or ``--expires-at TIME`` give (None for neither)."""
    if expires_in is not None and expires_at is not None:
        raise InvalidParameterException("Give --expires-in or --expires-at, not both.")
    if expires_in is not None:
        return _now() + parse_duration(expires_in)
    return parse_time(expires_at) if expires_at is not None else None


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _new_key_id(existing: Mapping[str, AccessKey]) -> str:
    while True:
        key_id = KEY_ID_PREFIX + "".join(secrets.choice(KEY_ID_ALPHABET) for _ in range(20 - len(KEY_ID_PREFIX)))
        if key_id not in existing:
            return key_id


def _new_secret() -> str:
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))


def _split_values(values: Iterable[str] | None, what: str) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    items = [v.strip() for v in values]
    if not items or not all(items):
        raise InvalidParameterException(f"{what} must list at least one non-empty name (omit it to allow all).")
    return items


def _check_operations(operations: Iterable[str] | None) -> frozenset[str] | None:
    items = _split_values(operations, "Operations")
    if items is None:
        return None
    known = rekognition_operations() | faceprint_operations()
    unknown = sorted(set(items) - known)
    if unknown:
        raise InvalidParameterException(
            f"Unknown operation(s): {', '.join(unknown)}. Names are Rekognition's, like DetectFaces, "
            "SearchFacesByImage, or FaceprintService's, like ReviewCandidate, ListAuditEntries.")
    return frozenset(items)


def _check_collections(collections: Iterable[str] | None) -> tuple[str, ...] | None:
    items = _split_values(collections, "Collections")
    if items is None:
        return None
    bad = [p for p in items if not COLLECTION_PATTERN.fullmatch(p)]
    if bad:
        raise InvalidParameterException(
            f"Collection pattern(s) {', '.join(map(repr, bad))} may use only collection id characters "
            "(a-z A-Z 0-9 _ . -) and the wildcards * ? [ ] !.")
    return tuple(dict.fromkeys(items))


def rekognition_operations() -> frozenset[str]:
    """Every operation name in botocore's Rekognition model (the names a policy may use)."""
    import botocore.session

    return frozenset(botocore.session.get_session().get_service_model(SERVICE).operation_names)


def faceprint_operations() -> frozenset[str]:
    """Every operation of faceprint's own service model (``FaceprintService``: review, settings, audit)."""
    from faceprint.server.model import load_faceprint_model

    return frozenset(load_faceprint_model()["operations"])
