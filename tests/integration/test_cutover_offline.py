"""CSMSs that are away during a migration: a forced cut-over while the old primary is down (its open transaction
still ends there, and only there), a charger that boots while its CSMS is down, a cut-over to a CSMS that
cannot be reached.

Real sockets: a raw charger, the gateway (on port 0 in this process, or a real process that is SIGKILLed) with
its SQLite store, and CSMSs that record what they got (the demo ones flag every transaction message naming an
id they never saw start).
"""

# ruff: noqa: F811  (two_csms is a fixture of the cut-over tests, imported and named as a test parameter)
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.app import Gateway
from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from tests.conftest import GatewayFactory
from tests.integration.test_cutover import (  # noqa: F401  (two_csms: fixture)
    BOOT,
    Charger,
    assert_clean,
    charger_info,
    connected,
    csms_pair,
    put_route,
    two_csms,
    until,
)
from tests.integration.test_sigkill_offline import T0, GatewayProcess, RecordingCsms, _mv16, free_port

V16, V201 = Version.V16, Version.V201
PAIRS = [(V16, V16, V201), (V16, V201, V16), (V201, V16, V201), (V201, V201, V16), (V16, V16, V16)]


@pytest.mark.parametrize(("charger", "old_version", "new_version"), PAIRS)
@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted"])
async def test_the_old_primary_down_still_gets_its_transaction_end_when_it_returns(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms],
        charger: Version, old_version: Version, new_version: Version, restart: bool) -> None:
    """Updates and end of a transaction the old primary owns, answered while it is down, reach it (not the new one)."""
    old, new = two_csms
    csms = csms_pair(old, old_version, new, new_version)
    gw = await start_gateway(csms, chargers={"CP1": {}}, allow_unknown_chargers=False)
    cp = await connected(gw, charger, old)
    tx = await cp.start(1, "TX-A")
    status, body = await put_route(gw, "CP1", {"primary": "new", "force": True})
    assert (status, body["state"]) == (200, "applied")
    await old.stop()
    await until(lambda: gw.connections["CP1"].drains["old"].link.state == "down", 5)
    await cp.meter(tx, 1, 1500)
    await cp.stop(tx, 1)
    second = await cp.start(2, "TX-B")
    await cp.stop(second, 2)
    draining = (await charger_info(gw, "CP1"))["draining"]
    assert (draining["old"]["open_transactions"], draining["old"]["queued"]) == ([], 2)  # the update and the end
    assert "ocpp_gateway_offline_queue_records 2.0" in await metrics_text(gw)
    assert (await migration_row(gw, "CP1"))["offline_queue"] == 2
    if restart:
        await cp.raw.close()
        await gw.stop()
        gw = await start_gateway(csms, chargers={"CP1": {}}, allow_unknown_chargers=False)
        cp = await Charger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CP1", charger)
        await cp.boot()
    await old.start()
    await old.wait_for(lambda: [t.events[-1] for t in old.transactions("CP1")] == [
        "Stop" if old_version is V16 else "Ended"], 15)
    await new.wait_for(lambda: len(new.transactions("CP1")) == 1 and not new.transactions("CP1")[0].active, 15)
    assert_clean(old, new)
    await until(lambda: "old" not in gw.connections["CP1"].drains)  # nothing left for it: its link closes
    assert "ocpp_gateway_offline_queue_records 0.0" in await metrics_text(gw)


