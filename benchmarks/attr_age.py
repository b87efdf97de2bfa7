"""AgeRange, Gender and Emotions measured on real faces, through faceprint's own detector.

- Gender on LFW: every lfw-dev image whose file name is in the verified gender lists
  (attributes/lfw-gender; the few names in both lists are left out), the face nearest the centre.
- Gender and age on UTKFace (attributes/utkface-dev, evaluation only): per race x gender x age band.
  AgeRange's correction and band (AGE_CORRECTION, BAND_* in faceprint.attributes.agegender) were
  fitted on half A (file-name hash, :func:`utk_half`; ``benchmarks/fit_age.py``): age figures are
  given on half B and on all faces. Nothing else was fitted on UTKFace.
- Emotions on CK+'s six basic expressions (attributes/ck48-dev, evaluation only, nothing fitted):
  each 48x48 crop is upscaled 4x (bicubic) and goes through the detector; where nothing is found
  the whole crop is the face box. The top type among all eight must be the labelled one.
- ms per face: each model on one face, repeated (the first call, which loads, left out).

    python benchmarks/attr_age.py [--limit N] [--workers 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attr_stats import fmt, mean_ci, wilson  # noqa: E402

DATA = Path(os.environ.get("FACEPRINT_TEST_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
LFW = DATA / "faces" / "lfw-dev" / "images"
GENDER_LISTS = DATA / "attributes" / "lfw-gender"
UTK = DATA / "attributes" / "utkface-dev"
CK = DATA / "attributes" / "ck48-dev"
CK_SIX = {"anger": "ANGRY", "disgust": "DISGUSTED", "fear": "FEAR", "happy": "HAPPY", "sadness": "SAD",
          "surprise": "SURPRISED"}
CK_UPSCALE = 4
RACES = ("White", "Black", "Asian", "Indian", "Others")
AGE_BANDS = ((0, 12), (13, 17), (18, 29), (30, 44), (45, 59), (60, 200))
ADULT = 18

_tools = None


# ---------------------------------------------------------------- data

def lfw_gender(limit: int | None = None) -> list[tuple[Path, bool]]:
    """(image, is male) for the lfw-dev images the verified lists name (names in both lists left out)."""
    male = set((GENDER_LISTS / "male_names.txt").read_text().split())
    female = set((GENDER_LISTS / "female_names.txt").read_text().split())
    out = [(p, p.name in male) for p in sorted(LFW.glob("*/*.jpg")) if (p.name in male) != (p.name in female)]
    return spread(out, limit)


def utk_faces(limit: int | None = None) -> list[tuple[Path, int, bool, int]]:
    """(image, age, is female, race) from UTKFace's file names (malformed names left out)."""
    out = []
    for p in sorted(UTK.glob("*.jpg")):
        parts = p.name.split("_")
        if len(parts) >= 4 and all(x.isdigit() for x in parts[:3]):
            out.append((p, int(parts[0]), parts[1] == "1", int(parts[2])))
    return spread(out, limit)


def utk_half(path: Path) -> str:
    """"A" (the band was fitted there) or "B", by a hash of the file name."""
    return "AB"[hashlib.sha256(path.name.encode()).digest()[0] % 2]


def ck_six(limit: int | None = None) -> list[tuple[Path, str]]:
    out = [(p, kind) for folder, kind in CK_SIX.items() for p in sorted((CK / folder).glob("*.png"))]
    return spread(out, limit)


def spread(items: list, limit: int | None) -> list:
    """``limit`` items spread evenly over the list (all if None)."""
    if limit is None or limit >= len(items):
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


# ---------------------------------------------------------------- measuring

