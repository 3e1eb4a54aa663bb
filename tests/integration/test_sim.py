"""The simulated OCPP peers, connected directly to each other over real sockets.

Every other end-to-end test trusts these simulators, so this file pins down
that they speak each version validly, record what happened, and are strict
about what they receive.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from gateway import schemas
from gateway.ocppj import MessageType, Version
from gateway.sim import (
    DemoCsms,
    Fleet,
    InvalidResponse,
    MalformedAnswer,
    OcppCallError,
    SimCharger,
    SimFrame,
)
from gateway.sim.charger import CSMS_INITIATED
from gateway.sim.payloads import ENERGY, minimal_payload, reading

ALL = list(Version)
V2X = [Version.V201, Version.V21]


def assert_frames_valid(frames: list[SimFrame], version: Version) -> int:
    """Every CALL and CALLRESULT in ``frames`` validates against ``version``'s schemas; returns how many."""
    n = 0
    for f in frames:
        if f.message_type in ("CALL", "CALLRESULT"):
            assert f.action is not None and f.payload is not None
            bad = schemas.validate(version, f.action, f.payload, response=f.message_type == "CALLRESULT")
            assert bad is None, f"{f.action} {f.message_type}: {bad and bad.describe()}"
            n += 1
    return n


@pytest.fixture
async def csms() -> AsyncIterator[DemoCsms]:
    server = DemoCsms()
    await server.start()
    yield server
    await server.stop()


async def connected(csms: DemoCsms, version: Version, charger_id: str | None = None, **kw: Any) -> SimCharger:
    charger = SimCharger(charger_id or f"CP-{version.value}", version, csms.url, **kw)
    await charger.connect()
    await csms.wait_connected(charger.charger_id)
    return charger


def assert_clean(csms: DemoCsms, *chargers: SimCharger) -> None:
    """Neither side saw a protocol violation or failed internally."""
    assert csms.violations == []
    assert csms.errors == []
    for c in chargers:
        assert c.violations == []
        assert c.errors == []


# --------------------------------------------------------------------------- sessions


@pytest.mark.parametrize("version", ALL, ids=lambda v: v.value)
async def test_full_session_energy_matches_on_both_sides(version: Version) -> None:
    """A charger of each version runs boot -> status -> authorize -> transaction -> stop against a CSMS of
    only that version, and both sides agree on the energy, with every frame schema-valid."""
    async with DemoCsms(versions=[version]) as csms:
        charger = await connected(csms, version, connectors=2)
        summary = await charger.run_session(energy_wh=4321, samples=4, connector=2)
        await charger.close()
        await csms.wait_for(lambda: not csms.charger(charger.charger_id).connected)

    record = csms.charger(charger.charger_id)
    assert record.version is version and record.subprotocol == version.subprotocol
    assert record.boot is not None and record.heartbeats == 1
    assert summary.authorized and summary.samples == 4 and summary.energy_wh == 4321
    [tx] = record.transactions.values()
    assert tx.transaction_id == summary.transaction_id
    assert tx.energy_wh == 4321
    assert tx.meter_start == summary.meter_start and tx.meter_stop == summary.meter_stop
    assert tx.stop_reason == "Local" and not tx.active
    assert tx.id_token == "SIMTAG0001"
    assert tx.last_power_w == 7400
    energies = [s.energy_wh for s in tx.samples if s.energy_wh is not None]
    assert energies == sorted(energies) and len(energies) >= 4
    assert record.status(2) == "Available" and record.status(1) == "Available"
    if version is Version.V16:
        assert tx.transaction_id.isdigit() and tx.connector_id == 2
        assert [p["status"] for p in record.calls_in("StatusNotification") if p["connectorId"] == 2] == [
            "Available", "Preparing", "Charging", "SuspendedEV", "Charging", "Finishing", "Available"
        ]  # fmt: skip
    else:
        assert tx.evse_id == 2 and tx.events[0] == "Started" and tx.events[-1] == "Ended"
        assert tx.seq_nos == list(range(len(tx.seq_nos)))
        states = [p["transactionInfo"].get("chargingState") for p in record.calls_in("TransactionEvent")]
        assert "SuspendedEV" in states
    assert_clean(csms, charger)
    assert assert_frames_valid(list(record.frames), version) > 20
    assert assert_frames_valid(list(charger.frames), version) > 20


