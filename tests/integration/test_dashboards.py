"""Every Grafana panel has data: Debian's Prometheus scrapes a running gateway and answers each panel's query."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.ocppj import ErrorKind, Version
from gateway.sim.csms import DemoCsms
from gateway.sim.peer import Reject
from gateway.vendors.demo import VendorDemo
from tests.conftest import gateway_config
from tests.integration.cluster_support import PG_URL, postgres_reason
from tests.rawpeers import RawCharger

DASHBOARDS = sorted((Path(__file__).parents[2] / "dashboards").glob("*.json"))
# What Grafana puts in place of its variables when it sends a panel's query.
GRAFANA_VARIABLES = {"$instance": ".*", "$plan": ".*", "$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s"}
SCRAPES_BEFORE_QUERYING = 4

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="needs Debian's prometheus package (apt-get install prometheus) to scrape the gateway")


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, query as Grafana sends it) for every panel target of every dashboard."""
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                found.append((path.name, panel["title"], expr))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def charger_traffic(listen_port: int, stop: asyncio.Event) -> None:
    """CP1 boots, is authorised once alike and once differently by the shadow, sends one invalid frame, then
    heartbeats until ``stop`` (so every rate has samples to work on)."""
    charger = await RawCharger.connect(f"ws://127.0.0.1:{listen_port}/ocpp/CP1", ["ocpp1.6"])
    try:
        await charger.call("b1", "BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "One"})
        await charger.call("a1", "Authorize", {"idTag": "GOODTAG"})
        await charger.call("a2", "Authorize", {"idTag": "BADTAG"})
        await charger.call("bad", "BootNotification", {"chargePointModel": "no vendor"})  # schema violation
        await charger.call("dt", "DataTransfer", {"vendorId": "ACME"})  # the CSMS answers with a CALLERROR
        n = 0
        while not stop.is_set():
            n += 1
            await charger.call(f"h{n}", "Heartbeat", {})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.3)
    finally:
        await charger.close()


@contextlib.asynccontextmanager
async def prometheus(tmp_path: Path, admin_port: int) -> AsyncIterator[str]:
    """Debian's prometheus scraping the gateway's /metrics every second; yields its base URL."""
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "ocpp-gateway", "static_configs": [{"targets": [f"127.0.0.1:{admin_port}"]}]}],
    }))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        "prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}", stdout=log, stderr=log, env={**os.environ, "HOME": str(tmp_path)},
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        log.close()


async def query(http: aiohttp.ClientSession, base: str, expr: str) -> list[dict[str, Any]]:
    async with http.get(f"{base}/api/v1/query", params={"query": expr}) as resp:
        body = await resp.json()
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def wait_for_scrapes(http: aiohttp.ClientSession, base: str, tmp_path: Path) -> None:
    """Until Prometheus has scraped the gateway successfully SCRAPES_BEFORE_QUERYING times."""
    for _ in range(300):
        with contextlib.suppress(aiohttp.ClientError):
            found = await query(http, base, 'sum_over_time(up{job="ocpp-gateway"}[1m])')
            if found and float(found[0]["value"][1]) >= SCRAPES_BEFORE_QUERYING:
                return
        await asyncio.sleep(0.1)
    raise AssertionError("prometheus did not scrape the gateway: " + (tmp_path / "prometheus.log").read_text()[-3000:])


def has_data(result: list[dict[str, Any]]) -> bool:
    """At least one series with a number (a ratio of nothing to nothing is NaN: no data on a panel either)."""
    return any(not math.isnan(float(series["value"][1])) for series in result)


def test_every_dashboard_query_is_filtered_by_the_instance_variable() -> None:
    """Every metric selector in every panel names instance=~"$instance", so two gateways are not summed."""
    queries = panel_queries()
    assert {q[0] for q in queries} >= {"ocpp-gateway.json", "migration.json"}
    for path in DASHBOARDS:
        raw = json.loads(path.read_text())
        variables = {v["name"] for v in raw["templating"]["list"]}
        assert "instance" in variables, path.name
        for panel in raw["panels"]:
            for target in panel.get("targets", []):
                selectors = re.findall(r"ocpp_gateway_\w+(\{[^}]*\})?", target["expr"])
                assert selectors and all('instance=~"$instance"' in s for s in selectors), (panel["title"], target)


Ports = tuple[int, int]  # the charger port and the admin port of a running gateway


@contextlib.asynccontextmanager
async def in_process(tmp_path: Path, cfg: dict[str, Any]) -> AsyncIterator[Ports]:
    gw = Gateway(parse_config(cfg))
    await gw.start()
    try:
        yield gw.listen_port, gw.admin_port
    finally:
        await gw.stop()


