"""Easee chargers end to end: simulated Easee cloud -> gateway (vendor adapter) -> strict OCPP 2.0.1 CSMS."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.ocppj import Version
from gateway.sim.easee_cloud import EaseeCloud
from gateway.sim.peer import OcppCallError
from tests.integration.vendor_support import ACCOUNT, PASSWORD, transactions, vendor_bench

CID = "easee-EH000001"
PROFILE_W = {"id": 7, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
             "chargingProfileKind": "Relative",
             "chargingSchedule": [{"id": 1, "chargingRateUnit": "W",
                                   "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6900.0}]}]}


def cloud(**kwargs: object) -> EaseeCloud:
    c = EaseeCloud(speedup=3600.0, **kwargs)
    c.add_charger("EH000001")
    return c


async def test_a_charging_session_reaches_the_csms_with_boot_status_rfid_and_energy(tmp_path: Path) -> None:
    """Plug in with a card, charge, unplug: one transaction whose energy is what the charger delivered."""
    sim = cloud()
    async with vendor_bench(tmp_path, sim, "easee") as b:
        c = await b.charger(CID)
        assert c.boot == {"reason": "PowerUp", "chargingStation": {
            "model": "Easee Home", "vendorName": "Easee", "serialNumber": "EH000001", "firmwareVersion": "294"}}
        await b.until(lambda: c.status() == "Available")
        point = sim.charger("EH000001")
        before = point.lifetime_wh
        point.plug_in(rfid="04AABBCC")
        await b.until(lambda: c.active_transactions)
        await asyncio.sleep(0.5)
        point.unplug()
        await b.until(lambda: c.finished_transactions and c.status() == "Available")
        (tx,) = transactions(c)
        assert tx.id_token == "04AABBCC"
        assert tx.stop_reason == "EVDisconnected"
        assert tx.seq_nos == list(range(len(tx.seq_nos)))
        assert tx.events[0] == "Started" and tx.events[-1] == "Ended" and tx.events.count("Ended") == 1
        assert tx.meter_stop is not None
        assert tx.meter_stop == pytest.approx(point.lifetime_wh, abs=0.01)
        assert tx.meter_stop - before == pytest.approx(point.session_wh, abs=0.01)  # what the EV got
        assert tx.energy_wh is not None and 0 < tx.energy_wh <= point.session_wh + 0.01
        assert tx.last_power_w == pytest.approx(11000.0)
        assert b.statuses(CID)[-3:] == ["Available", "Occupied", "Available"]
        b.assert_clean()


async def test_the_virtual_charger_heartbeats_at_the_interval_the_csms_gave(tmp_path: Path) -> None:
    """BootNotification's interval sets the Heartbeat period of an otherwise quiet vendor charger."""
    async with vendor_bench(tmp_path, cloud(), "easee", poll_interval=30.0, heartbeat_interval=1) as b:
        c = await b.charger(CID)
        await b.until(lambda: len(c.calls_in("Heartbeat")) >= 2, timeout=5)
        b.assert_clean()


async def test_vendor_api_calls_are_in_the_message_log_without_secrets_and_counted(tmp_path: Path) -> None:
    """Polls show up in the charger's log as peer vendor:easee; the login is logged masked; metrics count."""
    async with vendor_bench(tmp_path, cloud(), "easee") as b:
        await b.charger(CID)
        await b.until(lambda: b.runner(CID).polls >= 3)
        await b.gw.store.flush()
        log = await b.gw.store.messages(CID, limit=500)
        vendor = [m for m in log if m["peer"] == "vendor:easee"]
        assert {m["action"] for m in vendor} >= {"GET /api/chargers/EH000001/state"}
        assert {m["direction"] for m in vendor} == {"in", "out"}
        assert any(m["message_type"] == "VENDOR_API" and '"status":200' in m["frame"] for m in vendor)
        assert any(m["peer"] == "charger" for m in log)  # the virtual charger's OCPP frames, same log
        account_log = await b.gw.store.messages(f"vendor:{ACCOUNT}", limit=100)
        login = [m for m in account_log if m["action"] == "POST /api/accounts/login"]
        assert login and all(PASSWORD not in m["frame"] for m in account_log)
        assert '"password":"***"' in login[0]["frame"]
        assert all(json.loads(m["frame"]).get("json", {}).get("accessToken") in (None, "***") for m in login)
        text = b.gw.metrics.exposition().decode()
        assert 'ocpp_gateway_vendor_api_calls_total{account="acct",adapter="easee",status="200"}' in text
        assert 'ocpp_gateway_vendor_cloud_up{account="acct",adapter="easee"} 1.0' in text


