"""OCPP 2.0.1 messages a vendor charger sends: boot, and what each poll's ``Reading`` says changed."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from adapters.v16_v201.convert import infer_token_type
from adapters.vendor_base.model import ChargerInfo, Reading
from adapters.vendor_base.profiles import profile_limit_a

EVSE = {"id": 1, "connectorId": 1}
ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"

Message = tuple[str, dict[str, Any]]  # (action, payload) of a CALL the charger sends
Followup = tuple[str, dict[str, Any]]  # (command, payload) the runner runs through handle_csms_call


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def boot_notification(charger: ChargerInfo, reason: str = "PowerUp") -> dict[str, Any]:
    """BootNotificationRequest from what discovery found (fields cut to the schema's lengths)."""
    station: dict[str, Any] = {"model": charger.model[:20], "vendorName": charger.vendor[:50]}
    if charger.serial:
        station["serialNumber"] = charger.serial[:25]
    if charger.firmware:
        station["firmwareVersion"] = str(charger.firmware)[:50]
    return {"reason": reason, "chargingStation": station}


def new_state() -> dict[str, Any]:
    """A charger's vendor state before its first poll."""
    return {
        "status": None,  # last connectorStatus reported
        "tx": None,  # the open transaction, if any
        "available": True,  # what ChangeAvailability asked for
        "remote_start": None,
        "stop_requested": None,
        "pending_reset": False,
        "pending_availability": None,
        "profile": None,
        "applied_limit": None,
        "firmware": None,
        "firmware_request": None,
        "tx_count": 0,
    }


@dataclass(slots=True)
class Observation:
    messages: list[Message]
    state: dict[str, Any]
    followups: list[Followup] = field(default_factory=list)


def _sampled(value: float, measurand: str, unit: str, context: str) -> dict[str, Any]:
    return {"value": round(float(value), 3), "measurand": measurand, "context": context,
            "unitOfMeasure": {"unit": unit}}


def meter_value(reading: Reading, now: float, context: str, register_wh: float | None = None) -> list[dict[str, Any]]:
    """A TransactionEvent/MeterValues meterValue list: energy register (Wh) and power (W), if known."""
    register = register_wh if register_wh is not None else reading.register_wh
    samples = []
    if register is not None:
        samples.append(_sampled(register, ENERGY, "Wh", context))
    if reading.power_w is not None and context != "Transaction.End":
        samples.append(_sampled(reading.power_w, POWER, "W", context))
    if not samples:
        return []
    return [{"timestamp": iso(now), "sampledValue": samples}]


def _status(status: str, now: float) -> Message:
    return "StatusNotification", {"timestamp": iso(now), "connectorStatus": status, "evseId": 1, "connectorId": 1}


def _id_token(token: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if token is None:
        return None
    if isinstance(token, dict):
        return token
    token = token[:36]
    return {"idToken": token, "type": infer_token_type(token)}


def _tx_event(
    event: str, tx: dict[str, Any], trigger: str, now: float, info: dict[str, Any],
    meter: list[dict[str, Any]], id_token: dict[str, Any] | None = None, offline: bool = False,
) -> Message:
    payload: dict[str, Any] = {
        "eventType": event,
        "timestamp": iso(now),
        "triggerReason": trigger,
        "seqNo": tx["seq"],
        "transactionInfo": {"transactionId": tx["id"], **info},
        "evse": dict(EVSE),
    }
    tx["seq"] += 1
    if offline:
        payload["offline"] = True
    if meter:
        payload["meterValue"] = meter
    if id_token is not None:
        payload["idToken"] = id_token
    return "TransactionEvent", payload


def _connector_status(reading: Reading, state: dict[str, Any]) -> str:
    if not reading.reachable or not reading.online:
        return "Unavailable"
    if not state.get("available", True) or reading.enabled is False:
        return "Unavailable" if reading.connector_status != "Faulted" else "Faulted"
    return reading.connector_status


def _end_reason(reading: Reading, tx: dict[str, Any], state: dict[str, Any]) -> tuple[str, str] | None:
    """(stoppedReason, triggerReason) when this reading ends the open transaction, else None."""
    if not reading.ev_connected:
        return "EVDisconnected", "EVDeparted"
    requested = state.get("stop_requested")
    if requested and not reading.charging:
        return str(requested["reason"]), str(requested["trigger"])
    vendor_session = tx.get("vendor_session")
    if vendor_session is not None and reading.session_id != vendor_session:
        # The vendor closed its session while the EV stayed plugged in (deauthorised at the charger or in its app).
        done = reading.completed
        if done is not None and done.session_id == vendor_session and done.stopped_locally:
            return "Local", "StopAuthorized"
        if reading.session_id is None:
            return "DeAuthorized", "Deauthorized"
        return "Other", "ChargingStateChanged"
    return None


def end_transaction(
    state: dict[str, Any], reading: Reading, now: float, stopped: str, trigger: str, offline: bool = False
) -> Message:
    """The Ended event of the open transaction (and forget it)."""
    tx = state["tx"]
    register = reading.register_wh if reading.reachable and reading.online else None
    done = reading.completed
    if register is None:
        register = tx.get("last_register")
    if register is not None and tx.get("last_register") is not None:
        register = max(register, tx["last_register"])  # a register never runs backwards
    id_token = None
    if not tx.get("id_token_sent"):
        id_token = _id_token(tx.get("id_token") or (done.id_token if done and done.session_id == tx.get(
            "vendor_session") else None) or reading.id_token)
    info = {"stoppedReason": stopped, "chargingState": reading.charging_state if reading.ev_connected else "Idle"}
    if not reading.reachable or not reading.online:
        info["chargingState"] = tx.get("charging_state", "Idle")
    meter = meter_value(reading, now, "Transaction.End", register) if register is not None else []
    msg = _tx_event("Ended", tx, trigger, now, info, meter, id_token, offline)
    state["tx"] = None
    state["stop_requested"] = None
    return msg


def observe(
    charger: ChargerInfo, reading: Reading, prev: dict[str, Any], now: float,
    new_id: Callable[[], str], meter_interval: float = 0.0,
) -> Observation:
    """The OCPP 2.0.1 CALLs this poll calls for, the charger's new state, and follow-up commands.

    Pure: ``prev`` is not modified. While the cloud or the charger is
    unreachable the connector is Unavailable and an open transaction stays
    open; when the charger comes back the transaction is continued or ended
    from what the vendor reports, so nothing is lost or started twice.
    """
    st = copy.deepcopy(prev) if prev else new_state()
    for key, value in new_state().items():
        st.setdefault(key, value)
    out: list[Message] = []
    followups: list[Followup] = []
    if reading.memo is not None:
        st["memo"] = reading.memo
    status = _connector_status(reading, st)
    live = reading.reachable and reading.online
    tx = st["tx"]

    if live and tx is not None:
        reason = _end_reason(reading, tx, st)
        if reason is not None:
            out.append(end_transaction(st, reading, now, *reason))
            tx = None

    if status != st["status"]:
        out.append(_status(status, now))
        st["status"] = status

    quiet = now < float(st.get("quiet_until") or 0)  # a rebooting charger may still look busy for a while
    if live and tx is None and reading.charging and not quiet:
        tx = _start_transaction(st, reading, now, new_id, out)
    elif live and tx is not None:
        _update_transaction(st, tx, reading, now, meter_interval, out)

    # Things that were waiting for this moment.
    remote = st.get("remote_start")
    if remote is not None:
        if now > remote.get("expires", now):
            st["remote_start"] = None
        elif live and reading.ev_connected and tx is None and not remote.get("dispatched"):
            remote["dispatched"] = True
            followups.append(("RequestStartTransaction", {**remote["request"], "_replay": True}))
    if live and st["tx"] is None:
        if st.get("pending_reset"):
            st["pending_reset"] = False
            followups.append(("Reset", {"type": "Immediate"}))
        if st.get("pending_availability"):
            followups.append(("ChangeAvailability", {"operationalStatus": st["pending_availability"]}))
            st["pending_availability"] = None
    if live and st.get("profile") is not None:
        limit = profile_limit_a(st["profile"], now, reading, charger)
        if limit != st.get("applied_limit"):
            followups.append(("_apply_limit", {}))
    if live and reading.firmware:
        request = st.get("firmware_request")
        if request is not None and st.get("firmware") and reading.firmware != st["firmware"]:
            out.append(("FirmwareStatusNotification", {"status": "Installed", "requestId": request}))
            st["firmware_request"] = None
        st["firmware"] = reading.firmware
    return Observation(out, st, followups)


def _start_transaction(
    st: dict[str, Any], reading: Reading, now: float, new_id: Callable[[], str], out: list[Message]
) -> dict[str, Any]:
    remote = st.get("remote_start")
    st["tx_count"] = int(st.get("tx_count", 0)) + 1
    tx: dict[str, Any] = {
        "id": new_id()[:36],
        "seq": 0,
        "vendor_session": reading.session_id,
        "start_register": reading.register_wh,
        "last_register": reading.register_wh,
        "last_power": reading.power_w,
        "last_update": now,
        "charging_state": reading.charging_state,
        "id_token": None,
        "id_token_sent": False,
    }
    info: dict[str, Any] = {"chargingState": reading.charging_state}
    id_token: dict[str, Any] | None = None
    trigger = "ChargingStateChanged"
    if remote is not None:
        info["remoteStartId"] = remote["request"]["remoteStartId"]
        id_token = remote["request"]["idToken"]
        trigger = "RemoteStart"
        st["remote_start"] = None
    elif reading.id_token:
        id_token = _id_token(reading.id_token)
        trigger = "Authorized"
    if id_token is not None:
        tx["id_token"] = id_token
        tx["id_token_sent"] = True
    st["tx"] = tx
    out.append(_tx_event("Started", tx, trigger, now, info, meter_value(reading, now, "Transaction.Begin"), id_token))
    return tx


def _update_transaction(
    st: dict[str, Any], tx: dict[str, Any], reading: Reading, now: float, meter_interval: float,
    out: list[Message],
) -> None:
    register = reading.register_wh
    if register is not None and tx.get("last_register") is not None:
        register = max(register, tx["last_register"])
    changed_state = reading.charging_state != tx.get("charging_state")
    id_token = None
    if not tx.get("id_token_sent") and reading.id_token:
        id_token = _id_token(reading.id_token)
    due = now - float(tx.get("last_update", 0)) >= meter_interval
    moved = register != tx.get("last_register") or reading.power_w != tx.get("last_power")
    if not (changed_state or id_token is not None or (due and moved)):
        return
    if changed_state:
        trigger = "ChargingStateChanged"
    elif id_token is not None:
        trigger = "Authorized"
    else:
        trigger = "MeterValuePeriodic"
    info = {"chargingState": reading.charging_state} if changed_state else {}
    meter = meter_value(reading, now, "Sample.Periodic", register)
    out.append(_tx_event("Updated", tx, trigger, now, info, meter, id_token))
    if id_token is not None:
        tx["id_token"] = id_token
        tx["id_token_sent"] = True
    tx["charging_state"] = reading.charging_state
    tx["last_register"] = register
    tx["last_power"] = reading.power_w
    tx["last_update"] = now
    st["tx"] = tx


def triggered_messages(requested: str, reading: Reading, state: dict[str, Any], now: float) -> list[Message]:
    """The CALLs a TriggerMessage asks for, from a fresh poll (``state`` is updated in place)."""
    if requested == "StatusNotification":
        status = _connector_status(reading, state)
        state["status"] = status
        return [_status(status, now)]
    if requested == "Heartbeat":
        return [("Heartbeat", {})]
    if requested == "MeterValues":
        meter = meter_value(reading, now, "Trigger")
        return [("MeterValues", {"evseId": 1, "meterValue": meter})] if meter else []
    if requested == "TransactionEvent" and state.get("tx") is not None:
        tx = state["tx"]
        return [_tx_event("Updated", tx, "Trigger", now, {"chargingState": reading.charging_state},
                          meter_value(reading, now, "Trigger"))]
    if requested == "FirmwareStatusNotification":
        request = state.get("firmware_request")
        if request is not None:
            return [("FirmwareStatusNotification", {"status": "Installing", "requestId": request})]
        return [("FirmwareStatusNotification", {"status": "Idle"})]
    return []
