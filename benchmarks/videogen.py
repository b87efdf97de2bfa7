"""Surveillance-style clips of LFW people with exact ground truth, for benchmarks/video.py.

Run: python benchmarks/videogen.py [--set full|quick] [--cache DIR]   (prints the clips made or reused)

People: the LFW dev people (``../shared/data/faces/lfw-dev``) with two photos or more are split
in two halves by a hash of their name: "enrolled" people (their first photo is in the gallery;
clips show their other photos) and "held out" people (never enrolled; clips show any photo).
The gallery also holds the one photo of every single-photo person, as distractors: it is every
LFW dev person except the held-out half (and one name of the three people LFW names twice,
``ALIASES``). Each clip shows as many held-out as enrolled people.

Clips: 25 fps H.264 (PyAV, crf 23) at 1280x720 or 1920x1080, over a still, noisy "camera"
background with a timestamp overlay. Each person appears one to three times (entering and
leaving the frame, or appearing where they stand, and re-entering later with another photo),
moving along straight or curved paths, walking toward or away from the camera (the face grows or
shrinks), with some defocus and motion blur and changes of brightness; each clip has a designed
crossing of two people, and others happen by chance. Faces are LFW photos pasted through a
feathered elliptical mask (tests/videokit.py); larger (nearer) faces are drawn over smaller ones.

Ground truth (one JSON per clip, beside it): for every frame, every person drawn, with the face
box in frame pixels and the share of that box that can be seen (inside the frame and not covered
by a nearer face). The box is the face box that faceprint's detector draws on the 250x250 photo
(found once per photo, on the masked photo, which must hold exactly one face), carried through
the sprite's scale and position: exact for what is pasted, whatever the video analyser finds.

Clips are cached under ``~/.cache/faceprint-bench/video/vN/SET/`` (``FACEPRINT_BENCH_CACHE`` moves
``~/.cache/faceprint-bench``) and reused when present; a change to the generator bumps ``VERSION``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from lfw_data import LFW  # noqa: E402
from videokit import write_video  # noqa: E402

VERSION = 2
FPS = 25
PHOTO = 250
"""LFW photos are 250 x 250."""


def cache_root() -> Path:
    base = os.environ.get("FACEPRINT_BENCH_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "faceprint-bench") / "video"


@dataclass(frozen=True)
class ClipSpec:
    name: str
    width: int
    height: int
    seconds: float
    people: int
    """People in the clip, half enrolled (rounded up), half held out."""
    seed: int

    @property
    def max_face(self) -> int:
        return 220 if self.height <= 720 else 320


SETS: dict[str, list[ClipSpec]] = {
    "full": [ClipSpec(f"720p-{i}", 1280, 720, 30, 12, 100 + i) for i in range(8)]
    + [ClipSpec(f"1080p-{i}", 1920, 1080, 30, 14, 200 + i) for i in range(4)],
    "quick": [ClipSpec("720p-q", 1280, 720, 20, 10, 900), ClipSpec("1080p-q", 1920, 1080, 12, 10, 901)],
    "tune": [ClipSpec(f"720p-t{i}", 1280, 720, 30, 12, 500 + i) for i in range(8)]
    + [ClipSpec(f"1080p-t{i}", 1920, 1080, 30, 14, 600 + i) for i in range(4)],
}
"""``tune``: a set for tuning rules, made like ``full`` but with other seeds and other people (those
after ``full``'s in the cast order), so that rules tuned on it are measured on ``full`` unseen."""
DISJOINT = {"tune": "full"}
"""Sets cast from the people after another set's."""


# -- people --------------------------------------------------------------------------------------

ALIASES = {"Sepp_Blatter": "Joseph_Blatter", "Sung_Hong_Choi": "Choi_Sung-hong", "Nan_Wang": "Wang_Nan"}
"""LFW dev people named twice (found by the benchmark's false matches and by names with the same
words): the name on the left is the same person as the one on the right. The left names are
kept out of the gallery, and the scoring takes each pair for one person."""


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


def _held_out(name: str) -> bool:
    return hashlib.sha256(name.encode()).digest()[0] % 2 == 1


@dataclass(frozen=True)
class People:
    enrolled: list[str]
    held_out: list[str]
    singles: list[str]

    def gallery(self) -> list[tuple[Path, str]]:
        """(photo, ExternalImageId) of every gallery face: the enrolled people's first photo and
        the single-photo people's photo (one name of a person named twice)."""
        return [(photos_of(name)[0], name) for name in sorted(self.enrolled + self.singles) if name not in ALIASES]


def photos_of(name: str) -> list[Path]:
    return sorted((LFW / "images" / name).glob("*.jpg"))


def people() -> People:
    enrolled, held_out, singles = [], [], []
    for folder in sorted((LFW / "images").iterdir()):
        count = len(photos_of(folder.name))
        if count == 1:
            singles.append(folder.name)
        elif count > 1:
            (held_out if _held_out(folder.name) else enrolled).append(folder.name)
    return People(enrolled, held_out, singles)


# -- sprites -------------------------------------------------------------------------------------

class Photos:
    """LFW photos, their masks at any size, and the face box the detector draws on each (in
    photo pixels), for photos whose masked picture shows exactly one face."""

    def __init__(self) -> None:
        from faceprint.service import Faceprint

        self._fp = Faceprint(profile="fast", threads=1)
        self._images: dict[Path, np.ndarray] = {}
        self._boxes: dict[Path, tuple[float, float, float, float] | None] = {}
        self._masks: dict[int, np.ndarray] = {}

    def image(self, path: Path) -> np.ndarray:
        if path not in self._images:
            self._images[path] = cv2.imread(str(path))
        return self._images[path]

    def mask(self, size: int) -> np.ndarray:
        """The feathered ellipse of tests/videokit.face_sprite at ``size`` px, float32 HxWx1."""
        if size not in self._masks:
            m = np.zeros((size, size), np.float32)
            cv2.ellipse(m, (size // 2, size // 2), (int(size * 0.36), int(size * 0.46)), 0, 0, 360, 1.0, -1)
            self._masks[size] = cv2.GaussianBlur(m, (0, 0), size * 0.03 + 0.5)[:, :, None]
        return self._masks[size]

    def face_box(self, path: Path) -> tuple[float, float, float, float] | None:
        """(x, y, w, h) of the one face in the masked photo, or None (no face, or more than one)."""
        if path not in self._boxes:
            from faceprint.imaging import DecodedImage

            grey = np.full((PHOTO, PHOTO, 3), 128, np.float32)
            m = self.mask(PHOTO)
            masked = (self.image(path) * m + grey * (1 - m)).astype(np.uint8)
            found = self._fp.engine.detect(DecodedImage(rgb=np.ascontiguousarray(masked[:, :, ::-1])), 20)
            self._boxes[path] = tuple(float(v) for v in found.boxes[0]) if len(found) == 1 else None
        return self._boxes[path]

    def usable(self, paths: list[Path]) -> list[Path]:
        return [p for p in paths if self.face_box(p) is not None]


# -- the plan of a clip --------------------------------------------------------------------------

@dataclass
class Appearance:
    person: str
    photo: str
    start: int
    """First frame (may be before the clip's first frame: the person is already there)."""
    end: int
    """Last frame (inclusive; may be after the clip's last)."""
    points: list[tuple[float, float]]
    """Face centre path: a quadratic Bezier curve (start, control, end), frame pixels."""
    widths: tuple[float, float]
    """Face box width at the start and at the end (linear in time)."""
    defocus: float
    """Gaussian blur sigma as a share of the face width."""
    gain: float
    """Brightness factor."""
    kind: str

    def at(self, frame: int) -> tuple[float, float, float]:
        """(centre x, centre y, face width) at ``frame``."""
        t = 0.0 if self.end == self.start else (frame - self.start) / (self.end - self.start)
        (x0, y0), (xc, yc), (x1, y1) = self.points
        x = (1 - t) ** 2 * x0 + 2 * (1 - t) * t * xc + t * t * x1
        y = (1 - t) ** 2 * y0 + 2 * (1 - t) * t * yc + t * t * y1
        return x, y, self.widths[0] + (self.widths[1] - self.widths[0]) * t


@dataclass
class Plan:
    spec: ClipSpec
    enrolled: dict[str, bool]
    appearances: list[Appearance] = field(default_factory=list)


def _edge_point(rng: np.random.Generator, spec: ClipSpec, margin: float) -> tuple[float, float]:
    """A point just outside one of the frame's edges (left, right or bottom; people walk in)."""
    edge = rng.choice(["left", "right", "bottom", "left", "right"])
    if edge == "left":
        return -margin, rng.uniform(0.15, 0.7) * spec.height
    if edge == "right":
        return spec.width + margin, rng.uniform(0.15, 0.7) * spec.height
    return rng.uniform(0.1, 0.9) * spec.width, spec.height + margin


def _inside_point(rng: np.random.Generator, spec: ClipSpec) -> tuple[float, float]:
    return rng.uniform(0.12, 0.88) * spec.width, rng.uniform(0.18, 0.72) * spec.height


def _widths(rng: np.random.Generator, spec: ClipSpec, kind: str) -> tuple[float, float]:
    w = float(math.exp(rng.uniform(math.log(30), math.log(spec.max_face))))
    if kind == "approach":
        return w * 0.6, min(spec.max_face * 1.15, w * rng.uniform(1.6, 2.6))
    if kind == "recede":
        return min(spec.max_face * 1.15, w * rng.uniform(1.6, 2.4)), w * 0.7
    return w, w * rng.uniform(0.85, 1.15)


def _appearance(rng: np.random.Generator, spec: ClipSpec, person: str, photo: str, start: int, end: int,
                first: bool) -> Appearance:
    kind = str(rng.choice(["cross", "cross", "approach", "recede", "linger", "curve"]))
    widths = _widths(rng, spec, kind)
    margin = max(widths) * 1.3
    begin = _inside_point(rng, spec) if (start <= 0 and first) or rng.random() < 0.15 else _edge_point(
        rng, spec, margin)
    finish = _inside_point(rng, spec) if rng.random() < 0.15 else _edge_point(rng, spec, margin)
    if kind == "linger":
        finish = begin if rng.random() < 0.5 else finish
        mid = _inside_point(rng, spec)
        control = (2 * mid[0] - (begin[0] + finish[0]) / 2, 2 * mid[1] - (begin[1] + finish[1]) / 2)
    elif kind == "curve":
        mid = ((begin[0] + finish[0]) / 2, (begin[1] + finish[1]) / 2)
        control = (mid[0] + rng.uniform(-0.4, 0.4) * spec.width, mid[1] + rng.uniform(-0.4, 0.2) * spec.height)
    else:
        control = ((begin[0] + finish[0]) / 2, (begin[1] + finish[1]) / 2)
    defocus = float(rng.choice([0.0, 0.0, 0.0, 0.01, 0.02, 0.03]))
    return Appearance(person, photo, start, end, [begin, control, finish], widths, defocus,
                      float(rng.uniform(0.75, 1.2)), kind)


def _crossing(rng: np.random.Generator, spec: ClipSpec, a: Appearance, b: Appearance) -> None:
    """Make ``a`` and ``b`` walk across the frame toward each other at about the same height,
    at the same time, ``b`` nearer the camera (larger)."""
    frames = int(rng.uniform(5, 8) * FPS)
    start = int(rng.uniform(0.1, 0.6) * (spec.seconds * FPS - frames))
    y = rng.uniform(0.3, 0.6) * spec.height
    wa = float(rng.uniform(60, spec.max_face * 0.6))
    wb = wa * rng.uniform(1.2, 1.6)
    for app, w, (x0, x1), dy in ((a, wa, (-1.3, 1.3), 0.0), (b, wb, (1.3, -1.3), rng.uniform(-0.3, 0.3) * wa)):
        left, right = -w * 1.3, spec.width + w * 1.3
        xs = [left if v < 0 else right for v in (x0, x1)]
        app.start, app.end, app.kind = start, start + frames, "crossing"
        app.points = [(xs[0], y + dy), ((xs[0] + xs[1]) / 2, y + dy), (xs[1], y + dy)]
        app.widths, app.defocus = (w, w), 0.0


def _slots(rng: np.random.Generator, total: int, count: int) -> list[tuple[int, int]]:
    """``count`` non-overlapping (start, end) frame spans of 5 to 14 s within the clip (a span
    may start before the clip or end after it), in order, with gaps of 1 s or more."""
    spans: list[tuple[int, int]] = []
    for _ in range(count * 8):
        if len(spans) == count:
            break
        length = int(rng.uniform(5, 14) * FPS)
        start = int(rng.uniform(-0.3 * length, total - 0.7 * length))
        span = (start, start + length)
        if all(span[1] + FPS <= s or span[0] >= e + FPS for s, e in spans):
            spans.append(span)
    return sorted(spans)


def plan_clip(spec: ClipSpec, enrolled: list[str], held_out: list[str], shown: dict[str, list[str]]) -> Plan:
    rng = np.random.default_rng(spec.seed)
    total = int(spec.seconds * FPS)
    plan = Plan(spec, {**dict.fromkeys(enrolled, True), **dict.fromkeys(held_out, False)})
    for person in enrolled + held_out:
        count = int(rng.choice([1, 2, 2, 3]))
        shots = shown[person]
        for i, (start, end) in enumerate(_slots(rng, total, count)):
            plan.appearances.append(_appearance(rng, spec, person, shots[i % len(shots)], start, end, i == 0))
    cross = [rng.choice([a for a in plan.appearances if a.person == p]) for p in (enrolled[0], held_out[0])]
    _crossing(rng, spec, cross[0], cross[1])
    _settle(plan)
    return plan


def _settle(plan: Plan) -> None:
    """Drop a person's appearances that the crossing made overlap another of theirs."""
    kept: list[Appearance] = []
    for app in sorted(plan.appearances, key=lambda a: (a.kind != "crossing", a.start)):
        if all(app.person != k.person or app.end + FPS <= k.start or app.start >= k.end + FPS for k in kept):
            kept.append(app)
    plan.appearances = sorted(kept, key=lambda a: (a.start, a.person))


# -- rendering -----------------------------------------------------------------------------------

class Scene:
    """A still camera view: a smooth textured background, a few flat shapes (walls, a door), muted
    colours, a little sensor noise (a few precomputed fields, cycled) and a timestamp overlay."""

    def __init__(self, spec: ClipSpec) -> None:
        rng = np.random.default_rng(spec.seed + 7)
        small = rng.integers(40, 200, (max(2, spec.height // 80), max(2, spec.width // 80), 3), dtype=np.uint8)
        base = cv2.resize(small, (spec.width, spec.height), interpolation=cv2.INTER_CUBIC)
        for _ in range(5):
            x0, y0 = int(rng.uniform(0, spec.width)), int(rng.uniform(0, spec.height))
            x1, y1 = x0 + int(rng.uniform(0.05, 0.3) * spec.width), y0 + int(rng.uniform(0.1, 0.6) * spec.height)
            cv2.rectangle(base, (x0, y0), (x1, y1), tuple(int(v) for v in rng.integers(30, 220, 3)), -1)
        grey = cv2.cvtColor(cv2.cvtColor(base, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        self.base = (0.35 * base + 0.65 * grey).astype(np.float32)  # a camera's washed-out colours
        self.noise = [rng.normal(0, 3.0, (spec.height, spec.width, 1)).astype(np.float32) for _ in range(4)]
        self.spec = spec

    def frame(self, number: int) -> np.ndarray:
        return self.base + self.noise[number % len(self.noise)]

    def stamp(self, frame: np.ndarray, number: int) -> None:
        seconds = number / FPS
        text = f"2026-11-29 14:{int(seconds // 60):02d}:{seconds % 60:05.2f}  CAM 3"
        scale = self.spec.height / 720
        cv2.putText(frame, text, (int(20 * scale), int(40 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.9 * scale,
                    (235, 235, 235), max(1, int(2 * scale)), cv2.LINE_AA)


@dataclass
class Drawn:
    person: str
    box: tuple[float, float, float, float]
    """Face box (x, y, w, h), frame pixels."""
    sprite_xy: tuple[int, int]
    size: int
    mask: np.ndarray


def _motion_kernel(dx: float, dy: float) -> np.ndarray | None:
    length = 0.5 * math.hypot(dx, dy)  # half a frame's travel: a 1/50 s shutter
    if length < 1.5:
        return None
    k = int(math.ceil(length)) | 1
    kernel = np.zeros((k, k), np.float32)
    c = k // 2
    ux, uy = dx / math.hypot(dx, dy), dy / math.hypot(dx, dy)
    cv2.line(kernel, (int(round(c - ux * length / 2)), int(round(c - uy * length / 2))),
             (int(round(c + ux * length / 2)), int(round(c + uy * length / 2))), 1.0, 1)
    return kernel / kernel.sum()


def _sprite(photos: Photos, app: Appearance, frame: int, root: Path) -> tuple[Drawn, np.ndarray]:
    path = root / app.photo
    bx, by, bw, bh = photos.face_box(path) or (0.0, 0.0, 1.0, 1.0)
    cx, cy, width = app.at(frame)
    scale = width / bw
    size = max(8, int(round(PHOTO * scale)))
    scale = size / PHOTO
    x = int(round(cx - (bx + bw / 2) * scale))
    y = int(round(cy - (by + bh / 2) * scale))
    img = cv2.resize(photos.image(path), (size, size), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    img = img.astype(np.float32) * app.gain
    mask = photos.mask(size)
    if app.defocus:
        img = cv2.GaussianBlur(img, (0, 0), max(0.3, app.defocus * width))
    nx, ny, _ = app.at(frame + 1)
    kernel = _motion_kernel(nx - cx, ny - cy)
    if kernel is not None:
        img = cv2.filter2D(img, -1, kernel)
        mask = cv2.filter2D(mask, -1, kernel)[:, :, None]
    box = (x + bx * scale, y + by * scale, bw * scale, bh * scale)
    return Drawn(app.person, box, (x, y), size, mask), img


def _paste(frame: np.ndarray, drawn: Drawn, img: np.ndarray) -> None:
    x, y = drawn.sprite_xy
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, frame.shape[1]), min(y + h, frame.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    m = drawn.mask[y0 - y:y1 - y, x0 - x:x1 - x]
    frame[y0:y1, x0:x1] = img[y0 - y:y1 - y, x0 - x:x1 - x] * m + frame[y0:y1, x0:x1] * (1 - m)


def _visible(drawn: list[Drawn], i: int, width: int, height: int) -> float:
    """Share of face i's box that is inside the frame and not under a face drawn after it."""
    x, y, w, h = (int(round(v)) for v in drawn[i].box)
    if w <= 0 or h <= 0:
        return 0.0
    seen = np.zeros((h, w), bool)
    seen[max(0, -y):max(0, min(h, height - y)), max(0, -x):max(0, min(w, width - x))] = True
    for over in drawn[i + 1:]:
        sx, sy = over.sprite_xy
        m = over.mask[:, :, 0] > 0.5
        ox0, oy0 = max(x, sx), max(y, sy)
        ox1, oy1 = min(x + w, sx + over.size), min(y + h, sy + over.size)
        if ox0 < ox1 and oy0 < oy1:
            seen[oy0 - y:oy1 - y, ox0 - x:ox1 - x] &= ~m[oy0 - sy:oy1 - sy, ox0 - sx:ox1 - sx]
    return float(seen.mean())


def render(plan: Plan, photos: Photos, video: Path) -> dict[str, Any]:
    """Write the clip to ``video``; return its ground truth."""
    spec = plan.spec
    scene = Scene(spec)
    total = int(spec.seconds * FPS)
    truth: list[list[list[Any]]] = []

    def frames():
        for number in range(total):
            frame = scene.frame(number)
            active = [a for a in plan.appearances if a.start <= number <= a.end]
            sprites = [_sprite(photos, a, number, LFW / "images") for a in active]
            sprites.sort(key=lambda s: s[0].box[2])  # nearer (larger) faces drawn last, on top
            for drawn, img in sprites:
                _paste(frame, drawn, img)
            out = np.clip(frame, 0, 255).astype(np.uint8)
            scene.stamp(out, number)
            drawn = [d for d, _ in sprites]
            truth.append([[d.person, *(round(v, 1) for v in d.box), round(_visible(drawn, i, spec.width,
                                                                                   spec.height), 3)]
                          for i, d in enumerate(drawn)])
            yield out

    write_video(video, frames(), fps=FPS)
    return {"version": VERSION, "clip": spec.name, "width": spec.width, "height": spec.height, "fps": FPS,
            "frames": total, "people": plan.enrolled,
            "appearances": [asdict(a) for a in plan.appearances],
            "truth": truth, "truth_fields": ["person", "x", "y", "w", "h", "visible"]}


# -- the set -------------------------------------------------------------------------------------

def _cast(specs: list[ClipSpec], who: People, photos: Photos) -> list[tuple[list[str], list[str],
                                                                         dict[str, list[str]]]]:
    """Distinct people for every clip: (enrolled, held out, photos to show of each)."""
    rng = np.random.default_rng(20261129)
    pools = {True: list(rng.permutation(who.enrolled)), False: list(rng.permutation(who.held_out))}
    out = []
    for spec in specs:
        chosen: dict[bool, list[str]] = {True: [], False: []}
        shown: dict[str, list[str]] = {}
        for enrolled, count in ((True, (spec.people + 1) // 2), (False, spec.people // 2)):
            while len(chosen[enrolled]) < count:
                name = str(pools[enrolled].pop(0))
                usable = photos.usable(photos_of(name)[1:] if enrolled else photos_of(name))
                if usable:
                    chosen[enrolled].append(name)
                    shown[name] = [str(p.relative_to(LFW / "images")) for p in usable]
        out.append((chosen[True], chosen[False], shown))
    return out


def build(set_name: str = "full", root: Path | None = None, log=print) -> list[Path]:
    """The clips of ``set_name`` (made if missing): their ground-truth JSON paths (the video is
    the same path with ``.mp4``)."""
    specs = SETS[set_name]
    folder = (root or cache_root()) / f"v{VERSION}" / set_name
    folder.mkdir(parents=True, exist_ok=True)
    out = [folder / f"{s.name}.json" for s in specs]
    if all(p.exists() and p.with_suffix(".mp4").exists() for p in out):
        return out
    who = people()
    photos = Photos()
    before = SETS[DISJOINT[set_name]] if set_name in DISJOINT else []
    cast = _cast(before + specs, who, photos)[len(before):]
    for spec, (enrolled, held_out, shown), path in zip(specs, cast, out, strict=True):
        if path.exists() and path.with_suffix(".mp4").exists():
            continue
        start = time.perf_counter()
        plan = plan_clip(spec, enrolled, held_out, shown)
        part = path.with_suffix(".part.mp4")
        truth = render(plan, photos, part)
        part.replace(path.with_suffix(".mp4"))
        path.write_text(json.dumps(truth, separators=(",", ":")))
        log(f"  made {path.with_suffix('.mp4')} ({spec.seconds:.0f} s, {len(enrolled)}+{len(held_out)} people, "
            f"{time.perf_counter() - start:.0f} s)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="full", choices=sorted(SETS))
    parser.add_argument("--cache", type=Path, help=f"root folder (default {cache_root()})")
    args = parser.parse_args()
    for path in build(args.set, args.cache):
        print(path.with_suffix(".mp4"))


if __name__ == "__main__":
    main()
