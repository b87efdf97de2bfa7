"""The docs say what the code does: digests, commands, paths."""

from __future__ import annotations

import re

from conftest import ROOT
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


def test_readme_quick_start_paths_exist() -> None:
    text = (ROOT / "README.md").read_text()
    paths = re.findall(r"(\.\./shared/data/\S+\.jpg)", text)
    assert paths
    for path in paths:
        assert (ROOT / path).is_file(), path
