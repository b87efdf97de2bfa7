"""Bulk import: index every image under some paths into a collection, on all cores, resumably.

Worker processes (one single-threaded ``Faceprint`` each) decode, detect and embed; this
process is the one writer. Each image's faces and the record that the image is done (keyed by
the SHA-256 of its bytes) are committed in one transaction, so after a crash or ``kill -9`` a
re-run skips exactly the images already committed: no image is lost, none is indexed twice.
Workers exit by themselves within a second when the importer dies, ``kill -9`` included.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import multiprocessing
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceprint.errors import FaceprintError, InvalidParameterException
from faceprint.index.cache import SAVE_MIN
from faceprint.processes import exit_with_parent

if TYPE_CHECKING:
    from faceprint.audit.caller import Caller

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.\-:]")

_worker: Any = None


def find_images(paths: list[str | Path]) -> list[Path]:
    """Image files named, or found (recursively) in folders named, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise InvalidParameterException(f"No such file or folder: {path}")
    return list(dict.fromkeys(found))


def external_id_for(path: Path) -> str:
    """The file name without its suffix, made to fit ExternalImageId's pattern."""
    return _UNSAFE.sub("_", path.stem)[:255] or "image"


def read_external_ids(csv_path: str | Path) -> dict[str, str]:
    """A CSV of ``path,external_image_id`` rows (a header row is allowed): keys are the paths
    as written and their file names."""
    out: dict[str, str] = {}
    with open(csv_path, newline="") as fh:
        for row in csv.reader(fh):
            if len(row) < 2 or row[0].strip().lower() == "path":
                continue
            out[row[0].strip()] = out[Path(row[0].strip()).name] = row[1].strip()
    return out


@dataclass
class Summary:
    images: int = 0
    indexed_images: int = 0
    faces_indexed: int = 0
    skipped_already_indexed: int = 0
    images_without_faces: int = 0
    unindexed_faces: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"Images": self.images, "IndexedImages": self.indexed_images, "FacesIndexed": self.faces_indexed,
                "SkippedAlreadyIndexed": self.skipped_already_indexed,
                "ImagesWithoutFaces": self.images_without_faces,
                "UnindexedFaces": dict(self.unindexed_faces), "Errors": dict(self.errors),
                "Seconds": round(self.seconds, 2),
                "ImagesPerSecond": round((self.images - self.skipped_already_indexed) / self.seconds, 2)
                if self.seconds > 0 else 0.0}


def _init(options: dict[str, Any], parent: int) -> None:
    global _worker
    exit_with_parent(parent)
    import cv2

    from faceprint.service import Faceprint

    cv2.setNumThreads(1)
    _worker = Faceprint(**options, threads=1)


def _analyze(job: tuple[bytes, str, bool]) -> tuple[Any, list[bytes]]:
    """One image's analysis (its pixels stay in the worker) and, with ``crops``, a JPEG crop of each
    face (for a collection that keeps face crops)."""
    data, quality_filter, crops = job
    try:
        analysis = _worker.analyze(data, quality_filter=quality_filter)
    except FaceprintError as exc:
        return exc, []
    if crops and analysis.image is not None:
        from faceprint.crops import crop_jpeg

        return dataclasses.replace(analysis, image=None), [crop_jpeg(analysis.image, f.bounding_box)
                                                           for f in analysis.faces]
    return dataclasses.replace(analysis, image=None), []


class BulkImporter:
    def __init__(self, fp: Any, collection_id: str, workers: int | None = None, max_faces: int | None = None,
                 quality_filter: str = "AUTO", progress: Callable[[int, int, float], None] | None = None,
                 on_image: Callable[[Path, dict[str, Any]], None] | None = None,
                 caller: Caller | None = None) -> None:
        self.fp = fp
        self.collection_id = collection_id
        self.workers = workers or os.cpu_count() or 1
        self.max_faces = max_faces
        self.quality_filter = quality_filter
        self.progress = progress or (lambda done, total, start: None)
        self.on_image = on_image or (lambda path, record: None)
        self.caller = caller
        """Who imports (``faceprint.audit.caller.Caller``; default the OS user): each image's faces are
        recorded in the audit log as one IndexFaces entry (with the image's SHA-256) before they are stored."""
        self.crops = False
        """The collection keeps face crops: the workers make one of each face."""

    def run(self, images: list[Path], external_ids: dict[str, str] | None = None) -> Summary:
        from faceprint.audit.caller import resolve

        self.caller = resolve(self.caller)  # before any work: a key that must give a case is refused now
        self.fp.describe_collection(self.collection_id)  # exists, and matches this profile
        self.fp.models.pull(self.fp.profile.model_files())  # fetched once here, not by every worker
        external_ids = external_ids or {}
        done = self.fp.store.imported(self.collection_id)
        self.crops = self.fp.settings_store.get(self.collection_id).keep_face_crops
        summary = Summary(images=len(images))
        start = time.monotonic()
        todo = []
        for path in images:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest in done:
                summary.skipped_already_indexed += 1
            else:
                done.add(digest)  # a second copy of the same image in this run is skipped too
                todo.append((path, digest))
        options = {"home": self.fp.home, "profile": self.fp.profile.name, "models_dir": self.fp.models.root,
                   "limits": self.fp.limits}
        # spawn, not fork: forking a process whose inference libraries run threads can deadlock
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init,
                                 initargs=(options, os.getpid())) as pool:
            for count, ((path, digest), result) in enumerate(self._results(pool, todo), start=1):
                ext = external_ids.get(str(path)) or external_ids.get(path.name) or external_id_for(path)
                self._store(path, digest, ext, result, summary)
                self.progress(count, len(todo), start)
        if self.fp.store.count_faces(self.collection_id) >= SAVE_MIN:
            self.fp.collections.index(self.collection_id)  # the index file, so that the next search opens it fast
            self.fp.save_indexes()
        summary.seconds = time.monotonic() - start
        return summary

    def _results(self, pool: ProcessPoolExecutor, todo: list[tuple[Path, str]]) -> Iterator[tuple[Any, Any]]:
        window: list[tuple[tuple[Path, str], Future[Any]]] = []
        for item in todo:
            window.append((item, pool.submit(_analyze, (item[0].read_bytes(), self.quality_filter, self.crops))))
            if len(window) >= 2 * self.workers:
                head, future = window.pop(0)
                yield head, future.result()
        for head, future in window:
            yield head, future.result()

    def _store(self, path: Path, digest: str, external_id: str, outcome: tuple[Any, list[bytes]],
               summary: Summary) -> None:
        result, crops = outcome
        if isinstance(result, FaceprintError):
            self.fp.store.add_faces([], (self.collection_id, digest, result.code))
            summary.errors[result.code] += 1
            self.on_image(path, {"Path": str(path), "Error": result.code, "Message": result.message})
            return
        indexed = self.fp.store_analysis(self.collection_id, result, external_id, self.max_faces, digest,
                                         caller=self.caller)
        for record, jpeg in zip(indexed.face_records, crops, strict=False):  # the stored faces come first
            self.fp.crops.save(self.collection_id, record.face.face_id, jpeg)
        summary.faces_indexed += len(indexed.face_records)
        summary.indexed_images += bool(indexed.face_records)
        summary.images_without_faces += not indexed.face_records
        for face in indexed.unindexed_faces:
            summary.unindexed_faces.update(face.reasons)
        self.on_image(path, {"Path": str(path), "ExternalImageId": external_id,
                             "FaceIds": [r.face.face_id for r in indexed.face_records]})
