"""The age and gender chips, made straight at the network's size by dlib or made at 128 px and
shrunk by pixel-area averaging (agegender.area_shrink): what each gives, flip-averaged as served.

Age: mean error of the expected age (no correction, no band) on UTKFace's two halves. Gender: LFW's
verified labels, and UTKFace adults per race with the women called men and men called women counted
(evaluation only). The served choice (agegender's docstring): the smoothed chip for age, dlib's
direct chip for gender.

    python benchmarks/fit_chips.py [--limit N] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attr_age  # noqa: E402
from attr_stats import fmt, mean_ci, wilson  # noqa: E402

SOURCE = 128


def reading(path: Path) -> dict | None:
    """Expected age and P(male) of a photo's centre face from both kinds of chip."""
    import dlib

    from faceprint.attributes.agegender import AGE_CHIP, AGE_WEIGHTS, CHIP_PADDING, GENDER_CHIP, area_shrink, blob
    from faceprint.models.embedders import dlib_box

    t = attr_age.tools()
    image = t.fp.load_image(path)
    face = t.centre_face(image)
    if face is None:
        return None
    box, lm5 = face
    age_net, gender_net, shapes = t.age_gender._models()
    shape = shapes(image.rgb, dlib.rectangle(*dlib_box(np.asarray(box), np.asarray(lm5, np.float64))))
    big = dlib.get_face_chip(image.rgb, shape, SOURCE, CHIP_PADDING)
    chips = {"direct": (dlib.get_face_chip(image.rgb, shape, AGE_CHIP, CHIP_PADDING),
                        dlib.get_face_chip(image.rgb, shape, GENDER_CHIP, CHIP_PADDING)),
             "smoothed": (area_shrink(big, AGE_CHIP), area_shrink(big, GENDER_CHIP))}
    out = {}
    for kind, (age_chip, gender_chip) in chips.items():
        ages = age_net.run(None, {"images": blob([age_chip, age_chip[:, ::-1]])})[0].astype(np.float64).mean(0)
        males = gender_net.run(None, {"images": blob([gender_chip, gender_chip[:, ::-1]])})[0]
        out[kind] = (float(ages @ AGE_WEIGHTS), float(males[:, 1].astype(np.float64).mean()))
    return out


def readings(paths: list[Path], workers: int) -> list:
    if workers <= 1:
        return [reading(p) for p in paths]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(reading, paths, chunksize=16))


def pct(k: int, n: int) -> str:
    return f"{fmt(wilson(k, n))} (n={n})" if n else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    lfw = attr_age.lfw_gender(args.limit)
    utk = attr_age.utk_faces(args.limit)
    lfw_read = readings([p for p, _ in lfw], args.workers)
    utk_read = readings([p for p, *_ in utk], args.workers)
    print("| chip | age: mean error, UTKFace half A | half B | gender: LFW | LFW women called men | "
          "UTKFace adults: " + " | ".join(attr_age.RACES) + " | women called men | men called women |")
    print("|---|---|---|---|---|" + "---|" * len(attr_age.RACES) + "---|---|")
    for kind in ("direct", "smoothed"):
        cells = [kind]
        for half in "AB":
            errors = [abs(r[kind][0] - age) for (p, age, *_), r in zip(utk, utk_read, strict=True)
                      if r is not None and attr_age.utk_half(p) == half]
            cells.append(fmt(mean_ci(errors)))
        lfw_pairs = [(male, r[kind][1] >= 0.5) for (_, male), r in zip(lfw, lfw_read, strict=True) if r is not None]
        women = [said for male, said in lfw_pairs if not male]
        cells += [pct(sum(m == s for m, s in lfw_pairs), len(lfw_pairs)), pct(sum(women), len(women))]
        adults = [(female, race, r[kind][1] >= 0.5) for (_, age, female, race), r in zip(utk, utk_read, strict=True)
                  if r is not None and age >= attr_age.ADULT]
        for code in range(len(attr_age.RACES)):
            group = [female != said for female, race, said in adults if race == code]
            cells.append(pct(sum(group), len(group)))
        cells.append(str(sum(female and said for female, _, said in adults)))
        cells.append(str(sum(not female and not said for female, _, said in adults)))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
