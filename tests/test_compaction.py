"""``faceprint compact`` and ``Faceprint.compact``: with the PostgreSQL store, a deleted face's bytes
leave the database's table files now (its collection's partition and the crops and probes tables
rewritten), not at a later rewrite; the embedded store, which erases as it deletes, has nothing to do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faceprint.cli import main
from faceprint.errors import ResourceNotFoundException
from faceprint.service import Faceprint
from pg import PgServer, pg  # noqa: F401
from test_store_postgres_erasure import PER_COLLECTION, filled, traces  # noqa: F401


def test_compact_rewrites_what_a_small_delete_left(pg: PgServer, filled, tmp_path: Path, capsys) -> None:  # noqa: F811
    store, found, database = filled
    url = store.url
    last = PER_COLLECTION - 1
    store.delete_faces("a", [f"a{last}"])
    store.delete_faces("b", [f"b{last}"])
    assert traces(pg, database, found["a"][last:]) == 1  # a delete under the share leaves the bytes
    assert main(["--home", str(tmp_path), "--store", url, "compact", "--collection-id", "a"]) == 0
    assert json.loads(capsys.readouterr().out) == {"Collections": ["a"], "Tables": ["Crops", "Probes"]}
    assert traces(pg, database, found["a"][last:]) == 0 and traces(pg, database, found["a"]) == last
    assert traces(pg, database, found["b"][last:]) == 1  # only the collection named
    fp = Faceprint(tmp_path / "node", store_url=url)
    assert fp.compact()["Collections"] == ["a", "b"]  # every collection
    with pytest.raises(ResourceNotFoundException):
        fp.compact(["nowhere"])
    assert traces(pg, database, found["b"][last:]) == 0 and traces(pg, database, found["b"]) == last


def test_erase_compact_takes_the_person_out_of_the_files_now(pg: PgServer, filled, tmp_path: Path,  # noqa: F811
                                                            capsys) -> None:
    from faceprint.store import FaceRow

    store, found, database = filled
    person = np.random.default_rng(7).standard_normal((1, found["a"].shape[1])).astype(np.float32)
    store.add_faces([FaceRow("person-1", "a", "img", "suspect-9", (0.5, 0.5, 0.1, 0.1), 99.0, person[0])])
    assert main(["--home", str(tmp_path), "--store", store.url, "erase", "--external-image-id", "suspect-9"]) == 0
    capsys.readouterr()
    assert traces(pg, database, person) == 1  # erased from every read, its bytes not yet from the files
    store.add_faces([FaceRow("person-2", "a", "img", "suspect-9", (0.5, 0.5, 0.1, 0.1), 99.0, person[0])])
    assert main(["--home", str(tmp_path), "--store", store.url, "erase", "--external-image-id", "suspect-9",
                 "--compact"]) == 0
    erased = json.loads(capsys.readouterr().out)
    assert erased["FacesErased"] == 1 and erased["Compacted"] == {"Collections": ["a"], "Tables": ["Crops", "Probes"]}
    assert traces(pg, database, person) == 0 and traces(pg, database, found["a"]) == PER_COLLECTION


def test_the_embedded_store_has_nothing_to_rewrite(tmp_path: Path) -> None:
    fp = Faceprint(tmp_path)
    fp.create_collection("c")
    assert fp.compact() == {"Collections": [], "Tables": []}
    with pytest.raises(ResourceNotFoundException):
        fp.compact(["nowhere"])
