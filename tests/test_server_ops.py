"""Running the server: docs/operations.md is current, --no-auth stays on loopback, shutdown
answers what is in flight and loses nothing, worker processes share one home and one set of
metrics, and S3Object images come from an S3-compatible endpoint."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import FACES, ROOT, lfw_image
from serverkit import REGION, Server, faceprint_keys, free_port, slow_request

GROUP = FACES / "identities" / "faceapi_bbt" / "group"


def test_operations_doc_is_current() -> None:
    from faceprint.server.dispatch import SERVED
    from faceprint.server.operations import render

    text = (ROOT / "docs" / "operations.md").read_text()
    assert text == render(), "regenerate: python -m faceprint.server.operations > docs/operations.md"
    served = re.findall(r"^\| (\w+) \| served \|", text, re.M)
    assert sorted(served) == sorted(SERVED) and len(SERVED) == 34
    assert len(re.findall(r"^\| \w+ \| not served \|", text, re.M)) == 41


def test_no_auth_is_refused_off_loopback(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "faceprint.cli", "--home", str(tmp_path), "serve", "--no-auth",
                           "--host", "0.0.0.0", "--port", str(free_port())], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "--no-auth is allowed only on a loopback host" in done.stderr


def in_flight(server: Server) -> float:
    text = server.get("/metrics")[2].decode()
    return float(re.search(r"^faceprint_requests_in_flight (\S+)$", text, re.M).group(1))


def test_shutdown_answers_requests_in_flight_and_keeps_their_faces(tmp_path: Path) -> None:
    server = Server(tmp_path, "--no-auth", "--threads", "1")
    server.client().create_collection(CollectionId="kept")
    images = sorted(GROUP.glob("*.jpg")) * 2
    answers: list[Any] = [None] * len(images)

    def index(i: int) -> None:
        try:
            answers[i] = server.client().index_faces(CollectionId="kept", Image={"Bytes": images[i].read_bytes()})
        except Exception as exc:  # recorded, asserted below
            answers[i] = exc

    threads = [threading.Thread(target=index, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    # Shut down once every request has reached the server (in flight or answered): one whose
    # connection had not yet been taken when the shutdown began may rightly be refused.
    while (in_flight(server) + sum(a is not None for a in answers) < len(images)
           and time.monotonic() < deadline):
        time.sleep(0.005)
    server.process.send_signal(signal.SIGTERM)
    pending = sum(a is None for a in answers)
    for t in threads:
        t.join()
    assert server.stop() in (0, -signal.SIGTERM)
    assert pending > 0, "every request finished before the shutdown began: nothing was tested"
    assert all(isinstance(a, dict) for a in answers), [a for a in answers if not isinstance(a, dict)]
    acknowledged = {r["Face"]["FaceId"] for a in answers for r in a["FaceRecords"]}
    assert len(acknowledged) >= len(images)
    again = Server(tmp_path, "--no-auth")
    try:
        stored = again.client().list_faces(CollectionId="kept", MaxResults=4096)["Faces"]
        assert {f["FaceId"] for f in stored} == acknowledged
    finally:
        again.stop()


def test_shutdown_does_not_wait_past_the_graceful_timeout(tmp_path: Path) -> None:
    """A client that never sends its body delays shutdown by --graceful-timeout at most."""
    server = Server(tmp_path, "--no-auth", "--graceful-timeout", "1")
    with slow_request(server):
        deadline = time.monotonic() + 10
        while in_flight(server) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        assert server.stop(timeout=15) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 10


def test_health_reports_models_that_failed_to_load(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "models"
    not_a_folder.write_text("")
    server = Server(tmp_path, "--no-auth", env={"FACEPRINT_MODELS_DIR": str(not_a_folder)}, ready=False)
    try:
        deadline = time.monotonic() + 30
        while (answer := server.get("/health"))[0] == 503 and b'"starting"' in answer[2] and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        status, _, body = answer
        health = json.loads(body)
        assert (status, health["status"]) == (503, "error") and "models" in health["error"], health
        assert str(tmp_path) not in health["error"]  # /health answers anyone: the detail is in the log only
        detect = {"x-amz-target": "RekognitionService.DetectFaces", "content-type": "application/x-amz-json-1.1"}
        image = base64.b64encode(lfw_image("Aaron_Peirsol", 1).read_bytes())
        status, answer = server.post(b'{"Image": {"Bytes": "%s"}}' % image, detect)
        assert (status, answer["Code"]) == (500, "InternalServerError") and str(tmp_path) not in answer["Message"]
    finally:
        assert server.stop() in (0, -signal.SIGTERM)


def test_a_damaged_key_file_is_a_generic_internal_error_logged_in_full(tmp_path: Path) -> None:
    """A server fault answers InternalServerError with a generic message; its detail (here the key
    file's path) is in the server log only."""
    key = faceprint_keys(tmp_path, "create", "--name", "admin")["AccessKey"]
    server = Server(tmp_path)
    try:
        rek = server.client(key["AccessKeyId"], key["SecretAccessKey"])
        assert rek.list_collections()["CollectionIds"] == []
        keys_file = tmp_path / "auth" / "keys.json"
        keys_file.write_text("{ damaged")
        with pytest.raises(ClientError) as exc:
            rek.list_collections()
        error = exc.value.response["Error"]
        assert (error["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("InternalServerError", 500)
        assert str(tmp_path) not in error["Message"] and "server log" in error["Message"]
    finally:
        server.stop()
    assert str(keys_file) in server.log.read_text()


def test_serve_region_and_the_homes_account_id_last_across_restarts(tmp_path: Path) -> None:
    server = Server(tmp_path, "--no-auth", "--region", "eu-west-3")
    try:
        arn = server.client().create_collection(CollectionId="kept")["CollectionArn"]
    finally:
        server.stop()
    account_file = tmp_path / "account-id"
    account = account_file.read_text().strip()
    assert arn == f"arn:aws:rekognition:eu-west-3:{account}:collection/kept"
    assert stat.S_IMODE(account_file.stat().st_mode) == 0o600
    server = Server(tmp_path, "--no-auth")  # the default region, the same account
    try:
        described = server.client().describe_collection(CollectionId="kept")
        assert described["CollectionARN"] == f"arn:aws:rekognition:us-east-1:{account}:collection/kept"
    finally:
        server.stop()
    done = subprocess.run([sys.executable, "-m", "faceprint.cli", "--home", str(tmp_path), "serve", "--no-auth",
                           "--region", "EU West", "--port", str(free_port())], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and json.loads(done.stderr)["Code"] == "InvalidParameterException"


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server with one bucket and one image in it."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    url = f"http://127.0.0.1:{port}"
    s3 = boto3.client("s3", endpoint_url=url, region_name=REGION, aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket="remote-photos")
    s3.put_object(Bucket="remote-photos", Key="a/peirsol.jpg", Body=lfw_image("Aaron_Peirsol", 1).read_bytes())
    yield url
    moto.stop()


def test_workers_share_home_metrics_and_s3_endpoint(tmp_path: Path, s3_endpoint: str) -> None:
    server = Server(tmp_path, "--no-auth", "--workers", "2", "--s3-endpoint-url", s3_endpoint,
                    env={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                         "AWS_DEFAULT_REGION": REGION})
    try:
        rek = server.client()
        rek.create_collection(CollectionId="shared")
        indexed = rek.index_faces(CollectionId="shared", ExternalImageId="from-s3",
                                  Image={"S3Object": {"Bucket": "remote-photos", "Name": "a/peirsol.jpg"}})
        assert len(indexed["FaceRecords"]) == 1
        with pytest.raises(rek.exceptions.InvalidS3ObjectException):
            rek.detect_faces(Image={"S3Object": {"Bucket": "remote-photos", "Name": "a/missing.jpg"}})
        probe = {"Bytes": lfw_image("Aaron_Peirsol", 2).read_bytes()}

        def search(_: int) -> list[str]:  # a client of its own: a connection of its own, either worker
            client = server.client()
            return [client.search_faces_by_image(CollectionId="shared", Image=probe)["FaceMatches"][0]["Face"]
                    ["ExternalImageId"] for _ in range(3)]

        with ThreadPoolExecutor(8) as pool:
            found = [name for names in pool.map(search, range(8)) for name in names]
        assert found == ["from-s3"] * 24
        pids = {e["pid"] for e in server.access_log()}
        assert len(pids) == 2, "one worker answered everything: the sharing was not exercised"
        for _ in range(4):  # whichever worker answers, it counts every worker's requests
            text = server.get("/metrics")[2].decode()
            count = re.search(r'^faceprint_requests_total\{operation="SearchFacesByImage",status="200"\} (\d+)$',
                              text, re.M)
            assert count and int(count.group(1)) == 24, text
            assert "faceprint_worker_processes 2" in text
    finally:
        assert server.stop() in (0, -signal.SIGTERM)


def test_s3_credentials_on_the_command_line(tmp_path: Path, s3_endpoint: str) -> None:
    no_chain = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_CONFIG_FILE": os.devnull}
    server = Server(tmp_path, "--no-auth", "--s3-endpoint-url", s3_endpoint, "--s3-access-key-id", "testing",
                    "--s3-secret-access-key", "sekrit-testing", env=no_chain)
    try:
        found = server.client().detect_faces(Image={"S3Object": {"Bucket": "remote-photos", "Name": "a/peirsol.jpg"}})
        assert len(found["FaceDetails"]) == 1
    finally:
        assert server.stop() in (0, -signal.SIGTERM)
    assert "sekrit" not in server.log.read_text()


def test_overload_answers_throttling(tmp_path: Path) -> None:
    """Past max_in_flight requests the server answers ThrottlingException (which SDKs retry)."""
    import uvicorn

    from faceprint.server.app import AppOptions, create_app
    from faceprint.service import Faceprint

    app = create_app(Faceprint(tmp_path, profile="fast"), options=AppOptions(max_in_flight=0, warm=False))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        import boto3
        from botocore.config import Config

        rek = boto3.client("rekognition", endpoint_url=f"http://127.0.0.1:{port}", region_name=REGION,
                           aws_access_key_id="k", aws_secret_access_key="s", config=Config(retries={"max_attempts": 1}))
        with pytest.raises(rek.exceptions.ThrottlingException) as exc:
            rek.list_collections()
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    finally:
        server.should_exit = True
        thread.join(30)


def test_worker_socket_answers_without_nagle_delay() -> None:
    """Connections accepted on the workers' socket have TCP_NODELAY (else +40 ms an answer)."""
    import asyncio
    import socket

    from faceprint.server.run import listening_socket

    async def accepted_nodelay() -> int:
        sock = listening_socket("127.0.0.1", 0)
        flags: list[int] = []

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            flags.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(connected, sock=sock)
        _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
        while not flags:
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        return flags[0]

    assert asyncio.run(accepted_nodelay()) != 0
