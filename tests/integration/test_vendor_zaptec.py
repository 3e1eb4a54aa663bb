"""Zaptec chargers end to end: simulated Zaptec cloud -> gateway (vendor adapter) -> strict OCPP 2.0.1 CSMS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.ocppj import Version
from gateway.sim.zaptec_cloud import ZaptecCharger, ZaptecCloud
from tests.integration.vendor_support import transactions, vendor_bench


def cloud(auth_required: bool = True, **kwargs: object) -> tuple[ZaptecCloud, ZaptecCharger, str]:
    sim = ZaptecCloud(speedup=3600.0, **kwargs)  # type: ignore[arg-type]
    point = sim.add_charger("ZAP000001", auth_required=auth_required)
    return sim, point, f"zaptec-{point.id}"


async def test_a_card_session_reaches_the_csms_with_the_card_and_the_session_energy(tmp_path: Path) -> None:
    """Card to start, card to stop: Started, Updated, Ended (Local) with the card and Zaptec's session energy."""
    sim, point, cid = cloud(signed_interval=900.0)
    async with vendor_bench(tmp_path, sim, "zaptec") as b:
        c = await b.charger(cid)
        assert c.boot == {"reason": "PowerUp", "chargingStation": {
            "model": "Zaptec Go", "vendorName": "Zaptec", "serialNumber": "ZAP000001", "firmwareVersion": "5.3.0.3"}}
        await b.until(lambda: c.status() == "Available")
        before = point.lifetime_wh
        point.plug_in(rfid="9A798939")
        (tx,) = await b.until(lambda: c.active_transactions)
        await asyncio.sleep(0.4)
        point.tap_card("9A798939")
        await b.until(lambda: c.finished_transactions)
        assert tx.stop_reason == "Local"
        assert tx.id_token == "9A798939"  # Zaptec publishes the card with the completed session
        assert point.completed is not None
        session_wh = point.completed["Energy"] * 1000.0
        assert tx.meter_stop == pytest.approx(before + session_wh, abs=1.0)
        assert tx.meter_start is not None and tx.meter_start >= before - 1.0
        assert tx.seq_nos == list(range(len(tx.seq_nos)))
        point.unplug()
        await b.until(lambda: c.status() == "Available")
        assert len(transactions(c)) == 1
        b.assert_clean()


async def test_remote_start_authorizes_and_remote_stop_deauthorizes(tmp_path: Path) -> None:
    """RequestStart -> authorizecharge; RequestStop -> command 10001; Ended says Remote."""
    sim, point, cid = cloud(auth_required=True)
    async with vendor_bench(tmp_path, sim, "zaptec") as b:
        c = await b.charger(cid)
        point.plug_in()
        await b.until(lambda: c.status() == "Occupied")
        answer = await b.csms.call(cid, "RequestStartTransaction", {
            "idToken": {"idToken": "APP-1", "type": "Central"}, "remoteStartId": 3})
        assert answer["status"] == "Accepted"
        (tx,) = await b.until(lambda: c.active_transactions)
        assert (tx.remote_start_id, tx.id_token) == (3, "APP-1")
        answer = await b.csms.call(cid, "RequestStopTransaction", {"transactionId": tx.transaction_id})
        assert answer["status"] == "Accepted"
        await b.until(lambda: c.finished_transactions)
        assert tx.stop_reason == "Remote"
        assert [cmd for _, cmd, _ in sim.commands] == ["authorizecharge", "10001"]
        b.assert_clean()


async def test_a_current_limit_goes_to_the_installation_when_the_charger_is_alone_in_it(tmp_path: Path) -> None:
    """SetChargingProfile 16 A posts installation/{id}/update availableCurrent 16."""
    sim, point, cid = cloud(auth_required=False)
    async with vendor_bench(tmp_path, sim, "zaptec") as b:
        c = await b.charger(cid)
        point.plug_in()
        await b.until(lambda: c.active_transactions)
        profile = {"id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
                   "chargingProfileKind": "Relative", "chargingSchedule": [
                       {"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]}]}
        answer = await b.csms.call(cid, "SetChargingProfile", {"evseId": 1, "chargingProfile": profile})
        assert answer["status"] == "Accepted"
        assert sim.installation_current == {"inst-1": 16.0}
        assert point.limit == 16.0
        b.assert_clean()


async def test_change_availability_is_rejected_because_zaptec_cannot_do_it(tmp_path: Path) -> None:
    """No enable/disable in Zaptec's API: Rejected with a reason, nothing sent to the cloud."""
    sim, _, cid = cloud()
    async with vendor_bench(tmp_path, sim, "zaptec") as b:
        await b.charger(cid)
        answer = await b.csms.call(cid, "ChangeAvailability", {"operationalStatus": "Inoperative"})
        assert answer["status"] == "Rejected"
        assert answer["statusInfo"]["reasonCode"] == "UnsupportedByVendor"
        assert sim.commands == []
        b.assert_clean()


async def test_expiring_tokens_mean_logging_in_again(tmp_path: Path) -> None:
    """Zaptec has no refresh token: before expiry, and after a 401, the adapter logs in again."""
    sim, _, cid = cloud(token_lifetime=1.0)
    async with vendor_bench(tmp_path, sim, "zaptec") as b:
        c = await b.charger(cid)
        await b.until(lambda: sim.logins >= 3, timeout=5)
        sim.expire_tokens()
        polls = b.runner(cid).polls
        await b.until(lambda: b.runner(cid).polls >= polls + 5)
        assert "Unavailable" not in b.statuses(cid)
        assert c.connected
        b.assert_clean()


async def test_a_429_storm_is_waited_out(tmp_path: Path) -> None:
    """Zaptec 429s with Retry-After: nothing arrives early, the charger stays available."""
    sim, _, cid = cloud()
    async with vendor_bench(tmp_path, sim, "zaptec", poll_interval=0.02) as b:
        await b.charger(cid)
        sim.storm(4, retry_after=0.3)
        await b.until(lambda: [h.status for h in sim.hits].count(429) == 4)
        count = len(sim.hits)
        await b.until(lambda: len(sim.hits) > count + 3)
        assert sim.early == 0
        assert "Unavailable" not in b.statuses(cid)
        b.assert_clean()


async def test_an_outage_keeps_the_transaction_and_a_1_6_csms_gets_it_translated(tmp_path: Path) -> None:
    """Through a 1.6J CSMS: Unavailable during the outage, one transaction from start to stop."""
    sim, point, cid = cloud(auth_required=False)
    async with vendor_bench(tmp_path, sim, "zaptec", csms_version=Version.V16) as b:
        c = await b.charger(cid)
        point.plug_in()
        (tx,) = await b.until(lambda: c.active_transactions)
        sim.outage = True
        await b.until(lambda: c.status() == "Unavailable")
        sim.outage = False
        await b.until(lambda: c.status() not in (None, "Unavailable"))
        point.unplug()
        await b.until(lambda: c.finished_transactions)
        assert transactions(c) == [tx]
        assert tx.energy_wh is not None and tx.energy_wh > 0
        b.assert_clean()
