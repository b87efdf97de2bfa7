"""The shared-state helper for PostgreSQL parts (``faceprint.store.pgshared``) on a real server."""

from __future__ import annotations

import threading

import pytest

from faceprint.store.migrations import Migration, SchemaTooNew
from faceprint.store.pgshared import PgPart, is_postgres, statements
from pg import PgServer, pg  # noqa: F401


@pytest.fixture
def server(request: pytest.FixtureRequest) -> PgServer:
    return request.getfixturevalue("pg")


V1 = Migration(1, "a table", statements("CREATE TABLE demo_items (name TEXT PRIMARY KEY, n INTEGER NOT NULL);\n"))
V2 = Migration(2, "a column", statements("ALTER TABLE demo_items ADD COLUMN note TEXT;\n"))


def test_a_part_migrates_once_and_records_its_version(server) -> None:
    url = server.database()
    first = PgPart(url, "demo", [V1])
    assert first.schema_version == 1
    first.execute("INSERT INTO demo_items VALUES (%s, %s)", ("a", 1))
    first.close()
    again = PgPart(url, "demo", [V1, V2])  # the next version, data kept
    assert again.schema_version == 2
    assert again.rows("SELECT name, n, note FROM demo_items") == [("a", 1, None)]
    assert again.rows("SELECT part, version FROM faceprint_parts ORDER BY version") == [("demo", 1), ("demo", 2)]
    again.close()
    with pytest.raises(SchemaTooNew):
        PgPart(url, "demo", [V1])


def test_nodes_starting_together_migrate_once(server) -> None:
    url, errors, parts = server.database(), [], []

    def start() -> None:
        try:
            parts.append(PgPart(url, "demo", [V1, V2]))
        except Exception as e:  # noqa: BLE001 (collected for the assertion)
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and {p.schema_version for p in parts} == {2}
    assert parts[0].one("SELECT COUNT(*) FROM faceprint_parts WHERE part = 'demo'") == (2,)
    for p in parts:
        p.close()


def test_a_failed_transaction_leaves_nothing(server) -> None:
    part = PgPart(server.database(), "demo", [V1])
    with pytest.raises(RuntimeError), part.tx() as db:
        db.execute("INSERT INTO demo_items VALUES ('x', 1)")
        raise RuntimeError("boom")
    assert part.rows("SELECT * FROM demo_items") == []
    part.close()


def test_is_postgres() -> None:
    assert is_postgres("postgresql://x@/db") and is_postgres("postgres://") and is_postgres("PostgreSQL:///d")
    assert not is_postgres(None) and not is_postgres("") and not is_postgres("sqlite:///x")


def test_nodes_on_one_postgresql_store_share_the_account_and_so_the_arns(server, tmp_path) -> None:
    from faceprint import Faceprint

    url = server.database()
    a = Faceprint(tmp_path / "a", profile="fast", store_url=url)
    b = Faceprint(tmp_path / "b", profile="fast", store_url=url)
    arn = a.create_collection("shared").collection_arn
    assert b.describe_collection("shared").collection_arn == arn
    assert arn.split(":")[4] == (tmp_path / "a" / "account-id").read_text().strip()  # the first node's id
    alone = Faceprint(tmp_path / "c", profile="fast")  # an embedded home keeps its own
    assert alone.arns.account == (tmp_path / "c" / "account-id").read_text().strip() != a.arns.account
