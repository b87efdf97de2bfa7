"""Deletion erases data on disk: after DeleteFaces, DeleteUser, DeleteCollection or a video job's
expiry, no file under the home (database, its WAL and shared memory, index files) still holds
the deleted faces' external image ids, vectors or user ids, or the job's results.

Real SQLite, real index files, real LFW faces (analysed once, stored in fresh homes)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from conftest import LFW, models_dir
from faceprint.index import files

FILLER = 60
"""Faces kept in the collection beside the deleted ones, so deleted rows share pages with live ones."""
DOOMED = 4
INDEX = {"exact_below": 30, "tail_limit": 10, "rerank": 20, "shards": 2}
"""Quantized from 30 faces: removed rows stay in the index, flagged, until a tenth are removed."""


@pytest.fixture(scope="module")
def analyses(fast) -> list:
    """One face each from distinct LFW people: unique vectors."""
    people = sorted(p for p in (LFW / "images").iterdir() if p.is_dir())[:80]
    found = []
    for person in people:
        analysis = fast.analyze(next(iter(sorted(person.glob("*.jpg")))))
        if len(analysis.faces) == 1:
            found.append(analysis)
    assert len(found) >= FILLER + DOOMED
    return found


def home(tmp_path: Path):
    from faceprint.service import Faceprint

    return Faceprint(tmp_path, profile="fast", models_dir=models_dir(), index_settings=INDEX)


def secret(name: str) -> str:
    return f"erase-{name}-{uuid.uuid4().hex}"


def store(fp, collection: str, analyses: list, external_id: str) -> list[str]:
    """Index each analysis as one image with ``external_id``; answers the face ids."""
    return [fp.collections.store_analysis(collection, a, external_id).face_records[0].face.face_id for a in analyses]


def vector_bytes(fp, collection: str, face_ids: list[str]) -> list[bytes]:
    return [np.asarray(f.vector, np.float32).tobytes() for f in fp.store.get_faces(collection, face_ids)]


def leftovers(root: Path, needles: list[bytes]) -> list[str]:
    """Every file under ``root`` that holds one of ``needles`` (a vector also counts if only its
    first 16 floats survive)."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path.relative_to(root)} holds {needle[:40]!r}" for needle in needles
                  if needle in data or (len(needle) > 64 and needle[:64] in data)]
    return found


def filled(tmp_path: Path, analyses: list, collection: str = "c") -> tuple:
    """A home with a collection of FILLER kept faces and DOOMED faces to delete, its index loaded and saved."""
    fp = home(tmp_path)
    fp.create_collection(collection)
    store(fp, collection, analyses[DOOMED:FILLER + DOOMED], "kept")
    name = secret("faces")
    doomed = store(fp, collection, analyses[:DOOMED], name)
    assert len(fp.collections.index(collection)) == FILLER + DOOMED  # loaded
    fp.save_indexes()
    index_file = files.index_path(tmp_path / "indexes", collection)
    needles = [name.encode(), *vector_bytes(fp, collection, doomed)]
    assert index_file.is_file() and len(leftovers(tmp_path, needles)) >= 3  # the db and the index file
    return fp, doomed, needles, index_file


def test_deleted_faces_leave_no_trace_in_any_file(tmp_path, analyses) -> None:
    fp, doomed, needles, index_file = filled(tmp_path, analyses)
    other = home(tmp_path)  # another process that never loaded the index
    assert sorted(other.delete_faces("c", doomed[:2]).deleted_faces) == sorted(doomed[:2])
    assert leftovers(tmp_path, needles[1:3]) == []  # their vectors (the others share the external id)
    fp.save_indexes()  # its index has not seen that delete yet: the file it writes must not hold them
    assert index_file.is_file() and leftovers(tmp_path, needles[1:3]) == []
    assert sorted(fp.delete_faces("c", doomed[2:]).deleted_faces) == sorted(doomed[2:])  # the process that loaded it
    assert leftovers(tmp_path, needles) == []

    index = fp.collections.index("c")
    assert index.quantized and index.frozen().count == FILLER + DOOMED  # the removed rows are only flagged
    fp.save_indexes()  # the file must not hold them
    assert leftovers(tmp_path, needles) == []
    loaded = files.load(index_file, fp.profile.dim)
    assert loaded is not None and loaded[1]["deleted_rows"] == 0 and len(loaded[0]) == FILLER
    again = home(tmp_path)
    assert len(again.collections.index("c")) == FILLER
    assert again.index_cache._cached["c"].saved_size == FILLER  # opened from the rewritten file


