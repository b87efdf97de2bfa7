"""Deletion is real: after DeleteFaces or DeleteCollection and a restart (a new Faceprint on the
home, a search, its indexes saved), no file under the home, the database's WAL and shared memory
included, holds a deleted face's vector (as float32, whole or any 32 bytes of it), its face crop, or its
quantized codes (computed with the codebooks of every quantized index found on disk, as the
index computes them, and looked up among the codes each index file holds).

Every check is shown to find what it looks for first: before the delete the database and the
index file hold the faces, and after it the same checks still find the faces that were kept.
Real LFW faces, real SQLite, real faiss index files; the index is quantized from 30 faces
(``index_settings``) so that a small collection writes the quantized index a large one would."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest

from conftest import LFW, models_dir
from faceprint.index import files

KEPT = 40
DOOMED = 3
INDEX = {"exact_below": 30, "tail_limit": 10, "rerank": 20, "shards": 2}
WINDOW = 32
"""Bytes of a vector that count as a trace if found anywhere."""


@pytest.fixture(scope="module")
def people(fast) -> list[tuple[Path, object]]:
    """(image, analysis) of one photo each of distinct LFW people with one face: unique vectors."""
    found = []
    for person in sorted(p for p in (LFW / "images").iterdir() if p.is_dir()):
        image = min(person.glob("*.jpg"))
        analysis = fast.analyze(image)
        if len(analysis.faces) == 1:
            found.append((image, analysis))
        if len(found) == KEPT + DOOMED + 2:
            return found
    pytest.fail("not enough LFW people with one face")


def open_home(home: Path):
    from faceprint.service import Faceprint

    return Faceprint(home, profile="fast", models_dir=models_dir(), index_settings=INDEX)


def close(fp) -> None:
    """As a process that ends: its index files saved, its database connection closed."""
    fp.save_indexes()
    fp.store._database.close()
    gc.collect()


def filled(home: Path, people: list, collection: str = "c") -> tuple:
    """A collection of KEPT faces (stored analyses) and DOOMED faces (IndexFaces of their photos),
    its index quantized and saved to its file: answers the Faceprint, the doomed and kept face ids."""
    fp = open_home(home)
    fp.create_collection(collection)
    kept = [fp.store_analysis(collection, a, "kept").face_records[0].face.face_id for _, a in people[:KEPT]]
    fp.update_collection_settings(collection, keep_face_crops=True)  # IndexFaces keeps the doomed faces' crops
    doomed = [fp.index_faces(collection, image.read_bytes(), f"doomed-{i}").face_records[0].face.face_id
              for i, (image, _) in enumerate(people[KEPT:KEPT + DOOMED])]
    assert fp.collections.index(collection).quantized
    fp.save_indexes()
    assert files.index_path(home / "indexes", collection).is_file()
    return fp, doomed, kept


def crops_of(fp, collection: str, face_ids: list[str]) -> list[bytes]:
    found = [fp.crops.get(collection, f) for f in face_ids]
    assert all(found)
    return found


def holding(home: Path, blobs: list[bytes]) -> list[str]:
    """Files under ``home`` holding one of ``blobs`` whole."""
    return [str(p.relative_to(home)) for p in sorted(home.rglob("*")) if p.is_file()
            for blob in blobs if blob in p.read_bytes()]


def vectors(fp, collection: str, face_ids: list[str]) -> list[np.ndarray]:
    found = {f.face_id: np.asarray(f.vector, np.float32) for f in fp.store.get_faces(collection, face_ids)}
    assert len(found) == len(face_ids)
    return [found[f] for f in face_ids]


class Pieces:
    """Finds the faces of which some bytes hold WINDOW consecutive bytes (at any byte offset): the 8
    bytes at every offset are looked up among the first 8 bytes of every window of every face, and
    each hit is checked in full."""

    def __init__(self, faces: list[np.ndarray]) -> None:
        self.raws = [f.tobytes() for f in faces]
        self.starts: dict[int, list[tuple[int, int]]] = {}
        for n, raw in enumerate(self.raws):
            for i in range(len(raw) - WINDOW + 1):
                self.starts.setdefault(int.from_bytes(raw[i:i + 8], "little"), []).append((n, i))
        self.keys = np.fromiter(self.starts, np.uint64, len(self.starts))

    def found(self, data: bytes) -> set[int]:
        hits = set()
        for shift in range(8):
            words = np.frombuffer(data, "<u8", (len(data) - shift) // 8, shift)
            for at in np.flatnonzero(np.isin(words, self.keys)):
                offset = shift + 8 * int(at)
                for n, i in self.starts[int(words[at])]:
                    if data[offset:offset + WINDOW] == self.raws[n][i:i + WINDOW]:
                        hits.add(n)
        return hits


def shards_in(data: bytes, path: Path) -> list:
    """The faiss shards of an index file (none for any other file)."""
    if not data.startswith(b"PK"):
        return []
    import faiss

    try:
        with np.load(path, allow_pickle=False) as npz:
            names = [n for n in npz.files if n.startswith("shard_") and not n.startswith("shard_rows_")]
            return [faiss.deserialize_index(np.asarray(npz[n], np.uint8)) for n in names]
    except ValueError:
        return []


def stored_codes(shard) -> set[bytes]:
    """The code of every row of a shard (a flat index or an inverted file's lists), unpacked from
    faiss's 32-row blocks."""
    import faiss

    packer = shard.get_CodePacker()
    if not hasattr(shard, "invlists"):
        return unpacked(packer, faiss.vector_to_array(shard.codes), shard.ntotal)
    lists, out = shard.invlists, set()
    for cell in range(shard.nlist):
        size = lists.list_size(cell)
        blocks = -(-size // packer.nvec) * packer.block_size
        out |= unpacked(packer, faiss.rev_swig_ptr(lists.get_codes(cell), blocks).copy(), size)
    return out


def unpacked(packer, codes: np.ndarray, count: int) -> set[bytes]:
    blocks = np.asarray(codes, np.uint8).reshape(-1, packer.block_size)
    return {bytes(np.asarray(packer.unpack_1(blocks, i), np.uint8)) for i in range(count)}


def encode(codebook, faces: list[np.ndarray]) -> list[bytes]:
    """Each face's quantized code as the index computes it (``sa_encode``: its codebooks; of an
    inverted file's, the code without the number of its cell)."""
    skip = codebook.coarse_code_size() if hasattr(codebook, "coarse_code_size") else 0
    return [bytes(code[skip:]) for code in codebook.sa_encode(np.stack(faces).astype(np.float32))]


def traces(home: Path, faces: list[np.ndarray], codebooks: list) -> list[str]:
    """Where under ``home`` a face of ``faces`` is still found: its vector (whole or any WINDOW
    bytes), its quantized codes by ``codebooks`` (shards known to have encoded it) or by the
    codebooks of each index file, raw or among the codes the file's shards hold."""
    found, pieces = [], Pieces(faces)
    given = [encode(b, faces) for b in codebooks]
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        data, name = path.read_bytes(), str(path.relative_to(home))
        shards = shards_in(data, path)
        held = set().union(*(stored_codes(s) for s in shards)) if shards else set()
        holds = pieces.found(data)
        encoded = [*given, *(encode(s, faces) for s in shards)]  # per codebook, each face's code
        for n in range(len(faces)):
            if n in holds:
                found.append(f"{name}: vector of face {n}")
            codes = {codes[n] for codes in encoded}
            if any(code in data for code in codes):
                found.append(f"{name}: raw quantized code of face {n}")
            if codes & held:
                found.append(f"{name}: quantized code of face {n} in an index shard")
    return found


def pieces_in_codebooks(home: Path, faces: list[np.ndarray]) -> list[str]:
    """Index files whose codebooks hold a piece of a face of ``faces`` as one of their centroids (a
    codebook trained on few faces can: a cluster of one face's piece is that piece), or whose inverted
    file has the face (within float rounding) as the centroid of a cell."""
    import faiss

    found = []
    for path in sorted((home / "indexes").glob("*")):
        for shard in shards_in(path.read_bytes(), path):
            pq = shard.pq
            centroids = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub)
            cells = shard.quantizer.reconstruct_n(0, shard.nlist) if hasattr(shard, "nlist") else np.zeros((0, 1))
            for n, vector in enumerate(faces):
                pieces = vector.reshape(pq.M, 1, pq.dsub)
                if (centroids == pieces).all(axis=2).any():
                    found.append(f"{path.name}: a piece of face {n} is a centroid")
                if len(cells) and (np.abs(cells - vector).max(axis=1) < 1e-5).any():
                    found.append(f"{path.name}: face {n} is the centroid of a cell")
    return found


def codebooks_of(fp, collection: str) -> list:
    state = fp.collections.index(collection)._state
    assert state.quantized is not None
    return [s.index for s in state.quantized.shards]


def test_deleted_faces_leave_no_vector_or_code_in_any_file_after_a_restart(tmp_path, people) -> None:
    fp, doomed, kept = filled(tmp_path, people)
    gone, stay = vectors(fp, "c", doomed), vectors(fp, "c", kept[:2])
    crops = crops_of(fp, "c", doomed)
    assert len(holding(tmp_path, crops)) == DOOMED
    books = codebooks_of(fp, "c")
    before = traces(tmp_path, gone, books)
    index_file = files.index_path(tmp_path / "indexes", "c").name
    for n in range(DOOMED):  # the checks find the faces while they are there
        assert f"faceprint.db: vector of face {n}" in before or f"faceprint.db-wal: vector of face {n}" in before
        assert f"indexes/{index_file}: vector of face {n}" in before
        assert f"indexes/{index_file}: quantized code of face {n} in an index shard" in before

    assert sorted(fp.delete_faces("c", doomed).deleted_faces) == sorted(doomed)
    close(fp)
    again = open_home(tmp_path)
    probe = people[KEPT][0]  # the first doomed face's own photo: it matches nothing now
    matches = again.search_faces_by_image("c", probe.read_bytes(), max_faces=5, face_match_threshold=0).face_matches
    assert matches and not {m.face.face_id for m in matches} & set(doomed)
    assert len(again.collections.index("c")) == KEPT and again.collections.index("c").quantized
    close(again)

    assert (tmp_path / "indexes" / index_file).is_file()  # written again, without them
    assert traces(tmp_path, gone, books) == []
    assert pieces_in_codebooks(tmp_path, gone) == []
    assert holding(tmp_path, crops) == []
    still = traces(tmp_path, stay, books)  # the same checks find the faces that were kept
    for n in range(2):
        assert f"indexes/{index_file}: quantized code of face {n} in an index shard" in still
        assert f"indexes/{index_file}: vector of face {n}" in still


def test_a_deleted_collection_leaves_no_vector_or_code_in_any_file_after_a_restart(tmp_path, people) -> None:
    fp, doomed, kept = filled(tmp_path, people, "gone")
    fp.create_collection("other")
    others = [fp.store_analysis("other", a, "other").face_records[0].face.face_id for _, a in people[-2:]]
    gone, crops = vectors(fp, "gone", doomed + kept), crops_of(fp, "gone", doomed)
    stay = vectors(fp, "other", others)
    books = codebooks_of(fp, "gone")
    assert len(traces(tmp_path, gone, books)) >= 3 * len(gone)  # db, index file: vectors and codes

    fp.delete_collection("gone")
    close(fp)
    again = open_home(tmp_path)
    probe = people[KEPT][0]
    assert again.search_faces_by_image("other", probe.read_bytes(), face_match_threshold=0).face_matches
    close(again)

    assert not files.index_path(tmp_path / "indexes", "gone").exists()
    assert traces(tmp_path, gone, books) == [] and holding(tmp_path, crops) == []
    still = traces(tmp_path, stay, books)  # the same checks find the faces that were kept
    assert all(f"faceprint.db: vector of face {n}" in still for n in range(len(stay)))
