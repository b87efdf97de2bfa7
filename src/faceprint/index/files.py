"""Index files: a derived copy of a collection's index, so that opening a large one is fast.

A file is private (0600, in a 0700 folder: it holds face vectors). It is written to a temporary
name, flushed, fsynced and renamed over the old one, so a crash leaves either the old file or
the new one, never a torn one. A file that cannot be read
(truncated, corrupt, another format) is ignored and the index is rebuilt from the store; a file
that is read is only a starting point: the caller brings it up to date from the store.
A file must not outlive the faces it holds: ``erase`` removes it and its temporary files when
faces are deleted, and ``load`` reports how many deleted (flagged) rows a file still holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from faceprint.home import private_folder, write_private
from faceprint.index.hybrid import CollectionIndex

FORMAT = 4
"""4: the quantized copy is an inverted file (``index.quantized``). A file of format 3 (flat
quantized shards) is read too: its vectors and ids are kept and quantized again as format 4."""
READS = (3, FORMAT)
META_KEYS = ("created", "writes", "deletes", "max_seq")
ORPHAN_AGE = 3600.0
"""A temporary file this old whose writer's pid is gone is removed (pids can repeat across
containers that share the folder, so age is checked too)."""
log = logging.getLogger(__name__)


def index_path(folder: Path, collection_id: str) -> Path:
    """One file a collection; named by a hash because ids such as ``..`` are valid."""
    return folder / f"{hashlib.sha256(collection_id.encode()).hexdigest()}.fpindex"


def save(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``CollectionIndex.arrays(...)`` and its metadata atomically."""
    arrays["meta"] = np.frombuffer(json.dumps({**meta, "format": FORMAT}).encode(), np.uint8)
    private_folder(path.parent)
    _remove_orphans(path)
    write_private(path, lambda out: np.savez(out, **arrays), f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power cut
    finally:
        os.close(fd)


def load(path: Path, dim: int, **settings: int) -> tuple[CollectionIndex, dict[str, Any]] | None:
    """The index and its metadata (with ``deleted_rows``: rows of removed faces the file holds),
    or None if there is no readable file of this format."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if not isinstance(meta, dict) or meta.get("format") not in READS or meta.get("dim") != dim:
                return None
            for key in META_KEYS:
                if not isinstance(meta.get(key), int | float):
                    raise ValueError(f"metadata {key!r} missing")
            arrays = {name: data[name] for name in data.files if name != "meta"}
        index = CollectionIndex.from_arrays(dim, arrays, **settings)
        return index, {**meta, "deleted_rows": len(arrays["ids"]) - len(index)}
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - any damage (numpy, zip, json, faiss) means: rebuild
        log.warning("ignoring unreadable index file %s (%s); rebuilding from the store", path, error)
        return None


def _remove_orphans(path: Path) -> None:
    """Temporary files left by processes that died while writing this index."""
    for orphan in path.parent.glob(f"{path.name}.tmp-*"):
        try:
            if time.time() - orphan.stat().st_mtime < ORPHAN_AGE:
                continue
            os.kill(int(orphan.name.split("-")[-2]), 0)
        except FileNotFoundError:
            continue
        except (ProcessLookupError, ValueError, IndexError):
            with contextlib.suppress(FileNotFoundError):
                orphan.unlink()
        except PermissionError:
            pass  # alive, someone else's


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def erase(path: Path) -> None:
    """Remove the index file and every temporary file of it (faces were deleted: their vectors must
    not stay on disk). A save in flight, in this process or another, then fails to rename its file."""
    remove(path)
    for temporary in path.parent.glob(f"{path.name}.tmp-*"):
        remove(temporary)
