"""OCPP 2.0.1 <-> 2.1 in both orientations, checked against both versions' schemas."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from adapters import registry
from adapters.base import Context, Handler, Notify, OutCall, Refuse, Reply, Side, Support
from adapters.v201_v21 import ENUM_TABLE, V201V21, Unrepresentable, convert, enum_map
from gateway import schemas
from gateway.ocppj import Call, ErrorKind, Version

V201, V21 = Version.V201, Version.V21
COMMON = sorted(schemas.actions(V201))
ONLY_21 = sorted(schemas.actions(V21) - schemas.actions(V201))


def sample(schema: dict[str, Any], node: dict[str, Any] | None = None) -> Any:
    """A valid instance with every optional field filled in (first enum value, smallest numbers)."""
    node = schema if node is None else node
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    if "enum" in node:
        return node["enum"][0]
    kind = node.get("type")
    if kind == "object":
        return {k: sample(schema, v) for k, v in node.get("properties", {}).items() if k != "customData"}
    if kind == "array":
        return [sample(schema, node.get("items", {})) for _ in range(max(1, node.get("minItems", 1)))]
    if kind == "string":
        if node.get("format") == "date-time":
            return "2024-05-01T10:00:00Z"
        if node.get("format") == "uri":
            return "https://example.com/x"
        return "x"
    if kind in ("integer", "number"):
        one = min(max(1, node.get("minimum", 1)), node.get("maximum", 1))
        return int(one) if kind == "integer" else float(one)
    if kind == "boolean":
        return True
    return {"any": "thing"}


def valid(version: Version, action: str, payload: dict[str, Any], response: bool = False) -> None:
    violation = schemas.validate(version, action, payload, response=response)
    assert violation is None, f"{action} {'response' if response else 'request'}: {violation.describe()}"


def drive(handler: Handler, answer: Callable[[OutCall], dict[str, Any]]) -> tuple[list[OutCall], Any]:
    calls: list[OutCall] = []
    value = None
    while True:
        try:
            step = handler.send(value)
        except StopIteration as stop:
            return calls, stop.value
        assert isinstance(step, OutCall)
        calls.append(step)
        value = answer(step)


def ctx(charger: Version, csms: Version) -> Context:
    return Context("CS1", charger, csms)


# --- the enumeration table is complete and points at real 2.0.1 values -------------------------------------


def _enum_defs(version: Version) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for action in COMMON:
        for response in (False, True):
            for name, d in schemas.load_schema(version, action, response).get("definitions", {}).items():
                if "enum" in d:
                    found.setdefault(name, set()).update(d["enum"])
    return found


ENUMS_201, ENUMS_21 = _enum_defs(V201), _enum_defs(V21)
NEW_VALUES = sorted(
    (name, value) for name, values in ENUMS_21.items() if name in ENUMS_201 for value in values - ENUMS_201[name]
)


@pytest.mark.parametrize(("enum", "value"), NEW_VALUES)
def test_every_value_only_21_has_a_row_in_the_enum_table(enum: str, value: str) -> None:
    """Each 2.1-only value of a shared enumeration is mapped (or explicitly marked inexpressible)."""
    assert (enum, value) in enum_map(), f"add {{enum: {enum}, v21: {value}, v201: ...}} to {ENUM_TABLE}.yaml"


@pytest.mark.parametrize(("key", "target"), sorted(enum_map().items(), key=str))
def test_every_enum_table_row_maps_to_a_value_of_that_201_enumeration(key: tuple[str, str], target: str | None) -> None:
    """A row names a 2.0.1 enumeration and, unless null, one of its values."""
    enum, _ = key
    assert enum in ENUMS_201
    assert target is None or target in ENUMS_201[enum]


# --- every 2.0.1 message survives the trip up and back ------------------------------------------------------


@pytest.mark.parametrize("response", [False, True], ids=["request", "response"])
@pytest.mark.parametrize("action", COMMON)
def test_every_201_message_round_trips_through_21(action: str, response: bool) -> None:
    """A 2.0.1 payload with every field set is valid 2.1 after going up and identical after coming back."""
    original = sample(schemas.load_schema(V201, action, response))
    valid(V201, action, original, response)
    up = convert(V21, action, copy.deepcopy(original), response=response).payload
    valid(V21, action, up, response)
    down = convert(V201, action, up, response=response).payload
    valid(V201, action, down, response)
    assert down == original


@pytest.mark.parametrize("response", [False, True], ids=["request", "response"])
@pytest.mark.parametrize("action", COMMON)
def test_every_21_message_with_every_field_set_becomes_valid_201(action: str, response: bool) -> None:
    """A 2.1 payload with every field set (2.1-only ones too) comes down valid, its extras stripped."""
    payload = sample(schemas.load_schema(V21, action, response))
    valid(V21, action, payload, response)
    result = convert(V201, action, payload, response=response)
    valid(V201, action, result.payload, response)
    expected_drop = set(payload) - set(schemas.load_schema(V201, action, response)["properties"])
    assert {f"$.{k} dropped" for k in expected_drop} <= set(result.changes)


# --- field-level rules, one row each ------------------------------------------------------------------------

SV = {"value": 5.0}


def tx_event(sampled: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "eventType": "Updated",
        "timestamp": "2024-05-01T10:00:00Z",
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 3,
        "transactionInfo": {"transactionId": "tx-1"},
        "meterValue": [{"timestamp": "2024-05-01T10:00:00Z", "sampledValue": sampled}],
        **extra,
    }


DOWN_CASES: list[tuple[str, str, dict[str, Any], Callable[[dict[str, Any]], Any], Any]] = [
    (
        "reset type ImmediateAndResume is Immediate",
        "Reset",
        {"type": "ImmediateAndResume"},
        lambda p: p["type"],
        "Immediate",
    ),
    (
        "new trigger reason mapped to its nearest",
        "TransactionEvent",
        tx_event([SV], triggerReason="SoCLimitReached"),
        lambda p: p["triggerReason"],
        "EnergyLimitReached",
    ),
    (
        "stopped reason ReqEnergyTransferRejected is Other",
        "TransactionEvent",
        tx_event([SV], transactionInfo={"transactionId": "t", "stoppedReason": "ReqEnergyTransferRejected"}),
        lambda p: p["transactionInfo"]["stoppedReason"],
        "Other",
    ),
    (
        "a sampled value whose measurand 2.0.1 lacks is dropped, the others kept",
        "TransactionEvent",
        tx_event([{"value": 1.0, "measurand": "EnergyRequest.Target"}, {"value": 2.0, "measurand": "SoC"}]),
        lambda p: p["meterValue"][0]["sampledValue"],
        [{"value": 2.0, "measurand": "SoC"}],
    ),
    (
        "a meter value left empty is dropped from an optional list",
        "TransactionEvent",
        tx_event([{"value": 1.0, "measurand": "Voltage.Maximum"}]),
        lambda p: "meterValue" in p,
        False,
    ),
    (
        "measurand with a near 2.0.1 name is renamed",
        "MeterValues",
        {
            "evseId": 1,
            "meterValue": [
                {
                    "timestamp": "2024-05-01T10:00:00Z",
                    "sampledValue": [{"value": 16, "measurand": "Current.Import.Offered"}],
                }
            ],
        },
        lambda p: p["meterValue"][0]["sampledValue"][0]["measurand"],
        "Current.Offered",
    ),
    (
        "location Upstream is the grid inlet",
        "MeterValues",
        {
            "evseId": 0,
            "meterValue": [
                {"timestamp": "2024-05-01T10:00:00Z", "sampledValue": [{"value": 1, "location": "Upstream"}]}
            ],
        },
        lambda p: p["meterValue"][0]["sampledValue"][0]["location"],
        "Inlet",
    ),
    (
        "a custom 2.1 idToken type falls back to Local",
        "Authorize",
        {"idToken": {"idToken": "AB12", "type": "MyCustomType"}},
        lambda p: p["idToken"]["type"],
        "Local",
    ),
    (
        "EVCCID tokens are MAC addresses in 2.0.1",
        "Authorize",
        {"idToken": {"idToken": "0A0B0C0D0E0F", "type": "EVCCID"}},
        lambda p: p["idToken"]["type"],
        "MacAddress",
    ),
    (
        "2.1-only top-level fields are stripped",
        "FirmwareStatusNotification",
        {"status": "Installed", "requestId": 4, "statusInfo": {"reasonCode": "OK"}},
        lambda p: p,
        {"status": "Installed", "requestId": 4},
    ),
    (
        "2.1-only nested fields are stripped",
        "NotifyEvent",
        {
            "generatedAt": "2024-05-01T10:00:00Z",
            "seqNo": 0,
            "eventData": [
                {
                    "eventId": 1,
                    "timestamp": "2024-05-01T10:00:00Z",
                    "trigger": "Alerting",
                    "actualValue": "1",
                    "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "EVSE"},
                    "variable": {"name": "Problem"},
                    "severity": 2,
                }
            ],
        },
        lambda p: "severity" in p["eventData"][0],
        False,
    ),
    (
        "network profile without ocppVersion gets the 2.0.1 charger's own",
        "SetNetworkProfile",
        {
            "configurationSlot": 1,
            "connectionData": {
                "ocppTransport": "JSON",
                "ocppCsmsUrl": "wss://csms.example/ocpp",
                "messageTimeout": 30,
                "securityProfile": 2,
                "ocppInterface": "Wired0",
            },
        },
        lambda p: p["connectionData"]["ocppVersion"],
        "OCPP20",
    ),
    (
        "charging needs amounts become integers",
        "NotifyEVChargingNeeds",
        {
            "evseId": 1,
            "chargingNeeds": {
                "requestedEnergyTransfer": "AC_three_phase",
                "acChargingParameters": {
                    "energyAmount": 1500.6,
                    "evMinCurrent": 6,
                    "evMaxCurrent": 32,
                    "evMaxVoltage": 400,
                },
            },
        },
        lambda p: p["chargingNeeds"]["acChargingParameters"]["energyAmount"],
        1501,
    ),
    (
        "bidirectional DC transfer is DC",
        "NotifyEVChargingNeeds",
        {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "DC_BPT"}},
        lambda p: p["chargingNeeds"]["requestedEnergyTransfer"],
        "DC",
    ),
    (
        "status text longer than 2.0.1 allows is shortened",
        "ResetResponse",
        {"status": "Rejected", "statusInfo": {"reasonCode": "Busy", "additionalInfo": "y" * 1000}},
        lambda p: len(p["statusInfo"]["additionalInfo"]),
        512,
    ),
]


@pytest.mark.parametrize(
    ("action", "payload", "pick", "expected"), [c[1:] for c in DOWN_CASES], ids=[c[0] for c in DOWN_CASES]
)
def test_field_rules_going_down(
    action: str, payload: dict[str, Any], pick: Callable[[Any], Any], expected: Any
) -> None:
    """Each 2.1 -> 2.0.1 field rule gives the documented value and a schema-valid 2.0.1 payload."""
    response = action.endswith("Response")
    action = action.removesuffix("Response")
    valid(V21, action, payload, response)
    result = convert(V201, action, payload, response=response).payload
    valid(V201, action, result, response)
    assert pick(result) == expected


REFUSED_DOWN: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "a charging period without limit",
        "SetChargingProfile",
        {
            "evseId": 1,
            "chargingProfile": {
                "id": 1,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": [
                    {
                        "id": 1,
                        "chargingRateUnit": "W",
                        "chargingSchedulePeriod": [
                            {"startPeriod": 0, "setpoint": 5000.0, "operationMode": "CentralSetpoint"}
                        ],
                    }
                ],
            },
        },
        "$.chargingProfile.chargingSchedule[0].chargingSchedulePeriod[0].limit",
    ),
    (
        "a profile purpose 2.0.1 lacks",
        "ClearChargingProfile",
        {"chargingProfileCriteria": {"chargingProfilePurpose": "PriorityCharging"}},
        "$.chargingProfileCriteria.chargingProfilePurpose",
    ),
    (
        "an idToken longer than 36 characters",
        "Authorize",
        {"idToken": {"idToken": "t" * 40, "type": "eMAID"}},
        "$.idToken.idToken",
    ),
    (
        "a custom trigger",
        "TriggerMessage",
        {"requestedMessage": "CustomTrigger", "customTrigger": "X"},
        "$.requestedMessage",
    ),
    (
        "a data collector log",
        "GetLog",
        {"logType": "DataCollectorLog", "requestId": 1, "log": {"remoteLocation": "ftp://x"}},
        "$.logType",
    ),
]


@pytest.mark.parametrize(("action", "payload", "path"), [c[1:] for c in REFUSED_DOWN], ids=[c[0] for c in REFUSED_DOWN])
def test_what_201_cannot_express_is_unrepresentable(action: str, payload: dict[str, Any], path: str) -> None:
    """A 2.1 value with no 2.0.1 counterpart fails the conversion and names the field."""
    valid(V21, action, payload)
    with pytest.raises(Unrepresentable) as caught:
        convert(V201, action, payload, response=False)
    assert caught.value.path == path


def test_monitor_report_from_201_gets_the_notification_type_21_requires() -> None:
    """Going up, a 2.0.1 variable monitor gets the eventNotificationType 2.1 requires."""
    payload = {
        "requestId": 1,
        "seqNo": 0,
        "generatedAt": "2024-05-01T10:00:00Z",
        "monitor": [
            {
                "component": {"name": "EVSE"},
                "variable": {"name": "Power"},
                "variableMonitoring": [
                    {"id": 1, "transaction": False, "value": 5.0, "type": "UpperThreshold", "severity": 5}
                ],
            }
        ],
    }
    up = convert(V21, "NotifyMonitoringReport", payload, response=False).payload
    valid(V21, "NotifyMonitoringReport", up)
    assert up["monitor"][0]["variableMonitoring"][0]["eventNotificationType"] == "PreconfiguredMonitor"


# --- the translator: both orientations ----------------------------------------------------------------------


def test_registry_serves_both_orientations() -> None:
    """2.0.1 -> 2.1 and 2.1 -> 2.0.1 are registered pairs."""
    up = registry.translator_for(V201, V21)
    down = registry.translator_for(V21, V201)
    assert isinstance(up, V201V21) and (up.charger_version, up.csms_version) == (V201, V21)
    assert isinstance(down, V201V21) and (down.charger_version, down.csms_version) == (V21, V201)


@pytest.mark.parametrize(
    ("charger", "csms", "origin", "action"),
    [
        (V21, V201, Side.CHARGER, "NotifyDERAlarm"),
        (V21, V201, Side.CHARGER, "NotifyAllowedEnergyTransfer"),
        (V201, V21, Side.CSMS, "SetDefaultTariff"),
        (V201, V21, Side.CSMS, "RequestBatterySwap"),
    ],
)
def test_21_only_message_to_a_201_peer_is_refused_not_supported(
    charger: Version, csms: Version, origin: Side, action: str
) -> None:
    """A 2.1-only message is answered NotSupported and nothing is sent to the 2.0.1 side."""
    tr = V201V21(charger, csms)
    payload = sample(schemas.load_schema(V21, action, False))
    with pytest.raises(Refuse) as caught:
        drive(tr.handle_call(origin, Call("m1", action, payload), ctx(charger, csms)), lambda c: {})
    assert caught.value.kind is ErrorKind.NOT_SUPPORTED
    assert action in caught.value.description


def test_21_charger_transaction_event_reaches_a_201_csms_and_the_answer_comes_back() -> None:
    """A 2.1 TransactionEvent is stripped and mapped going down, the 2.0.1 answer is valid 2.1 coming back."""
    tr = V201V21(V21, V201)
    event = tx_event(
        [
            {"value": 7300.0, "measurand": "Energy.Active.Import.Register"},
            {"value": 1.0, "measurand": "EnergyRequest.Target"},
        ],
        triggerReason="TxResumed",
        costDetails={
            "totalCost": {"currency": "EUR", "typeOfCost": "NormalCost", "total": {"exclTax": 1.0}},
            "totalUsage": {"energy": 7.3, "chargingTime": 60, "idleTime": 0},
        },
    )
    valid(V21, "TransactionEvent", event)
    answer = {"totalCost": 1.5, "idTokenInfo": {"status": "Accepted"}}
    calls, result = drive(
        tr.handle_call(Side.CHARGER, Call("m7", "TransactionEvent", event), ctx(V21, V201)), lambda c: answer
    )
    (out,) = calls
    valid(V201, "TransactionEvent", out.payload)
    assert (out.to, out.unique_id) == (Side.CSMS, "m7")
    assert out.payload["triggerReason"] == "ChargingStateChanged"
    assert "costDetails" not in out.payload
    assert out.payload["meterValue"][0]["sampledValue"] == [
        {"value": 7300.0, "measurand": "Energy.Active.Import.Register"}
    ]
    valid(V21, "TransactionEvent", result, response=True)
    assert result == answer


def test_21_csms_reset_reaches_a_201_charger_as_immediate() -> None:
    """A 2.1 CSMS's ImmediateAndResume reset goes to the 2.0.1 charger as Immediate."""
    tr = V201V21(V201, V21)
    calls, result = drive(
        tr.handle_call(Side.CSMS, Call("r1", "Reset", {"type": "ImmediateAndResume"}), ctx(V201, V21)),
        lambda c: {"status": "Accepted"},
    )
    assert calls[0].to is Side.CHARGER and calls[0].payload == {"type": "Immediate"}
    assert result == {"status": "Accepted"}