@pytest.mark.parametrize("version", ALL, ids=lambda v: v.value)
async def test_rejected_token_starts_no_transaction(csms: DemoCsms, version: Version) -> None:
    """An id token the CSMS is configured to refuse ends the session after Authorize."""
    csms.auth["STOLEN"] = "Blocked"
    charger = await connected(csms, version)
    summary = await charger.run_session(id_tag="STOLEN")
    assert summary.auth_status == "Blocked" and summary.transaction_id is None
    assert csms.transactions(charger.charger_id) == []
    assert_clean(csms, charger)
    await charger.close()


@pytest.mark.parametrize("version", ALL, ids=lambda v: v.value)
async def test_refused_start_is_stopped_deauthorized(csms: DemoCsms, version: Version) -> None:
    """When the start itself is refused (no Authorize first), the charger ends the transaction as DeAuthorized."""
    csms.auth["EXPIRED1"] = "Invalid"
    charger = await connected(csms, version)
    await charger.boot()
    tx = await charger.start_transaction(1, "EXPIRED1")
    assert tx.auth_status == "Invalid" and charger.transactions == {}
    [record] = csms.transactions(charger.charger_id)
    assert not record.active
    assert record.stop_reason == "DeAuthorized"
    assert_clean(csms, charger)
    await charger.close()


# --------------------------------------------------------------------------- CSMS-initiated


def remote_start(version: Version) -> tuple[str, dict[str, Any]]:
    if version is Version.V16:
        return "RemoteStartTransaction", {"connectorId": 1, "idTag": "REMOTE01"}
    return "RequestStartTransaction", {
        "evseId": 1,
        "remoteStartId": 77,
        "idToken": {"idToken": "REMOTE01", "type": "Central"},
    }


def remote_stop(version: Version, tx_id: str) -> tuple[str, dict[str, Any]]:
    if version is Version.V16:
        return "RemoteStopTransaction", {"transactionId": int(tx_id)}
    return "RequestStopTransaction", {"transactionId": tx_id}


@pytest.mark.parametrize("version", ALL, ids=lambda v: v.value)
async def test_remote_start_then_remote_stop(csms: DemoCsms, version: Version) -> None:
    """A CSMS-initiated remote start really starts a transaction, and remote stop ends it with reason Remote."""
    charger = await connected(csms, version)
    await charger.boot()
    assert await csms.call(charger.charger_id, *remote_start(version)) == {"status": "Accepted"}
    [tx] = await csms.wait_for(lambda: csms.charger(charger.charger_id).active_transactions)
    assert tx.id_token == "REMOTE01"
    if version is not Version.V16:
        assert tx.remote_start_id == 77
    await charger.wait_for(lambda: charger.transactions.get(1) and charger.connector_status[1] == "Charging")
    await charger.send_meter_values(1, 1500, 11000)

    assert await csms.call(charger.charger_id, *remote_stop(version, tx.transaction_id)) == {"status": "Accepted"}
    await csms.wait_for(lambda: not tx.active and csms.charger(charger.charger_id).status(1) == "Available")
    assert tx.stop_reason == "Remote" and tx.energy_wh == 1500
    # Stopping it again: nothing to stop.
    assert await csms.call(charger.charger_id, *remote_stop(version, tx.transaction_id)) == {"status": "Rejected"}
    assert_clean(csms, charger)
    await charger.close()


async def test_get_and_change_configuration_16(csms: DemoCsms) -> None:
    """A 1.6 charger reports a realistic configuration and honours readonly / unknown keys."""
    charger = await connected(csms, Version.V16, connectors=2)
    everything = await csms.call(charger.charger_id, "GetConfiguration", {})
    keys = {k["key"]: k for k in everything["configurationKey"]}
    assert {"HeartbeatInterval", "MeterValueSampleInterval", "NumberOfConnectors"} <= set(keys)
    assert keys["NumberOfConnectors"] == {"key": "NumberOfConnectors", "readonly": True, "value": "2"}

    some = await csms.call(charger.charger_id, "GetConfiguration", {"key": ["HeartbeatInterval", "NoSuchKey"]})
    assert [k["key"] for k in some["configurationKey"]] == ["HeartbeatInterval"]
    assert some["unknownKey"] == ["NoSuchKey"]

    for key, value, status in [
        ("HeartbeatInterval", "60", "Accepted"),
        ("NumberOfConnectors", "4", "Rejected"),
        ("NoSuchKey", "1", "NotSupported"),
    ]:
        answer = await csms.call(charger.charger_id, "ChangeConfiguration", {"key": key, "value": value})
        assert answer == {"status": status}, key
    assert charger.heartbeat_interval == 60
    assert_clean(csms, charger)
    await charger.close()


