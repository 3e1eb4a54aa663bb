"""Station-initiated messages other than TransactionEvent: a 2.0.1 CALL in, its 1.6 form to the CSMS."""

from __future__ import annotations

import json

from adapters.base import OutCall, Side, Support
from adapters.v16_v201 import tables
from adapters.v16_v201.convert import text
from adapters.v201_v16.connectors import OCCUPIED, refine, status_payload
from adapters.v201_v16.convert import id_token_info, last_energy, meter_values_to_v16, status201
from adapters.v201_v16.env import PNC_VENDOR, Env, Payload, Result, connector_of, handles, local
from adapters.v201_v16.state import State
from gateway import schemas
from gateway.ocppj import Version


@handles(
    Side.CHARGER,
    "BootNotification",
    "BootNotification",
    Support.PARTIAL,
    "vendorName cut to 20 characters (1.6 chargePointVendor); reason is lost",
)
def boot_notification(env: Env, st: State, p: Payload) -> Result:
    cs = p["chargingStation"]
    boot: Payload = {"chargePointVendor": cs["vendorName"][:20], "chargePointModel": cs["model"]}
    if "serialNumber" in cs:
        boot["chargePointSerialNumber"] = cs["serialNumber"]
    if "firmwareVersion" in cs:
        boot["firmwareVersion"] = cs["firmwareVersion"]
    boot.update({key: value for key, value in cs.get("modem", {}).items() if key in ("iccid", "imsi")})
    r = yield OutCall(Side.CSMS, "BootNotification", boot)
    assert r is not None
    return {
        "currentTime": r["currentTime"],
        "interval": r["interval"],
        "status": status201("BootNotification", r["status"]),
    }


@handles(Side.CHARGER, "Heartbeat", "Heartbeat")
def heartbeat(env: Env, st: State, p: Payload) -> Result:
    r = yield OutCall(Side.CSMS, "Heartbeat", {})
    return r


@handles(
    Side.CHARGER,
    "StatusNotification",
    "StatusNotification",
    Support.PARTIAL,
    "evseId/connectorId -> connectorId; Occupied refined to Preparing, Charging, SuspendedEV, SuspendedEVSE or "
    "Finishing from the transaction; errorCode NoError (OtherError when Faulted: 2.0.1 reports details in NotifyEvent)",
)
def status_notification(env: Env, st: State, p: Payload) -> Result:
    connector = connector_of(env.connectors, p["evseId"], p["connectorId"])
    c = st.connector(connector)
    before = dict(c)
    c["status201"] = p["connectorStatus"]
    if p["connectorStatus"] != OCCUPIED:
        c.pop("finishing", None)
    status = refine(st, connector) or "Available"
    c["sent16"] = status
    if c != before:  # a saved state is committed before the answer: a repeated status saves nothing
        st.save()
    yield OutCall(Side.CSMS, "StatusNotification", status_payload(connector, status, p["timestamp"]))
    return {}


@handles(
    Side.CHARGER,
    "MeterValues",
    "MeterValues",
    Support.PARTIAL,
    "evseId -> connectorId; unitOfMeasure -> 1.6 unit (rescaled when 1.6 has no such prefix); a signed value "
    "adds a SignedData twin; samples whose measurand or unit 1.6 cannot name are dropped",
)
def meter_values(env: Env, st: State, p: Payload) -> Result:
    connector = connector_of(env.connectors, p["evseId"])
    wh = last_energy(p["meterValue"])
    if wh is not None:
        st.connector(connector)["last_wh"] = wh
        st.save()
    converted = meter_values_to_v16(p["meterValue"])
    if converted:
        yield OutCall(Side.CSMS, "MeterValues", {"connectorId": connector, "meterValue": converted})
    return {}


@handles(
    Side.CHARGER,
    "Authorize",
    "Authorize",
    Support.PARTIAL,
    "idToken -> idTag (cut to 20 characters); certificate and ISO 15118 hash data are not sent; "
    "idTagInfo -> idTokenInfo (parentIdTag -> groupIdToken)",
)
def authorize(env: Env, st: State, p: Payload) -> Result:
    tag = st.remember_token(p["idToken"])
    r = yield OutCall(Side.CSMS, "Authorize", {"idTag": tag})
    assert r is not None
    return {"idTokenInfo": id_token_info(r["idTagInfo"], p["idToken"]["type"])}


def data_transfer(to: Side, p: Payload) -> Result:
    req: Payload = {"vendorId": p["vendorId"]}
    if "messageId" in p:
        req["messageId"] = p["messageId"]
    if "data" in p:
        req["data"] = text(p["data"])
    r = yield OutCall(to, "DataTransfer", req)
    assert r is not None
    # 1.6 data is a string; 2.0.1 data any JSON: strings pass as they are, anything else is JSON-encoded.
    return {"status": r["status"], **({"data": text(r["data"])} if "data" in r else {})}


@handles(Side.CHARGER, "DataTransfer", "DataTransfer", Support.PARTIAL, "non-string data is sent JSON-encoded")
def data_transfer_up(env: Env, st: State, p: Payload) -> Result:
    return (yield from data_transfer(Side.CSMS, p))


@handles(
    Side.CHARGER,
    "FirmwareStatusNotification",
    "FirmwareStatusNotification, SignedFirmwareStatusNotification",
    Support.PARTIAL,
    "SignedFirmwareStatusNotification when the update came as SignedUpdateFirmware; otherwise the 2.0.1-only "
    "statuses fold into the 1.6 phase (firmware_status table) and requestId is lost",
)
def firmware_status(env: Env, st: State, p: Payload) -> Result:
    if st.request_origin(p.get("requestId")) == "SignedUpdateFirmware":
        yield OutCall(
            Side.CSMS, "SignedFirmwareStatusNotification", {"status": p["status"], "requestId": p["requestId"]}
        )
        return {}
    status = tables.to_v16("firmware_status", p["status"])
    if status is not None:
        yield OutCall(Side.CSMS, "FirmwareStatusNotification", {"status": status})
    return {}


