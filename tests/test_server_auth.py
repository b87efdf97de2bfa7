"""`faceprint serve` with authentication (the default): keys made by `faceprint keys`, requests
signed by boto3 and the AWS CLI, and each way a request is refused, end to end."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore import UNSIGNED
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import FACES, ROOT, lfw_image
from serverkit import REGION, Server, aws_cli, read_answer, slow_request

GROUP = FACES / "identities" / "faceapi_bbt" / "group" / "bbt1.jpg"


def keys(home: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "faceprint.cli", "keys", *args, "--home", str(home)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout) if done.stdout.strip() else {}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("auth-home")


@pytest.fixture(scope="module")
def admin(home: Path) -> dict[str, str]:
    return keys(home, "create", "--name", "admin")["AccessKey"]


@pytest.fixture(scope="module")
def team_a(home: Path) -> dict[str, str]:
    return keys(home, "create", "--name", "team-a", "--operations", "SearchFacesByImage,ListCollections,ListFaces",
                "--collections", "team-a-*")["AccessKey"]


@pytest.fixture(scope="module")
def server(home: Path, admin: dict[str, str], team_a: dict[str, str]):
    srv = Server(home)
    yield srv
    assert srv.stop() in (0, -signal.SIGTERM)


def client(server: Server, key: dict[str, str], **config: Any) -> Any:
    return server.client(key["AccessKeyId"], key["SecretAccessKey"], **config)


def code_of(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as exc:
        call(*args, **kwargs)
    return exc.value.response["Error"]["Code"]


def signed(server: Server, key: dict[str, str], target: str, body: bytes,
           when: dt.datetime | None = None) -> tuple[bytes, dict[str, str]]:
    """A request signed by botocore's SigV4 signer (at ``when``, default now)."""
    request = AWSRequest("POST", server.url + "/", data=body,
                         headers={"X-Amz-Target": f"RekognitionService.{target}",
                                  "Content-Type": "application/x-amz-json-1.1"})
    signer = _SignerAt(Credentials(key["AccessKeyId"], key["SecretAccessKey"]), "rekognition", REGION, when)
    signer.add_auth(request)
    return body, dict(request.headers.items())


class _SignerAt(SigV4Auth):
    def __init__(self, credentials: Credentials, service: str, region: str, when: dt.datetime | None) -> None:
        super().__init__(credentials, service, region)
        self.when = when

    def add_auth(self, request: AWSRequest) -> None:
        if self.when is None:
            return super().add_auth(request)
        request.context["timestamp"] = self.when.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        signature = self.signature(self.string_to_sign(request, self.canonical_request(request)), request)
        self._inject_signature_to_request(request, signature)
        return None


def test_signed_requests_work_and_are_logged_with_their_key(server: Server, admin: dict[str, str]) -> None:
    rek = client(server, admin)
    rek.create_collection(CollectionId="team-a-1")
    rek.create_collection(CollectionId="team-b-1")
    face = rek.index_faces(CollectionId="team-a-1", Image={"Bytes": lfw_image("Aaron_Peirsol", 1).read_bytes()})
    assert len(face["FaceRecords"]) == 1
    request_id = face["ResponseMetadata"]["RequestId"]
    entry = next(e for e in server.access_log() if e["requestId"] == request_id)
    assert entry["keyId"] == admin["AccessKeyId"] and entry["collectionId"] == "team-a-1"


def test_refusals(server: Server, admin: dict[str, str]) -> None:
    unsigned = server.client(signature_version=UNSIGNED)
    assert code_of(unsigned.list_collections) == "MissingAuthenticationTokenException"
    status, body = server.post(b"{}", {"x-amz-target": "RekognitionService.ListCollections",
                                       "content-type": "application/x-amz-json-1.1"})
    assert status >= 400 and body["__type"] == "MissingAuthenticationTokenException"
    wrong_secret = dict(admin, SecretAccessKey="x" * 40)
    assert code_of(client(server, wrong_secret).list_collections) == "InvalidSignatureException"
    unknown = {"AccessKeyId": "FPAKAAAAAAAAAAAAAAAA", "SecretAccessKey": admin["SecretAccessKey"]}
    assert code_of(client(server, unknown).list_collections) == "UnrecognizedClientException"

    stale = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    status, body = server.post(*signed(server, admin, "ListCollections", b"{}", when=stale))
    assert body["__type"] == "InvalidSignatureException" and "expired" in body.get("Message", body.get("message"))
    fresh = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)  # inside the 15 minutes allowed
    status, body = server.post(*signed(server, admin, "ListCollections", b"{}", when=fresh))
    assert status == 200 and "team-a-1" in body["CollectionIds"]

    body, headers = signed(server, admin, "DescribeCollection", b'{"CollectionId": "team-a-1"}')
    status, answer = server.post(body, headers)
    assert status == 200 and answer["FaceCount"] == 1
    tampered = body.replace(b"team-a-1", b"team-b-1")
    status, answer = server.post(tampered, headers)
    assert answer["__type"] == "InvalidSignatureException"
    other_op = dict(headers, **{"X-Amz-Target": "RekognitionService.DeleteCollection"})
    status, answer = server.post(body, other_op)
    assert answer["__type"] == "InvalidSignatureException"
    assert client(server, admin).describe_collection(CollectionId="team-b-1")["FaceCount"] == 0


