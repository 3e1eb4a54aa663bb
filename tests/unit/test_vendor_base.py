"""The vendor side's shared OCPP 2.0.1 logic: observe (poll -> CALLs), CSMS commands, profiles, registry."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from adapters import vendor_base as vb
from adapters.vendor_base import (
    ApiRequest,
    ApiResponse,
    ChargerInfo,
    Credentials,
    Flow,
    Reading,
    Token,
    VendorAdapter,
    VendorUnavailable,
)
from adapters.vendor_base import registry as vendor_registry
from gateway import schemas
from gateway.ocppj import ErrorKind, Version

CHARGER = ChargerInfo("V1", "Vendor", "Model X", "SER1", "1.2.3", "Garage", {"voltage": 230, "phases": 3})


def valid(messages: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Every CALL is valid OCPP 2.0.1 (the schema's spelling of every field and enum)."""
    for action, payload in messages:
        bad = schemas.validate(Version.V201, action, payload)
        assert bad is None, f"{action}: {bad.describe()} in {payload}"
    return messages


def reading(status: str = "Available", state: str = "Idle", *, ev: bool = False, charging: bool = False,
            register: float | None = 1000.0, power: float | None = 0.0, **kw: Any) -> Reading:
    return Reading(connector_status=status, charging_state=state, ev_connected=ev, charging=charging,
                   register_wh=register, power_w=power, **kw)


IDLE = reading()
PLUGGED = reading("Occupied", "EVConnected", ev=True)
CHARGING = reading("Occupied", "Charging", ev=True, charging=True, register=1500.0, power=7400.0)
PAUSED = reading("Occupied", "SuspendedEV", ev=True, register=2500.0, power=0.0)


class Run:
    """Feeds readings through observe like the runner does, keeping the state."""

    def __init__(self, state: dict[str, Any] | None = None, meter_interval: float = 0.0) -> None:
        self.state = state or vb.new_state()
        self.now = 1_700_000_000.0
        self.ids = (f"tx-{i}" for i in itertools.count(1))
        self.meter_interval = meter_interval
        self.followups: list[vb.Followup] = []

    def __call__(self, r: Reading, dt: float = 10.0) -> list[tuple[str, dict[str, Any]]]:
        self.now += dt
        obs = vb.observe(CHARGER, r, self.state, self.now, lambda: next(self.ids), self.meter_interval)
        self.state = obs.state
        self.followups = obs.followups
        return valid(obs.messages)


def kinds(messages: list[tuple[str, dict[str, Any]]]) -> list[str]:
    out = []
    for action, p in messages:
        if action == "TransactionEvent":
            out.append(f"{p['eventType']}/{p['triggerReason']}")
        elif action == "StatusNotification":
            out.append(f"Status/{p['connectorStatus']}")
        else:
            out.append(action)
    return out


