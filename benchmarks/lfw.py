"""LFW View 1 benchmark: verification accuracy, TAR at fixed FAR, and pipeline speed.

Run: python benchmarks/lfw.py [--profiles accurate,fast] [--speed-images 300]

For each profile:
- accuracy on pairsDevTest with the score threshold that is best on pairsDevTrain;
- TAR at FAR 1e-3 / 1e-4 / 1e-5 on pairsDevTest's same-person pairs, at similarity 70 / 80 / 90
  (the calibration, made on pairsDevTrain's people only, puts those FARs there), with the FAR
  actually measured on every pair of images of different pairsDevTest people;
- images per second of the full pipeline (decode, detect, measure, embed the largest face), one
  image at a time and with ``analyze_many`` on both cores, beside a raw OpenCV YuNet + SFace loop
  over the same images in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lfw_data import (  # noqa: E402
    best_threshold,
    embed_all,
    images_of,
    impostor_scores,
    pair_scores,
    pairs,
    people,
)


def verification(profile_name: str) -> dict[str, float]:
    from faceprint.models.profiles import get_profile

    profile = get_profile(profile_name)
    paths = sorted({p for a, b, _ in pairs("DevTrain") for p in (a, b)} | set(images_of(people("DevTest"))))
    vectors = embed_all(profile_name, paths)
    train_scores, train_same = pair_scores(vectors, "DevTrain")
    test_scores, test_same = pair_scores(vectors, "DevTest")
    threshold = best_threshold(train_scores, train_same)
    out = {"accuracy": float(((test_scores >= threshold) == test_same).mean()),
           "threshold_similarity": float(profile.similarity(threshold)),
           "no_face": float(sum(v is None for v in vectors.values()))}
    test_vectors = {p: v for p, v in vectors.items() if p.parent.name in people("DevTest")}
    impostors = impostor_scores(test_vectors)
    genuine = test_scores[test_same]
    for similarity in (50, 60, 70, 80, 90, 99):
        cut = profile.score_for(similarity)
        out[f"tar@{similarity}"] = float((genuine >= cut).mean())
        out[f"far@{similarity}"] = float((impostors >= cut).mean())
    out["impostor_pairs"] = float(len(impostors))
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


def speed(profiles: list[str], count: int, rounds: int = 2, chunk: int = 25) -> dict[str, float]:
    """Images/s of each loop. The loops take turns on chunks of ``chunk`` images (the order
    rotating), ``rounds`` times over, so that drift in the machine's speed hits all alike."""
    from faceprint.service import Faceprint

    paths = sorted({p for a, b, _ in pairs("DevTest") for p in (a, b)})[:count]
    single = {name: Faceprint(profile=name) for name in profiles}
    batch = {name: Faceprint(profile=name, threads=1) for name in profiles}
    for fp in (*single.values(), *batch.values()):
        fp.engine.load()
        pipeline_loop(fp, paths[:10])  # warm up
    models = next(iter(single.values())).models.root
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="accurate,fast")
    parser.add_argument("--speed-images", type=int, default=300)
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    profiles = args.profiles.split(",")
    print(f"# LFW View 1 benchmark, {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    if not args.skip_accuracy:
        print("\n| profile | DevTest accuracy | TAR@FAR1e-3 (sim 70) | TAR@1e-4 (80) | TAR@1e-5 (90) "
              "| measured FAR at 70 / 80 / 90 / 99 | impostor pairs |")
        print("|---|---|---|---|---|---|---|")
        for name in profiles:
            r = verification(name)
            print(f"| {name} | {r['accuracy']:.2%} | {r['tar@70']:.2%} | {r['tar@80']:.2%} | {r['tar@90']:.2%} "
                  f"| {r['far@70']:.1e} / {r['far@80']:.1e} / {r['far@90']:.1e} / {r['far@99']:.1e} "
                  f"| {int(r['impostor_pairs'])} |", flush=True)
            print(f"  ({name}: best DevTrain threshold = similarity {r['threshold_similarity']:.1f}; "
                  f"TAR at 50/60/99: {r['tar@50']:.2%} / {r['tar@60']:.2%} / {r['tar@99']:.2%}; "
                  f"FAR at 50/60: {r['far@50']:.1e} / {r['far@60']:.1e}; images with no face: "
                  f"{int(r['no_face'])})", flush=True)
    s = speed(profiles, args.speed_images)
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
