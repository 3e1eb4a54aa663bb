"""1.6J charger -> 2.0.1 CSMS, playbook style: whole sessions through the translator, state persisted as JSON."""

from __future__ import annotations

import copy
import json
from typing import Any

from adapters.base import Context, Side
from adapters.v16_v201 import V16ToV201
from tests.unit.test_v16_v201 import AUTH_OK, BOOT_OK, NOW, Answer, Trace, drive, make_ctx

CHARGER, CSMS = Side.CHARGER, Side.CSMS


class Session:
    """One charger's translator and context; every step checks the state is JSON and was saved when changed."""

    def __init__(self, options: dict[str, Any] | None = None, state: dict[str, Any] | None = None) -> None:
        self.options = options or {}
        self.tr = V16ToV201(self.options)
        self.ctx: Context = make_ctx(state)

    def step(self, origin: Side, action: str, payload: dict[str, Any], answers: list[Answer] = ()) -> Trace:  # type: ignore[assignment]
        before = copy.deepcopy(self.ctx.state)
        self.ctx.dirty = False
        trace = drive(self.tr, self.ctx, origin, action, payload, list(answers))
        assert json.loads(json.dumps(self.ctx.state)) == self.ctx.state, "state must be plain JSON"
        if self.ctx.state != before:
            assert self.ctx.dirty, f"{action} changed the state without ctx.save()"
        return trace

    def restarted(self) -> Session:
        """The same charger after a gateway restart: a new translator and context from the stored JSON."""
        return Session(self.options, json.loads(json.dumps(self.ctx.state)))

    def events(self, *traces: Trace) -> list[dict[str, Any]]:
        out = []
        for t in traces:
            out += [c.payload for c in t.calls if c.action == "TransactionEvent"]
            out += t.notified("TransactionEvent")
        return out


def energy_wh(event: dict[str, Any], context: str) -> float:
    """The Energy.Active.Import.Register reading of a context in an event, in Wh."""
    for mv in event.get("meterValue", []):
        for sv in mv["sampledValue"]:
            if sv.get("context") == context and sv.get("measurand", "Energy.Active.Import.Register") == (
                "Energy.Active.Import.Register"
            ):
                unit = sv.get("unitOfMeasure", {})
                assert unit.get("unit", "Wh") == "Wh"
                return float(sv["value"]) * 10.0 ** int(unit.get("multiplier", 0))
    raise AssertionError(f"no {context} energy reading in {event}")


def status(connector: int, value: str) -> dict[str, Any]:
    return {"connectorId": connector, "errorCode": "NoError", "status": value, "timestamp": NOW}


