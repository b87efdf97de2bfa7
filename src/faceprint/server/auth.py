"""AWS Signature Version 4 verification against access keys that faceprint manages.

A request is accepted when its ``Authorization`` header carries a SigV4 signature
(``AWS4-HMAC-SHA256``) made with the secret of an active faceprint key, over the
request as received: method, path, query, the signed headers and a SHA-256 of the
body bytes that arrived. Failures raise :class:`AuthError` with the codes and HTTP
statuses that AWS JSON-protocol services (Rekognition among them) answer, so boto3
and the AWS CLI raise their usual ``ClientError``.

The keys themselves, with their policies, are in ``faceprint.server.keys``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, quote, unquote

from faceprint.errors import FaceprintError
from faceprint.server.keys import AccessKey, KeyStore, Policy

__all__ = ["AccessKey", "AuthError", "KeyStore", "Policy", "authorize", "precheck", "verify", "verify_presigned"]

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "rekognition"
MAX_CLOCK_SKEW = timedelta(minutes=15)
"""AWS refuses a request whose date is more than 15 minutes from the server's clock."""
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_PRESIGNED_EXPIRES = 7 * 24 * 3600
"""A presigned URL lives at most 7 days (``X-Amz-Expires`` 604800), as AWS has it."""
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ACCOUNTABILITY_HEADERS = {"x-faceprint-case": "X-Faceprint-Case", "x-faceprint-purpose": "X-Faceprint-Purpose"}
"""Request headers that name the case and purpose recorded in the audit log: they must be signed."""
PRESIGN_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
                  "X-Amz-Signature")

INVALID_SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
INVALID_TOKEN_MESSAGE = "The security token included in the request is invalid."
EXPIRED_TOKEN_MESSAGE = "The security token included in the request is expired"
"""AWS's words (no full stop) for credentials past their expiration, with ExpiredTokenException."""


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


def _expired() -> AuthError:
    return AuthError("ExpiredTokenException", EXPIRED_TOKEN_MESSAGE)


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
    key, auth, timestamp = _check_headers(headers, keys, now, service)
    payload_hash = hashlib.sha256(body).hexdigest()
    claimed = headers.get("x-amz-content-sha256")
    if claimed is not None and claimed.strip() != payload_hash:
        raise _invalid_signature("The provided 'x-amz-content-sha256' header does not match what was computed.")
    canonical = canonical_request(method, path, query, headers, auth.signed_headers, payload_hash)
    expected = signature(key.secret_access_key, timestamp, auth.region, auth.service, canonical)
    if not hmac.compare_digest(expected.encode(), auth.signature.encode("utf-8", "replace")):
        raise _invalid_signature()
    return key


def precheck(headers: Mapping[str, str], keys: KeyStore, now: datetime | None = None,
             service: str = SERVICE) -> AccessKey:
    """What :func:`verify` checks before the body is needed: an ``Authorization`` header of the
    right form, an active key that has not expired, the date and the scope. The server runs it
    before it reads a body, so that a request without a usable key never holds a body's room."""
    return _check_headers(headers, keys, now, service)[0]


def _check_headers(headers: Mapping[str, str], keys: KeyStore, now: datetime | None,
                   service: str) -> tuple[AccessKey, _Authorization, str]:
    header = headers.get("authorization")
    if header is None or not header.strip():
        raise _missing_token()
    auth = _parse_authorization(header)
    timestamp, signed_at = _request_time(headers)
    key = keys.get(auth.access_key_id)
    if key is None or key.status != "Active" or "x-amz-security-token" in headers:
        raise _unrecognized()
    now = now or datetime.now(UTC)
    if key.expired(now):
        raise _expired()
    _check_clock(timestamp, signed_at, now)
    _check_scope(auth, timestamp, service)
    _check_signed_headers(auth, headers)
    return key, auth, timestamp


