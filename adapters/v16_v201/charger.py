"""Charger-initiated messages: a 1.6 CALL in, its 2.0.1 form out, the 2.0.1 answer mapped back."""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timezone
from typing import Any

from adapters.base import Context, Notify, OutCall, PeerError, Reply, Report, Side, Step, Support
from adapters.v16_v201 import convert, tables
from adapters.v16_v201.env import Env, handles
from adapters.v16_v201.state import State

# A connector's charging state before its first StatusNotification (None is a value: no charging state).
_UNSET = object()

CSMS, CHARGER = Side.CSMS, Side.CHARGER
Payload = dict[str, Any]
Sub = Generator[Step, Payload | None, Payload]


def call(to: Side, action: str, payload: Payload) -> Sub:
    """Ask ``to`` and return its CALLRESULT payload (a CALLERROR is thrown in as PeerError)."""
    result = yield OutCall(to, action, payload)
    return result or {}


def token(env: Env, st: State, id_tag: str) -> Payload:
    """A 1.6 idTag as a 2.0.1 idToken (the very string): typed as the CSMS typed it, else as the operator
    configured (id_token_type), else by its shape (``convert.infer_token_type``)."""
    token_type = st.token_type(id_tag) or env.id_token_type or convert.infer_token_type(id_tag)
    return {"idToken": id_tag, "type": token_type}


