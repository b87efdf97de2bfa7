"""Hostile images: time and peak memory of decoding (and DetectFaces) against a normal photo.

Run: python benchmarks/hostile_images.py [--repeats 3] [--quick]

Inputs, made in this process from a real group photo (../shared/data/faces/groups):
- the baseline, a normal 1080p photo (1920 x 1080 JPEG);
- lying-header JPEGs: 20 kB (baseline) and 2 kB (progressive, 4:4:4) whose frame headers claim
  8,900 x 8,900 pixels;
- an honest 8,900 x 6,675 JPEG (the photo upscaled, under 5 MB);
- PNG bombs: 49 Mpixel of zeros in 47 kB (over the 40 Mpixel full-decode limit) and
  36 Mpixel in 35 kB (under it).

Each (input, operation) is measured in a fresh child process, after its imports, models and a
warm-up: the median wall time of ``--repeats`` runs, and the peak resident memory they added
(Linux: the child resets its high-water mark through /proc/self/clear_refs and reads VmHWM
against VmRSS; Pillow and libjpeg allocate outside Python's tracemalloc).
Operations: ``load`` (``faceprint.imaging.load_image`` now), ``load before`` (the decode that
faceprint did before issue 9: Pillow's full decode, EXIF transpose, RGB), ``detect``
(``Faceprint.detect_faces``, fast profile) and ``detect before`` (the old decode, then
detect_faces on its array). Ratios are against the baseline photo's same operation in this run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
DATA = Path(os.environ.get("FACEPRINT_TEST_DATA", ROOT.parent / "shared" / "data"))
PHOTO = DATA / "faces" / "groups" / "human_groups" / "group-1.jpg"
OPERATIONS = ("load", "load before", "detect", "detect before")


def inputs(quick: bool) -> dict[str, bytes]:
    """name -> encoded bytes; the first is the baseline."""
    import numpy as np
    from PIL import Image

    from badimages import encode, jpeg_set_size, png_bomb

    photo = Image.open(PHOTO).convert("RGB")  # 1920 x 1440
    texture = Image.fromarray(np.random.default_rng(9).integers(0, 255, (200, 200, 3), np.uint8))
    made = {
        "normal 1080p photo (baseline)": encode(photo.crop((0, 180, 1920, 1260)), "JPEG", quality=90),
        "lying JPEG, claims 8900x8900": jpeg_set_size(encode(texture, "JPEG", quality=75), 8900, 8900),
        "lying progressive JPEG, claims 8900x8900": jpeg_set_size(
            encode(photo.resize((96, 72)), "JPEG", progressive=True, subsampling=0), 8900, 8900),
        "PNG bomb 7000x7000": png_bomb(7000, 7000),
        "PNG bomb 6000x6000": png_bomb(6000, 6000),
    }
    if not quick:
        made["honest JPEG 8900x6675"] = _honest(photo.resize((8900, 6675), Image.Resampling.BICUBIC))
    return made


def _honest(big) -> bytes:
    from badimages import encode

    for quality in (85, 75, 60, 45, 30):
        data = encode(big, "JPEG", quality=quality)
        if len(data) <= 5 * 1024 * 1024:
            return data
    raise SystemExit("could not fit the honest 8,900 px JPEG under 5 MB")


# -- the child: one operation on one input ---------------------------------------------------------

def decode_before(data: bytes):
    """faceprint's decode before issue 9: Pillow's full decode, EXIF transpose, RGB array."""
    import numpy as np
    from PIL import Image, ImageOps

    pil = Image.open(io.BytesIO(data), formats=("JPEG", "PNG"))
    if pil.width * pil.height > 80_000_000 or max(pil.size) > 20_000:
        raise ValueError("over 80 Mpixel or 20,000 px a side")
    pil.load()
    return np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(pil).convert("RGB")))


def child(path: str, operation: str, repeats: int) -> None:
    import warnings

    from PIL import Image

    from badimages import encode
    from conftest import models_dir
    from faceprint.errors import FaceprintError
    from faceprint.imaging import load_image
    from faceprint.service import Faceprint

    warnings.simplefilter("ignore")
    data = Path(path).read_bytes()
    fp = Faceprint(tempfile.mkdtemp(), profile="fast", models_dir=models_dir())
    run = {"load": lambda: load_image(data),
           "load before": lambda: decode_before(data),
           "detect": lambda: fp.detect_faces(data),
           "detect before": lambda: fp.detect_faces(decode_before(data))}[operation]
    fp.detect_faces(encode(Image.new("RGB", (640, 480), (128, 128, 128)), "JPEG"))  # warm up
    start_rss = _reset_peak()
    times, outcome = [], "ok"
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            result = run()
            outcome = _describe(result)
        except (FaceprintError, ValueError, OSError) as exc:
            outcome = getattr(exc, "code", type(exc).__name__)
        times.append(time.perf_counter() - start)
        result = None
    added = (_memory()["VmHWM"] - start_rss) / 1024
    print(json.dumps({"seconds": statistics.median(times), "added_mb": added, "outcome": outcome}))


def _memory() -> dict[str, int]:
    """VmRSS and VmHWM (peak) of this process, in kB."""
    status = Path("/proc/self/status").read_text()
    return {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
            if line.startswith(("VmRSS:", "VmHWM:"))}


def _reset_peak() -> int:
    """Reset this process's peak RSS to its current RSS (Linux 4.0+); returns that, in kB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _memory()["VmRSS"]


def _describe(result) -> str:
    if hasattr(result, "face_details"):
        return f"{len(result.face_details)} faces"
    shape = getattr(result, "rgb", result).shape
    return f"decoded {shape[1]}x{shape[0]}"


# -- the parent -------------------------------------------------------------------------------------

def measure(path: Path, operation: str, repeats: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", str(path), operation, str(repeats)],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        return {"seconds": float("nan"), "added_mb": float("nan"),
                "outcome": f"child failed ({done.returncode}): {done.stderr.strip()[-200:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the honest 8,900 px JPEG (slow to encode)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    made = inputs(args.quick)
    print(f"# Hostile images, {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, median of {args.repeats}\n")
    print("| input | bytes | operation | outcome | seconds | MB added | time ratio | memory ratio |")
    print("|---|---|---|---|---|---|---|---|")
    base: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        for i, (name, data) in enumerate(made.items()):
            path = Path(folder) / f"{i}.bin"
            path.write_bytes(data)
            for operation in OPERATIONS:
                m = measure(path, operation, args.repeats)
                b = base.setdefault(operation, m)
                print(f"| {name} | {len(data):,} | {operation} | {m['outcome']} | {m['seconds']:.3f} | "
                      f"{m['added_mb']:.0f} | {m['seconds'] / b['seconds']:.2f} | "
                      f"{m['added_mb'] / max(b['added_mb'], 1):.2f} |", flush=True)
    print(f"\n(load average at the end: {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