class Tools:
    """The detector and the attribute models of one process."""

    def __init__(self) -> None:
        import cv2

        from faceprint.attributes.agegender import AgeGender
        from faceprint.attributes.emotions import EmotionReader
        from faceprint.attributes.mesh import FaceMesh
        from faceprint.models import catalog
        from faceprint.service import Faceprint

        cv2.setNumThreads(1)
        self.fp = Faceprint(profile="fast", threads=1)
        store = self.fp.engine.store
        self.age_gender = AgeGender(store.path(catalog.AGE), store.path(catalog.GENDER),
                                    store.path(catalog.DLIB_SHAPE5))
        self.emotions = EmotionReader(store.path(catalog.FER_EMOTION))
        self.mesh = FaceMesh(store.path(catalog.FACE_LANDMARKER))

    def centre_face(self, image):
        """(box, five landmarks) of the face nearest the centre, or None."""
        faces = self.fp.engine.detect(image, 1000)
        if not len(faces):
            return None
        centres = faces.boxes[:, :2] + faces.boxes[:, 2:] / 2
        i = int(np.argmin(((centres - [image.width / 2, image.height / 2]) ** 2).sum(1)))
        return faces.boxes[i], faces.landmarks[i]


def tools() -> Tools:
    global _tools
    if _tools is None:
        _tools = Tools()
    return _tools


def read_face(path: Path) -> dict | None:
    """Age probabilities and P(male) of a photo's centre face (None: no face found)."""
    t = tools()
    image = t.fp.load_image(path)
    face = t.centre_face(image)
    if face is None:
        return None
    reading = t.age_gender.read(image, *face)
    return {"age": reading.age_probabilities, "male": reading.male}


def ck_image(path: Path):
    import cv2

    from faceprint.imaging import DecodedImage

    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    big = cv2.resize(grey, None, fx=CK_UPSCALE, fy=CK_UPSCALE, interpolation=cv2.INTER_CUBIC)
    return DecodedImage(rgb=np.ascontiguousarray(np.repeat(big[:, :, None], 3, axis=2)))


def whole_crop_face(image) -> tuple[np.ndarray, np.ndarray]:
    """The whole picture as the face box, with the five landmarks where a centred face has them."""
    w, h = image.width, image.height
    box = np.array([0, 0, w, h], np.float32)
    lm5 = np.array([[0.34, 0.4], [0.66, 0.4], [0.5, 0.58], [0.37, 0.76], [0.63, 0.76]], np.float32) * [w, h]
    return box, lm5


def read_expression(path: Path) -> dict:
    """fer's seven and the eight fused probabilities of a CK+ crop, and whether the detector found it."""
    t = tools()
    image = ck_image(path)
    face = t.centre_face(image)
    found = face is not None
    box, lm5 = face if found else whole_crop_face(image)
    mesh = t.mesh.run(image.bgr, box, lm5, blendshapes=True)
    fer = t.emotions.fer(image, box)
    from faceprint.attributes.emotions import fuse

    return {"found": found, "fer raw": fuse(fer, None, equal_priors=False), "fer": fuse(fer, None),
            "fused raw": fuse(fer, mesh, equal_priors=False, calm_rule=False),
            "fused no calm": fuse(fer, mesh, calm_rule=False), "fused": fuse(fer, mesh)}


def read_lfw_expression(path: Path) -> dict | None:
    """The eight probabilities of an LFW photo's centre face, as served and without the CALM rule
    (None: no face found)."""
    from faceprint.attributes.emotions import fuse

    t = tools()
    image = t.fp.load_image(path)
    face = t.centre_face(image)
    if face is None:
        return None
    mesh = t.mesh.run(image.bgr, *face, blendshapes=True)
    fer = t.emotions.fer(image, face[0])
    return {"fused": fuse(fer, mesh), "fused no calm": fuse(fer, mesh, calm_rule=False)}


def _job(job):
    kind, path = job
    readers = {"face": read_face, "expression": read_expression, "lfw expression": read_lfw_expression}
    return readers[kind](path)


def run_all(kind: str, paths: list[Path], workers: int) -> list:
    jobs = [(kind, p) for p in paths]
    if workers <= 1:
        return [_job(j) for j in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_job, jobs, chunksize=16))


