"""SigV4 verification and access keys, checked against botocore's real signer.

Every signed request here is signed by ``botocore.auth.SigV4Auth``; the last tests
drive a small HTTP server with boto3's Rekognition client and the real CLI.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from faceprint.errors import FaceprintError, InvalidParameterException, ResourceNotFoundException
from faceprint.server.auth import AccessKey, AuthError, KeyStore, Policy, authorize, precheck, verify
from faceprint.server.keys import expiration_from, parse_duration, parse_time
from faceprint.server.ratelimit import RateExceeded, RateLimit, RateLimiter

URL = "http://127.0.0.1:8080/"
BODY = b'{"Image": {"S3Object": {"Bucket": "photos", "Name": "a.jpg"}}}'


@pytest.fixture()
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path)


@pytest.fixture()
def key(keys: KeyStore) -> AccessKey:
    return keys.create("alice")


def sign(key_id: str, secret: str, *, url: str = URL, body: bytes = BODY, target: str = "DetectFaces",
         region: str = "us-east-1", service: str = "rekognition", headers: dict[str, str] | None = None,
         token: str | None = None) -> AWSRequest:
    request = AWSRequest(method="POST", url=url, data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"RekognitionService.{target}",
        **(headers or {})})
    SigV4Auth(Credentials(key_id, secret, token), service, region).add_auth(request)
    return request


def check(request: AWSRequest, keys: KeyStore, *, body: bytes | None = None, now: datetime | None = None,
          **header_changes: str | None) -> AccessKey:
    """Verify the request as a server receives it (urllib3 adds Host from the URL)."""
    parts = urlsplit(request.url)
    headers = {name.lower(): value for name, value in request.headers.items()}
    headers["host"] = parts.netloc
    for name, value in header_changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return verify("POST", parts.path, parts.query, headers, request.body if body is None else body, keys, now=now)


def refused(code: str, request: AWSRequest, keys: KeyStore, **kwargs) -> AuthError:
    with pytest.raises(AuthError) as caught:
        check(request, keys, **kwargs)
    assert caught.value.code == code, caught.value.message
    assert caught.value.status == 400
    body = caught.value.to_dict()  # the AWS JSON error body: its message under "Message" or "message"
    assert body["__type"] == code and body.get("Message", body.get("message")) == caught.value.message
    return caught.value


def test_valid_request_passes(keys: KeyStore, key: AccessKey) -> None:
    assert check(sign(key.access_key_id, key.secret_access_key), keys) == key


def test_query_path_and_region_are_part_of_the_signature(keys: KeyStore, key: AccessKey) -> None:
    url = "http://localhost:9000/some/path%20x/?b=2&a=x%20y&flag"
    request = sign(key.access_key_id, key.secret_access_key, url=url, region="eu-west-3")
    assert check(request, keys) == key
    tampered = AWSRequest("POST", url.replace("b=2", "b=3"), data=request.body, headers=request.headers)
    refused("InvalidSignatureException", tampered, keys)
    tampered = AWSRequest("POST", url.replace("path%20x", "path%20y"), data=request.body, headers=request.headers)
    refused("InvalidSignatureException", tampered, keys)


def test_date_header_instead_of_x_amz_date(keys: KeyStore, key: AccessKey) -> None:
    # botocore signs with the Date header when the request has one
    request = sign(key.access_key_id, key.secret_access_key, headers={"Date": "placeholder"})
    assert "X-Amz-Date" not in request.headers and request.headers["Date"].endswith("-0000")
    assert check(request, keys) == key
    signed_at = datetime.now(UTC)
    error = refused("InvalidSignatureException", request, keys, now=signed_at + timedelta(minutes=16))
    assert error.message.startswith("Signature expired: ")


def test_unsigned_request(keys: KeyStore, key: AccessKey) -> None:
    request = AWSRequest("POST", URL, data=BODY, headers={"X-Amz-Target": "RekognitionService.DetectFaces"})
    error = refused("MissingAuthenticationTokenException", request, keys)
    assert error.message == "Missing Authentication Token"


def test_wrong_secret(keys: KeyStore, key: AccessKey) -> None:
    wrong = key.secret_access_key[:-1] + ("A" if key.secret_access_key[-1] != "A" else "B")
    error = refused("InvalidSignatureException", sign(key.access_key_id, wrong), keys)
    assert error.message.startswith("The request signature we calculated does not match the signature you provided.")


def test_unknown_key(keys: KeyStore, key: AccessKey) -> None:
    error = refused("UnrecognizedClientException", sign("FPAKAAAAAAAAAAAAAAAA", key.secret_access_key), keys)
    assert error.message == "The security token included in the request is invalid."


def test_session_token_is_refused(keys: KeyStore, key: AccessKey) -> None:
    request = sign(key.access_key_id, key.secret_access_key, token="some-session-token")
    refused("UnrecognizedClientException", request, keys)


@pytest.mark.parametrize("minutes", [16, -16, 60 * 24])
def test_stale_or_future_date(keys: KeyStore, key: AccessKey, minutes: int) -> None:
    request = sign(key.access_key_id, key.secret_access_key)
    signed_at = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    error = refused("InvalidSignatureException", request, keys, now=signed_at + timedelta(minutes=minutes))
    expected = "Signature expired: " if minutes > 0 else "Signature not yet current: "
    assert error.message.startswith(expected + request.headers["X-Amz-Date"])
    assert check(request, keys, now=signed_at + timedelta(minutes=14 if minutes > 0 else -14)) == key


def test_tampered_body(keys: KeyStore, key: AccessKey) -> None:
    request = sign(key.access_key_id, key.secret_access_key)
    refused("InvalidSignatureException", request, keys, body=BODY.replace(b"a.jpg", b"b.jpg"))
    refused("InvalidSignatureException", request, keys, body=BODY + b" ")


def test_content_sha256_header_is_never_trusted_over_the_body(keys: KeyStore, key: AccessKey) -> None:
    import hashlib

    claimed = hashlib.sha256(BODY).hexdigest()
    request = sign(key.access_key_id, key.secret_access_key, headers={"X-Amz-Content-SHA256": claimed})
    assert check(request, keys) == key  # the claim matches the body
    error = refused("InvalidSignatureException", request, keys, body=b'{"Image": {}}')
    assert "x-amz-content-sha256" in error.message
    unsigned = sign(key.access_key_id, key.secret_access_key, headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    refused("InvalidSignatureException", unsigned, keys)


def test_tampered_headers(keys: KeyStore, key: AccessKey) -> None:
    request = sign(key.access_key_id, key.secret_access_key)
    refused("InvalidSignatureException", request, keys, x_amz_target="RekognitionService.DeleteCollection")
    refused("InvalidSignatureException", request, keys, content_type="application/json")
    refused("InvalidSignatureException", request, keys, host="other.example:8080")
    later = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y%m%dT%H%M%SZ")
    refused("InvalidSignatureException", request, keys, x_amz_date=later)


def test_scope_must_name_rekognition_and_the_request_date(keys: KeyStore, key: AccessKey) -> None:
    error = refused("InvalidSignatureException", sign(key.access_key_id, key.secret_access_key, service="s3"), keys)
    assert "rekognition" in error.message
    request = sign(key.access_key_id, key.secret_access_key)
    header = request.headers["Authorization"]
    day = request.headers["X-Amz-Date"][:8]
    error = refused("InvalidSignatureException", request, keys,
                    authorization=header.replace(f"/{day}/", "/20000101/"))
    assert "Date in Credential scope does not match" in error.message


@pytest.mark.parametrize("mangle", [
    lambda h: h.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
    lambda h: h.split(", Signature=")[0],
    lambda h: h.replace("SignedHeaders=", "Headers="),
    lambda h: h.replace("/aws4_request", ""),
    lambda h: "Bearer abc",
    lambda h: h.replace("SignedHeaders=content-type;host;", "SignedHeaders=content-type;"),
    lambda h: h.replace(";x-amz-target", ""),
])
def test_malformed_authorization_header(keys: KeyStore, key: AccessKey, mangle) -> None:
    request = sign(key.access_key_id, key.secret_access_key)
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-target," in request.headers["Authorization"]
    refused("IncompleteSignatureException", request, keys, authorization=mangle(request.headers["Authorization"]))


def test_missing_or_malformed_date(keys: KeyStore, key: AccessKey) -> None:
    request = sign(key.access_key_id, key.secret_access_key)
    error = refused("IncompleteSignatureException", request, keys, x_amz_date=None)
    assert "'X-Amz-Date' or a 'Date' header" in error.message
    refused("IncompleteSignatureException", request, keys, x_amz_date="yesterday")


def test_deleted_key(keys: KeyStore, key: AccessKey) -> None:
    request = sign(key.access_key_id, key.secret_access_key)
    assert check(request, keys) == key
    keys.delete(key.access_key_id)
    refused("UnrecognizedClientException", request, keys)
    with pytest.raises(ResourceNotFoundException):
        keys.delete(key.access_key_id)


def test_inactive_key(keys: KeyStore, key: AccessKey) -> None:
    data = json.loads(keys.path.read_text())
    data["AccessKeys"][0]["Status"] = "Inactive"  # as an operator may mark it by hand
    keys.path.write_text(json.dumps(data))
    refused("UnrecognizedClientException", sign(key.access_key_id, key.secret_access_key), keys)


def test_keys_from_another_store_instance_are_seen(tmp_path: Path) -> None:
    server, admin = KeyStore(tmp_path), KeyStore(tmp_path)
    assert server.list() == []
    first = admin.create("alice")
    request = sign(first.access_key_id, first.secret_access_key)
    assert check(request, server) == first
    second = admin.create("bob")
    assert server.get(second.access_key_id) == second
    admin.delete(first.access_key_id)
    refused("UnrecognizedClientException", request, server)
    assert [k.access_key_id for k in server.list()] == [second.access_key_id]


def test_a_damaged_keys_file_is_an_error_naming_it(keys: KeyStore, key: AccessKey) -> None:
    """Whatever the damage, reading the file raises FaceprintError with the file's path (the server
    logs it and answers a generic InternalServerError), never another exception without it."""
    record = json.loads(keys.path.read_text())["AccessKeys"][0]
    for damage in ({"Policy": ["all"]}, {"Policy": "all"}, {"Expiration": "0001-01-01T00:00:00+01:00"},
                   {"CreateDate": 7}, {"RateLimit": {"RequestsPerSecond": 0, "Burst": 1}}):
        keys.path.write_text(json.dumps({"Version": 1, "AccessKeys": [record | damage]}))
        with pytest.raises(FaceprintError) as caught:
            KeyStore(keys.folder.parent).get(key.access_key_id)
        assert str(keys.path) in caught.value.message, damage


def test_key_file_is_owner_only(keys: KeyStore, key: AccessKey, tmp_path: Path) -> None:
    os.chmod(keys.folder, 0o755)  # a loosened folder is tightened again by the next write
    keys.create("bob")
    assert stat.S_IMODE(keys.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in keys.folder.iterdir()) == ["keys.json", "keys.lock"]  # no temp files left
    records = json.loads(keys.path.read_text())["AccessKeys"]
    assert [r["UserName"] for r in records] == ["alice", "bob"]  # in the order they were created
    assert records[0]["SecretAccessKey"] == key.secret_access_key
    fresh = KeyStore(tmp_path / "new-home")  # `faceprint keys create` on a home that does not exist yet
    fresh.create("carol")
    assert stat.S_IMODE(fresh.folder.parent.stat().st_mode) == 0o700


def test_key_format_and_iam_shape(keys: KeyStore) -> None:
    key = keys.create("ci-bot", operations=["DetectFaces"], collections=["team-a-*"])
    assert len(key.access_key_id) == 20 and key.access_key_id.startswith("FPAK")
    assert key.access_key_id.isalnum() and key.access_key_id.isupper()
    assert len(key.secret_access_key) == 40
    assert keys.create("ci-bot").secret_access_key != key.secret_access_key
    body = key.to_iam_dict()
    assert list(body) == ["AccessKey"]
    assert set(body["AccessKey"]) == {"UserName", "AccessKeyId", "SecretAccessKey", "Status", "CreateDate"}
    assert body["AccessKey"]["Status"] == "Active"
    assert datetime.fromisoformat(body["AccessKey"]["CreateDate"]).tzinfo is not None
    assert key.secret_access_key not in repr(key)
    assert keys.get(key.access_key_id) == key  # the policy survives the round trip through the file


def test_create_validates_name_operations_and_collections(keys: KeyStore) -> None:
    for kwargs in ({"name": "has space"}, {"name": ""}, {"name": "x" * 65},
                   {"name": "ok", "operations": ["DetectFace"]}, {"name": "ok", "operations": []},
                   {"name": "ok", "collections": ["../etc"]}, {"name": "ok", "collections": [""]}):
        with pytest.raises(InvalidParameterException):
            keys.create(**kwargs)
    assert keys.list() == []


def test_policy() -> None:
    policy = Policy(frozenset({"DetectFaces", "SearchFacesByImage", "ListCollections"}), ("team-a-*", "shared"))
    assert policy.allows("DetectFaces", None)
    assert policy.allows("SearchFacesByImage", "team-a-1")
    assert policy.allows("SearchFacesByImage", "shared")
    assert not policy.allows("SearchFacesByImage", "team-b-1")
    assert not policy.allows("SearchFacesByImage", "TEAM-A-1")  # collection ids are case-sensitive
    assert not policy.allows("DeleteCollection", "team-a-1")
    assert not policy.allows("CompareFaces", None)
    assert Policy().allows("DeleteCollection", "anything")
    assert Policy(collections=("x",)).allows("DetectFaces", None)


def test_policy_denial(keys: KeyStore) -> None:
    key = keys.create("team-a", operations=["DetectFaces", "SearchFacesByImage"], collections=["team-a-*"])
    request = sign(key.access_key_id, key.secret_access_key, target="SearchFacesByImage")
    verified = check(request, keys)
    authorize(verified, "SearchFacesByImage", "team-a-photos")
    authorize(verified, "DetectFaces", None)
    for operation, collection in (("SearchFacesByImage", "team-b-photos"), ("DeleteCollection", "team-a-photos"),
                                  ("CompareFaces", None)):
        with pytest.raises(AuthError) as caught:
            authorize(verified, operation, collection)
        assert caught.value.code == "AccessDeniedException" and caught.value.status == 400
        assert f"rekognition:{operation}" in caught.value.message and key.access_key_id in caught.value.message


# --- expiry, rotation and rate limits --------------------------------------------------


def wire_headers(request: AWSRequest) -> dict[str, str]:
    """The request's headers as a server receives them (lower-case names, Host added)."""
    return {name.lower(): value for name, value in request.headers.items()} | {"host": urlsplit(request.url).netloc}