def verify_presigned(method: str, path: str, query: str, headers: Mapping[str, str], keys: KeyStore,
                     now: datetime | None = None, service: str = SERVICE) -> AccessKey:
    """The active key that presigned this URL (SigV4 in the query string, as botocore's
    ``SigV4QueryAuth`` makes it), or :class:`AuthError`.

    The query holds ``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``, ``X-Amz-Expires``
    (1 second to 7 days), ``X-Amz-SignedHeaders`` (``host`` among them) and ``X-Amz-Signature``; the
    URL is refused once ``X-Amz-Date`` + ``X-Amz-Expires`` has passed, or if it was signed more than
    15 minutes in the future. The payload is ``UNSIGNED-PAYLOAD`` or the hash of the empty body (what
    botocore signs for a bodiless GET)."""
    params = _presigned_params(query)
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        raise _incomplete(f"Unsupported X-Amz-Algorithm: faceprint accepts {ALGORITHM} only.")
    scope = params["X-Amz-Credential"].split("/")
    if len(scope) != 5 or not all(scope):
        raise _incomplete("X-Amz-Credential must have exactly 5 slash-delimited elements, "
                          "e.g. keyid/date/region/service/term.")
    auth = _Authorization("", *scope, signed_headers=tuple(params["X-Amz-SignedHeaders"].lower().split(";")),
                          signature=params["X-Amz-Signature"])
    timestamp, signed_at = _presigned_time(params["X-Amz-Date"])
    expires = _presigned_expires(params["X-Amz-Expires"])
    key = keys.get(auth.access_key_id)
    if key is None or key.status != "Active" or "X-Amz-Security-Token" in params:
        raise _unrecognized()
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if key.expired(now):
        raise _expired()
    _check_presigned_clock(timestamp, signed_at, expires, now)
    _check_scope(auth, timestamp, service)
    if "host" not in auth.signed_headers:
        raise _incomplete("'host' must be one of X-Amz-SignedHeaders.")
    unsigned = "&".join(p for p in query.split("&") if p.partition("=")[0] != "X-Amz-Signature")
    claimed = auth.signature.encode("utf-8", "replace")
    for payload in (UNSIGNED_PAYLOAD, EMPTY_SHA256):
        canonical = canonical_request(method, path, unsigned, headers, auth.signed_headers, payload)
        expected = signature(key.secret_access_key, timestamp, auth.region, auth.service, canonical)
        if hmac.compare_digest(expected.encode(), claimed):
            return key
    raise _invalid_signature()


def _presigned_params(query: str) -> dict[str, str]:
    """The presigning members of the query; each present once."""
    seen: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name.startswith("X-Amz-"):
            seen.setdefault(name, []).append(value)
    if not seen:
        raise _missing_token()
    missing = [n for n in PRESIGN_PARAMS if not seen.get(n) or not seen[n][0]]
    if missing:
        raise _incomplete(f"A presigned URL needs the query parameters {', '.join(PRESIGN_PARAMS)}; "
                          f"missing: {', '.join(missing)}.")
    twice = [n for n, v in seen.items() if len(v) > 1]
    if twice:
        raise _incomplete(f"The query parameters {', '.join(sorted(twice))[:200]} are given more than once.")
    return {n: v[0] for n, v in seen.items()}


def _presigned_time(text: str) -> tuple[str, datetime]:
    try:
        return text, datetime.strptime(text, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise _incomplete("X-Amz-Date must be an ISO 8601 basic date like 20240131T235959Z.") from None


def _presigned_expires(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_PRESIGNED_EXPIRES:
        raise _incomplete(f"X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGNED_EXPIRES} (7 days).")
    return int(text)


def _check_presigned_clock(timestamp: str, signed_at: datetime, expires: int, now: datetime) -> None:
    if signed_at + timedelta(seconds=expires) < now:
        raise AuthError("AccessDeniedException", f"Request has expired: signed at {timestamp} for {expires} "
                        f"seconds, now {now.strftime(AMZ_DATE_FORMAT)}.", 403)
    if signed_at > now + MAX_CLOCK_SKEW:
        raise _invalid_signature(f"Signature not yet current: {timestamp} is still later than "
                                 f"{(now + MAX_CLOCK_SKEW).strftime(AMZ_DATE_FORMAT)} ({now.strftime(AMZ_DATE_FORMAT)}"
                                 " + 15 min.)")


def authorize(key: AccessKey, operation: str, collection_id: str | None, service: str = SERVICE) -> None:
    """Raise ``AccessDeniedException`` unless the key's policy allows the call (``service``: how the
    message names the operation's service, ``rekognition`` or ``faceprint``)."""
    if key.policy.allows(operation, collection_id):
        return
    resource = f" on resource: collection/{collection_id}" if collection_id is not None else ""
    raise AuthError("AccessDeniedException",
                    f"User: {key.user_name} (access key {key.access_key_id}) is not authorized to perform: "
                    f"{service}:{operation}{resource}")


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
    # The case reference and purpose go into the audit record: unsigned, anyone on the path could change them.
    for name, shown in ACCOUNTABILITY_HEADERS.items():
        if name in headers and name not in auth.signed_headers:
            raise AuthError("AccessDeniedException",
                            f"The {shown} header is not covered by the request's signature: add it before the "
                            f"request is signed (a boto3 'before-sign' hook, faceprint.client.with_case), so that "
                            "it is one of the Authorization's SignedHeaders.")


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
