"""``Image.S3Object``: read an image from a bucket, local folder or S3-compatible endpoint.

Local buckets map a bucket name to a folder (``--bucket NAME=DIR``); an object name
is a path inside that folder and can never reach outside it (``..``, absolute
names, NUL bytes and symbolic links that lead out are refused). Any other bucket
is read from the S3-compatible endpoint, when one is configured, through boto3's
S3 client (all its buckets, or only those named with ``--bucket NAME``).

Videos (``Video.S3Object``) are never read into memory: :meth:`Buckets.video_size` answers an
object's size (a Start operation refuses one over the limit at once) and
:meth:`Buckets.copy_video` streams the object into a file, in 1 MB pieces, stopping as soon as it
passes the limit (the object may have grown since it was measured).

Failures raise Rekognition's errors: ``InvalidS3ObjectException`` for a bucket,
object or version that cannot be read, ``ImageTooLargeException`` for an object
over Rekognition's 15 MB limit for S3 images (refused from its size, before it is
read), ``VideoTooLargeException`` for a video over the server's limit (10 GB by default).
An unreachable endpoint is a server error (``InternalServerError``, 500).
"""

from __future__ import annotations

import os
import re
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from faceprint.errors import (
    FaceprintError,
    ImageTooLargeException,
    InvalidParameterException,
    InvalidS3ObjectException,
    VideoTooLargeException,
)

MAX_S3_IMAGE_BYTES = 15 * 1024 * 1024
"""Rekognition's limit for an image stored as an S3 object (15 MB; 5 MB for Image.Bytes)."""

