"""AWS Signature Version 4 verification against access keys that faceprint manages.

A request is accepted when its ``Authorization`` header carries a SigV4 signature
(``AWS4-HMAC-SHA256``) made with the secret of an active faceprint key, over the
request as received: method, path, query, the signed headers and a SHA-256 of the
body bytes that arrived. Failures raise :class:`AuthError` with the codes and HTTP
statuses that AWS JSON-protocol services (Rekognition among them) answer, so boto3
and the AWS CLI raise their usual ``ClientError``.

Keys live in ``<home>/auth/keys.json`` (folder 0700, file 0600, written atomically),
each with a :class:`Policy` naming the operations and collections it may use. A
running server sees keys created or deleted by ``faceprint keys`` in another
process: :meth:`KeyStore.get` reloads the file when it changes on disk.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from faceprint.errors import FaceprintError, InvalidParameterException, ResourceNotFoundException

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "rekognition"
MAX_CLOCK_SKEW = timedelta(minutes=15)
"""AWS refuses a request whose date is more than 15 minutes from the server's clock."""

KEY_ID_PREFIX = "FPAK"
"""Access key ids are 20 characters like AWS's, but start with FPAK rather than AKIA:
secret scanners and people then never take a faceprint key for an AWS one."""
KEY_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # AWS key ids use base32 characters
SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
SECRET_LENGTH = 40  # 40 base64 characters: 240 bits from `secrets`

AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
USER_NAME_PATTERN = re.compile(r"[\w+=,.@-]{1,64}")  # IAM's UserName
COLLECTION_PATTERN = re.compile(r"[a-zA-Z0-9_.\-*?\[\]!]{1,255}")  # collection id characters + fnmatch

INVALID_SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
INVALID_TOKEN_MESSAGE = "The security token included in the request is invalid."


class AuthError(FaceprintError):
    """A request refused by authentication or authorization.

    ``code`` is the AWS error code, ``message`` its text, ``status`` the HTTP status.
    It is a :class:`FaceprintError`, so ``to_dict()`` gives the AWS JSON error body.
    """

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = status

    @property
    def status(self) -> int:
        return self.http_status


def _missing_token() -> AuthError:
    return AuthError("MissingAuthenticationTokenException", "Missing Authentication Token")


def _incomplete(message: str) -> AuthError:
    return AuthError("IncompleteSignatureException", message)


def _invalid_signature(message: str = INVALID_SIGNATURE_MESSAGE) -> AuthError:
    return AuthError("InvalidSignatureException", message)


def _unrecognized() -> AuthError:
    return AuthError("UnrecognizedClientException", INVALID_TOKEN_MESSAGE)


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


# --- Signature Version 4 ------------------------------------------------------------


@dataclass(frozen=True)
class _Authorization:
    header: str
    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str


def verify(method: str, path: str, query: str, headers: Mapping[str, str], body: bytes, keys: KeyStore,
           now: datetime | None = None, service: str = SERVICE) -> AccessKey:
    """The active key that signed this request, or :class:`AuthError`.

    ``path`` is the path as sent on the wire (still percent-encoded, e.g. ASGI's
    ``raw_path``), ``query`` the raw query string without ``?``, ``headers`` maps
    lower-case names to values (repeated headers joined with ``,``), ``body`` the
    bytes received. ``now`` defaults to the current UTC time.
    """
    header = headers.get("authorization")
    if header is None or not header.strip():
        raise _missing_token()
    auth = _parse_authorization(header)
    timestamp, signed_at = _request_time(headers)
    key = keys.get(auth.access_key_id)
    if key is None or key.status != "Active" or "x-amz-security-token" in headers:
        raise _unrecognized()
    _check_clock(timestamp, signed_at, now or datetime.now(UTC))
    _check_scope(auth, timestamp, service)
    _check_signed_headers(auth, headers)
    payload_hash = hashlib.sha256(body).hexdigest()
    claimed = headers.get("x-amz-content-sha256")
    if claimed is not None and claimed.strip() != payload_hash:
        raise _invalid_signature("The provided 'x-amz-content-sha256' header does not match what was computed.")
    canonical = canonical_request(method, path, query, headers, auth.signed_headers, payload_hash)
    expected = signature(key.secret_access_key, timestamp, auth.region, auth.service, canonical)
    if not hmac.compare_digest(expected.encode(), auth.signature.encode("utf-8", "replace")):
        raise _invalid_signature()
    return key


def authorize(key: AccessKey, operation: str, collection_id: str | None) -> None:
    """Raise ``AccessDeniedException`` unless the key's policy allows the call."""
    if key.policy.allows(operation, collection_id):
        return
    resource = f" on resource: collection/{collection_id}" if collection_id is not None else ""
    raise AuthError("AccessDeniedException",
                    f"User: {key.user_name} (access key {key.access_key_id}) is not authorized to perform: "
                    f"{SERVICE}:{operation}{resource}")


