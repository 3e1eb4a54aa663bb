"""Cut a charger over to a new CSMS and roll it back, charger by charger, without touching it."""

from __future__ import annotations

import asyncio

import aiohttp

from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from tests.conftest import GatewayFactory, cli
from tests.rawpeers import RawCharger

BOOT = {"chargePointVendor": "ACME", "chargePointModel": "One"}


async def boot_until_connected(url: str, csms: DemoCsms, cid: str) -> RawCharger:
    """Reconnect as a charger does after its connection was closed, and boot."""
    for _ in range(50):
        try:
            charger = await RawCharger.connect(url, ["ocpp1.6"])
            break
        except OSError:
            await asyncio.sleep(0.1)
    assert (await charger.call("b", "BootNotification", BOOT))[0] == 3
    return charger


async def test_cut_over_and_roll_back_through_the_cli(start_gateway: GatewayFactory) -> None:
    """`ocpp-gateway route` moves a charger to the new CSMS, keeps others where they are, and --reset moves it back."""
    old = await DemoCsms(versions=(Version.V16,)).start()
    new = await DemoCsms(versions=(Version.V16,)).start()
    try:
        gw = await start_gateway({"old": {"url": old.url, "ocpp": "1.6"}, "new": {"url": new.url, "ocpp": "1.6"}},
                                 chargers={"CP1": {}, "CP2": {}}, allow_unknown_chargers=False)
        admin = f"http://127.0.0.1:{gw.admin_port}"
        url1 = f"ws://127.0.0.1:{gw.listen_port}/ocpp/CP1"
        cp1 = await boot_until_connected(url1, old, "CP1")
        cp2 = await boot_until_connected(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CP2", old, "CP2")

        code, out, err = await cli("route", "CP1", "--primary", "new", "--admin", admin)
        assert code == 0, err
        assert "CP1: primary new (from admin)" in out
        await asyncio.wait_for(cp1.ws.wait_closed(), 5)
        assert cp1.ws.close_code == 1012
        cp1 = await boot_until_connected(url1, new, "CP1")
        await new.wait_for(lambda: new.charger("CP1").boot is not None)
        assert cp2.ws.close_code is None  # the other charger stays where it was

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{admin}/api/chargers/CP1") as resp:
                info = await resp.json()
        assert info["route"]["primary"] == "new" and info["route_source"] == "admin"

        code, out, err = await cli("route", "CP1", "--primary", "nowhere", "--admin", admin)
        assert code == 1 and "no csms named 'nowhere'" in err

        code, out, _ = await cli("route", "CP1", "--reset", "--admin", admin)
        assert code == 0 and "CP1: primary old (from config)" in out
        await asyncio.wait_for(cp1.ws.wait_closed(), 5)
        cp1 = await boot_until_connected(url1, old, "CP1")
        assert len(old.charger("CP1").calls_in("BootNotification")) == 2
        await cp1.close()
        await cp2.close()
    finally:
        await old.stop()
        await new.stop()


async def test_route_override_survives_a_restart(start_gateway: GatewayFactory) -> None:
    """A cut-over is kept in the store, so a restarted gateway keeps the charger on its new CSMS."""
    old = await DemoCsms(versions=(Version.V16,)).start()
    new = await DemoCsms(versions=(Version.V16,)).start()
    csms = {"old": {"url": old.url, "ocpp": "1.6"}, "new": {"url": new.url, "ocpp": "1.6"}}
    try:
        gw = await start_gateway(csms, chargers={"CP1": {}})
        async with aiohttp.ClientSession() as http:
            async with http.put(f"http://127.0.0.1:{gw.admin_port}/api/chargers/CP1/route",
                                json={"primary": "new"}) as resp:
                assert resp.status == 200
            async with http.put(f"http://127.0.0.1:{gw.admin_port}/api/chargers/CP1/route",
                                json={"primary": "new", "bogus": 1}) as resp:
                assert resp.status == 400
        await gw.stop()
        gw2 = await start_gateway(csms, chargers={"CP1": {}})
        cp1 = await boot_until_connected(f"ws://127.0.0.1:{gw2.listen_port}/ocpp/CP1", new, "CP1")
        await new.wait_for(lambda: new.charger("CP1").boot is not None)
        await cp1.close()
    finally:
        await old.stop()
        await new.stop()
