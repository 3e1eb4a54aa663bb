"""Replays after an outage, with real sockets: shared replay turns, and a thousand chargers' backlogs.

A gateway in this process (real SQLite store), raw WebSocket chargers, and a CSMS that records every CALL per
charger. The CSMS is stopped, the chargers' messages are answered by the gateway and queued, the CSMS comes back,
and what it received is checked charger by charger.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from tests.conftest import GatewayFactory
from tests.rawpeers import RawCharger, dumps

T0 = "2026-03-01T10:00:00.000Z"
BOOT16 = {"chargePointVendor": "Acme", "chargePointModel": "Volt"}


def meter_values(wh: int) -> dict[str, Any]:
    return {"connectorId": 1, "meterValue": [{"timestamp": T0, "sampledValue": [{"value": str(wh)}]}]}


@dataclass
class CountingCsms:
    """A 1.6 CSMS that records the CALLs of each charger and how many chargers replay to it at once.

    A charger "replays" from the first queued message (message id starting with ``q``) the CSMS receives from
    it until it has answered the last one it expects (``expected`` per charger).
    """

    expected: int
    answer_delay: float = 0.0
    calls: dict[str, list[list[Any]]] = field(default_factory=dict)  # charger id -> [uid, action, payload]
    replaying: set[str] = field(default_factory=set)
    most_replaying: int = 0
    server: Server | None = None
    port: int = 0

    async def start(self) -> None:
        self.server = await serve(self._handler, "127.0.0.1", self.port, subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                                  compression=None)
        self.port = int(next(iter(self.server.sockets)).getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def queued_of(self, cid: str) -> list[str]:
        return [c[0] for c in self.calls.get(cid, []) if c[0].startswith("q")]

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        cid = ws.request.path.rsplit("/", 1)[-1]
        try:
            async for msg in ws:
                frame = orjson.loads(msg)
                if frame[0] != 2:
                    continue
                uid, action = frame[1], frame[2]
                self.calls.setdefault(cid, []).append(frame[1:])
                queued = uid.startswith("q")
                if queued:
                    self.replaying.add(cid)
                    self.most_replaying = max(self.most_replaying, len(self.replaying))
                    if self.answer_delay:
                        await asyncio.sleep(self.answer_delay)
                answer: dict[str, Any] = {}
                if action == "BootNotification":
                    answer = {"status": "Accepted", "currentTime": T0, "interval": 300}
                if queued and len(self.queued_of(cid)) >= self.expected:
                    self.replaying.discard(cid)
                await ws.send(dumps(3, uid, answer))
        except Exception:
            pass

    async def wait_for(self, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                got = sum(len(self.queued_of(c)) for c in self.calls)
                raise AssertionError(f"timed out; the CSMS got {got} queued messages")
            await asyncio.sleep(0.05)


async def _outage_backlogs(start_gateway: GatewayFactory, csms: CountingCsms, chargers: int, per_charger: int,
                           **offline: Any) -> tuple[Any, list[RawCharger]]:
    """Chargers booted while the CSMS is up, then ``per_charger`` MeterValues each during an outage."""
    await csms.start()
    gw = await start_gateway({"main": {"url": csms.url, "ocpp": "1.6"}}, offline=offline,
                             logging={"level": "warning"},
                             admission={"rate": 10_000, "burst": chargers, "max_pending": chargers})
    port = gw.listen_port
    conns = await asyncio.gather(*(RawCharger.connect(f"ws://127.0.0.1:{port}/ocpp/CP{i}", ["ocpp1.6"])
                                   for i in range(chargers)))
    await asyncio.gather(*(c.call("b", "BootNotification", BOOT16, timeout=30) for c in conns))
    await csms.wait_for(lambda: len(csms.calls) == chargers, 30)
    await csms.stop()

    async def backlog(charger: RawCharger) -> None:
        for n in range(per_charger):
            answer = await charger.call(f"q{n}", "MeterValues", meter_values(1000 + n), timeout=30)
            assert answer == [3, f"q{n}", {}], answer

    await asyncio.gather(*(backlog(c) for c in conns))
    return gw, conns


async def test_replays_share_offline_replay_concurrency(start_gateway: GatewayFactory) -> None:
    """Six chargers with a backlog and replay_concurrency 2: the returning CSMS never has more than two
    chargers replaying at once (and does have two), and gets every message."""
    csms = CountingCsms(expected=3, answer_delay=0.05)
    gw, conns = await _outage_backlogs(start_gateway, csms, 6, 3, replay_concurrency=2)
    await asyncio.sleep(0.1)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{gw.admin_port}") as http:
        async with http.get("/api/chargers/CP0") as resp:
            one = (await resp.json())["offline"]
        async with http.get("/api/chargers") as resp:
            listed = {c["id"]: c["offline"] for c in await resp.json()}
        async with http.get("/metrics") as resp:
            metrics = await resp.text()
    assert one["queued"] == 3 and one["oldest_age_s"] >= 0.1 and one["csms_reachable"] is False
    assert {cid: o["queued"] for cid, o in listed.items()} == {f"CP{i}": 3 for i in range(6)}
    assert "ocpp_gateway_offline_queue_records 18.0" in metrics
    assert 'ocpp_gateway_offline_answers_total{action="MeterValues"} 18.0' in metrics
    await csms.start()
    try:
        await csms.wait_for(lambda: all(len(csms.queued_of(f"CP{i}")) == 3 for i in range(6)), 30)
        assert csms.most_replaying == 2
        for i in range(6):
            assert csms.queued_of(f"CP{i}") == ["q0", "q1", "q2"]
        await asyncio.sleep(0.2)
        assert gw._services is not None and gw._services.replay_slots.replaying == 0  # every turn given back
        async with aiohttp.ClientSession(f"http://127.0.0.1:{gw.admin_port}") as http, \
                http.get("/metrics") as resp:
            metrics = await resp.text()
        assert "ocpp_gateway_offline_queue_records 0.0" in metrics
        assert "ocpp_gateway_offline_replayed_total 18.0" in metrics
    finally:
        for c in conns:
            await c.close()
        await csms.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_thousand_chargers_backlogs_reach_the_csms_in_order_none_lost_or_duplicated(
    start_gateway: GatewayFactory,
) -> None:
    """1,000 chargers x 10 MeterValues answered by the gateway during an outage: after the CSMS returns it has
    each charger's ten, in the order they were sent, each exactly once."""
    chargers, per_charger = 1000, 10
    csms = CountingCsms(expected=per_charger)
    gw, conns = await _outage_backlogs(start_gateway, csms, chargers, per_charger)
    assert sum(depth()[0] for depth in gw.metrics.offline_queues.values()) == chargers * per_charger
    await csms.start()
    try:
        await csms.wait_for(lambda: sum(len(csms.queued_of(c)) for c in csms.calls) >= chargers * per_charger,
                            120)
        await asyncio.sleep(0.5)  # nothing more may come
        want = [f"q{n}" for n in range(per_charger)]
        wrong = {cid: got for i in range(chargers) if (got := csms.queued_of(cid := f"CP{i}")) != want}
        assert wrong == {}
        energy = [c[2]["meterValue"][0]["sampledValue"][0]["value"] for c in csms.calls["CP7"] if c[0][0] == "q"]
        assert energy == [str(1000 + n) for n in range(per_charger)]
        assert csms.most_replaying <= 50  # offline.replay_concurrency's default
    finally:
        await asyncio.gather(*(c.close() for c in conns))
        await csms.stop()
