"""The file sink's storage: a rotated JSON-lines log and a bounded folder of match snapshots."""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faceprint.home import FILE_MODE, private_folder

MAX_BYTES = 64 << 20
"""The JSON-lines log rotates at this size."""
KEEP = 5
"""Rotated logs kept: PATH.1 .. PATH.5."""


class RotatingLog:
    """PATH opened for appending (0600), rotated to PATH.1 .. PATH.keep past ``max_bytes``;
    written with one ``os.write`` per line, fsync'd at most once a second."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self.max_bytes, self.keep, self.clock = path, max(1, max_bytes), max(0, keep), clock
        self._fd: int | None = None
        self._size = 0
        self._dirty = False
        self._synced = float("-inf")

    def write(self, line: bytes) -> None:
        """Append ``line`` whole, or (an error: disk full, file too big) leave the file as it was: a
        part of a line would spoil the JSON line that the retry writes after it."""
        fd = self._open()
        if self._size > 0 and self._size + len(line) > self.max_bytes:
            self._rotate()
            fd = self._open()
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            if len(view) < len(line):
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._size)
            raise
        self._size += len(line)
        self._dirty = True

    def sync(self, force: bool = False) -> None:
        """fsync when something was written and (unless ``force``) a second has passed since the last."""
        if self._fd is None or not self._dirty or (not force and self.clock() - self._synced < 1.0):
            return
        os.fsync(self._fd)
        self._dirty, self._synced = False, self.clock()

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.sync(force=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def follow(self) -> None:
        """Start a new PATH if the open one was moved or deleted behind the log's back (logrotate,
        an operator): records are never written into a file nobody will read."""
        if self._fd is None:
            return
        try:
            now, mine = os.stat(self.path), os.fstat(self._fd)
            moved = (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino)
        except FileNotFoundError:
            moved = True
        if moved:
            self.close()

    def drop(self) -> None:
        """Forget the open file after an error (the next write opens it again)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            os.fchmod(fd, FILE_MODE)
            self._fd, self._size, self._dirty = fd, os.fstat(fd).st_size, False
            sync_folder(self.path.parent)  # the new file's name (and a rotation's renames) outlive a crash
        return self._fd

    def _rotate(self) -> None:
        self.close()
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
            return
        for number in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{number}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{number + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))


def sync_folder(folder: Path) -> None:
    """fsync ``folder``: the names created, renamed and removed in it are on disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapshotFolder:
    """``PATH.snapshots/`` (0700): JPEGs named ``{producer_ms}-{FaceId}.jpg`` (0600), the oldest
    deleted once they hold more than ``max_bytes`` in all."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder, self.max_bytes = folder, max_bytes
        self._files: deque[tuple[Path, int]] | None = None
        self._bytes = 0

    def save(self, record: dict[str, Any], jpeg: bytes) -> None:
        files = self._load()
        video = (record.get("InputInformation") or {}).get("KinesisVideo") or {}
        producer_ms = int(round(float(video.get("ProducerTimestamp") or 0) * 1000))
        first: Path | None = None
        for face_id in matched_face_ids(record):
            path = self.folder / f"{producer_ms}-{face_id}.jpg"
            if first is None:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
                with os.fdopen(fd, "wb") as out:
                    out.write(jpeg)
                first = path
            elif not path.exists():
                os.link(first, path)
            files.append((path, len(jpeg)))
            self._bytes += len(jpeg)
        while self._bytes > self.max_bytes and len(files) > 1:
            old, size = files.popleft()
            old.unlink(missing_ok=True)
            self._bytes -= size

    def _load(self) -> deque[tuple[Path, int]]:
        if self._files is None:
            private_folder(self.folder)
            found = sorted((p.stat().st_mtime, p.name, p.stat().st_size) for p in self.folder.glob("*.jpg"))
            self._files = deque((self.folder / name, size) for _, name, size in found)
            self._bytes = sum(size for _, size in self._files)
        return self._files


def matched_face_ids(record: dict[str, Any]) -> list[str]:
    """The best match's FaceId of each matched face in a frame record, once each."""
    ids: list[str] = []
    for face in record.get("FaceSearchResponse") or ():
        matches = face.get("MatchedFaces") or []
        face_id = str((matches[0].get("Face") or {}).get("FaceId", "")) if matches else ""
        if face_id and face_id not in ids and "/" not in face_id:
            ids.append(face_id)
    return ids