@contextlib.asynccontextmanager
async def two_workers(tmp_path: Path, cfg: dict[str, Any], store: str) -> AsyncIterator[Ports]:
    """`ocpp-gateway run` with `workers: 2` on ``store``: its supervisor serves the one admin address."""
    listen, admin = free_port(), free_port()
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps({**cfg, "store": store, "workers": 2, "listen": {"host": "127.0.0.1", "port": listen},
                                "admin": {"host": "127.0.0.1", "port": admin}}))
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway.cli", "run", "--config", str(path),
                                                    stdout=out, stderr=out)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                assert proc.returncode is None, log.read_text()[-3000:]
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{admin}/healthz") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.1)
        yield listen, admin
    finally:
        proc.terminate()
        await proc.wait()


Start = Callable[[Path, dict[str, Any]], contextlib.AbstractAsyncContextManager[Ports]]


async def panels_without_data(tmp_path: Path, start: Start) -> tuple[list[str], list[dict[str, Any]]]:
    """A gateway with a shadowed charger, a cut-over, a plan and vendor clouds, scraped by Prometheus: the
    panels whose query finds no data, and the cut-over phase's series."""
    demo = VendorDemo("new", "legacy", easee_chargers=1, zaptec_chargers=1, poll_interval=0.05, speedup=600.0,
                      session=(0.4, 0.6), pause=(0.2, 0.3))
    stop = asyncio.Event()
    async with DemoCsms(versions=(Version.V16,)) as legacy, \
            DemoCsms(versions=(Version.V201,), auth={"BADTAG": "Blocked"}) as new:
        def refuse(charger_id: str, version: Version, payload: dict[str, Any]) -> dict[str, Any]:
            raise Reject(ErrorKind.NOT_SUPPORTED, "no data transfer here")

        legacy.handlers["DataTransfer"] = refuse
        vendors = await demo.start()
        cfg = gateway_config(tmp_path, {"legacy": {"url": legacy.url, "ocpp": "1.6"},
                                        "new": {"url": new.url, "ocpp": "2.0.1"}},
                             default_route={"primary": "legacy", "shadow": "new"},
                             chargers={"CP9": {"ocpp": "1.6"}, "CP8": {"ocpp": "1.6"}}, vendors=vendors)
        try:
            async with start(tmp_path, cfg) as (listen_port, admin_port):
                traffic = asyncio.create_task(charger_traffic(listen_port, stop))
                try:
                    async with aiohttp.ClientSession() as http:
                        admin = f"http://127.0.0.1:{admin_port}"
                        async with http.put(f"{admin}/api/chargers/CP9/route", json={"primary": "new"}) as resp:
                            assert resp.status == 200  # a cut-over, before the first scrape counts phases
                        plan = {"name": "cp8-unshadowed", "selection": {"ids": ["CP8"]},
                                "route": {"primary": "legacy"}, "waves": {"size": 1}, "gates": {"observe": "1s"}}
                        async with http.post(f"{admin}/api/migration/plans", json=plan) as resp:
                            assert resp.status == 201, await resp.text()  # a plan, so its panels have series
                        async with prometheus(tmp_path, admin_port) as base:
                            await wait_for_scrapes(http, base, tmp_path)
                            empty = [f"{name} / {title}: {expr}" for name, title, expr in panel_queries()
                                     if not has_data(await query(http, base, expr))]
                            cut_over = await query(
                                http, base, 'ocpp_gateway_migration_phase_chargers{phase="cut-over"}')
                finally:
                    stop.set()
                    await traffic
        finally:
            await demo.stop()
    return empty, cut_over


@pytest.mark.slow
async def test_prometheus_finds_data_for_every_panel_of_every_dashboard(tmp_path: Path) -> None:
    """A gateway with a shadowed charger, a cut-over and vendor clouds, scraped by Prometheus: no panel is empty."""
    empty, cut_over = await panels_without_data(tmp_path, in_process)
    assert not empty, "panels without data:\n" + "\n".join(empty)
    assert [float(s["value"][1]) for s in cut_over] == [1.0]


@pytest.mark.slow
async def test_every_panel_has_data_from_the_supervisor_of_two_workers(tmp_path: Path) -> None:
    """The same with `workers: 2` on PostgreSQL: Prometheus scrapes the supervisor's merged /metrics (a worker
    label on every series), every panel has data, and the estate-wide cut-over count is not doubled."""
    reason = postgres_reason()
    if reason:
        pytest.skip(reason)
    schema = f"test_dashboards_{uuid.uuid4().hex[:12]}"
    try:
        empty, cut_over = await panels_without_data(
            tmp_path, lambda path, cfg: two_workers(path, cfg, f"{PG_URL}?schema={schema}"))
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    assert not empty, "panels without data:\n" + "\n".join(empty)
    assert [float(s["value"][1]) for s in cut_over] == [1.0]