def test_request_201_cannot_express_is_refused_with_the_path() -> None:
    """A 2.1 request with a field 2.0.1 cannot hold is refused NotSupported, naming the field."""
    tr = V201V21(V201, V21)
    payload = REFUSED_DOWN[0][2]
    with pytest.raises(Refuse) as caught:
        drive(tr.handle_call(Side.CSMS, Call("p1", "SetChargingProfile", payload), ctx(V201, V21)), lambda c: {})
    assert caught.value.kind is ErrorKind.NOT_SUPPORTED
    assert caught.value.details == {"path": REFUSED_DOWN[0][3]}


def test_answer_201_cannot_express_is_an_internal_error_for_the_originator() -> None:
    """A 2.1 charger's answer that 2.0.1 cannot hold reaches the 2.0.1 CSMS as an InternalError."""
    tr = V201V21(V21, V201)
    answer = {
        "status": "Accepted",
        "schedule": {
            "evseId": 1,
            "duration": 60,
            "scheduleStart": "2024-05-01T10:00:00Z",
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "setpoint": 3000.0}],
        },
    }
    valid(V21, "GetCompositeSchedule", answer, response=True)
    with pytest.raises(Refuse) as caught:
        drive(
            tr.handle_call(
                Side.CSMS, Call("g1", "GetCompositeSchedule", {"duration": 60, "evseId": 1}), ctx(V21, V201)
            ),
            lambda c: answer,
        )
    assert caught.value.kind is ErrorKind.INTERNAL


