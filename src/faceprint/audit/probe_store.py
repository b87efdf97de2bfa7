"""Probe images: their digest (kept in every audit entry of a search by image) and, where the
operator turns it on (``AuditSettings.store_probes``), the probe itself, under
``HOME/audit/probes/<sha256>.<ext>`` (folder 0700, files 0600).

The digest is of the bytes as submitted (an image file's or request's bytes); a numpy array given
to the Python API is encoded as PNG first, and the digest (and stored probe) is that PNG's, so a
stored probe always hashes to its name. A probe is stored once however many searches used it;
``delete`` overwrites it with zeros before unlinking it (erasure), ``prune`` removes those not
used by a search for longer than the probe retention.

With a PostgreSQL store the probes live in its database instead, shared by every node
(``faceprint.store.pgblobs.PgProbeStore``, the same methods): :func:`open_probe_store` picks.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceprint.home import private_folder, write_private

if TYPE_CHECKING:
    from faceprint.store.pgblobs import PgProbeStore

SHA256 = re.compile(r"[0-9a-f]{64}")
EXTENSIONS = ("jpg", "png", "img")


@dataclass(frozen=True)
class Probe:
    """A probe image as the audit keeps it: its bytes and their SHA-256."""

    data: bytes
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> Probe:
        return cls(data, hashlib.sha256(data).hexdigest())

    @property
    def ext(self) -> str:
        return extension(self.data)


def extension(data: bytes) -> str:
    """The file extension a probe is stored with: jpg, png, or img (any other format)."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return "img"


def read_probe(image: Any, read_path: Callable[[Path], bytes], load: Callable[[Any], Any]) -> tuple[Any, Probe]:
    """What to decode and the :class:`Probe` of ``image`` (bytes, a path, an RGB array, a decoded
    image). A path is read once here (``read_path(path) -> bytes``, which checks the size limit)
    and its bytes are decoded, so the digest is of exactly what was searched. A decoded image's
    digest is of the bytes it was decoded from; an array is checked and made a decoded image by
    ``load`` (``Faceprint.load_image``) and its digest is its PNG's."""
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
        return data, Probe.of(data)
    if isinstance(image, str | os.PathLike):
        data = read_path(Path(image))
        return data, Probe.of(data)
    decoded = load(image)
    source = getattr(decoded, "source", None)  # decoded from bytes already (the server decodes first)
    return decoded, Probe.of(source) if source is not None else Probe.of(png(decoded.rgb))


def png(rgb: np.ndarray) -> bytes:
    """An RGB array as PNG bytes (deterministic for one OpenCV version)."""
    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise ValueError("the probe could not be encoded")
    return encoded.tobytes()


class ProbeStore:
    """The stored probes under ``folder`` (``HOME/audit/probes``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, sha256: str, ext: str) -> Path:
        if not isinstance(sha256, str) or not SHA256.fullmatch(sha256) or ext not in EXTENSIONS:
            raise ValueError(f"not a probe name: {sha256!r}.{ext!r}")
        return self.folder / f"{sha256}.{ext}"

    def save(self, probe: Probe) -> bool:
        """Store ``probe`` (written to a temporary name, synced and renamed); False if it was
        stored already (by an earlier search: its time is set to now, as retention counts from the
        last search that used it). OSError if it cannot be written."""
        path = self.path(probe.sha256, probe.ext)
        if path.exists():
            os.utime(path)
            return False
        private_folder(self.folder.parent)
        private_folder(self.folder)
        write_private(path, lambda out: out.write(probe.data))
        return True

    def find(self, sha256: str) -> Path | None:
        """The stored probe with this digest, or None."""
        for ext in EXTENSIONS:
            path = self.path(sha256, ext)
            if path.is_file():
                return path
        return None

    def has(self, sha256: str) -> bool:
        """Whether the probe with this digest is kept."""
        try:
            return self.find(sha256) is not None
        except (OSError, ValueError):
            return False

    def get(self, sha256: str) -> bytes | None:
        """The stored probe's bytes, or None where it is not kept."""
        try:
            path = self.find(sha256)
            return path.read_bytes() if path is not None else None
        except (OSError, ValueError):
            return None

    def delete(self, sha256: str) -> bool:
        """Erase the stored probe with this digest (zeros first); False if none was kept."""
        from faceprint.crops import shred

        try:
            path = self.find(sha256)
        except ValueError:
            return False
        return path is not None and shred(path)

    def digests(self) -> list[str]:
        """The digests of the probes kept."""
        if not self.folder.is_dir():
            return []
        return sorted(p.name.split(".")[0] for p in self.folder.iterdir()
                      if p.name.count(".") == 1 and SHA256.fullmatch(p.name.split(".")[0]))

    def prune(self, older_than_days: float, now: float | None = None) -> int:
        """Erase the probes last used by a search more than ``older_than_days`` ago; answers how many."""
        now = time.time() if now is None else now
        cutoff = now - older_than_days * 86400
        erased = 0
        for digest in self.digests():
            path = self.find(digest)
            if path is not None and path.stat().st_mtime < cutoff:
                erased += self.delete(digest)
        return erased


def open_probe_store(home: Path, store_url: str | None) -> ProbeStore | PgProbeStore:
    """The stored probes of ``home``'s deployment: in the PostgreSQL database ``store_url`` names (every
    node's), else under ``HOME/audit/probes``."""
    from faceprint.backends import is_postgres

    if is_postgres(store_url):
        from faceprint.store.pgblobs import PgProbeStore  # psycopg is imported for PostgreSQL only

        return PgProbeStore(str(store_url))
    return ProbeStore(Path(home) / "audit" / "probes")
