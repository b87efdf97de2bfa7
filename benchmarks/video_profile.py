"""Where stored video face search spends its CPU, on one clip: process CPU-s (all threads) and, with
``--cprofile``, each component's CPU by cProfile on a process-CPU timer (ONNX Runtime's and FFmpeg's
threads count where the main thread was when they ran).

Run: python benchmarks/video_profile.py CLIP --home HOME [--profile fast] [--collection lfw-dev]
     [--views N] [--first-views K] [--cprofile OUT.prof] [--label TEXT]

HOME is a faceprint home holding the collection (benchmarks/video.py makes one per profile under
``~/.cache/faceprint-bench/video/gallery/``; copy it for another faceprint version). It works with
any faceprint on the path, so two versions compare with a worktree, e.g.
``git worktree add /tmp/old REV`` then ``PYTHONPATH=/tmp/old/src python benchmarks/video_profile.py ...``
alternated with the same command without PYTHONPATH (compare CPU-s, not wall time, on a shared
machine). Prints one JSON line, then with ``--cprofile`` the components' CPU-s per video-s and the
top functions by their own CPU.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import os
import pstats
import time
from pathlib import Path
from typing import Any

import numpy as np

COMPONENTS = [
    ("whole search", "faces.py", "search"),
    ("decoding (frames)", "decode.py", "frames"),
    ("frame conversions", "decode.py", "_convert"),
    ("detection + measures", "faces.py", "see_faces"),
    ("detection + measures (older: _seen)", "faces.py", "_seen"),
    ("  YuNet detect (scan and refine)", "detector.py", "detect"),
    ("  measure", "faces.py", "measure"),
    ("shot cuts", "faces.py", "cut"),
    ("tracker step (with vectors)", "tracker.py", "step"),
    ("  tracking vectors", "faces.py", "_vectors"),
    ("views kept (_observe)", "faces.py", "_observe"),
    ("  view crops", "faces.py", "crop"),
    ("identity (_decide)", "faces.py", "_decide"),
    ("  landmark refinement", "faces.py", "refine"),
    ("  view vectors", "identity.py", "vectors"),
    ("  collection searches", "collections.py", "search"),
    ("SFace embed (all)", "embedders.py", "embed"),
    ("  SFace forward (ONNX Runtime)", "embedders.py", "_forward"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip", type=Path)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--profile", default="fast")
    ap.add_argument("--collection", default="lfw-dev")
    ap.add_argument("--views", type=int, help="MatchRules.best_views (default: the analyser's)")
    ap.add_argument("--first-views", type=int, help="MatchRules.first_views (default: the analyser's)")
    ap.add_argument("--cprofile", type=Path, help="profile, and write cProfile's stats here")
    ap.add_argument("--label", default="")
    args = ap.parse_args()

    import faceprint
    from faceprint.service import Faceprint, default_home, default_models_dir
    from faceprint.video import faces
    from faceprint.video.context import LocalContext

    fp = Faceprint(args.home, profile=args.profile, models_dir=default_models_dir(default_home()))
    settings = faces.FaceVideoSettings()
    match = settings.match
    if args.views:
        match = dataclasses.replace(match, best_views=args.views)
    if args.first_views:
        match = dataclasses.replace(match, first_views=args.first_views)
    settings = dataclasses.replace(settings, match=match)
    counts = count_decisions()
    probe = np.zeros(fp.profile.dim, np.float32)
    probe[0] = 1.0
    fp.collections.search(args.collection, probe, 1, 80.0)  # models loaded, index read: not timed
    ctx = LocalContext(args.clip, {"CollectionId": args.collection, "FaceMatchThreshold": 80.0}, fp)
    prof = cProfile.Profile(time.process_time) if args.cprofile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if prof:
        prof.enable()
    faces.search(ctx, settings)
    if prof:
        prof.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    video_s = ctx.info.duration_ms / 1000 if ctx.info else 0.0
    print(json.dumps({"label": args.label, "faceprint": str(Path(faceprint.__file__).parent), "clip": args.clip.name,
                      "profile": args.profile, "views": match.best_views,
                      "first_views": getattr(match, "first_views", None), "video_s": video_s,
                      "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                      "cpu_per_video_s": round(cpu / max(video_s, 1e-9), 3), "items": len(ctx.items),
                      "persons": len({i.index for i in ctx.items}), "load": os.getloadavg(), **counts,
                      "cprofile": bool(prof)}), flush=True)
    if prof:
        prof.dump_stats(args.cprofile)
        report(pstats.Stats(prof), video_s)


def count_decisions() -> dict[str, int]:
    """Counts of identity decisions and of those that embedded more than the first views (where the
    faceprint on the path has ``Identifier.template_in_steps``)."""
    from faceprint.video.identity import Identifier

    counts = {"decisions": 0, "extended": 0}
    steps = getattr(Identifier, "template_in_steps", None)
    if steps is None:
        return counts

    def counted(self: Any, views: list[Any], prepare: Any) -> Any:
        before = self.extended
        out = steps(self, views, prepare)
        counts["decisions"] += 1
        counts["extended"] += self.extended - before
        return out

    Identifier.template_in_steps = counted
    return counts


def report(stats: pstats.Stats, video_s: float) -> None:
    rows = stats.stats  # type: ignore[attr-defined]  # (file, line, function) -> (cc, nc, tt, ct, callers)
    print(f"{'component':40s} {'calls':>7s} {'CPU-s':>8s} {'per video-s':>11s}")
    for label, file, func in COMPONENTS:
        hits = [v for k, v in rows.items() if k[0].endswith(file) and k[2] == func]
        if hits:
            cum = sum(v[3] for v in hits)
            print(f"{label:40s} {sum(v[1] for v in hits):7d} {cum:8.2f} {cum / max(video_s, 1e-9):11.3f}")
    print("\ntop 25 by own CPU:")
    stats.sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
