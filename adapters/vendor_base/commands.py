"""CSMS commands -> flows of vendor requests -> the OCPP 2.0.1 answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.vendor_base.adapter import VendorAdapter
from adapters.vendor_base.api import Flow, Unsupported, VendorApiError, VendorUnavailable
from adapters.vendor_base.messages import Followup, Message, end_transaction, new_state
from adapters.vendor_base.model import ChargerInfo, Reading
from adapters.vendor_base.profiles import profile_limit_a
from gateway.ocppj import ErrorKind


@dataclass(slots=True)
class CommandOutcome:
    """How a CSMS command ends: the CALLRESULT (or a CALLERROR) and what the charger does next."""

    response: dict[str, Any] | None = None
    error: tuple[ErrorKind, str] | None = None
    messages: list[Message] = field(default_factory=list)  # CALLs to send after the answer
    followups: list[Followup] = field(default_factory=list)  # more commands for the runner ("_poll", ...)
    note: str | None = None  # why (for the log)


def rejected(reason: str, info: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"status": "Rejected", "statusInfo": {"reasonCode": reason[:20]}}
    if info:
        out["statusInfo"]["additionalInfo"] = info[:512]
    return out


def _not_supported(action: str, why: str) -> CommandOutcome:
    return CommandOutcome(error=(ErrorKind.NOT_SUPPORTED, f"{action}: {why}"), note=why)


TRIGGERABLE = ("StatusNotification", "Heartbeat", "MeterValues", "TransactionEvent", "FirmwareStatusNotification",
               "BootNotification")


def handle_csms_call(
    adapter: VendorAdapter, charger: ChargerInfo, action: str, payload: dict[str, Any],
    reading: Reading | None, state: dict[str, Any], now: float,
) -> Flow[CommandOutcome]:
    """A CSMS command (or a follow-up) -> vendor requests -> the OCPP answer. Updates ``state`` in place."""
    for key, value in new_state().items():
        state.setdefault(key, value)
    reading = reading or Reading.unreachable()
    handler = _HANDLERS.get(action)
    if handler is None:
        return _not_supported(action, f"{adapter.vendor_name} chargers cannot do {action} through the cloud API")
    try:
        outcome: CommandOutcome = yield from handler(adapter, charger, payload, reading, state, now)
    except Unsupported as exc:
        outcome = _unsupported_answer(action, f"{adapter.vendor_name} cloud API has no {exc}")
    except VendorUnavailable as exc:
        outcome = CommandOutcome(response=rejected("CloudUnavailable", str(exc)), note=f"cloud unavailable: {exc}")
    except VendorApiError as exc:
        outcome = CommandOutcome(response=rejected("VendorRejected", str(exc)), note=f"vendor refused: {exc}")
    return outcome


def _unsupported_answer(action: str, why: str) -> CommandOutcome:
    # Actions whose answer has a Rejected status get it; the rest a CALLERROR NotSupported.
    if action in ("RequestStartTransaction", "RequestStopTransaction", "SetChargingProfile", "Reset",
                  "ChangeAvailability", "UpdateFirmware", "ClearChargingProfile"):
        if action == "ClearChargingProfile":
            return CommandOutcome(response={"status": "Unknown", "statusInfo": {"reasonCode": "UnsupportedByVendor",
                                                                                "additionalInfo": why[:512]}},
                                  note=why)
        return CommandOutcome(response=rejected("UnsupportedByVendor", why), note=why)
    return _not_supported(action, why)


HandlerFn = Callable[
    [VendorAdapter, ChargerInfo, dict[str, Any], Reading, dict[str, Any], float], Flow[CommandOutcome]
]


def _offline(reading: Reading) -> CommandOutcome | None:
    if not reading.reachable:
        return CommandOutcome(response=rejected("CloudUnavailable"), note="the vendor cloud is unreachable")
    if not reading.online:
        return CommandOutcome(response=rejected("ChargerOffline"), note="the charger is offline in its cloud")
    return None


def _request_start(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    replay = bool(p.get("_replay"))
    request = {k: v for k, v in p.items() if not k.startswith("_")}
    if request.get("evseId") not in (None, 1):
        return CommandOutcome(response=rejected("UnknownEvse"), note=f"evse {request.get('evseId')} does not exist")
    if (off := _offline(reading)) is not None:
        return off
    if st.get("tx") is not None:
        return CommandOutcome(response=rejected("TxInProgress"), note="a transaction is already running")
    if not st.get("available", True):
        return CommandOutcome(response=rejected("Unavailable"), note="the charger is set Inoperative")
    timeout = float(adapter.option("ev_connect_timeout", 120.0))
    if not reading.ev_connected:
        # A real charger accepts and waits for the EV; so does this one, until ev_connect_timeout.
        st["remote_start"] = {"request": request, "expires": now + timeout, "dispatched": False}
        return CommandOutcome(response={"status": "Accepted"}, note="waiting for the EV to be plugged in")
    yield from adapter.start(charger, reading, st)
    if not replay or st.get("remote_start") is None:
        st["remote_start"] = {"request": request, "expires": now + timeout, "dispatched": True}
    followups: list[Followup] = [("_poll", {})]
    if request.get("chargingProfile"):
        followups.insert(0, ("SetChargingProfile", {"evseId": 1, "chargingProfile": request["chargingProfile"]}))
    return CommandOutcome(response={"status": "Accepted"}, followups=followups)


def _request_stop(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    tx = st.get("tx")
    if tx is None or tx["id"] != p.get("transactionId"):
        return CommandOutcome(response=rejected("UnknownTransaction"), note="no such transaction running")
    if (off := _offline(reading)) is not None:
        return off
    yield from adapter.stop(charger, reading, st)
    st["stop_requested"] = {"reason": "Remote", "trigger": "RemoteStop"}
    return CommandOutcome(response={"status": "Accepted"}, followups=[("_poll", {})])


def _set_profile(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    profile = dict(p["chargingProfile"])
    if p.get("evseId") not in (0, 1):
        return CommandOutcome(response=rejected("UnknownEvse"), note=f"evse {p.get('evseId')} does not exist")
    purpose = profile.get("chargingProfilePurpose")
    if purpose == "TxProfile":
        tx = st.get("tx")
        wanted = profile.get("transactionId")
        if tx is None or (wanted is not None and wanted != tx["id"]):
            return CommandOutcome(response=rejected("TxNotFound"), note="TxProfile without a matching transaction")
    if purpose == "ChargingStationExternalConstraints":
        return CommandOutcome(response=rejected("InvalidProfile"), note="external constraints are not set by a CSMS")
    if (off := _offline(reading)) is not None:
        return off
    profile["_received"] = now
    previous = st.get("profile")
    st["profile"] = profile
    try:
        yield from _apply_limit(adapter, charger, {}, reading, st, now)
    except BaseException:
        st["profile"] = previous
        raise
    return CommandOutcome(response={"status": "Accepted"}, followups=[("_poll", {})])


def _clear_profile(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    profile = st.get("profile")
    wanted_id = p.get("chargingProfileId")
    criteria = p.get("chargingProfileCriteria") or {}
    matches = profile is not None and (wanted_id is None or wanted_id == profile.get("id")) and all(
        profile.get(k) == v for k, v in criteria.items() if k in ("chargingProfilePurpose", "stackLevel"))
    if not matches:
        return CommandOutcome(response={"status": "Unknown"})
    if (off := _offline(reading)) is not None:
        return off
    st["profile"] = None
    yield from _apply_limit(adapter, charger, {}, reading, st, now)
    return CommandOutcome(response={"status": "Accepted"})


def _apply_limit(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    profile = st.get("profile")
    amps = profile_limit_a(profile, now, reading, charger) if profile is not None else None
    yield from adapter.set_current(charger, amps, reading)
    st["applied_limit"] = amps
    return CommandOutcome(response={}, note=f"current limit {amps if amps is not None else 'lifted'}")


def _reset(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    if p.get("evseId") not in (None, 1):
        return CommandOutcome(response=rejected("UnknownEvse"))
    if (off := _offline(reading)) is not None:
        return off
    if p.get("type") == "OnIdle" and st.get("tx") is not None:
        st["pending_reset"] = True
        return CommandOutcome(response={"status": "Scheduled"}, note="reboot after the transaction")
    yield from adapter.reboot(charger)
    messages: list[Message] = []
    if st.get("tx") is not None:
        messages.append(end_transaction(st, reading, now, "ImmediateReset", "ResetCommand"))
    st["quiet_until"] = now + float(adapter.option("reboot_grace", 60.0))
    return CommandOutcome(response={"status": "Accepted"}, messages=messages)


def _change_availability(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    evse = p.get("evse") or {}
    if evse.get("id") not in (None, 0, 1) or evse.get("connectorId") not in (None, 1):
        return CommandOutcome(response=rejected("UnknownEvse"))
    want = p["operationalStatus"] == "Operative"
    if (off := _offline(reading)) is not None:
        return off
    if not want and st.get("tx") is not None:
        st["pending_availability"] = "Inoperative"
        return CommandOutcome(response={"status": "Scheduled"}, note="disable after the transaction")
    yield from adapter.set_available(charger, want)
    st["available"] = want
    return CommandOutcome(response={"status": "Accepted"}, followups=[("_poll", {})])


def _update_firmware(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    if (off := _offline(reading)) is not None:
        return off
    yield from adapter.update_firmware(charger)
    st["firmware_request"] = p["requestId"]
    st["firmware"] = reading.firmware
    status = {"status": "Installing", "requestId": p["requestId"]}
    return CommandOutcome(
        response={"status": "Accepted", "statusInfo": {
            "reasonCode": "VendorFirmware",
            "additionalInfo": "the vendor cloud installs its own latest firmware; the location is not used"}},
        messages=[("FirmwareStatusNotification", status)],
        note="vendor firmware update requested",
    )


def _trigger(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    requested = p["requestedMessage"]
    evse = p.get("evse") or {}
    if evse.get("id") not in (None, 1):
        return CommandOutcome(response=rejected("UnknownEvse"))
    if requested not in TRIGGERABLE:
        return CommandOutcome(response={"status": "NotImplemented"})
    if requested == "BootNotification":
        # F06.FR.17: a charger whose boot was accepted rejects a triggered BootNotification.
        return CommandOutcome(response=rejected("AlreadyAccepted"))
    if requested == "TransactionEvent" and st.get("tx") is None:
        return CommandOutcome(response=rejected("NoTransaction"))
    return CommandOutcome(response={"status": "Accepted"}, followups=[("_poll", {"then": requested})])
    yield  # a flow, even when it needs no request


def _unknown_variables(requested: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every requested variable answered UnknownComponent: there is no device model behind a vendor cloud."""
    return [{"attributeStatus": "UnknownComponent", "component": d["component"], "variable": d["variable"],
             **({"attributeType": d["attributeType"]} if "attributeType" in d else {})} for d in requested]


