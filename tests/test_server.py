"""`faceprint serve` driven by boto3 and the AWS CLI: every served operation, real images,
answers checked against botocore's model, and the errors a Rekognition client expects.

One server for the module (fast profile, no auth on loopback, a local S3 bucket).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import DATA, FACES, ROOT, lfw_image
from contract import output_shape, validate
from serverkit import RawBodies, Server, aws_cli

GROUP = FACES / "identities" / "faceapi_bbt" / "group" / "bbt1.jpg"
TEXT = DATA / "text" / "icdar2015-train" / "images" / "img_8.jpg"
TARGET = {"x-amz-target": "RekognitionService.DescribeCollection", "content-type": "application/x-amz-json-1.1"}


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bucket")
    (folder / "people").mkdir()
    shutil.copy(lfw_image("Aaron_Peirsol", 3), folder / "people" / "peirsol-3.jpg")
    shutil.copy(GROUP, folder / "group.jpg")
    _noise_png(folder / "big.png")
    return folder


def _noise_png(path: Path) -> None:
    """A real PNG over 5 MB (noise does not compress): too big for Bytes, fine from S3."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(7).integers(0, 256, (1400, 1400, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG", compress_level=1)
    assert path.stat().st_size > 5 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, bucket: Path):
    home = tmp_path_factory.mktemp("serve-home")
    srv = Server(home, "--no-auth", "--bucket", f"photos={bucket}")
    yield srv
    assert srv.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down


@pytest.fixture(scope="module")
def rek(server: Server):
    return server.client()


@pytest.fixture(scope="module")
def enrolled(rek) -> str:
    """A collection with three faces of Aaron Peirsol."""
    rek.create_collection(CollectionId="enrolled")
    for n in (1, 2, 4):
        rek.index_faces(CollectionId="enrolled", Image=image(lfw_image("Aaron_Peirsol", n)),
                        ExternalImageId=f"peirsol-{n}")
    return "enrolled"