async def migration_row(gw: Gateway, cid: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{gw.admin_port}/api/migration") as resp:
            return next(row for row in (await resp.json())["chargers"] if row["id"] == cid)  # type: ignore[no-any-return]


async def metrics_text(gw: Gateway) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{gw.admin_port}/metrics") as resp:
            return await resp.text()


async def test_an_old_primarys_queued_transaction_end_survives_sigkill(tmp_path: Path) -> None:
    """SIGKILL after a cut-over while the old 1.6 CSMS is down: its transaction's MeterValues and Stop, answered
    by the gateway, reach it once when it returns (under its id); the new CSMS never sees that id."""
    old, new = RecordingCsms(free_port(), "1.6"), RecordingCsms(free_port(), "1.6")
    new.next_tx = 8001
    port, admin = free_port(), free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "listen": {"host": "127.0.0.1", "port": port}, "admin": {"host": "127.0.0.1", "port": admin},
        "store": f"sqlite:///{tmp_path}/gw.db",
        "csms": {"old": {"url": f"ws://127.0.0.1:{old.port}/ocpp", "ocpp": "1.6"},
                 "new": {"url": f"ws://127.0.0.1:{new.port}/ocpp", "ocpp": "1.6"}},
        "default_route": {"primary": "old"}, "allow_unknown_chargers": True,
        "upstream": {"reconnect_initial": 0.05, "reconnect_max": 0.3}, "logging": {"level": "warning"},
        "workers": 1,
    }))
    gw = GatewayProcess(config, port)
    await old.start()
    await new.start()
    await gw.start()
    try:
        charger = Charger(await gw.charger("CPX", "1.6"), V16)  # answers what the gateway asks meanwhile
        await charger.boot()
        tx = (await charger.call("StartTransaction", {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000,
                                                      "timestamp": T0}))["transactionId"]
        assert tx == 7002
        async with aiohttp.ClientSession() as http:
            async with http.put(f"http://127.0.0.1:{admin}/api/chargers/CPX/route",
                                json={"primary": "new", "force": True}) as resp:
                assert resp.status == 200, await resp.text()
        await old.stop()
        await asyncio.sleep(0.3)  # the gateway sees the old link drop
        assert await charger.call("MeterValues", _mv16(tx, 3000)) == {}
        assert await charger.call("StopTransaction", {"transactionId": tx, "meterStop": 5000, "timestamp": T0}) == {}
        await gw.kill9()
        await gw.start()
        charger = Charger(await gw.charger("CPX", "1.6"), V16)
        await charger.boot()
        await old.start()
        await old.wait_for(lambda: old.of("StopTransaction"))
        await asyncio.sleep(0.5)  # nothing more may come
        assert [(c[1], c[2]["transactionId"]) for c in old.of("MeterValues", "StopTransaction")] == [
            ("MeterValues", tx), ("StopTransaction", tx)]
        assert old.of("StopTransaction")[0][2]["meterStop"] == 5000
        assert [c for c in new.of("MeterValues", "StopTransaction") if c[2]["transactionId"] == tx] == []
        await charger.raw.close()
    finally:
        await gw.stop()
        await old.stop()
        await new.stop()


async def test_a_charger_booting_while_its_csms_is_down_is_answered_at_once(start_gateway: GatewayFactory) -> None:
    """A charger that reboots during an outage gets Accepted (its CSMS accepted it before) when the first connect
    fails, not InternalError after call_timeout; a first boot gets Pending after answer_after; both boots and the
    statuses reach the CSMS when it is up."""
    port = free_port()
    csms = await DemoCsms(versions=(V16,), port=port).start()
    gw = await start_gateway({"main": {"url": f"ws://127.0.0.1:{port}/ocpp", "ocpp": "1.6"}}, call_timeout=30,
                             offline={"answer_after": 1})
    known = await Charger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CP1", V16)
    await known.boot()
    await known.raw.close()
    await csms.stop()
    loop = asyncio.get_running_loop()
    try:
        known = await Charger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CP1", V16)
        began = loop.time()
        assert (await known.call("BootNotification", BOOT[V16]))["status"] == "Accepted"
        assert loop.time() - began < 0.9  # before answer_after: at the first failed connect
        first = await Charger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CP2", V16)
        began = loop.time()
        assert (await first.call("BootNotification", BOOT[V16]))["status"] == "Pending"
        assert 0.9 < loop.time() - began < 5
        await known.status(1, "Available")
        await first.status(1, "Available")
        await csms.start()
        await csms.wait_for(lambda: all(cid in csms.chargers and len(csms.charger(cid).calls_in("BootNotification"))
                                        == 2 - (cid == "CP2") and csms.charger(cid).statuses for cid in ("CP1", "CP2")),
                            10)
        assert csms.violations == []
    finally:
        await csms.stop()


async def test_a_cut_over_to_a_csms_that_cannot_be_reached_is_refused(
        start_gateway: GatewayFactory, two_csms: tuple[DemoCsms, DemoCsms]) -> None:
    """The introduction needs the new CSMS's own verdict: with it down, the gateway does not answer its own boot
    locally, the route stays, and nothing is queued for the new CSMS."""
    old, new = two_csms
    await new.stop()
    gw = await start_gateway(csms_pair(old, V16, new, V16), chargers={"CP1": {}}, allow_unknown_chargers=False,
                             call_timeout=1)
    cp = await connected(gw, V16, old)
    status, body = await put_route(gw, "CP1", {"primary": "new", "when": "now"})
    assert (status, body["state"]) == (409, "rejected"), body
    assert "could not be reached" in body["reason"] and gw.route_for("CP1").primary == "old"  # type: ignore[union-attr]
    info = await charger_info(gw, "CP1")
    assert info["offline"]["queued"] == 0 and info["draining"] == {}
    assert await gw.store.offline_queue_depths() == {}
    await cp.status(1, "Charging")  # the charger still talks to its old CSMS
    await old.wait_for(lambda: old.charger("CP1").status(1) == "Charging")
