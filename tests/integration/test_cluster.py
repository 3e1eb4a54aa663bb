"""Two gateway instances on one PostgreSQL store act as one gateway: one owner per charger, shared state."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from tests.conftest import gateway_config
from tests.integration.cluster_support import PG_URL, csms, pg_schema
from tests.rawpeers import RawCharger

__all__ = ["csms", "pg_schema"]  # fixtures used here
BOOT = {"chargePointVendor": "ACME", "chargePointModel": "One"}
START = {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": "2026-01-01T10:00:00Z"}
Cluster = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def instances(tmp_path: Path, pg_schema: str, csms: DemoCsms) -> AsyncIterator[Cluster]:
    """Start gateway instances named as asked, all on the same PostgreSQL schema and CSMS."""
    started: list[Gateway] = []

    async def start(name: str, store: str | None = None, **overrides: Any) -> Gateway:
        csms_cfg = overrides.pop("csms", {"main": {"url": csms.url, "ocpp": "2.0.1"}})
        cfg = gateway_config(tmp_path, csms_cfg, store=store or f"{PG_URL}?schema={pg_schema}", instance_id=name,
                             **overrides)
        gw = Gateway(parse_config(cfg))
        await gw.start()
        started.append(gw)
        return gw

    yield start
    for gw in reversed(started):
        await gw.stop()


def url(gw: Gateway, cid: str) -> str:
    return f"ws://127.0.0.1:{gw.listen_port}/ocpp/{cid}"


async def api(gw: Gateway, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(
            method, f"http://127.0.0.1:{gw.admin_port}{path}", json=body) as resp:
        return resp.status, await resp.json()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> float:
    """Wait until ``check()`` holds; the seconds it took."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout, "condition not met in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_transaction_ids_stay_unique_when_a_charger_alternates_between_instances(instances: Cluster) -> None:
    """StartTransaction via A, B, A, B hands out four different, increasing ids: they come from the database."""
    a, b = await instances("A"), await instances("B")
    ids = []
    for n, gw in enumerate((a, b, a, b)):
        charger = await RawCharger.connect(url(gw, "ALT1"), ["ocpp1.6"])
        start = await charger.call("s", "StartTransaction", {**START, "meterStart": 1000 * (n + 1)})
        ids.append(start[2]["transactionId"])
        await charger.close()
    assert len(set(ids)) == 4 and ids == sorted(ids), ids


async def test_a_charger_that_connects_to_another_instance_is_taken_over(
        instances: Cluster, csms: DemoCsms) -> None:
    """A's side closes with 1000 within seconds; B continues the transaction with the same id and seqNo."""
    a, b = await instances("A"), await instances("B")
    first = await RawCharger.connect(url(a, "TK1"), ["ocpp1.6"])
    assert (await first.call("b", "BootNotification", BOOT))[2]["status"] == "Accepted"
    tx = (await first.call("s", "StartTransaction", START))[2]["transactionId"]

    started = time.monotonic()
    second = await RawCharger.connect(url(b, "TK1"), ["ocpp1.6"])
    with pytest.raises(ConnectionClosed):
        await first.recv(timeout=5)
    assert first.ws.close_code == 1000
    assert first.ws.close_reason == "taken over by another gateway instance"
    stop = {"transactionId": tx, "meterStop": 4000, "timestamp": "2026-01-01T11:00:00Z"}
    assert (await second.call("t", "StopTransaction", stop))[0] == 3
    assert time.monotonic() - started < 5

    events = csms.charger("TK1").calls_in("TransactionEvent")
    assert [e["eventType"] for e in events] == ["Started", "Ended"]
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
    assert [e["seqNo"] for e in events] == [0, 1]
    assert a.metrics.sessions_taken_over._value.get() == 1

    async def listed_on_a_as_held_by_b() -> bool:
        status, chargers = await api(a, "GET", "/api/chargers")
        return status == 200 and any(c["id"] == "TK1" and c["instance"] == "B" and c["connected"] for c in chargers)

    await eventually(listed_on_a_as_held_by_b)
    status, chargers = await api(b, "GET", "/api/chargers")
    assert status == 200
    assert [(c["id"], c["instance"]) for c in chargers] == [("TK1", "B")]
    await second.close()


async def test_two_connections_of_one_charger_never_both_stay_open(instances: Cluster) -> None:
    """Connecting to A and B at the same moment leaves exactly one live session for the charger id."""
    a, b = await instances("A"), await instances("B")
    chargers = await asyncio.gather(RawCharger.connect(url(a, "RACE"), ["ocpp1.6"]),
                                    RawCharger.connect(url(b, "RACE"), ["ocpp1.6"]))

    async def one_left() -> bool:
        return sum(c.ws.close_code is None for c in chargers) == 1 and a.is_connected("RACE") != b.is_connected("RACE")

    await eventually(one_left)
    survivor = next(c for c in chargers if c.ws.close_code is None)
    assert (await survivor.call("h", "Heartbeat", {}))[0] == 3
    await survivor.close()