async def test_remote_start_and_stop_drive_the_easee_commands(tmp_path: Path) -> None:
    """RequestStart authorises the waiting charger; RequestStop stops it; Ended says Remote."""
    sim = EaseeCloud(speedup=3600.0)
    point = sim.add_charger("EH000001", auth_required=True)
    async with vendor_bench(tmp_path, sim, "easee") as b:
        c = await b.charger(CID)
        point.plug_in()
        await b.until(lambda: c.status() == "Occupied")
        answer = await b.csms.call(CID, "RequestStartTransaction", {
            "idToken": {"idToken": "APP-USER-1", "type": "Central"}, "remoteStartId": 77})
        assert answer["status"] == "Accepted"
        (tx,) = await b.until(lambda: c.active_transactions)
        assert (tx.remote_start_id, tx.id_token) == (77, "APP-USER-1")
        assert [cmd for _, cmd, _ in sim.commands] == ["start_charging"]
        answer = await b.csms.call(CID, "RequestStopTransaction", {"transactionId": tx.transaction_id})
        assert answer["status"] == "Accepted"
        await b.until(lambda: c.finished_transactions)
        assert tx.stop_reason == "Remote"
        assert [cmd for _, cmd, _ in sim.commands] == ["start_charging", "stop_charging"]
        unknown = await b.csms.call(CID, "RequestStopTransaction", {"transactionId": "no-such-tx"})
        assert unknown["status"] == "Rejected"
        b.assert_clean()


async def test_a_remote_start_before_the_ev_arrives_starts_charging_when_it_plugs_in(tmp_path: Path) -> None:
    """RequestStart with nobody plugged in is Accepted and carried out once the EV is connected."""
    sim = EaseeCloud(speedup=3600.0)
    point = sim.add_charger("EH000001", auth_required=True)
    async with vendor_bench(tmp_path, sim, "easee") as b:
        c = await b.charger(CID)
        answer = await b.csms.call(CID, "RequestStartTransaction", {
            "idToken": {"idToken": "APP-USER-2", "type": "Central"}, "remoteStartId": 8})
        assert answer["status"] == "Accepted"
        await asyncio.sleep(0.2)
        assert sim.commands == []
        point.plug_in()
        (tx,) = await b.until(lambda: c.active_transactions)
        assert tx.remote_start_id == 8
        b.assert_clean()


async def test_a_watt_charging_profile_becomes_a_dynamic_current_limit(tmp_path: Path) -> None:
    """SetChargingProfile 6900 W on 230 V x 3 phases sets 10 A; clearing it restores the maximum."""
    sim = cloud()
    async with vendor_bench(tmp_path, sim, "easee") as b:
        c = await b.charger(CID)
        sim.charger("EH000001").plug_in(rfid="CAFE")
        await b.until(lambda: c.active_transactions)
        answer = await b.csms.call(CID, "SetChargingProfile", {"evseId": 1, "chargingProfile": PROFILE_W})
        assert answer["status"] == "Accepted"
        assert sim.charger("EH000001").limit == 10.0
        assert ("EH000001", "set_dynamic_charger_current", {"amps": 10, "minutes": 0}) in sim.commands
        (tx,) = transactions(c)
        await b.until(lambda: tx.last_power_w == pytest.approx(6900.0))
        answer = await b.csms.call(CID, "ClearChargingProfile", {"chargingProfileId": 7})
        assert answer["status"] == "Accepted"
        assert sim.charger("EH000001").limit == 32.0
        b.assert_clean()


