"""Stored video face search: accuracy against exact ground truth, speed against a naive loop, real clips.

Run: python benchmarks/video.py [--quick] [--profiles accurate,fast] [--threshold 80] [--details]
     [--set full|tune] [--available] [--heights 720,1080] [--views N] [--first-views K]
     (full: about 20 minutes on 2 cores once the clips and galleries are cached; --quick: a
     couple of minutes, fast profile, two short clips)

- Clips: benchmarks/videogen.py (LFW dev people moving over a still camera view, 720p25 and
  1080p25 H.264, exact per-frame ground truth), made once and cached.
- Gallery: every LFW dev person's first photo except the held-out half of the people with two
  photos or more (``lfw-dev`` collection, IndexFaces with QualityFilter NONE, the largest face),
  in a home per profile under the cache folder, made once (a bulk import, resumable).
- The analyser under test: ``faceprint.video.faces.search`` through a ``LocalContext`` with
  ``CollectionId`` and ``FaceMatchThreshold`` (80), on a ``Faceprint`` using both cores.
- Accuracy (benchmarks/videoscore.py has the exact definitions): recall and precision of
  (person, second) pairs, tracks and identity switches per true person, appearance boundary
  errors; the same run's matches re-cut at similarity 90 too.
- Speed: real-time factor (video seconds / wall seconds, this process on all cores) of the whole
  set at 720p25 and at 1080p25, beside a naive loop measured in the same run on the busiest
  ``--naive-seconds`` (most faces) of the first clip of each size: every frame decoded, ``Faceprint.analyze``
  (detect, measure, embed every face) and a collection search of every face. Both are scored on
  that stretch as well.
- Real clips (../shared/data/video): the Hamilton clip searched against a collection of its two
  reference photos (seconds matched against seconds labelled by hand); the facenet-pytorch
  clip (1080p, people walking): faces found per sampled frame by ``faceprint.video.faces.detect``
  and by the full-size still-image detector on the same frames.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import videogen  # noqa: E402
from lfw_data import DATA  # noqa: E402
from videoscore import Report, Score, Truth, reports, score, truth_reports  # noqa: E402

COLLECTION = "lfw-dev"
HAMILTON = "hamilton"
VIDEOS = DATA / "video"
HAMILTON_CLIP = VIDEOS / "face_recognition__short_hamilton_clip.mp4"
WALKING_CLIP = VIDEOS / "facenet_pytorch__video.mp4"
HAMILTON_REFS = {"lin-manuel-miranda": VIDEOS / "refs" / "lin-manuel-miranda.png",
                 "alex-lacamoire": VIDEOS / "refs" / "alex-lacamoire.png"}
HAMILTON_LABELS = {"lin-manuel-miranda": {2, 3, 4, 5, 6, 7}}
"""Seconds in which his face is on screen and at least 40 px wide (by eye: the close-up shot
from 2.74 s to 7.04 s). He is also on stage, far and tiny, in 0.0-0.67 s; Lacamoire is seen in
profile from 0.67 s to 2.74 s (and tiny at the piano before)."""
HAMILTON_SHOWN = {"lin-manuel-miranda": {0, 2, 3, 4, 5, 6, 7}, "alex-lacamoire": {0, 1, 2}}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- galleries -----------------------------------------------------------------------------------

def gallery(profile: str, root: Path):
    """A Faceprint on this profile's benchmark home, with the ``lfw-dev`` and ``hamilton``
    collections (made on first use)."""
    from faceprint.bulk import BulkImporter
    from faceprint.errors import ResourceNotFoundException
    from faceprint.service import Faceprint, default_home, default_models_dir

    fp = Faceprint(root / "gallery" / profile, profile=profile, models_dir=default_models_dir(default_home()))
    for cid in (COLLECTION, HAMILTON):
        try:
            fp.describe_collection(cid)
        except ResourceNotFoundException:
            fp.create_collection(cid)
    faces = videogen.people().gallery()
    if fp.describe_collection(COLLECTION).face_count < len(faces) * 0.98:
        log(f"  enrolling {len(faces)} LFW photos in {profile} collection {COLLECTION} (once)")
        ids = {str(path): name for path, name in faces}
        BulkImporter(fp, COLLECTION, max_faces=1, quality_filter="NONE").run([p for p, _ in faces], ids)
    _prune(fp, {name for _, name in faces})
    if fp.describe_collection(HAMILTON).face_count < len(HAMILTON_REFS):
        for name, path in HAMILTON_REFS.items():
            fp.index_faces(HAMILTON, path, external_image_id=name, max_faces=1, quality_filter="NONE")
    return fp


def _prune(fp, names: set[str]) -> None:
    """Delete gallery faces of names no longer in the gallery (a gallery made by an older version)."""
    stale, token = [], None
    while True:
        page = fp.list_faces(COLLECTION, 1000, token)
        stale += [f.face_id for f in page.faces if f.external_image_id not in names]
        token = page.next_token
        if not token:
            break
    for i in range(0, len(stale), 1000):
        fp.delete_faces(COLLECTION, stale[i:i + 1000])


def load_truths(clips: list[Path]) -> list[Truth]:
    enrolled = set(videogen.people().enrolled)
    return [Truth.load(path, videogen.ALIASES, enrolled) for path in clips]


# -- runs ----------------------------------------------------------------------------------------

@dataclass
class Run:
    """One analyser run over one video."""

    items: list
    wall_s: float
    cpu_s: float
    video_s: float


def analyse(fp, path: Path, collection: str | None, threshold: float, operation: str = "search",
            settings=None) -> Run:
    from faceprint.video import faces
    from faceprint.video.context import LocalContext

    params = {"CollectionId": collection, "FaceMatchThreshold": threshold} if collection else {}
    ctx = LocalContext(path, params, fp)
    wall, cpu = time.perf_counter(), time.process_time()
    getattr(faces, operation)(ctx, settings)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Run(ctx.items, wall, cpu, ctx.info.duration_ms / 1000 if ctx.info else 0.0)


def naive(fp, path: Path, window: tuple[float, float], threshold: float) -> tuple[list[Report], float, float]:
    """Every frame of the ``window`` (seconds): decode, analyze (detect, measure, embed every
    face), then a search of each face. Returns (reports, wall seconds, video seconds); the frames
    before the window are decoded untimed."""
    from faceprint.imaging import DecodedImage
    from faceprint.video import decode

    out: list[Report] = []
    info = decode.probe(path)
    frames = 0
    with contextlib.closing(decode.frames(path, info)) as stream:
        start = time.perf_counter()
        for frame in stream:
            if frame.timestamp_ms < window[0] * 1000:
                start = time.perf_counter()
                continue
            if frame.timestamp_ms >= window[1] * 1000:
                break
            frames += 1
            analysis = fp.analyze(DecodedImage(rgb=np.ascontiguousarray(frame.bgr()[:, :, ::-1])))
            for face, vector in zip(analysis.faces, analysis.vectors, strict=True):
                hits = fp.collections.search(COLLECTION, vector, 1, threshold)
                box = tuple(float(v) for v in face.box_px)
                out.append(Report(frame.timestamp_ms, len(out), box, hits[0].face.external_image_id if hits else None,
                                  hits[0].similarity if hits else 0.0))
    return out, time.perf_counter() - start, frames / info.frame_rate


@dataclass
class Tally:
    """Per profile: scores and times by frame height."""

    scores: dict[int, Score] = field(default_factory=lambda: defaultdict(Score))
    scores90: dict[int, Score] = field(default_factory=lambda: defaultdict(Score))
    wall: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    cpu: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    video: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    naive: dict[int, tuple[float, float, Score, Score]] = field(default_factory=dict)
    """height -> (naive RT, analyser RT, naive score, analyser score) on the stretch."""


def video_settings(views: int | None, first_views: int | None):
    """The analyser's settings: its defaults, with ``views`` best views a track and ``first_views``
    of them embedded first (``MatchRules.first_views``) when given."""
    from faceprint.video.faces import FaceVideoSettings

    settings = FaceVideoSettings()
    match = settings.match
    if views is not None:
        match = dataclasses.replace(match, best_views=views)
    if first_views is not None:
        match = dataclasses.replace(match, first_views=first_views)
    return dataclasses.replace(settings, match=match)


def run_set(fp, clips: list[tuple[Truth, Path]], threshold: float, naive_s: float, settings=None) -> Tally:
    tally = Tally()
    naive_done: set[int] = set()
    for truth, video in clips:
        run = analyse(fp, video, COLLECTION, threshold, settings=settings)
        found = reports(run.items, truth.width, truth.height)
        h = truth.height
        tally.scores[h] += score(truth, found, threshold)
        tally.scores90[h] += score(truth, found, max(threshold, 90.0), tracks=False)
        tally.wall[h] += run.wall_s
        tally.cpu[h] += run.cpu_s
        tally.video[h] += run.video_s
        log(f"  {fp.profile.name} {truth.clip}: {run.video_s:.1f} s of video in {run.wall_s:.1f} s, "
            f"{run.cpu_s:.1f} CPU-s, {len(run.items)} items")
        if naive_s > 0 and h not in naive_done:
            naive_done.add(h)
            start = truth.busiest(naive_s)
            window = (start, start + naive_s)
            found_naive, wall, video_s = naive(fp, video, window, threshold)
            tally.naive[h] = (video_s / wall, run.video_s / run.wall_s,
                              score(truth, found_naive, threshold, window, tracks=False),
                              score(truth, found, threshold, window, tracks=False))
            log(f"  {fp.profile.name} naive loop on {truth.clip} {window[0]:g}-{window[1]:g} s: {video_s:.1f} s of "
                f"video in {wall:.1f} s")
    return tally


def hamilton(fp, threshold: float) -> dict[str, list[int]]:
    run = analyse(fp, HAMILTON_CLIP, HAMILTON, threshold)
    seconds: dict[str, set[int]] = defaultdict(set)
    for r in reports(run.items, 640, 360):
        if r.name and r.similarity >= threshold:
            seconds[r.name].add(r.timestamp_ms // 1000)
    return {name: sorted(s) for name, s in seconds.items()}


def walking(fp) -> tuple[int, int, int, int]:
    """(sampled frames, faces found by the video analyser, faces found by the still-image
    detector on the same frames at full size, person indices of a face search)."""
    from faceprint.imaging import DecodedImage
    from faceprint.video import decode

    run = analyse(fp, WALKING_CLIP, None, 80, "detect")
    stamps = sorted({i.timestamp_ms for i in run.items})
    wanted = set(stamps)
    full = 0
    info = decode.probe(WALKING_CLIP)
    for frame in decode.frames(WALKING_CLIP, info):
        if frame.timestamp_ms in wanted:
            full += len(fp.engine.detect(DecodedImage(rgb=np.ascontiguousarray(frame.bgr()[:, :, ::-1])), 100))
    persons = {i.index for i in analyse(fp, WALKING_CLIP, COLLECTION, 80).items}
    return len(stamps), len(run.items), full, len(persons)


# -- printing ------------------------------------------------------------------------------------

def _pct(v: float) -> str:
    return "n/a" if v != v else f"{v:.1%}"


def accuracy_row(profile: str, label: str, s: Score, s90: Score) -> str:
    return (f"| {profile} | {label} | {s.true_pairs} | {_pct(s.recall)} | {s.reported_pairs} | {_pct(s.precision)} "
            f"| {_pct(s90.recall)} / {_pct(s90.precision)} | {s.tracks_per_person:.2f} | {s.switches_per_person:.2f} "
            f"| {s.stray_tracks} | {s.boundary(0.5):.2f} / {s.boundary(0.9):.2f} | {_pct(s.within_half_second)} "
            f"| {s.missed_appearances} of {s.appearances} |")


def print_accuracy(tallies: dict[str, Tally], threshold: float) -> None:
    print(f"\n| profile | clips | true pairs | recall | reported pairs | precision | recall / precision at 90 "
          f"| tracks per person | switches per person | stray tracks | boundary error p50 / p90 (s) "
          f"| boundaries within 0.5 s | appearances missed |   (threshold {threshold:g})")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for profile, t in tallies.items():
        for h in sorted(t.scores):
            print(accuracy_row(profile, f"{h}p", t.scores[h], t.scores90[h]))
        total, total90 = sum(t.scores.values(), Score()), sum(t.scores90.values(), Score())
        print(accuracy_row(profile, "all", total, total90))
    for profile, t in tallies.items():
        reasons = sum(t.scores.values(), Score()).miss_reasons
        print(f"{profile}: missed pairs by why: " + (", ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
                                                     or "none"))


def print_speed(tallies: dict[str, Tally], naive_s: float) -> None:
    print(f"\n| profile | video | seconds of video | real-time factor | CPU-s per video-s | naive loop RT "
          f"({naive_s:g} s) | ratio to naive | naive recall / precision | analyser recall / precision "
          f"(same seconds) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for profile, t in tallies.items():
        for h in sorted(t.wall):
            rt = t.video[h] / t.wall[h]
            line = f"| {profile} | {h}p25 | {t.video[h]:.0f} | {rt:.2f}x | {t.cpu[h] / t.video[h]:.2f} "
            if h in t.naive:
                nrt, _, ns, fs = t.naive[h]
                line += (f"| {nrt:.3f}x | {rt / nrt:.1f} | {_pct(ns.recall)} / {_pct(ns.precision)} "
                         f"| {_pct(fs.recall)} / {_pct(fs.precision)} |")
            else:
                line += "| - | - | - | - |"
            print(line)


def print_details(tallies: dict[str, Tally]) -> None:
    for profile, t in tallies.items():
        total = sum(t.scores.values(), Score())
        print(f"\n{profile}: false pairs (clip, reported name, second, who was at that box):")
        for row in total.false_pairs:
            print("  ", *row)
        print(f"{profile}: missed pairs (clip, person, second):")
        for row in total.missed_pairs:
            print("  ", *row)


def sanity(truths: list[Truth]) -> str:
    s = sum((score(t, truth_reports(t, 5)) for t in truths), Score())
    return (f"the ground truth itself sampled at 5 fps scores recall {_pct(s.recall)}, precision "
            f"{_pct(s.precision)}, {s.tracks_per_person:.2f} tracks per person, boundary p90 {s.boundary(0.9):.2f} s")


def describe(truths: list[Truth]) -> str:
    by_h: dict[int, list[Truth]] = defaultdict(list)
    for t in truths:
        by_h[t.height].append(t)
    people = {p: e for t in truths for p, e in t.enrolled.items()}
    parts = [f"{len(ts)} clips at {h}p ({sum(len(t.frames) for t in ts) / 25:.0f} s)" for h, ts in sorted(by_h.items())]
    return (f"{', '.join(parts)}; {len(people)} people ({sum(people.values())} enrolled, "
            f"{len(people) - sum(people.values())} held out)")


def print_real(profile: str, fp, threshold: float) -> None:
    labels, shown = HAMILTON_LABELS["lin-manuel-miranda"], HAMILTON_SHOWN
    print(f"{profile}: Hamilton clip, seconds matched at {threshold:g}: {hamilton(fp, threshold)} (Miranda's face "
          f"on screen at 40 px or more, by eye: {sorted(labels)}; shown at all: Miranda "
          f"{sorted(shown['lin-manuel-miranda'])}, Lacamoire {sorted(shown['alex-lacamoire'])})", flush=True)
    frames, found, full, persons = walking(fp)
    print(f"{profile}: facenet-pytorch walking clip (1080p, 4.2 s): {frames} sampled frames, {found} faces found by "
          f"the video analyser, {full} by the full-size still-image detector on the same frames; {persons} person "
          f"indices in a face search", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two short clips, fast profile, 1 s naive stretch")
    parser.add_argument("--profiles", help="default: accurate,fast (fast with --quick)")
    parser.add_argument("--threshold", type=float, default=80.0)
    parser.add_argument("--naive-seconds", type=float, help="default 2 (1 with --quick); 0: no naive loop")
    parser.add_argument("--skip-real", action="store_true", help="skip the clips of ../shared/data/video")
    parser.add_argument("--details", action="store_true", help="list false and missed pairs")
    parser.add_argument("--cache", type=Path, help=f"default {videogen.cache_root()}")
    parser.add_argument("--set", help="the clips: full (default; quick with --quick) or tune (videogen.py's sets)")
    parser.add_argument("--available", action="store_true",
                        help="only the set's clips made already (none is made; e.g. while videogen.py makes the rest)")
    parser.add_argument("--heights", help="only clips of these frame heights, e.g. 720 or 720,1080")
    parser.add_argument("--views", type=int, help="best views a track (default: the analyser's, MatchRules.best_views)")
    parser.add_argument("--first-views", type=int,
                        help="embed this many of them first, the rest only when the decision is open "
                             "(MatchRules.first_views; default: the analyser's)")
    args = parser.parse_args()
    settings = video_settings(args.views, args.first_views)
    profiles = (args.profiles or ("fast" if args.quick else "accurate,fast")).split(",")
    naive_s = args.naive_seconds if args.naive_seconds is not None else (1.0 if args.quick else 2.0)
    root = args.cache or videogen.cache_root()
    set_name = args.set or ("quick" if args.quick else "full")
    folder = root / f"v{videogen.VERSION}" / set_name
    paths = (sorted(p for p in folder.glob("*.json") if p.with_suffix(".mp4").exists()) if args.available
             else videogen.build(set_name, root, log))
    if args.heights:
        paths = [p for p in paths if any(p.stem.startswith(f"{h}p") for h in args.heights.split(","))]
    truths = load_truths(paths)
    clips = [(t, p.with_suffix(".mp4")) for t, p in zip(truths, paths, strict=True)]
    print(f"# Stored video face search, {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    print(f"Set '{set_name}': {describe(truths)}. Scorer check: {sanity(truths)}.")
    match = settings.match
    print(f"Views a track: {match.best_views}, embedded "
          + (f"{match.first_views} first, the rest when within -{match.open_below:g}/+{match.open_above:g} of the bar"
             if match.first_views else "all at once") + ".")
    tallies = {}
    for profile in profiles:
        fp = gallery(profile, root)
        tallies[profile] = run_set(fp, clips, args.threshold, naive_s, settings)
        if not args.skip_real:
            print_real(profile, fp, args.threshold)
    print_accuracy(tallies, args.threshold)
    print_speed(tallies, naive_s)
    if args.details:
        print_details(tallies)


if __name__ == "__main__":
    main()
