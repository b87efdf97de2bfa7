"""``faceprint models``: the model files and profiles.

- ``list``: the built-in profiles' pinned files (where they come from, whether present), every
  profile (built-in and operator: licence, ``face_model_version``, calibration summary) and the
  built-in recipes.
- ``pull [--all] [--attributes] [--from DIR]``: fetch the built-in files now (or from a folder).
- ``add PROFILE.toml|RECIPE --accept-licence LICENCE [--from DIR]``: register an operator profile
  in the home (``faceprint.models.registry``); refused unless LICENCE is the profile's licence.
- ``show NAME``: one profile, with its registration record.
- ``remove NAME [--force]``: remove an operator profile (refused while collections hold its vectors).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

COMMANDS: frozenset[str] = frozenset({"models"})
"""The top-level command names this module adds."""


def add_commands(sub: Any) -> None:
    """Add ``models`` and its subcommands to the ``faceprint`` parser's subparsers."""
    models = sub.add_parser("models", help="model files and profiles: list, pull, add, show, remove")
    msub = models.add_subparsers(dest="models_command", required=True, parser_class=type(models))
    msub.add_parser("list", help="the model files and profiles (built-in and operator) and the recipes")
    pull = msub.add_parser("pull", help="fetch and verify the built-in model files now")
    pull.add_argument("--from", dest="source_dir", metavar="DIR",
                      help="install from a folder of model files or their distributions (air-gapped)")
    pull.add_argument("--all", action="store_true", help="every built-in profile's files, not only the active one")
    pull.add_argument("--attributes", action="store_true",
                      help="also the attribute models (DetectFaces ALL: age, gender, face mesh, expression)")
    add = msub.add_parser("add", help="register an operator profile (a TOML file, or a built-in recipe's name)")
    add.add_argument("source", metavar="PROFILE.toml|RECIPE")
    add.add_argument("--accept-licence", metavar="LICENCE",
                     help="the profile's licence, named exactly: you accept its terms (required)")
    add.add_argument("--from", dest="source_dir", metavar="DIR",
                     help="take the profile's files (or the recipe's archive) from this folder")
    show = msub.add_parser("show", help="one profile: files, licence, calibration, registration")
    show.add_argument("name")
    remove = msub.add_parser("remove", help="remove an operator profile and its files")
    remove.add_argument("name")
    remove.add_argument("--force", action="store_true",
                        help="even while collections hold its vectors (registering it again brings them back)")


def run(args: argparse.Namespace) -> Any:
    """Run one ``models`` subcommand; returns what the CLI prints as JSON."""
    from faceprint.models.registry import ProfileRegistry
    from faceprint.service import default_home

    home = Path(args.home) if args.home else default_home()
    registry = ProfileRegistry(home, log=_stderr)
    command = args.models_command
    if command == "add":
        return {"Profile": profile_row(registry, _add(registry, args).name, detail=True)}
    if command == "show":
        return {"Profile": profile_row(registry, registry.get(args.name).name, detail=True)}
    if command == "remove":
        registry.remove(args.name, () if args.force else _collections_of(home, registry, args.name))
        return {"Removed": args.name}
    if command == "pull":
        return _pull(home, args)
    return _list(home, registry, args)


def _add(registry: Any, args: argparse.Namespace) -> Any:
    from faceprint.errors import InvalidParameterException
    from faceprint.models.recipes import RECIPES

    source = Path(args.source)
    if source.is_file() or source.suffix == ".toml":
        return registry.add(source, args.accept_licence, args.source_dir)
    if args.source in RECIPES:
        return registry.add_recipe(RECIPES[args.source], args.accept_licence, args.source_dir)
    raise InvalidParameterException(f"{args.source[:200]!r} is neither a profile file nor a recipe "
                                    f"({', '.join(RECIPES)}).")


def _collections_of(home: Path, registry: Any, name: str) -> list[str]:
    """The ids of the home's collections that hold profile ``name``'s vectors."""
    from faceprint.service import Faceprint

    if name not in registry.operator_names():  # remove() says why it cannot be removed
        return []
    version = registry.get(name).face_model_version
    fp = Faceprint(home, profile="fast")  # listing collections loads no model
    found, token = [], None
    while True:
        page = fp.list_collections(1000, token)
        found += [c for c, v in zip(page.collection_ids, page.face_model_versions, strict=True) if v == version]
        token = page.next_token
        if not token:
            return found


def _active(args: argparse.Namespace) -> str:
    from faceprint.models.profiles import DEFAULT_PROFILE

    return args.profile or os.environ.get("FACEPRINT_PROFILE") or DEFAULT_PROFILE


def _store(home: Path) -> Any:
    from faceprint.models.catalog import ALL_MODELS
    from faceprint.models.store import ModelStore
    from faceprint.service import default_models_dir

    return ModelStore(default_models_dir(home), catalog=ALL_MODELS, home=home)


