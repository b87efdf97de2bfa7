"""Access keys that faceprint manages, each with a policy (operations and collections).

Keys live in ``<home>/auth/keys.json`` (folder 0700, file 0600, written atomically under a
file lock). A running server sees keys created or deleted by ``faceprint keys`` in another
process: :meth:`KeyStore.get` reloads the file when it changes on disk.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from faceprint.errors import FaceprintError, InvalidParameterException, ResourceNotFoundException

SERVICE = "rekognition"
KEY_ID_PREFIX = "FPAK"
"""Access key ids are 20 characters like AWS's, but start with FPAK rather than AKIA:
secret scanners and people then never take a faceprint key for an AWS one."""
KEY_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # AWS key ids use base32 characters
SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
SECRET_LENGTH = 40  # 40 base64 characters: 240 bits from `secrets`
USER_NAME_PATTERN = re.compile(r"[\w+=,.@-]{1,64}")  # IAM's UserName
COLLECTION_PATTERN = re.compile(r"[a-zA-Z0-9_.\-*?\[\]!]{1,255}")  # collection id characters + fnmatch


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

    def to_iam_dict(self) -> dict[str, dict[str, str]]:
        """What ``aws iam create-access-key`` prints for a new key."""
        return {"AccessKey": {
            "UserName": self.user_name,
            "AccessKeyId": self.access_key_id,
            "Status": self.status,
            "SecretAccessKey": self.secret_access_key,
            "CreateDate": self.create_date.isoformat(),
        }}

    def metadata(self) -> dict[str, Any]:
        """``aws iam list-access-keys``'s AccessKeyMetadata (no secret), plus the policy."""
        return {"UserName": self.user_name, "AccessKeyId": self.access_key_id, "Status": self.status,
                "CreateDate": self.create_date.isoformat(), "Policy": self.policy.to_dict()}

    def to_record(self) -> dict[str, Any]:
        return {**self.to_iam_dict()["AccessKey"], "Policy": self.policy.to_dict()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AccessKey:
        return cls(user_name=record["UserName"], access_key_id=record["AccessKeyId"],
                   secret_access_key=record["SecretAccessKey"], status=record["Status"],
                   create_date=datetime.fromisoformat(record["CreateDate"]),
                   policy=Policy.from_dict(record.get("Policy") or {}))


# --- the key store ------------------------------------------------------------------


class KeyStore:
    """faceprint's access keys, in ``<home>/auth/keys.json``.

    Writes hold an exclusive ``flock`` (so ``faceprint keys`` in several processes
    never lose each other's keys) and replace the file atomically; reads reload the
    file whenever its inode, size or times change, so a running server sees keys
    created or deleted elsewhere on its next request.
    """

    FILE_VERSION = 1

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.folder = Path(home) / "auth"
        self.path = self.folder / "keys.json"
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None
        self._keys: dict[str, AccessKey] = {}

    def create(self, name: str, operations: Iterable[str] | None = None,
               collections: Iterable[str] | None = None) -> AccessKey:
        policy = Policy(_check_operations(operations), _check_collections(collections))
        if not isinstance(name, str) or not USER_NAME_PATTERN.fullmatch(name):
            raise InvalidParameterException(
                f"Key name {name!r} must be 1 to 64 letters, digits or any of _+=,.@- (like an IAM user name).")
        with self._writing() as keys:
            key_id = _new_key_id(keys)
            key = AccessKey(user_name=name, access_key_id=key_id, secret_access_key=_new_secret(),
                            status="Active", create_date=datetime.now(UTC).replace(microsecond=0), policy=policy)
            keys[key_id] = key
        return key

    def list(self) -> list[AccessKey]:
        """The keys in the order they were created."""
        return list(self._current().values())

    def delete(self, access_key_id: str) -> None:
        with self._writing() as keys:
            if access_key_id not in keys:
                raise ResourceNotFoundException(f"The access key with id {access_key_id} cannot be found.")
            del keys[access_key_id]

    def get(self, access_key_id: str) -> AccessKey | None:
        return self._current().get(access_key_id)

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
        except (ValueError, KeyError, TypeError) as exc:
            raise FaceprintError(f"The keys file {self.path} is damaged ({type(exc).__name__}: {exc}).") from exc
        return {k.access_key_id: k for k in keys}

    # writing

    @contextmanager
    def _writing(self) -> Iterator[dict[str, AccessKey]]:
        """Lock, yield the keys as on disk now, then write them back atomically."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
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
    known = rekognition_operations()
    unknown = sorted(set(items) - known)
    if unknown:
        raise InvalidParameterException(
            f"Unknown Rekognition operation(s): {', '.join(unknown)}. Names are like DetectFaces, SearchFacesByImage.")
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