def test_expired_key_is_refused_before_the_body(keys: KeyStore) -> None:
    now = datetime.now(UTC)
    key = keys.create("temp", expiration=now + timedelta(minutes=5))
    request = sign(key.access_key_id, key.secret_access_key)
    assert check(request, keys) == key
    later = now + timedelta(minutes=6)  # inside the 15 minutes a signature's date may be off
    error = refused("ExpiredTokenException", request, keys, now=later)
    assert error.message == "The security token included in the request is expired"
    with pytest.raises(AuthError) as caught:  # from the headers alone: no body needed
        precheck(wire_headers(request), keys, now=later)
    assert caught.value.code == "ExpiredTokenException"
    assert precheck(wire_headers(request), keys, now=now) == key
    with pytest.raises(InvalidParameterException):  # a key that never works is a mistake
        keys.create("late", expiration=now - timedelta(seconds=1))


def test_keys_file_of_earlier_versions_still_loads(keys: KeyStore) -> None:
    keys.folder.mkdir(mode=0o700)
    record = {"UserName": "old", "AccessKeyId": "FPAKOLDOLDOLDOLDOLD2", "Status": "Active",
              "SecretAccessKey": "s" * 40, "CreateDate": "2026-01-02T03:04:05+00:00",
              "Policy": {"Operations": None, "Collections": ["team-a-*"]}}  # no Expiration, RateLimit, RotatedTo
    keys.path.write_text(json.dumps({"Version": 1, "AccessKeys": [record]}))
    key = keys.get("FPAKOLDOLDOLDOLDOLD2")
    assert key is not None and key.expiration is None and key.rate_limit is None and key.rotated_to is None
    assert check(sign(key.access_key_id, key.secret_access_key), keys) == key
    keys.update(key.access_key_id, rate_limit=RateLimit.of(3))  # written back with the new fields
    assert keys.get(key.access_key_id) == AccessKey(**{**vars(key), "rate_limit": RateLimit(3.0, 3)})
    listed = keys.list()[0].metadata()
    assert listed["Expiration"] is None and listed["RateLimit"] == {"RequestsPerSecond": 3.0, "Burst": 3}


