"""Tuning the video face search's naming rule offline: record every track's views once, then
replay naming rules against the gallery in seconds.

Run: python benchmarks/videotune.py record --profile fast [--set tune] [--views 8]
     python benchmarks/videotune.py explore --profile fast [--set tune]

- ``record`` runs the face search analyser (``faceprint.video.faces``) over the clips of a set
  (benchmarks/videogen.py; ``tune`` by default: other seeds and other people than the evaluation
  set ``full``) with up to ``--views`` best views a track, and writes, for every track decided:
  the profile vectors of its views (after landmark refinement, as the analyser embeds them), their
  quality, time and width, and the track's items (time, box). It also writes the gallery's
  vectors and names. Everything goes to ``CACHE/tune-SET-PROFILE.pkl``.
- ``explore`` replays rules on the record: which views make the template, and which score
  decides that the template's best match is its person (the fixed bar that grows with the
  collection, a margin over the best other person, cohort-normalised scores); each rule's
  (person, second) recall and precision come from ``benchmarks/videoscore.py`` on the same items
  (a track named or not as a whole; the analyser's continuation of a person named earlier in the
  clip is not replayed).
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import videogen  # noqa: E402
from videoscore import Report, Score, Truth, reports, score  # noqa: E402

THRESHOLD = 80.0


@dataclass
class TrackRecord:
    views: np.ndarray
    """Profile vectors of the track's best views (rows), best first."""
    quality: list[float]
    times: list[int]
    widths: list[float]
    items: list[Report] = field(default_factory=list)


@dataclass
class ClipRecord:
    truth: Truth
    tracks: list[TrackRecord]


@dataclass
class Record:
    profile: str
    knots: tuple[tuple[float, float], ...]
    gallery: np.ndarray
    names: list[str]
    clips: list[ClipRecord]

    def similarity(self, scores: np.ndarray) -> np.ndarray:
        xs, ys = zip(*self.knots, strict=True)
        return np.interp(scores, xs, ys)


# -- record ---------------------------------------------------------------------------------------

def record_clip(fp, truth: Truth, video: Path, views: int) -> ClipRecord:
    import dataclasses

    from faceprint.video import decode, faces
    from faceprint.video.context import LocalContext
    from faceprint.video.identity import Identifier

    tracks: list[TrackRecord] = []

    class Recorder(Identifier):
        def template(self, chosen):  # noqa: ANN001, ANN202
            vectors = self.vectors(chosen) if chosen else np.zeros((0, 1), np.float32)
            tracks.append(TrackRecord(vectors, [v.quality for v in chosen], [v.timestamp_ms for v in chosen],
                                      [float(v.face.boxes[0, 2]) for v in chosen]))
            return self.template_of(vectors) if chosen else None

    ctx = LocalContext(video, {"CollectionId": video_module().COLLECTION, "FaceMatchThreshold": THRESHOLD}, fp)
    settings = faces.FaceVideoSettings()
    settings = dataclasses.replace(settings, match=dataclasses.replace(settings.match, best_views=views))
    info = decode.probe(ctx.path, ctx.limits)
    ctx.metadata(info)
    identifier = Recorder(fp, video_module().COLLECTION, THRESHOLD, settings.match)

    def emit(items) -> None:  # noqa: ANN001
        tracks[-1].items.extend(reports(items, truth.width, truth.height))

    search = faces.FaceSearch(fp, identifier, settings, emit)
    for seen in faces.scan(ctx, info, settings):
        search.add(seen)
    search.close()
    return ClipRecord(truth, tracks)


def video_module():
    import video

    return video


def gallery_vectors(fp, collection: str) -> tuple[np.ndarray, list[str]]:
    ids = fp.store.face_ids(collection)
    rows = fp.store.get_faces(collection, ids)
    return np.stack([r.vector for r in rows]).astype(np.float32), [r.external_image_id or r.face_id for r in rows]


def record(profile: str, set_name: str, views: int, root: Path, wait: bool) -> Path:
    """Record the set's clips (each once, into its own file, so that a run can be resumed or
    started before every clip is made: without ``wait``, clips not made yet are left for later)."""
    video = video_module()
    folder = root / f"v{videogen.VERSION}" / set_name
    paths = videogen.build(set_name, root, video.log) if wait else sorted(
        p for p in folder.glob("*.json") if p.with_suffix(".mp4").exists())
    fp = video.gallery(profile, root)
    out = root / f"tune-{set_name}-{profile}"
    out.mkdir(exist_ok=True)
    for truth, path in zip(video.load_truths(paths), paths, strict=True):
        target = out / f"{truth.clip}.pkl"
        if not target.exists():
            clip = record_clip(fp, truth, path.with_suffix(".mp4"), views)
            target.write_bytes(pickle.dumps(clip))
            video.log(f"  recorded {truth.clip}: {len(clip.tracks)} tracks")
    gallery, names = gallery_vectors(fp, video.COLLECTION)
    (out / "gallery.pkl").write_bytes(pickle.dumps(Record(profile, fp.profile.knots, gallery, names, [])))
    return out


