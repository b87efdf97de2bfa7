"""What attributes cost: DetectFaces DEFAULT against ALL (and each attribute group) on the sample
portrait and two group photos, and StartFaceDetection DEFAULT against ALL on a real clip.

Times are the fastest of several runs of the same request (the models loaded, one thread per
inference call), so that other work on the machine inflates them as little as possible.

    python benchmarks/attr_cost.py [--repeats N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
PICTURES = (ROOT / "samples" / "astronaut.jpg", DATA / "faces" / "groups" / "human_groups" / "group-1.jpg",
            DATA / "faces" / "groups" / "human_groups" / "solvay1927.jpg")
CLIP = DATA / "video" / "face_recognition__short_hamilton_clip.mp4"
GROUPS = {
    "AGE_RANGE, GENDER": ["AGE_RANGE", "GENDER"],
    "SMILE (the face mesh)": ["SMILE"],
    "EMOTIONS (mesh and expression network)": ["EMOTIONS"],
    "EYEGLASSES, SUNGLASSES, BEARD, MUSTACHE": ["EYEGLASSES", "SUNGLASSES", "BEARD", "MUSTACHE"],
    "ALL": ["ALL"],
}


def fastest(run: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` runs, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def faceprint():
    from faceprint.service import Faceprint

    return Faceprint(tempfile.mkdtemp(prefix="attr-cost-"), profile="fast",
                     models_dir=Path.home() / ".faceprint" / "models", threads=1)


def image_rows(fp, repeats: int) -> list[str]:
    from faceprint.imaging import load_image

    rows = ["| picture | faces | DEFAULT | " + " | ".join(f"+ {g}, a face" for g in GROUPS) + " |",
            "|---|---|---|" + "---|" * len(GROUPS)]
    for path in PICTURES:
        rows.append(image_row(fp, path.name, load_image(path.read_bytes()), repeats))
    return rows


def image_row(fp, name: str, image, repeats: int) -> str:
    faces = len(fp.detect_faces(image, ["ALL"]).face_details)  # loads every model
    base = fastest(lambda: fp.detect_faces(image), repeats)
    extra = [(fastest(lambda a=asked: fp.detect_faces(image, a), repeats) - base) / faces
             for asked in GROUPS.values()]
    return (f"| {name} | {faces} | {base * 1000:.0f} ms | " + " | ".join(f"{e * 1000:.1f} ms" for e in extra) + " |")


def video_rows(fp, repeats: int) -> list[str]:
    from faceprint.video import faces
    from faceprint.video.context import LocalContext

    def job(attributes: str) -> LocalContext:
        ctx = LocalContext(CLIP, {"FaceAttributes": attributes}, fp)
        faces.detect(ctx)
        return ctx

    first = job("ALL")
    info, found = first.info, len(first.items)
    base = fastest(lambda: job("DEFAULT"), max(1, repeats // 3))
    full = fastest(lambda: job("ALL"), max(1, repeats // 3))
    return [f"StartFaceDetection on {CLIP.name} ({info.duration_ms / 1000:.1f} s, {info.width}x{info.height}, "
            f"{found} faces in its sampled frames): DEFAULT {base:.1f} s, ALL {full:.1f} s, "
            f"{(full - base) / found * 1000:.0f} ms more a face."]


def section(limit: int | None = None, repeats: int = 5) -> str:
    """Markdown: the cost table (``limit`` is ignored: every picture is timed)."""
    fp = faceprint()
    lines = ["## What attributes cost", "",
             f"Fastest of {repeats} runs, models loaded, one thread (`python benchmarks/attr_cost.py`).", ""]
    lines += image_rows(fp, repeats) + [""] + video_rows(fp, repeats) + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    print(section(repeats=parser.parse_args().repeats))


if __name__ == "__main__":
    main()