def test_policy(server: Server, admin: dict[str, str], team_a: dict[str, str]) -> None:
    rek = client(server, team_a)
    probe = {"Bytes": lfw_image("Aaron_Peirsol", 2).read_bytes()}
    hits = rek.search_faces_by_image(CollectionId="team-a-1", Image=probe)
    assert len(hits["FaceMatches"]) == 1
    assert code_of(rek.search_faces_by_image, CollectionId="team-b-1", Image=probe) == "AccessDeniedException"
    with pytest.raises(rek.exceptions.AccessDeniedException) as exc:
        rek.delete_collection(CollectionId="team-a-1")
    assert "DeleteCollection" in str(exc.value)
    assert code_of(rek.detect_faces, Image=probe) == "AccessDeniedException"
    assert rek.list_collections()["CollectionIds"] == ["team-a-1"]  # only what the key may see
    assert set(client(server, admin).list_collections()["CollectionIds"]) >= {"team-a-1", "team-b-1"}


def test_list_collections_pages_over_visible_collections_only(server: Server, admin: dict[str, str],
                                                              team_a: dict[str, str]) -> None:
    """A restricted key pages over its own collections: no empty pages, no hidden id in a NextToken."""
    hidden = ["aaa-hidden", "team-a", "team-a.hidden", "zzz-hidden"]
    for cid in [*hidden, "team-a-2"]:
        client(server, admin).create_collection(CollectionId=cid)
    visible = sorted(c for c in client(server, admin).list_collections()["CollectionIds"] if c.startswith("team-a-"))
    rek = client(server, team_a)
    pages, tokens, token = [], [], None
    while True:
        page = rek.list_collections(MaxResults=1, **({"NextToken": token} if token else {}))
        pages.append(page["CollectionIds"])
        token = page.get("NextToken")
        if token is None:
            break
        tokens.append(json.loads(base64.urlsafe_b64decode(token)))
    assert pages == [[c] for c in visible] and len(visible) >= 2
    assert tokens == visible[:-1]
    assert rek.list_collections(MaxResults=4096)["CollectionIds"] == visible
    for cid in hidden:
        client(server, admin).delete_collection(CollectionId=cid)


