"""Deletion erases data on disk: after DeleteFaces, DeleteUser, DeleteCollection or a video job's
expiry, no file under the home (database, its WAL and shared memory, index files) still holds
the deleted faces' external image ids, vectors or user ids, or the job's results.

Real SQLite, real index files, real LFW faces (analysed once, stored in fresh homes)."""

from __future__ import annotations

import json
import re
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


# -- faceprint erase: one person out of everything --------------------------------------------------------
PERSON = "Paul_Wolfowitz"
"""Many photos: one to index in two collections, one to search with."""


def holding(root: Path, blobs: list[bytes]) -> list[str]:
    """Every file under ``root`` that holds one of ``blobs`` whole (an image: its header is common to many)."""
    return [f"{p.relative_to(root)}" for p in sorted(root.rglob("*")) if p.is_file()
            for blob in blobs if blob in p.read_bytes()]


def file_sink_snapshots(home: Path, *frames: dict[str, int]) -> Path:
    """A file sink with snapshots among the home's data streams, and its snapshot folder holding
    ``frames`` ({face id: frame number}): one JPEG per frame, linked under each face's name."""
    from faceprint.streams.config import StreamConfig

    sink = home / "sinks" / "faces.jsonl"
    StreamConfig(home).add_data_stream("faces", f"file:{sink};snapshots")
    folder = sink.with_name(sink.name + ".snapshots")
    folder.mkdir(parents=True)
    for frame in frames:
        first = None
        for face_id, number in frame.items():
            path = folder / f"{number}-{face_id}.jpg"
            if first is None:
                path.write_bytes(b"\xff\xd8\xff frame %d" % number)
                first = path
            else:
                path.hardlink_to(first)
    return folder


def erasing_home(tmp_path: Path):
    from faceprint.audit.config import AuditSettings
    from faceprint.service import Faceprint

    return Faceprint(tmp_path, profile="fast", models_dir=models_dir(), index_settings=INDEX,
                     audit=AuditSettings(store_probes=True))


def photo(number: int) -> bytes:
    """The person's ``number``-th photo (from 1)."""
    return sorted((LFW / "images" / PERSON).glob("*.jpg"))[number - 1].read_bytes()


def stream_events(home: Path):
    """The home's stream processor store with one processor (events need one)."""
    from faceprint.streams.store import ProcessorStore
    from faceprint.streams.types import ProcessorRow

    events = ProcessorStore(home / "streams" / "processors.db")
    events.insert(ProcessorRow("door", "arn:aws:rekognition:x:1:streamprocessor/door", "STOPPED", None, 1.0, 1.0,
                               {}), 10)
    return events


def alert(face_id: str, external_id: str | None) -> tuple[str, str]:
    face = {"FaceId": face_id, **({"ExternalImageId": external_id} if external_id else {})}
    return ("alert", json.dumps({"Alert": {"TrackId": 1, "MatchedFaces": [{"Similarity": 99.0, "Face": face}]}}))


def search_item(second: int, *faces: tuple[str, str | None]) -> object:
    from faceprint.video.context import Item

    matches = [{"Similarity": 98.0, "Face": {"FaceId": f, **({"ExternalImageId": e} if e else {})}} for f, e in faces]
    return Item(second * 1000, 0, {"Timestamp": second * 1000, "Person": {"Index": 0}, "FaceMatches": matches})


def finished_search(home: Path, items: list) -> tuple:
    from faceprint.video.runner import store_path
    from faceprint.video.store import SUCCEEDED, JobStore

    store = JobStore(store_path(home))
    row = job(store, "t")
    assert store.claim("runner", 1001.0, ("path",)) is not None
    assert store.finish(row.job_id, "runner", SUCCEEDED, None, 1002.0, items)
    return store, row.job_id


