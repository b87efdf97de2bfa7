"""The operator profiles of a faceprint home: ``HOME/profiles/NAME/``.

Each folder holds ``profile.toml`` (the canonical profile: file names, digests, conventions,
licence), its two files (copied in, hashed while copying), ``registration.json`` (who accepted
which licence, when, and where the files came from) and, once calibrated, ``calibration.json``.
A profile appears whole or not at all: it is assembled in a hidden folder beside the others and
renamed into place. Registering needs the profile's licence named (``accept_licence``), before a
single file is read; a file whose SHA-256 differs from the pinned one, or that does not load as
the declared detector or recogniser, is refused and nothing is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePath
from typing import IO, Any

from faceprint.errors import (
    InvalidParameterException,
    ModelUnavailableError,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
)
from faceprint.home import private_folder, write_private
from faceprint.models.operator import NAME, OperatorSpec, parse_profile
from faceprint.models.profiles import PROFILES, Profile
from faceprint.models.recipes import Recipe
from faceprint.models.store import sha256_of

PROFILES_DIR = "profiles"
PROFILE_FILE = "profile.toml"
CALIBRATION_FILE = "calibration.json"
REGISTRATION_FILE = "registration.json"
_CHUNK = 1 << 20
DOWNLOAD_TIMEOUT = 60.0
STALE_SECONDS = 24 * 3600
"""A hidden staging or removal folder this old was left by a process that died."""

Fetch = Callable[[str, Path, int], None]
"""``fetch(url, destination, max_bytes)``: download a recipe's archive."""


