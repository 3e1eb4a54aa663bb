"""A 2.0.1 station behind a 1.6 CSMS: the translator's 1.6 messages wait in the charger's one offline queue.

A gateway in this process (real SQLite store), a raw 2.0.1 station and a recording 1.6 CSMS. What the
translator defers shows in the admin API and the metrics like any queued message, a state saved by a gateway
from before the shared queue is taken over on load, and the CSMS gets each message once, in order.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from gateway.store import open_store
from tests.conftest import GatewayFactory
from tests.integration.test_cli import free_port
from tests.integration.test_sigkill_offline import RecordingCsms
from tests.rawpeers import RawCharger

T0 = "2026-03-01T10:00:00.000Z"
SAMPLE = {"value": "2500", "unit": "Wh", "measurand": "Energy.Active.Import.Register"}
MV = {"connectorId": 1, "meterValue": [{"timestamp": T0, "sampledValue": [SAMPLE]}]}
# What a gateway from before the shared queue saved for a station whose 1.6 CSMS never answered the start.
OLD_TRANSLATOR_STATE = {"v201_v16": {"tx": {"tx-a": {
    "connector": 1, "int": None, "started": T0, "begin_wh": 1000, "last_wh": 4000, "seqs": [0, 1, 2],
    "id_tag": "TAG2", "token_type": "ISO14443", "ended": True,
    "start": {"connectorId": 1, "idTag": "TAG2", "meterStart": 1000, "timestamp": T0},
    "queue": [{"action": "MeterValues", "payload": MV},
              {"action": "StopTransaction", "payload": {"meterStop": 4000, "timestamp": T0, "reason": "Local"}}],
}}}}


async def _offline_view(admin_port: int, cid: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{admin_port}") as http, \
            http.get(f"/api/chargers/{cid}") as resp:
        view: dict[str, Any] = (await resp.json()).get("offline") or {}  # {} until the charger is known
        return view


async def _metrics(admin_port: int) -> str:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{admin_port}") as http, http.get("/metrics") as resp:
        return await resp.text()


async def test_held_messages_saved_by_an_older_gateway_are_queued_on_load_and_delivered_once(
    start_gateway: GatewayFactory, tmp_path: Path,
) -> None:
    """The store holds a 2.0.1 station's state with held 1.6 messages (tx.start, tx.queue) and no queue rows: when
    the station connects they become queue rows (shown as queued, by kind, with their age, in the API and the
    metrics), and when the 1.6 CSMS comes they reach it once, in order, under the id it assigns."""
    store = open_store(f"sqlite:///{tmp_path}/gateway.db")
    await store.start()
    await store.commit("CS1", {"primary": {"main": OLD_TRANSLATOR_STATE}}, [], [])
    await store.close()

    csms = RecordingCsms(free_port(), "1.6")
    gw = await start_gateway({"main": {"url": f"ws://127.0.0.1:{csms.port}/ocpp", "ocpp": "1.6"}},
                             logging={"level": "warning"}, held_retry_interval=0.5)
    station = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CS1", ["ocpp2.0.1"])
    try:
        for _ in range(100):
            view = await _offline_view(gw.admin_port, "CS1")
            if view.get("queued"):
                break
            await asyncio.sleep(0.02)
        assert (view["queued"], view["held_by_translator"]) == (3, 3)
        assert view["by_kind"] == {"charger": 0, "translated": 3} and view["oldest_age_s"] is not None
        assert "ocpp_gateway_offline_queue_records 3.0" in await _metrics(gw.admin_port)
        reopened = open_store(f"sqlite:///{tmp_path}/gateway.db")
        await reopened.start()
        try:
            rows = await reopened.offline_queue("CS1")
            state = await reopened.load_state("CS1")
        finally:
            await reopened.close()
        assert [(r[2], r[-2], r[-1]) for r in rows] == [("StartTransaction", "translated", "main"),
                                                        ("MeterValues", "translated", "main"),
                                                        ("StopTransaction", "translated", "main")]
        assert state is not None and "queue" not in state["primary"]["main"]["v201_v16"]["tx"]["tx-a"]

        await csms.start()
        await csms.wait_for(lambda: csms.of("StopTransaction"))
        await asyncio.sleep(0.5)  # nothing more may come
        tx_calls = csms.of("StartTransaction", "MeterValues", "StopTransaction")
        assert [c[1] for c in tx_calls] == ["StartTransaction", "MeterValues", "StopTransaction"]
        assert tx_calls[1][2]["transactionId"] == tx_calls[2][2]["transactionId"] == 7002
        assert (tx_calls[0][2]["meterStart"], tx_calls[2][2]["meterStop"]) == (1000, 4000)
        view = await _offline_view(gw.admin_port, "CS1")
        assert (view["queued"], view["oldest_age_s"]) == (0, None)
    finally:
        await station.close()
        await csms.stop()
