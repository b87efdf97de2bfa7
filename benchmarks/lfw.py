"""LFW View 1 benchmark: verification accuracy, TAR at fixed FAR, 1:N search, and pipeline speed.

Run: python benchmarks/lfw.py [--home HOME] [--profiles all|accurate,fast,NAME] [--speed-images 300]
     [--skip-accuracy] [--skip-speed]

Every registered profile side by side (default ``all``: the built-ins and the operator profiles of
``--home``, default $FACEPRINT_HOME or ~/.faceprint). Every LFW View 1 image is embedded once per
profile (the face nearest the centre). For each profile:
- accuracy on pairsDevTest with the score threshold that is best on pairsDevTrain;
- TAR at FAR 1e-3 / 1e-4 / 1e-5 on pairsDevTest's same-person pairs, at similarity 70 / 80 / 90
  (the calibration, made on pairsDevTrain's people only, puts those FARs there), with the FAR
  actually measured on every pair of images of different pairsDevTest people (an operator profile
  that is not calibrated has no such thresholds: its row says so);
- 1:N search (open set, exact search): the people with two or more images are split in two by a
  hash of their name; the first image of one half, and of every person with one image (distractors),
  is enrolled; the other images of the enrolled half are mated searches, every image of the other
  half a non-mated search. Rank-1: the best-scoring enrolled face is the mate. FNIR at FPIR x: the
  share of mated searches whose mate is not the top candidate at or above the score that the top
  candidates of x of the non-mated searches reach; and both at similarity 80;
- images per second of the full pipeline (decode, detect, measure, embed the largest face), one
  image at a time and with ``analyze_many`` on both cores, beside a raw OpenCV YuNet + SFace loop
  over the same images in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lfw_data import (  # noqa: E402
    LFW,
    best_threshold,
    embed_all,
    impostor_scores,
    make_faceprint,
    pair_scores,
    pairs,
    people,
    profile_names,
)

FPIRS = (0.01, 0.003)


def all_images() -> list[Path]:
    return sorted((LFW / "images").glob("*/*.jpg"))


def verification(profile, vectors: dict[Path, np.ndarray | None]) -> dict[str, float]:
    train_scores, train_same = pair_scores(vectors, "DevTrain")
    test_scores, test_same = pair_scores(vectors, "DevTest")
    threshold = best_threshold(train_scores, train_same)
    out = {"accuracy": float(((test_scores >= threshold) == test_same).mean()),
           "threshold_similarity": float(profile.similarity(threshold)),
           "no_face": float(sum(v is None for v in vectors.values()))}
    held_out = people("DevTest")
    test_vectors = {p: v for p, v in vectors.items() if p.parent.name in held_out}
    impostors = impostor_scores(test_vectors)
    genuine = test_scores[test_same]
    for similarity in (50, 60, 70, 80, 90, 99):
        cut = profile.score_for(similarity)
        out[f"tar@{similarity}"] = float((genuine >= cut).mean())
        out[f"far@{similarity}"] = float((impostors >= cut).mean())
    out["impostor_pairs"] = float(len(impostors))
    return out


def split_people() -> tuple[list[str], list[str], list[str]]:
    """(enrolled people with 2+ images, strangers with 2+ images, people with one image)."""
    folders = sorted(p for p in (LFW / "images").iterdir() if p.is_dir())
    multi = sorted((f.name for f in folders if len(list(f.glob("*.jpg"))) >= 2),
                   key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    single = [f.name for f in folders if len(list(f.glob("*.jpg"))) == 1]
    return sorted(multi[::2]), sorted(multi[1::2]), single


def one_to_n(profile, vectors: dict[Path, np.ndarray | None]) -> dict[str, float]:
    """Open-set 1:N on LFW View 1 (see the module's notes); exact search."""
    enrolled, strangers, single = split_people()
    by_person: dict[str, list[Path]] = {}
    for path in sorted(vectors):
        by_person.setdefault(path.parent.name, []).append(path)
    gallery = [(name, by_person[name][0]) for name in enrolled + single if vectors.get(by_person[name][0]) is not None]
    matrix = np.stack([vectors[p] for _, p in gallery]).astype(np.float32)
    names = np.array([name for name, _ in gallery])
    mated = [(name, p) for name in enrolled for p in by_person[name][1:]]
    non_mated = [p for name in strangers for p in by_person[name]]

    def top(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        """(best gallery row, its score) per search; a search with no face: row -1, score -inf."""
        found = [vectors.get(p) for p in paths]
        rows, scores = np.full(len(paths), -1), np.full(len(paths), -np.inf)
        have = [i for i, v in enumerate(found) if v is not None]
        if have:
            sims = np.stack([found[i] for i in have]) @ matrix.T
            rows[have], scores[have] = sims.argmax(1), sims.max(1)
        return rows, scores

    rows, scores = top([p for _, p in mated])
    hit = (rows >= 0) & (names[np.maximum(rows, 0)] == np.array([n for n, _ in mated]))
    _, stranger_scores = top(non_mated)
    ordered = np.sort(stranger_scores)[::-1]
    out = {"rank1": float(hit.mean()), "gallery": float(len(gallery)), "mated": float(len(mated)),
           "non_mated": float(len(non_mated))}
    for fpir in FPIRS:
        cut = float(ordered[min(len(ordered) - 1, int(np.floor(fpir * len(ordered))))])
        out[f"fnir@{fpir}"] = float(1 - (hit & (scores > cut)).mean())
    if profile.calibrated:
        cut = profile.score_for(80)
        out["fnir@80"] = float(1 - (hit & (scores >= cut)).mean())
        out["fpir@80"] = float((stranger_scores >= cut).mean())
    return out


def raw_opencv_loop(paths: list[Path], models: Path) -> float:
    import cv2

    detector = cv2.FaceDetectorYN.create(str(models / "face_detection_yunet_2023mar.onnx"), "", (320, 320),
                                         0.6, 0.3, 5000)
    recognizer = cv2.FaceRecognizerSF.create(str(models / "face_recognition_sface_2021dec.onnx"), "")
    start = time.perf_counter()
    for path in paths:
        img = cv2.imread(str(path))
        detector.setInputSize((img.shape[1], img.shape[0]))
        _, faces = detector.detect(img)
        if faces is not None:
            recognizer.feature(recognizer.alignCrop(img, faces[0]))
    return len(paths) / (time.perf_counter() - start)


def pipeline_loop(fp, paths: list[Path]) -> float:
    start = time.perf_counter()
    for path in paths:
        fp.analyze(path, max_faces=1)
    return len(paths) / (time.perf_counter() - start)


def batch_loop(fp, paths: list[Path]) -> float:
    start = time.perf_counter()
    for _ in fp.analyze_many(paths, max_faces=1):
        pass
    return len(paths) / (time.perf_counter() - start)


def speed(profiles: list[str], count: int, home: Path, rounds: int = 2, chunk: int = 25) -> dict[str, float]:
    """Images/s of each loop. The loops take turns on chunks of ``chunk`` images (the order
    rotating), ``rounds`` times over, so that drift in the machine's speed hits all alike."""
    paths = sorted({p for a, b, _ in pairs("DevTest") for p in (a, b)})[:count]
    single = {name: make_faceprint(name, home) for name in profiles}
    batch = {name: make_faceprint(name, home, threads=1) for name in profiles}
    for fp in (*single.values(), *batch.values()):
        fp.engine.load()
        pipeline_loop(fp, paths[:10])  # warm up
    models = next(iter(single.values())).models.root
    models_fp = make_faceprint("fast", home)
    models_fp.models.pull(models_fp.profile.model_files())  # the raw loop's YuNet and SFace
    raw_opencv_loop(paths[:10], models)
    loops = {"raw_opencv": lambda ps: raw_opencv_loop(ps, models)}
    for name in profiles:
        loops[name] = lambda ps, name=name: pipeline_loop(single[name], ps)
        loops[name + "_batch"] = lambda ps, name=name: batch_loop(batch[name], ps)
    seconds = dict.fromkeys(loops, 0.0)
    order = list(loops)
    for _ in range(rounds):
        for i in range(0, len(paths), chunk):
            part = paths[i:i + chunk]
            for key in order:
                seconds[key] += len(part) / loops[key](part)
            order = order[1:] + order[:1]
    return {key: rounds * len(paths) / seconds[key] for key in loops}


def print_accuracy(name: str, profile, r: dict[str, float]) -> None:
    if not profile.calibrated:
        print(f"| {name} (not calibrated) | {r['accuracy']:.2%} | - | - | - | - | {int(r['impostor_pairs'])} |",
              flush=True)
        return
    print(f"| {name} | {r['accuracy']:.2%} | {r['tar@70']:.2%} | {r['tar@80']:.2%} | {r['tar@90']:.2%} "
          f"| {r['far@70']:.1e} / {r['far@80']:.1e} / {r['far@90']:.1e} / {r['far@99']:.1e} "
          f"| {int(r['impostor_pairs'])} |", flush=True)


def print_notes(name: str, profile, r: dict[str, float]) -> None:
    if profile.calibrated:
        print(f"- {name}: best DevTrain threshold = similarity {r['threshold_similarity']:.1f}; "
              f"TAR at 50/60/99: {r['tar@50']:.2%} / {r['tar@60']:.2%} / {r['tar@99']:.2%}; "
              f"FAR at 50/60: {r['far@50']:.1e} / {r['far@60']:.1e}; LFW dev images with no face: {int(r['no_face'])}")
    else:
        print(f"- {name}: not calibrated (`faceprint calibrate --profile {name}`): its similarity thresholds "
              f"mean no measured rate; LFW dev images with no face: {int(r['no_face'])}")


def print_search(name: str, r: dict[str, float]) -> None:
    at80 = (f"{r['fnir@80']:.2%} / {r['fpir@80']:.2%}" if "fnir@80" in r else "- (not calibrated)")
    print(f"| {name} | {r['rank1']:.2%} | " + " | ".join(f"{r[f'fnir@{f}']:.2%}" for f in FPIRS)
          + f" | {at80} | {int(r['gallery'])} / {int(r['mated'])} / {int(r['non_mated'])} |", flush=True)


def main() -> None:
    from faceprint.service import default_home

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None,
                        help="faceprint home with operator profiles (default $FACEPRINT_HOME or ~/.faceprint)")
    parser.add_argument("--profiles", default="all", help="'all' (every registered profile) or a comma list")
    parser.add_argument("--speed-images", type=int, default=300)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    home = args.home or default_home()
    profiles = profile_names(home) if args.profiles == "all" else args.profiles.split(",")
    print(f"# LFW View 1 benchmark, {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; profiles: {', '.join(profiles)}")
    if not args.skip_accuracy:
        results = {}
        for name in profiles:
            profile = make_faceprint(name, home).profile
            vectors = embed_all(name, all_images(), home=home)
            results[name] = (profile, verification(profile, vectors), one_to_n(profile, vectors))
        print("\n| profile | DevTest accuracy | TAR@FAR1e-3 (sim 70) | TAR@1e-4 (80) | TAR@1e-5 (90) "
              "| measured FAR at 70 / 80 / 90 / 99 | impostor pairs |")
        print("|---|---|---|---|---|---|---|")
        for name, (profile, r, _) in results.items():
            print_accuracy(name, profile, r)
        print()
        for name, (profile, r, _) in results.items():
            print_notes(name, profile, r)
        print("\n| profile (1:N, exact search) | rank-1 | " + " | ".join(f"FNIR at FPIR {f:g}" for f in FPIRS)
              + " | FNIR / FPIR at similarity 80 | enrolled / mated / non-mated searches |")
        print("|---|---|" + "---|" * len(FPIRS) + "---|---|")
        for name, (_, _, r) in results.items():
            print_search(name, r)
    if args.skip_speed:
        return
    s = speed(profiles, args.speed_images, home)
    baseline = s["raw_opencv"]
    print(f"\n| pipeline ({args.speed_images} LFW images x 2 rounds, loops interleaved in chunks of 25) "
          "| images/s | ratio to raw loop |")
    print("|---|---|---|")
    print(f"| raw OpenCV loop: imread, YuNet, alignCrop, SFace | {baseline:.1f} | 1.00 |")
    for name in profiles:
        print(f"| faceprint {name}, one image at a time (`analyze`) | {s[name]:.1f} | {s[name] / baseline:.2f} |")
        print(f"| faceprint {name}, `analyze_many` (threads=1, 2 workers) | {s[name + '_batch']:.1f} "
              f"| {s[name + '_batch'] / baseline:.2f} |")


if __name__ == "__main__":
    main()