class ProfileRegistry:
    """Built-in profiles and the operator profiles registered under ``home``."""

    def __init__(self, home: Path | str, fetch: Fetch | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.home = Path(home)
        self.root = self.home / PROFILES_DIR
        self._fetch = fetch or download
        self._log = log or (lambda message: None)

    # -- reading ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every profile name: the built-ins, then the operator profiles in name order."""
        return [*PROFILES, *self.operator_names()]

    def operator_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if NAME.fullmatch(p.name) and (p / PROFILE_FILE).is_file())

    def get(self, name: str) -> Profile:
        """A built-in or operator profile; InvalidParameterException naming the choices otherwise."""
        if name in PROFILES:
            return PROFILES[name]
        return Profile.from_operator(self.spec(name), self.folder(name), self.calibration(name))

    def spec(self, name: str) -> OperatorSpec:
        """The operator profile ``name`` as registered."""
        path = self._existing(name) / PROFILE_FILE
        spec = parse_profile(path.read_bytes(), str(path))
        if spec.name != name:
            raise ModelUnavailableError(f"{path} names profile {spec.name!r}, not {name!r}.")
        return spec

    def folder(self, name: str) -> Path:
        """An operator profile's folder (InvalidParameterException for a built-in or unknown name)."""
        if name in PROFILES:
            raise InvalidParameterException(f"{name!r} is a built-in profile: it has no folder.")
        return self._existing(name)

    def registration(self, name: str) -> dict[str, Any]:
        path = self._existing(name) / REGISTRATION_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def calibration(self, name: str) -> dict[str, Any] | None:
        """The profile's calibration (``calibration.json``), or None while it is uncalibrated."""
        path = self._existing(name) / CALIBRATION_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            check_calibration(data)
        except (ValueError, InvalidParameterException) as exc:
            raise ModelUnavailableError(f"{path} is not a valid calibration: {exc}") from None
        return data

    def _existing(self, name: str) -> Path:
        if not isinstance(name, str) or not NAME.fullmatch(name) or not (self.root / name / PROFILE_FILE).is_file():
            raise InvalidParameterException(
                f"Unknown model profile {str(name)[:80]!r}; choose one of {', '.join(self.names())} "
                f"(`faceprint models add` registers an operator profile).")
        return self.root / name

    # -- registering -----------------------------------------------------------------------------
    def add(self, toml_path: Path | str, accept_licence: str | None, source_dir: Path | str | None = None) -> Profile:
        """Register the profile described by ``toml_path``: its files from the paths it gives
        (relative to the TOML file's folder), or all from ``source_dir``."""
        toml_path = Path(toml_path)
        if not toml_path.is_file():
            raise InvalidParameterException(f"{toml_path}: no such profile file.")
        spec = parse_profile(toml_path.read_bytes(), str(toml_path))
        check_licence(spec.name, spec.licence, accept_licence)
        if self._same_registered(spec):
            return self.get(spec.name)
        files = {role: _resolve(source, name, toml_path.parent, source_dir)
                 for role, (name, _, source) in spec.files().items()}
        with self._staging(spec.name) as staging:
            for role, (name, sha, _) in spec.files().items():
                with _open_source(files[role], role) as src:
                    _copy_checked(src, staging / name, sha, f"the {role} file {files[role]}",
                                  InvalidParameterException)
            origin = {"kind": "files", "files": {role: str(path) for role, path in files.items()}}
            return self._finish(spec, staging, accept_licence or "", origin)

    def add_recipe(self, recipe: Recipe, accept_licence: str | None, source_dir: Path | str | None = None) -> Profile:
        """Register a built-in recipe: its archive from ``source_dir`` or, only then, its URL."""
        check_licence(recipe.name, recipe.licence, accept_licence)  # before any byte is fetched
        pinned = {m.role: m.sha256 for m in recipe.members}
        if self._registered_recipe(recipe, pinned):
            return self.get(recipe.name)
        with self._staging(recipe.name) as staging:
            archive = self._recipe_archive(recipe, staging, source_dir)
            digests = _extract_members(archive, recipe, staging)
            archive.unlink()  # the copy in staging: an archive in --from DIR stays where it is
            origin = {"kind": "recipe", "recipe": recipe.name, "archive": str(source_dir or recipe.url),
                      "archive_sha256": recipe.archive_sha256}
            return self._finish(recipe.spec(digests), staging, accept_licence or "", origin)

    def _recipe_archive(self, recipe: Recipe, staging: Path, source_dir: Path | str | None) -> Path:
        """The recipe's archive, copied (from ``source_dir``) or fetched into ``staging``, its digest checked."""
        archive = staging / recipe.archive
        pinned_by = f"the {recipe.name} recipe"
        if source_dir is not None:
            source = Path(source_dir) / recipe.archive
            with _open_source(source, f"{recipe.name} recipe's archive") as src:
                _copy_checked(src, archive, recipe.archive_sha256, str(source), InvalidParameterException, pinned_by)
            return archive
        self._log(f"faceprint: fetching {recipe.url} (licence {recipe.licence}, accepted)")
        self._fetch(recipe.url, archive, recipe.archive_size)
        got = sha256_of(archive)
        if got != recipe.archive_sha256:
            raise ModelUnavailableError(f"{recipe.url} has SHA-256 {got}, {pinned_by} pins "
                                        f"{recipe.archive_sha256}; refusing it.")
        return archive

    def _finish(self, spec: OperatorSpec, staging: Path, accepted: str, origin: dict[str, Any]) -> Profile:
        _try_load(spec, staging)
        (staging / PROFILE_FILE).write_text(spec.to_toml())
        record = {"licence": spec.licence, "accepted_licence": accepted, "accepted_by": _os_user(),
                  "accepted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "origin": origin,
                  "files": {role: {"name": name, "sha256": sha, "size": (staging / name).stat().st_size}
                            for role, (name, sha, _) in spec.files().items()}}
        (staging / REGISTRATION_FILE).write_text(json.dumps(record, indent=2) + "\n")
        try:
            os.rename(staging, self.root / spec.name)
        except OSError:
            raise ResourceAlreadyExistsException(f"A profile named {spec.name!r} was registered meanwhile.") from None
        self._log(f"faceprint: profile {spec.name} registered ({spec.face_model_version})")
        return self.get(spec.name)

    def _same_registered(self, spec: OperatorSpec) -> bool:
        """True when ``spec`` is registered already (registering again does nothing); an other
        profile under its name is refused: collections may hold its vectors."""
        if not (self.root / spec.name / PROFILE_FILE).is_file():
            return False
        if self.spec(spec.name) == spec:
            return True
        raise ResourceAlreadyExistsException(
            f"A different profile named {spec.name!r} is registered; remove it (`faceprint models remove "
            f"{spec.name}`) or give the new one another name.")

    def _registered_recipe(self, recipe: Recipe, pinned: dict[str, str]) -> bool:
        if not (self.root / recipe.name / PROFILE_FILE).is_file():
            return False
        have = self.spec(recipe.name)
        if have.version == recipe.version and all(
                not sha or have.files()[role][1] == sha for role, sha in pinned.items()):
            return True
        raise ResourceAlreadyExistsException(f"A different profile named {recipe.name!r} is registered.")

    @contextlib.contextmanager
    def _staging(self, name: str):
        """A hidden folder beside the profiles, removed unless it was renamed into place."""
        private_folder(self.home)
        private_folder(self.root)
        self._sweep()
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".add-{name}-"))
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _sweep(self) -> None:
        """Remove what an add or a remove killed midway left behind (hidden folders a day old)."""
        for left in [*self.root.glob(".add-*"), *self.root.glob(".removed-*")]:
            with contextlib.suppress(OSError):
                if time.time() - left.stat().st_mtime > STALE_SECONDS:
                    shutil.rmtree(left, ignore_errors=True)

    # -- removing and calibrating ----------------------------------------------------------------
    def remove(self, name: str, in_use: Iterable[str] = ()) -> None:
        """Remove an operator profile and its files. Refused for a built-in, and while collections
        (``in_use``: their ids) hold its vectors; registering the same profile again brings them back."""
        if name in PROFILES:
            raise InvalidParameterException(f"{name!r} is a built-in profile; it cannot be removed.")
        if not isinstance(name, str) or not NAME.fullmatch(name) or not (self.root / name / PROFILE_FILE).is_file():
            raise ResourceNotFoundException(f"No operator profile named {str(name)[:80]!r}.")
        users = sorted(in_use)
        if users:
            shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
            raise InvalidParameterException(
                f"Profile {name!r} holds the vectors of collection(s) {shown}: delete them or move them to "
                f"another profile first (docs/models.md), or remove it anyway with --force.")
        trash = self.root / f".removed-{name}-{os.getpid()}-{time.monotonic_ns()}"
        os.rename(self.root / name, trash)  # gone at once; the files go after
        shutil.rmtree(trash, ignore_errors=True)

    def save_calibration(self, name: str, calibration: dict[str, Any]) -> None:
        """Write ``calibration`` (``knots`` at least) as the profile's ``calibration.json``, atomically."""
        check_calibration(calibration)
        body = (json.dumps(calibration, indent=1) + "\n").encode()
        write_private(self.folder(name) / CALIBRATION_FILE, lambda out: out.write(body))


