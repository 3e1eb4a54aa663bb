"""CSMS-initiated messages: a 2.0.1 CALL in, its 1.6 form to the charger, the 1.6 answer mapped back."""

from __future__ import annotations

import re

import mappings
from adapters.base import Context, Notify, PeerError, PeerTimeout, Refuse, Reply, Side, Support
from adapters.v16_v201 import convert, tables
from adapters.v16_v201.charger import Payload, Sub, call
from adapters.v16_v201.env import Env, handles
from adapters.v16_v201.state import State
from gateway.ocppj import ErrorKind

CSMS, CHARGER = Side.CSMS, Side.CHARGER
MAX_ID_TAG = 20  # 1.6 idTag is CiString20
MAX_CONFIG_VALUE = 500  # 1.6 ChangeConfiguration value is CiString500


def _rejected(reason: str, info: str = "", status: str = "Rejected") -> Payload:
    return {"status": status, "statusInfo": convert.status_info(reason, info)}


def _status(message: str, v16_status: str, fallback: str = "Rejected") -> str:
    return tables.status_to_v201(message, v16_status) or fallback


def _simple(message: str, res: Payload) -> Payload:
    return {"status": _status(message, res["status"])}


# -- transactions -----------------------------------------------------------------------------


@handles(
    CSMS,
    "RequestStartTransaction",
    "RemoteStartTransaction",
    Support.PARTIAL,
    "evseId -> first connector of the EVSE; chargingProfile converted (first schedule); remoteStartId "
    "remembered for the StartTransaction that follows; lost: groupIdToken, additionalInfo; idToken longer "
    "than 20 characters -> Rejected",
)
def request_start(env: Env, p: Payload, ctx: Context) -> Sub:
    st = State(ctx)
    tag: str = p["idToken"]["idToken"]
    if len(tag) > MAX_ID_TAG:
        return _rejected("IdTokenTooLong", f"a 1.6 idTag holds at most {MAX_ID_TAG} characters")
    out: Payload = {"idTag": tag}
    evse = p.get("evseId")
    if evse is not None:
        conn = env.connectors.to_connector(evse)
        if not conn:
            return _rejected("UnknownEvse", f"EVSE {evse} has no 1.6 connector")
        out["connectorId"] = conn
    if "chargingProfile" in p:
        try:
            out["chargingProfile"] = convert.profile_to_v16(p["chargingProfile"])
        except convert.ProfileError as exc:
            return _rejected("UnsupportedProfile", str(exc))
    st.remember_token_type(tag, p["idToken"]["type"])
    st.add_remote_start(p["remoteStartId"], tag, p["idToken"]["type"], evse)
    try:
        res = yield from call(CHARGER, "RemoteStartTransaction", out)
    except PeerError:
        st.drop_remote_start(p["remoteStartId"])
        raise
    status = _status("RemoteStartTransaction", res["status"])
    if status != "Accepted":
        st.drop_remote_start(p["remoteStartId"])
    return {"status": status}


@handles(
    CSMS,
    "RequestStopTransaction",
    "RemoteStopTransaction",
    notes="the string transactionId maps to the gateway's integer id; unknown id -> Rejected",
)
def request_stop(env: Env, p: Payload, ctx: Context) -> Sub:
    tx = State(ctx).tx_by_id(p["transactionId"])
    if tx is None:
        return _rejected("UnknownTransaction", "no running transaction with this id")
    res = yield from call(CHARGER, "RemoteStopTransaction", {"transactionId": tx["int"]})
    return _simple("RemoteStopTransaction", res)


@handles(
    CSMS,
    "GetTransactionStatus",
    "(answered by the gateway)",
    Support.LOCAL,
    "answered from the gateway's transaction table; messagesInQueue is always false (a 1.6 charger's "
    "offline queue is invisible)",
)
def get_transaction_status(env: Env, p: Payload, ctx: Context) -> Sub:
    yield from ()
    out: Payload = {"messagesInQueue": False}
    if "transactionId" in p:
        out["ongoingIndicator"] = State(ctx).tx_by_id(p["transactionId"]) is not None
    return out


# -- device model -----------------------------------------------------------------------------


def _echo(item: Payload) -> Payload:
    out: Payload = {"component": item["component"], "variable": item["variable"]}
    if "attributeType" in item:
        out["attributeType"] = item["attributeType"]
    return out