async def test_a_route_set_on_one_instance_reaches_the_charger_on_the_other(instances: Cluster, csms: DemoCsms) -> None:
    """PUT /route on B: A, which holds the charger, switches it hot within a second, without closing it."""
    other = await DemoCsms(versions=(Version.V201,)).start()
    try:
        endpoints = {"main": {"url": csms.url, "ocpp": "2.0.1"}, "new": {"url": other.url, "ocpp": "2.0.1"}}
        a, b = await instances("A", csms=endpoints), await instances("B", csms=endpoints)
        charger = await RawCharger.connect(url(a, "RT1"), ["ocpp1.6"])
        assert (await charger.call("b", "BootNotification", BOOT))[0] == 3
        status, body = await api(b, "PUT", "/api/chargers/RT1/route", {"primary": "new"})
        assert status == 200 and "holding the charger" in body["reason"], body

        async def switched() -> bool:
            route = a.route_for("RT1")
            return route is not None and route.primary == "new" and a.connections["RT1"].route.primary == "new"

        assert await eventually(switched, timeout=1.0) < 1.0
        assert other.charger("RT1").calls_in("BootNotification")  # introduced to the new CSMS first
        assert charger.ws.close_code is None
        # The new CSMS's boot interval reaches the charger as a real boot's would (docs/cutover.md).
        interval = await charger.recv(timeout=2)
        assert interval[2:] == ["ChangeConfiguration", {"key": "HeartbeatInterval", "value": "300"}]
        await charger.send(f'[3,"{interval[1]}",{{"status":"Accepted"}}]')
        assert (await charger.call("h", "Heartbeat", {}))[0] == 3
        assert other.charger("RT1").calls_in("Heartbeat")
        await charger.close()
    finally:
        await other.stop()


class Cuttable:
    """A TCP forwarder to PostgreSQL that the test can cut (every connection dropped) and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server: asyncio.Server | None = None
        self.port = 0
        self.links: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.links |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.links:
            w.transport.abort()
        self.links.clear()
        await self.server.wait_closed()


async def test_a_charger_is_served_while_the_store_is_unreachable(instances: Cluster, pg_schema: str,
                                                                  csms: DemoCsms) -> None:
    """With PostgreSQL away a new charger is accepted and kept; its BootNotification is answered once it is back."""
    proxy = Cuttable(("127.0.0.1", 5432))
    await proxy.up()
    try:
        gw = await instances("A", store=f"postgresql://postgres@127.0.0.1:{proxy.port}/test?schema={pg_schema}"
                                        "&connect_timeout=1")
        await proxy.cut()
        charger = await RawCharger.connect(url(gw, "OUT1"), ["ocpp1.6"])
        await charger.send('[2,"b","BootNotification",{"chargePointVendor":"ACME","chargePointModel":"One"}]')
        with pytest.raises(TimeoutError):
            await charger.recv(timeout=1.5)  # waits: no id or state is guessed while the store is away
        assert charger.ws.close_code is None

        async def reported_down() -> bool:
            status, health = await api(gw, "GET", "/healthz")
            return status == 200 and health["store"] == "unreachable" and health["sessions_waiting_for_store"] == 1

        await eventually(reported_down)
        status, body = await api(gw, "GET", "/api/chargers/OUT1/messages")
        assert status == 503 and "unavailable" in body["error"]

        await proxy.up()
        boot = await charger.recv(timeout=15)
        assert boot[:2] == [3, "b"] and boot[2]["status"] == "Accepted"
        assert gw.metrics.store_waits._value.get() == 1
        started = await charger.call("s", "StartTransaction", START)
        assert started[0] == 3 and started[2]["transactionId"] >= 1, started  # an id reserved from the database
        await charger.close()
    finally:
        with contextlib.suppress(Exception):
            await proxy.cut()


async def test_a_second_process_on_one_sqlite_file_is_refused(tmp_path: Path, csms: DemoCsms) -> None:
    """Two gateways on one SQLite file would each keep their own state: the second one does not start."""
    from gateway.cluster import ClusterError

    cfg = gateway_config(tmp_path, {"main": {"url": csms.url, "ocpp": "2.0.1"}})
    first = Gateway(parse_config(cfg))
    await first.start()
    second = Gateway(parse_config(cfg))
    try:
        with pytest.raises(ClusterError, match="several gateway instances need a PostgreSQL store"):
            await second.start()
    finally:
        await second.store.close()
        await first.stop()
    third = Gateway(parse_config(cfg))  # once the first has stopped, the file is free again
    await third.start()
    await third.stop()


async def test_one_charger_asked_of_an_instance_that_does_not_hold_it_shows_its_record(
        instances: Cluster) -> None:
    """A charger that first connected to B after A started: A's GET /api/chargers/{id} names B and shows what
    B recorded at connect (A read the records at its own start, before the charger existed)."""
    a, b = await instances("A"), await instances("B")
    charger = await RawCharger.connect(url(b, "RX1"), ["ocpp1.6"])
    assert (await charger.call("b", "BootNotification", BOOT))[2]["status"] == "Accepted"

    async def seen_on_a() -> bool:
        status, item = await api(a, "GET", "/api/chargers/RX1")
        return status == 200 and item["instance"] == "B" and item["connected"]

    await eventually(seen_on_a)  # A reads the owner table every second
    _, item = await api(a, "GET", "/api/chargers/RX1")
    assert item["ocpp_version"] == "1.6"
    await charger.close()