@pytest.mark.parametrize("version", V2X, ids=lambda v: v.value)
async def test_get_and_set_variables_2x(csms: DemoCsms, version: Version) -> None:
    """A 2.x charger answers GetVariables / SetVariables from its device model, per item."""
    charger = await connected(csms, version)
    hb = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    get = await csms.call(
        charger.charger_id,
        "GetVariables",
        {
            "getVariableData": [
                hb,
                {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"}},
                {"component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                 "variable": {"name": "ConnectorType"}},
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NoSuchVariable"}},
                {"component": {"name": "NoSuchCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
            ]
        },
    )  # fmt: skip
    results = get["getVariableResult"]
    assert [r["attributeStatus"] for r in results] == [
        "Accepted", "Accepted", "Accepted", "UnknownVariable", "UnknownComponent"
    ]  # fmt: skip
    assert [r.get("attributeValue") for r in results[:3]] == ["300", "60", "cType2"]

    set_ = await csms.call(
        charger.charger_id,
        "SetVariables",
        {
            "setVariableData": [
                {**hb, "attributeValue": "45"},
                {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "ProfileStackLevel"},
                 "attributeValue": "3"},
            ]
        },
    )  # fmt: skip
    assert [r["attributeStatus"] for r in set_["setVariableResult"]] == ["Accepted", "Rejected"]
    again = await csms.call(charger.charger_id, "GetVariables", {"getVariableData": [hb]})
    assert again["getVariableResult"][0]["attributeValue"] == "45" and charger.heartbeat_interval == 45
    assert_clean(csms, charger)
    await charger.close()


@pytest.mark.parametrize("version", V2X, ids=lambda v: v.value)
async def test_get_base_report_arrives_as_notify_report_parts(csms: DemoCsms, version: Version) -> None:
    """GetBaseReport is Accepted, then the whole device model arrives in NotifyReport parts (seqNo, tbc)."""
    charger = await connected(csms, version, connectors=2)
    answer = await csms.call(charger.charger_id, "GetBaseReport", {"requestId": 9, "reportBase": "FullInventory"})
    assert answer == {"status": "Accepted"}
    record = csms.charger(charger.charger_id)
    await csms.wait_for(lambda: record.reports and not record.reports[-1].get("tbc"))
    assert [r["seqNo"] for r in record.reports] == list(range(len(record.reports)))
    assert all(r["requestId"] == 9 for r in record.reports)
    items = [d for r in record.reports for d in r["reportData"]]
    assert len(items) == len(charger.device_model)
    names = {(d["component"]["name"], d["variable"]["name"]) for d in items}
    assert ("OCPPCommCtrlr", "HeartbeatInterval") in names and ("EVSE", "AvailabilityState") in names
    assert_clean(csms, charger)
    await charger.close()


@pytest.mark.parametrize(
    ("version", "trigger", "expected"),
    [
        (Version.V16, {"requestedMessage": "StatusNotification", "connectorId": 1}, "StatusNotification"),
        (Version.V16, {"requestedMessage": "MeterValues"}, "MeterValues"),
        (Version.V16, {"requestedMessage": "DiagnosticsStatusNotification"}, "DiagnosticsStatusNotification"),
        (Version.V201, {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}},
         "StatusNotification"),
        (Version.V201, {"requestedMessage": "Heartbeat"}, "Heartbeat"),
        (Version.V21, {"requestedMessage": "LogStatusNotification"}, "LogStatusNotification"),
        (Version.V21, {"requestedMessage": "BootNotification"}, "BootNotification"),
    ],
    ids=lambda x: x.value if isinstance(x, Version) else None,
)  # fmt: skip
async def test_trigger_message_sends_the_requested_message(
    csms: DemoCsms, version: Version, trigger: dict[str, Any], expected: str
) -> None:
    """TriggerMessage is Accepted and the charger then sends the requested message."""
    charger = await connected(csms, version)
    record = csms.charger(charger.charger_id)
    before = len(record.calls_in(expected))
    assert await csms.call(charger.charger_id, "TriggerMessage", trigger) == {"status": "Accepted"}
    await csms.wait_for(lambda: len(record.calls_in(expected)) > before)
    assert_clean(csms, charger)
    await charger.close()


@pytest.mark.parametrize(
    ("version", "action"),
    [(v, a) for v in ALL for a in CSMS_INITIATED[v]],
    ids=lambda x: x.value if isinstance(x, Version) else x,
)
async def test_every_modelled_csms_call_gets_a_valid_answer(csms: DemoCsms, version: Version, action: str) -> None:
    """Each CSMS-initiated action the charger models, sent with a schema-minimal request, gets a schema-valid
    answer (the CSMS validates it) and causes no simulator error."""
    charger = await connected(csms, version)
    request = minimal_payload(version, action, response=False)
    assert request is not None
    answer = await csms.call(charger.charger_id, action, request)
    assert schemas.validate(version, action, answer, response=True) is None
    await charger.settle()  # follow-up messages (reports, notifications, transactions) are done too
    assert_clean(csms, charger)
    await charger.close()


@pytest.mark.parametrize("version", ALL, ids=lambda v: v.value)
async def test_csms_answers_every_action_validly(csms: DemoCsms, version: Version) -> None:
    """The demo CSMS answers a schema-minimal CALL of every action the version defines with a valid
    CALLRESULT (generic Accepted/empty where it models nothing)."""
    charger = await connected(csms, version)
    for action in sorted(schemas.actions(version) - schemas.SEND_ONLY.get(version, frozenset())):
        request = minimal_payload(version, action, response=False)
        assert request is not None
        answer = await charger.call(action, request, timeout=5)
        assert schemas.validate(version, action, answer, response=True) is None, action
    assert charger.violations == [] and csms.errors == []
    await charger.close()


async def test_send_frames_of_21_are_handled_without_an_answer(csms: DemoCsms) -> None:
    """An OCPP 2.1 SEND (message type 6) is validated and handled by the CSMS but never answered; an invalid
    one is recorded as a violation, still without an answer."""
    # Heartbeat stands in for NotifyPeriodicEventStream, whose schema the `ocpp` package names without the
    # Request suffix, so gateway.schemas does not list it yet.
    charger = await connected(csms, Version.V21)
    await charger.send_call("Heartbeat", {}, message_type=MessageType.SEND)
    await charger.send_call("StatusNotification", {"evseId": 1}, message_type=MessageType.SEND)
    record = csms.charger(charger.charger_id)
    await csms.wait_for(lambda: record.heartbeats == 1 and csms.violations)
    assert "StatusNotification request invalid" in csms.violations[0].description
    await charger.call("Heartbeat", {})
    assert [f.message_type for f in charger.frames if f.direction == "in"] == ["CALLRESULT"]
    await charger.close()


# --------------------------------------------------------------------------- strictness


BAD_CALLS = [
    # (version, frame text, expected CALLERROR code)
    (Version.V16, '[2,"u1","Heartbeat",{"extra":1}]', "FormationViolation"),
    (Version.V16, '[2,"u1","Authorize",{}]', "OccurenceConstraintViolation"),
    (Version.V16, '[2,"u1","Authorize",{"idTag":5}]', "TypeConstraintViolation"),
    (Version.V16, '[2,"u1","Authorize",{"idTag":"' + "x" * 21 + '"}]', "PropertyConstraintViolation"),
    (Version.V16, '[2,"u1","NoSuchAction",{}]', "NotImplemented"),
    (Version.V16, '[2,"u1","Heartbeat"', "FormationViolation"),
    (Version.V201, '[2,"u1","Authorize",{}]', "OccurrenceConstraintViolation"),
    (Version.V201, '[2,"u1","Heartbeat",{"extra":1}]', "FormatViolation"),
    (Version.V201, '[2,"u1","Heartbeat"', "FormatViolation"),
    (Version.V201, '[7,"u1","Heartbeat",{}]', "MessageTypeNotSupported"),
    (Version.V201, '{"not":"a frame"}', "RpcFrameworkError"),
    (Version.V21, '[2,"u1","Authorize",{}]', "OccurrenceConstraintViolation"),
    (Version.V21, '[2,"u1","StatusNotification",{"timestamp":"now","connectorStatus":"Available","evseId":1,'
                  '"connectorId":1}]', "PropertyConstraintViolation"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("version", "text", "code"), BAD_CALLS, ids=lambda x: x.value if isinstance(x, Version) else None
)
async def test_invalid_call_is_answered_with_the_versions_callerror(
    csms: DemoCsms, version: Version, text: str, code: str
) -> None:
    """The CSMS answers a bad frame with the CALLERROR code as the sender's version spells it, and records it."""
    charger = await connected(csms, version)
    answer = await charger.send_raw(text)
    if answer is not None:
        with pytest.raises(OcppCallError):
            await answer
    errors = await charger.wait_for(lambda: [f for f in charger.frames if f.message_type == "CALLERROR"])
    assert errors[0].error_code == code
    assert errors[0].unique_id in ("u1", "-1")
    assert len(csms.violations) == 1 and charger.violations == []
    # The connection is still fine afterwards.
    assert (await charger.call("Heartbeat", {}))["currentTime"]
    await charger.close()


@pytest.mark.parametrize(("version", "code"), [(Version.V16, "FormationViolation"), (Version.V201, "FormatViolation")])
async def test_charger_answers_an_invalid_csms_call_with_its_versions_callerror(
    csms: DemoCsms, version: Version, code: str
) -> None:
    """The simulated charger is just as strict with what the CSMS sends it."""
    charger = await connected(csms, version)
    with pytest.raises(OcppCallError) as err:
        await csms.send_call(charger.charger_id, "ClearCache", {"unexpected": True})
    assert err.value.code == code
    assert len(charger.violations) == 1
    await charger.close()


async def test_overlapping_calls_and_duplicate_ids_are_recorded(csms: DemoCsms) -> None:
    """A second CALL before the first is answered, and a reused unique id, are answered but recorded."""
    charger = await connected(csms, Version.V201)
    csms.misbehave("delay", "Heartbeat", delay=0.2)
    first = charger.send_call("Heartbeat", {}, unique_id="same")
    second = charger.send_call("Heartbeat", {}, unique_id="same")
    third = charger.send_call("Heartbeat", {})
    results = await asyncio.gather(first, second, third)
    assert all("currentTime" in r for r in results)
    descriptions = [v.description for v in csms.violations]
    assert any("duplicate unique id same" in d for d in descriptions)
    assert any("still unanswered" in d for d in descriptions)
    await charger.close()


async def test_normal_calls_keep_one_outstanding_call(csms: DemoCsms) -> None:
    """Concurrent ``call``s from one charger queue: the CSMS never sees an overlap."""
    charger = await connected(csms, Version.V16)
    csms.misbehave("delay", "Heartbeat", delay=0.05)
    await asyncio.gather(*(charger.call("Heartbeat", {}) for _ in range(5)))
    assert csms.charger(charger.charger_id).heartbeats == 5
    assert_clean(csms, charger)
    await charger.close()


async def test_callerror_spelled_for_another_version_is_a_violation(csms: DemoCsms) -> None:
    """A 1.6 peer that receives the 2.x spelling "FormatViolation" records it (a gateway respelling bug)."""
    charger = await connected(csms, Version.V16)
    charger.misbehave("error", "Reset", error_code="FormatViolation")
    with pytest.raises(OcppCallError) as err:
        await csms.call(charger.charger_id, "Reset", {"type": "Soft"})
    assert err.value.code == "FormatViolation"
    [violation] = csms.violations
    assert "another version's code" in violation.description
    await charger.close()


async def test_charger_validates_csms_answers(csms: DemoCsms) -> None:
    """An invalid or malformed CALLRESULT from the CSMS fails the charger's call and is recorded."""
    charger = await connected(csms, Version.V201)
    csms.misbehave("invalid", "Heartbeat", times=1)
    with pytest.raises(InvalidResponse):
        await charger.call("Heartbeat", {})
    csms.misbehave("invalid", "Authorize", payload={"idTokenInfo": {"status": "Bogus"}}, times=1)
    with pytest.raises(InvalidResponse) as invalid:
        await charger.authorize()
    assert invalid.value.violation.path == "$.idTokenInfo.status"
    record = csms.charger(charger.charger_id)
    seen = len(record.calls_in("Heartbeat"))
    csms.misbehave("hang", "Heartbeat", times=1)
    pending = asyncio.ensure_future(charger.send_call("Heartbeat", {}, unique_id="m1"))
    await csms.wait_for(lambda: len(record.calls_in("Heartbeat")) > seen)
    await csms.send_raw(charger.charger_id, '[3,"m1"]')
    with pytest.raises(MalformedAnswer):
        await pending
    assert len(charger.violations) >= 2
    await charger.close()


async def test_custom_csms_handlers_win_but_cannot_send_invalid_answers_by_accident(csms: DemoCsms) -> None:
    """A test's own handler answers instead of the built-in one; if its answer breaks the schema, the CSMS
    sends InternalError instead and records its own error."""
    charger = await connected(csms, Version.V16)
    csms.handlers["DataTransfer"] = lambda cid, version, payload: {"status": "UnknownVendorId"}
    assert await charger.call("DataTransfer", {"vendorId": "acme"}) == {"status": "UnknownVendorId"}
    csms.handlers["Authorize"] = lambda cid, version, payload: {"idTagInfo": {"status": "Bogus"}}
    with pytest.raises(OcppCallError) as err:
        await charger.authorize()
    assert err.value.code == "InternalError"
    assert len(csms.errors) == 1 and "Authorize" in csms.errors[0]
    await charger.close()


# --------------------------------------------------------------------------- misbehaviour knobs


async def test_csms_misbehaviour_hang_delay_error_close(csms: DemoCsms) -> None:
    """Each misbehaviour mode does what it says, for a limited number of times."""
    charger = await connected(csms, Version.V16)
    csms.misbehave("hang", "Heartbeat", times=1)
    with pytest.raises(TimeoutError):
        await charger.call("Heartbeat", {}, timeout=0.2)
    assert await charger.call("Heartbeat", {}, timeout=2)  # the rule is used up

    csms.misbehave("delay", "Heartbeat", delay=0.3, times=1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await charger.call("Heartbeat", {})
    assert loop.time() - t0 >= 0.3

    csms.misbehave("error", "Authorize", error_code="SecurityError", times=1)
    with pytest.raises(OcppCallError) as err:
        await charger.authorize()
    assert err.value.code == "SecurityError"

    csms.misbehave("close", "Heartbeat", close_code=4000)
    with pytest.raises(ConnectionError):
        await charger.call("Heartbeat", {})
    await charger.wait_closed(2)
    assert charger.close_code == 4000
    assert csms.violations == [] and charger.violations == []


async def test_csms_can_drop_a_charger_and_refuse_handshakes(csms: DemoCsms) -> None:
    """disconnect() closes a charger's socket; refuse_status fails the next handshake with that HTTP status."""
    charger = await connected(csms, Version.V21)
    await csms.disconnect(charger.charger_id, 1001)
    await charger.wait_closed(2)
    assert charger.close_code == 1001
    await csms.wait_for(lambda: not csms.charger(charger.charger_id).connected)
    csms.refuse_status = 503
    with pytest.raises(InvalidStatus) as err:
        await charger.connect()
    assert err.value.response.status_code == 503


async def test_oversized_frame_closes_the_connection() -> None:
    """A frame above the CSMS's max_size closes the socket with 1009 (message too big)."""
    async with DemoCsms(max_size=4096) as csms:
        charger = await connected(csms, Version.V201)
        with pytest.raises(ConnectionError):
            await charger.call("DataTransfer", SimCharger.oversized_payload(10_000))
        await charger.wait_closed(2)
        assert charger.close_code == 1009


async def test_csms_down_and_coming_back_on_the_same_port() -> None:
    """A restarted DemoCsms listens on its old port, so clients can reconnect to the same URL."""
    csms = DemoCsms()
    await csms.start()
    url = csms.url
    charger = await connected(csms, Version.V16)
    await csms.stop()
    await charger.wait_closed(2)
    with pytest.raises(OSError):
        await charger.connect()
    await csms.start()
    assert csms.url == url
    await charger.connect()
    await csms.wait_connected(charger.charger_id)
    assert csms.charger(charger.charger_id).connections == 2
    await charger.close()
    await csms.stop()


async def test_second_connection_with_same_id_replaces_the_first(csms: DemoCsms) -> None:
    """As OCPP expects, a new connection for a charger id closes the old one."""
    old = await connected(csms, Version.V201, "DUP1")
    new = await connected(csms, Version.V201, "DUP1")
    await old.wait_closed(2)
    record = csms.charger("DUP1")
    assert record.replaced == 1 and record.connected
    assert (await new.call("Heartbeat", {}))["currentTime"]
    await new.close()


# --------------------------------------------------------------------------- subprotocols


async def test_subprotocol_negotiation(csms: DemoCsms) -> None:
    """No subprotocol is refused; with several offered the charger speaks what the CSMS picked."""
    bare = SimCharger("BARE", Version.V16, csms.url, subprotocols=None)
    with pytest.raises(InvalidStatus) as err:
        await bare.connect()
    assert err.value.response.status_code == 400

    multi = SimCharger("MULTI", Version.V16, csms.url, subprotocols=["ocpp1.6", "ocpp2.0.1"])
    assert await multi.connect() == "ocpp2.0.1"  # DemoCsms prefers the newest version it speaks
    assert multi.version is Version.V201
    await multi.boot()
    assert csms.charger("MULTI").version is Version.V201
    assert_clean(csms, multi)
    await multi.close()
    assert csms.handshakes[-1] == ("/ocpp/MULTI", ["ocpp1.6", "ocpp2.0.1"])


async def test_single_version_csms_refuses_other_versions() -> None:
    """A DemoCsms configured for 1.6 only refuses a 2.0.1 charger at the handshake."""
    async with DemoCsms(versions=[Version.V16]) as csms:
        with pytest.raises(InvalidStatus):
            await SimCharger("NEW1", Version.V201, csms.url).connect()


async def test_basic_auth_header_reaches_the_csms(csms: DemoCsms) -> None:
    """A charger password goes as HTTP Basic auth with the charger id as user."""
    charger = await connected(csms, Version.V16, "AUTH1", password="s3cret")
    headers = csms.charger("AUTH1").headers
    assert headers is not None and headers["Authorization"] == "Basic QVVUSDE6czNjcmV0"
    await charger.close()


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("version", "sampled", "expected"),
    [
        (Version.V16, {"value": "12.5", "unit": "kWh"}, 12500.0),
        (Version.V16, {"value": "900"}, 900.0),
        (Version.V16, {"value": "900", "measurand": "Power.Active.Import"}, None),
        (Version.V201, {"value": 3, "unitOfMeasure": {"unit": "kWh", "multiplier": 1}}, 30000.0),
        (Version.V21, {"value": 42}, 42.0),
        (Version.V201, {"value": 5, "phase": "L1"}, None),
    ],
)
def test_energy_readings_are_normalised_to_wh(version: Version, sampled: dict[str, Any], expected: float) -> None:
    """Energy register readings in any unit/multiplier become Wh; other measurands and phases are skipped."""
    assert reading(sampled, version, ENERGY) == expected


# --------------------------------------------------------------------------- fleet


async def test_fleet_of_mixed_versions_runs_sessions_and_stops_cleanly(csms: DemoCsms) -> None:
    """A mixed fleet connects, completes sessions with no errors on either side, and closes every socket."""
    fleet = Fleet(
        csms.url, count=30, heartbeat_interval=0.3, session_pause=(0.05, 0.2), meter_interval=(0.01, 0.05), seed=7
    )
    async with fleet:
        await fleet.wait_for(lambda: fleet.stats.connected == 30 and fleet.stats.sessions >= 30, timeout=30)
    stats = fleet.stats
    assert stats.connected_by_version == {"1.6": 0, "2.0.1": 0, "2.1": 0}
    assert stats.errors == 0, stats.last_error
    assert stats.counters.frames_sent > 30 * 10
    await csms.wait_for(lambda: not csms.connected)
    assert {c.version for c in csms.chargers.values()} == set(Version)
    assert sum(r.heartbeats for r in csms.chargers.values()) > 0
    finished = [t for t in csms.transactions() if not t.active]
    assert len(finished) >= stats.sessions
    assert sum(t.energy_wh or 0 for t in finished) >= stats.energy_wh
    assert_clean(csms)
    assert "connected" in stats.line() and stats.snapshot()["errors"] == 0


async def test_fleet_reconnects_when_the_csms_comes_back() -> None:
    """Chargers retry with backoff while the CSMS is down and reconnect when it returns."""
    csms = DemoCsms()
    await csms.start()
    fleet = Fleet(csms.url, count=6, backoff=(0.05, 0.2), session_pause=(5, 5), seed=1)
    async with fleet:
        await fleet.wait_for(lambda: fleet.stats.boots == 6)
        await csms.stop()
        await fleet.wait_for(lambda: fleet.stats.connect_failures > 0 and fleet.stats.connected == 0)
        await csms.start()
        await fleet.wait_for(lambda: fleet.stats.boots == 12, timeout=10)
        assert len(csms.connected) == 6
    await csms.stop()
