"""Collections, IndexFaces, ListFaces, DeleteFaces and search on real faces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FACES, lfw_image, models_dir
from contract import output_shape, validate
from faceprint.errors import (
    InvalidPaginationTokenException,
    InvalidParameterException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
)

BBT = FACES / "identities" / "faceapi_bbt"


@pytest.fixture()
def fpc(tmp_path: Path):
    """A fast-profile faceprint with its own, empty home."""
    from faceprint.service import Faceprint

    return Faceprint(tmp_path, profile="fast", models_dir=models_dir())


def test_collection_lifecycle(fpc) -> None:
    created = fpc.create_collection("mugshots")
    validate(created.to_dict(), output_shape("CreateCollection"))
    assert created.collection_arn.endswith("collection/mugshots") and created.status_code == 200
    with pytest.raises(ResourceAlreadyExistsException):
        fpc.create_collection("mugshots")
    described = fpc.describe_collection("mugshots").to_dict()
    validate(described, output_shape("DescribeCollection"))
    assert described["FaceCount"] == 0 and described["FaceModelVersion"] == fpc.face_model_version
    for name in ("b", "c", "d"):
        fpc.create_collection(name)
    page = fpc.list_collections(max_results=2)
    validate(page.to_dict(), output_shape("ListCollections"))
    assert page.collection_ids == ["b", "c"] and page.next_token
    rest = fpc.list_collections(max_results=2, next_token=page.next_token)
    assert rest.collection_ids == ["d", "mugshots"] and rest.next_token is None
    with pytest.raises(InvalidPaginationTokenException):
        fpc.list_collections(next_token="garbage!")
    assert fpc.delete_collection("b").status_code == 200
    with pytest.raises(ResourceNotFoundException):
        fpc.delete_collection("b")
    with pytest.raises(ResourceNotFoundException):
        fpc.describe_collection("b")
    for bad in ("", "has space", "x" * 256, "slash/no"):
        with pytest.raises(InvalidParameterException):
            fpc.create_collection(bad)


def test_enrol_identities_and_find_them_in_group_stills(fpc, data) -> None:
    fpc.create_collection("bbt")
    for person in sorted((BBT / "identities").iterdir()):
        for path in sorted(person.glob("*"))[:3]:
            result = fpc.index_faces("bbt", path, external_image_id=f"{person.name}-{path.stem}", max_faces=1)
            validate(result.to_dict(), output_shape("IndexFaces"))
            assert len(result.face_records) == 1
    assert fpc.describe_collection("bbt").face_count == 24
    # every group still: each searched face's best match is one enrolled person, and the
    # people found in one still are all different
    found_people = set()
    for still in sorted((BBT / "group").glob("*.jpg")):
        people = []
        for face in fpc.analyze(still).faces:
            crop = _crop(fpc.load_image(still).rgb, face)
            try:
                hits = fpc.search_faces_by_image("bbt", crop, max_faces=3, face_match_threshold=70)
            except InvalidParameterException:
                continue
            validate(hits.to_dict(), output_shape("SearchFacesByImage"))
            if hits.face_matches:
                people.append(hits.face_matches[0].face.external_image_id.split("-")[0])
        assert len(people) == len(set(people)), (still.name, people)
        found_people |= set(people)
    assert len(found_people) >= 6


def _crop(rgb, face):
    h, w = rgb.shape[:2]
    b = face.bounding_box
    x0, y0 = max(int((b.left - b.width * 0.4) * w), 0), max(int((b.top - b.height * 0.4) * h), 0)
    x1, y1 = min(int((b.left + b.width * 1.4) * w), w), min(int((b.top + b.height * 1.4) * h), h)
    crop = rgb[y0:y1, x0:x1]
    if min(crop.shape[:2]) < 80:
        import cv2

        scale = 80 / min(crop.shape[:2])
        crop = cv2.resize(crop, None, fx=scale, fy=scale)
    return crop.copy()


def test_lfw_gallery_probe(fpc, data) -> None:
    fpc.create_collection("lfw")
    folders = sorted((FACES / "lfw-dev" / "images").iterdir())
    people = {d.name: sorted(d.glob("*.jpg")) for d in folders if len(list(d.glob("*.jpg"))) >= 2}
    chosen = list(people)[:8]
    for name in chosen:
        fpc.index_faces("lfw", people[name][0], external_image_id=name, max_faces=1)
    for name in chosen:
        result = fpc.search_faces_by_image("lfw", people[name][1], face_match_threshold=0)
        assert result.face_matches[0].face.external_image_id == name
        sims = [m.similarity for m in result.face_matches]
        assert sims == sorted(sims, reverse=True) and len(sims) == 8


def test_search_faces_delete_and_paging(fpc, data) -> None:
    fpc.create_collection("c")
    ids = [fpc.index_faces("c", lfw_image("Aaron_Peirsol", i), external_image_id=f"ap{i}").face_records[0]
           .face.face_id for i in (1, 2, 3, 4)]
    other = fpc.index_faces("c", lfw_image("Aaron_Sorkin", 1)).face_records[0].face.face_id
    hits = fpc.search_faces("c", ids[0], face_match_threshold=0)
    validate(hits.to_dict(), output_shape("SearchFaces"))
    assert ids[0] not in [m.face.face_id for m in hits.face_matches]
    assert {m.face.face_id for m in hits.face_matches[:3]} == set(ids[1:])
    page1 = fpc.list_faces("c", max_results=2)
    validate(page1.to_dict(), output_shape("ListFaces"))
    page2 = fpc.list_faces("c", max_results=2, next_token=page1.next_token)
    page3 = fpc.list_faces("c", max_results=2, next_token=page2.next_token)
    listed = [f.face_id for p in (page1, page2, page3) for f in p.faces]
    assert listed == [*ids, other] and page3.next_token is None
    assert [f.face_id for f in fpc.list_faces("c", face_ids=[ids[2]]).faces] == [ids[2]]
    missing = "00000000-0000-0000-0000-000000000000"
    deleted = fpc.delete_faces("c", [ids[1], missing])
    validate(deleted.to_dict(), output_shape("DeleteFaces"))
    assert deleted.deleted_faces == [ids[1]]
    assert deleted.unsuccessful_face_deletions[0].reasons == ["FACE_NOT_FOUND"]
    after = fpc.search_faces_by_image("c", lfw_image("Aaron_Peirsol", 2), face_match_threshold=0)
    assert ids[1] not in [m.face.face_id for m in after.face_matches]
    assert fpc.describe_collection("c").face_count == 4
    with pytest.raises(ResourceNotFoundException):
        fpc.search_faces("c", ids[1])
    with pytest.raises(InvalidParameterException):
        fpc.delete_faces("c", ["not-a-face-id"])
    with pytest.raises(InvalidParameterException):
        fpc.search_faces("c", ids[0], max_faces=0)


def test_index_faces_max_faces_and_quality(fpc, data) -> None:
    fpc.create_collection("g")
    group = BBT / "group" / "bbt1.jpg"
    result = fpc.index_faces("g", group, max_faces=2, quality_filter="NONE")
    assert len(result.face_records) == 2
    reasons = [u.reasons for u in result.unindexed_faces]
    assert reasons and all(r == ["EXCEEDS_MAX_FACES"] for r in reasons)
    sizes = [r.face.bounding_box.width for r in result.face_records]
    assert min(sizes) >= max(u.face_detail.bounding_box.width for u in result.unindexed_faces)
    with pytest.raises(InvalidParameterException):
        fpc.index_faces("g", group, external_image_id="bad id")
    with pytest.raises(ResourceNotFoundException):
        fpc.index_faces("nope", group)
    assert fpc.describe_collection("g").face_count == 2  # bad calls stored nothing


def test_reopen_in_a_new_process_sees_the_collection(fpc, tmp_path: Path, data) -> None:
    fpc.create_collection("keep")
    face_id = fpc.index_faces("keep", lfw_image("Aaron_Sorkin", 1)).face_records[0].face.face_id
    code = (
        "import sys; from faceprint.service import Faceprint; "
        f"fp = Faceprint({str(tmp_path)!r}, profile='fast', models_dir={str(models_dir())!r}); "
        f"r = fp.search_faces_by_image('keep', {str(lfw_image('Aaron_Sorkin', 2))!r}); "
        "print(r.face_matches[0].face.face_id, fp.describe_collection('keep').face_count)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [face_id, "1"]


def test_profile_mismatch_is_refused(tmp_path: Path, data) -> None:
    from faceprint.service import Faceprint

    Faceprint(tmp_path, profile="fast", models_dir=models_dir()).create_collection("fastonly")
    accurate = Faceprint(tmp_path, models_dir=models_dir())
    with pytest.raises(InvalidParameterException, match="profile"):
        accurate.describe_collection("fastonly")


def test_other_processes_writes_are_seen_by_a_running_searcher(fpc, tmp_path: Path, data) -> None:
    import json
    import os

    folders = sorted((FACES / "lfw-dev" / "images").iterdir())
    people = [d for d in folders if len(list(d.glob("*.jpg"))) >= 2][:3]
    fpc.create_collection("live")
    fpc.index_faces("live", sorted(people[0].glob("*.jpg"))[0], max_faces=1)
    probe = sorted(people[1].glob("*.jpg"))[1]
    assert fpc.search_faces_by_image("live", probe).face_matches == []  # index now cached here

    env = dict(os.environ, FACEPRINT_MODELS_DIR=str(models_dir()))
    base = [sys.executable, "-m", "faceprint.cli", "--home", str(tmp_path), "--profile", "fast"]
    added = subprocess.run([*base, "index-faces", "--collection-id", "live", "--max-faces", "1",
                            str(sorted(people[1].glob("*.jpg"))[0])], capture_output=True, text=True, env=env)
    assert added.returncode == 0, added.stderr
    face_id = json.loads(added.stdout)["FaceRecords"][0]["Face"]["FaceId"]
    assert [m.face.face_id for m in fpc.search_faces_by_image("live", probe).face_matches] == [face_id]

    gone = subprocess.run([*base, "delete-faces", "--collection-id", "live", "--face-ids", face_id],
                          capture_output=True, text=True, env=env)
    assert gone.returncode == 0, gone.stderr
    assert fpc.search_faces_by_image("live", probe, face_match_threshold=0).face_matches[0].face.face_id != face_id


def test_searches_run_while_an_import_writes(fpc, data) -> None:
    from concurrent.futures import ThreadPoolExecutor

    images = sorted((FACES / "lfw-dev" / "images").glob("A*/*.jpg"))[:40]
    fpc.create_collection("busy")
    fpc.index_faces("busy", images[0], max_faces=1)
    probe = fpc.analyze(images[0]).vectors[0]

    def write() -> int:
        return sum(len(fpc.index_faces("busy", p, max_faces=1).face_records) for p in images[1:])

    def read() -> int:
        seen = 0
        for _ in range(200):
            seen = max(seen, len(fpc.collections.search("busy", probe, 100, 0.0)))
        return seen

    with ThreadPoolExecutor(3) as pool:
        writer = pool.submit(write)
        readers = [pool.submit(read) for _ in range(2)]
        written = writer.result()
        assert all(r.result() >= 1 for r in readers)
    assert fpc.describe_collection("busy").face_count == written + 1
    assert len(fpc.collections.search("busy", probe, 100, 0.0)) == written + 1


def test_list_collections_tokens_stay_within_the_model_after_long_ids(tmp_path: Path) -> None:
    from faceprint.service import Faceprint

    fp = Faceprint(tmp_path, profile="fast", models_dir=models_dir())
    long_ids = ["x" * 254 + c for c in "abcd"]  # 255 characters, the model's longest
    for name in ["a", *long_ids, "z"]:
        fp.create_collection(name)
    seen, token, tokens = [], None, []
    while True:
        page = fp.list_collections(max_results=1, next_token=token)
        validate(page.to_dict(), output_shape("ListCollections"))  # NextToken within 255 characters
        seen += page.collection_ids
        if page.next_token is None:
            break
        token = page.next_token
        tokens.append(token)
        if page.collection_ids == [long_ids[1]]:
            fp.delete_collection(long_ids[1])  # the collection a token points after may go away
    assert seen == ["a", *long_ids, "z"] and max(len(t) for t in tokens) <= 255


def test_quantized_search_on_real_faces_finds_what_exact_search_finds(tmp_path: Path, data) -> None:
    """The quantized path (forced on a small collection) against exact search, on LFW faces."""
    import numpy as np

    from faceprint.index import ExactIndex
    from faceprint.service import Faceprint

    fp = Faceprint(tmp_path, profile="fast", models_dir=models_dir(),
                   index_settings={"exact_below": 60, "tail_limit": 20, "rerank": 12, "shards": 2})
    fp.create_collection("lfw")
    folders = sorted((FACES / "lfw-dev" / "images").iterdir())
    people = [sorted(d.glob("*.jpg")) for d in folders if len(list(d.glob("*.jpg"))) >= 2][:100]
    for images in people:
        fp.index_faces("lfw", images[0], external_image_id=images[0].parent.name, max_faces=1)
    index = fp.collections.index("lfw")
    assert index.quantized and len(index) >= 95
    exact = ExactIndex(fp.profile.dim)
    rows = fp.store.list_faces("lfw", 0, 1000)
    exact.add([r.face_id for r in rows], np.stack([r.vector for r in rows]))
    found = 0
    for images in people:
        analysis = fp.analyze(images[1])
        if not analysis.faces:
            continue
        ours = fp.search_faces_by_image("lfw", images[1], max_faces=3, face_match_threshold=0).face_matches
        truth = dict(exact.search(analysis.vectors[0], len(exact), -1.0))
        assert ours[0].face.face_id == next(iter(truth))  # the same best match as exact search
        assert np.allclose([m.similarity for m in ours],  # and exact similarities
                           [round(float(fp.profile.similarity(truth[m.face.face_id])), 4) for m in ours], atol=1e-3)
        found += ours[0].face.external_image_id == images[1].parent.name
    assert found >= 90


def test_writes_to_a_collection_deleted_meanwhile_are_refused_cleanly(fpc, data) -> None:
    """IndexFaces or CreateUser racing DeleteCollection: ResourceNotFoundException, not a crash."""
    from faceprint.store import FaceRow

    fpc.create_collection("gone")
    analysis = fpc.analyze(lfw_image("Aaron_Peirsol", 1))
    fpc.delete_collection("gone")  # after the operation looked the collection up, before it wrote
    with pytest.raises(ResourceNotFoundException):
        fpc.store_analysis("gone", analysis)
    with pytest.raises(ResourceNotFoundException):
        fpc.store.add_faces([FaceRow("f", "gone", "i", None, (1, 1, 0, 0), 99.0, analysis.vectors[0])])
    with pytest.raises(ResourceNotFoundException):
        fpc.store.create_user("gone", "u1", 0.0)


def test_collections_and_users_are_built_alone_from_their_dependencies(tmp_path: Path) -> None:
    """No Faceprint needed: a store, indexes, a profile, an analysis callable and a clock."""
    import numpy as np

    from faceprint.collections import Collections
    from faceprint.faces import Analysis
    from faceprint.index.cache import IndexCache
    from faceprint.models.profiles import get_profile
    from faceprint.store.sqlite import SQLiteStore
    from faceprint.users import Users

    profile = get_profile("fast")
    store = SQLiteStore(tmp_path / "db.sqlite")

    def no_faces(image, **options) -> Analysis:
        return Analysis(image=None, faces=[], rejected=[], vectors=np.zeros((0, profile.dim), np.float32))

    collections = Collections(store, IndexCache(store, tmp_path / "indexes", profile.dim), profile, no_faces,
                              arn=lambda cid: f"arn:aws:rekognition:eu-west-1:123456789012:collection/{cid}",
                              clock=lambda: 1_700_000_000.0)
    users = Users(collections, clock=lambda: 1_700_000_001.0)
    assert collections.create_collection("alone").collection_arn.endswith(":123456789012:collection/alone")
    assert collections.describe_collection("alone").creation_timestamp == 1_700_000_000.0
    assert collections.index_faces("alone", b"not decoded here").face_records == []
    users.create_user("alone", "u1")
    assert [u.user_id for u in users.list_users("alone").users] == ["u1"]
    assert collections.describe_collection("alone").user_count == 1


def _token(value) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


FORGED_TOKENS = ["\ud800", _token("\ud800"), _token(["long", "\ud800"]), _token(["long", "x", "y"]), _token(10**30),
                 _token(-1), _token(True), _token({"a": 1}), _token("has space"), _token("x" * 300), "[" * 10_000]


def test_forged_page_tokens_are_invalid_pagination_tokens(fpc) -> None:
    """A NextToken this service did not issue is InvalidPaginationTokenException, never a crash."""
    fpc.create_collection("c")
    fpc.create_user("c", "u1")
    for token in FORGED_TOKENS:
        for call in (lambda t: fpc.list_collections(next_token=t), lambda t: fpc.list_users("c", next_token=t),
                     lambda t: fpc.list_faces("c", next_token=t)):
            with pytest.raises(InvalidPaginationTokenException):
                call(token)


def test_collection_arns_name_the_region_and_the_homes_account(tmp_path: Path) -> None:
    import re
    import stat

    from faceprint.service import Faceprint
    from faceprint.store import CollectionRow

    fp = Faceprint(tmp_path, profile="fast", models_dir=models_dir(), region="eu-west-1")
    arn = fp.create_collection("people").collection_arn
    account = re.fullmatch(r"arn:aws:rekognition:eu-west-1:(\d{12}):collection/people", arn).group(1)
    assert fp.describe_collection("people").collection_arn == arn
    account_file = tmp_path / "account-id"
    assert account_file.read_text().strip() == account and stat.S_IMODE(account_file.stat().st_mode) == 0o600
    # a collection stored with the ARN of earlier versions answers the new form too
    fp.store.create_collection(CollectionRow("old", "aws:rekognition:local:000000000000:collection/old",
                                             fp.face_model_version, fp.profile.dim, 0.0))
    again = Faceprint(tmp_path, profile="fast", models_dir=models_dir())  # the same account, another region
    assert again.describe_collection("old").collection_arn == f"arn:aws:rekognition:us-east-1:{account}:collection/old"
    assert Faceprint(tmp_path / "other", profile="fast", models_dir=models_dir()).create_collection(
        "people").collection_arn != arn.replace("eu-west-1", "us-east-1")  # each home has its own account


@pytest.mark.parametrize("attributes", [None, 7, "DEFAULT"])
def test_index_faces_attributes_must_be_a_list(fpc, attributes) -> None:
    """As DetectFaces: not a list is InvalidParameterException (was a TypeError, or "DEFAULT"
    read letter by letter), checked before the image is decoded."""
    fpc.create_collection("c")
    with pytest.raises(InvalidParameterException, match="must be a list"):
        fpc.index_faces("c", b"not decoded", detection_attributes=attributes)


def test_hostile_values_give_short_errors(tmp_path) -> None:
    """A 5,000-digit MaxResults or a megabyte collection id is refused with a short message (Python
    will not even write such an integer: ValueError, not InvalidParameterException, before)."""
    from faceprint.errors import InvalidParameterException
    from faceprint.service import Faceprint

    fp = Faceprint(tmp_path)
    with pytest.raises(InvalidParameterException) as huge:
        fp.list_collections(10**5000)
    assert "an integer of" in huge.value.message and len(huge.value.message) < 300
    with pytest.raises(InvalidParameterException) as long_id:
        fp.create_collection("x" * 1_000_000 + "!")
    assert len(long_id.value.message) < 400