def _get_variables(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    results = _unknown_variables(p["getVariableData"])
    return CommandOutcome(response={"getVariableResult": results}, note="no device model behind a vendor cloud")
    yield


def _set_variables(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    results = _unknown_variables(p["setVariableData"])
    return CommandOutcome(response={"setVariableResult": results}, note="no device model behind a vendor cloud")
    yield


def _base_report(
    adapter: VendorAdapter, charger: ChargerInfo, p: dict[str, Any], reading: Reading, st: dict[str, Any], now: float
) -> Flow[CommandOutcome]:
    return CommandOutcome(response={"status": "NotSupported"}, note="no device model behind a vendor cloud")
    yield


_HANDLERS: dict[str, HandlerFn] = {
    "RequestStartTransaction": _request_start,
    "RequestStopTransaction": _request_stop,
    "SetChargingProfile": _set_profile,
    "ClearChargingProfile": _clear_profile,
    "Reset": _reset,
    "ChangeAvailability": _change_availability,
    "UpdateFirmware": _update_firmware,
    "TriggerMessage": _trigger,
    "GetVariables": _get_variables,
    "SetVariables": _set_variables,
    "GetBaseReport": _base_report,
    "_apply_limit": _apply_limit,
}

# The CSMS commands the vendor side handles, for the documentation and the conformance list.
COMMANDS = tuple(a for a in _HANDLERS if not a.startswith("_"))