def check_licence(name: str, licence: str, accepted: str | None) -> None:
    """InvalidParameterException unless ``accepted`` is exactly the profile's licence."""
    if accepted is None:
        raise InvalidParameterException(
            f"Profile {name!r} is under the licence {licence!r}; registering it needs "
            f"--accept-licence {licence} (read its terms first).")
    if accepted != licence:
        raise InvalidParameterException(
            f"--accept-licence {str(accepted)[:80]!r} does not name profile {name!r}'s licence, {licence!r}.")


def check_calibration(data: Any) -> None:
    """A calibration must carry ``knots``: at least two [score, similarity] pairs, scores strictly
    increasing, similarities non-decreasing within 0..100."""
    knots = data.get("knots") if isinstance(data, dict) else None
    ok = isinstance(knots, list) and len(knots) >= 2 and all(
        isinstance(k, (list, tuple)) and len(k) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf") for v in k)
        for k in knots)
    if ok:
        scores, sims = [float(k[0]) for k in knots], [float(k[1]) for k in knots]
        ok = (all(a < b for a, b in zip(scores, scores[1:], strict=False))
              and all(a <= b for a, b in zip(sims, sims[1:], strict=False)) and sims[0] >= 0 and sims[-1] <= 100)
    if not ok:
        raise InvalidParameterException("calibration: knots must be two or more [score, similarity] pairs, "
                                        "scores increasing, similarities non-decreasing within 0..100.")


