"""Shadow routing: a second CSMS sees the charger's traffic, its answers are compared, never delivered."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from gateway.ocppj import Version
from gateway.sim.csms import DemoCsms
from gateway.sim.peer import OcppCallError
from tests.conftest import GatewayFactory
from tests.rawpeers import RawCharger

BOOT = {"chargePointVendor": "ACME", "chargePointModel": "One"}
START = {"connectorId": 1, "idTag": "GOODTAG", "meterStart": 1000, "timestamp": "2026-01-01T10:00:00Z"}


async def test_shadow_gets_every_charger_call_and_its_answers_are_compared(start_gateway: GatewayFactory) -> None:
    """The charger only hears the primary; the shadow's disagreements are counted; transaction ids line up."""
    primary = await DemoCsms(versions=(Version.V16,)).start()
    shadow = await DemoCsms(versions=(Version.V16,), auth={"BADTAG": "Invalid"}, first_transaction_id=500).start()
    try:
        gw = await start_gateway(
            {"old": {"url": primary.url, "ocpp": "1.6"}, "new": {"url": shadow.url, "ocpp": "1.6"}},
            default_route={"primary": "old", "shadow": "new"},
        )
        charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/SH1", ["ocpp1.6"])
        boot = await charger.call("b1", "BootNotification", BOOT)
        assert boot[0] == 3 and boot[2]["status"] == "Accepted"
        auth = await charger.call("a1", "Authorize", {"idTag": "BADTAG"})
        assert auth[2]["idTagInfo"]["status"] == "Accepted"  # the primary's answer, not the shadow's
        start = await charger.call("s1", "StartTransaction", START)
        tx = start[2]["transactionId"]
        stop = {"transactionId": tx, "meterStop": 4000, "timestamp": "2026-01-01T11:00:00Z"}
        assert (await charger.call("t1", "StopTransaction", stop))[0] == 3

        await shadow.wait_for(lambda: len(shadow.charger("SH1").calls_in("StopTransaction")) == 1)
        assert shadow.charger("SH1").calls_in("Authorize") == [{"idTag": "BADTAG"}]
        assert shadow.charger("SH1").calls_in("StopTransaction")[0]["transactionId"] == 500
        assert primary.charger("SH1").calls_in("StopTransaction")[0]["transactionId"] == tx
        assert not shadow.violations and not primary.violations

        with pytest.raises(OcppCallError) as exc:
            await shadow.call("SH1", "Reset", {"type": "Hard"}, timeout=5)
        assert exc.value.code == "SecurityError"
        with pytest.raises(TimeoutError):
            await charger.recv(timeout=0.3)  # the charger never heard of it

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{gw.admin_port}/metrics") as resp:
                metrics = await resp.text()
        assert 'ocpp_gateway_shadow_comparisons_total{action="Authorize",csms="new",outcome="differ"} 1.0' in metrics
        assert 'ocpp_gateway_shadow_comparisons_total{action="BootNotification",csms="new",outcome="match"} 1.0' \
            in metrics
        await gw.store.flush()
        records = await gw.store.messages("SH1", limit=200)
        assert any(r["peer"] == "shadow:new" and r["action"] == "Authorize" for r in records)
        await charger.close()
    finally:
        await primary.stop()
        await shadow.stop()


async def test_a_16_shadow_that_left_a_start_unanswered_gets_it_again_and_the_rest_in_order(
    start_gateway: GatewayFactory,
) -> None:
    """2.0.1 station, 1.6 shadow that does not answer the first StartTransaction: the shadow's queue is replayed
    on its own (a shadow takes no estate replay turn), so the shadow gets the start again and then the stop under
    the id it assigned, while the station only ever hears its primary."""
    from tests.integration.test_cutover import V201, Charger

    primary = await DemoCsms(versions=(Version.V201,)).start()
    shadow = await DemoCsms(versions=(Version.V16,), first_transaction_id=500).start()
    shadow.misbehave("hang", "StartTransaction", times=1)
    try:
        gw = await start_gateway(
            {"old": {"url": primary.url, "ocpp": "2.0.1"}, "new": {"url": shadow.url, "ocpp": "1.6"}},
            default_route={"primary": "old", "shadow": "new"}, call_timeout=1, held_retry_interval=0.3,
        )
        station = await Charger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/SH2", V201)
        await station.boot()
        tx = await station.start(1, "TX-S")
        await station.stop(tx, 1)
        await shadow.wait_for(lambda: shadow.charger("SH2").calls_in("StopTransaction"), timeout=10)
        seen = shadow.charger("SH2")
        assert len(seen.calls_in("StartTransaction")) == 2  # unanswered once, then replayed
        assert seen.calls_in("StopTransaction")[0]["transactionId"] == 500
        assert primary.charger("SH2").calls_in("TransactionEvent")
        await station.raw.close()
    finally:
        await primary.stop()
        await shadow.stop()


async def test_a_shadow_that_is_down_is_compared_as_not_answering_not_as_agreeing(
        start_gateway: GatewayFactory) -> None:
    """The answers store-and-forward gives for a shadow that cannot be reached are not the shadow's: its comparisons
    count as shadow_error, never as a match, so a dead shadow never looks ready."""
    from tests.integration.test_cli import free_port

    primary = await DemoCsms(versions=(Version.V16,)).start()
    try:
        gw = await start_gateway(
            {"old": {"url": primary.url, "ocpp": "1.6"},
             "new": {"url": f"ws://127.0.0.1:{free_port()}/ocpp", "ocpp": "1.6"}},
            default_route={"primary": "old", "shadow": "new"},
        )
        charger = await RawCharger.connect(f"ws://127.0.0.1:{gw.listen_port}/ocpp/SH3", ["ocpp1.6"])
        assert (await charger.call("b1", "BootNotification", BOOT))[2]["status"] == "Accepted"
        for n in range(3):
            assert (await charger.call(f"h{n}", "Heartbeat", {}))[0] == 3
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                async with http.get(f"http://127.0.0.1:{gw.admin_port}/api/migration") as resp:
                    row = next(r for r in (await resp.json())["chargers"] if r["id"] == "SH3")
                if row["compared"] >= 4:
                    break
                await asyncio.sleep(0.05)
        assert (row["compared"], row["agreed"]) == (4, 0), row
        assert row["readiness"]["ready"] is False
        await charger.close()
    finally:
        await primary.stop()
