"""A charger that left is still described: its record survives the disconnect and a gateway restart.

Real sockets and a real SQLite store: a raw 1.6 charger boots, sends a
StatusNotification that breaks the schema, and disconnects; the admin API
then shows its version, identity, last-seen, route and violations.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.charger_records import boot_identity
from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from tests.conftest import GatewayFactory
from tests.rawpeers import RawCharger

BOOT_16 = {"chargePointVendor": "ACME", "chargePointModel": "Wallbox-7", "firmwareVersion": "4.2.1"}


@pytest.fixture
async def csms() -> AsyncIterator[DemoCsms]:
    server = await DemoCsms(versions=(Version.V16,)).start()
    yield server
    await server.stop()


async def get_charger(gw: Gateway, cid: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{gw.admin_port}/api/chargers/{cid}") as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


@pytest.mark.parametrize(("boot", "identity"), [
    (BOOT_16, {"vendor": "ACME", "model": "Wallbox-7", "firmware": "4.2.1"}),
    ({"reason": "PowerUp", "chargingStation": {"vendorName": "ACME", "model": "X", "firmwareVersion": "9"}},
     {"vendor": "ACME", "model": "X", "firmware": "9"}),
    ({"chargePointVendor": "ACME", "chargePointModel": "Y"}, {"vendor": "ACME", "model": "Y", "firmware": None}),
    (None, {"vendor": None, "model": None, "firmware": None}),
])
def test_boot_identity_reads_every_version(boot: Any, identity: dict[str, Any]) -> None:
    """Vendor, model and firmware come from a 1.6 or 2.x BootNotification, None where missing."""
    assert boot_identity(boot) == identity


async def test_an_offline_charger_keeps_its_identity_route_and_violations(
    start_gateway: GatewayFactory, csms: DemoCsms
) -> None:
    """Seconds after it disconnects, and after a restart on the same store, GET shows all the charger told us."""
    csms_cfg = {"legacy": {"url": csms.url, "ocpp": "1.6"}}
    settings: dict[str, Any] = {"validation_by_model": {"Wallbox-7": "observe"}}
    gw = await start_gateway(csms_cfg, **settings)
    url = f"ws://127.0.0.1:{gw.listen_port}/ocpp/REC1"
    charger = await RawCharger.connect(url, [Version.V16.subprotocol])
    boot = await charger.call("b1", "BootNotification", BOOT_16)
    assert boot[2]["status"] == "Accepted"
    # connectorId missing: a schema violation the gateway records (observe: it is still relayed).
    await charger.call("s1", "StatusNotification", {"status": "Available", "errorCode": "NoError"})
    await charger.close()
    before = time.time()
    while gw.is_connected("REC1"):
        await asyncio.sleep(0.02)

    for attempt in ("after disconnect", "after restart"):
        info = await get_charger(gw, "REC1")
        assert info["connected"] is False, attempt
        assert (info["ocpp_version"], info["vendor"], info["model"], info["firmware"]) == (
            "1.6", "ACME", "Wallbox-7", "4.2.1"), attempt
        assert info["last_message_at"] is not None and info["disconnected_at"] is not None, attempt
        assert info["route"] == {"primary": "legacy", "shadow": None} and info["route_source"] == "config", attempt
        assert info["validation_policy"] == "observe", attempt  # by the model its last boot reported
        assert [(v["action"], v["side"]) for v in info["violations"]] == [("StatusNotification", "charger")], attempt
        assert "route_history" in info and "route_change" in info, attempt
        listed = [c["id"] for c in await _list(gw)]
        assert "REC1" in listed, attempt
        if attempt == "after disconnect":
            await gw.stop()
            gw = await start_gateway(csms_cfg, **settings)
    assert info["disconnected_at"] >= time.strftime("%Y-%m-%dT%H:%M", time.gmtime(before - 60))


async def test_a_reconnected_charger_shows_its_live_session(start_gateway: GatewayFactory, csms: DemoCsms) -> None:
    """While connected the live view wins: connected, no disconnect time, identity from the record until it boots."""
    gw = await start_gateway({"legacy": {"url": csms.url, "ocpp": "1.6"}})
    url = f"ws://127.0.0.1:{gw.listen_port}/ocpp/REC2"
    charger = await RawCharger.connect(url, [Version.V16.subprotocol])
    await charger.call("b1", "BootNotification", BOOT_16)
    await charger.close()
    while gw.is_connected("REC2"):
        await asyncio.sleep(0.02)
    again = await RawCharger.connect(url, [Version.V16.subprotocol])
    try:
        await again.call("h1", "Heartbeat", {})
        info = await get_charger(gw, "REC2")
        assert info["connected"] is True and info["model"] == "Wallbox-7" and info["last_message_at"] is not None
        assert gw.charger_records["REC2"]["disconnected_at"] is None
    finally:
        await again.close()


async def _list(gw: Gateway) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{gw.admin_port}/api/chargers") as r:
        body: list[dict[str, Any]] = await r.json()
        return body