def verified(path: Path, sha256: str) -> Path:
    """``path`` if its SHA-256 is ``sha256`` (checked when a profile's models load)."""
    if not path.is_file():
        raise ModelUnavailableError(f"{path} is missing: register the profile again.")
    got = sha256_of(path)
    if got != sha256:
        raise ModelUnavailableError(f"{path} has SHA-256 {got}, its profile pins {sha256}; refusing to use it.")
    return path


def download(url: str, destination: Path, max_bytes: int) -> None:
    """Fetch ``url`` into ``destination`` (at most ``max_bytes``); ModelUnavailableError on failure."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as answer, open(destination, "wb") as out:
            done = 0
            for chunk in iter(lambda: answer.read(_CHUNK), b""):
                done += len(chunk)
                if done > max_bytes:
                    raise ModelUnavailableError(f"{url} is larger than the {max_bytes} bytes expected.")
                out.write(chunk)
    except OSError as exc:
        raise ModelUnavailableError(
            f"Could not download {url} ({exc}). Fetch it where it is reachable and use --from DIR.") from None


def _resolve(source: str, name: str, toml_dir: Path, source_dir: Path | str | None) -> Path:
    if source_dir is not None:
        return Path(source_dir) / name
    path = PurePath(source)
    return Path(path) if path.is_absolute() else toml_dir / path


@contextlib.contextmanager
def _open_source(path: Path, role: str):
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise InvalidParameterException(f"The {role} file {path} cannot be read: {exc.strerror or exc}.") from None
    with fh:
        yield fh


def _copy_checked(src: IO[bytes], target: Path, sha256: str, label: str,
                  error: type[Exception], pinned_by: str = "the profile") -> str:
    """Copy ``src`` to ``target``, hashing; ``error`` (and nothing kept) when ``sha256`` is given and
    differs. Returns the digest."""
    digest = hashlib.sha256()
    with open(target, "wb") as out:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    got = digest.hexdigest()
    if sha256 and got != sha256:
        target.unlink()
        raise error(f"{label} has SHA-256 {got}, {pinned_by} pins {sha256}; refusing it.")
    return got


def _extract_members(archive: Path, recipe: Recipe, staging: Path) -> dict[str, str]:
    """Each member of the recipe into ``staging`` (its pinned digest checked): role -> SHA-256."""
    digests = {}
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for member in recipe.members:
                found = [n for n in names if n == member.name or n.endswith("/" + member.name)]
                if not found:
                    raise ModelUnavailableError(f"{archive.name} does not hold {member.name}.")
                with zf.open(found[0]) as src:
                    digests[member.role] = _copy_checked(src, staging / member.name, member.sha256,
                                                         f"{member.name} in {archive.name}", ModelUnavailableError)
    except zipfile.BadZipFile as exc:
        raise ModelUnavailableError(f"{archive.name} is not a zip archive: {exc}") from None
    return digests


def _try_load(spec: OperatorSpec, folder: Path) -> None:
    """Load the profile's models once: a file that is not the declared detector or recogniser is refused."""
    from faceprint.engine import operator_detector, operator_recogniser
    from faceprint.models.profiles import Profile

    profile = Profile.from_operator(spec, folder, None)
    for role, make in (("detector", operator_detector), ("recogniser", operator_recogniser)):
        try:
            make(profile, threads=1, verify=False)
        except (ModelUnavailableError, ValueError) as exc:
            message = exc.message if isinstance(exc, ModelUnavailableError) else str(exc)
            raise InvalidParameterException(f"Profile {spec.name!r}: the {role} does not load: {message}") from None


def _os_user() -> str:
    from faceprint.audit.caller import os_user

    try:
        return os_user()
    except Exception:  # an unnamed uid in a container: the record still says something
        return f"uid {os.getuid()}"