# ---------------------------------------------------------------- timing

def timings(repeats: int = 20) -> dict[str, float]:
    """ms per face of each model on one LFW face, the median of ``repeats`` calls after a first."""
    t = tools()
    image = t.fp.load_image(lfw_gender(1)[0][0])
    box, lm5 = t.centre_face(image)
    calls = {
        "age and gender": lambda: t.age_gender.predict(image, box, lm5),
        "age only": lambda: t.age_gender.predict(image, box, lm5, gender=False),
        "gender only": lambda: t.age_gender.predict(image, box, lm5, age=False),
        "emotions (fer and the fusion; the mesh not included)": lambda: t.emotions.read(image, box, lm5, None),
    }
    out = {}
    for name, call in calls.items():
        call()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(1000 * (time.perf_counter() - start))
        out[name] = float(np.median(times))
    return out


# ---------------------------------------------------------------- report

def pct(successes: int, n: int) -> str:
    return f"{fmt(wilson(successes, n))} (n={n})" if n else "–"


def gender_lfw(limit: int | None, workers: int) -> list[str]:
    items = lfw_gender(limit)
    results = run_all("face", [p for p, _ in items], workers)
    found = [(male, r["male"] >= 0.5) for (_, male), r in zip(items, results, strict=True) if r is not None]
    right = sum(m == p for m, p in found)
    women = [p for m, p in found if not m]
    men = [p for m, p in found if m]
    return [
        "### Gender on LFW",
        "",
        f"{len(items)} lfw-dev images with a verified gender label, {len(found)} faces found "
        f"({len(men)} men, {len(women)} women). 95% Wilson intervals. Goal: ≥ 98%. Served: the gender network "
        "alone (heads on dlib or SFace descriptors were measured and not shipped: benchmarks/fit_gender.py).",
        "",
        "| measure | % |",
        "|---|---|",
        f"| accuracy | {pct(right, len(found))} |",
        f"| women called men | {pct(sum(women), len(women))} |",
        f"| men called women | {pct(sum(not p for p in men), len(men))} |",
        "",
    ]


def band_of(age: int) -> str:
    for low, high in AGE_BANDS:
        if low <= age <= high:
            return f"{low}-{high}" if high < 200 else f"{low}+"
    return "?"


def utk_section(limit: int | None, workers: int) -> list[str]:
    from faceprint.attributes.agegender import age_band

    items = utk_faces(limit)
    results = run_all("face", [p for p, *_ in items], workers)
    rows = []
    for (path, age, female, race), r in zip(items, results, strict=True):
        if r is None:
            continue
        band = age_band(r["age"])
        rows.append({"half": utk_half(path), "age": age, "female": female, "race": race,
                     "right": (r["male"] < 0.5) == female, "low": band.low, "high": band.high})
    out = [f"### UTKFace (evaluation only): {len(items)} images, {len(rows)} faces found", ""]
    out += utk_gender(rows) + utk_age(rows)
    return out


def utk_gender(rows: list[dict]) -> list[str]:
    adults = [r for r in rows if r["age"] >= ADULT]
    out = [
        f"Gender: accuracy on adults ({ADULT}+) by race; goal ≥ 96% in every group. Women called men "
        "(adults) separately.",
        "",
        "| race | adults: accuracy | women called men | men called women |",
        "|---|---|---|---|",
    ]
    for code, race in enumerate(RACES):
        group = [r for r in adults if r["race"] == code]
        women = [r for r in group if r["female"]]
        men = [r for r in group if not r["female"]]
        out.append(f"| {race} | {pct(sum(r['right'] for r in group), len(group))} | "
                   f"{pct(sum(not r['right'] for r in women), len(women))} | "
                   f"{pct(sum(not r['right'] for r in men), len(men))} |")
    out.append(f"| all adults | {pct(sum(r['right'] for r in adults), len(adults))} | | |")
    out.append(f"| all ages | {pct(sum(r['right'] for r in rows), len(rows))} | | |")
    bands = [band_of(low) for low, _ in AGE_BANDS]
    out += ["", "Gender accuracy % (n) per race x gender x age band (all ages; children's apparent gender is "
            "hard for any model):", "",
            "| race | gender | " + " | ".join(bands) + " |", "|---|---|" + "---|" * len(bands)]
    for code, race in enumerate(RACES):
        for female in (False, True):
            cells = []
            for band in bands:
                group = [r for r in rows if r["race"] == code and r["female"] == female and band_of(r["age"]) == band]
                cells.append(f"{100 * np.mean([r['right'] for r in group]):.0f} ({len(group)})" if group else "–")
            out.append(f"| {race} | {'F' if female else 'M'} | " + " | ".join(cells) + " |")
    return out + [""]