def test_expiration_and_rate_limit_round_trip(keys: KeyStore) -> None:
    when = datetime(2099, 3, 1, tzinfo=UTC)
    key = keys.create("ci", expiration=when, rate_limit=RateLimit.of(5, 10))
    assert KeyStore(keys.folder.parent).get(key.access_key_id) == key
    body = key.to_iam_dict()["AccessKey"]  # IAM's shape, with the expiration the holder must know
    assert list(body) == ["UserName", "AccessKeyId", "Status", "SecretAccessKey", "CreateDate", "Expiration"]
    assert body["Expiration"] == "2099-03-01T00:00:00+00:00"
    meta = key.metadata()
    assert meta["RateLimit"] == {"RequestsPerSecond": 5.0, "Burst": 10} and "SecretAccessKey" not in meta


def test_rotation_keeps_both_keys_for_the_grace(keys: KeyStore) -> None:
    now = datetime.now(UTC)
    old = keys.create("ci", operations=["DetectFaces"], collections=["team-a-*"], rate_limit=RateLimit.of(5, 10))
    new = keys.rotate(old.access_key_id, grace=timedelta(minutes=5))
    assert (new.user_name, new.policy, new.rate_limit, new.status) == (old.user_name, old.policy, old.rate_limit,
                                                                        "Active")
    assert new.access_key_id != old.access_key_id and new.secret_access_key != old.secret_access_key
    assert new.expiration is None  # the old key had none
    rotated = keys.get(old.access_key_id)
    assert rotated.rotated_to == new.access_key_id
    assert timedelta(minutes=4) < rotated.expiration - now <= timedelta(minutes=5, seconds=1)
    old_request = sign(old.access_key_id, old.secret_access_key)
    new_request = sign(new.access_key_id, new.secret_access_key)
    assert check(old_request, keys) == rotated and check(new_request, keys) == new  # both, during the change
    after = now + timedelta(minutes=6)
    refused("ExpiredTokenException", old_request, keys, now=after)
    assert check(new_request, keys, now=after) == new

    with pytest.raises(InvalidParameterException, match="already rotated"):  # its successor is pending
        keys.rotate(old.access_key_id)
    newer = keys.rotate(new.access_key_id, grace=timedelta(0))  # no grace: the replaced key stops at once
    refused("ExpiredTokenException", new_request, keys)
    assert check(sign(newer.access_key_id, newer.secret_access_key), keys) == newer
    keys.delete(newer.access_key_id)  # a rotation abandoned: the key may be rotated again
    assert keys.rotate(new.access_key_id).user_name == "ci"
    with pytest.raises(ResourceNotFoundException):
        keys.rotate("FPAKAAAAAAAAAAAAAAAA")


