"""Calibration on the operator's own faces (``faceprint calibrate``): an operator profile made of the
models-test files (SCRFD-500M + an ArcFace-style 512-d recogniser), calibrated on LFW View 1 people of
pairsDevTrain and checked on the people of pairsDevTest, who are disjoint."""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, LFW, models_dir
from faceprint import calibrate as cal
from faceprint.cli import main
from faceprint.errors import InvalidParameterException

MODELS = DATA / "models-test"
PROFILE = "scrfd-test"
LICENCE = "test-only-non-commercial"
SUBSET = 800
"""Images per side (calibration, held out): about 320,000 impostor pairs each, so that about 30 pairs
sit above the 1e-4 threshold on either side."""


def lfw_people(split: str) -> list[str]:
    names = set()
    for line in (LFW / f"pairs{split}.txt").read_text().splitlines()[1:]:
        fields = line.split()
        names |= {fields[0]} if len(fields) == 3 else {fields[0], fields[2]} if len(fields) == 4 else set()
    return sorted(names)


def subset(split: str, count: int) -> cal.LabelledFaces:
    """Every image of the split's people, people taken in a fixed pseudo-random order, up to ``count``."""
    people, paths = [], []
    for name in sorted(lfw_people(split), key=lambda n: hashlib.sha256(n.encode()).hexdigest()):
        images = sorted((LFW / "images" / name).glob("*.jpg"))
        if len(paths) + len(images) > count:
            continue
        people += [name] * len(images)
        paths += images
    return cal.LabelledFaces(LFW / "images", tuple(people), tuple(paths))


