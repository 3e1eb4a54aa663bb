"""The store's durable side: commits of state, queue and log in one transaction, and ids from the database."""

# ruff: noqa: F811  (the store fixtures are imported from test_store and named as test parameters)
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from gateway.records import FrameRecord
from gateway.store import Store
from gateway.store.postgres import split_url
from gateway.store.sqlite import sqlite_path
from tests.integration.test_store import pg_url, started, store_url, stores  # noqa: F401  (fixtures)


def _record(uid: str) -> FrameRecord:
    return FrameRecord(time.time(), "CP1", "in", "charger", "1.6", "CALL", "StartTransaction", uid,
                       f'[2,"{uid}","X",{{}}]', None, None)


async def test_a_commit_stores_state_queue_and_log_together_and_reads_back_in_order(
    stores: Callable[..., Store], store_url: str,
) -> None:
    """After commit() resolves, state, queued messages and the log records queued before it are all readable."""
    store = await started(stores, store_url, flush_interval=60.0)  # the batched path alone would wait a minute
    store.record(_record("s1"))
    rows = [(2, 1.5, "MeterValues", "m1", '{"a":2}', '{"tx":"t1"}', None, "translated", "new"),
            (1, 1.0, "StartTransaction", "s1", '{"a":1}', '{"transactionId":5}', None, "charger", "old")]
    await store.commit("CP1", {"offline": {"seq": 3}}, rows, [])
    assert await store.offline_queue("CP1") == [
        (1, 1.0, "StartTransaction", "s1", '{"a":1}', '{"transactionId":5}', None, "charger", "old"),
        (2, 1.5, "MeterValues", "m1", '{"a":2}', '{"tx":"t1"}', None, "translated", "new"),
    ]
    assert [m["unique_id"] for m in await store.messages("CP1")] == ["s1"]
    assert await store.load_state("CP1") == {"offline": {"seq": 3}}
    assert await store.offline_queue_depths() == {"CP1": 2}
    await store.commit("CP1", None, [], [1])
    assert [r[0] for r in await store.offline_queue("CP1")] == [2]
    assert await store.offline_queue_depths() == {"CP1": 1}
    assert await store.offline_queue("CP2") == []


async def test_a_queue_from_before_translated_items_gains_its_kind_and_csms_columns(
    stores: Callable[..., Store], store_url: str,
) -> None:
    """An offline_queue table without the kind and csms columns (an older gateway's) gets them on start; its rows
    are the charger's, for no CSMS in particular (the primary), and translated rows for a named CSMS can be added."""
    old_table = ("CREATE TABLE {} (charger_id TEXT NOT NULL, seq BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL,"
                 " action TEXT NOT NULL, unique_id TEXT NOT NULL, payload TEXT NOT NULL, local_answer TEXT NOT NULL,"
                 " coalesce_key TEXT, PRIMARY KEY (charger_id, seq))")
    old_row = ("INSERT INTO {} VALUES ('CP1', 1, 1.0, 'StartTransaction', 's1', '{{}}', '{{}}', NULL)")
    if store_url.startswith("sqlite"):
        path = Path(sqlite_path(store_url))
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as conn:
            conn.execute(old_table.format("offline_queue"))
            conn.execute(old_row.format("offline_queue"))
    else:
        import psycopg

        conninfo, schema = split_url(store_url)
        assert schema is not None
        with psycopg.connect(conninfo, autocommit=True) as pg:
            pg.execute(f'CREATE SCHEMA "{schema}"')
            pg.execute(old_table.format(f'"{schema}".offline_queue'))
            pg.execute(old_row.format(f'"{schema}".offline_queue'))
    store = await started(stores, store_url)
    await store.commit("CP1", None, [(2, 2.0, "MeterValues", "m1", "{}", '{"tx":"t1"}', None, "translated", "old")],
                       [])
    assert [(r[0], r[-2], r[-1]) for r in await store.offline_queue("CP1")] == [
        (1, "charger", None), (2, "translated", "old")]


async def test_reserved_ids_are_never_handed_out_twice_across_restarts(
    stores: Callable[..., Store], store_url: str,
) -> None:
    """Blocks of ids come from a database counter (sequence): distinct, and a reopened store continues after them."""
    first = await started(stores, store_url)
    a = await first.reserve_ids(5)
    b = await first.reserve_ids(3)
    await first.close()
    again = await started(stores, store_url)
    c = await again.reserve_ids(4)
    everything = a + b + c
    assert len(set(everything)) == 12
    assert min(everything) >= 1_000_000_000 and min(c) > max(a + b)
