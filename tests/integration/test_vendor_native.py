"""Leaving the cloud: the native-OCPP switch, and a gateway restart in the middle of a vendor session."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.ocppj import Version
from gateway.sim.charger import SimCharger
from gateway.sim.csms import DemoCsms
from gateway.sim.easee_cloud import EaseeCloud
from gateway.vendors import VendorManager
from gateway.vendors.native import NativeError, switch_to_native
from tests.conftest import gateway_config
from tests.integration.vendor_support import transactions, vendor_bench

CID = "easee-EH000001"


def cloud() -> EaseeCloud:
    sim = EaseeCloud(speedup=3600.0)
    sim.add_charger("EH000001")
    return sim


async def test_native_ocpp_points_the_charger_at_the_gateway_and_the_adapter_steps_aside(tmp_path: Path) -> None:
    """The switch stores ws://gateway/.../<id> at Easee; the real charger then takes over the same id for good."""
    sim = cloud()
    async with vendor_bench(tmp_path, sim, "easee") as b:
        c = await b.charger(CID)
        base = f"ws://127.0.0.1:{b.gw.listen_port}/ocpp"
        result = await switch_to_native(parse_config(b.config), CID, ocpp_url=base, store=b.gw.store)
        assert result["url"] == f"{base}/{CID}"
        assert sim.ocpp_details["EH000001"]["websocketConnectionArgs"]["url"] == f"{base}/{CID}"
        assert sim.ocpp_details["EH000001"]["connectivityMode"] == "DualProtocol"
        assert sim.ocpp_applied["EH000001"] == result["version"]

        # The Easee now speaks its own OCPP 1.6J to the gateway, under the same id.
        native = SimCharger(CID, Version.V16, base, vendor="Easee", model="Easee Home")
        await native.connect()
        await native.boot()
        await b.until(lambda: CID in b.manager.native_ids)
        await b.until(lambda: c.boot is not None and c.boot["chargingStation"]["model"] == "Easee Home"
                      and c.connected and b.gw.connections[CID].version is Version.V16)
        polls = b.runner(CID).polls
        await asyncio.sleep(0.5)
        assert b.runner(CID).polls == polls  # the cloud adapter no longer polls
        assert b.gw.connections[CID].version is Version.V16  # and never reconnects its virtual charger
        saved = await b.gw.store.load_state(f"vendor-native:{CID}")
        assert saved is not None and saved["native"] is True
        await native.close()
        b.assert_clean()


async def test_the_switch_waits_for_a_running_transaction(tmp_path: Path) -> None:
    """Switching mid-session is refused: the CSMS must see the cloud session end first."""
    sim = cloud()
    async with vendor_bench(tmp_path, sim, "easee") as b:
        c = await b.charger(CID)
        sim.charger("EH000001").plug_in(rfid="CAFE")
        await b.until(lambda: c.active_transactions)
        await b.gw.store.flush()
        with pytest.raises(NativeError, match="transaction is running"):
            await switch_to_native(parse_config(b.config), CID, ocpp_url="ws://gw:9000/ocpp", store=b.gw.store)
        assert sim.ocpp_details == {}


async def test_the_switch_needs_the_gateway_url_as_the_charger_sees_it(tmp_path: Path) -> None:
    """Without --url or options.ocpp_url the switch explains what it needs; Zaptec cannot switch at all."""
    sim = cloud()
    async with vendor_bench(tmp_path, sim, "easee") as b:
        await b.charger(CID)
        with pytest.raises(NativeError, match="ocpp_url"):
            await switch_to_native(parse_config(b.config), CID, store=b.gw.store)
        with pytest.raises(NativeError, match="no vendor account"):
            await switch_to_native(parse_config(b.config), "CP-unknown", ocpp_url="ws://gw/ocpp")


async def test_a_gateway_restart_mid_session_continues_the_same_transaction(tmp_path: Path) -> None:
    """Stop the gateway while the EV charges, start it again: the CSMS sees one transaction, no second Started."""
    sim = cloud()
    await sim.start()
    creds = tmp_path / "creds.yaml"
    creds.write_text(yaml.safe_dump({"acct": {"username": "user@example.com", "password": "secret"}}))
    async with DemoCsms(versions=(Version.V201,)) as csms:
        cfg = gateway_config(tmp_path, {"main": {"url": csms.url, "ocpp": "2.0.1"}}, vendors={"acct": {
            "adapter": "easee", "base_url": sim.base_url, "credentials_file": str(creds), "poll_interval": 0.05,
            "route": {"primary": "main"}}})

        async def run_gateway() -> tuple[Gateway, VendorManager]:
            gw = Gateway(parse_config(cfg))
            await gw.start()
            manager = getattr(gw, "vendors", None) or VendorManager(gw)
            if getattr(gw, "vendors", None) is None:
                await manager.start()
            return gw, manager

        gw, manager = await run_gateway()
        c = await csms.wait_connected(CID)
        point = sim.charger("EH000001")
        point.plug_in(rfid="CAFE")
        (tx,) = await csms.wait_for(lambda: c.active_transactions)
        # Mid-session, not mid-exchange: the station has the CSMS's answer to Started (an event the station
        # never saw answered is sent again after the restart, as OCPP asks, with the same seqNo).
        await csms.wait_for(lambda: not manager.chargers[CID].vc.outbox())
        await manager.stop()
        await gw.stop()

        gw, manager = await run_gateway()
        await csms.wait_for(lambda: c.connected and c.connections == 2)
        updates = len(tx.events)
        await csms.wait_for(lambda: len(tx.events) > updates + 2)
        point.unplug()
        await csms.wait_for(lambda: c.finished_transactions)
        assert transactions(c) == [tx]
        assert tx.events.count("Started") == 1 and tx.events.count("Ended") == 1
        assert tx.seq_nos == list(range(len(tx.seq_nos)))
        assert tx.meter_stop == pytest.approx(point.lifetime_wh, abs=0.01)
        assert csms.violations == []
        await manager.stop()
        await gw.stop()
    await sim.stop()
