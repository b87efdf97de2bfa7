"""The docs say what the code does: digests, commands, paths."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, models_dir
from faceprint.cli import build_parser
from faceprint.models.catalog import ALL_MODELS, TEXT_MODELS
from faceprint.models.profiles import PROFILES


def test_models_doc_lists_every_pinned_file() -> None:
    text = (ROOT / "docs" / "models.md").read_text()
    for spec in ALL_MODELS:
        row = next(line for line in text.splitlines() if f"`{spec.name}`" in line)
        assert spec.sha256[:8] in row and spec.sha256[-5:] in row, spec.name
        assert spec.distribution in row and spec.licence.split()[0] in row
    for profile in PROFILES.values():
        assert f"`{profile.name}`" in text
    for name, digest in TEXT_MODELS.values():
        row = next(line for line in text.splitlines() if f"`{name}`" in line)
        assert digest[:8] in row and digest[-7:] in row, name


def test_api_doc_covers_every_cli_command() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        assert re.search(rf"^\s+{name}\b", text, re.M), name


def test_readme_main_command_runs_on_a_picture_in_the_repository(tmp_path: Path) -> None:
    """A fresh clone has no ../shared: the main command reads a picture shipped with its licence."""
    text = (ROOT / "README.md").read_text()
    main = re.search(r"^python3 -m venv .* && (faceprint detect-faces (\S+))$", text, re.M)
    assert main, "the quick start's main command"
    picture = Path(main.group(2))
    assert not picture.is_absolute() and ".." not in picture.parts and (ROOT / picture).is_file(), picture
    assert "public domain" in (ROOT / picture.parent / "README.md").read_text()
    env = os.environ | {"FACEPRINT_HOME": str(tmp_path), "FACEPRINT_MODELS_DIR": str(models_dir())}
    done = subprocess.run([sys.executable, "-m", "faceprint.cli", *main.group(1).split()[1:]], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["FaceDetails"]) >= 1