def test_signed_meter_value_fields_left_out_by_21_are_filled_from_the_previous_message() -> None:
    """2.1 may omit a repeated signingMethod/publicKey; 2.0.1 requires them, so the last ones sent are reused."""
    tr = V201V21(V21, V201)
    session = ctx(V21, V201)
    first = {
        "signedMeterData": "ZGF0YQ==",
        "signingMethod": "ECDSA-secp256r1-SHA256",
        "encodingMethod": "OCMF",
        "publicKey": "a2V5",
    }
    later = {"signedMeterData": "ZGF0YTI=", "encodingMethod": "OCMF"}
    sent = []
    for signed in (first, later):
        event = tx_event([{"value": 1.0, "signedMeterValue": signed}])
        valid(V21, "TransactionEvent", event)
        calls, _ = drive(tr.handle_call(Side.CHARGER, Call("s", "TransactionEvent", event), session), lambda c: {})
        valid(V201, "TransactionEvent", calls[0].payload)
        sent.append(calls[0].payload["meterValue"][0]["sampledValue"][0]["signedMeterValue"])
    assert sent[1]["signingMethod"] == "ECDSA-secp256r1-SHA256" and sent[1]["publicKey"] == "a2V5"
    assert session.dirty


def test_201_charger_messages_pass_to_a_21_csms_unchanged() -> None:
    """Going up a 2.0.1 message is valid 2.1 as it is: nothing is added or lost."""
    tr = V201V21(V201, V21)
    boot = {"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}}
    reply = {"currentTime": "2024-05-01T10:00:00Z", "interval": 300, "status": "Accepted"}
    calls, result = drive(
        tr.handle_call(Side.CHARGER, Call("b1", "BootNotification", boot), ctx(V201, V21)), lambda c: reply
    )
    assert calls[0].payload == boot and result == reply


# --- conformance list ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("charger", "csms"), [(V201, V21), (V21, V201)])
def test_coverage_lists_each_message_each_side_sends_once(charger: Version, csms: Version) -> None:
    """Every action a side can send has one row; 2.1-only ones from the 2.1 side are not supported."""
    rows = V201V21(charger, csms).coverage()
    keys = [(r.origin, r.action) for r in rows]
    assert len(keys) == len(set(keys))
    by_key = {(r.origin, r.action): r for r in rows}
    assert by_key[(Side.CHARGER, "Heartbeat")].support is Support.SUPPORTED
    assert by_key[(Side.CSMS, "DataTransfer")].support is Support.SUPPORTED
    side_21 = Side.CHARGER if charger is V21 else Side.CSMS
    only_21_rows = [r for r in rows if r.action in ONLY_21]
    assert only_21_rows and all(r.support is Support.NOT_SUPPORTED and r.origin is side_21 for r in only_21_rows)


def test_coverage_notes_what_is_lost_going_down() -> None:
    """The 2.1 -> 2.0.1 TransactionEvent row is partial and names dropped fields and mapped values."""
    rows = {(r.origin, r.action): r for r in V201V21(V21, V201).coverage()}
    row = rows[(Side.CHARGER, "TransactionEvent")]
    assert row.support is Support.PARTIAL
    assert "costDetails" in row.notes and "ReqEnergyTransferRejected->Other" in row.notes
    assert "drops the sampledValue item with" in row.notes


# --- 1.6 charger -> 2.1 CSMS: the other translator composed with this one -----------------------------------


def test_16_charger_reaches_a_21_csms_through_the_201_step() -> None:
    """1.6 boot and a transaction start arrive at the 2.1 CSMS as valid 2.1 messages and the answers go back valid."""
    tr = registry.translator_for(Version.V16, V21)
    assert tr is not None and (tr.charger_version, tr.csms_version) == (Version.V16, V21)
    session = Context("CP16", Version.V16, V21)
    answers = {
        "BootNotification": {"currentTime": "2024-05-01T10:00:00Z", "interval": 300, "status": "Accepted"},
        "TransactionEvent": {"idTokenInfo": {"status": "Accepted"}},
        "StatusNotification": {},
        "NotifyEvent": {},
    }
    sent: list[str] = []

    def through(action: str, payload: dict[str, Any]) -> Any:
        valid(Version.V16, action, payload)
        handler = tr.handle_call(Side.CHARGER, Call(f"c{len(sent)}", action, payload), session)
        value: Any = None
        reply: Any = None
        while True:
            try:
                step = handler.send(value)
            except StopIteration as stop:
                result = reply if reply is not None else stop.value
                valid(Version.V16, action, result, response=True)
                return result
            value = None
            if isinstance(step, OutCall):
                valid(V21, step.action, step.payload)
                sent.append(step.action)
                value = answers[step.action]
            elif isinstance(step, Reply):
                reply = step.payload
            else:
                assert isinstance(step, Notify)
                valid(V21, step.action, step.payload)
                sent.append(step.action)

    boot = through("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "One"})
    assert boot["status"] == "Accepted"
    start = {"connectorId": 1, "idTag": "TAG1", "meterStart": 1200, "timestamp": "2024-05-01T10:01:00Z"}
    conf = through("StartTransaction", start)
    assert conf["idTagInfo"]["status"] == "Accepted" and isinstance(conf["transactionId"], int)
    assert sent[0] == "BootNotification" and "TransactionEvent" in sent