def test_erase_by_external_image_id_removes_the_person_everywhere(tmp_path, analyses) -> None:
    from faceprint.audit.log import AuditFilter

    fp = erasing_home(tmp_path)
    name = secret("person")
    for cid in ("a", "b"):
        fp.create_collection(cid)
        store(fp, cid, analyses[:35], "kept")  # quantized from 30: index files with codes
    fp.update_collection_settings("b", keep_face_crops=True)
    in_a = fp.index_faces("a", photo(1), name).face_records[0].face.face_id
    in_b = fp.index_faces("b", photo(1), name).face_records[0].face.face_id
    extra_b = fp.index_faces("b", photo(3), name).face_records[0].face.face_id
    crop = fp.crops.get("b", in_b)
    assert crop is not None and fp.crops.get("a", in_a) is None  # only b keeps crops
    fp.create_user("b", owner := secret("owner"))  # a user of none but this person's faces: it goes
    fp.associate_faces("b", owner, [in_b, extra_b], user_match_threshold=0)
    other = store(fp, "a", analyses[40:41], "other")[0]
    fp.create_user("a", mixed := secret("mixed"))  # a user with another face too: it stays
    fp.associate_faces("a", mixed, [in_a, other], user_match_threshold=0)

    found = fp.search_faces_by_image("a", photo(2), max_faces=3)  # the person's other photo: probe kept
    assert in_a in {m.face.face_id for m in found.face_matches}
    unrelated = fp.search_faces_by_image("a", analyses[50].image.rgb, max_faces=1, face_match_threshold=99)
    assert not {m.face.face_id for m in unrelated.face_matches} & {in_a}
    assert len(fp.probe_store.digests()) == 2
    fp.save_indexes()
    jobs, job_id = finished_search(tmp_path, [search_item(1, (in_a, name), (other, "other")),
                                              search_item(2, (in_b, name))])
    events = stream_events(tmp_path)
    events.add_events("door", [alert(in_b, name), alert(other, "other")])
    frames = file_sink_snapshots(tmp_path, {in_b: 1, other: 1}, {other: 2})  # frame 1 shows both
    needles = [*vector_bytes(fp, "a", [in_a]), *vector_bytes(fp, "b", [in_b, extra_b])]
    assert len(leftovers(tmp_path, needles)) >= 3 and len(holding(tmp_path, [crop, photo(2)])) == 2

    erased = fp.erase(external_image_id=name, case="request-17")
    assert erased["FacesErased"] == 3 and erased["UsersErased"] == 1 and erased["CropsErased"] == 2
    assert erased["Collections"] == [{"CollectionId": "a", "FaceIds": [in_a], "UserIds": []},
                                     {"CollectionId": "b", "FaceIds": sorted([in_b, extra_b]), "UserIds": [owner]}]
    assert (erased["VideoJobs"], erased["VideoMatchesErased"]) == ([job_id], 2)
    assert (erased["StreamEventsErased"], erased["ProbesErased"], erased["SnapshotsErased"]) == (1, 1, 2)
    assert sorted(p.name for p in frames.iterdir()) == [f"2-{other}.jpg"]

    assert fp.store.faces_named(name) == [] and len(fp.list_faces("b").faces) == 35
    assert not fp.store.user_exists("b", owner)
    assert fp.store.user_exists("a", mixed) and [f.face_id for f in fp.list_faces("a", user_id=mixed).faces] == [other]
    own = np.frombuffer(needles[0], np.float32)  # the person's own vector finds no face of theirs
    assert not {m.face.face_id for m in fp.collections.search("a", own, 5, 0.0)} & {in_a}
    items = jobs.page(jobs.get(job_id), "TIMESTAMP", 10, None)[0]
    assert [[m["Face"]["FaceId"] for m in i.get("FaceMatches", [])] for i in items] == [[other], []]
    assert [json.loads(body)["Alert"]["MatchedFaces"][0]["Face"]["FaceId"]
            for _, _, body in events.events_after("door", 0)] == [other]
    assert len(fp.probe_store.digests()) == 1  # the unrelated search's probe stays
    fp.save_indexes()
    assert leftovers(tmp_path, needles) == [] and holding(tmp_path, [crop, photo(2)]) == []

    (entry,) = fp.audit_log.query(AuditFilter(operation="Erase"))
    assert entry.entry.caller.case == "request-17" and entry.seq == erased["AuditId"]
    details = entry.entry.details
    assert details["ExternalImageId"] == name and details["FacesErased"] == 3
    assert details["Collections"][1]["UserIds"] == [owner]