def test_rotation_keeps_a_lifetime_and_never_extends_an_expiry(keys: KeyStore) -> None:
    now = datetime.now(UTC)
    old = keys.create("ci", expiration=now + timedelta(days=90))
    new = keys.rotate(old.access_key_id, grace=timedelta(days=365), now=now + timedelta(days=80))
    assert new.expiration - new.create_date == old.expiration - old.create_date  # a new 90 days
    assert keys.get(old.access_key_id).expiration == old.expiration  # not the year of grace
    chosen = keys.rotate(new.access_key_id, expiration=now + timedelta(days=7))
    assert chosen.expiration == now + timedelta(days=7)
    forever = keys.rotate(chosen.access_key_id, expiration=None)
    assert forever.expiration is None
    for bad in ({"grace": timedelta(seconds=-1)}, {"expiration": now - timedelta(days=1)}):
        with pytest.raises(InvalidParameterException):
            keys.rotate(forever.access_key_id, **bad)


def test_update_status_expiration_and_rate(keys: KeyStore, key: AccessKey) -> None:
    request = sign(key.access_key_id, key.secret_access_key)
    keys.update(key.access_key_id, status="Inactive")
    refused("UnrecognizedClientException", request, keys)
    keys.update(key.access_key_id, status="Active")
    assert check(request, keys).status == "Active"
    keys.update(key.access_key_id, expiration=datetime(2020, 1, 1, tzinfo=UTC))  # a past time expires it now
    refused("ExpiredTokenException", request, keys)
    keys.update(key.access_key_id, expiration=None)
    assert check(request, keys).expiration is None
    updated = keys.update(key.access_key_id, rate_limit=RateLimit.of(2, 4))
    assert keys.get(key.access_key_id) == updated and updated.rate_limit == RateLimit(2.0, 4)
    assert updated.secret_access_key == key.secret_access_key and updated.policy == key.policy
    assert keys.update(key.access_key_id, rate_limit=None).rate_limit is None
    with pytest.raises(InvalidParameterException):
        keys.update(key.access_key_id, status="Disabled")
    with pytest.raises(ResourceNotFoundException):
        keys.update("FPAKAAAAAAAAAAAAAAAA", status="Active")