def _lookup(env: Env, item: Payload) -> tables.ConfigVariable | str:
    """The 1.6 key of a Get/SetVariables item, or the 2.0.1 attributeStatus that refuses it."""
    comp, var = item["component"], item["variable"]
    if item.get("attributeType", "Actual") != "Actual":
        return "NotSupportedAttributeType"
    if "evse" in comp or "instance" in comp:
        return "UnknownComponent"  # 1.6 configuration keys are station-wide
    found = env.config.for_variable(comp["name"], var["name"], var.get("instance"))
    if found is None:
        return "UnknownVariable" if comp["name"] in env.config.components else "UnknownComponent"
    return found


def _unreadable(var: tables.ConfigVariable) -> Payload | None:
    """Why GetVariables cannot read this variable's Actual value from a 1.6 charger (None: it can)."""
    if var.mutability_for(False) == "WriteOnly":
        return convert.status_info("WriteOnly", "this variable can be set but never read")
    if var.max_limit:
        return convert.status_info(
            "CountUnknown", f"1.6 {var.key} is the maximum (maxLimit in a base report), not the current count"
        )
    return None


@handles(
    CSMS,
    "GetVariables",
    "GetConfiguration",
    Support.PARTIAL,
    "component.variable -> 1.6 key per mappings/config_keys.yaml (any OCPP16LegacyCtrlr.<key> reaches that "
    "key); one GetConfiguration for all items; only attributeType Actual; EVSE-specific components -> "
    "UnknownComponent; WriteOnly variables (BasicAuthPassword) and counts whose 1.6 key is only the maximum "
    "(Entries, CertificateEntries) -> Rejected, not asked",
)
def get_variables(env: Env, p: Payload, ctx: Context) -> Sub:
    items = p["getVariableData"]
    found = [_lookup(env, item) for item in items]
    keys = sorted({f.key for f in found if isinstance(f, tables.ConfigVariable) and _unreadable(f) is None})
    values: dict[str, Payload] = {}
    if keys:
        res = yield from call(CHARGER, "GetConfiguration", {"key": keys})
        values = {k["key"]: k for k in res.get("configurationKey") or []}
    results = []
    for item, f in zip(items, found, strict=True):
        out = _echo(item)
        refused = None if isinstance(f, str) else _unreadable(f)
        if isinstance(f, str):
            out["attributeStatus"] = f
        elif refused is not None:
            out["attributeStatus"] = "Rejected"
            out["attributeStatusInfo"] = refused
        elif f.key in values:
            out["attributeStatus"] = "Accepted"
            if values[f.key].get("value") is not None:
                out["attributeValue"] = values[f.key]["value"]
        else:
            out["attributeStatus"] = "UnknownVariable"
        results.append(out)
    return {"getVariableResult": results}


@handles(
    CSMS,
    "SetVariables",
    "ChangeConfiguration (one per variable)",
    Support.PARTIAL,
    "component.variable -> 1.6 key per mappings/config_keys.yaml; one ChangeConfiguration per item, in "
    "order; 1.6 NotSupported -> UnknownVariable; values longer than 500 characters -> Rejected; after a "
    "charger timeout the remaining items are Rejected; gateway-managed security variables (BasicAuthPassword, "
    "SecurityProfile) and ReadOnly ones (Entries, CertificateEntries) -> Rejected, never forwarded",
)
def set_variables(env: Env, p: Payload, ctx: Context) -> Sub:
    results = []
    timed_out = False
    for item in p["setVariableData"]:
        out = _echo(item)
        results.append(out)
        f = _lookup(env, item)
        if isinstance(f, str):
            out["attributeStatus"] = f
            continue
        if f.gateway_managed:
            out["attributeStatus"] = "Rejected"
            out["attributeStatusInfo"] = convert.status_info(
                "GatewayManaged",
                "TLS and credentials of this link end at the gateway; change them in its configuration",
            )
            continue
        if f.mutability_for(False) == "ReadOnly":
            out["attributeStatus"] = "Rejected"
            out["attributeStatusInfo"] = convert.status_info("ReadOnly", "a CSMS cannot set this variable")
            continue
        if timed_out:
            out["attributeStatus"] = "Rejected"
            out["attributeStatusInfo"] = convert.status_info("Timeout", "the charger stopped answering")
            continue
        value: str = item["attributeValue"]
        if len(value) > MAX_CONFIG_VALUE:
            out["attributeStatus"] = "Rejected"
            out["attributeStatusInfo"] = convert.status_info("ValueTooLong", "a 1.6 value holds 500 characters")
            continue
        try:
            res = yield from call(CHARGER, "ChangeConfiguration", {"key": f.key, "value": value})
        except PeerTimeout:
            timed_out = True
            out["attributeStatus"] = "Rejected"
            out["attributeStatusInfo"] = convert.status_info("Timeout", "the charger did not answer")
            continue
        except PeerError as exc:
            out["attributeStatus"] = "Rejected"
            out["attributeStatusInfo"] = convert.status_info(exc.code, exc.description)
            continue
        out["attributeStatus"] = _status("ChangeConfiguration", res["status"])
    return {"setVariableResult": results}