async def test_reset_reboots_the_charger_and_ends_the_transaction(tmp_path: Path) -> None:
    """Reset Immediate: reboot command, Ended with ImmediateReset, Unavailable while it reboots, then back."""
    sim = cloud(reboot_seconds=0.4)
    async with vendor_bench(tmp_path, sim, "easee") as b:
        c = await b.charger(CID)
        sim.charger("EH000001").plug_in(rfid="CAFE")
        await b.until(lambda: c.active_transactions)
        assert (await b.csms.call(CID, "Reset", {"type": "Immediate"}))["status"] == "Accepted"
        (first,) = await b.until(lambda: c.finished_transactions)
        assert first.stop_reason == "ImmediateReset"
        assert ("EH000001", "reboot", None) in sim.commands
        await b.until(lambda: "Unavailable" in b.statuses(CID))
        await b.until(lambda: c.active_transactions)  # the EV is still there: charging resumes, a new transaction
        assert len(transactions(c)) == 2
        b.assert_clean()


async def test_change_availability_disables_and_enables_the_charger(tmp_path: Path) -> None:
    """Inoperative posts settings enabled=false and the connector turns Unavailable; Operative undoes it."""
    sim = cloud()
    async with vendor_bench(tmp_path, sim, "easee") as b:
        c = await b.charger(CID)
        answer = await b.csms.call(CID, "ChangeAvailability", {"operationalStatus": "Inoperative"})
        assert answer["status"] == "Accepted"
        await b.until(lambda: c.status() == "Unavailable")
        assert sim.charger("EH000001").enabled is False
        answer = await b.csms.call(CID, "ChangeAvailability", {"operationalStatus": "Operative"})
        assert answer["status"] == "Accepted"
        await b.until(lambda: c.status() == "Available")
        b.assert_clean()


async def test_update_firmware_runs_the_vendor_update_and_reports_installed(tmp_path: Path) -> None:
    """UpdateFirmware: update_firmware command, FirmwareStatusNotification Installing then Installed."""
    sim = cloud(reboot_seconds=0.2)
    async with vendor_bench(tmp_path, sim, "easee") as b:
        c = await b.charger(CID)
        answer = await b.csms.call(CID, "UpdateFirmware", {
            "requestId": 5, "firmware": {"location": "https://fw.example/x.bin", "retrieveDateTime":
                                         "2024-01-01T00:00:00.000Z"}})
        assert answer["status"] == "Accepted"
        await b.until(lambda: [p["status"] for p in c.calls_in("FirmwareStatusNotification")] == [
            "Installing", "Installed"])
        assert all(p["requestId"] == 5 for p in c.calls_in("FirmwareStatusNotification"))
        b.assert_clean()


async def test_trigger_message_polls_afresh_and_sends_the_message(tmp_path: Path) -> None:
    """TriggerMessage StatusNotification and MeterValues are answered Accepted and sent after a fresh poll."""
    sim = cloud()
    async with vendor_bench(tmp_path, sim, "easee", poll_interval=30.0) as b:
        c = await b.charger(CID)
        polls = b.runner(CID).polls
        before = len(c.calls_in("StatusNotification"))
        answer = await b.csms.call(CID, "TriggerMessage", {"requestedMessage": "StatusNotification"})
        assert answer["status"] == "Accepted"
        await b.until(lambda: len(c.calls_in("StatusNotification")) == before + 1)
        assert b.runner(CID).polls == polls + 1
        assert (await b.csms.call(CID, "TriggerMessage", {"requestedMessage": "MeterValues"}))["status"] == "Accepted"
        await b.until(lambda: c.calls_in("MeterValues"))
        b.assert_clean()


