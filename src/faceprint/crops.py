"""Face crops, kept only where a collection's settings ask for them (``keep_face_crops``).

A crop is a small JPEG of one indexed face, for the console's thumbnails:
``HOME/crops/<sha256(collection id)>/<face id>.jpg`` (folders 0700, files 0600; the collection's
folder is named by a hash because ids such as ``..`` are valid). A crop goes with its face:
DeleteFaces, DeleteCollection, erasure and face retention remove it, and the file is overwritten
with zeros before it is unlinked (on a journaling or copy-on-write file system, or an SSD, the
old blocks may still survive below the file system: see docs/privacy.md).

With a PostgreSQL store the crops live in its database instead, shared by every node
(``faceprint.store.pgblobs.PgCropStore``, the same methods): :func:`open_crop_store` picks.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from faceprint.home import private_folder, write_private

if TYPE_CHECKING:
    from faceprint.imaging import DecodedImage
    from faceprint.store.pgblobs import PgCropStore
    from faceprint.types import BoundingBox

FACE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_CROP = 4 * 1024 * 1024
"""Bytes one crop may have (a face crop is a few kilobytes; this only bounds a mistake)."""
CROP_SIDE = 160
"""Pixels of a crop's longer side (a thumbnail, not a copy of the enrolment photo)."""
MARGIN = 0.25
"""Share of the face box added on each side."""
QUALITY = 85


def crop_jpeg(image: DecodedImage, box: BoundingBox, side: int = CROP_SIDE) -> bytes:
    """The face in ``box`` (ratios of ``image``) with a margin, scaled so its longer side is at most
    ``side`` pixels, as JPEG bytes (what IndexFaces keeps where a collection keeps crops)."""
    import cv2

    w, h = image.width, image.height
    left, top = (box.left - MARGIN * box.width) * w, (box.top - MARGIN * box.height) * h
    right = (box.left + (1 + MARGIN) * box.width) * w
    bottom = (box.top + (1 + MARGIN) * box.height) * h
    x0, y0 = max(0, int(left)), max(0, int(top))
    x1, y1 = min(w, max(x0 + 1, int(round(right)))), min(h, max(y0 + 1, int(round(bottom))))
    face = image.bgr[y0:y1, x0:x1]
    scale = min(1.0, side / max(face.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(face.shape[1] * scale)), max(1, round(face.shape[0] * scale)))
        face = cv2.resize(face, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:
        raise ValueError("the crop could not be encoded")
    return encoded.tobytes()


class CropStore:
    """The face crops under ``folder`` (``HOME/crops``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def collection_folder(self, collection_id: str) -> Path:
        return self.folder / hashlib.sha256(collection_id.encode()).hexdigest()

    def path(self, collection_id: str, face_id: str) -> Path:
        """Where the crop of ``face_id`` is (or would be); ValueError for anything but a face id."""
        if not isinstance(face_id, str) or not FACE_ID.fullmatch(face_id):
            raise ValueError(f"not a face id: {face_id!r}")
        return self.collection_folder(collection_id) / f"{face_id}.jpg"

    def save(self, collection_id: str, face_id: str, jpeg: bytes) -> Path:
        """Store one crop (written to a temporary name and renamed: never a torn file)."""
        if not isinstance(jpeg, bytes | bytearray) or not jpeg or len(jpeg) > MAX_CROP:
            raise ValueError("a crop is 1 byte to 4 MiB of JPEG")
        path = self.path(collection_id, face_id)
        private_folder(self.folder)
        private_folder(path.parent)
        write_private(path, lambda out: out.write(jpeg))
        return path

    def get(self, collection_id: str, face_id: str) -> bytes | None:
        """The crop's JPEG, or None where none is kept."""
        try:
            return self.path(collection_id, face_id).read_bytes()
        except (FileNotFoundError, ValueError):
            return None

    def has(self, collection_id: str, face_id: str) -> bool:
        """Whether a crop of ``face_id`` is kept."""
        try:
            return self.path(collection_id, face_id).is_file()
        except (ValueError, OSError):
            return False

    def face_ids(self, collection_id: str) -> Iterator[str]:
        """The faces of ``collection_id`` that have a crop."""
        folder = self.collection_folder(collection_id)
        if folder.is_dir():
            for path in folder.glob("*.jpg"):
                if FACE_ID.fullmatch(path.stem):
                    yield path.stem

    def delete(self, collection_id: str, face_ids: Iterable[str]) -> int:
        """Erase the crops of ``face_ids`` (those that have one); answers how many were erased."""
        erased = 0
        for face_id in face_ids:
            try:
                path = self.path(collection_id, face_id)
            except ValueError:
                continue
            erased += shred(path)
        return erased

    def drop(self, collection_id: str) -> int:
        """Erase every crop of the collection and its folder; answers how many crops were erased."""
        folder = self.collection_folder(collection_id)
        if not folder.is_dir():
            return 0
        erased = 0
        for path in folder.iterdir():
            erased += shred(path) and path.suffix == ".jpg"
        with contextlib.suppress(OSError):
            folder.rmdir()
        return erased


def open_crop_store(home: Path, store_url: str | None) -> CropStore | PgCropStore:
    """The crops of ``home``'s deployment: in the PostgreSQL database ``store_url`` names (every node's),
    else under ``HOME/crops``."""
    from faceprint.backends import is_postgres

    if is_postgres(store_url):
        from faceprint.store.pgblobs import PgCropStore  # psycopg is imported for PostgreSQL only

        return PgCropStore(str(store_url))
    return CropStore(Path(home) / "crops")


def shred(path: Path) -> bool:
    """Overwrite ``path`` with zeros, flush it and unlink it; False if there was no such file."""
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    except OSError:  # not a regular file we can write (a link, a folder): just remove it
        with contextlib.suppress(OSError):
            path.unlink()
        return True
    try:
        left = os.fstat(fd).st_size
        zeros = bytes(min(left, 1 << 16))
        while left > 0:
            left -= os.write(fd, zeros[:left])
        os.fsync(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return True