def _config_entries(env: Env, res: Payload) -> list[Payload]:
    entries = []
    for k in res.get("configurationKey") or []:
        var = env.config.for_key(k["key"])
        attribute: Payload = {"type": "Actual", "mutability": var.mutability_for(bool(k.get("readonly")))}
        characteristics: Payload = {"dataType": var.data_type, "supportsMonitoring": False}
        value = k.get("value")
        if var.max_limit:
            limit = convert.number(value)
            if limit is not None:
                characteristics["maxLimit"] = limit  # the maximum; the current count stays unstated
        elif value is not None and attribute["mutability"] != "WriteOnly":
            attribute["value"] = value
        entries.append(
            {
                "component": var.component_json(),
                "variable": var.variable_json(),
                "variableAttribute": [attribute],
                "variableCharacteristics": characteristics,
            }
        )
    return entries


def _availability_entries(env: Env, st: State, res: Payload | None) -> list[Payload]:
    """ChargingStation / EVSE / Connector AvailabilityState from the statuses the charger reported."""
    statuses = {c: s.get("status") for c, s in st.connectors().items()}
    count = next(
        (k.get("value") for k in (res or {}).get("configurationKey") or [] if k["key"] == "NumberOfConnectors"), None
    )
    connectors = set(statuses) - {0}
    if count is not None and str(count).isdigit():
        connectors |= set(range(1, int(count) + 1))

    def entry(component: Payload, v16_status: str | None) -> Payload:
        attribute: Payload = {"type": "Actual", "mutability": "ReadOnly"}
        status = tables.to_v201("connector_status", v16_status) if v16_status else None
        if status:
            attribute["value"] = status
        return {
            "component": component,
            "variable": {"name": "AvailabilityState"},
            "variableAttribute": [attribute],
            "variableCharacteristics": {
                "dataType": "OptionList",
                "valuesList": "Available,Occupied,Reserved,Unavailable,Faulted",
                "supportsMonitoring": False,
            },
        }

    entries = [entry({"name": "ChargingStation"}, statuses.get(0))]
    by_evse: dict[int, list[int]] = {}
    for c in sorted(connectors):
        by_evse.setdefault(env.connectors.to_evse(c)[0], []).append(c)
    for evse, conns in sorted(by_evse.items()):
        same = {statuses.get(c) for c in conns}
        entries.append(entry({"name": "EVSE", "evse": {"id": evse}}, same.pop() if len(same) == 1 else None))
        for c in conns:
            _, ec = env.connectors.to_evse(c)
            entries.append(entry({"name": "Connector", "evse": {"id": evse, "connectorId": ec}}, statuses.get(c)))
    return entries


def _report(ctx: Context, env: Env, request_id: int, entries: list[Payload]) -> Sub:
    """Send the report as NotifyReport parts of ``env.report_chunk`` entries (seqNo from 0, tbc on all but last)."""
    chunks = [entries[i : i + env.report_chunk] for i in range(0, len(entries), env.report_chunk)] or [[]]
    for seq, chunk in enumerate(chunks):
        part: Payload = {"requestId": request_id, "generatedAt": ctx.now_iso(), "seqNo": seq}
        part["tbc"] = seq < len(chunks) - 1
        if chunk:
            part["reportData"] = chunk
        yield Notify(CSMS, "NotifyReport", part)
    return {}


@handles(
    CSMS,
    "GetBaseReport",
    "GetConfiguration + NotifyReport (synthesised)",
    Support.PARTIAL,
    "answered Accepted at once; ConfigurationInventory/FullInventory: GetConfiguration, each key as its "
    "variable (mutability from readonly unless the table says, dataType from the table; a 1.6 maximum such as "
    "LocalAuthListMaxLength is the maxLimit of its count variable, which gets no value; WriteOnly: no value); "
    "FullInventory/SummaryInventory add ChargingStation/EVSE/Connector AvailabilityState from reported "
    "statuses; sent as NotifyReport parts",
)
def get_base_report(env: Env, p: Payload, ctx: Context) -> Sub:
    base = p["reportBase"]
    yield Reply({"status": "Accepted"})
    entries: list[Payload] = []
    res: Payload | None = None
    if base in ("ConfigurationInventory", "FullInventory"):
        try:
            res = yield from call(CHARGER, "GetConfiguration", {})
        except PeerError:
            res = None  # already accepted: report what the gateway knows rather than nothing at all
        entries += _config_entries(env, res or {})
    if base in ("FullInventory", "SummaryInventory"):
        entries += _availability_entries(env, State(ctx), res)
    yield from _report(ctx, env, p["requestId"], entries)
    return {}


