"""The store's durable side: commits of state, queue and log in one transaction, and ids from the database."""

# ruff: noqa: F811  (the store fixtures are imported from test_store and named as test parameters)
from __future__ import annotations

import time
from collections.abc import Callable

from gateway.records import FrameRecord
from gateway.store import Store
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
    rows = [(2, 1.5, "MeterValues", "m1", '{"a":2}', "{}", None), (1, 1.0, "StartTransaction", "s1", '{"a":1}',
                                                                   '{"transactionId":5}', None)]
    await store.commit("CP1", {"offline": {"seq": 3}}, rows, [])
    assert await store.offline_queue("CP1") == [(1, 1.0, "StartTransaction", "s1", '{"a":1}',
                                                 '{"transactionId":5}', None),
                                                (2, 1.5, "MeterValues", "m1", '{"a":2}', "{}", None)]
    assert [m["unique_id"] for m in await store.messages("CP1")] == ["s1"]
    assert await store.load_state("CP1") == {"offline": {"seq": 3}}
    await store.commit("CP1", None, [], [1])
    assert [r[0] for r in await store.offline_queue("CP1")] == [2]
    assert await store.offline_queue("CP2") == []


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
