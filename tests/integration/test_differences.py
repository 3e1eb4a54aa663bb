"""Shadow differences an operator can read: semantic comparison on a live gateway, over the admin API."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from gateway.app import Gateway
from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from tests.conftest import GatewayFactory
from tests.rawpeers import RawCharger

BOOT = {"chargePointVendor": "ACME", "chargePointModel": "One"}


def start_tx(tag: str, n: int) -> dict[str, Any]:
    return {"connectorId": 1, "idTag": tag, "meterStart": 1000 * n, "timestamp": f"2026-01-01T1{n}:00:00Z"}


async def api(gw: Gateway, path: str) -> Any:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{gw.admin_port}{path}") as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


async def compared(gw: Gateway, cid: str, n: int) -> dict[str, Any]:
    """The charger's migration row once ``n`` exchanges have been compared."""
    for _ in range(200):
        row = next((r for r in (await api(gw, "/api/migration"))["chargers"] if r["id"] == cid), None)
        if row is not None and row["compared"] >= n:
            return row  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{cid}: fewer than {n} exchanges compared: {row}")


async def charge(charger: RawCharger, tag: str, n: int, stop_tag: bool = False) -> None:
    """One transaction: Authorize, StartTransaction, MeterValues, StopTransaction."""
    await charger.call(f"a{n}", "Authorize", {"idTag": tag})
    start = await charger.call(f"s{n}", "StartTransaction", start_tx(tag, n))
    tx = start[2]["transactionId"]
    meter = {"connectorId": 1, "transactionId": tx, "meterValue": [
        {"timestamp": f"2026-01-01T1{n}:30:00Z", "sampledValue": [{"value": str(1000 * n + 500)}]}]}
    await charger.call(f"m{n}", "MeterValues", meter)
    stop: dict[str, Any] = {"transactionId": tx, "meterStop": 1000 * n + 900, "timestamp": f"2026-01-01T1{n}:59:00Z"}
    if stop_tag:
        stop["idTag"] = tag
    await charger.call(f"t{n}", "StopTransaction", stop)


async def test_csmss_that_disagree_on_one_tag_show_exactly_that_authorize(start_gateway: GatewayFactory) -> None:
    """A 1.6 legacy CSMS and a 2.0.1 new one differ only on BADTAG: the one difference listed is that Authorize."""
    legacy = await DemoCsms(versions=(Version.V16,)).start()
    new = await DemoCsms(versions=(Version.V201,), auth={"BADTAG": "Invalid"}, first_transaction_id=900).start()
    try:
        gw = await start_gateway(
            {"legacy": {"url": legacy.url, "ocpp": "1.6"}, "new": {"url": new.url, "ocpp": "2.0.1"}},
            default_route={"primary": "legacy", "shadow": "new"},
        )
        charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CP1", ["ocpp1.6"])
        await charger.call("b1", "BootNotification", BOOT)
        await charger.call("h1", "Heartbeat", {})
        await charge(charger, "GOODTAG", 1)
        bad = await charger.call("a-bad", "Authorize", {"idTag": "BADTAG"})
        assert bad[2]["idTagInfo"]["status"] == "Accepted"  # the charger hears the primary only
        await charge(charger, "GOODTAG", 2, stop_tag=True)
        row = await compared(gw, "CP1", 11)

        assert row["compared"] == 11 and row["agreed"] == 10 and row["differed"] == 1
        assert row["phase"] == "shadowing" and row["csms"] == "new"
        assert row["actions"]["Authorize"] == {"compared": 3, "agreed": 2, "differed": 1}
        assert row["actions"]["StopTransaction"] == {"compared": 2, "agreed": 2, "differed": 0}
        assert row["offline_queue"] == 0
        assert row["readiness"]["ready"] is False
        assert "Authorize differed (status at idTagInfo.status)" in row["readiness"]["reasons"][-1]
        assert row["last_difference"]["action"] == "Authorize"

        found = await api(gw, "/api/chargers/CP1/differences")
        assert [(d["action"], d["request"], d["differences"]) for d in found] == [
            ("Authorize", {"idTag": "BADTAG"},
             [{"path": "idTagInfo.status", "primary": "Accepted", "shadow": "Invalid", "kind": "status"}]),
        ]
        assert found[0]["primary"] == [3, "a-bad", {"idTagInfo": {"status": "Accepted"}}]
        assert found[0]["shadow"][0] == 3 and found[0]["shadow"][2]["idTagInfo"]["status"] == "Invalid"
        assert found[0]["ts"].endswith("Z") and found[0]["csms"] == "new"
        assert await api(gw, "/api/chargers/CP1/differences?action=Heartbeat") == []
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{gw.admin_port}/api/chargers/NOPE/differences") as resp:
                assert resp.status == 200  # unknown chargers are allowed here, so it is known and has none
            async with http.get(f"http://127.0.0.1:{gw.admin_port}/api/chargers/CP1/differences?limit=0") as resp:
                assert resp.status == 400
            async with http.get(f"http://127.0.0.1:{gw.admin_port}/metrics") as resp:
                metrics = await resp.text()
        assert 'ocpp_gateway_shadow_comparisons_total{action="Authorize",csms="new",outcome="differ"} 1.0' in metrics
        assert 'ocpp_gateway_shadow_differences_total{action="Authorize",csms="new",kind="status"} 1.0' in metrics
        assert 'ocpp_gateway_migration_chargers{csms="new",readiness="not_ready"} 1.0' in metrics
        assert metrics.count("ocpp_gateway_shadow_differences_total{") == 1

        # Every shadow frame in the log names the charger CALL it mirrors.
        await gw.store.flush()
        records = await gw.store.messages("CP1", limit=500)
        charger_calls = {r["unique_id"]: r["action"] for r in records
                         if r["peer"] == "charger" and r["message_type"] == "CALL"}
        shadow_frames = [r for r in records if r["peer"] == "shadow:new"]
        assert shadow_frames and all(r["note"].startswith("mirrors ") for r in shadow_frames)
        mirrored = {r["note"].removeprefix("mirrors ") for r in shadow_frames}
        assert mirrored == set(charger_calls)
        auth_bad = [r for r in shadow_frames if r["note"] == "mirrors a-bad"]
        assert [(r["direction"], r["action"]) for r in auth_bad] == [("out", "Authorize"), ("in", "Authorize")]
        assert auth_bad[0]["unique_id"] != "a-bad"  # the translating session gave it an id of its own
        await charger.close()
    finally:
        await legacy.stop()
        await new.stop()