BUCKET_PATTERN = re.compile(r"[0-9A-Za-z.\-_]{3,255}")  # Rekognition's S3Bucket shape
MAX_NAME_LENGTH = 1024  # Rekognition's S3ObjectName shape
COPY_CHUNK = 1024 * 1024
"""Bytes read and written at a time while a video is copied out of a bucket."""
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
        bucket, name, version = self._locate(s3_object)
        if bucket in self.local:
            return self._read_local(self.local[bucket], name, version)
        return self._read_remote(bucket, name, version)

    def video_size(self, s3_object: Mapping[str, Any]) -> int:
        """The size in bytes of a video object, without reading it (a HEAD request on the endpoint)."""
        bucket, name, version = self._locate(s3_object, "Video")
        if bucket in self.local:
            fd = self._open_local(self.local[bucket], name, version)
            try:
                return os.fstat(fd).st_size
            finally:
                os.close(fd)
        response = self._remote(lambda: self._s3().head_object(**_request(bucket, name, version)))
        return int(response.get("ContentLength") or 0)

    def copy_video(self, s3_object: Mapping[str, Any], dest: Path, max_bytes: int,
                   progress: Callable[[int], None] | None = None) -> int:
        """Stream a video object into the file ``dest`` (created or replaced) and return its size;
        ``VideoTooLargeException`` (and no ``dest``) once it passes ``max_bytes``. The object is
        never held in memory whole: it is copied 1 MB at a time, ``progress(bytes so far)`` called
        after each piece (what it raises stops the copy, and no ``dest`` is left)."""
        bucket, name, version = self._locate(s3_object, "Video")
        dest = Path(dest)
        try:
            if bucket in self.local:
                fd = self._open_local(self.local[bucket], name, version)
                with os.fdopen(fd, "rb") as fh:
                    _check_video_size(os.fstat(fh.fileno()).st_size, max_bytes)
                    return _write_chunks(iter(lambda: fh.read(COPY_CHUNK), b""), dest, max_bytes, progress)
            return self._copy_remote(bucket, name, version, dest, max_bytes, progress)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def _locate(self, s3_object: Mapping[str, Any], member: str = "Image") -> tuple[str, str, str | None]:
        bucket, name, version = _parse(s3_object, member)
        if bucket not in self.local and (self.endpoint_url is None
                                         or (self.remote is not None and bucket not in self.remote)):
            raise InvalidS3ObjectException(f"{UNREADABLE} (bucket {bucket!r} is not configured on this server)")
        return bucket, name, version

    # local folders

    def _read_local(self, root: Path, name: str, version: str | None) -> bytes:
        fd = self._open_local(root, name, version)
        try:
            self._check_size(os.fstat(fd).st_size)
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as fh:
            return self._check_size_read(fh.read(self.max_bytes + 1))

    @staticmethod
    def _open_local(root: Path, name: str, version: str | None) -> int:
        """A blocking read-only fd of a regular file inside ``root`` (see :func:`_open_inside`)."""
        if version is not None and version != "null":
            raise InvalidS3ObjectException(f"{UNREADABLE} (a local bucket has no object versions)")
        fd = _open_inside(root, name)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a folder, device or pipe is no object
                raise InvalidS3ObjectException(UNREADABLE)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    # S3-compatible endpoint

    def _read_remote(self, bucket: str, name: str, version: str | None) -> bytes:
        from botocore.exceptions import BotoCoreError

        response = self._remote(lambda: self._s3().get_object(**_request(bucket, name, version)))
        body = response["Body"]
        try:
            self._check_size(int(response.get("ContentLength") or 0))
            return self._check_size_read(body.read(self.max_bytes + 1))
        except BotoCoreError as exc:
            raise FaceprintError(f"Reading from the S3 endpoint failed: {type(exc).__name__}") from None
        finally:
            body.close()

    def _copy_remote(self, bucket: str, name: str, version: str | None, dest: Path, max_bytes: int,
                     progress: Callable[[int], None] | None) -> int:
        from botocore.exceptions import BotoCoreError

        response = self._remote(lambda: self._s3().get_object(**_request(bucket, name, version)))
        body = response["Body"]
        try:
            _check_video_size(int(response.get("ContentLength") or 0), max_bytes)
            return _write_chunks(body.iter_chunks(COPY_CHUNK), dest, max_bytes, progress)
        except BotoCoreError as exc:
            raise FaceprintError(f"Reading from the S3 endpoint failed: {type(exc).__name__}") from None
        finally:
            body.close()

    @staticmethod
    def _remote(call: Callable[[], Any]) -> Any:
        """``call``'s answer, the endpoint's failures as Rekognition's errors: a missing or forbidden
        object is ``InvalidS3ObjectException``, anything else a server error."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _MISSING_CODES or 400 <= status < 500:
                raise InvalidS3ObjectException(f"{UNREADABLE} ({code or status})") from None
            raise FaceprintError(f"The S3 endpoint failed: {code or status}") from None
        except BotoCoreError as exc:
            raise FaceprintError(f"Could not reach the S3 endpoint: {type(exc).__name__}") from None

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


def _parse(s3_object: Mapping[str, Any], member: str = "Image") -> tuple[str, str, str | None]:
    if not isinstance(s3_object, Mapping):
        raise InvalidParameterException(f"{member}.S3Object must be an object with Bucket and Name.")
    bucket, name, version = s3_object.get("Bucket"), s3_object.get("Name"), s3_object.get("Version")
    if not isinstance(bucket, str) or not BUCKET_PATTERN.fullmatch(bucket):
        raise InvalidParameterException(
            f"{member}.S3Object.Bucket must be 3 to 255 characters of letters, digits, '.', '-' or '_'.")
    if not _is_text(name) or not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise InvalidParameterException(f"{member}.S3Object.Name must be a string of 1 to 1024 characters.")
    if version is not None and (not _is_text(version) or not 1 <= len(version) <= MAX_NAME_LENGTH):
        raise InvalidParameterException(f"{member}.S3Object.Version must be a string of 1 to 1024 characters.")
    return bucket, name, version


def _is_text(value: Any) -> bool:
    """A string that is Unicode text (a lone surrogate is not: no file or key can be named by it)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _request(bucket: str, name: str, version: str | None) -> dict[str, str]:
    request = {"Bucket": bucket, "Key": name}
    if version is not None:
        request["VersionId"] = version
    return request


def _check_video_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise VideoTooLargeException(f"The video is {size} bytes; this server accepts videos of at most "
                                     f"{max_bytes} bytes.")


def _write_chunks(chunks: Iterator[bytes], dest: Path, max_bytes: int,
                  progress: Callable[[int], None] | None = None) -> int:
    """Write ``chunks`` to ``dest`` (owner-only), counting them against ``max_bytes``."""
    from faceprint.home import create_private

    size = 0
    dest.unlink(missing_ok=True)
    with os.fdopen(create_private(dest), "wb") as out:
        for chunk in chunks:
            size += len(chunk)
            _check_video_size(size, max_bytes)  # the object grew after its size was checked
            out.write(chunk)
            if progress is not None:
                progress(size)
    return size


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