def _matches(entry: Payload, want: Payload) -> bool:
    comp, wcomp = entry["component"], want["component"]
    if comp["name"] != wcomp["name"] or comp.get("instance") != wcomp.get("instance"):
        return False
    if "evse" in wcomp:
        evse = comp.get("evse") or {}
        if evse.get("id") != wcomp["evse"]["id"]:
            return False
        if "connectorId" in wcomp["evse"] and evse.get("connectorId") != wcomp["evse"]["connectorId"]:
            return False
    wvar = want.get("variable")
    if wvar is None:
        return True
    var = entry["variable"]
    return bool(var["name"] == wvar["name"] and ("instance" not in wvar or var.get("instance") == wvar["instance"]))


@handles(
    CSMS,
    "GetReport",
    "GetConfiguration + NotifyReport (synthesised)",
    Support.PARTIAL,
    "the full synthesised report filtered by componentVariable; componentCriteria is not evaluated; "
    "EmptyResultSet when nothing matches",
)
def get_report(env: Env, p: Payload, ctx: Context) -> Sub:
    res = yield from call(CHARGER, "GetConfiguration", {})
    entries = _config_entries(env, res) + _availability_entries(env, State(ctx), res)
    wanted = p.get("componentVariable")
    if wanted:
        entries = [e for e in entries if any(_matches(e, w) for w in wanted)]
    if not entries:
        return {"status": "EmptyResultSet"}
    yield Reply({"status": "Accepted"})
    yield from _report(ctx, env, p["requestId"], entries)
    return {}


# -- station control --------------------------------------------------------------------------


@handles(
    CSMS,
    "Reset",
    "Reset",
    Support.PARTIAL,
    "Immediate -> Hard; OnIdle -> Soft, and while a transaction runs the gateway answers Scheduled and sends "
    "the Soft reset after the last StopTransaction; a Reset of one EVSE -> Rejected",
)
def reset(env: Env, p: Payload, ctx: Context) -> Sub:
    st = State(ctx)
    if "evseId" in p:
        return _rejected("EvseResetUnsupported", "a 1.6 charger resets as a whole")
    if p["type"] == "OnIdle" and st.transactions:
        st.set("pending_reset", True)
        return {"status": "Scheduled"}
    res = yield from call(CHARGER, "Reset", {"type": tables.to_v16("reset_type", p["type"]) or "Hard"})
    status = _status("Reset", res["status"])
    if status == "Accepted":
        st.set("pending_reset", None)
        st.set("boot_reason", "RemoteReset")
    return {"status": status}


def _combine(statuses: list[str]) -> str:
    """One status for a request fanned out to several 1.6 connectors: the worst one wins."""
    for worst in ("Rejected", "Scheduled"):
        if worst in statuses:
            return worst
    return "Accepted"


@handles(
    CSMS,
    "ChangeAvailability",
    "ChangeAvailability (one per connector)",
    notes="no evse -> connectorId 0; an EVSE without connectorId -> each of its connectors",
)
def change_availability(env: Env, p: Payload, ctx: Context) -> Sub:
    evse = p.get("evse")
    if evse is None:
        conns = [0]
    elif "connectorId" in evse:
        c = env.connectors.to_connector(evse["id"], evse["connectorId"])
        conns = [] if c is None else [c]
    else:
        conns = env.connectors.connectors_of(evse["id"])
    if not conns:
        return _rejected("UnknownEvse", "no such EVSE/connector")
    kind = tables.to_v16("availability_type", p["operationalStatus"]) or p["operationalStatus"]
    statuses = []
    for c in conns:
        res = yield from call(CHARGER, "ChangeAvailability", {"connectorId": c, "type": kind})
        statuses.append(_status("ChangeAvailability", res["status"]))
    return {"status": _combine(statuses)}


@handles(
    CSMS,
    "UnlockConnector",
    "UnlockConnector",
    notes="during a transaction on that connector the gateway answers OngoingAuthorizedTransaction itself "
    "(a 1.6 charger would stop the transaction); 1.6 NotSupported -> UnknownConnector",
)
def unlock_connector(env: Env, p: Payload, ctx: Context) -> Sub:
    c = env.connectors.to_connector(p["evseId"], p["connectorId"])
    if not c:
        return {"status": "UnknownConnector"}
    if State(ctx).tx_on_connector(c) is not None:
        return {"status": "OngoingAuthorizedTransaction"}
    res = yield from call(CHARGER, "UnlockConnector", {"connectorId": c})
    return {"status": _status("UnlockConnector", res["status"], "UnlockFailed")}