def test_durations_and_times() -> None:
    assert parse_duration("90d") == timedelta(days=90)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("2w") == timedelta(weeks=2) and parse_duration("0s") == timedelta(0)
    assert parse_time("2027-03-01T00:00:00Z") == datetime(2027, 3, 1, tzinfo=UTC)
    assert parse_time("2027-03-01T02:00:00+02:00") == datetime(2027, 3, 1, tzinfo=UTC)
    assert parse_time("2027-03-01") == datetime(2027, 3, 1, tzinfo=UTC)  # UTC unless it says
    soon = expiration_from("1h", None) - datetime.now(UTC)
    assert timedelta(minutes=59) < soon <= timedelta(hours=1)
    assert expiration_from(None, None) is None
    for bad in ("90", "d", "-1d", "1.5h", "90 days", "", "999999999w"):
        with pytest.raises(InvalidParameterException):
            parse_duration(bad)
    for bad in ("next week", "2027-13-01", "", "9999-01-01"):
        with pytest.raises(InvalidParameterException):
            parse_time(bad)
    with pytest.raises(InvalidParameterException):
        expiration_from("1h", "2027-03-01")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_is_a_token_bucket_per_key() -> None:
    clock = FakeClock()
    limiter, limit = RateLimiter(clock), RateLimit.of(1, 2)
    assert [limiter.wait("A", limit) for _ in range(2)] == [0.0, 0.0]  # the burst
    assert limiter.wait("A", limit) == pytest.approx(1.0)
    assert limiter.wait("B", limit) == 0.0  # another key has its own bucket
    clock.now += 0.5
    assert limiter.wait("A", limit) == pytest.approx(0.5)  # a refused request takes nothing
    clock.now += 0.5
    assert limiter.wait("A", limit) == 0.0
    with pytest.raises(RateExceeded) as caught:
        limiter.check("A", limit)
    assert caught.value.code == "ThrottlingException" and caught.value.http_status == 500
    assert "Rate exceeded" in caught.value.message and "A" in caught.value.message
    clock.now += 3600  # a long pause fills the bucket to its burst, no more
    assert [limiter.wait("A", limit) for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]
    assert all(limiter.wait("A", None) == 0.0 for _ in range(100))  # no limit
    faster = RateLimit.of(100, 1)  # a changed limit applies to the next request
    clock.now += 0.01
    assert limiter.wait("A", faster) == 0.0 and limiter.wait("A", faster) == pytest.approx(0.01)