def test_an_index_file_left_holding_deleted_faces_goes_when_opened(tmp_path, analyses) -> None:
    fp, doomed, needles, index_file = filled(tmp_path, analyses)
    fp.store.delete_faces("c", doomed)  # as by a process that died before it could remove the file
    assert index_file.is_file() and leftovers(tmp_path / "indexes", needles[1:])
    fresh = home(tmp_path)
    assert len(fresh.collections.index("c")) == FILLER  # read, caught up through the deletion log
    assert leftovers(tmp_path, needles) == []


def test_a_deleted_user_leaves_no_trace_in_any_file(tmp_path, analyses) -> None:
    fp, doomed, needles, _ = filled(tmp_path, analyses)
    user = secret("user")
    fp.create_user("c", user, client_request_token=uuid.uuid4().hex)
    associated = fp.associate_faces("c", user, doomed[:2], user_match_threshold=0,
                                    client_request_token=uuid.uuid4().hex)
    assert len(associated.associated_faces) == 2
    fp.disassociate_faces("c", user, doomed[1:2], client_request_token=uuid.uuid4().hex)
    assert leftovers(tmp_path, [user.encode()])
    fp.delete_user("c", user, client_request_token=(token := uuid.uuid4().hex))  # and then the person's faces
    fp.delete_user("c", user, client_request_token=token)  # a retry answers as the first call did
    assert sorted(fp.delete_faces("c", doomed).deleted_faces) == sorted(doomed)
    assert leftovers(tmp_path, [user.encode(), *needles]) == []


def test_user_requests_are_recorded_as_digests_and_older_records_still_answer(tmp_path) -> None:
    from faceprint.errors import IdempotentParameterMismatchException

    fp = home(tmp_path)
    fp.create_collection("c")
    fp.create_user("c", "older")
    fp.store.put_token("c", "DeleteUser", "t-old", json.dumps({"UserId": "older"}), "{}")  # as before digests
    fp.delete_user("c", "older", client_request_token="t-old")  # replayed, not run
    assert fp.store.user_exists("c", "older")
    with pytest.raises(IdempotentParameterMismatchException):
        fp.delete_user("c", "other", client_request_token="t-old")
    fp.create_user("c", user := secret("user"), client_request_token="t-new")
    fp.create_user("c", user, client_request_token="t-new")
    with pytest.raises(IdempotentParameterMismatchException):
        fp.create_user("c", user + "x", client_request_token="t-new")
    recorded = fp.store.get_token("c", "CreateUser", "t-new")
    assert recorded is not None and user not in recorded[0]


def test_a_deleted_collection_leaves_no_trace_in_any_file(tmp_path, analyses) -> None:
    fp, doomed, needles, index_file = filled(tmp_path, analyses, "gone")
    fp.create_user("gone", user := secret("user"))
    fp.associate_faces("gone", user, doomed[:1])
    home(tmp_path).delete_collection("gone")  # a process that never loaded the index
    assert not index_file.exists()
    assert leftovers(tmp_path, [user.encode(), *needles]) == []
    fp.save_indexes()  # the process that had it loaded does not bring the file back
    assert leftovers(tmp_path, [user.encode(), *needles]) == []


def job(store, tag: str, expiry: float = 60.0):
    from faceprint.video.store import QUEUED, JobRow, new_secret

    row = JobRow(job_id=uuid.uuid4().hex, api="StartFaceSearch", status=QUEUED, status_message=None,
                 params={"CollectionId": "c"}, request_hash="0" * 64, client_token=uuid.uuid4().hex, job_tag=tag,
                 notification=None, notify_pending=False, source_kind="path", source="/nonexistent.mp4",
                 profile="fast", owner=None, secret=new_secret(), created=1000.0, started=None, finished=None,
                 expiry_seconds=expiry, expires=None, attempts=0, frames_done=0, frames_total=0, metadata=None,
                 limits={})
    return store.insert(row, 100)