def _parse_time(text: str) -> datetime:
    """An OCPP dateTime (a naive one is taken as UTC)."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _status(message: str, v201_status: str, fallback: str) -> str:
    return tables.status_to_v16(message, v201_status) or fallback


def _event(
    ctx: Context,
    st: State,
    component: Payload,
    variable: str,
    actual: str,
    *,
    timestamp: str,
    tech_code: str | None = None,
    tech_info: str | None = None,
    cleared: bool | None = None,
    transaction_id: str | None = None,
) -> Payload:
    """A one-event NotifyEvent (hard-wired notification, trigger Delta)."""
    data: Payload = {
        "eventId": st.next_event_id(),
        "timestamp": timestamp,
        "trigger": "Delta",
        "actualValue": actual,
        "component": component,
        "variable": {"name": variable},
        "eventNotificationType": "HardWiredNotification",
    }
    if tech_code:
        data["techCode"] = tech_code[:50]
    if tech_info:
        data["techInfo"] = tech_info[:500]
    if cleared is not None:
        data["cleared"] = cleared
    if transaction_id:
        data["transactionId"] = transaction_id
    return {"generatedAt": ctx.now_iso(), "seqNo": 0, "eventData": [data]}


# -- core -------------------------------------------------------------------------------------


@handles(
    CHARGER,
    "BootNotification",
    "BootNotification",
    Support.PARTIAL,
    "chargeBoxSerialNumber used only when chargePointSerialNumber is absent; meterType and meterSerialNumber "
    "have no 2.0.1 field and are dropped; reason is PowerUp unless the gateway caused the boot "
    "(RemoteReset after a Reset, Triggered after TriggerMessage)",
)
def boot_notification(env: Env, p: Payload, ctx: Context) -> Sub:
    st = State(ctx)
    station: Payload = {"model": p["chargePointModel"], "vendorName": p["chargePointVendor"]}
    serial = p.get("chargePointSerialNumber") or p.get("chargeBoxSerialNumber")
    if serial:
        station["serialNumber"] = serial
    if "firmwareVersion" in p:
        station["firmwareVersion"] = p["firmwareVersion"]
    modem = {k: p[k] for k in ("iccid", "imsi") if k in p}
    if modem:
        station["modem"] = modem
    reason = st.get("boot_reason") or "PowerUp"
    res = yield from call(CSMS, "BootNotification", {"chargingStation": station, "reason": reason})
    st.set("boot_reason", None)
    return {
        "status": _status("BootNotification", res["status"], "Rejected"),
        "currentTime": res["currentTime"],
        "interval": res["interval"],
    }


@handles(CHARGER, "Heartbeat", "Heartbeat")
def heartbeat(env: Env, p: Payload, ctx: Context) -> Sub:
    res = yield from call(CSMS, "Heartbeat", {})
    return {"currentTime": res["currentTime"]}


@handles(CHARGER, "DataTransfer", "DataTransfer", notes="response data that is not a string is JSON-encoded for 1.6")
def data_transfer(env: Env, p: Payload, ctx: Context) -> Sub:
    res = yield from call(CSMS, "DataTransfer", dict(p))
    out: Payload = {"status": _status("DataTransfer", res["status"], "Rejected")}
    if res.get("data") is not None:
        out["data"] = convert.text(res["data"])
    return out


@handles(
    CHARGER,
    "Authorize",
    "Authorize",
    notes="idToken.type is the type the CSMS used for the token, else the charger's id_token_type, else "
    "inferred from the tag (8/14 hex: ISO14443, 16 hex: ISO15693, eMAID shape: eMAID, other: Local; see "
    "docs/transactions-and-tokens.md); 2.0.1-only statuses map per mappings/authorization_status.yaml",
)
def authorize(env: Env, p: Payload, ctx: Context) -> Sub:
    res = yield from call(CSMS, "Authorize", {"idToken": token(env, State(ctx), p["idTag"])})
    return {"idTagInfo": convert.id_tag_info(res.get("idTokenInfo"))}


@handles(
    CHARGER,
    "StatusNotification",
    "StatusNotification + TransactionEvent + NotifyEvent",
    notes="connector 0 becomes NotifyEvent ChargingStation.AvailabilityState; Reserved -> Available/Unavailable/"
    "Faulted also sends ReservationStatusUpdate (Expired/Removed); a charging-state change during a "
    "transaction also becomes TransactionEvent(Updated, ChargingStateChanged); errorCode other than NoError "
    "becomes NotifyEvent Problem with techCode = errorCode and info/vendorId/vendorErrorCode in techInfo "
    "(cleared when NoError returns)",
)
def status_notification(env: Env, p: Payload, ctx: Context) -> Sub:
    st = State(ctx)
    conn: int = p["connectorId"]
    ts = p.get("timestamp") or ctx.now_iso()
    row = tables.to_v201_row("connector_status", p["status"])
    status = str(row["v201"]) if row else "Faulted"
    charging_state = (row.get("charging_state") if row else None) or None
    evse, evse_conn = env.connectors.to_evse(conn)
    if conn == 0:
        component: Payload = {"name": "ChargingStation"}
        yield from call(CSMS, "NotifyEvent", _event(ctx, st, component, "AvailabilityState", status, timestamp=ts))
    else:
        component = {"name": "Connector", "evse": {"id": evse, "connectorId": evse_conn}}
        yield from call(
            CSMS,
            "StatusNotification",
            {"timestamp": ts, "connectorStatus": status, "evseId": evse, "connectorId": evse_conn},
        )
    cstate = st.connector(conn)
    if cstate.get("status") == "Reserved" and p["status"] in ("Available", "Unavailable", "Faulted"):
        # 1.6 has no ReservationStatusUpdate: the reservation ended without being used.
        for reservation_id, expiry in st.reservations_on(conn):
            st.drop_reservation(reservation_id)
            expired = _parse_time(expiry) <= ctx.clock()
            yield Notify(
                CSMS,
                "ReservationStatusUpdate",
                {"reservationId": reservation_id, "reservationUpdateStatus": "Expired" if expired else "Removed"},
            )
    if cstate.get("status") != p["status"] or cstate.get("charging_state", _UNSET) != charging_state:
        cstate["status"] = p["status"]
        cstate["charging_state"] = charging_state
        # Only a change is saved: a saved state is committed before the answer goes back, and most
        # StatusNotifications repeat the last status.
        st.save()
    tx = st.tx_on_connector(conn) if conn else None

    error = p.get("errorCode", "NoError")
    if error != "NoError":
        details = "; ".join(f"{k}={p[k]}" for k in ("info", "vendorId", "vendorErrorCode") if p.get(k))
        cstate["problem"] = True
        st.save()
        yield Notify(
            CSMS,
            "NotifyEvent",
            _event(
                ctx,
                st,
                component,
                "Problem",
                "true",
                timestamp=ts,
                tech_code=error,
                tech_info=details,
                transaction_id=tx["id"] if tx else None,
            ),
        )
    elif cstate.get("problem"):
        cstate["problem"] = False
        st.save()
        yield Notify(
            CSMS,
            "NotifyEvent",
            _event(ctx, st, component, "Problem", "false", timestamp=ts, cleared=True),
        )

    if tx is not None and charging_state and tx.get("charging_state") != charging_state:
        tx["charging_state"] = charging_state
        yield Notify(
            CSMS,
            "TransactionEvent",
            {
                "eventType": "Updated",
                "timestamp": ts,
                "triggerReason": "ChargingStateChanged",
                "seqNo": st.next_seq(tx),
                "transactionInfo": {"transactionId": tx["id"], "chargingState": charging_state},
                "evse": {"id": tx["evse"], "connectorId": tx["evse_connector"]},
            },
        )
    return {}


# -- transactions -----------------------------------------------------------------------------


@handles(
    CHARGER,
    "StartTransaction",
    "TransactionEvent(Started)",
    notes="the gateway makes the 2.0.1 transactionId (UUID) and the 1.6 integer id (never reused); "
    "triggerReason RemoteStart with remoteStartId when a RequestStartTransaction for that token/EVSE came "
    "first, else Authorized; idToken typed as for Authorize; meterStart becomes Energy.Active.Import.Register "
    "(Transaction.Begin, Wh); a repeated StartTransaction is re-sent with the same transactionId and seqNo 0",
)
def start_transaction(env: Env, p: Payload, ctx: Context) -> Sub:
    st = State(ctx)
    conn: int = p["connectorId"]
    tag: str = p["idTag"]
    evse, evse_conn = env.connectors.to_evse(conn)
    key = f"{conn}|{p['timestamp']}|{p['meterStart']}|{tag}"
    tx = st.tx_by_key(key)
    if tx is None:
        remote = st.take_remote_start(tag, evse)
        id_token = {"idToken": tag, "type": remote["type"]} if remote else token(env, st, tag)
        tx = st.start_transaction(
            connector=conn,
            evse=evse,
            evse_connector=evse_conn,
            id_token=id_token,
            key=key,
            charging_state=st.connector(conn).get("charging_state"),
            remote_start_id=remote["remote_start_id"] if remote else None,
        )
        seq = st.next_seq(tx)
    else:
        seq = 0  # the charger repeats a StartTransaction we already forwarded: same event again
    info: Payload = {"transactionId": tx["id"]}
    if tx.get("charging_state"):
        info["chargingState"] = tx["charging_state"]
    if tx.get("remote_start_id") is not None:
        info["remoteStartId"] = tx["remote_start_id"]
    event: Payload = {
        "eventType": "Started",
        "timestamp": p["timestamp"],
        "triggerReason": "RemoteStart" if tx.get("remote_start_id") is not None else "Authorized",
        "seqNo": seq,
        "transactionInfo": info,
        "idToken": tx["id_token"],
        "evse": {"id": evse, "connectorId": evse_conn},
        "meterValue": [convert.energy_reading(p["timestamp"], p["meterStart"], "Transaction.Begin")],
    }
    if "reservationId" in p:
        event["reservationId"] = p["reservationId"]
        st.drop_reservation(p["reservationId"])
    res = yield from call(CSMS, "TransactionEvent", event)
    return {"transactionId": tx["int"], "idTagInfo": convert.id_tag_info(res.get("idTokenInfo"))}


@handles(
    CHARGER,
    "MeterValues",
    "TransactionEvent(Updated) / MeterValues",
    Support.PARTIAL,
    "with a known transactionId: TransactionEvent(Updated), triggerReason from the context "
    "(mappings/reading_context_trigger.yaml); without: MeterValues (connector 0 -> evseId 0); the answer to a "
    "translated TriggerMessage is the message the CSMS asked for: TransactionEvent(Updated, Trigger) of the "
    "connector's open transaction (with or without transactionId), or MeterValues; units -> "
    "unitOfMeasure {unit, multiplier} (mappings/units.yaml); SignedData -> signedMeterValue on its Raw twin "
    "(OCMF blobs without a twin carry their own reading); lost: Temperature and RPM samples, non-numeric "
    "values, signed blobs without a number",
)
def meter_values(env: Env, p: Payload, ctx: Context) -> Sub:
    st = State(ctx)
    triggered = st.take_trigger(p["connectorId"], ctx.clock().timestamp())
    mvs = convert.meter_values_to_v201(p["meterValue"])
    if not mvs:
        return {}  # nothing 2.0.1 can express: answer the charger, send nothing
    tx = st.tx_by_int(p["transactionId"]) if "transactionId" in p else None
    if triggered == "TransactionEvent" and tx is None:
        tx = st.tx_on_connector(p["connectorId"])  # 1.6 lets the charger leave the transactionId out
    elif triggered == "MeterValues":
        tx = None  # the CSMS asked for MeterValues, not for a transaction event
    if tx is None:
        evse, _ = env.connectors.to_evse(p["connectorId"])
        yield from call(CSMS, "MeterValues", {"evseId": evse, "meterValue": mvs})
        return {}
    first = (p["meterValue"][0].get("sampledValue") or [{}])[0]
    context = first.get("context", "Sample.Periodic")
    trigger = "Trigger" if triggered else tables.to_v201("reading_context_trigger", context)
    yield from call(
        CSMS,
        "TransactionEvent",
        {
            "eventType": "Updated",
            "timestamp": p["meterValue"][0]["timestamp"],
            "triggerReason": trigger or "MeterValuePeriodic",
            "seqNo": st.next_seq(tx),
            "transactionInfo": {"transactionId": tx["id"]},
            "evse": {"id": tx["evse"], "connectorId": tx["evse_connector"]},
            "meterValue": mvs,
        },
    )
    return {}


@handles(
    CHARGER,
    "StopTransaction",
    "TransactionEvent(Ended)",
    notes="same transactionId as Started; stoppedReason and triggerReason from mappings/stop_reasons.yaml "
    "(no reason = Local); transactionData then meterStop (Energy.Active.Import.Register, Transaction.End); a "
    "transaction ends once: a repeated StopTransaction gets the first one's answer and is not forwarded (the "
    "same Ended goes again only while the CSMS has not confirmed it); a StopTransaction for a transaction the "
    "gateway never saw start is answered locally (idTagInfo from an Authorize), never forwarded, and "
    "reported as unmatched_stop_transaction (docs/transactions-and-tokens.md)",
)
def stop_transaction(env: Env, p: Payload, ctx: Context) -> Sub:
    st = State(ctx)
    tx = st.tx_by_int(p["transactionId"])
    if tx is not None:
        event = _ended_event(env, st, tx, p)
        st.end_transaction(tx, event)
        # A 1.6 TxProfile lives as long as its transaction.
        tx_evse = tx["evse"]
        st.clear_profiles(lambda evse, prof: not (evse == tx_evse and prof["chargingProfilePurpose"] == "TxProfile"))
    else:
        tx = st.ended_tx(p["transactionId"])
        if tx is None:
            return (yield from _unmatched_stop(env, st, ctx, p))
        if "stop_reply" in tx or "stop_event" not in tx:
            yield Report("duplicate_stop_transaction", {**_stop_record(ctx, p), "csms_transaction_id": tx["id"]})
            return dict(tx.get("stop_reply") or {})
        event = tx["stop_event"]  # the CSMS never confirmed it: the same Ended again, not a second one
    res = yield from call(CSMS, "TransactionEvent", event)
    reply: Payload = {}
    if "idToken" in event and res.get("idTokenInfo"):
        reply["idTagInfo"] = convert.id_tag_info(res["idTokenInfo"])
    st.confirm_stop(tx, reply)
    if st.get("pending_reset") and not st.transactions:
        # A Reset(OnIdle) was waiting for the last transaction: answer first, then reset.
        st.set("pending_reset", None)
        st.set("boot_reason", "RemoteReset")
        yield Reply(reply)
        yield Notify(CHARGER, "Reset", {"type": tables.to_v16("reset_type", "OnIdle") or "Soft"})
    return reply


def _ended_event(env: Env, st: State, tx: Payload, p: Payload) -> Payload:
    """The TransactionEvent(Ended) of a running transaction for its StopTransaction."""
    row = tables.to_v201_row("stop_reasons", p.get("reason", "Local"))
    meter = convert.meter_values_to_v201(p.get("transactionData") or [])
    meter.append(convert.energy_reading(p["timestamp"], p["meterStop"], "Transaction.End"))
    event: Payload = {
        "eventType": "Ended",
        "timestamp": p["timestamp"],
        "triggerReason": str(row["trigger_reason"]) if row else "AbnormalCondition",
        "seqNo": st.next_seq(tx),
        "transactionInfo": {"transactionId": tx["id"], "stoppedReason": str(row["v201"]) if row else "Other"},
        "evse": {"id": tx["evse"], "connectorId": tx["evse_connector"]},
        "meterValue": meter,
    }
    if p.get("idTag"):
        known = tx["id_token"] if tx["id_token"]["idToken"] == p["idTag"] else None
        event["idToken"] = known or token(env, st, p["idTag"])
    return event


def _stop_record(ctx: Context, p: Payload) -> Payload:
    """What an operator needs to know of a StopTransaction the gateway answered itself."""
    record: Payload = {"received": ctx.now_iso()}
    record.update({k: p[k] for k in ("transactionId", "timestamp", "meterStop", "reason", "idTag") if k in p})
    return record


def _unmatched_stop(env: Env, st: State, ctx: Context, p: Payload) -> Sub:
    """A StopTransaction for a transaction the gateway never saw start (it began before the gateway was put
    in front of the charger, say): the CSMS never saw it start either, so an Ended would name a transaction
    it does not know. The charger is answered here, the stop is kept and reported, and nothing is forwarded."""
    record = _stop_record(ctx, p)
    st.add_unmatched_stop(record)
    yield Report("unmatched_stop_transaction", record)
    if not p.get("idTag"):
        return {}
    try:
        res = yield from call(CSMS, "Authorize", {"idToken": token(env, st, p["idTag"])})
    except PeerError:
        return {}  # the stop is still acknowledged; the charger's cache keeps what it had for the tag
    return {"idTagInfo": convert.id_tag_info(res.get("idTokenInfo"))}


# -- firmware, diagnostics, security extension ------------------------------------------------


@handles(
    CHARGER,
    "FirmwareStatusNotification",
    "FirmwareStatusNotification",
    notes="requestId from the UpdateFirmware the gateway translated",
)
def firmware_status(env: Env, p: Payload, ctx: Context) -> Sub:
    st = State(ctx)
    out: Payload = {"status": tables.to_v201("firmware_status", p["status"]) or p["status"]}
    request_id = st.get("firmware_request_id")
    if request_id is not None and p["status"] != "Idle":
        out["requestId"] = request_id
    yield from call(CSMS, "FirmwareStatusNotification", out)
    if p["status"] in ("Installed", "InstallationFailed", "DownloadFailed"):
        st.set("firmware_request_id", None)
    return {}


@handles(
    CHARGER,
    "DiagnosticsStatusNotification",
    "LogStatusNotification",
    notes="status per mappings/log_status.yaml; requestId from the GetLog the gateway translated",
)
def diagnostics_status(env: Env, p: Payload, ctx: Context) -> Sub:
    st = State(ctx)
    out: Payload = {"status": tables.to_v201("log_status", p["status"]) or "UploadFailure"}
    request_id = st.get("log_request_id")
    if request_id is not None and p["status"] != "Idle":
        out["requestId"] = request_id
    yield from call(CSMS, "LogStatusNotification", out)
    if p["status"] in ("Uploaded", "UploadFailed"):
        st.set("log_request_id", None)
    return {}


@handles(CHARGER, "SignCertificate", "SignCertificate", notes="certificateType ChargingStationCertificate")
def sign_certificate(env: Env, p: Payload, ctx: Context) -> Sub:
    res = yield from call(CSMS, "SignCertificate", {"csr": p["csr"], "certificateType": "ChargingStationCertificate"})
    return {"status": _status("SignCertificate", res["status"], "Rejected")}


@handles(CHARGER, "SecurityEventNotification", "SecurityEventNotification")
def security_event(env: Env, p: Payload, ctx: Context) -> Sub:
    yield from call(CSMS, "SecurityEventNotification", dict(p))
    return {}


@handles(CHARGER, "SignedFirmwareStatusNotification", "FirmwareStatusNotification")
def signed_firmware_status(env: Env, p: Payload, ctx: Context) -> Sub:
    yield from call(CSMS, "FirmwareStatusNotification", dict(p))
    return {}


@handles(CHARGER, "LogStatusNotification", "LogStatusNotification")
def log_status(env: Env, p: Payload, ctx: Context) -> Sub:
    yield from call(CSMS, "LogStatusNotification", dict(p))
    return {}