def _pull(home: Path, args: argparse.Namespace) -> Any:
    from faceprint.models.profiles import PROFILES, get_profile

    profiles = list(PROFILES.values()) if args.all else [get_profile(_active(args), home)]
    specs = dict.fromkeys(f for p in profiles for f in p.model_files())
    if args.attributes:  # AgeRange and Gender align their chips with dlib's shape predictor
        from faceprint.models.catalog import ATTRIBUTE_MODELS, DLIB_SHAPE5, SFACE

        specs.update(dict.fromkeys((*ATTRIBUTE_MODELS, DLIB_SHAPE5, SFACE)))
    paths = _store(home).pull(specs, source_dir=args.source_dir)
    return {"Models": [{"Name": s.name, "Path": str(p), "Sha256": s.sha256}
                       for s, p in zip(specs, paths, strict=True)]}


def _list(home: Path, registry: Any, args: argparse.Namespace) -> Any:
    from faceprint.errors import FaceprintError
    from faceprint.models.profiles import PROFILES
    from faceprint.models.recipes import RECIPES

    store = _store(home)
    rows = []
    for spec in dict.fromkeys(f for p in PROFILES.values() for f in p.model_files()):
        rows.append({
            "Name": spec.name, "Role": spec.role, "Distribution": spec.distribution,
            "Member": spec.member, "Sha256": spec.sha256, "Size": spec.size, "Licence": spec.licence,
            "Profiles": [p.name for p in PROFILES.values() if spec in p.model_files()],
            "Present": store.is_present(spec), "Path": str(store.root / spec.name),
        })
    out: dict[str, Any] = {"ActiveProfile": _active(args)}
    try:
        out["FaceModelVersion"] = registry.get(_active(args)).face_model_version
    except FaceprintError as exc:  # the listing still shows what there is to choose from
        out["ActiveProfileError"] = exc.message
    registered = set(registry.operator_names())
    out.update({"Models": rows, "Profiles": [profile_row(registry, n) for n in registry.names()],
                "Recipes": [recipe_row(r, r.name in registered) for r in RECIPES.values()]})
    return out


def profile_row(registry: Any, name: str, detail: bool = False) -> dict[str, Any]:
    """What ``models list`` and ``show`` print for one profile."""
    profile = registry.get(name)
    spec = profile.operator
    row: dict[str, Any] = {"Name": profile.name, "Kind": "built-in" if spec is None else "operator",
                           "FaceModelVersion": profile.face_model_version, "VectorDimension": profile.dim,
                           "Description": profile.description, "Calibrated": profile.calibrated}
    if spec is None:
        row["Licence"] = "; ".join(dict.fromkeys(f.licence for f in profile.model_files()))
        row["Files"] = [f.name for f in profile.model_files()]
        return row
    row.update({"Version": spec.version, "Licence": spec.licence, "Detector": spec.detector.kind,
                "Recogniser": spec.recogniser.kind, "Folder": str(profile.folder),
                "Files": [{"Role": role, "Name": file, "Sha256": sha,
                           "Present": (profile.folder / file).is_file()}
                          for role, (file, sha, _) in spec.files().items()],
                "Calibration": calibration_summary(profile.calibration_data)})
    registration = registry.registration(name)
    row.update({"AcceptedLicence": registration.get("accepted_licence"), "AcceptedBy": registration.get("accepted_by"),
                "AcceptedAt": registration.get("accepted_at")})
    if detail:
        row["Registration"] = registration
        row["ProfileToml"] = spec.to_toml()
    return row


def calibration_summary(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The calibration's digest, counts, date and threshold table (None while uncalibrated)."""
    if data is None:
        return None
    keys = {"data_sha256": "DataSha256", "genuine": "Genuine", "impostor": "Impostor", "created": "Created",
            "thresholds": "Thresholds"}
    out = {label: data[key] for key, label in keys.items() if key in data}
    out["Knots"] = data["knots"]
    out["ProbeQualityCurve"] = "probe_quality" in data
    if "groups" in data:
        out["Groups"] = sorted(data["groups"]) if isinstance(data["groups"], dict) else data["groups"]
    return out


def recipe_row(recipe: Any, registered: bool) -> dict[str, Any]:
    return {"Name": recipe.name, "Version": recipe.version, "Licence": recipe.licence,
            "LicenceNote": recipe.licence_note, "Url": recipe.url, "Archive": recipe.archive,
            "ArchiveSha256": recipe.archive_sha256,
            "Members": [{"Role": m.role, "Name": m.name, "Sha256": m.sha256 or None} for m in recipe.members],
            "Registered": registered,
            "Add": f"faceprint models add {recipe.name} --accept-licence {recipe.licence} [--from DIR]"}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