def age_figures(rows: list[dict]) -> tuple[str, str, str, str]:
    if not rows:
        return "–", "–", "–", "–"
    middle_error = [abs((r["low"] + r["high"]) / 2 - r["age"]) for r in rows]
    inside = sum(r["low"] <= r["age"] <= r["high"] for r in rows)
    widths = [r["high"] - r["low"] for r in rows]
    return (fmt(mean_ci(middle_error)), pct(inside, len(rows)), f"{float(np.median(widths)):.0f}",
            f"{float(np.mean(widths)):.1f}")


def utk_age(rows: list[dict]) -> list[str]:
    out = [
        "Age: mean error of the band's middle (years, bootstrap 95% interval), share of true ages inside "
        "the band (Wilson), median and mean band width. Goals: mean error ≤ 6, inside ≥ 80%, median width ≤ 15. "
        "Half B was not used to fit the correction or the band.",
        "",
        "| faces | mean error | inside the band | median width | mean width |",
        "|---|---|---|---|---|",
    ]
    for name, group in (("half B", [r for r in rows if r["half"] == "B"]),
                        ("half A (fitted here)", [r for r in rows if r["half"] == "A"]), ("all", rows)):
        out.append(f"| {name} | " + " | ".join(age_figures(group)) + " |")
    bands = [band_of(low) for low, _ in AGE_BANDS]
    out += ["", "Mean error of the band's middle (years) and share inside the band, per race x age band "
            "(all faces; n):", "", "| race | " + " | ".join(bands) + " |", "|---|" + "---|" * len(bands)]
    for code, race in enumerate(RACES):
        cells = []
        for band in bands:
            group = [r for r in rows if r["race"] == code and band_of(r["age"]) == band]
            if group:
                error = np.mean([abs((r["low"] + r["high"]) / 2 - r["age"]) for r in group])
                inside = 100 * np.mean([r["low"] <= r["age"] <= r["high"] for r in group])
                cells.append(f"{error:.1f}, {inside:.0f}% ({len(group)})")
            else:
                cells.append("–")
        out.append(f"| {race} | " + " | ".join(cells) + " |")
    return out + [""]