def tx_events(messages: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [m for m in messages if m[0] == "TransactionEvent"]


def register_of(payload: dict[str, Any]) -> float:
    return float(next(s["value"] for mv in payload["meterValue"] for s in mv["sampledValue"]
                      if s["measurand"] == vb.ENERGY))


# ---------------------------------------------------------------- BootNotification


def test_boot_notification_carries_vendor_model_serial_and_firmware() -> None:
    """BootNotification is built from discovery: vendor, model, serial and firmware, valid 2.0.1."""
    payload = vb.boot_notification(CHARGER)
    assert payload == {"reason": "PowerUp", "chargingStation": {
        "model": "Model X", "vendorName": "Vendor", "serialNumber": "SER1", "firmwareVersion": "1.2.3"}}
    valid([("BootNotification", payload)])


def test_boot_notification_cuts_fields_to_the_schema_lengths() -> None:
    """Over-long vendor strings are cut so the BootNotification stays valid."""
    long = ChargerInfo("x", "V" * 60, "M" * 30, "S" * 40, "F" * 60)
    valid([("BootNotification", vb.boot_notification(long))])


# ---------------------------------------------------------------- a whole session


def test_a_charging_session_becomes_started_updated_ended_with_the_energy_register() -> None:
    """Plug in, charge, pause, charge, unplug: one transaction, seqNo 0..n, Ended on unplugging."""
    run = Run()
    assert kinds(run(IDLE)) == ["Status/Available"]
    assert kinds(run(PLUGGED)) == ["Status/Occupied"]
    started = run(CHARGING)
    assert kinds(started) == ["Started/ChargingStateChanged"]
    assert register_of(started[0][1]) == 1500.0
    assert started[0][1]["meterValue"][0]["sampledValue"][0]["context"] == "Transaction.Begin"
    more = reading("Occupied", "Charging", ev=True, charging=True, register=2000.0, power=7400.0)
    assert kinds(run(more)) == ["Updated/MeterValuePeriodic"]
    paused = run(PAUSED)
    assert kinds(paused) == ["Updated/ChargingStateChanged"]
    assert paused[0][1]["transactionInfo"]["chargingState"] == "SuspendedEV"
    ended = run(IDLE.__class__(connector_status="Available", charging_state="Idle", register_wh=2500.0))
    assert kinds(ended) == ["Ended/EVDeparted", "Status/Available"]
    end = ended[0][1]
    assert end["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert register_of(end) == 2500.0
    assert [p["seqNo"] for p in (started[0][1], paused[0][1], end)] == [0, 2, 3]
    assert len({p["transactionInfo"]["transactionId"] for p in (started[0][1], end)}) == 1
    assert run.state["tx"] is None


def test_nothing_is_sent_when_nothing_changed() -> None:
    """An unchanged poll produces no CALL at all."""
    run = Run()
    run(IDLE)
    assert run(IDLE) == []


def test_meter_values_wait_for_the_meter_interval() -> None:
    """Updated events with new energy are spaced by meter_interval; state changes are not held back."""
    run = Run(meter_interval=60.0)
    run(CHARGING)
    r2 = reading("Occupied", "Charging", ev=True, charging=True, register=1600.0, power=7400.0)
    assert run(r2, dt=10) == []
    r3 = reading("Occupied", "Charging", ev=True, charging=True, register=1700.0, power=7400.0)
    assert kinds(run(r3, dt=60)) == ["Updated/MeterValuePeriodic"]
    assert kinds(run(PAUSED, dt=1)) == ["Updated/ChargingStateChanged"]


def test_the_energy_register_never_runs_backwards() -> None:
    """A stale lower register from the vendor is reported as the last known value."""
    run = Run()
    run(reading("Occupied", "Charging", ev=True, charging=True, register=5000.0))
    lower = reading("Occupied", "Charging", ev=True, charging=True, register=4000.0, power=1.0)
    (_, payload), = run(lower)
    assert register_of(payload) == 5000.0


def test_the_rfid_of_the_session_is_sent_with_started_as_authorized() -> None:
    """When the vendor exposes the RFID at start, Started carries the idToken with triggerReason Authorized."""
    run = Run()
    (_, started), = tx_events(run(reading("Occupied", "Charging", ev=True, charging=True, id_token="04A1B2C3")))
    assert started["triggerReason"] == "Authorized"
    assert started["idToken"] == {"idToken": "04A1B2C3", "type": "ISO14443"}


@pytest.mark.parametrize(("vendor_token", "token_type"), [
    ("04A1B2C3", "ISO14443"), ("04A1B2C3D4E5F6", "ISO14443"), ("E0040150A1B2C3D4", "ISO15693"),
    ("DE-8AC-C12345678-9", "eMAID"), ("user-42", "Local"),
])
def test_a_vendor_token_is_typed_by_its_shape(vendor_token: str, token_type: str) -> None:
    """A vendor's RFID string gets the token type its shape says, like a translated 1.6 idTag (not always ISO14443)."""
    run = Run()
    (_, started), = tx_events(run(reading("Occupied", "Charging", ev=True, charging=True, id_token=vendor_token)))
    assert started["idToken"] == {"idToken": vendor_token, "type": token_type}


def test_an_rfid_learnt_at_the_end_is_sent_with_ended() -> None:
    """A vendor that publishes the card only in its completed-session record gets it into Ended."""
    run = Run()
    run(reading("Occupied", "Charging", ev=True, charging=True, session_id="S1"))
    done = vb.CompletedSession("S1", 3000.0, "CAFE01", stopped_locally=True)
    msgs = run(reading("Occupied", "SuspendedEV", ev=True, session_id=None, completed=done))
    end = next(p for a, p in msgs if a == "TransactionEvent")
    assert end["eventType"] == "Ended"
    assert end["idToken"]["idToken"] == "CAFE01"
    assert (end["transactionInfo"]["stoppedReason"], end["triggerReason"]) == ("Local", "StopAuthorized")


@pytest.mark.parametrize(
    ("after", "stopped", "trigger"),
    [
        (reading("Occupied", "EVConnected", ev=True, session_id=None), "DeAuthorized", "Deauthorized"),
        (reading("Occupied", "Charging", ev=True, charging=True, session_id="S2"), "Other", "ChargingStateChanged"),
    ],
)
def test_a_vendor_session_that_ends_with_the_ev_still_plugged_in_ends_the_transaction(
    after: Reading, stopped: str, trigger: str
) -> None:
    """The vendor closing (or replacing) its session ends the transaction with a matching reason."""
    run = Run()
    run(reading("Occupied", "Charging", ev=True, charging=True, session_id="S1"))
    msgs = run(after)
    end = next(p for a, p in msgs if a == "TransactionEvent" and p["eventType"] == "Ended")
    assert (end["transactionInfo"]["stoppedReason"], end["triggerReason"]) == (stopped, trigger)


# ---------------------------------------------------------------- connection loss


def test_an_unreachable_cloud_makes_the_connector_unavailable_and_keeps_the_transaction() -> None:
    """Cloud outage: Unavailable, no Ended; when it comes back the same transaction carries on."""
    run = Run()
    (_, started), = tx_events(run(CHARGING))
    assert kinds(run(Reading.unreachable())) == ["Status/Unavailable"]
    assert run(Reading.unreachable()) == []
    assert run.state["tx"] is not None
    back = reading("Occupied", "Charging", ev=True, charging=True, register=3000.0, power=7400.0)
    msgs = run(back)
    assert kinds(msgs) == ["Status/Occupied", "Updated/MeterValuePeriodic"]
    assert msgs[1][1]["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]


def test_a_charger_offline_in_its_cloud_is_unavailable_too() -> None:
    """The charger losing its own connection is reported Unavailable like a cloud outage."""
    run = Run()
    run(IDLE)
    assert kinds(run(Reading(online=False))) == ["Status/Unavailable"]


def test_a_session_that_ended_during_the_outage_is_ended_once_the_cloud_is_back() -> None:
    """The EV left while the cloud was down: exactly one Ended when it answers again, then Available."""
    run = Run()
    run(CHARGING)
    run(Reading.unreachable())
    msgs = run(reading(register=4000.0))
    assert kinds(msgs) == ["Ended/EVDeparted", "Status/Available"]
    assert register_of(msgs[0][1]) == 4000.0
    assert run(reading(register=4000.0)) == []


# ---------------------------------------------------------------- waiting things


def test_a_remote_start_before_plugging_in_is_replayed_when_the_ev_arrives() -> None:
    """RequestStartTransaction without an EV waits; plugging in replays it, Started names the remote start."""
    run = Run()
    request = {"idToken": {"idToken": "APP1", "type": "Central"}, "remoteStartId": 42}
    run.state["remote_start"] = {"request": request, "expires": run.now + 100, "dispatched": False}
    run(PLUGGED)
    assert run.followups == [("RequestStartTransaction", {**request, "_replay": True})]
    (_, started), = run(CHARGING)
    assert started["triggerReason"] == "RemoteStart"
    assert started["transactionInfo"]["remoteStartId"] == 42
    assert started["idToken"] == {"idToken": "APP1", "type": "Central"}


def test_a_remote_start_expires_after_the_ev_connect_timeout() -> None:
    """A remote start nobody plugs in for is forgotten after its expiry."""
    run = Run()
    run.state["remote_start"] = {"request": {"idToken": {"idToken": "A", "type": "Central"}, "remoteStartId": 1},
                                 "expires": run.now + 5, "dispatched": False}
    run(IDLE, dt=10)
    assert run.state["remote_start"] is None


def test_a_scheduled_reset_runs_when_the_transaction_ends() -> None:
    """Reset OnIdle during a transaction becomes an immediate reset once it has ended."""
    run = Run()
    run(CHARGING)
    run.state["pending_reset"] = True
    run(CHARGING)
    assert run.followups == []
    run(reading())
    assert run.followups == [("Reset", {"type": "Immediate"})]


def test_an_installed_firmware_is_reported_when_the_version_changes() -> None:
    """After UpdateFirmware, a new firmware version in the poll sends FirmwareStatusNotification Installed."""
    run = Run()
    run(reading(firmware="100"))
    run.state["firmware_request"] = 7
    assert run(reading(firmware="100")) == []
    assert run(reading(firmware="101")) == [("FirmwareStatusNotification", {"status": "Installed", "requestId": 7})]


# ---------------------------------------------------------------- charging profiles


def profile(unit: str, limit: float, phases: int | None = None, **kw: Any) -> dict[str, Any]:
    period: dict[str, Any] = {"startPeriod": 0, "limit": limit}
    if phases:
        period["numberPhases"] = phases
    return {"id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": [{"id": 1, "chargingRateUnit": unit, "chargingSchedulePeriod": [period],
                                  "startSchedule": "2023-01-01T00:00:00Z"}], **kw}


@pytest.mark.parametrize(
    ("prof", "r", "amps"),
    [
        (profile("A", 16), Reading(), 16.0),
        (profile("W", 11040), Reading(), 16.0),  # 11040 W / (230 V x 3)
        (profile("W", 7360, phases=1), Reading(voltage=230.0), 32.0),
        (profile("W", 11000), Reading(voltage=240.0, phases=3), 15.2),  # rounded down, never above the limit
        (profile("A", 10, validTo="2023-06-01T00:00:00Z"), Reading(), None),  # expired
    ],
)
def test_charging_profiles_become_a_current_limit_in_amps(prof: dict[str, Any], r: Reading, amps: float | None) -> None:
    """A and W profiles give per-phase amps, W converted with the charger's voltage and phases."""
    assert vb.profile_limit_a(prof, 1_700_000_000.0, r, CHARGER) == amps


def test_the_active_period_of_a_schedule_is_the_last_one_started() -> None:
    """A schedule with several periods limits to the one in force now."""
    prof = profile("A", 32)
    prof["chargingSchedule"][0]["chargingSchedulePeriod"] = [
        {"startPeriod": 0, "limit": 32}, {"startPeriod": 3600, "limit": 10}]
    start = vb.parse_ts("2023-01-01T00:00:00Z")
    assert vb.profile_limit_a(prof, start + 60, Reading(), CHARGER) == 32.0
    assert vb.profile_limit_a(prof, start + 4000, Reading(), CHARGER) == 10.0


# ---------------------------------------------------------------- CSMS commands


class FakeAdapter(VendorAdapter):
    """Every primitive is one POST to /cmd/<name>; set_available is missing."""

    name: ClassVar[str] = "fake"
    vendor_name: ClassVar[str] = "Fake"
    default_base_url: ClassVar[str] = "http://fake"

    def login(self, credentials: Credentials, now: float) -> Flow[Token]:
        yield ApiRequest("POST", "/login", auth=False)
        return Token("t", now + 60)

    def discover(self) -> Flow[list[ChargerInfo]]:
        yield ApiRequest("GET", "/chargers")
        return [CHARGER]

    def poll(self, charger: ChargerInfo, state: dict[str, Any]) -> Flow[Reading]:
        yield ApiRequest("GET", "/state")
        return Reading()

    def _cmd(self, name: str, json: Any = None) -> Flow[None]:
        yield from vb.expect_ok(ApiRequest("POST", f"/cmd/{name}", json=json))

    def start(self, charger: ChargerInfo, reading: Reading, state: dict[str, Any]) -> Flow[None]:
        return self._cmd("start")

    def stop(self, charger: ChargerInfo, reading: Reading, state: dict[str, Any]) -> Flow[None]:
        return self._cmd("stop")

    def set_current(self, charger: ChargerInfo, amps: float | None, reading: Reading) -> Flow[None]:
        return self._cmd("current", {"amps": amps})

    def reboot(self, charger: ChargerInfo) -> Flow[None]:
        return self._cmd("reboot")

    def update_firmware(self, charger: ChargerInfo) -> Flow[None]:
        return self._cmd("firmware")


def command(action: str, payload: dict[str, Any], r: Reading | None = PLUGGED, state: dict[str, Any] | None = None,
            respond: Callable[[ApiRequest], ApiResponse] | None = None,
            ) -> tuple[vb.CommandOutcome, list[ApiRequest], dict[str, Any]]:
    sent: list[ApiRequest] = []
    st = state if state is not None else vb.new_state()

    def answer(req: ApiRequest) -> ApiResponse:
        sent.append(req)
        return respond(req) if respond else ApiResponse(200, {})

    flow = vb.handle_csms_call(FakeAdapter(), CHARGER, action, payload, r, st, 1_700_000_000.0)
    outcome = vb.drive(flow, answer)
    if outcome.response is not None and not action.startswith("_"):
        bad = schemas.validate(Version.V201, action, outcome.response, response=True)
        assert bad is None, f"{action} answer: {bad.describe()} in {outcome.response}"
    valid(outcome.messages)
    return outcome, sent, st


def open_tx(tx_id: str = "T1") -> dict[str, Any]:
    st = vb.new_state()
    st["tx"] = {"id": tx_id, "seq": 3, "vendor_session": None, "start_register": 0.0, "last_register": 100.0,
                "last_power": 0.0, "last_update": 0.0, "charging_state": "Charging", "id_token": None,
                "id_token_sent": False}
    return st


START = {"idToken": {"idToken": "APP", "type": "Central"}, "remoteStartId": 5}
PROFILE = {"evseId": 1, "chargingProfile": profile("A", 13)}


@pytest.mark.parametrize(
    ("action", "payload", "r", "state", "paths", "answer"),
    [
        ("RequestStartTransaction", START, PLUGGED, None, ["/cmd/start"], {"status": "Accepted"}),
        ("RequestStartTransaction", START, IDLE, None, [], {"status": "Accepted"}),  # waits for the EV
        ("RequestStartTransaction", {**START, "evseId": 2}, PLUGGED, None, [], "Rejected"),
        ("RequestStartTransaction", START, CHARGING, "tx", [], "Rejected"),
        ("RequestStopTransaction", {"transactionId": "T1"}, CHARGING, "tx", ["/cmd/stop"], {"status": "Accepted"}),
        ("RequestStopTransaction", {"transactionId": "nope"}, CHARGING, "tx", [], "Rejected"),
        ("SetChargingProfile", PROFILE, PLUGGED, None, ["/cmd/current"], {"status": "Accepted"}),
        ("Reset", {"type": "Immediate"}, PLUGGED, None, ["/cmd/reboot"], {"status": "Accepted"}),
        ("Reset", {"type": "OnIdle"}, CHARGING, "tx", [], {"status": "Scheduled"}),
        ("ChangeAvailability", {"operationalStatus": "Inoperative"}, PLUGGED, None, [], "Rejected"),  # no primitive
        ("UpdateFirmware", {"requestId": 3, "firmware": {"location": "http://x/fw", "retrieveDateTime":
                                                         "2023-01-01T00:00:00Z"}}, PLUGGED, None, ["/cmd/firmware"],
         "Accepted"),
        ("TriggerMessage", {"requestedMessage": "StatusNotification"}, PLUGGED, None, [], {"status": "Accepted"}),
        ("TriggerMessage", {"requestedMessage": "BootNotification"}, PLUGGED, None, [], "Rejected"),
        ("TriggerMessage", {"requestedMessage": "LogStatusNotification"}, PLUGGED, None, [],
         {"status": "NotImplemented"}),
        ("TriggerMessage", {"requestedMessage": "TransactionEvent"}, PLUGGED, None, [], "Rejected"),
        ("GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"}, PLUGGED, None, [],
         {"status": "NotSupported"}),
    ],
)
def test_csms_commands_become_vendor_requests_and_the_right_answer(
    action: str, payload: dict[str, Any], r: Reading, state: str | None, paths: list[str], answer: Any
) -> None:
    """Each CSMS command sends the vendor requests it needs and answers with a valid 2.0.1 response."""
    outcome, sent, _ = command(action, payload, r, open_tx() if state == "tx" else None)
    assert [req.path for req in sent] == paths
    assert outcome.error is None
    if isinstance(answer, dict):
        assert outcome.response == answer
    else:
        assert outcome.response is not None and outcome.response["status"] == answer


def test_a_remote_stop_ends_the_transaction_with_reason_remote_once_charging_stops() -> None:
    """After RequestStopTransaction is accepted, the next not-charging poll sends Ended/RemoteStop."""
    _, _, st = command("RequestStopTransaction", {"transactionId": "T1"}, CHARGING, open_tx())
    run = Run(st)
    msgs = run(PAUSED)
    end = next(p for a, p in msgs if a == "TransactionEvent")
    assert (end["eventType"], end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == (
        "Ended", "RemoteStop", "Remote")


def test_an_immediate_reset_ends_the_running_transaction() -> None:
    """Reset Immediate during a transaction answers Accepted and ends it with ImmediateReset."""
    outcome, _, st = command("Reset", {"type": "Immediate"}, CHARGING, open_tx())
    (_, end), = outcome.messages
    assert (end["eventType"], end["triggerReason"], end["transactionInfo"]["stoppedReason"]) == (
        "Ended", "ResetCommand", "ImmediateReset")
    assert st["tx"] is None and st["quiet_until"] > 1_700_000_000.0


@pytest.mark.parametrize("action", ["UnlockConnector", "ReserveNow", "DataTransfer", "SendLocalList"])
def test_commands_a_vendor_cloud_cannot_do_get_callerror_not_supported(action: str) -> None:
    """Actions without a vendor equivalent are refused with CALLERROR NotSupported (and a reason)."""
    outcome, sent, _ = command(action, {})
    assert sent == [] and outcome.response is None
    assert outcome.error is not None and outcome.error[0] is ErrorKind.NOT_SUPPORTED


@pytest.mark.parametrize(
    ("r", "reason"),
    [(Reading.unreachable(), "CloudUnavailable"), (Reading(online=False), "ChargerOffline")],
)
def test_commands_while_the_charger_cannot_be_reached_are_rejected(r: Reading, reason: str) -> None:
    """A command while the cloud or the charger is offline is Rejected with the reason, nothing is sent."""
    outcome, sent, _ = command("Reset", {"type": "Immediate"}, r)
    assert sent == []
    assert outcome.response == {"status": "Rejected", "statusInfo": {"reasonCode": reason}}


def test_a_vendor_refusal_is_a_rejection() -> None:
    """A 4xx answer from the vendor makes the OCPP answer Rejected."""
    outcome, _, _ = command("Reset", {"type": "Immediate"}, respond=lambda r: ApiResponse(400, {}))
    assert outcome.response is not None and outcome.response["status"] == "Rejected"
    assert outcome.response["statusInfo"]["reasonCode"] == "VendorRejected"


def test_an_outage_during_a_command_is_a_rejection() -> None:
    """The cloud failing mid-command (VendorUnavailable thrown into the flow) answers Rejected."""
    def down(req: ApiRequest) -> ApiResponse:
        raise VendorUnavailable("HTTP 503")

    outcome, _, _ = command("RequestStartTransaction", START, respond=down)
    assert outcome.response is not None
    assert outcome.response["statusInfo"]["reasonCode"] == "CloudUnavailable"


def test_a_failed_profile_leaves_the_previous_one_in_place() -> None:
    """SetChargingProfile the vendor refuses does not replace the stored profile."""
    st = vb.new_state()
    st["profile"] = {"id": 9}
    outcome, _, st = command("SetChargingProfile", PROFILE, state=st, respond=lambda r: ApiResponse(500, {}))
    assert outcome.response is not None and outcome.response["status"] == "Rejected"
    assert st["profile"] == {"id": 9}


def test_clearing_the_profile_lifts_the_limit() -> None:
    """ClearChargingProfile for the stored profile sends set_current(None) and forgets it."""
    _, _, st = command("SetChargingProfile", PROFILE)
    outcome, sent, st = command("ClearChargingProfile", {"chargingProfileId": 1}, state=st)
    assert outcome.response == {"status": "Accepted"}
    assert sent[0].json == {"amps": None}
    assert st["profile"] is None


def test_get_and_set_variables_answer_unknown_component_per_item() -> None:
    """GetVariables/SetVariables answer every item UnknownComponent: there is no device model."""
    item = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    outcome, _, _ = command("GetVariables", {"getVariableData": [item]})
    assert outcome.response == {"getVariableResult": [{"attributeStatus": "UnknownComponent", **item}]}
    outcome, _, _ = command("SetVariables", {"setVariableData": [{**item, "attributeValue": "60"}]})
    assert outcome.response == {"setVariableResult": [{"attributeStatus": "UnknownComponent", **item}]}


@pytest.mark.parametrize("requested", ["StatusNotification", "Heartbeat", "MeterValues", "FirmwareStatusNotification"])
def test_triggered_messages_are_valid(requested: str) -> None:
    """What a TriggerMessage asks for is built from a fresh reading, valid 2.0.1."""
    msgs = valid(vb.triggered_messages(requested, CHARGING, vb.new_state(), 1_700_000_000.0))
    assert [a for a, _ in msgs] == [requested]


# ---------------------------------------------------------------- registry and logging


def test_the_built_in_adapters_are_found_by_name() -> None:
    """adapter_for knows easee and zaptec without configuration."""
    assert vb.adapter_for("easee").name == "easee"
    assert vb.adapter_for("zaptec", {"max_current": 16}).options == {"max_current": 16}
    assert {"easee", "zaptec"} <= set(vb.available())


def test_an_unknown_adapter_name_lists_the_known_ones() -> None:
    """A typo in the config names the adapters that exist."""
    with pytest.raises(KeyError, match="easee"):
        vb.adapter_for("easy")


def test_third_party_adapters_come_from_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """An adapter installed under ocpp_gateway.vendor_adapters is found by its entry-point name."""

    class EntryPoint:
        name = "acme"

        def load(self) -> type[VendorAdapter]:
            return FakeAdapter

    def eps(group: str) -> list[EntryPoint]:
        assert group == vb.ENTRY_POINT_GROUP
        return [EntryPoint()]

    monkeypatch.setattr(vendor_registry, "entry_points", eps)
    monkeypatch.setattr(vendor_registry, "_REGISTERED", {})
    assert isinstance(vb.adapter_for("acme"), FakeAdapter)
    assert "acme" in vb.available()


def test_secrets_never_reach_the_log_summary() -> None:
    """Passwords and tokens in a request body are masked in what the message log shows."""
    req = ApiRequest("POST", "/login", json={"userName": "me", "password": "p", "nested": {"refreshToken": "r"}},
                     form={"password": "p", "grant_type": "password"})
    text = str(req.summary())
    assert "'p'" not in text and "'r'" not in text and "'me'" not in text
    assert req.summary()["form"]["grant_type"] == "password"


def test_credentials_do_not_show_the_password_in_their_repr() -> None:
    """A Credentials object printed by accident hides the password."""
    assert "hunter2" not in repr(Credentials("me", "hunter2"))