async def test_commands_the_cloud_cannot_do_are_refused_the_ocpp_way(tmp_path: Path) -> None:
    """UnlockConnector gets CALLERROR NotSupported; a triggered BootNotification is Rejected."""
    async with vendor_bench(tmp_path, cloud(), "easee") as b:
        await b.charger(CID)
        with pytest.raises(OcppCallError) as err:
            await b.csms.call(CID, "UnlockConnector", {"evseId": 1, "connectorId": 1})
        assert err.value.code == "NotSupported"
        answer = await b.csms.call(CID, "TriggerMessage", {"requestedMessage": "BootNotification"})
        assert answer["status"] == "Rejected"
        b.assert_clean()


async def test_a_token_that_expires_mid_run_is_refreshed_and_polling_goes_on(tmp_path: Path) -> None:
    """Short-lived tokens are refreshed ahead of expiry; a token revoked mid-run is replaced after one 401."""
    sim = cloud(token_lifetime=1.0)
    async with vendor_bench(tmp_path, sim, "easee") as b:
        c = await b.charger(CID)
        await b.until(lambda: sim.refreshes >= 2, timeout=5)
        sim.expire_tokens()
        polls = b.runner(CID).polls
        await b.until(lambda: b.runner(CID).polls >= polls + 5)
        assert [h.status for h in sim.hits].count(401) <= 1
        assert "Unavailable" not in b.statuses(CID)
        assert c.connected
        b.assert_clean()


async def test_a_429_storm_is_waited_out_without_hammering(tmp_path: Path) -> None:
    """Every 429's Retry-After is honoured by the whole account: no request arrives early, nothing is lost."""
    sim = cloud()
    async with vendor_bench(tmp_path, sim, "easee", poll_interval=0.02) as b:
        c = await b.charger(CID)
        sim.charger("EH000001").plug_in(rfid="CAFE")
        await b.until(lambda: c.active_transactions)
        sim.storm(6, retry_after=0.25)
        await b.until(lambda: [h.status for h in sim.hits].count(429) == 6, timeout=10)
        statuses_after_storm = len([h for h in sim.hits if h.status == 200])
        await b.until(lambda: len([h for h in sim.hits if h.status == 200]) > statuses_after_storm + 3)
        assert sim.early == 0
        assert "Unavailable" not in b.statuses(CID)
        assert len(transactions(c)) == 1
        text = b.gw.metrics.exposition().decode()
        assert 'ocpp_gateway_vendor_rate_limit_waits_total{account="acct",adapter="easee",reason="retry_after"} 6.0' \
            in text
        b.assert_clean()


async def test_the_request_budget_keeps_a_fast_poller_under_the_cloud_limit(tmp_path: Path) -> None:
    """With the budget set to the cloud's limit, a 10 ms poll interval never draws a 429."""
    sim = cloud(rate_limit=(20, 1.0))
    async with vendor_bench(tmp_path, sim, "easee", poll_interval=0.01,
                            options={"request_budget": [15, 1.0]}) as b:
        await b.charger(CID)
        await asyncio.sleep(2.0)
        assert [h.status for h in sim.hits].count(429) == 0
        assert len(sim.hits) <= 15 * 3 + 5  # a 15-request burst, then 15 per second
        assert sim.early == 0


async def test_a_cloud_outage_makes_the_charger_unavailable_and_the_transaction_survives(tmp_path: Path) -> None:
    """Outage mid-charge: Unavailable, then back to Occupied; the same transaction goes on and ends once."""
    sim = cloud()
    async with vendor_bench(tmp_path, sim, "easee") as b:
        c = await b.charger(CID)
        point = sim.charger("EH000001")
        point.plug_in(rfid="CAFE")
        (tx,) = await b.until(lambda: c.active_transactions)
        sim.outage = True
        await b.until(lambda: c.status() == "Unavailable")
        await asyncio.sleep(0.3)
        sim.outage = False
        await b.until(lambda: c.status() == "Occupied")
        await asyncio.sleep(0.2)
        point.unplug()
        await b.until(lambda: c.finished_transactions)
        assert transactions(c) == [tx]
        assert tx.events.count("Started") == 1 and tx.events.count("Ended") == 1
        assert tx.meter_stop == pytest.approx(point.lifetime_wh, abs=0.01)
        assert 'ocpp_gateway_vendor_api_errors_total{account="acct",adapter="easee",kind="http_5xx"}' in \
            b.gw.metrics.exposition().decode()
        b.assert_clean()