TRIGGER_ANSWER_WINDOW = 60.0  # seconds within which a MeterValues counts as the answer to a TriggerMessage


@handles(
    CSMS,
    "TriggerMessage",
    "TriggerMessage / ExtendedTriggerMessage",
    Support.PARTIAL,
    "requestedMessage per mappings/trigger_message.yaml (TransactionEvent -> MeterValues, "
    "LogStatusNotification -> DiagnosticsStatusNotification, SignChargingStationCertificate -> "
    "ExtendedTriggerMessage); the MeterValues the charger then sends becomes what the CSMS asked for "
    "(TransactionEvent(Updated, Trigger) or MeterValues); TransactionEvent with no transaction running on "
    "the EVSE (or anywhere, without evse) -> Rejected; others -> NotImplemented",
)
def trigger_message(env: Env, p: Payload, ctx: Context) -> Sub:
    st = State(ctx)
    wanted = p["requestedMessage"]
    row = tables.to_v16_row("trigger_message", wanted)
    if row is None:
        return {"status": "NotImplemented"}
    out: Payload = {"requestedMessage": row["v16"]}
    evse = p.get("evse")
    scope: list[int] | None = None  # the 1.6 connectors asked; None: all of them
    if evse and evse["id"] > 0:
        c = env.connectors.to_connector(evse["id"], evse.get("connectorId"))
        if c is None:
            return _rejected("UnknownEvse", "no such EVSE/connector")
        out["connectorId"] = c
        scope = [c]
    expect: list[int] = []
    if row["v16"] == "MeterValues":
        # The charger answers with MeterValues either way; the gateway must know which message it stands for.
        expect = [int(tx["connector"]) for tx in st.transactions.values() if scope is None or tx["connector"] in scope]
        if wanted == "TransactionEvent" and not expect:
            return _rejected("NoTransaction", "no transaction is running there")
        st.expect_trigger(expect, wanted, ctx.clock().timestamp() + TRIGGER_ANSWER_WINDOW)
    action = str(row.get("v16_action") or "TriggerMessage")
    try:
        res = yield from call(CHARGER, action, out)
    except PeerError:
        st.drop_triggers(expect)
        raise
    status = _status(action, res["status"])
    if status != "Accepted":
        st.drop_triggers(expect)
    elif wanted == "BootNotification":
        st.set("boot_reason", "Triggered")
    return {"status": status}


@handles(CSMS, "ClearCache", "ClearCache")
def clear_cache(env: Env, p: Payload, ctx: Context) -> Sub:
    res = yield from call(CHARGER, "ClearCache", {})
    return _simple("ClearCache", res)


@handles(
    CSMS,
    "DataTransfer",
    "DataTransfer",
    notes="request data that is not a string is JSON-encoded for 1.6; response data stays a string",
)
def data_transfer(env: Env, p: Payload, ctx: Context) -> Sub:
    out: Payload = {"vendorId": p["vendorId"]}
    if "messageId" in p:
        out["messageId"] = p["messageId"]
    if p.get("data") is not None:
        out["data"] = convert.text(p["data"])
    res = yield from call(CHARGER, "DataTransfer", out)
    back: Payload = {"status": _status("DataTransfer", res["status"])}
    if res.get("data") is not None:
        back["data"] = res["data"]
    return back


# -- smart charging ---------------------------------------------------------------------------


@handles(
    CSMS,
    "SetChargingProfile",
    "SetChargingProfile",
    Support.PARTIAL,
    "evseId -> connectorId, id -> chargingProfileId, purposes per mappings/charging_profile_purpose.yaml, "
    "transactionId -> the gateway's integer id; only the first chargingSchedule; limits rounded to 0.1; "
    "lost: phaseToUse, salesTariff; ChargingStationExternalConstraints -> Rejected",
)
def set_charging_profile(env: Env, p: Payload, ctx: Context) -> Sub:
    conn = env.connectors.to_connector(p["evseId"])
    if conn is None:
        return _rejected("UnknownEvse", f"EVSE {p['evseId']} has no 1.6 connector")
    profile = p["chargingProfile"]
    tx_int = None
    if "transactionId" in profile:
        tx = State(ctx).tx_by_id(profile["transactionId"])
        if tx is None:
            return _rejected("UnknownTransaction", "no running transaction with this id")
        tx_int = tx["int"]
    try:
        cs = convert.profile_to_v16(profile, tx_int)
    except convert.ProfileError as exc:
        return _rejected("UnsupportedProfile", str(exc))
    res = yield from call(CHARGER, "SetChargingProfile", {"connectorId": conn, "csChargingProfiles": cs})
    result = _simple("SetChargingProfile", res)
    if result["status"] == "Accepted":
        State(ctx).store_profile(p["evseId"], convert.profile_as_installed(profile))
    return result