@handles(
    Side.CHARGER,
    "LogStatusNotification",
    "DiagnosticsStatusNotification, LogStatusNotification",
    Support.PARTIAL,
    "DiagnosticsStatusNotification (log_status table) unless the upload came from a 1.6 security GetLog, "
    "which gets LogStatusNotification with its requestId (AcceptedCanceled -> Idle)",
)
def log_status(env: Env, st: State, p: Payload) -> Result:
    if st.request_origin(p.get("requestId")) == "GetLog":
        status = "Idle" if p["status"] == "AcceptedCanceled" else p["status"]
        yield OutCall(Side.CSMS, "LogStatusNotification", {"status": status, "requestId": p["requestId"]})
        return {}
    status = tables.to_v16("log_status", p["status"])
    if status is not None:
        yield OutCall(Side.CSMS, "DiagnosticsStatusNotification", {"status": status})
    return {}


@handles(Side.CHARGER, "SecurityEventNotification", "SecurityEventNotification (1.6 security extension)")
def security_event(env: Env, st: State, p: Payload) -> Result:
    event: Payload = {k: p[k] for k in ("type", "timestamp", "techInfo") if k in p}
    yield OutCall(Side.CSMS, "SecurityEventNotification", event)
    return {}


def _pnc(action: str, p: Payload, fallback: Payload) -> Result:
    """A Plug & Charge message through 1.6 DataTransfer; ``fallback`` when the CSMS does not handle it."""
    r = yield OutCall(Side.CSMS, "DataTransfer", {"vendorId": PNC_VENDOR, "messageId": action, "data": json.dumps(p)})
    assert r is not None
    if r["status"] == "Accepted" and isinstance(r.get("data"), str):
        try:
            answer = json.loads(r["data"])
        except ValueError:
            answer = None
        if isinstance(answer, dict) and schemas.validate(Version.V201, action, answer, response=True) is None:
            return answer
    return dict(fallback)


@handles(
    Side.CHARGER,
    "SignCertificate",
    "SignCertificate (1.6 security) / DataTransfer",
    Support.PARTIAL,
    "ChargingStationCertificate -> 1.6 security SignCertificate (certificateType dropped); V2GCertificate -> "
    f"DataTransfer {PNC_VENDOR}",
)
def sign_certificate(env: Env, st: State, p: Payload) -> Result:
    if p.get("certificateType") == "V2GCertificate":
        return (yield from _pnc("SignCertificate", p, {"status": "Rejected"}))
    r = yield OutCall(Side.CSMS, "SignCertificate", {"csr": p["csr"]})
    assert r is not None
    return {"status": r["status"]}


@handles(
    Side.CHARGER,
    "Get15118EVCertificate",
    "DataTransfer",
    Support.PARTIAL,
    f"DataTransfer {PNC_VENDOR}; Failed when the CSMS does not answer it",
)
def get_15118_ev_certificate(env: Env, st: State, p: Payload) -> Result:
    return (yield from _pnc("Get15118EVCertificate", p, {"status": "Failed", "exiResponse": ""}))


@handles(
    Side.CHARGER,
    "GetCertificateStatus",
    "DataTransfer",
    Support.PARTIAL,
    f"DataTransfer {PNC_VENDOR}; Failed when the CSMS does not answer it",
)
def get_certificate_status(env: Env, st: State, p: Payload) -> Result:
    return (yield from _pnc("GetCertificateStatus", p, {"status": "Failed"}))


@handles(
    Side.CHARGER,
    "NotifyReport",
    "",
    Support.LOCAL,
    "answered locally; the mutability of variables that are 1.6 keys is kept for GetConfiguration's readonly",
)
def notify_report(env: Env, st: State, p: Payload) -> Result:
    readonly: dict[str, bool] = st.ns.setdefault("readonly", {})
    for item in p.get("reportData", []):
        var = env.config.for_variable(
            item["component"]["name"], item["variable"]["name"], item["variable"].get("instance")
        )
        if var is None:
            continue
        for attr in item["variableAttribute"]:
            if attr.get("type", "Actual") == "Actual":
                readonly[var.key] = attr.get("mutability", "ReadWrite") == "ReadOnly"
    st.save()
    return {}
    yield  # pragma: no cover


local("NotifyEvent", {}, "no 1.6 counterpart; connector faults also arrive as StatusNotification Faulted")
local("NotifyMonitoringReport", {}, "no 1.6 counterpart")
local("NotifyCustomerInformation", {}, "no 1.6 counterpart (1.6 CSMS never asks)")
local("NotifyDisplayMessages", {}, "no 1.6 counterpart (1.6 CSMS never asks)")
local("NotifyChargingLimit", {}, "no 1.6 counterpart: external limits are not reported")
local("ClearedChargingLimit", {}, "no 1.6 counterpart")
local("NotifyEVChargingNeeds", {"status": "Rejected"}, "no 1.6 counterpart: Rejected (no schedule will follow)")
local("NotifyEVChargingSchedule", {"status": "Accepted"}, "no 1.6 counterpart: the EV's schedule is accepted")
local("ReportChargingProfiles", {}, "no 1.6 counterpart (1.6 CSMS never asks)")
local("ReservationStatusUpdate", {}, "no 1.6 counterpart; the connector's StatusNotification tells the CSMS")
local("PublishFirmwareStatusNotification", {}, "no 1.6 counterpart (1.6 CSMS never publishes firmware)")
