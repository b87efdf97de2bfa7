"""Where collections and faces are kept, and which engine indexes them, chosen by URL.

Store URLs (``faceprint serve --store URL``, ``FACEPRINT_STORE``, ``Faceprint(store_url=...)``):

- none: the embedded SQLite database ``HOME/faceprint.db`` (the default);
- ``sqlite:///PATH``: an SQLite database at the absolute ``PATH`` (a folder: ``PATH/faceprint.db``);
- ``postgresql://[USER@][HOST][:PORT][/DATABASE][?PARAMS]`` (or ``postgres://``): a PostgreSQL
  database (``faceprint.store.postgres``); what the URL leaves out comes from libpq's environment
  (``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``, ``PGPASSFILE``, ...), so
  ``postgresql://`` alone uses the environment only.

Index URLs (``--index URL``, ``FACEPRINT_INDEX``, ``Faceprint(index_url=...)``):

- none: the embedded index (``faceprint.index.cache``), its files in ``HOME/indexes``;
- ``file:///FOLDER``: the embedded index with its files in ``FOLDER``;
- ``milvus://[USER:PASSWORD@]HOST[:PORT][?prefix=NAME]``: a Milvus 2.3 server (port 19530 by
  default; ``faceprint.index.milvus``, needs ``pip install 'faceprint[milvus]'``).

Anything else is an ``InvalidParameterException`` naming the schemes known. Nothing is opened or
connected until these functions are called (``Faceprint`` calls them on first use).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from faceprint.errors import InvalidParameterException
from faceprint.home import private_folder

if TYPE_CHECKING:
    from faceprint.index import Indexes
    from faceprint.store import Store

STORE_ENV = "FACEPRINT_STORE"
INDEX_ENV = "FACEPRINT_INDEX"
STORE_SCHEMES = ("sqlite", "postgresql", "postgres")
INDEX_SCHEMES = ("file", "milvus")


def open_store(url: str | None, home: Path) -> Store:
    """The store ``url`` names (None or empty: ``HOME/faceprint.db``)."""
    from faceprint.store.sqlite import SQLiteStore

    if not url:
        return SQLiteStore(private_folder(home) / "faceprint.db")
    scheme = url_scheme(url, STORE_SCHEMES, "store")
    if scheme == "sqlite":
        return SQLiteStore(sqlite_path(url))
    try:
        from faceprint.store.postgres import PostgresStore
    except ImportError as e:
        raise InvalidParameterException(f"The PostgreSQL store needs psycopg 3 and psycopg-pool: "
                                        f"pip install 'faceprint[postgres]' ({e}).") from None
    return PostgresStore(url)


def open_indexes(url: str | None, store: Store, home: Path, dim: int, **settings: Any) -> Indexes:
    """The indexes ``url`` names over ``store`` (None or empty: the embedded index in ``HOME/indexes``);
    ``settings`` tune the embedded index (``faceprint.index.hybrid``; not Milvus's)."""
    from faceprint.index.cache import IndexCache

    if not url:
        return IndexCache(store, private_folder(home / "indexes"), dim, **settings)
    scheme = url_scheme(url, INDEX_SCHEMES, "index")
    if scheme == "file":
        return IndexCache(store, private_folder(local_path(url, "index")), dim, **settings)
    if scheme == "milvus":  # the embedded index's ``settings`` do not apply
        from faceprint.index.milvus import MilvusIndexes

        return MilvusIndexes(url, store, dim)
    raise AssertionError(scheme)  # url_scheme accepts only the schemes handled above


@contextmanager
def exported(store_url: str | None, index_url: str | None) -> Iterator[None]:
    """``FACEPRINT_STORE`` / ``FACEPRINT_INDEX`` set to the URLs given (None: left as they are) for
    the block, so that the processes it starts (video job runners and workers, stream hosts, server
    workers: each opens its own ``Faceprint`` on the home) use the same store and index; then as before."""
    saved = {name: os.environ.get(name) for name in (STORE_ENV, INDEX_ENV)}
    for name, url in ((STORE_ENV, store_url), (INDEX_ENV, index_url)):
        if url:
            os.environ[name] = url
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def is_postgres(url: str | None) -> bool:
    """Whether a store URL names PostgreSQL (then the home's shared state lives there too)."""
    return bool(url) and url.split(":", 1)[0].lower() in ("postgresql", "postgres")


def url_scheme(url: str, known: tuple[str, ...], what: str) -> str:
    """The URL's scheme, lower case, if it is one of ``known``; else InvalidParameterException."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in known:
        listed = ", ".join(f"{s}://" for s in known)
        raise InvalidParameterException(f"The {what} URL must start with one of {listed} (or be left out "
                                        f"for the embedded default); got scheme {scheme or 'none'!r}.")
    return scheme


def sqlite_path(url: str) -> Path:
    """``sqlite:///PATH`` -> PATH (a folder means its ``faceprint.db``)."""
    path = local_path(url, "store")
    return path / "faceprint.db" if path.is_dir() else path


def local_path(url: str, what: str) -> Path:
    """The absolute path of a ``scheme:///PATH`` URL (no host, no query)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment or not parts.path.startswith("/"):
        raise InvalidParameterException(f"The {what} URL must be {parts.scheme}:///ABSOLUTE/PATH (three "
                                        f"slashes, no host, no query); got {url!r}.")
    path = Path(unquote(parts.path))
    if path == Path("/"):
        raise InvalidParameterException(f"The {what} URL names no path: {url!r}.")
    return path
