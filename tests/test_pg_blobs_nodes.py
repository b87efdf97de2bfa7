"""Face crops and stored probes shared by the nodes of a PostgreSQL deployment, end to end on real
faces: two ``Faceprint`` nodes (each its own home) on one real database see each other's crops, a
DeleteFaces or DeleteCollection on one removes them for both, ``erase`` on one removes the stored
probe the other kept, and nothing is left in either home; ``faceprint migrate`` carries an embedded
home's crops and stored probes over, checked by digest, and a new node reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import LFW, models_dir
from pg import pg  # noqa: F401

PERSON = "Paul_Wolfowitz"


def photo(number: int) -> bytes:
    return sorted((LFW / "images" / PERSON).glob("*.jpg"))[number - 1].read_bytes()


def node(home: Path, url: str | None):
    from faceprint.audit.config import AuditSettings
    from faceprint.service import Faceprint

    return Faceprint(home, profile="fast", models_dir=models_dir(), store_url=url,
                     audit=AuditSettings(store_probes=True))


def files_under(home: Path, *parts: str) -> list[Path]:
    folder = home.joinpath(*parts)
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.fixture()
def nodes(tmp_path: Path, request: pytest.FixtureRequest):
    url = request.getfixturevalue("pg").database()
    a, b = node(tmp_path / "a", url), node(tmp_path / "b", url)
    a.create_collection("people")
    a.update_collection_settings("people", keep_face_crops=True)  # one setting for both nodes
    return a, b, tmp_path


def test_a_crop_kept_by_one_node_is_shown_and_deleted_by_the_other(nodes) -> None:
    a, b, tmp_path = nodes
    first = a.index_faces("people", photo(1), "paul").face_records[0].face.face_id
    second = b.index_faces("people", photo(2), "paul").face_records[0].face.face_id
    from faceprint.console.pages.common import crop_available

    for fp in (a, b):
        assert fp.crops.get("people", first)[:3] == b"\xff\xd8\xff" and crop_available(fp, "people", second)
        assert sorted(fp.crops.face_ids("people")) == sorted([first, second])
    result = b.delete_faces("people", [first])
    assert result.deleted_faces == [first]
    assert a.crops.get("people", first) is None and not crop_available(a, "people", first)
    b.delete_collection("people")
    assert list(a.crops.face_ids("people")) == []
    assert files_under(tmp_path / "a", "crops") == [] and files_under(tmp_path / "b", "crops") == []


def test_erase_on_one_node_removes_the_probe_the_other_kept(nodes) -> None:
    a, b, tmp_path = nodes
    a.index_faces("people", photo(1), "paul")
    b.search_faces_by_image("people", photo(2), max_faces=3)  # the person's other photo: its probe kept
    from faceprint.console.pages.common import probe_kept

    (digest,) = a.probe_store.digests()
    assert a.probe_store.get(digest) == photo(2) and probe_kept(a, digest)
    erased = a.erase(external_image_id="paul")
    assert erased["ProbesErased"] == 1 and erased["CropsErased"] == 1
    assert b.probe_store.digests() == [] and b.probe_store.get(digest) is None and not probe_kept(b, digest)
    assert files_under(tmp_path / "b", "audit", "probes") == []


def test_migrate_carries_crops_and_stored_probes(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from faceprint.ops.migrate import migrate

    home = tmp_path / "embedded"
    fp = node(home, None)
    fp.create_collection("people")
    fp.update_collection_settings("people", keep_face_crops=True)
    face = fp.index_faces("people", photo(1), "paul").face_records[0].face.face_id
    fp.search_faces_by_image("people", photo(2), max_faces=3)
    crop, (digest,) = fp.crops.get("people", face), fp.probe_store.digests()
    url = request.getfixturevalue("pg").database()
    report = {m.part: m for m in migrate(home, None, url)}
    assert (report["crops"].outcome, report["crops"].counts) == ("moved", {"crops_faces": 1})
    assert (report["probes"].outcome, report["probes"].counts) == ("moved", {"probes_stored": 1})
    again = {m.part: m.outcome for m in migrate(home, None, url)}
    assert (again["crops"], again["probes"]) == ("already moved", "already moved")
    other = node(tmp_path / "new-node", url)
    assert other.crops.get("people", face) == crop and other.probe_store.get(digest) == photo(2)
    assert other.probe_store.prune(1.0) == 0  # its time of use came with it (the file's)
