"""The PostgreSQL message log is partitioned by UTC day: rows land in their day, retention drops whole days."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.store.postgres import DAY, PostgresStore
from tests.integration.cluster_support import pg_schema
from tests.integration.test_store import PG_URL, heartbeat

psycopg = pytest.importorskip("psycopg")
__all__ = ["pg_schema"]  # a fixture used here

# 2030-03-17 17:46:40 UTC: a fixed clock, so day names are known, and far enough ahead that the prune the
# writer runs at start (on the real clock) finds nothing old in these tests
NOW = 1_900_000_000.0
TODAY = "message_log_p20300317"


@pytest.fixture
async def opened() -> AsyncIterator[list[PostgresStore]]:
    stores: list[PostgresStore] = []
    yield stores
    for store in stores:
        await store.close()


async def store_at(opened: list[PostgresStore], pg_schema: str, now: float, **kw: Any) -> PostgresStore:
    """A started store in ``pg_schema`` whose partition clock says ``now``."""
    store = PostgresStore(f"{PG_URL}?schema={pg_schema}", retention_days=kw.pop("retention_days", None), **kw)
    store.message_log.clock = lambda: now
    opened.append(store)
    await store.start()
    return store


def where_rows_are(pg_schema: str) -> dict[str, list[str]]:
    """Unique ids of the logged rows by the partition that holds them."""
    with psycopg.connect(PG_URL) as conn:
        rows = conn.execute(
            f'SELECT tableoid::regclass::text, unique_id FROM "{pg_schema}".message_log ORDER BY id'
        ).fetchall()
    found: dict[str, list[str]] = {}
    for table, unique_id in rows:
        found.setdefault(table.rsplit(".", 1)[-1], []).append(unique_id)
    return found


def partitions(pg_schema: str) -> list[str]:
    with psycopg.connect(PG_URL) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(%s) ORDER BY 1",
            (f"{pg_schema}.message_log",),
        ).fetchall()
    return [r[0] for r in rows]


async def test_today_and_the_next_two_days_exist_and_rows_land_in_their_day(
    opened: list[PostgresStore], pg_schema: str
) -> None:
    """Each row goes to its UTC day's partition; a row no day holds goes to the default partition."""
    store = await store_at(opened, pg_schema, NOW)
    assert partitions(pg_schema) == [
        "message_log_default", TODAY, "message_log_p20300318", "message_log_p20300319"
    ]
    for i, offset in enumerate([0.0, DAY, 2 * DAY, -40 * DAY, 9 * DAY]):
        store.record(heartbeat(i, ts=NOW + offset))
    await store.flush()

    assert where_rows_are(pg_schema) == {
        TODAY: ["0"],
        "message_log_p20300318": ["1"],
        "message_log_p20300319": ["2"],
        "message_log_default": ["3", "4"],
    }
    assert [m["unique_id"] for m in await store.messages("CP1")] == ["0", "1", "2", "3", "4"]


async def test_a_row_that_came_before_its_day_moves_into_the_day_when_it_is_created(
    opened: list[PostgresStore], pg_schema: str
) -> None:
    """A clock running ahead puts a row in the default partition; creating its day later moves it there."""
    early = await store_at(opened, pg_schema, NOW)
    early.record(heartbeat(7, ts=NOW + 3 * DAY + 60))
    await early.close()

    later = await store_at(opened, pg_schema, NOW + 3 * DAY)  # its writer creates 2030-03-20
    assert where_rows_are(pg_schema) == {"message_log_p20300320": ["7"]}
    assert [m["unique_id"] for m in await later.messages("CP1")] == ["7"]


async def test_retention_drops_whole_days_and_deletes_old_rows_from_the_default_partition(
    opened: list[PostgresStore], pg_schema: str
) -> None:
    """prune() drops each day wholly older than the cutoff, keeps the day the cutoff falls in, counts every row."""
    store = await store_at(opened, pg_schema, NOW, retention_days=1.5)
    await store.flush()
    for i, offset in enumerate([-50 * DAY, 0.0, 60.0, DAY, 2 * DAY]):
        store.record(heartbeat(i, ts=NOW + offset))
    await store.flush()

    pruned = await store.prune(NOW + 2.5 * DAY + 3600)
    assert pruned == 3  # the default partition's old row and today's two; 2026-11-19 holds the cutoff
    assert TODAY not in partitions(pg_schema)
    assert where_rows_are(pg_schema) == {"message_log_p20300318": ["3"], "message_log_p20300319": ["4"]}
    assert store.stats["pruned"] == 3


async def test_a_plain_message_log_from_before_partitioning_is_kept_readable_and_pruned_as_a_whole(
    opened: list[PostgresStore], pg_schema: str
) -> None:
    """An old plain table becomes the partition for everything before its last day ends; ids continue after it."""
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{pg_schema}"')
        conn.execute(
            f'CREATE TABLE "{pg_schema}".message_log (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,'
            " ts DOUBLE PRECISION NOT NULL, charger_id TEXT NOT NULL, direction TEXT NOT NULL,"
            " peer TEXT NOT NULL, ocpp_version TEXT NOT NULL, message_type TEXT NOT NULL,"
            " action TEXT, unique_id TEXT, frame TEXT NOT NULL, error_code TEXT, note TEXT)"
        )
        conn.execute(f'CREATE INDEX message_log_charger_id ON "{pg_schema}".message_log (charger_id, id)')
        conn.execute(f'CREATE INDEX message_log_ts ON "{pg_schema}".message_log (ts)')
        for i, ts in enumerate([NOW - 3 * DAY, NOW - 60]):
            conn.execute(
                f'INSERT INTO "{pg_schema}".message_log (ts, charger_id, direction, peer, ocpp_version, message_type,'
                " action, unique_id, frame) VALUES (%s, 'CP1', 'in', 'charger', '1.6', 'CALL', 'Heartbeat', %s,"
                " '[2,\"x\",\"Heartbeat\",{}]')",
                (ts, f"old{i}"),
            )

    store = await store_at(opened, pg_schema, NOW, retention_days=1.0)
    other = await store_at(opened, pg_schema, NOW, retention_days=1.0)  # a second instance on the same log
    # the legacy table covers everything before its last day (today) ends, so the days start tomorrow
    assert partitions(pg_schema) == [
        "message_log_default", "message_log_legacy", "message_log_p20300318", "message_log_p20300319"
    ]
    store.record(heartbeat(1, ts=NOW))  # today is the legacy table's last day: the row joins it
    store.record(heartbeat(2, ts=NOW + DAY))
    await store.flush()
    messages = await store.messages("CP1")
    assert [m["unique_id"] for m in messages] == ["old0", "old1", "1", "2"]
    # old rows keep their ids; each row after them has two message ids (the second for a relayed pair's "out")
    assert [m["id"] for m in messages] == [1, 2, 3, 5]

    assert await store.prune(NOW + 0.5 * DAY) == 1  # old0 is past, the legacy table's last day is not: a row delete
    assert await store.prune(NOW + 2 * DAY) == 2  # its last day is past: the table is dropped whole
    assert "message_log_legacy" not in partitions(pg_schema)
    assert await other.prune(NOW + 2 * DAY) == 0  # it knew of the legacy table too: gone is not an error
    assert [m["unique_id"] for m in await store.messages("CP1")] == ["2"]

    again = await store_at(opened, pg_schema, NOW + 2 * DAY)  # a restart finds the partitioned log as it left it
    assert [m["unique_id"] for m in await again.messages("CP1")] == ["2"]