def test_erase_by_user_id_removes_the_user_and_its_faces(tmp_path, analyses) -> None:
    fp = home(tmp_path)
    faces = {}
    for n, cid in enumerate(("a", "b", "c")):
        fp.create_collection(cid)
        faces[cid] = store(fp, cid, analyses[6 * n:6 * n + 6], "x")  # vectors of one collection only
    user = secret("user")
    for cid in ("a", "b"):
        fp.create_user(cid, user)
        fp.associate_faces(cid, user, faces[cid][:2], user_match_threshold=0)
    only_b = fp.erase(user_id=user, collection_id="b")
    assert only_b["Collections"] == [{"CollectionId": "b", "FaceIds": sorted(faces["b"][:2]), "UserIds": [user]}]
    assert fp.store.user_exists("a", user) and not fp.store.user_exists("b", user)

    needles = [user.encode(), *vector_bytes(fp, "a", faces["a"][:2])]
    everywhere = fp.erase(user_id=user)
    assert everywhere["Collections"] == [{"CollectionId": "a", "FaceIds": sorted(faces["a"][:2]), "UserIds": [user]}]
    assert [len(fp.list_faces(c).faces) for c in ("a", "b", "c")] == [4, 4, 6]
    assert leftovers(tmp_path, needles[1:]) == []
    assert [f for f in leftovers(tmp_path, needles[:1]) if not f.startswith("audit/")] == []  # the Erase entry names it


def test_erase_asks_for_one_person_and_an_existing_collection(tmp_path) -> None:
    from faceprint.errors import InvalidParameterException, ResourceNotFoundException

    fp = home(tmp_path)
    fp.create_collection("c")
    with pytest.raises(InvalidParameterException):
        fp.erase()
    with pytest.raises(InvalidParameterException):
        fp.erase(external_image_id="x", user_id="y")
    with pytest.raises(InvalidParameterException):
        fp.erase(external_image_id="bad id with spaces")
    with pytest.raises(ResourceNotFoundException):
        fp.erase(external_image_id="x", collection_id="missing")
    nobody = fp.erase(external_image_id="nobody")  # nothing to erase: said so, and recorded
    assert nobody["FacesErased"] == 0 and nobody["Collections"] == [] and nobody["AuditId"] is not None


# -- face retention -------------------------------------------------------------------------------------
def test_retention_deletes_faces_older_than_their_collections_period(tmp_path, analyses) -> None:
    import time

    from faceprint.audit.log import AuditFilter
    from faceprint.store import FaceRow

    fp = erasing_home(tmp_path)
    for cid in ("short", "forever"):
        fp.create_collection(cid)
    fp.update_collection_settings("short", keep_face_crops=True, face_retention_days=1)
    old = [fp.index_faces("short", photo(n), "old").face_records[0].face.face_id for n in (1, 2)]
    kept_forever = store(fp, "forever", analyses[:3], "x")
    later = time.time() + 86400  # a face stored a day after the others
    fresh = FaceRow(str(uuid.uuid4()), "short", "img", "fresh", (0.5, 0.5, 0.2, 0.2), 99.0, analyses[5].vectors[0],
                    created=later)
    fp.store.add_faces([fresh])
    needles = vector_bytes(fp, "short", old)
    crops = [fp.crops.get("short", f) for f in old]
    assert all(crops) and fp.apply_retention()["FacesDeleted"] == 0  # not a day old yet

    done = fp.apply_retention(now=later + 86400 / 2)  # the first two are 1.5 days old, the fresh one half a day
    assert done["FacesDeleted"] == 2
    assert [(c["CollectionId"], c["FacesDeleted"]) for c in done["Collections"]] == [("short", 2)]
    assert [f.face_id for f in fp.list_faces("short").faces] == [fresh.face_id]
    assert len(fp.list_faces("forever").faces) == len(kept_forever)
    fp.save_indexes()
    assert leftovers(tmp_path, needles) == [] and holding(tmp_path, crops) == []

    (entry,) = fp.audit_log.query(AuditFilter(operation="RetentionDeleted"))
    assert entry.seq == done["Collections"][0]["AuditIds"][0]
    assert sorted(entry.entry.details["FaceIds"]) == sorted(old) and entry.entry.details["RetentionDays"] == 1
    assert entry.entry.caller.kind == "os" and entry.entry.collection_id == "short"  # who ran it


