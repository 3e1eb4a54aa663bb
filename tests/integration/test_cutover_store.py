"""Route records are one stored state per charger: found by prefix in SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.store import Store, open_store
from tests.integration.test_store import pg_url, store_url  # noqa: F401 - fixtures shared with the store tests


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:  # noqa: F811 - the fixture above, by name
    opened = open_store(store_url, flush_interval=30.0)
    await opened.start()
    yield opened
    await opened.close()


async def test_states_are_found_by_key_prefix_written_or_not(store: Store) -> None:
    """load_states finds every key with the prefix, written or still queued, and no other (LIKE wildcards too)."""
    records: dict[str, Any] = {"__route__:CP1": {"version": 1}, "__route__:CP_2": {"version": 2}}
    for key, value in records.items():
        store.save_state(key, value)
    store.save_state("CP1", {"seq": 1})
    store.save_state("__route__X", {"version": 9})
    await store.flush()
    store.save_state("__route__:CP1", {"version": 3})  # queued, not written yet: the newest wins

    assert await store.load_states("__route__:") == {"__route__:CP1": {"version": 3}, "__route__:CP_2": {"version": 2}}
    assert await store.load_states("__route__:CP_") == {"__route__:CP_2": {"version": 2}}
    assert await store.load_states("nothing") == {}
