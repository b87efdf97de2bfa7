"""``faceprint calibrate --profile NAME (--people DIR | --pairs FILE --images DIR) [--groups CSV] [--report DIR]``.

Embeds the operator's labelled faces with the profile, measures genuine and impostor scores and
writes the profile's calibration (``HOME/profiles/NAME/calibration.json``, through
:class:`faceprint.models.registry.ProfileRegistry`) and its DET curve (``det.png`` beside it), then
prints the report as JSON. A built-in profile (``accurate``, ``fast``) ships calibrated and is not
rewritten: its shipped thresholds are measured on the data instead (``Written``: false), with the
knots the data would give under ``proposed_knots``. See docs/models.md ("Calibrating on your own
faces").
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

COMMANDS: frozenset[str] = frozenset({"calibrate"})
"""The top-level command names this module adds."""


def add_commands(sub: Any) -> None:
    """Add ``calibrate`` to the ``faceprint`` parser's subparsers."""
    p = sub.add_parser("calibrate", help="calibrate a profile's similarity scale on your own labelled faces "
                                         "(DET curve, threshold table, per-group rates)")
    p.add_argument("--home", default=argparse.SUPPRESS, help="faceprint home folder")
    p.add_argument("--profile", default=argparse.SUPPRESS, help="the profile to calibrate (an operator profile)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--people", metavar="DIR", help="a folder per person, each holding that person's images")
    source.add_argument("--pairs", metavar="FILE", help="a pairs file in LFW's pairs.txt format (needs --images)")
    p.add_argument("--images", metavar="DIR", help="with --pairs: images at DIR/NAME/NAME_0001.jpg")
    p.add_argument("--groups", metavar="CSV", help="person,group rows: false-match and false-non-match rates per group")
    p.add_argument("--report", metavar="DIR", help="also write report.json, det.png and thresholds.csv here")
    p.add_argument("--workers", type=int, default=2, help="embedding threads (default 2)")


def run(args: argparse.Namespace) -> Any:
    """Run ``calibrate``; returns the report the CLI prints as JSON."""
    from faceprint.errors import InvalidParameterException

    if not getattr(args, "profile", None):
        raise InvalidParameterException("calibrate needs --profile NAME")
    if args.pairs and not args.images:
        raise InvalidParameterException("--pairs needs --images DIR")
    if args.images and not args.pairs:
        raise InvalidParameterException("--images goes with --pairs")
    if not 1 <= args.workers <= 64:
        raise InvalidParameterException("--workers must be 1 to 64")
    return calibrate(_home(args), args.profile, people=args.people, pairs=args.pairs, images=args.images,
                     groups=args.groups, report=args.report, workers=args.workers)


def _home(args: argparse.Namespace) -> Path:
    from faceprint.service import default_home

    return Path(args.home) if getattr(args, "home", None) else default_home()


def calibrate(home: Path, name: str, *, people: str | None = None, pairs: str | None = None,
              images: str | None = None, groups: str | None = None, report: str | None = None,
              workers: int = 2) -> dict[str, Any]:
    """Calibrate profile ``name`` of ``home`` on the labelled faces; the report as a dict."""
    from faceprint import calibrate as cal
    from faceprint.det_plot import write_det
    from faceprint.models.registry import ProfileRegistry
    from faceprint.progress import ProgressBar
    from faceprint.service import Faceprint

    registry = ProfileRegistry(home)
    profile = registry.get(name)
    faces = cal.read_people(Path(people)) if people else cal.read_pairs(Path(pairs or ""), Path(images or ""))
    group_of = cal.read_groups(Path(groups)) if groups else None
    fp = Faceprint(home, profile=name, threads=1)
    bar = ProgressBar(sys.stderr, unit="images")
    vectors = cal.embed(fp.engine, fp.load_image, faces.paths, workers, progress=bar.update)
    bar.finish()
    scores = cal.scores_of(faces, vectors, group_of)
    built_in = getattr(profile, "operator", None) is None
    calibration = cal.calibration_of(scores, cal.data_digest(faces, group_of),
                                     [list(k) for k in profile.knots] if built_in else None)
    title = f"DET: profile {name}, {scores.faces:,} faces of {scores.people:,} people"
    if not built_in:
        previous = registry.calibration(name) or {}
        if "probe_quality" in previous:  # measured apart (benchmarks/probe_quality.py); knots do not change it
            calibration["probe_quality"] = previous["probe_quality"]
        registry.save_calibration(name, calibration)
        write_det(registry.folder(name) / "det.png", calibration, title)
    out = {"Profile": name, "Written": not built_in,
           "Note": ("a built-in profile ships calibrated and is not rewritten: its shipped thresholds measured "
                    "on these faces") if built_in else "the profile's calibration now holds these knots",
           "Calibration": calibration}
    if report:
        folder = Path(report)
        folder.mkdir(parents=True, exist_ok=True)
        write_det(folder / "det.png", calibration, title)
        _write_table(folder / "thresholds.csv", calibration)
        (folder / "report.json").write_text(json.dumps(out, indent=2) + "\n")
        out["Report"] = str(folder)
    return out


def _write_table(path: Path, calibration: dict[str, Any]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["group", "similarity", "score", "fmr", "false_matches", "fnmr", "false_non_matches",
                         "extrapolated"])
        for row in calibration["thresholds"]:
            writer.writerow(["all", row["similarity"], row["score"], row["fmr"], row["false_matches"], row["fnmr"],
                             row["false_non_matches"], row["extrapolated"]])
        for group, rates in calibration.get("groups", {}).items():
            for row in rates["thresholds"]:
                writer.writerow([group, row["similarity"], "", row["fmr"], row["false_matches"], row["fnmr"],
                                 row["false_non_matches"], ""])