def test_rate_limiter_drops_full_buckets() -> None:
    clock = FakeClock()
    limiter, limit = RateLimiter(clock), RateLimit.of(10, 1)
    for i in range(5000):
        limiter.wait(f"K{i}", limit)
        clock.now += 0.001
    assert len(limiter) < 2100  # not one bucket per key ever seen
    clock.now += 1
    limiter.wait("fresh", limit)
    assert limiter.wait("fresh", limit) == pytest.approx(0.1)


def test_rate_limit_values() -> None:
    assert RateLimit.of(0.5) == RateLimit(0.5, 1) and RateLimit.of(2.5) == RateLimit(2.5, 3)
    assert RateLimit.changed(RateLimit(1.0, 5), 2.0, None) == RateLimit(2.0, 5)
    assert RateLimit.changed(RateLimit(1.0, 5), None, 7) == RateLimit(1.0, 7)
    assert RateLimit.changed(None, 4.0, None) == RateLimit(4.0, 4)
    for rate, burst in ((0, None), (-1, None), (float("nan"), None), (float("inf"), None), (True, None),
                        (1, 0), (1, 1.5), (1, 10**7)):
        with pytest.raises(InvalidParameterException):
            RateLimit.of(rate, burst)
    with pytest.raises(InvalidParameterException):
        RateLimit.changed(None, None, 3)


# --- over HTTP, with boto3's Rekognition client ---------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _AuthServer

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query = self.path.partition("?")
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        try:
            key = verify("POST", path, query, headers, body, self.server.keys)
            operation = headers.get("x-amz-target", "").rpartition(".")[2]
            authorize(key, operation, json.loads(body or b"{}").get("CollectionId"))
            self.server.seen.append((key.access_key_id, operation))
            status, payload = 200, {}
        except AuthError as exc:
            status, payload = exc.status, exc.to_dict()
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class _AuthServer(ThreadingHTTPServer):
    def __init__(self, keys: KeyStore) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.keys = keys
        self.seen: list[tuple[str, str]] = []


