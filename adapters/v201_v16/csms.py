"""CSMS-initiated messages: a 1.6 CALL in, its 2.0.1 form to the station, the 2.0.1 answer mapped back."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

from adapters.base import OutCall, Side, Step, Support
from adapters.v16_v201 import tables
from adapters.v16_v201.convert import tenth
from adapters.v201_v16.charger import data_transfer
from adapters.v201_v16.convert import id_tag_info_to_token_info, profile_to_v201, status16
from adapters.v201_v16.env import PNC_VENDOR, Env, Payload, Result, handles
from adapters.v201_v16.state import State
from adapters.v201_v16.transactions import authorize_waiting
from gateway import schemas
from gateway.ocppj import Version


def _evse(env: Env, connector: int) -> dict[str, Any] | None:
    """2.0.1 EVSEType for a 1.6 connector (None for connector 0, the whole station)."""
    if connector <= 0:
        return None
    evse, conn = env.connectors.to_evse(connector)
    return {"id": evse, "connectorId": conn} if len(env.connectors.connectors_of(evse)) > 1 else {"id": evse}


@handles(
    Side.CSMS,
    "RemoteStartTransaction",
    "RequestStartTransaction",
    Support.PARTIAL,
    "remoteStartId generated; idTag -> idToken (the type the station showed for it, else option "
    "remote_token_type, default Central); connectorId -> evseId; chargingProfile converted",
)
def remote_start(env: Env, st: State, p: Payload) -> Result:
    remote_start_id = st.next_id()
    token = st.token(p["idTag"], env.remote_token_type)
    # The station's TransactionEvent may name only the remoteStartId, not the idToken: remember whose it is.
    st.remember_remote_start(remote_start_id, p["idTag"], token["type"])
    req: Payload = {"remoteStartId": remote_start_id, "idToken": token}
    if p.get("connectorId"):
        req["evseId"] = env.connectors.to_evse(p["connectorId"])[0]
    if "chargingProfile" in p:
        profile = {k: v for k, v in p["chargingProfile"].items() if k != "transactionId"}
        req["chargingProfile"] = profile_to_v201(profile)
    r = yield OutCall(Side.CHARGER, "RequestStartTransaction", req)
    assert r is not None
    status = status16("RemoteStartTransaction", r["status"])
    if status == "Accepted" and "transactionId" in r:
        # The station had a transaction waiting for authorization already: the remote start authorizes it.
        authorize_waiting(st, str(r["transactionId"]), remote_start_id)
    return {"status": status}


@handles(
    Side.CSMS,
    "RemoteStopTransaction",
    "RequestStopTransaction",
    Support.SUPPORTED,
    "integer id -> the station's string id; an unknown id is Rejected by the gateway",
)
def remote_stop(env: Env, st: State, p: Payload) -> Result:
    found = st.tx_by_int(p["transactionId"])
    if found is None:
        return {"status": "Rejected"}
    r = yield OutCall(Side.CHARGER, "RequestStopTransaction", {"transactionId": found[0]})
    assert r is not None
    return {"status": status16("RemoteStopTransaction", r["status"])}


def _get_variables(env: Env, keys: list[str]) -> Generator[Step, Payload | None, dict[str, Payload]]:
    """GetVariables for 1.6 keys, in chunks; the Accepted results by key."""
    found: dict[str, Payload] = {}
    variables = [env.config.for_key(k) for k in keys]
    size = env.get_variables_chunk
    for i in range(0, len(variables), size):
        chunk = variables[i : i + size]
        data = [{"component": v.component_json(), "variable": v.variable_json()} for v in chunk]
        r = yield OutCall(Side.CHARGER, "GetVariables", {"getVariableData": data})
        assert r is not None
        by_var = {(v.component, v.variable, v.instance): v.key for v in chunk}
        for result in r["getVariableResult"]:
            key = by_var.get(
                (result["component"]["name"], result["variable"]["name"], result["variable"].get("instance"))
            )
            if key is not None and result["attributeStatus"] == "Accepted":
                found[key] = result
    return found


@handles(
    Side.CSMS,
    "GetConfiguration",
    "GetVariables",
    Support.PARTIAL,
    "keys -> component.variable (config_keys table), in chunks of option get_variables_chunk; no keys means "
    "every key of the table with a standard variable; readonly from the station's NotifyReport when seen, "
    "else false; values cut to 500 characters",
)
def get_configuration(env: Env, st: State, p: Payload) -> Result:
    keys = list(dict.fromkeys(p.get("key") or []))
    if not keys:
        keys = [v.key for v in env.config.rows() if v.component != tables.LEGACY_COMPONENT]
    results = yield from _get_variables(env, keys)
    readonly: dict[str, bool] = st.ns.get("readonly", {})
    configuration = []
    for key in keys:
        if key in results:
            entry: Payload = {"key": key[:50], "readonly": readonly.get(key, False)}
            if "attributeValue" in results[key]:
                entry["value"] = results[key]["attributeValue"][:500]
            configuration.append(entry)
    out: Payload = {}
    if configuration:
        out["configurationKey"] = configuration
    unknown = [k[:50] for k in keys if k not in results and p.get("key")]
    if unknown:
        out["unknownKey"] = unknown
    return out


@handles(
    Side.CSMS,
    "ChangeConfiguration",
    "SetVariables",
    Support.SUPPORTED,
    "key -> component.variable (config_keys table); attributeStatus -> status (response_status table)",
)
def change_configuration(env: Env, st: State, p: Payload) -> Result:
    var = env.config.for_key(p["key"])
    data = {"attributeValue": p["value"], "component": var.component_json(), "variable": var.variable_json()}
    r = yield OutCall(Side.CHARGER, "SetVariables", {"setVariableData": [data]})
    assert r is not None
    return {"status": status16("ChangeConfiguration", r["setVariableResult"][0]["attributeStatus"])}


@handles(
    Side.CSMS, "Reset", "Reset", Support.PARTIAL, "Hard and Soft -> Immediate (reset_type table); Scheduled -> Accepted"
)
def reset(env: Env, st: State, p: Payload) -> Result:
    r = yield OutCall(Side.CHARGER, "Reset", {"type": tables.to_v201("reset_type", p["type"]) or "Immediate"})
    assert r is not None
    return {"status": status16("Reset", r["status"])}


@handles(Side.CSMS, "ChangeAvailability", "ChangeAvailability", Support.SUPPORTED, "connectorId 0 -> no evse")
def change_availability(env: Env, st: State, p: Payload) -> Result:
    req: Payload = {"operationalStatus": tables.to_v201("availability_type", p["type"]) or p["type"]}
    evse = _evse(env, p["connectorId"])
    if evse is not None:
        req["evse"] = evse
    r = yield OutCall(Side.CHARGER, "ChangeAvailability", req)
    assert r is not None
    return {"status": status16("ChangeAvailability", r["status"])}


@handles(
    Side.CSMS,
    "UnlockConnector",
    "UnlockConnector",
    Support.PARTIAL,
    "a 2.0.1 station refuses during a transaction (OngoingAuthorizedTransaction -> UnlockFailed) where a 1.6 "
    "charger would stop it first",
)
def unlock_connector(env: Env, st: State, p: Payload) -> Result:
    evse, conn = env.connectors.to_evse(p["connectorId"])
    if evse == 0:
        return {"status": "NotSupported"}
    r = yield OutCall(Side.CHARGER, "UnlockConnector", {"evseId": evse, "connectorId": conn})
    assert r is not None
    return {"status": status16("UnlockConnector", r["status"], "UnlockFailed")}


def _trigger(env: Env, st: State, requested: str | None, connector: int | None, action16: str) -> Result:
    if requested is None:
        return {"status": "NotImplemented"}
    if requested == "MeterValues" and connector and st.tx_on(connector):
        requested = "TransactionEvent"  # arrives as TransactionEvent Updated -> MeterValues with transactionId
    req: Payload = {"requestedMessage": requested}
    evse = _evse(env, connector or 0)
    if evse is not None:
        if requested == "StatusNotification":
            # 2.0.1 reports status per connector: a trigger for it must name the connector.
            evse["connectorId"] = env.connectors.to_evse(connector or 0)[1]
        req["evse"] = evse
    r = yield OutCall(Side.CHARGER, "TriggerMessage", req)
    assert r is not None
    return {"status": status16(action16, r["status"])}


@handles(
    Side.CSMS,
    "TriggerMessage",
    "TriggerMessage",
    Support.SUPPORTED,
    "DiagnosticsStatusNotification -> LogStatusNotification (trigger_message table); MeterValues on a "
    "connector with a transaction -> TransactionEvent",
)
def trigger_message(env: Env, st: State, p: Payload) -> Result:
    requested = tables.to_v201("trigger_message", p["requestedMessage"])
    return (yield from _trigger(env, st, requested, p.get("connectorId"), "TriggerMessage"))


@handles(
    Side.CSMS,
    "ExtendedTriggerMessage",
    "TriggerMessage",
    Support.SUPPORTED,
    "SignChargePointCertificate -> SignChargingStationCertificate",
)
def extended_trigger_message(env: Env, st: State, p: Payload) -> Result:
    name = p["requestedMessage"]
    requested = "LogStatusNotification" if name == "LogStatusNotification" else tables.to_v201("trigger_message", name)
    return (yield from _trigger(env, st, requested, p.get("connectorId"), "ExtendedTriggerMessage"))


@handles(Side.CSMS, "ClearCache", "ClearCache")
def clear_cache(env: Env, st: State, p: Payload) -> Result:
    r = yield OutCall(Side.CHARGER, "ClearCache", {})
    assert r is not None
    return {"status": status16("ClearCache", r["status"])}


@handles(
    Side.CSMS,
    "SetChargingProfile",
    "SetChargingProfile",
    Support.PARTIAL,
    "ChargePointMaxProfile -> ChargingStationMaxProfile; the schedule gets the profile's id; a TxProfile needs "
    "a transaction (its integer id mapped, else the connector's running one), otherwise Rejected by the gateway",
)
def set_charging_profile(env: Env, st: State, p: Payload) -> Result:
    profile = p["csChargingProfiles"]
    evse = env.connectors.to_evse(p["connectorId"])[0]
    tx_id: str | None = None
    if profile["chargingProfilePurpose"] == "TxProfile":
        found = st.tx_by_int(profile["transactionId"]) if "transactionId" in profile else st.tx_on(p["connectorId"])
        if found is None or evse == 0:
            return {"status": "Rejected"}
        tx_id = found[0]
    req = {"evseId": evse, "chargingProfile": profile_to_v201(profile, tx_id)}
    r = yield OutCall(Side.CHARGER, "SetChargingProfile", req)
    assert r is not None
    return {"status": status16("SetChargingProfile", r["status"])}


@handles(
    Side.CSMS, "ClearChargingProfile", "ClearChargingProfile", Support.SUPPORTED, "criteria -> chargingProfileCriteria"
)
def clear_charging_profile(env: Env, st: State, p: Payload) -> Result:
    req: Payload = {}
    if "id" in p:
        req["chargingProfileId"] = p["id"]
    criteria: Payload = {}
    if "connectorId" in p:
        criteria["evseId"] = env.connectors.to_evse(p["connectorId"])[0]
    if "chargingProfilePurpose" in p:
        criteria["chargingProfilePurpose"] = tables.to_v201("charging_profile_purpose", p["chargingProfilePurpose"])
    if "stackLevel" in p:
        criteria["stackLevel"] = p["stackLevel"]
    if criteria:
        req["chargingProfileCriteria"] = criteria
    r = yield OutCall(Side.CHARGER, "ClearChargingProfile", req)
    assert r is not None
    return {"status": status16("ClearChargingProfile", r["status"], "Unknown")}


@handles(
    Side.CSMS,
    "GetCompositeSchedule",
    "GetCompositeSchedule",
    Support.PARTIAL,
    "limits rounded to 0.1; 2.0.1 schedule fields without a 1.6 place are dropped",
)
def get_composite_schedule(env: Env, st: State, p: Payload) -> Result:
    req: Payload = {"duration": p["duration"], "evseId": env.connectors.to_evse(p["connectorId"])[0]}
    if "chargingRateUnit" in p:
        req["chargingRateUnit"] = p["chargingRateUnit"]
    r = yield OutCall(Side.CHARGER, "GetCompositeSchedule", req)
    assert r is not None
    out: Payload = {"status": status16("GetCompositeSchedule", r["status"])}
    sched = r.get("schedule")
    if out["status"] == "Accepted" and sched:
        out["connectorId"] = p["connectorId"]
        out["scheduleStart"] = sched["scheduleStart"]
        out["chargingSchedule"] = {
            "duration": sched["duration"],
            "startSchedule": sched["scheduleStart"],
            "chargingRateUnit": sched["chargingRateUnit"],
            "chargingSchedulePeriod": [
                {
                    "startPeriod": period["startPeriod"],
                    "limit": tenth(period["limit"]),
                    **({"numberPhases": period["numberPhases"]} if "numberPhases" in period else {}),
                }
                for period in sched["chargingSchedulePeriod"]
            ],
        }
    return out


@handles(
    Side.CSMS,
    "GetDiagnostics",
    "GetLog",
    Support.SUPPORTED,
    "GetLog DiagnosticsLog with a generated requestId; startTime/stopTime -> oldest/latestTimestamp",
)
def get_diagnostics(env: Env, st: State, p: Payload) -> Result:
    request_id = st.next_id()
    st.remember_request(request_id, "GetDiagnostics")
    log: Payload = {"remoteLocation": p["location"]}
    if "startTime" in p:
        log["oldestTimestamp"] = p["startTime"]
    if "stopTime" in p:
        log["latestTimestamp"] = p["stopTime"]
    req: Payload = {"logType": "DiagnosticsLog", "requestId": request_id, "log": log}
    for key in ("retries", "retryInterval"):
        if key in p:
            req[key] = p[key]
    r = yield OutCall(Side.CHARGER, "GetLog", req)
    assert r is not None
    return {"fileName": r["filename"]} if r["status"] != "Rejected" and "filename" in r else {}


@handles(Side.CSMS, "GetLog", "GetLog", Support.SUPPORTED, "1.6 security extension: same structure")
def get_log(env: Env, st: State, p: Payload) -> Result:
    st.remember_request(p["requestId"], "GetLog")
    r = yield OutCall(Side.CHARGER, "GetLog", dict(p))
    assert r is not None
    return {"status": status16("GetLog", r["status"]), **({"filename": r["filename"]} if "filename" in r else {})}


@handles(
    Side.CSMS,
    "UpdateFirmware",
    "UpdateFirmware",
    Support.PARTIAL,
    "requestId generated; unsigned firmware (a 2.0.1 station may refuse it: prefer SignedUpdateFirmware)",
)
def update_firmware(env: Env, st: State, p: Payload) -> Result:
    request_id = st.next_id()
    st.remember_request(request_id, "UpdateFirmware")
    req: Payload = {
        "requestId": request_id,
        "firmware": {"location": p["location"], "retrieveDateTime": p["retrieveDate"]},
    }
    for key in ("retries", "retryInterval"):
        if key in p:
            req[key] = p[key]
    yield OutCall(Side.CHARGER, "UpdateFirmware", req)
    return {}


@handles(
    Side.CSMS, "SignedUpdateFirmware", "UpdateFirmware", Support.SUPPORTED, "1.6 security extension: same firmware"
)
def signed_update_firmware(env: Env, st: State, p: Payload) -> Result:
    st.remember_request(p["requestId"], "SignedUpdateFirmware")
    r = yield OutCall(Side.CHARGER, "UpdateFirmware", dict(p))
    assert r is not None
    return {"status": status16("SignedUpdateFirmware", r["status"])}


@handles(
    Side.CSMS,
    "SendLocalList",
    "SendLocalList",
    Support.SUPPORTED,
    "idTag -> idToken (type the station showed, else remote_token_type); parentIdTag -> groupIdToken",
)
def send_local_list(env: Env, st: State, p: Payload) -> Result:
    req: Payload = {"versionNumber": p["listVersion"], "updateType": p["updateType"]}
    entries = []
    for item in p.get("localAuthorizationList", []):
        token = st.token(item["idTag"], env.remote_token_type)
        entry: Payload = {"idToken": token}
        if "idTagInfo" in item:
            entry["idTokenInfo"] = id_tag_info_to_token_info(item["idTagInfo"], st, env.remote_token_type)
        entries.append(entry)
    if entries:
        req["localAuthorizationList"] = entries
    r = yield OutCall(Side.CHARGER, "SendLocalList", req)
    assert r is not None
    return {"status": status16("SendLocalList", r["status"], "Failed")}


@handles(Side.CSMS, "GetLocalListVersion", "GetLocalListVersion")
def get_local_list_version(env: Env, st: State, p: Payload) -> Result:
    r = yield OutCall(Side.CHARGER, "GetLocalListVersion", {})
    assert r is not None
    return {"listVersion": r["versionNumber"]}


@handles(
    Side.CSMS, "ReserveNow", "ReserveNow", Support.SUPPORTED, "connectorId 0 -> no evseId; parentIdTag -> groupIdToken"
)
def reserve_now(env: Env, st: State, p: Payload) -> Result:
    req: Payload = {
        "id": p["reservationId"],
        "expiryDateTime": p["expiryDate"],
        "idToken": st.token(p["idTag"], env.remote_token_type),
    }
    if p["connectorId"] > 0:
        req["evseId"] = env.connectors.to_evse(p["connectorId"])[0]
    if p.get("parentIdTag"):
        req["groupIdToken"] = st.token(p["parentIdTag"], env.remote_token_type)
    r = yield OutCall(Side.CHARGER, "ReserveNow", req)
    assert r is not None
    return {"status": status16("ReserveNow", r["status"])}


@handles(Side.CSMS, "CancelReservation", "CancelReservation")
def cancel_reservation(env: Env, st: State, p: Payload) -> Result:
    r = yield OutCall(Side.CHARGER, "CancelReservation", {"reservationId": p["reservationId"]})
    assert r is not None
    return {"status": status16("CancelReservation", r["status"])}


_PNC_DOWN = frozenset(
    {"CertificateSigned", "InstallCertificate", "DeleteCertificate", "GetInstalledCertificateIds", "TriggerMessage"}
)


@handles(
    Side.CSMS,
    "DataTransfer",
    "DataTransfer / Plug & Charge messages",
    Support.SUPPORTED,
    f"vendorId {PNC_VENDOR} with messageId CertificateSigned, InstallCertificate, DeleteCertificate, "
    "GetInstalledCertificateIds or TriggerMessage becomes that 2.0.1 message (the answer JSON in data)",
)
def data_transfer_down(env: Env, st: State, p: Payload) -> Result:
    if p["vendorId"] == PNC_VENDOR and p.get("messageId") in _PNC_DOWN:
        action = str(p["messageId"])
        try:
            inner = json.loads(p.get("data", ""))
        except ValueError:
            inner = None
        if not isinstance(inner, dict) or schemas.validate(Version.V201, action, inner) is not None:
            return {"status": "Rejected", "data": f"not a valid 2.0.1 {action}"}
        r = yield OutCall(Side.CHARGER, action, inner)
        return {"status": "Accepted", "data": json.dumps(r)}
    return (yield from data_transfer(Side.CHARGER, p))


@handles(
    Side.CSMS, "CertificateSigned", "CertificateSigned", Support.SUPPORTED, "certificateType ChargingStationCertificate"
)
def certificate_signed(env: Env, st: State, p: Payload) -> Result:
    req = {"certificateChain": p["certificateChain"], "certificateType": "ChargingStationCertificate"}
    r = yield OutCall(Side.CHARGER, "CertificateSigned", req)
    assert r is not None
    return {"status": status16("CertificateSigned", r["status"])}


@handles(Side.CSMS, "InstallCertificate", "InstallCertificate", Support.SUPPORTED, "certificate_type table")
def install_certificate(env: Env, st: State, p: Payload) -> Result:
    kind = tables.to_v201("certificate_type", p["certificateType"])
    if kind is None:
        return {"status": "Rejected"}
    r = yield OutCall(Side.CHARGER, "InstallCertificate", {"certificateType": kind, "certificate": p["certificate"]})
    assert r is not None
    return {"status": status16("InstallCertificate", r["status"])}


@handles(
    Side.CSMS, "GetInstalledCertificateIds", "GetInstalledCertificateIds", Support.SUPPORTED, "certificate_type table"
)
def get_installed_certificate_ids(env: Env, st: State, p: Payload) -> Result:
    kind = tables.to_v201("certificate_type", p["certificateType"])
    if kind is None:
        return {"status": "NotFound"}
    r = yield OutCall(Side.CHARGER, "GetInstalledCertificateIds", {"certificateType": [kind]})
    assert r is not None
    out: Payload = {"status": status16("GetInstalledCertificateIds", r["status"], "NotFound")}
    hashes = [c["certificateHashData"] for c in r.get("certificateHashDataChain", [])]
    if hashes:
        out["certificateHashData"] = hashes
    return out


@handles(Side.CSMS, "DeleteCertificate", "DeleteCertificate")
def delete_certificate(env: Env, st: State, p: Payload) -> Result:
    r = yield OutCall(Side.CHARGER, "DeleteCertificate", {"certificateHashData": p["certificateHashData"]})
    assert r is not None
    return {"status": status16("DeleteCertificate", r["status"], "Failed")}