def load(root: Path, set_name: str, profile: str) -> Record:
    folder = root / f"tune-{set_name}-{profile}"
    rec = pickle.loads((folder / "gallery.pkl").read_bytes())
    rec.clips = [pickle.loads(p.read_bytes()) for p in sorted(folder.glob("*.pkl")) if p.name != "gallery.pkl"]
    return rec


# -- rules ----------------------------------------------------------------------------------------

Rule = Callable[[Record, TrackRecord], tuple[str | None, float]]
"""A naming rule: (the name given to the track or None, the similarity reported)."""


def agreeing_rows(rec: Record, vectors: np.ndarray, agreement: float = 80.0) -> np.ndarray | None:
    from faceprint.video.identity import agreeing

    if not len(vectors):
        return None
    group = agreeing(rec.similarity(vectors @ vectors.T) >= agreement)
    return None if len(group) * 2 <= len(vectors) else vectors[group]


def template(rec: Record, track: TrackRecord, views: int, weighted: bool = False) -> np.ndarray | None:
    rows = agreeing_rows(rec, track.views[:views])
    if rows is None:
        return None
    if weighted:
        w = np.asarray(track.quality[:views], np.float32)[:len(rows)]
        mean = (rows * w[:, None]).sum(0) / max(float(w.sum()), 1e-9)
    else:
        mean = rows.mean(0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


@dataclass(frozen=True)
class Scores:
    """A template's scores against the gallery (cosine), best first, with names."""

    scores: np.ndarray
    names: list[str]

    def best_other(self) -> float:
        top = self.names[0]
        for s, n in zip(self.scores[1:], self.names[1:], strict=True):
            if n != top:
                return float(s)
        return -1.0


def ranked(rec: Record, t: np.ndarray, k: int = 200) -> Scores:
    s = rec.gallery @ t
    k = min(k, len(s) - 1)
    idx = np.argpartition(-s, k)[:k]
    idx = idx[np.argsort(-s[idx])]
    return Scores(s[idx], [rec.names[i] for i in idx])


def bar_rule(bar: float, views: int = 3, weighted: bool = False) -> Rule:
    def rule(rec: Record, track: TrackRecord) -> tuple[str | None, float]:
        t = template(rec, track, views, weighted)
        if t is None:
            return None, 0.0
        r = ranked(rec, t, 5)
        sim = float(rec.similarity(r.scores[0]))
        return (r.names[0], sim) if sim >= max(bar, THRESHOLD) else (None, sim)
    return rule


def lead_rule(sure: float, loose: float, lead: float | None, views: int = 8) -> Rule:
    """``faceprint.video.identity``'s rule: named at ``sure``, or at ``loose`` when the template's
    score leads the best other person's by ``lead`` steps of the calibration from 80 to 90."""
    def rule(rec: Record, track: TrackRecord) -> tuple[str | None, float]:
        t = template(rec, track, views, True)
        if t is None:
            return None, 0.0
        r = ranked(rec, t, 25)
        sim = float(rec.similarity(r.scores[0]))
        step = score_at(rec, 90.0) - score_at(rec, 80.0)
        leads = lead is not None and float(r.scores[0]) - r.best_other() >= lead * step
        named = sim >= max(THRESHOLD, sure) or (sim >= max(THRESHOLD, loose) and leads)
        return (r.names[0], sim) if named else (None, sim)
    return rule


def score_at(rec: Record, similarity: float) -> float:
    xs, ys = zip(*rec.knots, strict=True)
    return float(np.interp(similarity, ys, xs))


def features(rec: Record, track: TrackRecord, views: int, weighted: bool, k: int) -> dict[str, float] | None:
    t = template(rec, track, views, weighted)
    if t is None:
        return None
    r = ranked(rec, t, max(k + 1, 5))
    s1 = float(r.scores[0])
    cohort = r.scores[1:k + 1]
    other = r.best_other()
    return {"sim": float(rec.similarity(s1)), "s1": s1, "margin": s1 - other,
            "sim_margin": float(rec.similarity(s1) - rec.similarity(other)),
            "z": (s1 - float(cohort.mean())) / max(float(cohort.std()), 1e-6),
            "gap_mean": s1 - float(cohort.mean()), "name": r.names[0]}  # type: ignore[dict-item]


# -- scoring --------------------------------------------------------------------------------------

def truth_of(clip: ClipRecord, track: TrackRecord) -> str | None:
    from videoscore import assign

    on = assign(clip.truth, track.items)
    named = [p for p in on if p is not None]
    return max(set(named), key=named.count) if named else None


def evaluate(rec: Record, decide: Callable[[TrackRecord], tuple[str | None, float]]) -> Score:
    total = Score()
    for clip in rec.clips:
        found: list[Report] = []
        for track in clip.tracks:
            name, sim = decide(track)
            found += [Report(r.timestamp_ms, r.index, r.box, name, sim) for r in track.items]
        total += score(clip.truth, found, THRESHOLD, tracks=False)
    return total


def explore(rec: Record, full: bool = True) -> None:
    from faceprint.video.identity import sure_similarity

    bar = max(THRESHOLD, sure_similarity(len(rec.names), 0.015))
    print(f"{rec.profile}: gallery {len(rec.names)} faces, bar {bar:.1f}")
    for views in (3, 5, 8):
        for weighted in (False, True):
            s = evaluate(rec, lambda t, v=views, w=weighted: bar_rule(bar, v, w)(rec, t))
            print(f"  bar {bar:.1f} views {views} weighted {weighted}: recall {s.recall:.1%} precision "
                  f"{s.precision:.1%} ({s.reported_pairs - s.right_pairs} false of {s.reported_pairs})")
    sure = sure_similarity(len(rec.names), 0.015)
    for rate in (0.05, 0.1):
        loose = sure_similarity(len(rec.names), rate)
        for lead in (None, 1.8, 2.0, 2.2, 2.4, 2.6, 3.0):
            rule = lead_rule(sure, loose, lead)
            s = evaluate(rec, lambda t, r=rule: r(rec, t))
            print(f"  lead rule: sure {sure:.1f}, loose {loose:.1f} (rate {rate}), lead {lead}: recall {s.recall:.1%} "
                  f"precision {s.precision:.1%} ({s.reported_pairs - s.right_pairs} false of {s.reported_pairs})")
    if full:
        table(rec)


def table(rec: Record) -> None:
    """Per track features and truth, for the sweep: the tracks with enrolled/stranger labels."""
    for views, weighted, k in ((3, False, 20), (8, True, 20), (8, True, 50)):
        rows = []
        for clip in rec.clips:
            for track in clip.tracks:
                f = features(rec, track, views, weighted, k)
                if f is None:
                    continue
                who = truth_of(clip, track)
                mated = who is not None and clip.truth.enrolled.get(who, False)
                right = mated and clip.truth.name(str(f["name"])) == who
                rows.append((f, mated, right, track, clip))
        sweep(rec, rows, f"views {views} weighted {weighted} cohort {k}")
        spread(rows)


def sweep(rec: Record, rows, label: str) -> None:  # noqa: ANN001
    """For each similarity floor and each normalised score: the loosest cut that names no track
    wrongly (and the one that allows one wrong track), and the recall and precision they give."""
    print(f"  -- {label}: {len(rows)} tracks, {sum(r[1] for r in rows)} of enrolled people, "
          f"{sum(r[2] for r in rows)} of them with their own gallery face best")
    for floor in (80.0, 83.0, 86.0, 88.0, 90.0):
        for key in ("margin", "sim_margin", "z", "gap_mean"):
            wrong = sorted((float(f[key]) for f, _m, right, _t, _c in rows
                            if not right and float(f["sim"]) >= floor), reverse=True)
            for cut in [*wrong[:2], -1e9][:2]:
                chosen = {id(t): (str(f["name"]), float(f["sim"])) for f, _m, _r, t, _c in rows
                          if float(f[key]) > cut and float(f["sim"]) >= floor}
                s = evaluate(rec, lambda t, c=chosen: c.get(id(t), (None, 0.0)))
                print(f"     sim >= {floor:g}, {key} > {cut:.4f}: recall {s.recall:.1%} precision "
                      f"{s.precision:.1%} ({s.reported_pairs - s.right_pairs} false of {s.reported_pairs})")


def spread(rows) -> None:  # noqa: ANN001
    """Each feature's highest values on tracks that would be named wrongly, and quantiles of the
    tracks that would be named rightly (how much room a cut has)."""
    for key in ("sim", "margin", "sim_margin", "z", "gap_mean"):
        wrong = sorted((float(f[key]) for f, _m, right, _t, _c in rows if not right), reverse=True)
        right = np.array([float(f[key]) for f, _m, r, _t, _c in rows if r])
        qs = np.quantile(right, [0.02, 0.05, 0.1, 0.2, 0.5]) if len(right) else []
        print(f"     {key}: wrong top {[round(v, 3) for v in wrong[:6]]}; right q2/5/10/20/50 "
              f"{[round(float(v), 3) for v in qs]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("record", "explore"))
    parser.add_argument("--profile", default="fast")
    parser.add_argument("--set", default="tune")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--lead-only", action="store_true", help="explore: only the lead rule's sweep")
    parser.add_argument("--wait", action="store_true", help="record: make the clips not made yet first")
    args = parser.parse_args()
    root = args.cache or videogen.cache_root()
    if args.command == "record":
        print(record(args.profile, args.set, args.views, root, args.wait))
    else:
        explore(load(root, args.set, args.profile), not args.lead_only)


if __name__ == "__main__":
    main()
