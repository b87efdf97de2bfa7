"""Operating a deployment: ``faceprint migrate`` (an embedded home to PostgreSQL, without
re-embedding), ``faceprint backup`` / ``restore`` (both kinds) and ``faceprint doctor`` (versions,
reachability, index freshness, model files, disk, modes). See docs/scale.md, "Moving, backing up,
checking"."""

from __future__ import annotations


def is_postgres(url: str | None) -> bool:
    """Whether a store URL names PostgreSQL (``faceprint.store.pgshared.is_postgres`` without importing
    psycopg, which the embedded default does not need)."""
    return bool(url) and str(url).split(":", 1)[0].lower() in ("postgresql", "postgres")