@handles(
    CSMS,
    "ClearChargingProfile",
    "ClearChargingProfile",
    notes="chargingProfileId -> id; criteria evseId/purpose/stackLevel -> connectorId/purpose/stackLevel",
)
def clear_charging_profile(env: Env, p: Payload, ctx: Context) -> Sub:
    out: Payload = {}
    if "chargingProfileId" in p:
        out["id"] = p["chargingProfileId"]
    crit = p.get("chargingProfileCriteria") or {}
    if "evseId" in crit:
        conn = env.connectors.to_connector(crit["evseId"])
        if conn is None:
            return {"status": "Unknown"}
        out["connectorId"] = conn
    if "chargingProfilePurpose" in crit:
        purpose = tables.to_v16("charging_profile_purpose", crit["chargingProfilePurpose"])
        if purpose is None:
            return {"status": "Unknown"}  # a 1.6 charger cannot hold such a profile
        out["chargingProfilePurpose"] = purpose
    if "stackLevel" in crit:
        out["stackLevel"] = crit["stackLevel"]
    res = yield from call(CHARGER, "ClearChargingProfile", out)
    result = _simple("ClearChargingProfile", res)
    if result["status"] == "Accepted":

        def keep(evse: int, profile: Payload) -> bool:
            if "chargingProfileId" in p:
                return bool(profile["id"] != p["chargingProfileId"])
            return not (
                crit.get("evseId", evse) == evse
                and crit.get("chargingProfilePurpose", profile["chargingProfilePurpose"])
                == profile["chargingProfilePurpose"]
                and crit.get("stackLevel", profile["stackLevel"]) == profile["stackLevel"]
            )

        State(ctx).clear_profiles(keep)
    return result


@handles(
    CSMS,
    "GetChargingProfiles",
    "(answered by the gateway) + ReportChargingProfiles",
    Support.LOCAL,
    "1.6 cannot list profiles: the gateway reports the profiles the charger accepted through it (as installed: "
    "first schedule, 0.1 limits), chargingLimitSource CSO; TxProfiles are forgotten when their transaction ends",
)
def get_charging_profiles(env: Env, p: Payload, ctx: Context) -> Sub:
    crit = p["chargingProfile"]
    if "CSO" not in crit.get("chargingLimitSource", ["CSO"]):
        return {"status": "NoProfiles"}
    by_evse: dict[int, list[Payload]] = {}
    for entry in State(ctx).profiles.values():
        profile = entry["profile"]
        if "evseId" in p and entry["evse"] != p["evseId"]:
            continue
        if crit.get("chargingProfilePurpose", profile["chargingProfilePurpose"]) != profile["chargingProfilePurpose"]:
            continue
        if crit.get("stackLevel", profile["stackLevel"]) != profile["stackLevel"]:
            continue
        if profile["id"] not in crit.get("chargingProfileId", [profile["id"]]):
            continue
        by_evse.setdefault(entry["evse"], []).append(profile)
    if not by_evse:
        return {"status": "NoProfiles"}
    yield Reply({"status": "Accepted"})
    for i, (evse, profiles) in enumerate(sorted(by_evse.items())):
        report: Payload = {"requestId": p["requestId"], "chargingLimitSource": "CSO", "evseId": evse}
        report["chargingProfile"] = profiles
        report["tbc"] = i < len(by_evse) - 1
        yield Notify(CSMS, "ReportChargingProfiles", report)
    return {}


@handles(
    CSMS,
    "GetCompositeSchedule",
    "GetCompositeSchedule",
    notes="evseId -> connectorId; the single 1.6 schedule becomes schedule{evseId, duration, scheduleStart, ...}",
)
def get_composite_schedule(env: Env, p: Payload, ctx: Context) -> Sub:
    conn = env.connectors.to_connector(p["evseId"])
    if conn is None:
        return _rejected("UnknownEvse", f"EVSE {p['evseId']} has no 1.6 connector")
    out: Payload = {"connectorId": conn, "duration": p["duration"]}
    if "chargingRateUnit" in p:
        out["chargingRateUnit"] = p["chargingRateUnit"]
    res = yield from call(CHARGER, "GetCompositeSchedule", out)
    return convert.composite_to_v201(res, p["evseId"], p["duration"], ctx.now_iso())


# -- firmware and logs ------------------------------------------------------------------------