def test_full_charging_session() -> None:
    """Boot, authorize, start, meter values, status changes, stop: one transaction, seqNo 0..n, energy kept."""
    s = Session()
    boot = s.step(CHARGER, "BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "W1"}, [BOOT_OK])
    assert boot.reply == BOOT_OK
    s.step(CHARGER, "StatusNotification", status(1, "Preparing"), [{}])
    auth = s.step(CHARGER, "Authorize", {"idTag": "CARD-1"}, [AUTH_OK])
    assert auth.reply == {"idTagInfo": {"status": "Accepted"}}
    start = s.step(
        CHARGER,
        "StartTransaction",
        {"connectorId": 1, "idTag": "CARD-1", "meterStart": 10_000, "timestamp": NOW},
        [AUTH_OK],
    )
    tx_int = start.reply["transactionId"]  # type: ignore[index]
    charging = s.step(CHARGER, "StatusNotification", status(1, "Charging"), [{}])
    periodic = s.step(
        CHARGER,
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": tx_int,
            "meterValue": [
                {
                    "timestamp": NOW,
                    "sampledValue": [
                        {"value": "11.5", "context": "Sample.Periodic", "unit": "kWh"},
                        {
                            "value": "7.2",
                            "context": "Sample.Periodic",
                            "measurand": "Power.Active.Import",
                            "unit": "kW",
                        },
                    ],
                }
            ],
        },
        [{}],
    )
    suspended = s.step(CHARGER, "StatusNotification", status(1, "SuspendedEV"), [{}])
    stop = s.step(
        CHARGER,
        "StopTransaction",
        {"transactionId": tx_int, "meterStop": 12_345, "timestamp": NOW, "idTag": "CARD-1", "reason": "EVDisconnected"},
        [{"idTokenInfo": {"status": "Accepted"}}],
    )
    s.step(CHARGER, "StatusNotification", status(1, "Finishing"), [{}])

    events = s.events(start, charging, periodic, suspended, stop)
    assert [e["eventType"] for e in events] == ["Started", "Updated", "Updated", "Updated", "Ended"]
    assert [e["seqNo"] for e in events] == [0, 1, 2, 3, 4]
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
    assert events[0]["transactionInfo"]["chargingState"] == "EVConnected"
    assert [e["transactionInfo"].get("chargingState") for e in events[1:4]] == ["Charging", None, "SuspendedEV"]
    assert events[2]["triggerReason"] == "MeterValuePeriodic"
    assert energy_wh(events[0], "Transaction.Begin") == 10_000
    assert energy_wh(events[2], "Sample.Periodic") == 11_500
    power = events[2]["meterValue"][0]["sampledValue"][1]
    assert power["value"] * 10 ** power["unitOfMeasure"]["multiplier"] == 7200
    assert energy_wh(events[4], "Transaction.End") == 12_345
    assert energy_wh(events[4], "Transaction.End") - energy_wh(events[0], "Transaction.Begin") == 2_345
    assert events[4]["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert stop.reply == {"idTagInfo": {"status": "Accepted"}}
    assert s.ctx.state["v16_v201"]["tx"] == {}


def test_remote_start_and_remote_stop() -> None:
    """RequestStart -> RemoteStart -> StartTransaction(RemoteStart, remoteStartId); RequestStop -> RemoteStop."""
    s = Session()
    req = {"evseId": 1, "remoteStartId": 314, "idToken": {"idToken": "APP-7", "type": "Central"}}
    remote = s.step(CSMS, "RequestStartTransaction", req, [{"status": "Accepted"}])
    assert remote.call("RemoteStartTransaction") == {"idTag": "APP-7", "connectorId": 1}
    start = s.step(
        CHARGER, "StartTransaction", {"connectorId": 1, "idTag": "APP-7", "meterStart": 0, "timestamp": NOW}, [AUTH_OK]
    )
    started = start.call("TransactionEvent")
    assert (started["triggerReason"], started["transactionInfo"]["remoteStartId"]) == ("RemoteStart", 314)
    tx = started["transactionInfo"]["transactionId"]
    stop_req = s.step(CSMS, "RequestStopTransaction", {"transactionId": tx}, [{"status": "Accepted"}])
    assert stop_req.call("RemoteStopTransaction") == {"transactionId": start.reply["transactionId"]}  # type: ignore[index]
    stop = s.step(
        CHARGER,
        "StopTransaction",
        {"transactionId": start.reply["transactionId"], "meterStop": 900, "timestamp": NOW, "reason": "Remote"},  # type: ignore[index]
        [{}],
    )
    ended = stop.call("TransactionEvent")
    assert ended["transactionInfo"] == {"transactionId": tx, "stoppedReason": "Remote"}
    assert ended["triggerReason"] == "RemoteStop"


def test_device_model_round() -> None:
    """SetVariables then GetVariables then GetBaseReport, the way a 2.0.1 CSMS provisions a new station."""
    s = Session()
    hb = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    put = s.step(CSMS, "SetVariables", {"setVariableData": [{**hb, "attributeValue": "120"}]}, [{"status": "Accepted"}])
    assert put.call("ChangeConfiguration") == {"key": "HeartbeatInterval", "value": "120"}
    got = s.step(
        CSMS,
        "GetVariables",
        {"getVariableData": [hb]},
        [{"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "120"}]}],
    )
    assert got.reply == {"getVariableResult": [{**hb, "attributeStatus": "Accepted", "attributeValue": "120"}]}
    report = s.step(
        CSMS,
        "GetBaseReport",
        {"requestId": 1, "reportBase": "FullInventory"},
        [{"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "120"}]}],
    )
    assert report.reply == {"status": "Accepted"}
    names = [e["component"]["name"] for e in report.notified("NotifyReport")[0]["reportData"]]
    assert names == ["OCPPCommCtrlr", "ChargingStation"]


def test_state_survives_a_restart_mid_transaction() -> None:
    """Stop the gateway mid-transaction, rebuild from the stored JSON: Ended keeps the transactionId and seqNo."""
    s = Session({"id_token_type": "ISO15693"})
    remote = {"evseId": 2, "remoteStartId": 5, "idToken": {"idToken": "APP", "type": "Central"}}
    s.step(CSMS, "RequestStartTransaction", remote, [{"status": "Accepted"}])
    start = s.step(
        CHARGER, "StartTransaction", {"connectorId": 1, "idTag": "CARD", "meterStart": 100, "timestamp": NOW}, [AUTH_OK]
    )
    tx = start.call("TransactionEvent")["transactionInfo"]["transactionId"]
    s.step(CHARGER, "StatusNotification", status(1, "Charging"), [{}])
    s.step(
        CSMS,
        "GetLog",
        {"logType": "DiagnosticsLog", "requestId": 77, "log": {"remoteLocation": "ftp://x"}},
        [{"fileName": "d.zip"}],
    )

    after = s.restarted()
    stop = after.step(CHARGER, "StopTransaction", {"transactionId": 1, "meterStop": 600, "timestamp": NOW}, [{}]).call(
        "TransactionEvent"
    )
    assert stop["transactionInfo"]["transactionId"] == tx
    assert stop["seqNo"] == 2  # Started 0, ChargingStateChanged 1
    assert stop["evse"] == {"id": 1, "connectorId": 1}
    # the pending remote start, the GetLog requestId and the integer counter survived too
    remote_start = after.step(
        CHARGER, "StartTransaction", {"connectorId": 2, "idTag": "APP", "meterStart": 0, "timestamp": NOW}, [AUTH_OK]
    )
    assert remote_start.call("TransactionEvent")["transactionInfo"]["remoteStartId"] == 5
    assert remote_start.reply["transactionId"] == 2  # type: ignore[index]
    log = after.step(CHARGER, "DiagnosticsStatusNotification", {"status": "Uploading"}, [{}])
    assert log.call("LogStatusNotification") == {"status": "Uploading", "requestId": 77}


def test_restart_keeps_a_scheduled_reset() -> None:
    """A Reset(OnIdle) waiting for a transaction is still sent after a restart, when that transaction ends."""
    s = Session()
    s.step(CHARGER, "StartTransaction", {"connectorId": 1, "idTag": "C", "meterStart": 0, "timestamp": NOW}, [AUTH_OK])
    assert s.step(CSMS, "Reset", {"type": "OnIdle"}).reply == {"status": "Scheduled"}
    after = s.restarted()
    stop = after.step(CHARGER, "StopTransaction", {"transactionId": 1, "meterStop": 1, "timestamp": NOW}, [{}])
    assert [(n.to, n.action) for n in stop.notifies] == [(CHARGER, "Reset")]
    boot = after.step(CHARGER, "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}, [BOOT_OK])
    assert boot.call("BootNotification")["reason"] == "RemoteReset"


def test_only_a_changed_status_saves_the_state() -> None:
    """A StatusNotification repeating the stored status leaves the state unsaved; a new status or error saves it."""
    s = Session()
    s.step(CHARGER, "StatusNotification", status(1, "Available"), [{}])
    assert s.ctx.dirty
    s.step(CHARGER, "StatusNotification", status(1, "Available"), [{}])
    assert not s.ctx.dirty
    s.step(CHARGER, "StatusNotification", status(1, "Preparing"), [{}])
    assert s.ctx.dirty
    faulted = {**status(1, "Preparing"), "errorCode": "GroundFailure"}
    s.step(CHARGER, "StatusNotification", faulted, [{}])
    assert s.ctx.dirty and s.ctx.state["v16_v201"]["connectors"]["1"]["problem"] is True
    s.step(CHARGER, "StatusNotification", status(1, "Preparing"), [{}])
    assert s.ctx.dirty and s.ctx.state["v16_v201"]["connectors"]["1"]["problem"] is False
    s.step(CHARGER, "StatusNotification", status(1, "Preparing"), [{}])
    assert not s.ctx.dirty