def genders() -> dict[str, str]:
    out = {}
    for group in ("male", "female"):
        for line in (DATA / "attributes" / "lfw-gender" / f"{group}_names.txt").read_text().split():
            out[line.rsplit("_", 1)[0]] = group
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A faceprint home with the operator profile registered from the models-test files."""
    from faceprint.models.registry import ProfileRegistry

    home = tmp_path_factory.mktemp("calibrate-home")
    toml = home / "scrfd-test.toml"
    toml.write_text(f'''name = "{PROFILE}"
version = "models-test-1"
licence = "{LICENCE}"

[detector]
kind = "scrfd"
file = "{MODELS / 'det_500m.onnx'}"
sha256 = "{sha(MODELS / 'det_500m.onnx')}"

[recogniser]
kind = "arcface"
file = "{MODELS / 'faceplugin_fr_feature.onnx'}"
sha256 = "{sha(MODELS / 'faceplugin_fr_feature.onnx')}"
mean = [127.0, 127.0, 127.0]
std = [128.0, 128.0, 128.0]
output_dim = 512
''')
    ProfileRegistry(home).add(toml, LICENCE)
    return home


@pytest.fixture(scope="module")
def embedded(home: Path) -> dict[str, tuple[cal.LabelledFaces, list]]:
    """The calibration (DevTrain people) and held-out (DevTest people) subsets, embedded once."""
    from faceprint.service import Faceprint

    fp = Faceprint(home, profile=PROFILE, threads=1)
    out = {}
    for split in ("DevTrain", "DevTest"):
        faces = subset(split, SUBSET)
        out[split] = (faces, cal.embed(fp.engine, fp.load_image, faces.paths, workers=2))
    return out


@pytest.fixture(scope="module")
def calibrated(home: Path, embedded) -> dict:
    from faceprint.models.registry import ProfileRegistry

    faces, vectors = embedded["DevTrain"]
    groups = genders()
    calibration = cal.calibration_of(cal.scores_of(faces, vectors, groups), cal.data_digest(faces, groups))
    ProfileRegistry(home).save_calibration(PROFILE, calibration)
    return calibration


def test_thresholds_hold_on_held_out_people(home: Path, embedded, calibrated: dict) -> None:
    from faceprint.models.registry import ProfileRegistry

    profile = ProfileRegistry(home).get(PROFILE)
    assert profile.calibrated and [list(k) for k in profile.knots] == calibrated["knots"]
    faces, vectors = embedded["DevTest"]
    held_out = cal.scores_of(faces, vectors)
    assert held_out.impostor_total > 250_000 and len(held_out.genuine) > 500
    assert held_out.no_face <= 5 and calibrated["no_face"] <= 5
    counts = {}
    for similarity, target in ((70, 1e-3), (80, 1e-4), (90, 1e-5), (99, 1e-6)):
        fmr, false_matches = cal.rates_at(held_out.impostor, profile.score_for(similarity), True)
        fnmr, _ = cal.rates_at(held_out.genuine, profile.score_for(similarity), False)
        counts[similarity] = (false_matches, len(held_out.impostor), fnmr)
        if similarity in (70, 80):
            assert target / 2 <= fmr <= 2 * target, (similarity, fmr, counts)
    print(f"\nheld-out people ({len(held_out.genuine)} genuine pairs): false matches / impostor pairs, FNMR "
          f"at 70/80/90/99: {counts}")
    assert counts[80][2] < 0.10  # a working recogniser: most same-person pairs still match at 80
    assert counts[90][0] <= 10 and counts[99][0] <= 3  # raw counts (LFW is too small to test 1e-5, 1e-6)
    assert calibrated["extrapolated"] == [90.0, 99.0]  # 320k pairs measure down to 1e-4 only


def test_threshold_table_and_det(calibrated: dict) -> None:
    table = calibrated["thresholds"]
    assert [row["similarity"] for row in table] == [50, 60, 70, 80, 90, 99]
    scores = [row["score"] for row in table]
    assert scores == sorted(scores) and len(set(scores)) == 6
    for row in table[:4]:  # measured levels: the data's own rate is the target (the order statistic;
        expected = row["target_fmr"] * calibrated["impostor"]  # knots are rounded to 6 places)
        assert expected - 3 <= row["false_matches"] <= expected + 1, row
        assert row["false_matches"] == round(row["fmr"] * calibrated["impostor"]) and not row["extrapolated"]
    fnmrs = [row["fnmr"] for row in table]
    assert fnmrs == sorted(fnmrs) and 0 < fnmrs[-1] < 1
    det = calibrated["det"]
    assert len(det) >= 40 and [p[1] for p in det] == sorted(p[1] for p in det)
    assert det[-1][1] == 1.0 and det[0][1] < 1e-5 and det[0][2] > det[-1][2]


def test_groups(calibrated: dict, embedded) -> None:
    groups = calibrated["groups"]
    assert set(groups) == {"male", "female"}
    faces, vectors = embedded["DevTrain"]
    gender = genders()
    scores = cal.scores_of(faces, vectors, gender)
    across = calibrated["groups_across"]
    unlabelled = int((scores.impostor_group == -1).sum())
    assert sum(g["impostor"] for g in groups.values()) + int((scores.impostor_group == -2).sum()) + unlabelled \
        == calibrated["impostor"]
    assert sum(g["genuine"] for g in groups.values()) + int((scores.genuine_group < 0).sum()) == calibrated["genuine"]
    # the women's rate at 70, counted directly
    keep = [i for i, v in enumerate(vectors) if v is not None]
    women = np.array([gender.get(faces.people[i]) == "female" for i in keep])
    labels = np.array([faces.people[i] for i in keep])
    matrix = np.stack([vectors[i] for i in keep])
    i, j = np.triu_indices(len(keep), 1)
    pick = women[i] & women[j] & (labels[i] != labels[j])
    direct = float(((matrix[i[pick]] * matrix[j[pick]]).sum(1) >= calibrated["thresholds"][2]["score"]).mean())
    row = groups["female"]["thresholds"][2]
    assert row["similarity"] == 70 and row["fmr"] == pytest.approx(direct)
    assert groups["female"]["impostor"] == int(pick.sum()) and groups["male"]["people"] > groups["female"]["people"]
    assert across[2]["similarity"] == 70 and across[2]["fmr"] < 1e-2


@pytest.fixture(scope="module")
def small_people(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """16 DevTrain people with 3 or more images, 3 each, as a folder per person (links), and their groups."""
    root = tmp_path_factory.mktemp("people")
    gender = genders()
    rows = ["person,group"]
    for name in lfw_people("DevTrain"):
        images = sorted((LFW / "images" / name).glob("*.jpg"))
        if len(images) >= 3 and len(rows) <= 16:
            (root / name).mkdir()
            for image in images[:3]:
                (root / name / image.name).symlink_to(image)
            rows.append(f"{name},{gender.get(name, 'unknown')}")
    groups = root.parent / "groups.csv"
    groups.write_text("\n".join(rows) + "\n")
    return root, groups


def test_cli_calibrate_writes_the_profile(home: Path, calibrated: dict, small_people, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from faceprint.models.registry import ProfileRegistry

    people, groups = small_people
    report = tmp_path / "report"
    registry = ProfileRegistry(home)
    before = registry.calibration(PROFILE)
    before["probe_quality"] = {"widths": [20, 110], "rank1": [30.0, 97.0]}
    registry.save_calibration(PROFILE, before)
    try:
        assert main(["--home", str(home), "calibrate", "--profile", PROFILE, "--people", str(people),
                     "--groups", str(groups), "--report", str(report)]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["Written"] is True and out["Profile"] == PROFILE
        saved = registry.calibration(PROFILE)
        assert saved["knots"] == out["Calibration"]["knots"] != calibrated["knots"]
        assert saved["faces"] == 48 and saved["people"] == 16 and saved["genuine"] == 48
        assert saved["impostor"] == 48 * 47 // 2 - 48 and saved["extrapolated"] == [70.0, 80.0, 90.0, 99.0]
        assert saved["probe_quality"]["rank1"] == [30.0, 97.0]  # kept: measured apart
        from faceprint.service import Faceprint

        assert Faceprint(home, profile=PROFILE).probes.curve.rank1_at(110) == 97.0  # what searches rate probes by
        assert saved["data_sha256"] == cal.data_digest(cal.read_people(people), cal.read_groups(groups))
        assert set(saved["groups"]) <= {"male", "female", "unknown"} and len(saved["groups"]) >= 2
        for png in (report / "det.png", registry.folder(PROFILE) / "det.png"):
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            with Image.open(io.BytesIO(png.read_bytes())) as image:
                image.verify()
            with Image.open(png) as image:
                assert image.format == "PNG" and image.size == (900, 640)
                assert len(image.convert("RGB").getcolors(1 << 20) or ()) > 10  # drawn, not blank
        assert json.loads((report / "report.json").read_text())["Calibration"]["data_sha256"] == saved["data_sha256"]
        assert (report / "thresholds.csv").read_text().splitlines()[0].startswith("group,similarity,score,fmr")
        assert main(["--home", str(home), "models", "list"]) == 0
        listed = {row["Name"]: row for row in json.loads(capsys.readouterr().out)["Profiles"]}
        shown = listed[PROFILE]["Calibration"]
        assert listed[PROFILE]["Calibrated"] is True and shown["DataSha256"] == saved["data_sha256"]
        assert shown["Knots"] == saved["knots"] and shown["Impostor"] == 1080
    finally:
        registry.save_calibration(PROFILE, calibrated)


def test_cli_calibrate_from_a_pairs_file(home: Path, small_people, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from faceprint.models.registry import ProfileRegistry

    before = ProfileRegistry(home).calibration(PROFILE)

    people, _ = small_people
    numbers = {p.name: [int(f.stem.rsplit("_", 1)[1]) for f in sorted(p.iterdir())] for p in people.iterdir()}
    names = sorted(numbers)
    lines = [f"{name} {numbers[name][0]} {j}" for name in names for j in numbers[name][1:]]  # 32 same-person pairs
    lines += [f"{a} {numbers[a][0]} {b} {numbers[b][2]}" for a, b in zip(names, names[1:], strict=False)]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join([str(len(lines)), *lines]) + "\n")
    try:
        assert main(["--home", str(home), "calibrate", "--profile", PROFILE, "--pairs", str(pairs),
                     "--images", str(people), "--workers", "1"]) == 0
        saved = json.loads(capsys.readouterr().out)["Calibration"]
        assert saved == ProfileRegistry(home).calibration(PROFILE)
        assert saved["genuine"] == 32 and saved["faces"] == 48 and saved["impostor"] == 48 * 47 // 2 - 48
        assert saved["data_sha256"] == cal.data_digest(cal.read_pairs(pairs, people))
    finally:
        if before is not None:
            ProfileRegistry(home).save_calibration(PROFILE, before)


def test_cli_refuses_bad_input(home: Path, small_people, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    people, _ = small_people
    (tmp_path / "huge.csv").write_bytes(b"person,group\n\"" + b"x" * 200_000 + b"\",x\n")  # over csv's field limit
    (tmp_path / "three.csv").write_text("a,b,c\n")
    cases = [
        (["calibrate", "--profile", PROFILE, "--pairs", str(LFW / "pairsDevTest.txt")], "--pairs needs --images"),
        (["calibrate", "--people", str(people)], "needs --profile"),
        (["calibrate", "--profile", "no-such", "--people", str(people)], "Unknown model profile"),
        (["calibrate", "--profile", PROFILE, "--people", str(tmp_path / "none")], "not a folder"),
        (["calibrate", "--profile", PROFILE, "--people", str(people), "--groups", str(tmp_path / "g.csv")],
         "no such file"),
        (["calibrate", "--profile", PROFILE, "--people", str(people), "--groups", str(tmp_path / "huge.csv")],
         "not a CSV file"),
        (["calibrate", "--profile", PROFILE, "--people", str(people), "--groups", str(tmp_path / "three.csv")],
         "line 1: not 'person,group'"),
        (["calibrate", "--profile", PROFILE, "--people", str(people), "--images", str(people)], "goes with --pairs"),
    ]
    for argv, message in cases:
        assert main(["--home", str(home), *argv]) == 1, argv
        err = json.loads(capsys.readouterr().err)
        assert err["__type"] == "InvalidParameterException" and message in err["Message"], (argv, err)


def test_built_in_profiles_are_measured_not_rewritten(small_people, tmp_path: Path, monkeypatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from faceprint.models.profiles import FAST

    monkeypatch.setenv("FACEPRINT_MODELS_DIR", str(models_dir()))
    people, _ = small_people
    shipped = [list(k) for k in FAST.knots]
    assert main(["--home", str(tmp_path), "calibrate", "--profile", "fast", "--people", str(people)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["Written"] is False and out["Calibration"]["knots"] == shipped
    assert out["Calibration"]["proposed_knots"] != shipped and not (tmp_path / "profiles").exists()
    assert [row["score"] for row in out["Calibration"]["thresholds"]] == [k[0] for k in shipped[1:-1]]


def test_pairs_file(tmp_path: Path) -> None:
    faces = cal.read_pairs(LFW / "pairsDevTest.txt", LFW / "images")
    assert len(faces.same_pairs) == 500 and len(set(faces.people)) == len(lfw_people("DevTest"))
    assert all(faces.people[a] == faces.people[b] for a, b in faces.same_pairs)
    rng = np.random.default_rng(1)  # plain vectors: each person near their own random direction
    centre = {name: rng.standard_normal(64) for name in set(faces.people)}
    vectors = [centre[p] + 0.5 * rng.standard_normal(64) for p in faces.people]
    vectors = [v / np.linalg.norm(v) for v in vectors]
    scores = cal.scores_of(faces, vectors)
    assert len(scores.genuine) == 500 and scores.genuine.mean() > 0.5 > scores.impostor.mean() + 0.4
    n = len(faces.paths)
    same_person = sum(faces.people.count(p) * (faces.people.count(p) - 1) // 2 for p in set(faces.people))
    assert scores.impostor_total == len(scores.impostor) == n * (n - 1) // 2 - same_person
    bad = tmp_path / "pairs.txt"
    bad.write_text("10\nAbel_Pacheco 1 x\n")
    with pytest.raises(InvalidParameterException, match="line 2"):
        cal.read_pairs(bad, LFW / "images")
    bad.write_text("10\nNobody_Here 1 2\n")
    with pytest.raises(InvalidParameterException, match="no image"):
        cal.read_pairs(bad, LFW / "images")


def test_sampled_impostors_are_deterministic() -> None:
    rng = np.random.default_rng(2)
    people = tuple(f"p{i // 2}" for i in range(400))
    faces = cal.LabelledFaces(Path("."), people, tuple(Path(f"{i}.jpg") for i in range(400)))
    vectors = list(rng.standard_normal((400, 16)))
    vectors = [v / np.linalg.norm(v) for v in vectors]
    first = cal.scores_of(faces, vectors, max_impostors=5000)
    again = cal.scores_of(faces, vectors, max_impostors=5000)
    assert first.sampled and first.impostor_total == 400 * 399 // 2 - 200 and len(first.impostor) == 5000
    assert np.array_equal(first.impostor, again.impostor)


def test_extrapolated_knots_err_high_on_a_gaussian_tail() -> None:
    sigma = 0.1
    impostor = np.random.default_rng(3).normal(0.0, sigma, 200_000)
    knots, extrapolated = cal.knots_for(impostor)
    assert extrapolated == [False, False, False, False, True, True]
    true_fmr = [0.5 * math.erfc(score / (sigma * math.sqrt(2))) for score, _ in knots[1:-1]]
    for (fmr, _), got, guessed in zip(cal.FMR_LEVELS, true_fmr, extrapolated, strict=True):
        if guessed:  # conservative (at or under the stated rate) but not absurdly so
            assert fmr / 30 < got <= fmr, (fmr, got)
        else:
            assert got == pytest.approx(fmr, rel=0.35)
    with pytest.raises(InvalidParameterException, match="too few"):
        cal.knots_for(impostor[:20])


def test_probe_curve_from_an_operator_calibration() -> None:
    from faceprint.probes import ProbeAssessor

    curve = {"widths": [20, 40, 110], "rank1": [10.0, 80.0, 99.0], "sharpness": [10.0, 30.0, 70.0]}
    assessor = ProbeAssessor(PROFILE, calibration={"knots": [[-1, 0], [1, 100]], "probe_quality": curve})
    assert assessor.curve is not None and assessor.curve.rank1_at(40) == 80.0
    assert ProbeAssessor(PROFILE, calibration={"knots": [[-1, 0], [1, 100]]}).curve is None
    assert ProbeAssessor("fast").curve is not None  # built-ins: the shipped file