@handles(
    CSMS,
    "GetLog",
    "GetDiagnostics / GetLog (security extension)",
    notes="DiagnosticsLog -> GetDiagnostics (remoteLocation -> location, oldest/latestTimestamp -> "
    "startTime/stopTime; requestId kept by the gateway for DiagnosticsStatusNotification); SecurityLog -> "
    "the 1.6 security extension's GetLog",
)
def get_log(env: Env, p: Payload, ctx: Context) -> Sub:
    if p["logType"] == "SecurityLog":
        res = yield from call(CHARGER, "GetLog", convert.strip_custom(p))
        out = _simple("GetLog", res)
        if res.get("filename"):
            out["filename"] = res["filename"]
        return out
    log = p["log"]
    _require_uri(log["remoteLocation"], "log.remoteLocation")
    req: Payload = {"location": log["remoteLocation"]}
    for src, dst in (("oldestTimestamp", "startTime"), ("latestTimestamp", "stopTime")):
        if src in log:
            req[dst] = log[src]
    for field in ("retries", "retryInterval"):
        if field in p:
            req[field] = p[field]
    res = yield from call(CHARGER, "GetDiagnostics", req)
    State(ctx).set("log_request_id", p["requestId"])
    out = {"status": "Accepted"}
    if res.get("fileName"):
        out["filename"] = res["fileName"]
    return out


# 1.6 declares these locations `format: uri` (2.0.1 only a string): what the 1.6 schema checks.
_URI = re.compile(r"^\w+:(/?/?)[^\s]+$")


def _require_uri(location: str, field: str) -> None:
    if not _URI.match(location):
        raise Refuse(ErrorKind.PROPERTY, f"{field} {location!r} is not a URI (scheme://...), which OCPP 1.6 requires")


@handles(
    CSMS,
    "UpdateFirmware",
    "UpdateFirmware / SignedUpdateFirmware",
    Support.PARTIAL,
    "signed firmware (signature + signingCertificate) -> the 1.6 security extension's SignedUpdateFirmware; "
    "unsigned -> UpdateFirmware (retrieveDateTime -> retrieveDate, installDateTime lost), answered Accepted; "
    "a signature without signingCertificate -> Rejected rather than installing unverified",
)
def update_firmware(env: Env, p: Payload, ctx: Context) -> Sub:
    fw = p["firmware"]
    if fw.get("signature") or fw.get("signingCertificate"):
        if not (fw.get("signature") and fw.get("signingCertificate")):
            return _rejected("NoSigningCertificate", "1.6 SignedUpdateFirmware needs signature and certificate")
        res = yield from call(CHARGER, "SignedUpdateFirmware", convert.strip_custom(p))
        return _simple("SignedUpdateFirmware", res)
    _require_uri(fw["location"], "firmware.location")
    req: Payload = {"location": fw["location"], "retrieveDate": fw["retrieveDateTime"]}
    for field in ("retries", "retryInterval"):
        if field in p:
            req[field] = p[field]
    yield from call(CHARGER, "UpdateFirmware", req)
    State(ctx).set("firmware_request_id", p["requestId"])
    return {"status": "Accepted"}


# -- local list and reservations --------------------------------------------------------------


@handles(
    CSMS,
    "SendLocalList",
    "SendLocalList",
    notes="versionNumber -> listVersion; idToken/idTokenInfo -> idTag/idTagInfo; an idToken longer than 20 "
    "characters -> Failed; 1.6 NotSupported -> Failed",
)
def send_local_list(env: Env, p: Payload, ctx: Context) -> Sub:
    st = State(ctx)
    entries = []
    for e in p.get("localAuthorizationList") or []:
        tag = e["idToken"]["idToken"]
        if len(tag) > MAX_ID_TAG:
            return _rejected("IdTokenTooLong", f"{tag} does not fit a 1.6 idTag", status="Failed")
        item: Payload = {"idTag": tag}
        if "idTokenInfo" in e:
            item["idTagInfo"] = convert.id_tag_info(e["idTokenInfo"])
        entries.append(item)
    for e in p.get("localAuthorizationList") or []:
        st.remember_token_type(e["idToken"]["idToken"], e["idToken"]["type"])
    out: Payload = {"listVersion": p["versionNumber"], "updateType": p["updateType"]}
    if entries:
        out["localAuthorizationList"] = entries
    res = yield from call(CHARGER, "SendLocalList", out)
    return {"status": _status("SendLocalList", res["status"], "Failed")}


@handles(CSMS, "GetLocalListVersion", "GetLocalListVersion", notes="listVersion -> versionNumber; 1.6 -1 -> 0")
def get_local_list_version(env: Env, p: Payload, ctx: Context) -> Sub:
    res = yield from call(CHARGER, "GetLocalListVersion", {})
    return {"versionNumber": max(0, int(res["listVersion"]))}