def test_retention_erases_stored_probes_older_than_their_period(tmp_path) -> None:
    import time

    from faceprint.audit.config import AuditSettings
    from faceprint.service import Faceprint

    fp = Faceprint(tmp_path, profile="fast", models_dir=models_dir(),
                   audit=AuditSettings(store_probes=True, probe_retention_days=1))
    fp.create_collection("c")
    fp.search_faces_by_image("c", photo(1))
    assert len(fp.probe_store.digests()) == 1
    assert fp.apply_retention()["ProbesErased"] == 0
    assert fp.apply_retention(now=time.time() + 2 * 86400)["ProbesErased"] == 1
    assert fp.probe_store.digests() == [] and holding(tmp_path, [photo(1)]) == []


def test_faces_stored_before_faces_were_dated_count_from_the_upgrade(tmp_path) -> None:
    import sqlite3

    from faceprint.store import FaceRow
    from faceprint.store.sqlite import SCHEMA, SQLiteStore

    path = tmp_path / "faceprint.db"
    old_schema = re.sub(r",\n\s*created REAL  --[^\n]*", "", SCHEMA)  # as faceprint wrote it before faces were dated
    assert old_schema != SCHEMA
    with sqlite3.connect(path) as db:
        db.executescript(old_schema)
        db.execute("INSERT INTO collections (collection_id, arn, face_model_version, dim, created) "
                   "VALUES ('c', 'arn', 'v', 2, 1.0)")
        db.execute("INSERT INTO faces (face_id, collection_id, image_id, width, height, left_, top, confidence, "
                   "vector) VALUES ('f', 'c', 'i', 1, 1, 0, 0, 99, ?)", (np.ones(2, np.float32).tobytes(),))
    store = SQLiteStore(path, clock=lambda: 5000.0)
    assert [f.created for f in store.list_faces("c", 0, 10)] == [5000.0]
    assert store.faces_before("c", 5000.0, 10) == [] and len(store.faces_before("c", 5000.1, 10)) == 1
    store.add_faces([FaceRow("g", "c", "i", None, (1, 1, 0, 0), 99.0, np.ones(2, np.float32))])
    assert SQLiteStore(path).get_faces("c", ["g"])[0].created == 5000.0  # reopened: no second migration


def test_the_retention_schedule_runs_until_stopped() -> None:
    import threading

    from faceprint.erasure import RetentionSchedule

    runs, ran = [], threading.Event()

    def apply(caller) -> None:
        assert caller.kind == "system"
        runs.append(1)
        if len(runs) == 1:
            raise OSError("disk full")  # logged; the schedule goes on
        ran.set()

    schedule = RetentionSchedule(apply, every=0.01)
    schedule.start()
    try:
        assert ran.wait(30)
    finally:
        schedule.stop()
    count = len(runs)
    assert count >= 2 and schedule._thread is None and len(runs) == count


def test_the_erase_and_retention_commands(tmp_path, analyses, capsys) -> None:
    from faceprint.cli import main

    fp = home(tmp_path)
    fp.create_collection("c")
    face = store(fp, "c", analyses[:1], name := secret("cli"))[0]
    base = ["--home", str(tmp_path), "--profile", "fast"]
    assert main(["erase", "--external-image-id", name, "--purpose", "erasure request", *base]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["Collections"] == [{"CollectionId": "c", "FaceIds": [face], "UserIds": []}] and out["AuditId"]
    assert main(["erase", "--user-id", "u", "--collection-id", "missing", *base]) == 1
    assert "ResourceNotFoundException" in capsys.readouterr().err
    assert main(["retention", "apply", *base]) == 0
    assert json.loads(capsys.readouterr().out) == {"Collections": [], "FacesDeleted": 0}
