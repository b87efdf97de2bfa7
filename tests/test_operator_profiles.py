"""Operator profiles end to end, with the test-only models in ``../shared/data/models-test``:
register from a folder (licence named, digests checked), refuse what does not fit, index and
search a collection with the profile through the API and the CLI (``--profile`` and
``FACEPRINT_PROFILE``), keep collections on their profile, calibrate, remove.

No network: the buffalo_l recipe is exercised up to its refusals (no licence, a wrong one, an
archive whose digest is not the pinned one); its fetch function fails the test if called.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, lfw_image, models_dir
from faceprint.errors import (
    InvalidParameterException,
    ModelUnavailableError,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
)
from faceprint.models.operator import parse_profile
from faceprint.models.profiles import PROVISIONAL_KNOTS, get_profile
from faceprint.models.recipes import BUFFALO_L, RECIPES
from faceprint.models.registry import ProfileRegistry

MODELS = DATA / "models-test"
DETECTOR = ("det_500m.onnx", "5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a")
RECOGNISER = ("faceplugin_fr_feature.onnx", "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581")
LICENCE = "test-research-only"
NAME = "fr-test"
PEOPLE = ("Aaron_Peirsol", "Adam_Sandler", "Abel_Pacheco")


def profile_toml(name: str = NAME, licence: str = LICENCE, det_sha: str = DETECTOR[1], rec_sha: str = RECOGNISER[1],
                 output_dim: int = 512, extra: str = "") -> str:
    return f"""name = "{name}"
version = "faceplugin-0.0.1"
licence = "{licence}"
{extra}
[detector]
kind = "scrfd"
file = "{DETECTOR[0]}"
sha256 = "{det_sha}"
score_threshold = 0.5

