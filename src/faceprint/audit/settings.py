"""Per-collection settings that Rekognition does not have: the two-person rule of review, whether
the collection keeps face crops, and its face retention period (``HOME/settings.db``, or the store's
database when it is PostgreSQL: :func:`faceprint.audit.pgparts.open_settings`).

A collection without a row has the defaults (:class:`CollectionSettings()`): collections made
before these settings existed keep working as they did. ``Faceprint.create_collection`` writes
the row of a new collection (two-person rule from ``AuditSettings.two_person_default``) and
``delete_collection`` drops it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceprint.errors import InvalidParameterException
from faceprint.store.database import Database


class Keep:
    """The type of :data:`KEEP`."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = Keep()
"""An update's value for a setting it leaves as it is (where None means something: no retention)."""

MAX_RETENTION_DAYS = 36500
"""A face retention period is 1 to this many days (a hundred years), or none."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS collection_settings (
    collection_id TEXT PRIMARY KEY,
    two_person_rule INTEGER NOT NULL,
    keep_face_crops INTEGER NOT NULL,
    face_retention_days INTEGER
);
"""


@dataclass(frozen=True)
class CollectionSettings:
    """``two_person_rule``: a candidate of a search in this collection is confirmed only once two
    different reviewers confirm it (off: one). ``keep_face_crops``: IndexFaces keeps a JPEG crop of
    each face (erased with the face). ``face_retention_days``: faces older than this are deleted by
    ``faceprint retention apply`` (None: kept until deleted)."""

    two_person_rule: bool = False
    keep_face_crops: bool = False
    face_retention_days: int | None = None

    def checked(self) -> CollectionSettings:
        """These settings, once each has a type and range it may have (else InvalidParameterException)."""
        for name, value in (("TwoPersonRule", self.two_person_rule), ("KeepFaceCrops", self.keep_face_crops)):
            if type(value) is not bool:
                raise InvalidParameterException(f"{name} must be true or false.")
        days = self.face_retention_days
        if days is not None and (type(days) is not int or not 1 <= days <= MAX_RETENTION_DAYS):
            raise InvalidParameterException(f"FaceRetentionDays must be an integer from 1 to {MAX_RETENTION_DAYS}.")
        return self

    def updated(self, **changes: Any) -> CollectionSettings:
        """These settings with ``changes`` (field names) applied, checked."""
        return dataclasses.replace(self, **changes).checked()

    def changed(self, two_person_rule: bool | None = None, keep_face_crops: bool | None = None,
                face_retention_days: int | None | Keep = KEEP) -> CollectionSettings:
        """These settings with an update's values (None, or KEEP for the retention: left as is), checked."""
        changes: dict[str, Any] = {"two_person_rule": two_person_rule, "keep_face_crops": keep_face_crops}
        changes = {k: v for k, v in changes.items() if v is not None}
        if not isinstance(face_retention_days, Keep):
            changes["face_retention_days"] = face_retention_days
        return self.updated(**changes)

    def to_json(self) -> dict[str, Any]:
        return {"TwoPersonRule": self.two_person_rule, "KeepFaceCrops": self.keep_face_crops,
                "FaceRetentionDays": self.face_retention_days}


class SettingsStore:
    """The settings of every collection of one home, in SQLite (safe across threads and processes)."""

    def __init__(self, path: Path | None = None, *, database: Any = None) -> None:
        """``HOME/settings.db`` at ``path``, or ``database`` (one with :class:`Database`'s interface: the
        shared PostgreSQL one, :func:`faceprint.audit.pgparts.open_settings`)."""
        self.database = database if database is not None else Database(_required(path), SCHEMA)

    def get(self, collection_id: str) -> CollectionSettings:
        """The collection's settings (the defaults where none were written)."""
        row = self.database.db().execute(
            "SELECT two_person_rule, keep_face_crops, face_retention_days FROM collection_settings"
            " WHERE collection_id = ?", (collection_id,)).fetchone()
        return settings_of(row) if row else CollectionSettings()

    def put(self, collection_id: str, settings: CollectionSettings) -> None:
        """Write the collection's settings (replacing what it had)."""
        settings.checked()
        with self.database.tx() as db:
            db.execute(UPSERT,
                       (collection_id, int(settings.two_person_rule), int(settings.keep_face_crops),
                        settings.face_retention_days))

    def change(self, collection_id: str, update: Callable[[CollectionSettings], CollectionSettings],
               record: Callable[[CollectionSettings, CollectionSettings], object]) -> tuple[CollectionSettings, bool]:
        """Change the collection's settings to ``update(before)`` in one write transaction, calling
        ``record(before, after)`` first where they differ (its audit entry: if it raises, nothing
        changes). Answers the settings in force and whether they changed."""
        with self.database.tx() as db:
            row = db.execute("SELECT two_person_rule, keep_face_crops, face_retention_days FROM collection_settings"
                             " WHERE collection_id = ?", (collection_id,)).fetchone()
            before = settings_of(row) if row else CollectionSettings()
            after = update(before).checked()
            if after == before:
                return before, False
            record(before, after)
            db.execute(UPSERT,
                       (collection_id, int(after.two_person_rule), int(after.keep_face_crops),
                        after.face_retention_days))
        return after, True

    def drop(self, collection_id: str) -> None:
        """Forget the collection's settings (it was deleted); nothing if it had none."""
        with self.database.tx() as db:
            db.execute("DELETE FROM collection_settings WHERE collection_id = ?", (collection_id,))

    def all(self) -> dict[str, CollectionSettings]:
        """Every collection that has settings written, by id."""
        rows = self.database.db().execute(
            "SELECT collection_id, two_person_rule, keep_face_crops, face_retention_days FROM collection_settings"
            " ORDER BY collection_id").fetchall()
        return {row[0]: settings_of(row[1:]) for row in rows}

    def close(self) -> None:
        self.database.close()


UPSERT = ("INSERT INTO collection_settings VALUES (?, ?, ?, ?) ON CONFLICT (collection_id) DO UPDATE SET "
          "two_person_rule = excluded.two_person_rule, keep_face_crops = excluded.keep_face_crops, "
          "face_retention_days = excluded.face_retention_days")


def _required(path: Path | None) -> Path:
    if path is None:
        raise TypeError("SettingsStore needs a path or a database")
    return path


def settings_of(row: tuple) -> CollectionSettings:
    return CollectionSettings(bool(row[0]), bool(row[1]), row[2])
