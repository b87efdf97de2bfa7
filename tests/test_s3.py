"""Image.S3Object: local bucket folders (real files, traversal attempts) and a real
S3-compatible server (moto's, on a free port) read through boto3."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from faceprint.errors import (
    FaceprintError,
    ImageTooLargeException,
    InvalidParameterException,
    InvalidS3ObjectException,
)
from faceprint.server.s3 import MAX_S3_IMAGE_BYTES, Buckets

CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """A bucket folder with a few files, beside a secret file outside it."""
    root = tmp_path / "photos"
    (root / "people" / "a").mkdir(parents=True)
    (root / "one.jpg").write_bytes(b"one")
    (root / "people" / "a" / "two.jpg").write_bytes(b"two")
    (root / "odd name + é.jpg").write_bytes(b"odd")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")
    return root, secret


def test_local_bucket_reads_files(folders: tuple[Path, Path]) -> None:
    root, _ = folders
    buckets = Buckets.from_specs([f"photos={root}"])
    assert buckets.read({"Bucket": "photos", "Name": "one.jpg"}) == b"one"
    assert buckets.read({"Bucket": "photos", "Name": "people/a/two.jpg"}) == b"two"
    assert buckets.read({"Bucket": "photos", "Name": "people//a/./two.jpg"}) == b"two"
    assert buckets.read({"Bucket": "photos", "Name": "odd name + é.jpg"}) == b"odd"
    assert buckets.read({"Bucket": "photos", "Name": "one.jpg", "Version": "null"}) == b"one"


def test_local_missing_object_bucket_or_version(folders: tuple[Path, Path]) -> None:
    root, _ = folders
    buckets = Buckets({"photos": root})
    for s3_object in ({"Bucket": "photos", "Name": "nope.jpg"}, {"Bucket": "other", "Name": "one.jpg"},
                      {"Bucket": "photos", "Name": "one.jpg", "Version": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"},
                      {"Bucket": "photos", "Name": "people"}, {"Bucket": "photos", "Name": "people/"}):
        with pytest.raises(InvalidS3ObjectException) as caught:
            buckets.read(s3_object)
        assert caught.value.code == "InvalidS3ObjectException" and caught.value.http_status == 400


def test_path_traversal_is_impossible(folders: tuple[Path, Path], tmp_path: Path) -> None:
    root, secret = folders
    (root / "link-out.jpg").symlink_to(secret)
    (root / "dir-out").symlink_to(tmp_path)
    (root / "link-in.jpg").symlink_to(root / "one.jpg")
    (root / "loop").symlink_to(root / "loop")
    buckets = Buckets({"photos": root})
    names = ["../secret.txt", "people/../../secret.txt", "people/a/../../../secret.txt", str(secret),
             "/secret.txt", "link-out.jpg", "dir-out/secret.txt", "one.jpg\x00.png", "..", ".", "loop",
             "people/a/" + "../" * 20 + str(secret).lstrip("/")]
    for name in names:
        with pytest.raises(InvalidS3ObjectException):
            buckets.read({"Bucket": "photos", "Name": name})
    assert buckets.read({"Bucket": "photos", "Name": "link-in.jpg"}) == b"one"  # a link that stays inside


def test_a_folder_swapped_for_a_link_cannot_lead_out(folders: tuple[Path, Path], tmp_path: Path) -> None:
    """While a name is read, another process swaps a folder in the bucket for a link out of it,
    over and over: the name must never reach the file outside."""
    root, _ = folders
    outside = tmp_path / "outside" / "a"
    outside.mkdir(parents=True)
    (outside / "two.jpg").write_bytes(b"secret")
    (tmp_path / "swap").symlink_to(tmp_path / "outside")
    buckets = Buckets({"photos": root})
    stop = threading.Event()

    def swap() -> None:
        people, other = root / "people", tmp_path / "people-real"
        while not stop.is_set():
            people.rename(other)
            (tmp_path / "swap").rename(people)  # people is now a link out of the bucket
            people.rename(tmp_path / "swap")
            other.rename(people)

    swapper = threading.Thread(target=swap)
    swapper.start()
    seen: set[bytes] = set()
    try:
        for _ in range(3000):
            try:
                seen.add(buckets.read({"Bucket": "photos", "Name": "people/a/two.jpg"}))
            except InvalidS3ObjectException:
                seen.add(b"refused")
    finally:
        stop.set()
        swapper.join()
    assert b"secret" not in seen and b"two" in seen


def test_a_fifo_is_refused_without_waiting(folders: tuple[Path, Path]) -> None:
    root, _ = folders
    os.mkfifo(root / "pipe.jpg")
    with pytest.raises(InvalidS3ObjectException):
        Buckets({"photos": root}).read({"Bucket": "photos", "Name": "pipe.jpg"})


def test_image_too_large_is_refused_from_its_size(folders: tuple[Path, Path]) -> None:
    root, _ = folders
    with open(root / "huge.jpg", "wb") as fh:  # sparse: its size says 15 MB + 1 without writing it
        fh.truncate(MAX_S3_IMAGE_BYTES + 1)
    with open(root / "limit.jpg", "wb") as fh:
        fh.truncate(MAX_S3_IMAGE_BYTES)
    buckets = Buckets({"photos": root})
    assert MAX_S3_IMAGE_BYTES == 15 * 1024 * 1024
    with pytest.raises(ImageTooLargeException) as caught:
        buckets.read({"Bucket": "photos", "Name": "huge.jpg"})
    assert caught.value.code == "ImageTooLargeException" and str(MAX_S3_IMAGE_BYTES + 1) in caught.value.message
    assert len(buckets.read({"Bucket": "photos", "Name": "limit.jpg"})) == MAX_S3_IMAGE_BYTES


def test_bucket_specs_and_s3_object_are_validated(folders: tuple[Path, Path]) -> None:
    root, secret = folders
    for specs in (["photos"], [f"={root}"], ["photos="], [f"ab={root}"], [f"bad/name={root}"],
                  [f"photos={root / 'missing'}"], [f"photos={secret}"], [f"photos={root}", f"photos={root}"],
                  [f"photos={root}", "photos"]):
        with pytest.raises(InvalidParameterException):
            Buckets.from_specs(specs)  # a bare NAME needs an endpoint: the first one fails for that
    with pytest.raises(InvalidParameterException):
        Buckets(endpoint_url="http://127.0.0.1:1", access_key_id="only-the-id")
    buckets = Buckets({"photos": root})
    for s3_object in ({"Bucket": "photos"}, {"Name": "one.jpg"}, {"Bucket": "pho/tos", "Name": "one.jpg"},
                      {"Bucket": "photos", "Name": ""}, {"Bucket": "photos", "Name": "x" * 1025},
                      {"Bucket": "photos", "Name": 3}, {"Bucket": "photos", "Name": "one.jpg", "Version": ""},
                      "photos/one.jpg"):
        with pytest.raises(InvalidParameterException):
            buckets.read(s3_object)  # type: ignore[arg-type]


# --- a real S3-compatible server ------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def s3_client(endpoint: str):
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(s3={"addressing_style": "path"}))


@pytest.fixture(scope="module")
def bucket(endpoint: str) -> str:
    client = s3_client(endpoint)
    client.create_bucket(Bucket="remote-photos")
    client.put_object(Bucket="remote-photos", Key="people/one.jpg", Body=b"remote one")
    client.put_object(Bucket="remote-photos", Key="big.jpg", Body=b"x" * 1001)
    client.put_object(Bucket="remote-photos", Key="fits.jpg", Body=b"x" * 1000)
    return "remote-photos"


def test_remote_bucket(endpoint: str, bucket: str) -> None:
    buckets = Buckets(endpoint_url=endpoint, region="us-east-1", **CREDENTIALS)
    assert buckets.read({"Bucket": bucket, "Name": "people/one.jpg"}) == b"remote one"
    for s3_object in ({"Bucket": bucket, "Name": "people/nope.jpg"}, {"Bucket": "no-such-bucket", "Name": "a.jpg"},
                      {"Bucket": bucket, "Name": "people/one.jpg", "Version": "no-such-version"}):
        with pytest.raises(InvalidS3ObjectException):
            buckets.read(s3_object)


def test_remote_versions(endpoint: str) -> None:
    client = s3_client(endpoint)
    client.create_bucket(Bucket="versioned")
    client.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    first = client.put_object(Bucket="versioned", Key="face.jpg", Body=b"first")["VersionId"]
    client.put_object(Bucket="versioned", Key="face.jpg", Body=b"second")
    buckets = Buckets(endpoint_url=endpoint, **CREDENTIALS)
    assert buckets.read({"Bucket": "versioned", "Name": "face.jpg"}) == b"second"
    assert buckets.read({"Bucket": "versioned", "Name": "face.jpg", "Version": first}) == b"first"


def test_remote_size_limit(endpoint: str, bucket: str) -> None:
    buckets = Buckets(endpoint_url=endpoint, max_bytes=1000, **CREDENTIALS)
    assert buckets.read({"Bucket": bucket, "Name": "fits.jpg"}) == b"x" * 1000
    with pytest.raises(ImageTooLargeException):
        buckets.read({"Bucket": bucket, "Name": "big.jpg"})


def test_remote_buckets_can_be_limited_to_those_named(endpoint: str, bucket: str) -> None:
    client = s3_client(endpoint)
    client.create_bucket(Bucket="private")
    client.put_object(Bucket="private", Key="x.jpg", Body=b"private")
    assert Buckets(endpoint_url=endpoint, **CREDENTIALS).read({"Bucket": "private", "Name": "x.jpg"}) == b"private"
    buckets = Buckets.from_specs([bucket], endpoint_url=endpoint, **CREDENTIALS)
    assert buckets.read({"Bucket": bucket, "Name": "people/one.jpg"}) == b"remote one"
    with pytest.raises(InvalidS3ObjectException):
        buckets.read({"Bucket": "private", "Name": "x.jpg"})


def test_local_buckets_come_first(endpoint: str, bucket: str, folders: tuple[Path, Path]) -> None:
    root, _ = folders
    (root / "people").mkdir(exist_ok=True)
    (root / "people" / "one.jpg").write_bytes(b"local one")
    buckets = Buckets({bucket: root}, endpoint_url=endpoint, **CREDENTIALS)
    assert buckets.read({"Bucket": bucket, "Name": "people/one.jpg"}) == b"local one"


class _CountingBuckets(Buckets):
    made = 0

    def _make_client(self):
        type(self).made += 1
        return super()._make_client()


def test_one_client_shared_by_threads(endpoint: str, bucket: str) -> None:
    buckets = _CountingBuckets(endpoint_url=endpoint, **CREDENTIALS)
    start = threading.Barrier(8)

    def read(_: int) -> bytes:
        start.wait()
        return buckets.read({"Bucket": bucket, "Name": "people/one.jpg"})

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(read, range(8))) == [b"remote one"] * 8
    assert _CountingBuckets.made == 1


def test_unreachable_endpoint_is_a_server_error() -> None:
    import socket

    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    buckets = Buckets(endpoint_url=f"http://127.0.0.1:{port}", **CREDENTIALS)
    with pytest.raises(FaceprintError) as caught:
        buckets.read({"Bucket": "photos", "Name": "one.jpg"})
    assert caught.value.code == "InternalServerError" and "S3 endpoint" in caught.value.message
    assert not isinstance(caught.value, InvalidS3ObjectException)