def test_slow_unsigned_requests_do_not_throttle_signed_ones(server: Server, admin: dict[str, str]) -> None:
    """Requests without a usable key are refused from their headers, without waiting for a body
    or taking the room of a request that may run."""
    socks = [slow_request(server) for _ in range(70)]
    socks += [slow_request(server, headers={"Authorization": "AWS4-HMAC-SHA256 Credential=FPAKAAAAAAAAAAAAAAAA/"
                                                             "20260101/us-east-1/rekognition/aws4_request, "
                                                             "SignedHeaders=host, Signature=00",
                                            "X-Amz-Date": dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")})]
    try:
        assert client(server, admin).list_collections()["ResponseMetadata"]["HTTPStatusCode"] == 200
        for sock in (socks[0], socks[-1]):
            sock.sendall(b"{" * 1000)  # the announced body: the answer was ready before it
            status, body = read_answer(sock)
            assert status == 400
        assert body["__type"] == "UnrecognizedClientException"
    finally:
        for sock in socks:
            sock.close()


def test_bad_signatures_do_not_queue_behind_inference(server: Server, admin: dict[str, str]) -> None:
    """An image request with a wrong secret is refused while signed image requests still queue."""
    done: list[int] = []
    picture = {"Bytes": GROUP.read_bytes()}
    clients = [client(server, admin) for _ in range(16)]

    def detect(rek: Any) -> None:
        rek.detect_faces(Image=picture)
        done.append(1)

    threads = [threading.Thread(target=detect, args=(rek,)) for rek in clients]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while in_flight(server) + len(done) < 16 and time.monotonic() < deadline:  # all sent
        time.sleep(0.005)
    wrong = client(server, dict(admin, SecretAccessKey="x" * 40))
    assert code_of(wrong.detect_faces, Image=picture) == "InvalidSignatureException"
    finished_before = len(done)
    for t in threads:
        t.join()
    assert finished_before <= 8 and len(done) == 16  # not behind the 14 image requests queued


def in_flight(server: Server) -> float:
    text = server.get("/metrics")[2].decode()
    return float(re.search(r"^faceprint_requests_in_flight (\S+)$", text, re.M).group(1))


def test_keys_made_and_deleted_while_running(server: Server, home: Path) -> None:
    late = keys(home, "create", "--name", "late")["AccessKey"]
    rek = client(server, late)
    assert "team-a-1" in rek.list_collections()["CollectionIds"]
    keys(home, "delete", late["AccessKeyId"])
    assert code_of(rek.list_collections) == "UnrecognizedClientException"


def test_aws_cli_signs_with_a_faceprint_key(server: Server, admin: dict[str, str]) -> None:
    done = aws_cli(server, "list-collections", key_id=admin["AccessKeyId"], secret=admin["SecretAccessKey"])
    assert done.returncode == 0, done.stderr
    assert "team-a-1" in json.loads(done.stdout)["CollectionIds"]
    done = aws_cli(server, "list-collections", key_id=admin["AccessKeyId"], secret="wrong" * 8)
    assert done.returncode != 0 and "InvalidSignatureException" in done.stderr


def test_expired_key_is_refused(server: Server, home: Path) -> None:
    key = keys(home, "create", "--name", "contractor", "--expires-in", "1h")["AccessKey"]
    assert key["Expiration"]
    rek = client(server, key)
    assert rek.list_collections()["ResponseMetadata"]["HTTPStatusCode"] == 200
    keys(home, "update", key["AccessKeyId"], "--expires-at", "2020-01-01T00:00:00Z")  # its time is up
    with pytest.raises(ClientError) as caught:
        rek.list_collections()
    error = caught.value.response
    assert error["Error"]["Code"] == "ExpiredTokenException"
    assert error["Error"]["Message"] == "The security token included in the request is expired"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert code_of(rek.detect_faces, Image={"Bytes": GROUP.read_bytes()}) == "ExpiredTokenException"
    keys(home, "update", key["AccessKeyId"], "--no-expiry")
    assert rek.list_collections()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_rotated_keys_both_work_during_the_grace(server: Server, home: Path) -> None:
    old = keys(home, "create", "--name", "rotating", "--operations", "ListCollections")["AccessKey"]
    new = keys(home, "rotate", old["AccessKeyId"], "--grace", "1h")["AccessKey"]
    assert list(new) == ["UserName", "AccessKeyId", "Status", "SecretAccessKey", "CreateDate"]  # IAM's shape
    assert new["UserName"] == "rotating" and new["AccessKeyId"] != old["AccessKeyId"]
    old_client, new_client = client(server, old), client(server, new)
    for rek in (old_client, new_client):  # both, while clients change over
        assert rek.list_collections()["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert code_of(new_client.delete_collection, CollectionId="any") == "AccessDeniedException"  # same policy
    keys(home, "update", old["AccessKeyId"], "--expires-at", "2020-01-01T00:00:00Z")  # the grace is over
    assert code_of(old_client.list_collections) == "ExpiredTokenException"
    assert new_client.list_collections()["ResponseMetadata"]["HTTPStatusCode"] == 200
    newer = keys(home, "rotate", new["AccessKeyId"], "--grace", "0s")["AccessKey"]  # no grace at all
    assert code_of(new_client.list_collections) == "ExpiredTokenException"
    assert client(server, newer).list_collections()["ResponseMetadata"]["HTTPStatusCode"] == 200


def no_retries(server: Server, key: dict[str, str]) -> Any:
    """A client that sends each call once (botocore's ``max_attempts`` 1 still retries once)."""
    import boto3
    from botocore.config import Config

    return boto3.client("rekognition", endpoint_url=server.url, region_name=REGION,
                        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                        config=Config(retries={"total_max_attempts": 1}))


def test_rate_limited_key_is_throttled_alone(server: Server, home: Path, admin: dict[str, str]) -> None:
    limited = keys(home, "create", "--name", "limited", "--rate", "1", "--burst", "2")["AccessKey"]
    forged = client(server, dict(limited, SecretAccessKey="x" * 40))
    for _ in range(5):  # knowing the key id spends none of its budget
        assert code_of(forged.list_collections) == "InvalidSignatureException"
    rek = no_retries(server, limited)  # boto3 would retry ThrottlingException with backoff
    outcomes: list[str] = []
    for _ in range(10):
        try:
            rek.list_collections()
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 500  # the model: a fault
            assert "Rate exceeded" in exc.response["Error"]["Message"]
    assert outcomes[:2] == ["ok", "ok"] and "ThrottlingException" in outcomes, outcomes
    assert set(outcomes) == {"ok", "ThrottlingException"}
    throttled = [e for e in server.access_log() if e["error"] == "ThrottlingException"]
    assert throttled and all(e["keyId"] == limited["AccessKeyId"] for e in throttled)  # the log names the key
    other = client(server, admin)
    assert all(other.list_collections()["ResponseMetadata"]["HTTPStatusCode"] == 200 for _ in range(5))
    image = [code_of(rek.detect_faces, Image={"Bytes": b"not an image"}) for _ in range(4)]
    assert "ThrottlingException" in image  # an image operation is throttled before it queues for inference
    keys(home, "update", limited["AccessKeyId"], "--no-rate")
    assert all(rek.list_collections()["ResponseMetadata"]["HTTPStatusCode"] == 200 for _ in range(5))