@pytest.fixture()
def endpoint(keys: KeyStore) -> Iterator[_AuthServer]:
    server = _AuthServer(keys)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


def rekognition(server: _AuthServer, key_id: str, secret: str) -> object:
    return boto3.session.Session().client(
        "rekognition", endpoint_url=f"http://127.0.0.1:{server.server_address[1]}", region_name="eu-central-1",
        aws_access_key_id=key_id, aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}))


def test_boto3_over_http(keys: KeyStore, endpoint: _AuthServer) -> None:
    key = keys.create("team-a", operations=["DetectFaces", "ListFaces"], collections=["team-a-*"])
    client = rekognition(endpoint, key.access_key_id, key.secret_access_key)
    client.detect_faces(Image={"Bytes": b"\xff\xd8 not really a jpeg"})
    client.list_faces(CollectionId="team-a-1")
    assert endpoint.seen == [(key.access_key_id, "DetectFaces"), (key.access_key_id, "ListFaces")]

    cases = [
        (lambda: client.list_faces(CollectionId="team-b-1"), "AccessDeniedException"),
        (lambda: client.delete_collection(CollectionId="team-a-1"), "AccessDeniedException"),
        (lambda: rekognition(endpoint, key.access_key_id, "x" * 40).detect_faces(Image={"Bytes": b"x"}),
         "InvalidSignatureException"),
        (lambda: rekognition(endpoint, "FPAKAAAAAAAAAAAAAAAA", "x" * 40).detect_faces(Image={"Bytes": b"x"}),
         "UnrecognizedClientException"),
    ]
    for call, code in cases:
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] == code
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    denied = client.exceptions.AccessDeniedException  # Rekognition models it: boto3 raises the modelled class
    with pytest.raises(denied):
        client.list_faces(CollectionId="other")
    assert len(endpoint.seen) == 2


# --- the CLI, as a real subprocess -----------------------------------------------------


def faceprint(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "faceprint.cli", *args], capture_output=True, timeout=120)


