"""Store and index URLs (faceprint.backends): the embedded default, sqlite:///PATH, file:///FOLDER,
and a clear InvalidParameterException for anything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceprint.backends import open_indexes, open_store
from faceprint.errors import InvalidParameterException
from faceprint.index.cache import IndexCache
from faceprint.store.sqlite import SQLiteStore


def test_no_url_is_the_embedded_store_and_index_in_the_home(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "faceprint.db"
    indexes = open_indexes(None, store, tmp_path, 4)
    assert isinstance(indexes, IndexCache) and indexes.folder == tmp_path / "indexes"


def test_sqlite_url_names_the_database_file_or_its_folder(tmp_path: Path) -> None:
    assert open_store(f"sqlite://{tmp_path}/x.db", tmp_path / "home").path == tmp_path / "x.db"
    assert open_store(f"SQLITE://{tmp_path}", tmp_path / "home").path == tmp_path / "faceprint.db"
    assert not (tmp_path / "home").exists()  # the home is not used for a named store


def test_file_url_names_the_index_folder(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    assert open_indexes(f"file://{tmp_path}/idx", store, tmp_path, 4).folder == tmp_path / "idx"


@pytest.mark.parametrize("url", ["mysql://h/db", "faceprint.db", "sqlite://host/x.db", "sqlite:relative.db",
                                 "sqlite:///", "sqlite:///x.db?mode=ro"])
def test_an_unknown_or_malformed_store_url_is_invalid_parameter(tmp_path: Path, url: str) -> None:
    with pytest.raises(InvalidParameterException, match="store URL"):
        open_store(url, tmp_path)


@pytest.mark.parametrize("url", ["redis://h", "/some/folder", "file://host/x"])
def test_an_unknown_index_url_is_invalid_parameter(tmp_path: Path, url: str) -> None:
    with pytest.raises(InvalidParameterException, match="index URL"):
        open_indexes(url, open_store(None, tmp_path), tmp_path, 4)


def test_faceprint_reads_the_urls_from_its_arguments_or_the_environment(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from faceprint.service import Faceprint

    monkeypatch.setenv("FACEPRINT_STORE", f"sqlite://{tmp_path}/env.db")
    monkeypatch.setenv("FACEPRINT_INDEX", f"file://{tmp_path}/env-idx")
    fp = Faceprint(tmp_path / "home", profile="fast")
    assert fp.store.path == tmp_path / "env.db" and fp.index_cache.folder == tmp_path / "env-idx"
    fp = Faceprint(tmp_path / "home", profile="fast", store_url=f"sqlite://{tmp_path}/arg.db")
    assert fp.store.path == tmp_path / "arg.db"
    monkeypatch.setenv("FACEPRINT_STORE", "nosuch://x")
    with pytest.raises(InvalidParameterException):
        Faceprint(tmp_path / "home", profile="fast").list_collections()