def match(name: str, second: int) -> object:
    from faceprint.video.context import Item

    body = {"Timestamp": second * 1000, "Person": {"Index": 0},
            "FaceMatches": [{"Similarity": 99.1, "Face": {"FaceId": str(uuid.uuid4()), "ExternalImageId": name}}]}
    return Item(second * 1000, 0, json.loads(json.dumps(body)))


def test_an_expired_video_job_leaves_no_trace_in_any_file(tmp_path) -> None:
    from faceprint.video.store import FAILED, SUCCEEDED, JobStore

    store = JobStore(tmp_path / "video" / "jobs.db")
    kept = job(store, "kept")
    assert store.claim("runner-1", 1001.0, ("path",)) is not None
    store.add_items(kept.job_id, "runner-1", [match("kept", s) for s in range(50)])
    assert store.finish(kept.job_id, "runner-1", SUCCEEDED, None, 1002.0, [match("kept", 50)])

    name, tag = secret("video"), secret("tag")
    doomed = job(store, tag, expiry=10.0)
    assert store.claim("runner-1", 1003.0, ("path",)) is not None
    assert store.add_items(doomed.job_id, "runner-1", [match(name, s) for s in range(30)])
    assert store.finish(doomed.job_id, "runner-1", SUCCEEDED, None, 1004.0, [match(name, 30)])
    assert leftovers(tmp_path, [name.encode(), tag.encode()])
    assert store.sweep(1020.0) == [doomed.job_id]  # expired; the other job's results stay
    assert leftovers(tmp_path, [name.encode(), tag.encode()]) == []
    assert len(store.page(store.get(kept.job_id), "TIMESTAMP", 100, None)[0]) == 51

    failed_name = secret("failed")  # a job that fails drops the items it had written
    failing = job(store, "failing")
    assert store.claim("runner-2", 1030.0, ("path",)) is not None
    assert store.add_items(failing.job_id, "runner-2", [match(failed_name, s) for s in range(30)])
    assert store.finish(failing.job_id, "runner-2", FAILED, "bad video", 1031.0)
    assert leftovers(tmp_path, [failed_name.encode()]) == []


def test_the_deleting_process_writes_a_large_index_file_again_once_deletes_pause(tmp_path) -> None:
    from faceprint.index.cache import REWRITE_AFTER, SAVE_MIN, IndexCache
    from faceprint.service import Faceprint
    from faceprint.store import FaceRow
    from faceprint.store.sqlite import SQLiteStore

    now = [0.0]
    store = SQLiteStore(tmp_path / "faceprint.db")
    cache = IndexCache(store, tmp_path / "indexes", 128, clock=lambda: now[0], **INDEX)
    fp = Faceprint(tmp_path, profile="fast", models_dir=models_dir(), store=store, indexes=cache)
    fp.create_collection("c")
    vectors = np.random.default_rng(3).standard_normal((SAVE_MIN + 10, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [FaceRow(str(uuid.uuid4()), "c", "img", None, (0.5, 0.5, 0.2, 0.2), 99.0, v) for v in vectors]
    store.add_faces(rows)
    fp.collections.index("c")  # built from the store: large enough to be saved in the background
    cache.wait()
    index_file = files.index_path(tmp_path / "indexes", "c")
    assert index_file.is_file()

    fp.delete_faces("c", [rows[7].face_id])
    assert not index_file.exists()
    now[0] = REWRITE_AFTER / 2  # a search soon after: deletes may go on, no rewrite yet
    fp.collections.index("c")
    cache.wait()
    assert not index_file.exists()
    now[0] = REWRITE_AFTER + 1  # a minute without a delete: the next search writes it again
    fp.collections.index("c")
    cache.wait()
    loaded = files.load(index_file, 128)
    assert loaded is not None and loaded[1]["deleted_rows"] == 0 and len(loaded[0]) == SAVE_MIN + 9
    assert leftovers(tmp_path / "indexes", [vectors[7].tobytes()]) == []
