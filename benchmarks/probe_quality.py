"""Probe quality: 1:N rank-1 on LFW against the probe face's width, probes degraded as CCTV stills.

Run: python benchmarks/probe_quality.py [--profiles fast,accurate] [--widths 20,24,...] [--max-probes N]
     [--workers 2] [--write] [--home HOME --profile NAME]

Per profile: the first photo of every LFW View 1 (dev) person is enrolled (the face nearest the
centre, LFW's protocol; people with one photo are distractors), and every other photo of a person
with two or more is a mated probe, searched undegraded (the baseline) and degraded as a
surveillance still would be: scaled so that its face (the detector's width on the original) is W
px wide, Gaussian blur of radius 0.6 at that size, JPEG quality 30, scaled back up to the original
size. The probe is searched as SearchFacesByImage does: its largest face, found and embedded by the
profile's engine (``Faceprint.analyze``); a probe with no face found is a miss. Search is exact (the
probe's vector against every enrolled vector, no index): rank-1 = the best-scoring enrolled face is
the same person, at any score. ``--max-probes`` keeps a fixed pseudo-random subset (by a hash of
the file name). ``--write`` stores each profile's curve: a built-in's in
src/faceprint/models/probe_quality.json, an operator profile's (registered in ``--home HOME``; name
it with ``--profile NAME`` or in ``--profiles``) in its calibration (``HOME/profiles/NAME/
calibration.json``, key ``probe_quality``; calibrate it first), where faceprint.probes reads it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lfw_data import LFW, centre_face, embed_all, map_images, profile_names  # noqa: E402

CURVE_FILE = Path(__file__).resolve().parent.parent / "src" / "faceprint" / "models" / "probe_quality.json"
WIDTHS = (20, 24, 28, 32, 40, 48, 64, 80, 110)
BLUR_RADIUS = 0.6
JPEG_QUALITY = 30


def gallery_and_probes(max_probes: int | None) -> tuple[list[Path], list[Path]]:
    folders = sorted(p for p in (LFW / "images").iterdir() if p.is_dir())
    gallery, probes = [], []
    for folder in folders:
        photos = sorted(folder.glob("*.jpg"))
        gallery.append(photos[0])
        probes += photos[1:]
    if max_probes is not None and max_probes < len(probes):
        probes = sorted(sorted(probes, key=lambda p: hashlib.sha256(p.name.encode()).hexdigest())[:max_probes])
    return gallery, probes


def degrade(rgb: np.ndarray, scale: float) -> np.ndarray:
    """A CCTV still of ``rgb``: scaled by ``scale``, blurred, JPEG q30, scaled back up."""
    from PIL import Image, ImageFilter

    image = Image.fromarray(rgb)
    w, h = image.size
    small = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
    small = small.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=JPEG_QUALITY)
    small = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))


def search_view(fp, rgb: np.ndarray) -> tuple[np.ndarray | None, float, int]:
    """(vector of the largest face or None, its sharpness, its width) as SearchFacesByImage sees it."""
    from faceprint.probes import face_sharpness

    analysis = fp.analyze(rgb, max_faces=1)
    if not analysis.faces:
        return None, float("nan"), 0
    face = analysis.faces[0]
    return (analysis.vectors[0], face_sharpness(analysis.image.bgr, face.box_px),
            int(round(float(face.box_px[2]) * face.reduced_by)))


def probe_views(fp, path: Path, widths: tuple[int, ...]) -> dict | None:
    """Every view of one probe: {W or 0 (baseline): (vector, sharpness, width)}; None when the
    original shows no face (its width is unknown)."""
    image, face = centre_face(fp, path)
    if face is None:
        return None
    original_width = float(face.boxes[0][2])
    views = {0: search_view(fp, image.rgb)}
    for width in widths:
        views[width] = search_view(fp, degrade(image.rgb, width / original_width))
    views["original_width"] = original_width
    return views


def measure(profile: str, gallery: list[Path], probes: list[Path], widths: tuple[int, ...],
            workers: int, home: Path | None = None) -> dict:
    started = time.perf_counter()
    enrolled = {p: v for p, v in embed_all(profile, gallery, workers, home).items() if v is not None}
    names = np.array([p.parent.name for p in enrolled])
    matrix = np.stack(list(enrolled.values())).astype(np.float32)
    views = map_images(functools.partial(probe_views, widths=widths), profile, probes, workers, home)
    usable = {p: v for p, v in views.items() if v is not None}
    out = {"gallery": len(enrolled), "gallery_no_face": len(gallery) - len(enrolled), "probes": len(usable),
           "probes_no_face": len(probes) - len(usable),
           "original_width_median": float(np.median([v["original_width"] for v in usable.values()])),
           "conditions": {}}
    for key in (0, *widths):
        rows = [(view[key], path.parent.name) for path, view in usable.items()]
        hits = [v is not None and bool(names[int(np.argmax(matrix @ v))] == name) for (v, _, _), name in rows]
        sharp = [s for (v, s, _), _ in rows if v is not None]
        out["conditions"][key] = {
            "rank1": 100.0 * float(np.mean(hits)), "no_face": sum(v is None for (v, _, _), _ in rows),
            "sharpness": float(np.median(sharp)) if sharp else 0.0,
            "sharpness_p10_p90": [float(np.percentile(sharp, q)) if sharp else 0.0 for q in (10, 90)],
            "probes": [(s, w, hit) for ((v, s, w), _), hit in zip(rows, hits, strict=True)]}
    out["seconds"] = time.perf_counter() - started
    return out


def flagged(result: dict, widths: tuple[int, ...], floor: float) -> dict:
    """Per condition: (share of probes flagged low quality by this run's own curve, rank-1 of the
    flagged, rank-1 of the others), a probe rated at its detected face width and its sharpness (probes
    with no face found are left out: the product answers them with an error)."""
    from faceprint.probes import ProbeCurve

    c = result["conditions"]
    curve = ProbeCurve("run", tuple(float(w) for w in widths), tuple(c[w]["rank1"] for w in widths),
                       tuple(c[w]["sharpness"] for w in widths))
    out = {}
    for key in (0, *widths):
        low = [(hit, curve.rank1_at(width, sharp) < floor) for sharp, width, hit in c[key]["probes"] if width]
        flagged_hits = [hit for hit, is_low in low if is_low]
        other_hits = [hit for hit, is_low in low if not is_low]
        out[key] = (100.0 * len(flagged_hits) / len(low),
                    100.0 * float(np.mean(flagged_hits)) if flagged_hits else float("nan"),
                    100.0 * float(np.mean(other_hits)) if other_hits else float("nan"))
    return out


def print_table(profile: str, result: dict, widths: tuple[int, ...], floor: float = 90.0) -> None:
    base = result["conditions"][0]
    flags = flagged(result, widths, floor)
    print(f"\n## {profile}: {result['probes']} probes ({result['probes_no_face']} without a face on the original "
          f"left out), {result['gallery']} enrolled, median original face width "
          f"{result['original_width_median']:.0f} px, {result['seconds']:.0f} s")
    print(f"\n| face width | rank-1 | ratio to undegraded | no face found | sharpness median (p10-p90) "
          f"| flagged under {floor:.0f}% | rank-1 flagged / not |")
    print("|---|---|---|---|---|---|---|")
    for key in (0, *widths):
        c = result["conditions"][key]
        label = "undegraded" if key == 0 else f"{key} px"
        p10, p90 = c["sharpness_p10_p90"]
        print(f"| {label} | {c['rank1']:.1f}% | {c['rank1'] / base['rank1']:.3f} | {c['no_face']} "
              f"| {c['sharpness']:.1f} ({p10:.1f}-{p90:.1f}) | {flags[key][0]:.1f}% "
              f"| {flags[key][1]:.1f}% / {flags[key][2]:.1f}% |", flush=True)


def write_curve(profile: str, result: dict, widths: tuple[int, ...], command: str, home: Path | None = None) -> None:
    entry = curve_entry(result, widths, command)
    from faceprint.models.profiles import PROFILES

    if profile not in PROFILES:  # an operator profile: into its calibration
        from faceprint.models.registry import ProfileRegistry
        from faceprint.service import default_home

        registry = ProfileRegistry(home or default_home())
        calibration = registry.calibration(profile)
        if calibration is None:
            raise SystemExit(f"profile {profile} is not calibrated: run `faceprint calibrate --profile {profile}` "
                             "first (its probe-quality curve is kept in its calibration)")
        calibration["probe_quality"] = entry
        registry.save_calibration(profile, calibration)
        return
    data = json.loads(CURVE_FILE.read_text()) if CURVE_FILE.exists() else {}
    data.setdefault("profiles", {})[profile] = entry
    CURVE_FILE.write_text(dump(data))


def curve_entry(result: dict, widths: tuple[int, ...], command: str) -> dict:
    conditions = result["conditions"]
    return {
        "widths": list(widths),
        "rank1": [round(conditions[w]["rank1"], 2) for w in widths],
        "sharpness": [round(conditions[w]["sharpness"], 2) for w in widths],
        "undegraded": {"rank1": round(conditions[0]["rank1"], 2), "sharpness": round(conditions[0]["sharpness"], 2),
                       "face_width_median": round(result["original_width_median"], 1)},
        "probes": result["probes"],
        "gallery": result["gallery"],
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": command,
    }


def dump(data: dict) -> str:
    """JSON with two-space indents and each list of numbers on one line."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return re.sub(r"\[\s+([-0-9.eE,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"


def machine() -> str:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), model)
    return f"{model}, {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="fast,accurate",
                        help="comma-separated; 'all': every registered profile (with --home: operator ones too)")
    parser.add_argument("--profile", help="one profile (e.g. an operator profile of --home); overrides --profiles")
    parser.add_argument("--home", type=Path, help="the faceprint home where operator profiles are registered")
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)))
    parser.add_argument("--max-probes", type=int, default=None, help="a fixed subset of the probes (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="store the curves in models/probe_quality.json")
    args = parser.parse_args()
    widths = tuple(sorted(int(w) for w in args.widths.split(",")))
    gallery, probes = gallery_and_probes(args.max_probes)
    print(f"# Probe quality on LFW View 1 (dev), {time.strftime('%Y-%m-%d')}, "
          f"{machine()}; "
          f"{len(gallery)} enrolled, {len(probes)} mated probes")
    names = [args.profile] if args.profile else profile_names(args.home) if args.profiles == "all" \
        else args.profiles.split(",")
    for profile in names:
        result = measure(profile, gallery, probes, widths, args.workers, args.home)
        print_table(profile, result, widths)
        if args.write:
            write_curve(profile, result, widths, "python benchmarks/probe_quality.py " + " ".join(sys.argv[1:]),
                        args.home)


if __name__ == "__main__":
    main()
