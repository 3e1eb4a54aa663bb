"""`workers: 2`: one `ocpp-gateway run` supervises two worker processes sharing the charger port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from gateway.sim.csms import DemoCsms
from tests.integration.cluster_support import PG_URL, csms, pg_schema, postgres_reason
from tests.integration.test_cluster_haproxy import _state_seq, free_ports
from tests.rawpeers import RawCharger

__all__ = ["csms", "pg_schema"]  # fixtures used here
BOOT = {"chargePointVendor": "ACME", "chargePointModel": "One"}
CLI = [sys.executable, "-m", "gateway.cli"]

needs_postgres = pytest.mark.skipif(postgres_reason() is not None, reason=postgres_reason() or "")


@dataclass
class Host:
    """The supervisor of a `workers: 2` gateway, its charger port and its admin port."""

    listen: int
    admin: int
    proc: subprocess.Popen[bytes]
    log: Path

    async def get(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.admin}{path}") as resp:
            return resp.status, await resp.json(content_type=None) if path != "/metrics" else await resp.text()

    async def healthy(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"the gateway exited:\n{self.log.read_text()}"
            try:
                status, body = await self.get("/healthz")
                if status == 200:
                    return dict(body)
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, f"not healthy:\n{self.log.read_text()}"
            await asyncio.sleep(0.1)

    async def worker_pids(self) -> dict[str, int]:
        """Instance id -> pid of every worker."""
        return {w["instance"]: w["pid"] for w in (await self.healthy())["workers"]}

    def url(self, cid: str) -> str:
        return f"ws://127.0.0.1:{self.listen}/ocpp/{cid}"


def write_config(tmp_path: Path, store: str, csms_url: str, **extra: Any) -> Path:
    listen, admin = free_ports(2)
    cfg = {"listen": {"host": "127.0.0.1", "port": listen}, "admin": {"host": "127.0.0.1", "port": admin},
           "store": store, "csms": {"main": {"url": csms_url, "ocpp": "2.0.1"}},
           "default_route": {"primary": "main"}, "allow_unknown_chargers": True,
           "upstream": {"reconnect_initial": 0.05, "reconnect_max": 0.5}, **extra}
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


@pytest.fixture
async def host(tmp_path: Path, pg_schema: str, csms: DemoCsms) -> AsyncIterator[Host]:
    """`ocpp-gateway run` with `workers: 2` on a PostgreSQL schema of this test alone."""
    path = write_config(tmp_path, f"{PG_URL}?schema={pg_schema}", csms.url, workers=2)
    cfg = json.loads(path.read_text())
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*CLI, "run", "--config", str(path)], stdout=out, stderr=subprocess.STDOUT,
                                cwd=tmp_path)
    gateway = Host(cfg["listen"]["port"], cfg["admin"]["port"], proc, log)
    try:
        await gateway.healthy()
        yield gateway
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def boot(url: str) -> RawCharger:
    charger = await RawCharger.connect(url, ["ocpp1.6"])
    assert (await charger.call("b", "BootNotification", BOOT))[2]["status"] == "Accepted"
    return charger


async def reconnect(url: str, timeout: float = 15.0) -> RawCharger:
    started = time.monotonic()
    while True:
        try:
            return await RawCharger.connect(url, ["ocpp1.6"])
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"could not reconnect: {exc!r}") from exc
            await asyncio.sleep(0.1)


def connected_per_worker(exposition: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in exposition.splitlines():
        if line.startswith("ocpp_gateway_chargers_connected{"):
            worker = line.split('worker="', 1)[1].split('"', 1)[0]
            counts[worker] = counts.get(worker, 0.0) + float(line.rpartition(" ")[2])
    return counts


@needs_postgres
async def test_two_workers_share_the_charger_port_and_both_get_chargers(host: Host) -> None:
    """40 chargers on one port land on both workers; the admin address lists them all, each as its holder
    describes it, and /metrics shows each worker's own count under a worker label."""
    chargers = [await boot(host.url(f"W{i:02d}")) for i in range(40)]
    await asyncio.sleep(1.5)  # each worker reads the estate's owner table every second
    workers = await host.worker_pids()
    assert len(workers) == 2

    status, listed = await host.get("/api/chargers")
    assert status == 200
    holders = {c["id"]: c["instance"] for c in listed}
    assert set(holders) == {f"W{i:02d}" for i in range(40)}
    assert set(holders.values()) == set(workers)

    for cid in ("W00", "W01", "W02", "W03", "W04", "W05"):
        status, one = await host.get(f"/api/chargers/{cid}")
        assert status == 200
        # Only the holder knows the live session (translator, upstream link); another worker has the record.
        assert one["instance"] == holders[cid] and one["translator"] and one["upstream"]["state"] == "up"

    _, exposition = await host.get("/metrics")
    index_of = {w["instance"]: str(w["worker"]) for w in (await host.healthy())["workers"]}
    assert connected_per_worker(exposition) == Counter(index_of[i] for i in holders.values())
    assert 'ocpp_gateway_worker_up{worker="0"} 1' in exposition
    assert 'ocpp_gateway_worker_up{worker="1"} 1' in exposition
    assert exposition.count("# TYPE ocpp_gateway_frames_total counter") == 1
    for charger in chargers:
        await charger.close()