async def test_an_ev_that_leaves_during_an_outage_ends_its_transaction_once_the_cloud_is_back(tmp_path: Path) -> None:
    """The session ended while the cloud was down: exactly one Ended, with the final register, afterwards."""
    sim = cloud()
    async with vendor_bench(tmp_path, sim, "easee") as b:
        c = await b.charger(CID)
        point = sim.charger("EH000001")
        point.plug_in(rfid="CAFE")
        await b.until(lambda: c.active_transactions)
        sim.outage = True
        await b.until(lambda: c.status() == "Unavailable")
        point.unplug()
        sim.outage = False
        (tx,) = await b.until(lambda: c.finished_transactions)
        assert tx.stop_reason == "EVDisconnected"
        assert tx.meter_stop == pytest.approx(point.lifetime_wh, abs=0.01)
        await b.until(lambda: c.status() == "Available")
        assert len(transactions(c)) == 1
        b.assert_clean()


async def test_a_charger_offline_in_the_easee_cloud_is_unavailable(tmp_path: Path) -> None:
    """isOnline false (the charger lost its own connection) is reported Unavailable, and Available again."""
    sim = cloud()
    async with vendor_bench(tmp_path, sim, "easee") as b:
        c = await b.charger(CID)
        sim.charger("EH000001").online = False
        await b.until(lambda: c.status() == "Unavailable")
        sim.charger("EH000001").online = True
        await b.until(lambda: c.status() == "Available")
        b.assert_clean()


async def test_a_session_through_a_16_csms_is_translated(tmp_path: Path) -> None:
    """Routed to a 1.6J CSMS, the vendor charger's 2.0.1 session arrives as Start/StopTransaction with energy."""
    sim = cloud()
    async with vendor_bench(tmp_path, sim, "easee", csms_version=Version.V16) as b:
        c = await b.charger(CID)
        assert c.version is Version.V16
        assert c.boot is not None and c.boot["chargePointVendor"] == "Easee"
        point = sim.charger("EH000001")
        point.plug_in(rfid="04AABBCC")
        await b.until(lambda: c.active_transactions)
        await asyncio.sleep(0.3)
        point.unplug()
        (tx,) = await b.until(lambda: c.finished_transactions)
        assert tx.id_token == "04AABBCC"
        assert tx.energy_wh is not None and tx.energy_wh > 0
        assert tx.meter_stop == pytest.approx(point.lifetime_wh, abs=1.0)  # 1.6 meterStop is whole Wh
        b.assert_clean()


async def test_transaction_events_wait_out_a_csms_outage(tmp_path: Path) -> None:
    """The CSMS is down while the EV leaves: Ended is retried until the CSMS is back, then arrives once."""
    sim = cloud()
    async with vendor_bench(tmp_path, sim, "easee", call_timeout=0.5) as b:
        c = await b.charger(CID)
        point = sim.charger("EH000001")
        point.plug_in(rfid="CAFE")
        (tx,) = await b.until(lambda: c.active_transactions)
        await b.csms.stop()
        await asyncio.sleep(0.2)
        point.unplug()
        await asyncio.sleep(1.5)  # the gateway answers the virtual charger's CALLs with InternalError meanwhile
        assert tx.active
        await b.csms.start()
        await b.until(lambda: c.finished_transactions, timeout=15)
        assert transactions(c) == [tx]
        assert tx.events.count("Ended") == 1
        assert tx.seq_nos == list(range(len(tx.seq_nos)))
        assert tx.meter_stop == pytest.approx(point.lifetime_wh, abs=0.01)
        b.assert_clean()
