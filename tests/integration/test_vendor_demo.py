"""The demo's vendor-cloud chargers: simulated clouds whose EVs charge through the gateway."""

from __future__ import annotations

from pathlib import Path

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from gateway.vendors import VendorManager
from gateway.vendors.demo import VendorDemo
from tests.conftest import gateway_config


async def test_the_demo_vendor_chargers_charge_through_both_csms_versions(tmp_path: Path) -> None:
    """Easee chargers to a 2.0.1 CSMS and a Zaptec charger to a 1.6J CSMS complete sessions, no violations."""
    demo = VendorDemo("c201", "c16", easee_chargers=1, zaptec_chargers=1, poll_interval=0.05, speedup=600.0,
                      session=(0.4, 0.6), pause=(0.2, 0.3))
    async with DemoCsms(versions=(Version.V201, Version.V16)) as csms:
        vendors = await demo.start()
        try:
            cfg = gateway_config(tmp_path, {"c201": {"url": csms.url, "ocpp": "2.0.1"},
                                            "c16": {"url": csms.url, "ocpp": "1.6"}}, vendors=vendors)
            gw = Gateway(parse_config(cfg))
            await gw.start()
            manager = getattr(gw, "vendors", None)
            own = manager is None
            if manager is None:
                manager = VendorManager(gw)
                await manager.start()
            try:
                await csms.wait_for(lambda: len(csms.chargers) == 2 and all(
                    c.finished_transactions for c in csms.chargers.values()), timeout=20)
                versions = {c.charger_id.split("-")[0]: c.version for c in csms.chargers.values()}
                assert versions == {"easee": Version.V201, "zaptec": Version.V16}
                assert all(t.energy_wh and t.energy_wh > 0 for t in csms.transactions() if not t.active)
                assert csms.violations == []
            finally:
                if own:
                    await manager.stop()
                await gw.stop()
        finally:
            await demo.stop()