@needs_postgres
async def test_a_transaction_continues_on_the_other_worker_after_a_sigkill(
        host: Host, csms: DemoCsms, pg_schema: str) -> None:
    """SIGKILL of the worker holding a charger mid-transaction: /healthz says 503, the charger reconnects to the
    other worker on the same port and finishes with one transactionId and seqNo 0, 1, 2, 3; the supervisor
    starts the worker again."""
    url = host.url("KX1")
    charger = await boot(url)
    start = {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": "2026-01-01T10:00:00Z"}
    tx = (await charger.call("s", "StartTransaction", start))[2]["transactionId"]
    meter = {"connectorId": 1, "transactionId": tx, "meterValue": [
        {"timestamp": "2026-01-01T10:10:00Z", "sampledValue": [{"value": "1500"}]}]}
    assert (await charger.call("m1", "MeterValues", meter))[0] == 3
    assert _state_seq(pg_schema, "KX1") == 2

    _, one = await host.get("/api/chargers/KX1")
    pids = await host.worker_pids()
    victim = one["instance"]
    os.kill(pids[victim], signal.SIGKILL)
    with pytest.raises(ConnectionClosed):
        await charger.recv(timeout=10)
    status, health = await host.get("/healthz")  # within the first restart delay (1 s): one worker is missing
    assert status == 503 and health["status"] == "unhealthy"
    charger = await reconnect(url)
    meter["meterValue"][0]["timestamp"] = "2026-01-01T10:20:00Z"
    assert (await charger.call("m2", "MeterValues", meter))[0] == 3
    stop = {"transactionId": tx, "meterStop": 4000, "timestamp": "2026-01-01T11:00:00Z"}
    assert (await charger.call("t", "StopTransaction", stop))[0] == 3

    events = csms.charger("KX1").calls_in("TransactionEvent")
    assert [e["eventType"] for e in events] == ["Started", "Updated", "Updated", "Ended"]
    assert [e["seqNo"] for e in events] == [0, 1, 2, 3]
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
    _, again = await host.get("/api/chargers/KX1")
    assert again["instance"] != victim and again["connected"]

    health = await host.healthy()  # the killed worker is back, under a new pid
    assert sorted(w["restarts"] for w in health["workers"]) == [0, 1]
    assert pids[victim] not in {w["pid"] for w in health["workers"]}
    _, exposition = await host.get("/metrics")
    assert sorted(line.rpartition(" ")[2] for line in exposition.splitlines()
                  if line.startswith("ocpp_gateway_worker_restarts_total{")) == ["0", "1"]
    await charger.close()


@needs_postgres
async def test_sigterm_stops_every_worker_and_chargers_see_going_away(host: Host) -> None:
    """SIGTERM to `run`: every worker closes its chargers with 1001, then everything exits 0."""
    chargers = [await boot(host.url(f"T{i}")) for i in range(12)]
    pids = list((await host.worker_pids()).values())
    host.proc.send_signal(signal.SIGTERM)
    for charger in chargers:
        with pytest.raises(ConnectionClosed) as closed:
            await charger.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert await asyncio.to_thread(host.proc.wait, 30) == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


async def test_sqlite_with_two_workers_is_refused(tmp_path: Path) -> None:
    """workers: 2 on a SQLite store is a config error naming the key (check-config and run: exit 2);
    so is --workers 2 on the command line; workers: auto on SQLite runs one process and says so."""
    path = write_config(tmp_path, f"sqlite:///{tmp_path}/gw.db", "ws://127.0.0.1:1/ocpp", workers=2)
    for command in ("check-config", "run"):
        done = subprocess.run([*CLI, command, "--config", str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert f"{path}: workers: 2 processes need a PostgreSQL store" in done.stderr

    path = write_config(tmp_path, f"sqlite:///{tmp_path}/gw.db", "ws://127.0.0.1:1/ocpp")
    done = subprocess.run([*CLI, "run", "--config", str(path), "--workers", "2"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"ocpp-gateway: cannot start: {path}: workers: 2 processes need a PostgreSQL "
                                   "store; a SQLite store is one process's (use workers: 1, or postgresql://... - "
                                   "docs/cluster.md) (--workers 2)")

    proc = subprocess.Popen([*CLI, "run", "--config", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["event"] == "workers" and first["workers"] == 1 and "SQLite" in first["reason"]
        while json.loads(proc.stdout.readline())["event"] != "gateway_started":
            pass
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0


async def test_workers_that_cannot_start_stop_the_supervisor(tmp_path: Path) -> None:
    """A store nobody answers: the first worker says why in one line, and `run` exits 2 without the others."""
    path = write_config(tmp_path, "postgresql://postgres@127.0.0.1:1/test?connect_timeout=3",
                        "ws://127.0.0.1:1/ocpp", workers=2)
    done = subprocess.run([*CLI, "run", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"ocpp-gateway: cannot start: {path}: store: cannot connect to postgresql")