def _parse_authorization(header: str) -> _Authorization:
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(f"Unsupported AWS 'algorithm': '{algorithm}'. faceprint accepts {ALGORITHM} only.")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value.strip()
    missing = [n for n in ("Credential", "Signature", "SignedHeaders") if not fields.get(n)]
    if missing:
        raise _incomplete(" ".join(f"Authorization header requires '{n}' parameter." for n in missing)
                          + f" Authorization={header}")
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or not all(scope):
        raise _incomplete("Credential must have exactly 5 slash-delimited elements, "
                          f"e.g. keyid/date/region/service/term, got '{fields['Credential']}'")
    return _Authorization(header, *scope, signed_headers=tuple(fields["SignedHeaders"].lower().split(";")),
                          signature=fields["Signature"])


def _request_time(headers: Mapping[str, str]) -> tuple[str, datetime]:
    """The signing timestamp (ISO 8601 basic) from X-Amz-Date, else from Date."""
    amz_date = headers.get("x-amz-date")
    if amz_date is not None:
        try:
            when = datetime.strptime(amz_date.strip(), AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise _incomplete(f"X-Amz-Date '{amz_date}' is not an ISO 8601 basic date like 20240131T235959Z.") from None
        return amz_date.strip(), when
    date = headers.get("date")
    if date is None:
        raise _incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    try:
        when = parsedate_to_datetime(date.strip())
    except (TypeError, ValueError):
        raise _incomplete(f"Date header '{date}' is not an HTTP date like 'Wed, 31 Jan 2024 23:59:59 GMT'.") from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime(AMZ_DATE_FORMAT), when


def _check_clock(timestamp: str, signed_at: datetime, now: datetime) -> None:
    now = now.astimezone(UTC)

    def fmt(t: datetime) -> str:
        return t.strftime(AMZ_DATE_FORMAT)

    if signed_at < now - MAX_CLOCK_SKEW:
        raise _invalid_signature(f"Signature expired: {timestamp} is now earlier than "
                                 f"{fmt(now - MAX_CLOCK_SKEW)} ({fmt(now)} - 15 min.)")
    if signed_at > now + MAX_CLOCK_SKEW:
        raise _invalid_signature(f"Signature not yet current: {timestamp} is still later than "
                                 f"{fmt(now + MAX_CLOCK_SKEW)} ({fmt(now)} + 15 min.)")


def _check_scope(auth: _Authorization, timestamp: str, service: str) -> None:
    if auth.terminator != "aws4_request":
        raise _invalid_signature(
            f"Credential should be scoped with a valid terminator: 'aws4_request', not '{auth.terminator}'.")
    if auth.service != service:
        raise _invalid_signature(f"Credential should be scoped to correct service: '{service}'.")
    if auth.date != timestamp[:8]:
        raise _invalid_signature("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                                 f"from HTTP: '{auth.date}' != '{timestamp[:8]}', from '{timestamp}'.")


def _check_signed_headers(auth: _Authorization, headers: Mapping[str, str]) -> None:
    if "host" not in auth.signed_headers:
        raise _incomplete("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    # The operation is chosen by X-Amz-Target: it must be covered by the signature,
    # or a captured request could be replayed as another operation.
    if "x-amz-target" in headers and "x-amz-target" not in auth.signed_headers:
        raise _incomplete("'X-Amz-Target' must be a 'SignedHeader' in the AWS Authorization.")


def canonical_request(method: str, path: str, query: str, headers: Mapping[str, str],
                      signed_headers: Iterable[str], payload_hash: str) -> str:
    """SigV4's canonical request (the form botocore signs for non-S3 services)."""
    names = list(signed_headers)
    lines = [f"{name}:{' '.join(headers.get(name, '').split())}" for name in names]
    return "\n".join([method.upper(), canonical_uri(path), canonical_query(query),
                      "\n".join(lines) + "\n", ";".join(names), payload_hash])


def canonical_uri(path: str) -> str:
    """The path with dot segments and empty segments removed, percent-encoded again (not S3)."""
    segments = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    normal = "/" + "/".join(segments)
    if path.endswith("/") and segments:
        normal += "/"
    return quote(normal, safe="/~")


def canonical_query(query: str) -> str:
    """Each name and value decoded then URI-encoded (RFC 3986 unreserved kept), sorted."""
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def signature(secret: str, timestamp: str, region: str, service: str, canonical: str) -> str:
    scope = f"{timestamp[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join([ALGORITHM, timestamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (timestamp[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
