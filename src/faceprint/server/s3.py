"""``Image.S3Object``: read an image from a bucket, local folder or S3-compatible endpoint.

Local buckets map a bucket name to a folder (``--bucket NAME=DIR``); an object name
is a path inside that folder and can never reach outside it (``..``, absolute
names, NUL bytes and symbolic links that lead out are refused). Any other bucket
is read from the S3-compatible endpoint, when one is configured, through boto3's
S3 client (all its buckets, or only those named with ``--bucket NAME``).

Failures raise Rekognition's errors: ``InvalidS3ObjectException`` for a bucket,
object or version that cannot be read, ``ImageTooLargeException`` for an object
over Rekognition's 15 MB limit for S3 images (refused from its size, before it is
read). An unreachable endpoint is a server error (``InternalServerError``, 500).
"""

from __future__ import annotations

import os
import re
import stat
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from faceprint.errors import (
    FaceprintError,
    ImageTooLargeException,
    InvalidParameterException,
    InvalidS3ObjectException,
)

MAX_S3_IMAGE_BYTES = 15 * 1024 * 1024
"""Rekognition's limit for an image stored as an S3 object (15 MB; 5 MB for Image.Bytes)."""

BUCKET_PATTERN = re.compile(r"[0-9A-Za-z.\-_]{3,255}")  # Rekognition's S3Bucket shape
MAX_NAME_LENGTH = 1024  # Rekognition's S3ObjectName shape
UNREADABLE = "Unable to get object metadata from S3. Check object key, region and/or access permissions."
_MISSING_CODES = {"NoSuchBucket", "NoSuchKey", "NoSuchVersion", "404", "NotFound", "AccessDenied", "403",
                  "InvalidArgument", "InvalidBucketName", "AllAccessDisabled", "InvalidObjectState"}


class Buckets:
    """Where ``Image.S3Object`` images come from: local folders, then an optional endpoint.

    ``read`` is blocking (file or network I/O): call it from a worker thread. The S3
    client is created on first use, once, and shared by all threads.
    """

    def __init__(self, local: Mapping[str, Path] | None = None, endpoint_url: str | None = None,
                 region: str | None = None, access_key_id: str | None = None,
                 secret_access_key: str | None = None, *, remote: Iterable[str] | None = None,
                 max_bytes: int = MAX_S3_IMAGE_BYTES) -> None:
        """``remote`` limits the endpoint's buckets that may be read (None: any of them).

        Without ``access_key_id``/``secret_access_key`` boto3 finds credentials as usual
        (``AWS_ACCESS_KEY_ID``, ``~/.aws/credentials``, ...).
        """
        self.local = {name: _check_folder(name, Path(folder)) for name, folder in (local or {}).items()}
        self.remote = frozenset(_check_name(name) for name in remote) if remote is not None else None
        if self.remote and endpoint_url is None:
            raise InvalidParameterException(
                f"Bucket(s) {', '.join(sorted(self.remote))} have no folder (NAME=DIR) and no S3 endpoint URL is set.")
        self.endpoint_url = endpoint_url
        self.region = region or "us-east-1"
        self._credentials = (access_key_id, secret_access_key)
        if (access_key_id is None) != (secret_access_key is None):
            raise InvalidParameterException("Give both the S3 access key id and the secret access key, or neither.")
        self.max_bytes = max_bytes
        self._client: Any = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_specs(cls, specs: list[str], endpoint_url: str | None = None, region: str | None = None,
                   access_key_id: str | None = None, secret_access_key: str | None = None, *,
                   max_bytes: int = MAX_S3_IMAGE_BYTES) -> Buckets:
        """From ``faceprint serve --bucket`` specs: ``NAME=DIR`` maps a bucket to a local folder,
        a bare ``NAME`` is a bucket of the S3 endpoint (once one is named, only those named are read)."""
        local: dict[str, Path] = {}
        remote: list[str] = []
        for spec in specs:
            name, sep, folder = spec.partition("=")
            if not name or (sep and not folder):
                raise InvalidParameterException(
                    f"Bucket {spec!r} must be given as NAME=DIR, or as NAME for a bucket of the S3 endpoint.")
            if name in local or name in remote:
                raise InvalidParameterException(f"Bucket {name!r} is given twice.")
            if sep:
                local[name] = Path(folder)
            else:
                remote.append(name)
        return cls(local, endpoint_url, region, access_key_id, secret_access_key, remote=remote or None,
                   max_bytes=max_bytes)

    def read(self, s3_object: Mapping[str, Any]) -> bytes:
        """The bytes of a Rekognition ``S3Object`` (``{"Bucket", "Name", "Version"?}``)."""
        bucket, name, version = _parse(s3_object)
        if bucket in self.local:
            return self._read_local(self.local[bucket], name, version)
        if self.endpoint_url is None or (self.remote is not None and bucket not in self.remote):
            raise InvalidS3ObjectException(f"{UNREADABLE} (bucket {bucket!r} is not configured on this server)")
        return self._read_remote(bucket, name, version)

    # local folders

    def _read_local(self, root: Path, name: str, version: str | None) -> bytes:
        if version is not None and version != "null":
            raise InvalidS3ObjectException(f"{UNREADABLE} (a local bucket has no object versions)")
        fd = _open_inside(root, name)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):  # a folder, device or pipe is no object
                raise InvalidS3ObjectException(UNREADABLE)
            self._check_size(info.st_size)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as fh:
            return self._check_size_read(fh.read(self.max_bytes + 1))

    # S3-compatible endpoint

    def _read_remote(self, bucket: str, name: str, version: str | None) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        request = {"Bucket": bucket, "Key": name}
        if version is not None:
            request["VersionId"] = version
        try:
            response = self._s3().get_object(**request)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _MISSING_CODES or 400 <= status < 500:
                raise InvalidS3ObjectException(f"{UNREADABLE} ({code or status})") from None
            raise FaceprintError(f"The S3 endpoint failed: {code or status}") from None
        except BotoCoreError as exc:
            raise FaceprintError(f"Could not reach the S3 endpoint: {type(exc).__name__}") from None
        body = response["Body"]
        try:
            self._check_size(int(response.get("ContentLength") or 0))
            return self._check_size_read(body.read(self.max_bytes + 1))
        except BotoCoreError as exc:
            raise FaceprintError(f"Reading from the S3 endpoint failed: {type(exc).__name__}") from None
        finally:
            body.close()

    def _s3(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        access_key_id, secret_access_key = self._credentials
        config = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                        connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})
        session = boto3.session.Session()
        return session.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                              aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
                              config=config)

    # limits

    def _check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise ImageTooLargeException(
                f"The S3 object is {size} bytes; images stored in S3 may be at most {self.max_bytes} bytes.")

    def _check_size_read(self, data: bytes) -> bytes:
        self._check_size(len(data))  # the object grew after its size was checked
        return data