[recogniser]
kind = "arcface"
file = "{RECOGNISER[0]}"
sha256 = "{rec_sha}"
input_size = 112
mean = [127.0, 127.0, 127.0]
std = [128.0, 128.0, 128.0]
colour = "RGB"
layout = "NCHW"
template = "arcface"
output_dim = {output_dim}
"""


def cli(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "FACEPRINT_PROFILE"}
    environment.update(FACEPRINT_MODELS_DIR=str(models_dir()), **(env or {}))
    return subprocess.run([sys.executable, "-m", "faceprint.cli", "--home", str(home), *args],
                          capture_output=True, text=True, env=environment, timeout=300)


def error_of(done: subprocess.CompletedProcess) -> dict[str, str]:
    assert done.returncode == 1, (done.stdout, done.stderr)
    return json.loads(done.stderr.strip().splitlines()[0])


@pytest.fixture(scope="module")
def toml_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert MODELS.is_dir(), f"test models not found at {MODELS} (see ../shared/data/README.md)"
    path = tmp_path_factory.mktemp("toml") / "fr-test.toml"
    path.write_text(profile_toml())
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, toml_file: Path) -> Path:
    """A home with the profile registered through the CLI, its files taken from --from DIR."""
    home = tmp_path_factory.mktemp("home")
    done = cli("models", "add", str(toml_file), "--accept-licence", LICENCE, "--from", str(MODELS), home=home)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)["Profile"]
    assert body["Name"] == NAME and body["Licence"] == LICENCE and body["AcceptedLicence"] == LICENCE
    assert body["Calibrated"] is False and body["Calibration"] is None and body["VectorDimension"] == 512
    assert [f["Sha256"] for f in body["Files"]] == [DETECTOR[1], RECOGNISER[1]]
    return home


@pytest.fixture(scope="module")
def fp(home: Path):
    from faceprint.service import Faceprint

    fp = Faceprint(home, profile=NAME, models_dir=models_dir())
    fp.create_collection("people")
    for name in PEOPLE:
        result = fp.index_faces("people", lfw_image(name, 1), external_image_id=name, max_faces=1)
        assert len(result.face_records) == 1
    return fp


def test_the_profile_is_kept_with_its_files_and_licence(home: Path) -> None:
    folder = home / "profiles" / NAME
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [DETECTOR[0], RECOGNISER[0], "profile.toml", "registration.json"])
    record = json.loads((folder / "registration.json").read_text())
    assert record["accepted_licence"] == LICENCE and record["origin"]["files"]["detector"] == str(MODELS / DETECTOR[0])
    spec = parse_profile((folder / "profile.toml").read_text())
    assert spec.face_model_version == (f"operator:{NAME}/faceplugin-0.0.1 (scrfd {DETECTOR[0]} {DETECTOR[1][:12]}, "
                                       f"arcface {RECOGNISER[0]} {RECOGNISER[1][:12]})")
    assert not [p for p in (home / "profiles").iterdir() if p.name.startswith(".")]  # no staging left


def test_index_and_search_with_the_operator_profile(fp) -> None:
    assert fp.profile.operator is not None and fp.profile.dim == 512 and not fp.profile.calibrated
    assert type(fp.engine.detector).__name__ == "ScrfdDetector"
    assert fp.describe_collection("people").face_model_version == fp.profile.face_model_version
    result = fp.search_faces_by_image("people", lfw_image("Adam_Sandler", 2), face_match_threshold=0)
    matches = [(m.face.external_image_id, m.similarity) for m in result.face_matches]
    assert [m[0] for m in matches][0] == "Adam_Sandler", matches
    assert matches[0][1] > matches[1][1] + 10, matches  # the same person stands out
    assert result.face_model_version == fp.profile.face_model_version
    # uncalibrated: the audit record states no false-match rate for the threshold (it has none measured)
    assert fp.audit_log.get(result.audit_id).entry.false_match_rate is None
    # SCRFD's Confidence is its score x 100 (YuNet's measured table is YuNet's alone)
    faces = fp.detect_faces(lfw_image("Adam_Sandler", 2)).face_details
    raw = fp.engine.detect(fp.load_image(lfw_image("Adam_Sandler", 2))).scores
    assert faces[0].confidence == round(float(raw[0]) * 100, 4)


def test_cli_searches_with_profile_flag_and_environment(fp, home: Path) -> None:
    probe = str(lfw_image("Aaron_Peirsol", 2))
    done = cli("--profile", NAME, "search-faces-by-image", "--collection-id", "people", probe,
               "--face-match-threshold", "0", home=home)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["FaceMatches"][0]["Face"]["ExternalImageId"] == "Aaron_Peirsol"
    assert body["FaceModelVersion"] == fp.profile.face_model_version
    done = cli("search-faces-by-image", "--collection-id", "people", probe, "--face-match-threshold", "0",
               home=home, env={"FACEPRINT_PROFILE": NAME})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["FaceMatches"][0]["Face"]["ExternalImageId"] == "Aaron_Peirsol"
    # the collection keeps its profile: the default profile may not search it
    error = error_of(cli("search-faces-by-image", "--collection-id", "people", probe, home=home))
    assert error["__type"] == "InvalidParameterException" and "holds vectors of 'operator:" in error["Message"]


def test_a_built_in_collection_is_not_searched_with_the_operator_profile(fp, home: Path) -> None:
    from faceprint.service import Faceprint

    Faceprint(home, profile="fast", models_dir=models_dir()).create_collection("fast-people")
    with pytest.raises(InvalidParameterException, match="faceprint-fast-1"):
        fp.search_faces_by_image("fast-people", lfw_image("Adam_Sandler", 2))


def test_unknown_profile_names_the_choices(home: Path) -> None:
    error = error_of(cli("--profile", "nope", "list-collections", home=home))
    assert error["__type"] == "InvalidParameterException"
    assert "accurate, fast, fr-test" in error["Message"]
    with pytest.raises(InvalidParameterException):
        get_profile("../profiles/fr-test", home)


def test_licence_is_refused_unnamed_or_wrong(tmp_path: Path, toml_file: Path) -> None:
    error = error_of(cli("models", "add", str(toml_file), "--from", str(MODELS), home=tmp_path))
    assert error["__type"] == "InvalidParameterException" and f"--accept-licence {LICENCE}" in error["Message"]
    error = error_of(cli("models", "add", str(toml_file), "--accept-licence", "MIT", "--from", str(MODELS),
                         home=tmp_path))
    assert error["__type"] == "InvalidParameterException" and "does not name" in error["Message"]
    assert ProfileRegistry(tmp_path).operator_names() == []


def test_wrong_digest_is_refused_and_nothing_kept(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text(profile_toml(det_sha="0" * 64))
    registry = ProfileRegistry(tmp_path / "home")
    left = tmp_path / "home" / "profiles" / ".add-x-killed"  # what a killed add leaves: swept a day later
    left.mkdir(parents=True)
    os.utime(left, (0, 0))
    with pytest.raises(InvalidParameterException, match=f"SHA-256 {DETECTOR[1]}, the profile pins 0000"):
        registry.add(toml, LICENCE, MODELS)
    assert registry.operator_names() == [] and not list((tmp_path / "home" / "profiles").iterdir())


def test_files_relative_to_the_toml_and_a_misdeclared_output_are_refused(tmp_path: Path) -> None:
    for name, _ in (DETECTOR, RECOGNISER):
        (tmp_path / name).symlink_to(MODELS / name)
    (tmp_path / "wrong.toml").write_text(profile_toml(output_dim=128))
    registry = ProfileRegistry(tmp_path / "home")
    with pytest.raises(InvalidParameterException, match="recogniser does not load.*output_dim is 128"):
        registry.add(tmp_path / "wrong.toml", LICENCE)
    (tmp_path / "ok.toml").write_text(profile_toml())
    profile = registry.add(tmp_path / "ok.toml", LICENCE)  # files beside the TOML, no --from
    assert profile.operator is not None and registry.add(tmp_path / "ok.toml", LICENCE) == profile  # again: same
    (tmp_path / "other.toml").write_text(profile_toml(extra='description = "changed"'))
    with pytest.raises(ResourceAlreadyExistsException):
        registry.add(tmp_path / "other.toml", LICENCE)
    # a file swapped after registration is refused when the models load
    (profile.folder / DETECTOR[0]).write_bytes(b"not a model")
    from faceprint.engine import operator_detector

    with pytest.raises(ModelUnavailableError, match="refusing to use it"):
        operator_detector(registry.get(NAME))


@pytest.mark.parametrize("change, complaint", [
    (('name = "fr-test"', 'name = "fast"'), "built-in profile"),
    (('name = "fr-test"', 'name = "../x"'), "name"),
    (('licence = "test-research-only"', 'licence = "two words"'), "licence"),
    (('kind = "scrfd"', 'kind = "retina"'), "kind must be one of scrfd, yunet"),
    (('output_dim = 512', 'output_dim = 0'), "output_dim"),
    (('score_threshold = 0.5', 'max_side = 100'), r"max_side must be an integer in \[320, 8192\]"),
    (('colour = "RGB"', 'colour = "rgb"'), "colour"),
    (('std = [128.0, 128.0, 128.0]', 'std = [128.0, 0, 128.0]'), "std"),
    (('template = "arcface"', 'templat = "arcface"'), "templat is not a profile key"),
    (('file = "det_500m.onnx"', 'file = "../profile.toml"'), "file"),
    (('sha256 = "5e4447', 'sha256 = "zz4447'), "sha256"),
    (("[recogniser]", "[recognizer]"), "recognizer is not a profile key"),
])
def test_profile_files_are_validated(change: tuple[str, str], complaint: str) -> None:
    text = profile_toml()
    assert change[0] in text
    with pytest.raises(InvalidParameterException, match=complaint):
        parse_profile(text.replace(change[0], change[1], 1), "p.toml")


def test_yunet_detector_profile_and_canonical_toml() -> None:
    text = profile_toml().replace(f'file = "{DETECTOR[0]}"\nsha256 = "{DETECTOR[1]}"\n', "").replace(
        'kind = "scrfd"', 'kind = "yunet"')
    spec = parse_profile(text)
    assert spec.files().keys() == {"recogniser"} and "yunet-2023mar" in spec.face_model_version
    assert parse_profile(spec.to_toml()) == spec


def test_calibration_makes_the_profile_calibrated(tmp_path: Path) -> None:
    registry = ProfileRegistry(tmp_path)
    toml = tmp_path / "p.toml"
    toml.write_text(profile_toml())
    profile = registry.add(toml, LICENCE, MODELS)
    assert profile.knots == PROVISIONAL_KNOTS and profile.similarity(0.6) == pytest.approx(80.0)
    with pytest.raises(InvalidParameterException, match="knots"):
        registry.save_calibration(NAME, {"knots": [[0.5, 50], [0.4, 60]]})
    knots = [[-1.0, 0.0], [0.2, 50.0], [0.3, 70.0], [0.4, 90.0], [1.0, 100.0]]
    registry.save_calibration(NAME, {"knots": knots, "genuine": 10, "impostor": 90, "data_sha256": "ab" * 32})
    calibrated = registry.get(NAME)
    assert calibrated.calibrated and calibrated.similarity(0.3) == pytest.approx(70.0)
    assert calibrated.score_for(90.0) == pytest.approx(0.4)
    assert calibrated.face_model_version == profile.face_model_version  # the vectors did not change
    # the rate a threshold stands for: none measured before calibration, the calibrated levels after
    from faceprint.audit.fmr import describe_rate, expected_false_matches, false_match_rate
    assert false_match_rate(profile, 80) is None and expected_false_matches(None, 1000) is None
    assert describe_rate(profile, 80) == "not measured (the profile is not calibrated)"
    assert false_match_rate(calibrated, 80) == 1e-4 and describe_rate(calibrated, 80).endswith("10,000 comparisons")
    assert oct((registry.folder(NAME) / "calibration.json").stat().st_mode & 0o777) == "0o600"
    done = cli("models", "show", NAME, home=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)["Profile"]
    assert shown["Calibrated"] is True and shown["Calibration"]["DataSha256"] == "ab" * 32
    assert shown["Calibration"]["Genuine"] == 10 and shown["Calibration"]["Knots"] == knots


def test_models_list_show_and_remove(fp, home: Path) -> None:
    done = cli("models", "list", home=home)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    rows = {p["Name"]: p for p in body["Profiles"]}
    assert list(rows) == ["accurate", "fast", NAME] and rows["fast"]["Kind"] == "built-in"
    assert rows[NAME]["Licence"] == LICENCE and rows[NAME]["Calibrated"] is False
    recipe = {r["Name"]: r for r in body["Recipes"]}["buffalo_l"]
    assert recipe["Registered"] is False and recipe["ArchiveSha256"] == BUFFALO_L.archive_sha256
    assert len(body["Models"]) == 4 and body["ActiveProfile"] == "accurate"
    # a profile holding a collection's vectors is not removed by mistake
    error = error_of(cli("models", "remove", NAME, home=home))
    assert error["__type"] == "InvalidParameterException" and "people" in error["Message"]
    assert error_of(cli("models", "remove", "fast", home=home))["__type"] == "InvalidParameterException"
    assert error_of(cli("models", "remove", "nope", home=home))["__type"] == "ResourceNotFoundException"


def test_remove_then_register_again_brings_the_collection_back(tmp_path: Path, toml_file: Path) -> None:
    registry = ProfileRegistry(tmp_path)
    version = registry.add(toml_file, LICENCE, MODELS).face_model_version
    registry.remove(NAME)
    assert registry.operator_names() == [] and not list((tmp_path / "profiles").iterdir())
    with pytest.raises(ResourceNotFoundException):
        registry.remove(NAME)
    assert registry.add(toml_file, LICENCE, MODELS).face_model_version == version


def test_the_recipe_is_never_fetched_without_its_licence(tmp_path: Path) -> None:
    assert RECIPES["buffalo_l"].archive_sha256 == "80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f"
    assert BUFFALO_L.member("recogniser").sha256 == "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43"
    assert BUFFALO_L.member("detector").sha256 == ""  # not pinned: the archive's digest vouches for it

    def fetch(url: str, destination: Path, max_bytes: int) -> None:
        raise AssertionError(f"fetched {url}")

    registry = ProfileRegistry(tmp_path / "home", fetch=fetch)
    with pytest.raises(InvalidParameterException, match="--accept-licence insightface-non-commercial"):
        registry.add_recipe(BUFFALO_L, None)
    with pytest.raises(InvalidParameterException, match="does not name"):
        registry.add_recipe(BUFFALO_L, "insightface-commercial")
    # named, from a folder: an archive that is not the pinned one is refused, nothing kept
    fake = tmp_path / "dir"
    fake.mkdir()
    shutil.make_archive(str(fake / "buffalo_l"), "zip", MODELS)
    with pytest.raises(InvalidParameterException, match=f"the buffalo_l recipe pins {BUFFALO_L.archive_sha256}"):
        registry.add_recipe(BUFFALO_L, BUFFALO_L.licence, fake)
    assert registry.operator_names() == []
    done = cli("models", "add", "buffalo_l", home=tmp_path / "home")
    assert "--accept-licence insightface-non-commercial" in error_of(done)["Message"]


def test_the_server_serves_the_operator_profile(fp, home: Path) -> None:
    from serverkit import Server

    server = Server(home, "--no-auth", profile=NAME)
    try:
        client = server.client()
        answer = client.search_faces_by_image(CollectionId="people", Image={"Bytes": lfw_image("Abel_Pacheco", 3)
                                                                          .read_bytes()}, FaceMatchThreshold=0)
        assert answer["FaceModelVersion"] == fp.profile.face_model_version
        assert answer["FaceMatches"][0]["Face"]["ExternalImageId"] == "Abel_Pacheco"
        assert client.describe_collection(CollectionId="people")["FaceModelVersion"] == fp.profile.face_model_version
    finally:
        server.stop()
    assert f"profile {NAME} is not calibrated" in server.log.read_text()  # said once, at startup


def test_bulk_import_moves_pictures_into_an_operator_profile_collection(fp, home: Path, tmp_path: Path) -> None:
    """docs/models.md's way to move a collection: re-index the source pictures under the new profile,
    with the same ExternalImageIds."""
    env = {"FACEPRINT_PROFILE": NAME}
    assert cli("create-collection", "--collection-id", "moved", home=home, env=env).returncode == 0
    pictures = [str(lfw_image(name, 1)) for name in PEOPLE[:2]]
    ids = tmp_path / "ids.csv"
    ids.write_text("path,external_image_id\n" + "".join(f"{p},{n}\n" for p, n in zip(pictures, PEOPLE, strict=False)))
    done = cli("index-faces", "--collection-id", "moved", *pictures, "--external-ids", str(ids), "--workers", "1",
               home=home, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["Summary"]["FacesIndexed"] == 2
    faces = fp.list_faces("moved").faces
    assert sorted(f.external_image_id for f in faces) == sorted(PEOPLE[:2])
    hits = fp.search_faces_by_image("moved", lfw_image(PEOPLE[0], 2), face_match_threshold=0).face_matches
    assert hits[0].face.external_image_id == PEOPLE[0]


def test_a_profile_may_keep_yunet_and_bring_its_recogniser(tmp_path: Path) -> None:
    from faceprint.service import Faceprint

    text = profile_toml(name="fr-yunet").replace(f'file = "{DETECTOR[0]}"\nsha256 = "{DETECTOR[1]}"\n', "")
    (tmp_path / "yunet.toml").write_text(text.replace('kind = "scrfd"', 'kind = "yunet"'))
    ProfileRegistry(tmp_path).add(tmp_path / "yunet.toml", LICENCE, MODELS)
    fp = Faceprint(tmp_path, profile="fr-yunet", models_dir=models_dir())
    assert type(fp.engine.detector).__name__ == "YuNetDetector" and "yunet-2023mar" in fp.face_model_version
    assert fp.detect_faces(lfw_image("Adam_Sandler", 1)).face_details[0].confidence > 99  # YuNet's table
    same = fp.compare_faces(lfw_image("Adam_Sandler", 1), lfw_image("Adam_Sandler", 3), similarity_threshold=0)
    other = fp.compare_faces(lfw_image("Adam_Sandler", 1), lfw_image("Aaron_Peirsol", 1), similarity_threshold=0)
    assert same.face_matches[0].similarity > other.face_matches[0].similarity + 10


def test_a_recipe_registers_from_its_fetched_archive(tmp_path: Path) -> None:
    """The recipe path end to end without a network: a recipe like buffalo_l's over a local zip of the
    test models, 'fetched' by copying; its archive digest and its pinned member digest are checked."""
    import dataclasses
    import zipfile

    from faceprint.models.recipes import Member
    from faceprint.models.store import sha256_of

    archive = tmp_path / "pack.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, _ in (DETECTOR, RECOGNISER):
            zf.write(MODELS / name, f"pack/{name}")
    recipe = dataclasses.replace(
        BUFFALO_L, name="pack", url="https://example.invalid/pack.zip", archive="pack.zip",
        archive_sha256=sha256_of(archive), members=(Member("detector", DETECTOR[0]),
                                                   Member("recogniser", RECOGNISER[0], RECOGNISER[1])),
        recogniser=dataclasses.replace(BUFFALO_L.recogniser, mean=(127.0,) * 3, std=(128.0,) * 3))
    fetched = []

    def fetch(url: str, destination: Path, max_bytes: int) -> None:
        fetched.append(url)
        shutil.copyfile(archive, destination)

    registry = ProfileRegistry(tmp_path / "home", fetch=fetch)
    profile = registry.add_recipe(recipe, recipe.licence)
    assert fetched == [recipe.url] and profile.operator.files()["detector"][:2] == DETECTOR  # the digest it measured
    assert registry.registration("pack")["origin"]["archive"] == recipe.url
    assert not (registry.folder("pack") / "pack.zip").exists()  # the archive is not kept
    assert registry.add_recipe(recipe, recipe.licence) == profile and fetched == [recipe.url]  # registered: no fetch
    wrong = dataclasses.replace(recipe, name="pack2", members=(recipe.members[0], Member("recogniser", RECOGNISER[0],
                                                                                        "1" * 64)))
    with pytest.raises(ModelUnavailableError, match="the profile pins 1111"):
        registry.add_recipe(wrong, recipe.licence)
    assert registry.operator_names() == ["pack"]
    # from --from DIR: the operator's archive is read, not moved nor removed
    registry.add_recipe(dataclasses.replace(recipe, name="pack3"), recipe.licence, tmp_path)
    assert archive.is_file() and len(fetched) == 2 and registry.operator_names() == ["pack", "pack3"]
