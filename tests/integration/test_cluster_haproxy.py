"""Behind Debian's HAProxy with examples/haproxy.cfg, two gateway processes survive the SIGKILL of either."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from gateway.benchkit.cluster import haproxy_config
from gateway.sim.csms import DemoCsms
from tests.integration.cluster_support import PG_URL, csms, pg_schema, postgres_reason
from tests.rawpeers import RawCharger

__all__ = ["csms", "pg_schema"]  # fixtures used here
BOOT = {"chargePointVendor": "ACME", "chargePointModel": "One"}


def _skip_reason() -> str | None:
    if shutil.which("haproxy") is None:
        return "haproxy is not installed (apt-get install haproxy; make test installs it as root)"
    return postgres_reason()


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@dataclass
class Instance:
    name: str
    listen: int
    admin: int
    proc: subprocess.Popen[bytes]

    async def get(self, path: str) -> Any:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.admin}{path}") as resp:
            return await resp.json()


async def _healthy(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, f"nothing healthy on port {port}"
        await asyncio.sleep(0.1)


@pytest.fixture
async def estate(tmp_path: Path, pg_schema: str, csms: DemoCsms) -> AsyncIterator[tuple[int, list[Instance]]]:
    """Two gateway processes on one PostgreSQL schema and HAProxy in front of them: (HAProxy port, instances)."""
    ports = free_ports(5)
    instances: list[Instance] = []
    for i in range(2):
        name, listen, admin = f"gw{i + 1}", ports[2 * i], ports[2 * i + 1]
        cfg = {"listen": {"host": "127.0.0.1", "port": listen}, "admin": {"host": "127.0.0.1", "port": admin},
               "store": f"{PG_URL}?schema={pg_schema}", "instance_id": name,
               "csms": {"main": {"url": csms.url, "ocpp": "2.0.1"}}, "default_route": {"primary": "main"},
               "allow_unknown_chargers": True, "upstream": {"reconnect_initial": 0.05, "reconnect_max": 0.5},
               "workers": 1}  # one process per instance: HAProxy spreads the chargers (not SO_REUSEPORT)
        path = tmp_path / f"{name}.yaml"
        path.write_text(json.dumps(cfg))  # JSON is YAML
        log = (tmp_path / f"{name}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config", str(path)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        instances.append(Instance(name, listen, admin, proc))
    haproxy_cfg = tmp_path / "haproxy.cfg"
    haproxy_cfg.write_text(haproxy_config(ports[4], [(i.listen, i.admin) for i in instances]))
    haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(haproxy_cfg)], stdout=(tmp_path / "haproxy.log").open("wb"),
                               stderr=subprocess.STDOUT)
    try:
        for inst in instances:
            await _healthy(inst.admin)
        await asyncio.sleep(2.5)  # HAProxy's health checks (inter 1s, rise 2) see both instances up
        yield ports[4], instances
    finally:
        for proc in [haproxy, *(i.proc for i in instances)]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [haproxy, *(i.proc for i in instances)]:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _reconnect(url: str, timeout: float = 15.0) -> tuple[RawCharger, float]:
    """Reconnect as a charger does after losing its connection; the charger and the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            charger = await RawCharger.connect(url, ["ocpp1.6"])
            return charger, time.monotonic() - started
        except (OSError, TimeoutError, InvalidHandshake) as exc:  # refused, 503 from HAProxy, reset
            if time.monotonic() - started > timeout:
                raise AssertionError(f"could not reconnect through HAProxy: {exc!r}") from exc
            await asyncio.sleep(0.1)


def _state_seq(schema: str, cid: str) -> int | None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        row = conn.execute(f'SELECT state FROM "{schema}".charger_state WHERE charger_id = %s', (cid,)).fetchone()
    if row is None:
        return None
    state = json.loads(row[0])
    spaces = [state, *state.get("primary", {}).values()]  # translator state is kept per CSMS
    txs = {k: v for space in spaces for k, v in space.get("v16_v201", {}).get("tx", {}).items()}
    return max((int(tx["seq"]) for tx in txs.values()), default=None)


@pytest.mark.parametrize("victim", ["holder", "other"])
async def test_sigkill_of_either_instance_mid_transaction(
        estate: tuple[int, list[Instance]], csms: DemoCsms, pg_schema: str, victim: str) -> None:
    """The transaction finishes (through the survivor): one transactionId, seqNo 0, 1, 2, 3."""
    frontend, instances = estate
    url = f"ws://127.0.0.1:{frontend}/ocpp/HX1"
    charger = await RawCharger.connect(url, ["ocpp1.6"])
    assert (await charger.call("b", "BootNotification", BOOT))[2]["status"] == "Accepted"
    start = {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": "2026-01-01T10:00:00Z"}
    tx = (await charger.call("s", "StartTransaction", start))[2]["transactionId"]
    meter = {"connectorId": 1, "transactionId": tx, "meterValue": [
        {"timestamp": "2026-01-01T10:10:00Z", "sampledValue": [{"value": "1500"}]}]}
    assert (await charger.call("m1", "MeterValues", meter))[0] == 3

    holders = {c["id"]: c["instance"] for c in await instances[0].get("/api/chargers")}
    holder = next(i for i in instances if i.name == holders["HX1"])
    other = next(i for i in instances if i is not holder)
    killed, survivor = (holder, other) if victim == "holder" else (other, holder)
    # Durable before answered: the charger got its MeterValues answer, so the seqNo it used is in the store.
    assert _state_seq(pg_schema, "HX1") == 2

    os.kill(killed.proc.pid, signal.SIGKILL)
    killed.proc.wait(5)
    if killed is holder:
        with pytest.raises(ConnectionClosed):  # HAProxy closes the tunnel when the server side dies
            await charger.recv(timeout=10)
        charger, took = await _reconnect(url)
        assert took < 5
    meter["meterValue"][0]["timestamp"] = "2026-01-01T10:20:00Z"
    assert (await charger.call("m2", "MeterValues", meter))[0] == 3
    stop = {"transactionId": tx, "meterStop": 4000, "timestamp": "2026-01-01T11:00:00Z"}
    assert (await charger.call("t", "StopTransaction", stop))[0] == 3

    events = csms.charger("HX1").calls_in("TransactionEvent")
    assert [e["eventType"] for e in events] == ["Started", "Updated", "Updated", "Ended"]
    assert [e["seqNo"] for e in events] == [0, 1, 2, 3]
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
    listed = {c["id"]: c["instance"] for c in await survivor.get("/api/chargers")}
    assert listed == {"HX1": survivor.name}
    await charger.close()