async def test_an_omitted_optional_idtaginfo_is_no_difference(start_gateway: GatewayFactory) -> None:
    """A legacy CSMS that leaves idTagInfo out of StopTransaction and a new one that says Accepted agree."""
    legacy = await DemoCsms(versions=(Version.V16,)).start()
    legacy.handlers["StopTransaction"] = lambda cid, version, payload: {}
    new = await DemoCsms(versions=(Version.V16,), first_transaction_id=500).start()
    try:
        gw = await start_gateway(
            {"legacy": {"url": legacy.url, "ocpp": "1.6"}, "new": {"url": new.url, "ocpp": "1.6"}},
            default_route={"primary": "legacy", "shadow": "new"}, migration={"ready_after": 12},
        )
        charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CP2", ["ocpp1.6"])
        for n in range(1, 4):
            await charge(charger, "GOODTAG", n, stop_tag=True)
        row = await compared(gw, "CP2", 12)
        assert (row["compared"], row["agreed"], row["differed"]) == (12, 12, 0)
        assert row["actions"]["StopTransaction"] == {"compared": 3, "agreed": 3, "differed": 0}
        assert row["readiness"] == {"ready": True, "reasons": []}
        assert await api(gw, "/api/chargers/CP2/differences") == []
        # The shadow saw its own transaction ids (500, 501, 502), never the primary's.
        assert [c["transactionId"] for c in new.charger("CP2").calls_in("StopTransaction")] == [500, 501, 502]
        await charger.close()
    finally:
        await legacy.stop()
        await new.stop()


async def test_differences_survive_a_restart(start_gateway: GatewayFactory) -> None:
    """Tallies and kept differences are saved in the store and come back with the next gateway."""
    legacy = await DemoCsms(versions=(Version.V16,)).start()
    new = await DemoCsms(versions=(Version.V16,), auth={"BADTAG": "Blocked"}).start()
    csms = {"legacy": {"url": legacy.url, "ocpp": "1.6"}, "new": {"url": new.url, "ocpp": "1.6"}}
    try:
        gw = await start_gateway(csms, default_route={"primary": "legacy", "shadow": "new"})
        charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/CP3", ["ocpp1.6"])
        await charger.call("a1", "Authorize", {"idTag": "BADTAG"})
        await charger.call("h1", "Heartbeat", {})
        await compared(gw, "CP3", 2)
        await charger.close()
        await gw.stop()

        again = await start_gateway(csms, default_route={"primary": "legacy", "shadow": "new"})
        found = await api(again, "/api/chargers/CP3/differences")
        assert [d["differences"][0]["shadow"] for d in found] == ["Blocked"]
        row = next(r for r in (await api(again, "/api/migration"))["chargers"] if r["id"] == "CP3")
        assert (row["compared"], row["agreed"], row["differed"], row["connected"]) == (2, 1, 1, False)
    finally:
        await legacy.stop()
        await new.stop()
