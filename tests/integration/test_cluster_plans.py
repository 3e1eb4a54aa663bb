"""A migration plan made on any gateway instance is run by exactly one instance, and survives losing it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from gateway.store import open_store
from tests.conftest import gateway_config
from tests.integration.cluster_support import PG_URL, csms, pg_schema

__all__ = ["csms", "pg_schema"]  # fixtures used here
IDS = [f"PL{i}" for i in range(6)]
LEASE_TTL = 1.0  # seconds; the product's default is 15
STOPPED = 0.0  # lease_ttl of an instance the test stopped itself
Start = Callable[[str], Awaitable[Gateway]]


@pytest.fixture
async def instances(tmp_path: Path, pg_schema: str, csms: DemoCsms) -> AsyncIterator[Start]:
    """Gateway instances on one PostgreSQL schema, each with two CSMSs and six configured chargers
    (those the test has not stopped are stopped at the end)."""
    started: list[Gateway] = []
    new = await DemoCsms(versions=(Version.V201,)).start()

    async def start(name: str) -> Gateway:
        cfg = gateway_config(
            tmp_path, {"old": {"url": csms.url, "ocpp": "2.0.1"}, "new": {"url": new.url, "ocpp": "2.0.1"}},
            store=f"{PG_URL}?schema={pg_schema}", instance_id=name, chargers={cid: {} for cid in IDS})
        gw = Gateway(parse_config(cfg))
        await gw.start()
        gw.migration_plans.lease_ttl = LEASE_TTL
        started.append(gw)
        return gw

    yield start
    for gw in reversed(started):
        if gw.plans is not None and gw.plans.lease_ttl != STOPPED:
            await gw.stop()
    await new.stop()


async def api(gw: Gateway, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(
            method, f"http://127.0.0.1:{gw.admin_port}{path}", json=body, headers={"X-Actor": "ops@test"}) as resp:
        return resp.status, await resp.json()


async def until(check: Callable[[], bool], timeout: float = 10.0) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "condition not met in time"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


PLAN = {"name": "to-new", "selection": {"id_pattern": "PL*"}, "route": {"primary": "new"},
        "waves": {"size": 2, "pause": "1.5s"}, "gates": {"observe": "0.1s"}}


async def test_a_plan_submitted_on_b_runs_on_one_instance_and_the_other_finishes_it_when_b_stops(
        instances: Start, pg_schema: str) -> None:
    """Submitted on B: B runs it and A only watches; pause and resume asked on A reach B; B stops mid-plan and A
    takes over from what B stored, so every charger is moved exactly once."""
    a = await instances("gwA")
    b = await instances("gwB")
    status, body = await api(b, "POST", "/api/migration/plans", PLAN)
    assert status == 201, body
    await until(lambda: "to-new" in a.migration_plans.progress)  # announced to A
    assert b.migration_plans.runs("to-new") and not a.migration_plans.runs("to-new")

    status, body = await api(a, "POST", "/api/migration/plans/to-new/pause")
    assert (status, body["status"]) == (200, "paused"), body
    await until(lambda: b.migration_plans.progress["to-new"].status == "paused")
    await b.store.flush()  # B's pause is written (its writer batches for up to 0.2 s) before A reads it
    status, body = await api(a, "POST", "/api/migration/plans/to-new/resume")
    assert (status, body["status"]) == (200, "running"), body
    await until(lambda: b.migration_plans.progress["to-new"].status == "running")
    assert not a.migration_plans.runs("to-new")

    await until(lambda: b.migration_plans.progress["to-new"].waves[0].state == "done", timeout=20)
    assert b.migration_plans.progress["to-new"].waves[2].state == "waiting"
    await b.stop()
    b.migration_plans.lease_ttl = STOPPED  # the fixture leaves it

    took = await until(lambda: a.migration_plans.runs("to-new"), timeout=10)
    assert took < 2 * LEASE_TTL  # B gave its lease up when it stopped; no need to wait it out
    await asyncio.wait_for(a.migration_plans.wait("to-new"), 30)

    store = open_store(f"{PG_URL}?schema={pg_schema}")
    await store.start()
    try:
        from gateway.migration import PlanBook

        stored = await PlanBook(store).load_one("to-new")
    finally:
        await store.close()
    assert stored is not None and stored.status == "completed"
    moved = [e["charger"] for e in stored.history if e["outcome"] == "moved"]
    assert sorted(moved) == IDS  # each once: never run by both instances
    outcomes = [e["outcome"] for e in stored.history if e["charger"] is None]
    assert outcomes.count("paused") == 1 and outcomes.count("resumed") == 1
    assert all(a.route_for(cid).primary == "new" for cid in IDS)  # type: ignore[union-attr]