def test_keys_cli(tmp_path: Path) -> None:
    home = str(tmp_path)
    done = faceprint("keys", "create", "--name", "alice", "--home", home)
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)["AccessKey"]
    assert list(created) == ["UserName", "AccessKeyId", "Status", "SecretAccessKey", "CreateDate"]
    assert created["UserName"] == "alice" and created["Status"] == "Active"

    done = faceprint("--home", home, "keys", "create", "--name", "bob", "--operations", "DetectFaces,ListFaces",
                     "--collections", "team-a-*,shared")
    assert done.returncode == 0, done.stderr
    bob = json.loads(done.stdout)["AccessKey"]
    assert KeyStore(tmp_path).get(bob["AccessKeyId"]).policy == Policy(frozenset({"DetectFaces", "ListFaces"}),
                                                                       ("team-a-*", "shared"))

    done = faceprint("keys", "list", "--home", home)
    assert done.returncode == 0, done.stderr
    assert created["SecretAccessKey"].encode() not in done.stdout and b"SecretAccessKey" not in done.stdout
    listed = json.loads(done.stdout)["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in listed] == [created["AccessKeyId"], bob["AccessKeyId"]]
    assert listed[1]["Policy"] == {"Operations": ["DetectFaces", "ListFaces"], "Collections": ["team-a-*", "shared"]}

    done = faceprint("keys", "delete", created["AccessKeyId"], "--home", home)
    assert done.returncode == 0 and done.stdout == b"", done.stderr
    assert KeyStore(tmp_path).get(created["AccessKeyId"]) is None

    done = faceprint("keys", "delete", created["AccessKeyId"], "--home", home)
    assert done.returncode == 1 and json.loads(done.stderr)["__type"] == "ResourceNotFoundException"
    done = faceprint("keys", "create", "--name", "x", "--operations", "DetectFace", "--home", home)
    assert done.returncode == 1 and json.loads(done.stderr)["__type"] == "InvalidParameterException"
    assert b"Traceback" not in done.stderr
    done = faceprint("keys", "create", "--home", home)
    assert done.returncode == 2 and json.loads(done.stderr.splitlines()[0])["__type"] == "InvalidParameterException"


def test_concurrent_creates_lose_no_key(tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-m", "faceprint.cli", "keys", "create", "--name", f"user{i}",
                               "--home", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(4)]
    created = set()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        created.add(json.loads(out)["AccessKey"]["AccessKeyId"])
    assert {k.access_key_id for k in KeyStore(tmp_path).list()} == created and len(created) == 4


def test_keys_cli_expiry_rotation_and_rate(tmp_path: Path) -> None:
    home = str(tmp_path)
    done = faceprint("keys", "create", "--name", "ci", "--expires-in", "90d", "--rate", "5", "--burst", "10",
                     "--home", home)
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)["AccessKey"]
    assert list(created) == ["UserName", "AccessKeyId", "Status", "SecretAccessKey", "CreateDate", "Expiration"]
    lifetime = datetime.fromisoformat(created["Expiration"]) - datetime.fromisoformat(created["CreateDate"])
    assert lifetime == timedelta(days=90)

    done = faceprint("keys", "rotate", created["AccessKeyId"], "--grace", "1h", "--home", home)
    assert done.returncode == 0, done.stderr
    new = json.loads(done.stdout)["AccessKey"]
    assert new["UserName"] == "ci" and new["AccessKeyId"] != created["AccessKeyId"] and new["Status"] == "Active"
    listed = {k["AccessKeyId"]: k for k in json.loads(faceprint("keys", "list", "--home", home).stdout)
              ["AccessKeyMetadata"]}
    old = listed[created["AccessKeyId"]]
    assert old["RotatedTo"] == new["AccessKeyId"] and listed[new["AccessKeyId"]]["RotatedTo"] is None
    grace = datetime.fromisoformat(old["Expiration"]) - datetime.now(UTC)
    assert timedelta(minutes=55) < grace <= timedelta(hours=1)
    assert listed[new["AccessKeyId"]]["RateLimit"] == {"RequestsPerSecond": 5.0, "Burst": 10}
    done = faceprint("keys", "rotate", created["AccessKeyId"], "--home", home)  # its successor is pending
    assert done.returncode == 1 and json.loads(done.stderr)["__type"] == "InvalidParameterException"

    done = faceprint("keys", "update", new["AccessKeyId"], "--status", "Inactive", "--rate", "2", "--home", home)
    assert done.returncode == 0 and done.stdout == b"", done.stderr  # like `aws iam update-access-key`
    key = KeyStore(tmp_path).get(new["AccessKeyId"])
    assert key.status == "Inactive" and key.rate_limit == RateLimit(2.0, 10)
    done = faceprint("keys", "update", new["AccessKeyId"], "--no-rate", "--no-expiry", "--home", home)
    assert done.returncode == 0, done.stderr
    key = KeyStore(tmp_path).get(new["AccessKeyId"])
    assert key.rate_limit is None and key.expiration is None

    for args in (("create", "--name", "x", "--expires-in", "90x"), ("create", "--name", "x", "--rate", "0"),
                 ("create", "--name", "x", "--expires-at", "2020-01-01T00:00:00Z"),
                 ("create", "--name", "x", "--burst", "3"), ("update", new["AccessKeyId"]),
                 ("rotate", new["AccessKeyId"], "--grace", "soon")):
        done = faceprint("keys", *args, "--home", home)
        assert done.returncode == 1 and json.loads(done.stderr)["__type"] == "InvalidParameterException", args
    done = faceprint("keys", "create", "--name", "x", "--expires-in", "1d", "--expires-at", "2099-01-01",
                     "--home", home)
    assert done.returncode == 2 and b"Traceback" not in done.stderr
    assert [k.user_name for k in KeyStore(tmp_path).list()] == ["ci", "ci"]


def test_keys_cli_update_of_an_unknown_key_says_so(tmp_path: Path) -> None:
    """`keys update` of a key that does not exist is ResourceNotFoundException, whatever it changes
    (not "Nothing to update" for --rate or --burst)."""
    for change in (("--rate", "5"), ("--burst", "3"), ("--status", "Inactive")):
        done = faceprint("keys", "update", "FPAKAAAAAAAAAAAAAAAA", *change, "--home", str(tmp_path))
        assert done.returncode == 1 and json.loads(done.stderr)["__type"] == "ResourceNotFoundException", change