@handles(
    CSMS,
    "ReserveNow",
    "ReserveNow",
    Support.PARTIAL,
    "id -> reservationId, expiryDateTime -> expiryDate, idToken -> idTag, groupIdToken -> parentIdTag, no "
    "evseId -> connector 0; lost: connectorType; ReservationStatusUpdate Expired/Removed is synthesised when a "
    "reserved connector becomes Available/Unavailable/Faulted without starting a transaction",
)
def reserve_now(env: Env, p: Payload, ctx: Context) -> Sub:
    tag = p["idToken"]["idToken"]
    if len(tag) > MAX_ID_TAG:
        return _rejected("IdTokenTooLong", f"a 1.6 idTag holds at most {MAX_ID_TAG} characters")
    conn = env.connectors.to_connector(p["evseId"]) if "evseId" in p else 0
    if conn is None:
        return _rejected("UnknownEvse", f"EVSE {p['evseId']} has no 1.6 connector")
    out: Payload = {"connectorId": conn, "expiryDate": p["expiryDateTime"], "idTag": tag, "reservationId": p["id"]}
    group = (p.get("groupIdToken") or {}).get("idToken")
    if group and len(group) <= MAX_ID_TAG:
        out["parentIdTag"] = group
    st = State(ctx)
    st.remember_token_type(tag, p["idToken"]["type"])
    res = yield from call(CHARGER, "ReserveNow", out)
    result = _simple("ReserveNow", res)
    if result["status"] == "Accepted":
        st.add_reservation(p["id"], conn, p["expiryDateTime"])
    return result


@handles(CSMS, "CancelReservation", "CancelReservation")
def cancel_reservation(env: Env, p: Payload, ctx: Context) -> Sub:
    res = yield from call(CHARGER, "CancelReservation", {"reservationId": p["reservationId"]})
    result = _simple("CancelReservation", res)
    if result["status"] == "Accepted":
        State(ctx).drop_reservation(p["reservationId"])
    return result


# -- security extension -----------------------------------------------------------------------


@handles(CSMS, "CertificateSigned", "CertificateSigned", notes="V2GCertificate chains -> Rejected")
def certificate_signed(env: Env, p: Payload, ctx: Context) -> Sub:
    if p.get("certificateType", "ChargingStationCertificate") != "ChargingStationCertificate":
        return _rejected("UnsupportedCertType", "1.6 has no V2G certificates")
    res = yield from call(CHARGER, "CertificateSigned", {"certificateChain": p["certificateChain"]})
    return _simple("CertificateSigned", res)


@handles(
    CSMS,
    "InstallCertificate",
    "InstallCertificate",
    notes="certificateType per mappings/certificate_type.yaml; V2G and MO roots -> Rejected",
)
def install_certificate(env: Env, p: Payload, ctx: Context) -> Sub:
    kind = tables.to_v16("certificate_type", p["certificateType"])
    if kind is None:
        return _rejected("UnsupportedCertType", f"1.6 has no {p['certificateType']}")
    res = yield from call(CHARGER, "InstallCertificate", {"certificateType": kind, "certificate": p["certificate"]})
    return _simple("InstallCertificate", res)


@handles(
    CSMS,
    "GetInstalledCertificateIds",
    "GetInstalledCertificateIds (one per type)",
    notes="one 1.6 request per certificate type; types 1.6 lacks contribute nothing",
)
def get_installed_certificate_ids(env: Env, p: Payload, ctx: Context) -> Sub:
    wanted = p.get("certificateType") or [
        str(r["v201"]) for r in mappings.rows("certificate_type") if r.get("direction", "both") == "both"
    ]
    chain: list[Payload] = []
    for kind in wanted:
        v16_kind = tables.to_v16("certificate_type", kind)
        if v16_kind is None:
            continue
        res = yield from call(CHARGER, "GetInstalledCertificateIds", {"certificateType": v16_kind})
        for h in res.get("certificateHashData") or []:
            chain.append({"certificateType": kind, "certificateHashData": h})
    out: Payload = {"status": "Accepted" if chain else "NotFound"}
    if chain:
        out["certificateHashDataChain"] = chain
    return out


@handles(CSMS, "DeleteCertificate", "DeleteCertificate")
def delete_certificate(env: Env, p: Payload, ctx: Context) -> Sub:
    res = yield from call(
        CHARGER, "DeleteCertificate", {"certificateHashData": convert.strip_custom(p["certificateHashData"])}
    )
    return _simple("DeleteCertificate", res)