def _parse(s3_object: Mapping[str, Any]) -> tuple[str, str, str | None]:
    if not isinstance(s3_object, Mapping):
        raise InvalidParameterException("Image.S3Object must be an object with Bucket and Name.")
    bucket, name, version = s3_object.get("Bucket"), s3_object.get("Name"), s3_object.get("Version")
    if not isinstance(bucket, str) or not BUCKET_PATTERN.fullmatch(bucket):
        raise InvalidParameterException(
            "Image.S3Object.Bucket must be 3 to 255 characters of letters, digits, '.', '-' or '_'.")
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise InvalidParameterException("Image.S3Object.Name must be a string of 1 to 1024 characters.")
    if version is not None and (not isinstance(version, str) or not 1 <= len(version) <= MAX_NAME_LENGTH):
        raise InvalidParameterException("Image.S3Object.Version must be a string of 1 to 1024 characters.")
    return bucket, name, version


def _check_name(name: str) -> str:
    if not BUCKET_PATTERN.fullmatch(name):
        raise InvalidParameterException(
            f"Bucket name {name!r} must be 3 to 255 characters of letters, digits, '.', '-' or '_'.")
    return name


def _check_folder(name: str, folder: Path) -> Path:
    _check_name(name)
    if not folder.is_dir():
        raise InvalidParameterException(f"Bucket {name!r}: {str(folder)!r} is not a folder.")
    return folder.resolve(strict=True)


_OPEN = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
MAX_LINKS = 40
"""Symbolic links followed while opening one object (Linux's own limit)."""


def _outside() -> InvalidS3ObjectException:
    return InvalidS3ObjectException(f"{UNREADABLE} (the object name is not a path inside the bucket)")


def _open_inside(root: Path, name: str) -> int:
    """A read-only fd of the file ``name`` in ``root``, or ``InvalidS3ObjectException``.

    The path is walked one component at a time from the root's fd, each opened with
    ``O_NOFOLLOW`` relative to the folder before it; symbolic links are read and followed here,
    and only while they stay inside ``root``. A folder swapped for a link while the name is
    being resolved therefore cannot lead out of the bucket. The file is opened ``O_NONBLOCK``
    (a FIFO must not wait for a writer), then made blocking again."""
    if "\x00" in name or name.startswith("/") or any(part == ".." for part in name.split("/")):
        raise _outside()
    try:
        folders = [os.open(root, _OPEN | os.O_DIRECTORY)]
    except OSError:  # the bucket's folder is gone
        raise InvalidS3ObjectException(UNREADABLE) from None
    try:
        return _walk(root, name.split("/"), folders)
    finally:
        for fd in folders:
            os.close(fd)


def _walk(root: Path, parts: list[str], folders: list[int]) -> int:
    """Follow ``parts`` from ``folders[-1]`` (``folders[0]`` is the root's fd); see _open_inside."""
    links = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":  # only from a link's target
            if len(folders) == 1:
                raise _outside()
            os.close(folders.pop())
            continue
        try:
            info = os.stat(part, dir_fd=folders[-1], follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise InvalidS3ObjectException(UNREADABLE)
                parts[:0] = _link_parts(root, os.readlink(part, dir_fd=folders[-1]), folders)
            elif any(p not in ("", ".") for p in parts):
                folders.append(os.open(part, _OPEN | os.O_DIRECTORY, dir_fd=folders[-1]))
            else:
                return os.open(part, _OPEN | os.O_NONBLOCK, dir_fd=folders[-1])
        except OSError:  # missing, unreadable, not a folder, or swapped for a link meanwhile
            raise InvalidS3ObjectException(UNREADABLE) from None
    raise InvalidS3ObjectException(UNREADABLE)  # the name is the bucket's folder itself


def _link_parts(root: Path, target: str, folders: list[int]) -> list[str]:
    """The components a link's target adds to the walk; an absolute target must be in ``root``
    and restarts the walk from it."""
    if not target.startswith("/"):
        return target.split("/")
    inside = Path(os.path.normpath(target))
    if not inside.is_relative_to(root):
        raise _outside()
    while len(folders) > 1:
        os.close(folders.pop())
    return list(inside.relative_to(root).parts)