@pytest.fixture(scope="module")
def blank_png() -> bytes:
    """A real PNG with no face in it."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (200, 160), (120, 130, 140)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def loose(server: Server):
    """A client that skips botocore's own parameter checks, so the server's are tested."""
    return server.client(parameter_validation=False)


def image(path: Path) -> dict[str, bytes]:
    return {"Bytes": path.read_bytes()}


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return code_of_error(exc.value)


def code_of_error(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def test_detect_faces_matches_the_python_api(server: Server, rek, fast) -> None:
    raw = RawBodies(rek)
    answer = rek.detect_faces(Image=image(GROUP), Attributes=["DEFAULT"])
    validate(raw.last["DetectFaces"], output_shape("DetectFaces"))
    assert raw.last["DetectFaces"] == fast.detect_faces(GROUP.read_bytes()).to_dict()
    assert len(answer["FaceDetails"]) >= 3
    assert answer["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/x-amz-json-1.1"
    from_s3 = rek.detect_faces(Image={"S3Object": {"Bucket": "photos", "Name": "group.jpg"}})
    assert from_s3["FaceDetails"] == answer["FaceDetails"]


def test_compare_faces_and_detect_text(server: Server, rek) -> None:
    raw = RawBodies(rek)
    same = rek.compare_faces(SourceImage=image(lfw_image("Aaron_Peirsol", 1)),
                             TargetImage={"S3Object": {"Bucket": "photos", "Name": "people/peirsol-3.jpg"}},
                             SimilarityThreshold=70, QualityFilter="NONE")
    validate(raw.last["CompareFaces"], output_shape("CompareFaces"))
    assert len(same["FaceMatches"]) == 1 and same["FaceMatches"][0]["Similarity"] > 90
    other = rek.compare_faces(SourceImage=image(lfw_image("Aaron_Peirsol", 1)),
                              TargetImage=image(lfw_image("Aaron_Sorkin", 1)))
    assert other["FaceMatches"] == [] and len(other["UnmatchedFaces"]) == 1
    text = rek.detect_text(Image=image(TEXT), Filters={"WordFilter": {"MinConfidence": 50}})
    validate(raw.last["DetectText"], output_shape("DetectText"))
    assert {d["Type"] for d in text["TextDetections"]} == {"LINE", "WORD"}


def test_collections_faces_and_search(server: Server, rek) -> None:
    raw = RawBodies(rek)
    created = rek.create_collection(CollectionId="swimmers")
    validate(raw.last["CreateCollection"], output_shape("CreateCollection"))
    assert created["CollectionArn"].endswith("collection/swimmers")
    with pytest.raises(rek.exceptions.ResourceAlreadyExistsException):
        rek.create_collection(CollectionId="swimmers")
    ids = []
    for n in (1, 2):
        indexed = rek.index_faces(CollectionId="swimmers", Image=image(lfw_image("Aaron_Peirsol", n)),
                                  ExternalImageId=f"peirsol-{n}", MaxFaces=1, QualityFilter="AUTO",
                                  DetectionAttributes=["DEFAULT"])
        validate(raw.last["IndexFaces"], output_shape("IndexFaces"))
        ids.append(indexed["FaceRecords"][0]["Face"]["FaceId"])
    s3 = rek.index_faces(CollectionId="swimmers", ExternalImageId="peirsol-3",
                         Image={"S3Object": {"Bucket": "photos", "Name": "people/peirsol-3.jpg"}})
    ids.append(s3["FaceRecords"][0]["Face"]["FaceId"])
    other = rek.index_faces(CollectionId="swimmers", Image=image(lfw_image("Aaron_Sorkin", 1)))
    sorkin = other["FaceRecords"][0]["Face"]["FaceId"]

    described = rek.describe_collection(CollectionId="swimmers")
    validate(raw.last["DescribeCollection"], output_shape("DescribeCollection"))
    assert described["FaceCount"] == 4 and described["CreationTimestamp"].year >= 2024
    page = rek.list_faces(CollectionId="swimmers", MaxResults=3)
    validate(raw.last["ListFaces"], output_shape("ListFaces"))
    rest = rek.list_faces(CollectionId="swimmers", MaxResults=3, NextToken=page["NextToken"])
    assert [f["FaceId"] for f in page["Faces"] + rest["Faces"]] == [*ids, sorkin]

    hits = rek.search_faces(CollectionId="swimmers", FaceId=ids[0], FaceMatchThreshold=80, MaxFaces=5)
    validate(raw.last["SearchFaces"], output_shape("SearchFaces"))
    assert {m["Face"]["FaceId"] for m in hits["FaceMatches"]} == set(ids[1:])
    by_image = rek.search_faces_by_image(CollectionId="swimmers", Image=image(lfw_image("Aaron_Peirsol", 4)),
                                         FaceMatchThreshold=80, MaxFaces=5, QualityFilter="NONE")
    validate(raw.last["SearchFacesByImage"], output_shape("SearchFacesByImage"))
    assert {m["Face"]["ExternalImageId"] for m in by_image["FaceMatches"]} == {"peirsol-1", "peirsol-2", "peirsol-3"}

    deleted = rek.delete_faces(CollectionId="swimmers", FaceIds=[sorkin, "00000000-0000-0000-0000-000000000000"])
    validate(raw.last["DeleteFaces"], output_shape("DeleteFaces"))
    assert deleted["DeletedFaces"] == [sorkin]
    assert deleted["UnsuccessfulFaceDeletions"][0]["Reasons"] == ["FACE_NOT_FOUND"]

    listed = rek.list_collections(MaxResults=10)
    validate(raw.last["ListCollections"], output_shape("ListCollections"))
    assert "swimmers" in listed["CollectionIds"]
    rek.create_collection(CollectionId="scratch")
    assert rek.delete_collection(CollectionId="scratch")["StatusCode"] == 200
    validate(raw.last["DeleteCollection"], output_shape("DeleteCollection"))
    with pytest.raises(rek.exceptions.ResourceNotFoundException):
        rek.describe_collection(CollectionId="scratch")


def test_users(server: Server, rek) -> None:
    raw = RawBodies(rek)
    rek.create_collection(CollectionId="cast")
    faces = {n: rek.index_faces(CollectionId="cast", Image=image(lfw_image("Aaron_Peirsol", n)), MaxFaces=1)
             ["FaceRecords"][0]["Face"]["FaceId"] for n in (1, 2, 3)}
    sorkin = rek.index_faces(CollectionId="cast", Image=image(lfw_image("Aaron_Sorkin", 1)))
    sorkin_id = sorkin["FaceRecords"][0]["Face"]["FaceId"]
    rek.create_user(CollectionId="cast", UserId="peirsol", ClientRequestToken="create-peirsol")
    validate(raw.last["CreateUser"], output_shape("CreateUser"))
    rek.create_user(CollectionId="cast", UserId="peirsol", ClientRequestToken="create-peirsol")  # replayed
    with pytest.raises(rek.exceptions.ConflictException):
        rek.create_user(CollectionId="cast", UserId="peirsol")
    rek.create_user(CollectionId="cast", UserId="sorkin")
    users = rek.list_users(CollectionId="cast", MaxResults=1)
    validate(raw.last["ListUsers"], output_shape("ListUsers"))
    more = rek.list_users(CollectionId="cast", NextToken=users["NextToken"])
    assert [u["UserId"] for u in users["Users"] + more["Users"]] == ["peirsol", "sorkin"]

    assoc = rek.associate_faces(CollectionId="cast", UserId="peirsol", FaceIds=list(faces.values()),
                                UserMatchThreshold=70)
    validate(raw.last["AssociateFaces"], output_shape("AssociateFaces"))
    assert len(assoc["AssociatedFaces"]) == 3 and assoc["UserStatus"] == "ACTIVE"
    rek.associate_faces(CollectionId="cast", UserId="sorkin", FaceIds=[sorkin_id])
    found = rek.search_users(CollectionId="cast", FaceId=faces[1], UserMatchThreshold=70, MaxUsers=5)
    validate(raw.last["SearchUsers"], output_shape("SearchUsers"))
    assert found["UserMatches"][0]["User"]["UserId"] == "peirsol"
    by_image = rek.search_users_by_image(CollectionId="cast", Image=image(lfw_image("Aaron_Peirsol", 4)),
                                         UserMatchThreshold=70, MaxUsers=5, QualityFilter="NONE")
    validate(raw.last["SearchUsersByImage"], output_shape("SearchUsersByImage"))
    assert [m["User"]["UserId"] for m in by_image["UserMatches"]] == ["peirsol"]

    gone = rek.disassociate_faces(CollectionId="cast", UserId="peirsol", FaceIds=[faces[3]])
    validate(raw.last["DisassociateFaces"], output_shape("DisassociateFaces"))
    assert gone["DisassociatedFaces"] == [{"FaceId": faces[3]}]
    kept = rek.delete_faces(CollectionId="cast", FaceIds=[faces[1]])
    assert kept["UnsuccessfulFaceDeletions"][0]["Reasons"] == ["ASSOCIATED_TO_AN_EXISTING_USER"]
    rek.delete_user(CollectionId="cast", UserId="sorkin")
    validate(raw.last["DeleteUser"], output_shape("DeleteUser"))
    with pytest.raises(rek.exceptions.ResourceNotFoundException):
        rek.delete_user(CollectionId="cast", UserId="sorkin")
    assert rek.describe_collection(CollectionId="cast")["UserCount"] == 1


def test_modelled_errors(server: Server, rek, loose, blank_png: bytes) -> None:
    with pytest.raises(rek.exceptions.ResourceNotFoundException):
        rek.index_faces(CollectionId="nowhere", Image=image(GROUP))
    with pytest.raises(rek.exceptions.InvalidImageFormatException):
        rek.detect_faces(Image={"Bytes": b"GIF89a not what Rekognition reads"})
    with pytest.raises(rek.exceptions.InvalidParameterException) as exc:  # no face in the source
        rek.compare_faces(SourceImage={"Bytes": blank_png}, TargetImage=image(GROUP))
    assert "no face" in str(exc.value)
    with pytest.raises(rek.exceptions.InvalidParameterException) as exc:
        loose.detect_faces(Image={"Bytes": GROUP.read_bytes(), "S3Object": {"Bucket": "photos", "Name": "x.jpg"}})
    assert "exactly one of Bytes and S3Object" in str(exc.value)
    with pytest.raises(rek.exceptions.InvalidPaginationTokenException):
        rek.list_collections(NextToken="not-a-token")
    with pytest.raises(rek.exceptions.InvalidParameterException) as exc:
        rek.create_collection(CollectionId="tagged", Tags={"team": "a"})
    assert "Tags" in str(exc.value)


def test_s3_images_may_be_larger_than_bytes(server: Server, rek, bucket: Path) -> None:
    answer = rek.detect_faces(Image={"S3Object": {"Bucket": "photos", "Name": "big.png"}})
    assert answer["FaceDetails"] == []
    with pytest.raises(rek.exceptions.ImageTooLargeException):
        rek.detect_faces(Image={"Bytes": (bucket / "big.png").read_bytes()})


def test_s3_object_errors(server: Server, rek) -> None:
    for s3_object in ({"Bucket": "photos", "Name": "missing.jpg"}, {"Bucket": "elsewhere", "Name": "group.jpg"},
                      {"Bucket": "photos", "Name": "../bucket/group.jpg"}, {"Bucket": "photos", "Name": "people"},
                      {"Bucket": "photos", "Name": "group.jpg", "Version": "v2"}):
        with pytest.raises(rek.exceptions.InvalidS3ObjectException):
            rek.detect_faces(Image={"S3Object": s3_object})


def test_a_fifo_in_a_bucket_is_no_object(server: Server, rek, bucket: Path) -> None:
    """Opening a named pipe would wait for a writer: it is refused without being opened for reading."""
    fifo = bucket / "pipe.jpg"
    os.mkfifo(fifo)
    answer: list[Any] = []

    def detect() -> None:
        try:
            rek.detect_faces(Image={"S3Object": {"Bucket": "photos", "Name": "pipe.jpg"}})
        except ClientError as exc:
            answer.append(code_of_error(exc))

    thread = threading.Thread(target=detect)
    thread.start()
    thread.join(20)
    try:
        assert answer == ["InvalidS3ObjectException"]
    finally:
        with contextlib.suppress(OSError):  # release a reader stuck in open(), if any
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join()
        fifo.unlink()


def test_a_malformed_s3_object_is_a_validation_error(server: Server, loose) -> None:
    """The model's S3Bucket and S3ObjectName constraints answer first, as AWS's framework does."""
    for s3_object in ({"Bucket": "ab", "Name": "x.jpg"}, {"Bucket": "photos", "Name": ""},
                      {"Bucket": "no spaces", "Name": "x.jpg"}):
        with pytest.raises(ClientError) as exc:
            loose.detect_faces(Image={"S3Object": s3_object})
        assert code_of(exc) == "ValidationException", s3_object
    doc = (ROOT / "docs" / "server-auth.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| malformed `S3Object`"))
    assert "`ValidationException`" in row


def test_validation_answers_as_aws_does(server: Server, loose) -> None:
    with pytest.raises(ClientError) as exc:
        loose.describe_collection(CollectionId="no spaces allowed")
    assert code_of(exc) == "ValidationException"
    assert exc.value.response["Error"]["Message"] == (
        "1 validation error detected: Value 'no spaces allowed' at 'collectionId' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: [a-zA-Z0-9_.\-]+")
    with pytest.raises(ClientError) as exc:
        loose.search_faces(CollectionId="x" * 256, FaceId="not-a-face-id", MaxFaces=0, FaceMatchThreshold=101)
    message = exc.value.response["Error"]["Message"]
    assert code_of(exc) == "ValidationException" and message.startswith("4 validation errors detected: ")
    for fragment in ("at 'collectionId' failed to satisfy constraint: Member must have length less than or equal "
                     "to 255",
                     "at 'faceId' failed to satisfy constraint: Member must satisfy regular expression pattern",
                     "Value '0' at 'maxFaces' failed to satisfy constraint: Member must have value greater than or "
                     "equal to 1",
                     "at 'faceMatchThreshold' failed to satisfy constraint: Member must have value less than or equal "
                     "to 100"):
        assert fragment in message
    with pytest.raises(ClientError) as exc:
        loose.detect_faces(Image={"Bytes": GROUP.read_bytes()}, Attributes=["DEFAULT", "HAIR_COLOUR"])
    assert code_of(exc) == "ValidationException" and "'attributes.2.member'" in exc.value.response["Error"]["Message"]
    assert "Member must satisfy enum value set: [DEFAULT, ALL," in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        loose.index_faces(CollectionId="enrolled")
    assert code_of(exc) == "ValidationException"
    assert "Value null at 'image' failed to satisfy constraint: Member must not be null" in str(exc.value)
    with pytest.raises(ClientError) as exc:  # a map, and a pattern written with Java's \p{L} classes
        loose.create_collection(CollectionId="tagged", Tags={"aws:reserved": "x", "Équipe 1": "ok"})
    assert code_of(exc) == "ValidationException" and exc.value.response["Error"]["Message"].startswith(
        "1 validation error detected: Value 'aws:reserved' at 'tags.key' failed to satisfy constraint")
    with pytest.raises(ClientError) as exc:
        loose.delete_faces(CollectionId="enrolled", FaceIds=[])
    assert code_of(exc) == "ValidationException" and "at 'faceIds'" in str(exc.value)


def test_image_size_limits(server: Server, rek) -> None:
    jpeg = GROUP.read_bytes()
    with pytest.raises(rek.exceptions.ImageTooLargeException) as exc:  # over 5 MB, under the body cap
        rek.detect_faces(Image={"Bytes": jpeg + b"\0" * (5 * 1024 * 1024 + 1 - len(jpeg))})
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(rek.exceptions.ImageTooLargeException) as exc:  # over the body cap: refused unread
        rek.detect_faces(Image={"Bytes": jpeg + b"\0" * (9 * 1024 * 1024)})
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    status, body = server.post(b"{" + b" " * (2 * 1024 * 1024) + b"}", TARGET)
    assert status == 413 and body["__type"] == "RequestEntityTooLargeException"
    assert rek.list_collections()["ResponseMetadata"]["HTTPStatusCode"] == 200  # still serving


def test_raw_protocol_errors(server: Server) -> None:
    detect = TARGET | {"x-amz-target": "RekognitionService.DetectFaces"}
    status, body = server.post(b'{"Image": {"Bytes": "not base64!"}}', detect)
    assert (status, body["__type"]) == (400, "InvalidImageFormatException")
    status, body = server.post(b'{"CollectionId": ', TARGET)
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body = server.post(b'{"CollectionId": 7}', TARGET)
    assert (status, body["__type"]) == (400, "SerializationException") and "'collectionId'" in body["Message"]
    status, body = server.post(b'["CollectionId"]', TARGET)
    assert (status, body["__type"]) == (400, "SerializationException")
    search = TARGET | {"x-amz-target": "RekognitionService.SearchFaces"}
    status, body = server.post(b'{"CollectionId": "c", "FaceId": "00000000-0000-0000-0000-000000000000", '
                               b'"FaceMatchThreshold": NaN}', search)
    assert (status, body["__type"]) == (400, "SerializationException") and "NaN" in body["Message"]
    status, body = server.post(b"[" * 100_000 + b"]" * 100_000, TARGET)
    assert (status, body["__type"]) == (400, "SerializationException")
    list_faces = TARGET | {"x-amz-target": "RekognitionService.ListFaces"}
    huge = b'{"CollectionId": "c1", "MaxResults": ' + b"9" * 5000 + b"}"  # over Python's 4,300-digit limit
    status, body = server.post(huge, list_faces)
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body = server.post(b"{}", TARGET | {"x-amz-target": "RekognitionService.MakeCoffee"})
    assert (status, body["__type"]) == (400, "UnknownOperationException") and "MakeCoffee" in body["Message"]
    status, body = server.post(b"{}", {"content-type": "application/x-amz-json-1.1"})
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, body = server.post(b"{}", TARGET | {"content-type": "text/plain"})
    assert (status, body["__type"]) == (400, "SerializationException")
    create = TARGET | {"x-amz-target": "RekognitionService.CreateCollection"}
    status, body = server.post(b'{"CollectionId": "raw", "Unmodelled": 1}', create)  # ignored, as AWS does
    assert status == 200 and body["CollectionArn"].endswith("collection/raw")


def test_a_value_built_to_backtrack_a_models_pattern_is_refused_at_once(server: Server) -> None:
    """SNSTopicArn's pattern, ``(^arn:aws:sns:.*:\\w{12}:.+$)``, backtracks in quadratic time in Python's
    ``re`` over a long value ending in a newline: 900 kB of it would hold the worker for hours (the
    request would then time out here, after 60 s)."""
    arn = "arn:aws:sns:" + ":aaaaaaaaaaaa:" * 64_000 + "\n"
    body = json.dumps({"Video": {"S3Object": {"Bucket": "videos", "Name": "a.mp4"}},
                       "NotificationChannel": {"SNSTopicArn": arn,
                                               "RoleArn": "arn:aws:iam::123456789012:role/r"}}).encode()
    status, answer = server.post(body, TARGET | {"x-amz-target": "RekognitionService.StartFaceDetection"})
    assert (status, answer["__type"]) == (400, "ValidationException") and "snstopicarn" in answer["Message"].lower()


def test_other_paths_and_methods_answer_aws_errors(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for method, path, status in (("POST", "/foo", 404), ("GET", "/", 405)):
            conn.request(method, path, body=b"{}" if method == "POST" else None, headers=TARGET)
            response = conn.getresponse()
            body = json.loads(response.read())
            assert (response.status, body["__type"]) == (status, "UnknownOperationException"), body
            assert response.getheader("content-type") == "application/x-amz-json-1.1"
            entry = next(e for e in server.access_log() if e["requestId"] == response.getheader("x-amzn-requestid"))
            assert (entry["status"], entry["error"], entry["operation"]) == (status, "UnknownOperationException",
                                                                             "unknown")
    finally:
        conn.close()


def test_unserved_operations_answer_a_clear_error(server: Server, rek) -> None:
    with pytest.raises(ClientError) as exc:
        rek.detect_labels(Image=image(GROUP))
    assert code_of(exc) == "UnsupportedOperationException"
    assert "DetectLabels" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        rek.start_label_detection(Video={"S3Object": {"Bucket": "photos", "Name": "v.mp4"}})
    assert code_of(exc) == "UnsupportedOperationException" and "StartLabelDetection" in str(exc.value)


def test_light_calls_do_not_wait_for_inference(server: Server) -> None:
    """While image operations fill the inference pool, a ListCollections is answered first."""
    done: list[float] = []

    def detect() -> None:
        server.client().detect_faces(Image=image(GROUP))
        done.append(1)

    threads = [threading.Thread(target=detect) for _ in range(16)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while _in_flight(server) < 4 and time.monotonic() < deadline:  # wait until they queue on the server
        time.sleep(0.005)
    server.client().list_collections()
    finished_before = len(done)
    for t in threads:
        t.join()
    assert finished_before < 16 and len(done) == 16  # answered while image requests still waited


def _in_flight(server: Server) -> float:
    text = server.get("/metrics")[2].decode()
    return float(re.search(r"^faceprint_requests_in_flight (\S+)$", text, re.M).group(1))


def test_health_metrics_and_access_log(server: Server, rek, enrolled: str) -> None:
    status, _, body = server.get("/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    answer = rek.describe_collection(CollectionId=enrolled)
    with pytest.raises(rek.exceptions.ResourceNotFoundException):
        rek.describe_collection(CollectionId="nowhere")
    status, headers, body = server.get("/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    for line in text.splitlines():
        assert line.startswith("# ") or re.fullmatch(r'faceprint_\w+(\{(\w+="[^"]*",?)+\})? [0-9.e+-]+', line), line
    assert re.search(r'^faceprint_requests_total\{operation="DetectFaces",status="200"\} [1-9]', text, re.M)
    assert re.search(r'^faceprint_errors_total\{operation="DescribeCollection",code="ResourceNotFoundException"\} '
                     r'[1-9]', text, re.M)
    assert re.search(r'^faceprint_request_duration_seconds_bucket\{operation="IndexFaces",le="\+Inf"\} [1-9]', text,
                     re.M)
    entries = {e["requestId"]: e for e in server.access_log()}
    entry = entries[answer["ResponseMetadata"]["RequestId"]]
    assert entry["operation"] == "DescribeCollection" and entry["collectionId"] == enrolled
    assert entry["status"] == 200 and entry["keyId"] is None and entry["durationMs"] >= 0
    assert {"time", "remote", "error", "bytesIn", "bytesOut"} <= set(entry)
    errors = [e for e in entries.values() if e["error"] == "ResourceNotFoundException"]
    assert errors and all(e["status"] == 400 for e in errors)


def test_aws_cli(server: Server, enrolled: str) -> None:
    done = aws_cli(server, "detect-faces", "--image-bytes", f"fileb://{GROUP}", sign=False)
    assert done.returncode == 0, done.stderr
    validate(json.loads(done.stdout), output_shape("DetectFaces"))
    done = aws_cli(server, "search-faces-by-image", "--collection-id", enrolled, "--image",
                   json.dumps({"S3Object": {"Bucket": "photos", "Name": "people/peirsol-3.jpg"}}))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["FaceMatches"][0]["Face"]["ExternalImageId"].startswith("peirsol")
    done = aws_cli(server, "describe-collection", "--collection-id", "nowhere")
    assert done.returncode != 0 and "(ResourceNotFoundException)" in done.stderr


def test_bytes_are_never_a_path(server: Server) -> None:
    """A string where bytes go is base64, never a file name on the server."""
    detect = TARGET | {"x-amz-target": "RekognitionService.DetectFaces"}
    name = base64.b64encode(str(GROUP).encode()).decode()
    status, body = server.post(json.dumps({"Image": {"Bytes": name}}).encode(), detect)
    assert (status, body["__type"]) == (400, "InvalidImageFormatException")



def _ring(points: int) -> list[dict[str, float]]:
    import math

    return [{"X": 0.5 + 0.4 * math.cos(2 * math.pi * i / points), "Y": 0.5 + 0.4 * math.sin(2 * math.pi * i / points)}
            for i in range(points)]


def test_detect_text_regions_keep_rekognitions_limits(server: Server, rek, loose) -> None:
    """At most 10 regions (the model's limit: ValidationException) of at most 10 points a polygon
    (Rekognition's documented limit, not in the model: InvalidParameterException); a polygon of
    100,000 points is refused as cheaply as one of 11, and the server goes on serving."""
    ten = rek.detect_text(Image=image(TEXT), Filters={"RegionsOfInterest": [{"Polygon": _ring(10)}] * 10})
    assert ten["ResponseMetadata"]["HTTPStatusCode"] == 200
    for points in (11, 100_000):
        with pytest.raises(rek.exceptions.InvalidParameterException) as exc:
            rek.detect_text(Image=image(TEXT), Filters={"RegionsOfInterest": [{"Polygon": _ring(points)}]})
        assert f"has {points} points; a polygon has 3 to 10 points" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        loose.detect_text(Image=image(TEXT), Filters={"RegionsOfInterest": [{"Polygon": _ring(10)}] * 11})
    assert code_of(exc) == "ValidationException"
    assert rek.list_collections()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_error_bodies_are_rekognitions(server: Server, rek) -> None:
    """``{"__type": CODE, "Code": CODE, "Message": TEXT}``, as Rekognition answers (Go SDK v2 reads
    the modelled shape's Message); botocore and the AWS CLI read it too."""
    status, body = server.post(b'{"CollectionId": "nowhere"}', TARGET)
    assert status == 400 and set(body) == {"__type", "Code", "Message"}
    assert body["__type"] == body["Code"] == "ResourceNotFoundException" and "nowhere" in body["Message"]
    status, body = server.post(b'{"CollectionId": 7}', TARGET)  # a protocol error, from the validator
    assert (status, body["Code"]) == (400, "SerializationException") and "'collectionId'" in body["Message"]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)  # an unknown path, from the app
    try:
        conn.request("POST", "/elsewhere", body=b"{}", headers=TARGET)
        body = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert body["Code"] == "UnknownOperationException" and "/elsewhere" in body["Message"]
    with pytest.raises(rek.exceptions.ResourceNotFoundException) as exc:
        rek.describe_collection(CollectionId="nowhere")
    assert "nowhere" in exc.value.response["Error"]["Message"]
    done = aws_cli(server, "describe-collection", "--collection-id", "nowhere")
    assert "(ResourceNotFoundException)" in done.stderr and "'nowhere' does not exist" in done.stderr


def test_collection_arns_are_full_arns(server: Server, rek) -> None:
    arn = rek.create_collection(CollectionId="arned")["CollectionArn"]
    account = (server.home / "account-id").read_text().strip()
    assert arn == f"arn:aws:rekognition:us-east-1:{account}:collection/arned" and re.fullmatch(r"\d{12}", account)
    assert rek.describe_collection(CollectionId="arned")["CollectionARN"] == arn


def test_numbers_and_strings_a_java_service_cannot_hold_are_client_errors(server: Server, rek) -> None:
    """An integer of 400 digits in a float member, 1e999 (JSON's infinity to Python), an integer past
    a Java int, a lone surrogate in a string: SerializationException, never a 500."""
    face = "00000000-0000-0000-0000-000000000000"
    search = TARGET | {"x-amz-target": "RekognitionService.SearchFaces"}
    for number in (b"1" + b"0" * 400, b"-1" + b"0" * 400, b"1e999", b"-1e999"):
        body = b'{"CollectionId": "c", "FaceId": "%s", "FaceMatchThreshold": %s}' % (face.encode(), number)
        status, answer = server.post(body, search)
        assert (status, answer["__type"]) == (400, "SerializationException"), (number[:10], answer)
    index = TARGET | {"x-amz-target": "RekognitionService.IndexFaces"}
    jpeg = base64.b64encode(GROUP.read_bytes())
    for number, code in ((2**31, "SerializationException"), (2**31 - 1, "ResourceNotFoundException")):
        body = b'{"CollectionId": "nowhere", "Image": {"Bytes": "%s"}, "MaxFaces": %d}' % (jpeg, number)
        status, answer = server.post(body, index)
        assert (status, answer["__type"]) == (400, code), answer
    detect = TARGET | {"x-amz-target": "RekognitionService.DetectFaces"}
    for body in (b'{"Image": {"S3Object": {"Bucket": "photos", "Name": "\\ud800.jpg"}}}',
                 b'{"Image": {"S3Object": {"Bucket": "photos", "Name": "x\\udfff"}}}'):
        status, answer = server.post(body, detect)
        assert (status, answer["__type"]) == (400, "SerializationException"), answer
    status, answer = server.post(b'{"CollectionId": "\\udc00"}', TARGET)
    assert (status, answer["__type"]) == (400, "SerializationException"), answer
    assert rek.list_collections()["ResponseMetadata"]["HTTPStatusCode"] == 200


def _token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def test_forged_page_tokens_are_invalid_pagination_tokens(server: Server, rek) -> None:
    rek.create_collection(CollectionId="paged")
    rek.create_user(CollectionId="paged", UserId="u1")
    for token in (_token("\ud800"), _token(["long", "\ud800"]), _token(10**30), _token(-1), _token("a b")):
        for call in (lambda t: rek.list_collections(NextToken=t), lambda t: rek.list_users(CollectionId="paged",
                     NextToken=t), lambda t: rek.list_faces(CollectionId="paged", NextToken=t)):
            with pytest.raises(rek.exceptions.InvalidPaginationTokenException):
                call(token)