def emotions_section(limit: int | None, workers: int) -> list[str]:
    from faceprint.attributes.emotions import TYPES

    items = ck_six(limit)
    results = run_all("expression", [p for p, _ in items], workers)
    found = sum(r["found"] for r in results)
    out = [
        f"### Emotions on CK+ (six basic expressions, evaluation only): {len(items)} crops",
        "",
        f"Crops upscaled {CK_UPSCALE}x; the detector found {found} faces (elsewhere the whole crop is the box). "
        "Right when the labelled type is the top one among all eight. Goal ≥ 75%. Nothing was fitted on CK+, "
        "but the equal-priors correction (FER2013's published class counts) was adopted after CK+'s disgust row "
        "was seen (fer alone said DISGUSTED for 12% of disgust crops): read its gain with that in mind.",
        "",
        "| method | accuracy |",
        "|---|---|",
    ]
    confusion = Counter()
    variants = (("fer raw", "fer alone, its own (FER2013) priors"), ("fer", "fer alone, equal priors (no mesh)"),
                ("fused raw", "fer with FACS evidence, FER2013 priors, no CALM rule"),
                ("fused no calm", "fer with FACS evidence, equal priors, no CALM rule (served before)"),
                ("fused", "fer with FACS evidence, equal priors, CALM rule (as served)"))
    for key, name in variants:
        right = 0
        for (_, kind), r in zip(items, results, strict=True):
            top = TYPES[int(np.argmax(r[key]))]
            right += top == kind
            if key == "fused":
                confusion[(kind, top)] += 1
        out.append(f"| {name} | {pct(right, len(items))} |")
    out += ["", "As served, per expression: share right, and what it was most often taken for:", "",
            "| expression | right | most often instead |", "|---|---|---|"]
    for kind in CK_SIX.values():
        n = sum(v for (k, _), v in confusion.items() if k == kind)
        wrong = sorted(((v, t) for (k, t), v in confusion.items() if k == kind and t != kind), reverse=True)[:2]
        out.append(f"| {kind} | {pct(confusion[(kind, kind)], n)} | "
                   + ", ".join(f"{t} {v}" for v, t in wrong) + " |")
    return out + [""] + lfw_emotions(limit, workers)


def lfw_emotions(limit: int | None, workers: int) -> list[str]:
    """What the served Emotions say on news photos: HAPPY against the hand smile labels, and the top
    type of the faces labelled not smiling (mostly calm faces, unlabelled for anger or disgust)."""
    import csv

    from faceprint.attributes.emotions import TYPES

    labels = Path(__file__).resolve().parent / "labels" / "lfw-dev-attributes.csv"
    with labels.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["smile"] in ("0", "1") and r.get("sample") == "random"]
    rows = spread(rows, limit)
    results = run_all("lfw expression", [LFW / r["image"] for r in rows], workers)
    out = [f"On LFW's hand-labelled random sample ({sum(1 for x in results if x)} faces; news photos, mostly calm "
           "when not smiling): top type HAPPY exactly when labelled smiling, and the top type of the faces "
           "labelled not smiling. The CALM rule (emotions.CALM_RULE) was chosen for these faces "
           "(PROTOTYPE_RESTING measured on every fifth lfw-dev image, which overlaps this sample).", "",
           "| fusion | HAPPY exactly when smiling | not smiling: CALM | ANGRY | top types of the faces not smiling |",
           "|---|---|---|---|---|"]
    for key, name in (("fused no calm", "no CALM rule (served before)"), ("fused", "CALM rule (as served)")):
        pairs = [(r["smile"] == "1", TYPES[int(np.argmax(x[key]))]) for r, x in zip(rows, results, strict=True) if x]
        right = sum(smile == (top == "HAPPY") for smile, top in pairs)
        still = Counter(top for smile, top in pairs if not smile)
        n_still = sum(still.values())
        out.append(f"| {name} | {pct(right, len(pairs))} | {pct(still['CALM'], n_still)} | "
                   f"{pct(still['ANGRY'], n_still)} | "
                   + ", ".join(f"{t} {100 * v / max(n_still, 1):.0f}%" for t, v in still.most_common()) + " |")
    return out + [""]


def section(limit: int | None = None, workers: int = 2) -> str:
    """The markdown section: ``limit`` faces of each set (all if None)."""
    start = time.time()
    out = ["## Age, gender and emotions", ""]
    out += gender_lfw(limit, workers)
    out += utk_section(limit, workers)
    out += emotions_section(limit, workers)
    out += ["### Cost", "", "ms per face on this machine (one thread; median of 20 calls on one LFW face; "
            "the mesh is timed in its own section):", "", "| model | ms |", "|---|---|"]
    out += [f"| {name} | {ms:.1f} |" for name, ms in timings().items()]
    out += ["", f"(section measured in {time.time() - start:.0f} s)", ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="faces of each set (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(section(args.limit, args.workers))


if __name__ == "__main__":
    main()
