"""Issue 19, 1.6J charger -> 2.0.1 CSMS: the translation faults independent implementations found, frame by frame.

Each table row is a frame from the report (or its neighbour in the same class of fault) and what must come
out of the translator; payloads are schema-checked by ``drive``.
"""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from typing import Any

import orjson
import pytest

from adapters.base import Context, OutCall, PeerError, PeerTimeout, Side
from adapters.compose import Composed
from adapters.registry import translator_for
from adapters.v16_v201 import V16ToV201
from adapters.v16_v201.convert import infer_token_type
from adapters.v16_v201.state import MAX_UNMATCHED_STOPS
from gateway.ocppj import Version
from gateway.session import ChargerSession, Problem, Send
from tests.unit.test_v16_v201 import AUTH_OK, NOW, T0, Answer, drive, make_ctx, start_tx

CHARGER, CSMS = Side.CHARGER, Side.CSMS
ENERGY = {"timestamp": NOW, "sampledValue": [{"value": "1500", "measurand": "Energy.Active.Import.Register"}]}


@pytest.fixture
def tr() -> V16ToV201:
    return V16ToV201({})


@pytest.fixture
def ctx() -> Context:
    return make_ctx()


# ---------------------------------------------------------------------------------------------
# 1. TriggerMessage TransactionEvent -> the charger's MeterValues must come back as a TransactionEvent


@pytest.mark.parametrize(
    ("requested", "evse", "meter_values", "action", "trigger_reason"),
    [
        # The report: transactionId left out, as 1.6 allows.
        ("TransactionEvent", {"id": 1}, {"connectorId": 1}, "TransactionEvent", "Trigger"),
        ("TransactionEvent", {"id": 1}, {"connectorId": 1, "transactionId": 1}, "TransactionEvent", "Trigger"),
        ("TransactionEvent", None, {"connectorId": 1}, "TransactionEvent", "Trigger"),
        # The same fault the other way round: the CSMS asked for MeterValues, not a transaction event.
        ("MeterValues", {"id": 1}, {"connectorId": 1, "transactionId": 1}, "MeterValues", None),
        ("MeterValues", {"id": 1}, {"connectorId": 1}, "MeterValues", None),
    ],
)
def test_triggered_meter_values_become_the_requested_message(
    tr: V16ToV201,
    ctx: Context,
    requested: str,
    evse: dict[str, Any] | None,
    meter_values: dict[str, Any],
    action: str,
    trigger_reason: str | None,
) -> None:
    """The MeterValues answering a TriggerMessage reaches the CSMS as the message the CSMS requested."""
    tx = start_tx(tr, ctx).call("TransactionEvent")["transactionInfo"]["transactionId"]
    ongoing = drive(tr, ctx, CSMS, "GetTransactionStatus", {"transactionId": tx}).reply
    assert ongoing == {"ongoingIndicator": True, "messagesInQueue": False}
    trigger = {"requestedMessage": requested, **({"evse": evse} if evse else {})}
    asked = drive(tr, ctx, CSMS, "TriggerMessage", trigger, [{"status": "Accepted"}])
    assert asked.call("TriggerMessage") == {"requestedMessage": "MeterValues", **({"connectorId": 1} if evse else {})}
    assert asked.reply == {"status": "Accepted"}
    answer = drive(tr, ctx, CHARGER, "MeterValues", {**meter_values, "meterValue": [ENERGY]}, [{}])
    [sent] = answer.calls
    assert sent.action == action
    if action == "TransactionEvent":
        assert (sent.payload["eventType"], sent.payload["triggerReason"], sent.payload["seqNo"]) == (
            "Updated",
            trigger_reason,
            1,
        )
        assert sent.payload["transactionInfo"]["transactionId"] == tx
        assert sent.payload["evse"] == {"id": 1, "connectorId": 1}
    else:
        assert sent.payload["evseId"] == 1 and "transactionId" not in sent.payload


@pytest.mark.parametrize(
    ("meter_values", "action", "trigger_reason"),
    [
        ({"connectorId": 1, "transactionId": 1}, "TransactionEvent", "MeterValuePeriodic"),
        ({"connectorId": 1}, "MeterValues", None),
    ],
)
def test_untriggered_meter_values_keep_their_mapping(
    tr: V16ToV201, ctx: Context, meter_values: dict[str, Any], action: str, trigger_reason: str | None
) -> None:
    """Without a TriggerMessage, MeterValues map as before: by transactionId only."""
    start_tx(tr, ctx)
    [sent] = drive(tr, ctx, CHARGER, "MeterValues", {**meter_values, "meterValue": [ENERGY]}, [{}]).calls
    assert sent.action == action and sent.payload.get("triggerReason") == trigger_reason


def test_trigger_for_a_transaction_event_without_a_transaction_is_rejected(tr: V16ToV201, ctx: Context) -> None:
    """No transaction on the EVSE (or anywhere): Rejected, and the charger is not asked for a plain MeterValues."""
    start_tx(tr, ctx, connector=2)
    for trigger in ({"requestedMessage": "TransactionEvent", "evse": {"id": 1}},):
        trace = drive(tr, ctx, CSMS, "TriggerMessage", trigger)
        assert trace.calls == []
        assert trace.reply is not None and trace.reply["status"] == "Rejected"
        assert trace.reply["statusInfo"]["reasonCode"] == "NoTransaction"
    empty = make_ctx()
    trace = drive(tr, empty, CSMS, "TriggerMessage", {"requestedMessage": "TransactionEvent"})
    assert trace.calls == [] and trace.reply is not None and trace.reply["status"] == "Rejected"


@pytest.mark.parametrize(
    ("charger_answer", "late"),
    [
        ({"status": "Rejected"}, False),
        (PeerTimeout("InternalError", "no answer"), False),
        ({"status": "Accepted"}, True),
    ],
    ids=["refused", "unanswered", "expired"],
)
def test_a_trigger_that_did_not_happen_changes_nothing(charger_answer: Answer, late: bool) -> None:
    """A refused or unanswered trigger, or a MeterValues long after it, does not turn MeterValues into an event."""
    now = [T0]
    ctx = make_ctx()
    ctx.clock = lambda: now[0]
    tr = V16ToV201({})
    start_tx(tr, ctx)
    trigger = {"requestedMessage": "TransactionEvent", "evse": {"id": 1}}
    try:
        drive(tr, ctx, CSMS, "TriggerMessage", trigger, [charger_answer])
    except PeerError:
        pass
    if late:
        now[0] = T0 + timedelta(minutes=5)
    [sent] = drive(tr, ctx, CHARGER, "MeterValues", {"connectorId": 1, "meterValue": [ENERGY]}, [{}]).calls
    assert sent.action == "MeterValues"
    assert ctx.state["v16_v201"].get("triggers", {}) == {}


# ---------------------------------------------------------------------------------------------
# 2, 3. The synthesised device model: maximums are maxLimit, write-only variables are never read

LIMIT_KEYS = {
    "configurationKey": [
        {"key": "LocalAuthListMaxLength", "readonly": True, "value": "5000"},
        {"key": "MaxChargingProfilesInstalled", "readonly": True, "value": "20"},
        {"key": "CertificateStoreMaxLength", "readonly": True, "value": "10"},
        {"key": "AuthorizationKey", "readonly": False, "value": "leaked-by-a-careless-charger"},
        {"key": "SecurityProfile", "readonly": False, "value": "1"},
    ]
}


@pytest.mark.parametrize(
    ("component", "variable", "instance", "attribute", "characteristics"),
    [
        ("LocalAuthListCtrlr", "Entries", None, {"mutability": "ReadOnly"}, {"maxLimit": 5000}),
        ("SmartChargingCtrlr", "Entries", "ChargingProfiles", {"mutability": "ReadOnly"}, {"maxLimit": 20}),
        ("SecurityCtrlr", "CertificateEntries", None, {"mutability": "ReadOnly"}, {"maxLimit": 10}),
        ("SecurityCtrlr", "BasicAuthPassword", None, {"mutability": "WriteOnly"}, {}),
        ("SecurityCtrlr", "SecurityProfile", None, {"mutability": "ReadOnly", "value": "1"}, {}),
    ],
)
def test_base_report_states_maximums_as_max_limit(
    tr: V16ToV201,
    ctx: Context,
    component: str,
    variable: str,
    instance: str | None,
    attribute: dict[str, Any],
    characteristics: dict[str, Any],
) -> None:
    """A 1.6 maximum is the maxLimit of its count variable (no Actual value); WriteOnly values are never shown."""
    trace = drive(tr, ctx, CSMS, "GetBaseReport", {"requestId": 1, "reportBase": "ConfigurationInventory"},
                  [LIMIT_KEYS])  # fmt: skip
    [report] = trace.notified("NotifyReport")
    [entry] = [e for e in report["reportData"]
               if (e["component"]["name"], e["variable"]["name"], e["variable"].get("instance"))
               == (component, variable, instance)]  # fmt: skip
    assert entry["variableAttribute"] == [{"type": "Actual", **attribute}]
    assert {k: v for k, v in entry["variableCharacteristics"].items() if k == "maxLimit"} == characteristics


@pytest.mark.parametrize(
    ("component", "variable", "instance", "reason"),
    [
        ("LocalAuthListCtrlr", "Entries", None, "CountUnknown"),
        ("SmartChargingCtrlr", "Entries", "ChargingProfiles", "CountUnknown"),
        ("SecurityCtrlr", "CertificateEntries", None, "CountUnknown"),
        ("SecurityCtrlr", "BasicAuthPassword", None, "WriteOnly"),
    ],
)
def test_get_variables_never_reads_a_maximum_or_a_password(
    tr: V16ToV201, ctx: Context, component: str, variable: str, instance: str | None, reason: str
) -> None:
    """GetVariables on a count the 1.6 charger does not know, or a WriteOnly variable: Rejected, charger not asked."""
    entry = {"idToken": {"idToken": "04A1B2C3", "type": "ISO14443"}, "idTokenInfo": {"status": "Accepted"}}
    one_entry = {"versionNumber": 1, "updateType": "Full", "localAuthorizationList": [entry]}
    drive(tr, ctx, CSMS, "SendLocalList", one_entry, [{"status": "Accepted"}])
    var = {"name": variable, **({"instance": instance} if instance else {})}
    item = {"component": {"name": component}, "variable": var}
    trace = drive(tr, ctx, CSMS, "GetVariables", {"getVariableData": [item]})
    assert trace.calls == []
    [result] = trace.reply["getVariableResult"]  # type: ignore[index]
    assert result["attributeStatus"] == "Rejected" and "attributeValue" not in result
    assert result["attributeStatusInfo"]["reasonCode"] == reason


def test_legacy_name_of_the_password_is_not_readable_either(tr: V16ToV201, ctx: Context) -> None:
    """OCPP16LegacyCtrlr.AuthorizationKey reaches the same WriteOnly variable: Rejected, not read."""
    item = {"component": {"name": "OCPP16LegacyCtrlr"}, "variable": {"name": "AuthorizationKey"}}
    trace = drive(tr, ctx, CSMS, "GetVariables", {"getVariableData": [item]})
    assert trace.calls == [] and trace.reply["getVariableResult"][0]["attributeStatus"] == "Rejected"  # type: ignore[index]


# ---------------------------------------------------------------------------------------------
# 4. A transaction ends once


def stop(tx_int: int, meter: int, **extra: Any) -> dict[str, Any]:
    return {"transactionId": tx_int, "meterStop": meter, "timestamp": NOW, **extra}


def test_duplicate_stop_transaction_is_answered_locally(tr: V16ToV201, ctx: Context) -> None:
    """The report's frames: the second StopTransaction for transaction 1 gets the first answer, no second Ended."""
    start_tx(tr, ctx)
    first = drive(tr, ctx, CHARGER, "StopTransaction", stop(1, 12), [{}])
    ended = first.call("TransactionEvent")
    assert (ended["eventType"], ended["seqNo"]) == ("Ended", 1)
    again = drive(tr, ctx, CHARGER, "StopTransaction", stop(1, 17, reason="Local"))
    assert again.calls == [] and again.notifies == [] and again.reply == first.reply == {}
    [report] = again.reported("duplicate_stop_transaction")
    assert (report["transactionId"], report["meterStop"], report["csms_transaction_id"]) == (
        1, 17, ended["transactionInfo"]["transactionId"],
    )  # fmt: skip


def test_an_unconfirmed_ended_is_resent_unchanged_then_answered_locally(tr: V16ToV201, ctx: Context) -> None:
    """When the CSMS did not confirm the Ended, the repeat re-sends that same event (same seqNo), never a new one."""
    start_tx(tr, ctx)
    with pytest.raises(PeerTimeout):
        drive(tr, ctx, CHARGER, "StopTransaction", stop(1, 12, idTag="TAG1"), [PeerTimeout("InternalError", "late")])
    resent = drive(tr, ctx, CHARGER, "StopTransaction", stop(1, 17, idTag="TAG1"), [AUTH_OK])
    assert resent.call("TransactionEvent")["seqNo"] == 1
    assert resent.call("TransactionEvent")["meterValue"][-1]["sampledValue"][0]["value"] == 12
    third = drive(tr, ctx, CHARGER, "StopTransaction", stop(1, 17, idTag="TAG1"))
    assert third.calls == [] and third.reply == resent.reply == {"idTagInfo": {"status": "Accepted"}}


def test_a_pending_reset_waits_for_the_confirmed_stop(tr: V16ToV201, ctx: Context) -> None:
    """Reset(OnIdle) goes out after the Ended is confirmed, once, even when the first attempt timed out."""
    start_tx(tr, ctx)
    assert drive(tr, ctx, CSMS, "Reset", {"type": "OnIdle"}).reply == {"status": "Scheduled"}
    with pytest.raises(PeerTimeout):
        drive(tr, ctx, CHARGER, "StopTransaction", stop(1, 12), [PeerTimeout("InternalError", "late")])
    resent = drive(tr, ctx, CHARGER, "StopTransaction", stop(1, 12), [{}])
    assert [n.action for n in resent.notifies] == ["Reset"]
    assert drive(tr, ctx, CHARGER, "StopTransaction", stop(1, 12)).notifies == []


# ---------------------------------------------------------------------------------------------
# 5. A StopTransaction for a transaction the gateway never saw start


@pytest.mark.parametrize(
    ("frame", "csms_answers", "calls", "reply"),
    [
        (stop(7, 12), [], [], {}),
        (stop(7, 12, idTag="04A1B2C3"), [AUTH_OK], ["Authorize"], {"idTagInfo": {"status": "Accepted"}}),
        (stop(7, 12, idTag="TAG1"), [{"idTokenInfo": {"status": "Blocked"}}], ["Authorize"],
         {"idTagInfo": {"status": "Blocked"}}),
        (stop(7, 12, idTag="TAG1"), [PeerTimeout("InternalError", "late")], ["Authorize"], {}),
    ],
    ids=["no idTag", "idTag", "blocked idTag", "CSMS silent"],
)  # fmt: skip
def test_unmatched_stop_is_answered_locally_and_reported(
    tr: V16ToV201, ctx: Context, frame: dict[str, Any], csms_answers: list[Answer], calls: list[str],
    reply: dict[str, Any],
) -> None:
    """No Ended for a transaction the CSMS never saw start: the charger is answered, the stop kept and reported."""
    trace = drive(tr, ctx, CHARGER, "StopTransaction", frame, csms_answers)
    assert [c.action for c in trace.calls] == calls and trace.reply == reply
    [report] = trace.reported("unmatched_stop_transaction")
    assert (report["transactionId"], report["meterStop"]) == (7, 12)
    ns = ctx.state["v16_v201"]
    assert ns["unmatched_stops"][-1]["transactionId"] == 7 and ns["unmatched_stops_total"] == 1


def test_unmatched_stops_are_kept_bounded_and_counted(tr: V16ToV201, ctx: Context) -> None:
    """The per-charger list keeps the last few unmatched stops; the total counts all of them."""
    for n in range(1, MAX_UNMATCHED_STOPS + 5):
        drive(tr, ctx, CHARGER, "StopTransaction", stop(100 + n, n))
    ns = ctx.state["v16_v201"]
    assert len(ns["unmatched_stops"]) == MAX_UNMATCHED_STOPS
    assert ns["unmatched_stops"][-1]["transactionId"] == 100 + MAX_UNMATCHED_STOPS + 4
    assert ns["unmatched_stops_total"] == MAX_UNMATCHED_STOPS + 4


def test_the_session_logs_and_counts_a_report() -> None:
    """Through the real session: the charger gets its CALLRESULT, the CSMS nothing, the operator a Problem."""
    ids = itertools.count(1)
    session = ChargerSession("CP1", V16ToV201({}), Context("CP1", Version.V16, Version.V201,
                                                           new_uuid=lambda: f"gw-{next(ids)}"))  # fmt: skip
    session.link_up(CSMS, 0.0)
    out = session.receive(CHARGER, orjson.dumps([2, "s1", "StopTransaction", stop(5, 10)]).decode(), 1.0)
    assert [(a.to, orjson.loads(a.text)) for a in out if isinstance(a, Send)] == [(CHARGER, [3, "s1", {}])]
    [problem] = [a for a in out if isinstance(a, Problem)]
    assert problem.event == "unmatched_stop_transaction" and problem.detail["transactionId"] == 5


def test_the_1_6_to_2_1_composition_passes_reports_on() -> None:
    """A 1.6 charger behind 1.6 -> 2.0.1 -> 2.1: the unmatched stop is reported, nothing reaches the 2.1 CSMS."""
    composed = translator_for(Version.V16, Version.V21, {})
    assert isinstance(composed, Composed)
    ctx = Context("CP1", Version.V16, Version.V21)
    session = ChargerSession("CP1", composed, ctx)
    session.link_up(CSMS, 0.0)
    out = session.receive(CHARGER, orjson.dumps([2, "s1", "StopTransaction", stop(5, 10)]).decode(), 1.0)
    assert [a.to for a in out if isinstance(a, Send)] == [CHARGER]
    assert [a.event for a in out if isinstance(a, Problem)] == ["unmatched_stop_transaction"]


# ---------------------------------------------------------------------------------------------
# 8. idTag types


@pytest.mark.parametrize(
    ("tag", "token_type"),
    [
        ("TAG1", "Local"),  # the report's tag
        ("04A1B2C3", "ISO14443"),  # 4-byte UID
        ("04a1b2c3d4e5f6", "ISO14443"),  # 7-byte UID, lower case
        ("E0040100123456AB", "ISO15693"),  # 8-byte vicinity UID
        ("DE-8AC-C12345678-9", "eMAID"),
        ("DE8ACC12345678X", "eMAID"),
        ("NLTNMC00000000", "eMAID"),
        ("04A1B2C", "Local"),  # 7 hex digits: no card has that
        ("04A1B2C3D4", "Local"),  # 10 hex digits: neither 8 nor 14
        ("12345", "Local"),
        ("fleet card 7", "Local"),
        ("", "Local"),
    ],
)
def test_token_type_is_inferred_from_the_tag(tag: str, token_type: str) -> None:
    """An idTag's shape decides its 2.0.1 type; anything that is no card or contract id is Local."""
    assert infer_token_type(tag) == token_type


def citrine_like(call: OutCall) -> Answer:
    """A CSMS that checks token formats as CitrineOS does (ISO14443: 8 or 14 hex digits)."""
    for token in _tokens(call.payload):
        if token["type"] == "ISO14443" and not re.fullmatch(r"[0-9A-Fa-f]{8}|[0-9A-Fa-f]{14}", token["idToken"]):
            return PeerError(
                "PropertyConstraintViolation", "ISO14443 tokens must be either 8 or 14 hexadecimal characters"
            )
    return AUTH_OK if call.action in ("Authorize", "TransactionEvent") else {}


def _tokens(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [payload["idToken"]] if "idToken" in payload else []


@pytest.mark.parametrize("tag", ["TAG1", "04A1B2C3", "E0040100123456AB", "DE8ACC12345678X", "fleet card 7"])
def test_a_format_checking_csms_accepts_every_translated_tag(tr: V16ToV201, ctx: Context, tag: str) -> None:
    """Authorize, StartTransaction and StopTransaction with any tag pass a CSMS that checks token formats."""
    auth = drive(tr, ctx, CHARGER, "Authorize", {"idTag": tag}, citrine_like)
    assert auth.reply == {"idTagInfo": {"status": "Accepted"}}
    start = drive(tr, ctx, CHARGER, "StartTransaction",
                  {"connectorId": 1, "idTag": tag, "meterStart": 0, "timestamp": NOW}, citrine_like)  # fmt: skip
    assert start.reply is not None and start.reply["idTagInfo"] == {"status": "Accepted"}
    assert start.call("TransactionEvent")["idToken"]["idToken"] == tag  # the very string, both ways
    stopped = drive(tr, ctx, CHARGER, "StopTransaction", stop(start.reply["transactionId"], 5, idTag=tag), citrine_like)
    assert stopped.reply == {"idTagInfo": {"status": "Accepted"}}


def test_the_operator_override_and_the_csms_type_win(ctx: Context) -> None:
    """id_token_type types every tag; a type the CSMS used for a tag wins over both; strings map back exactly."""
    forced = V16ToV201({"id_token_type": "ISO14443"})
    assert drive(forced, ctx, CHARGER, "Authorize", {"idTag": "TAG1"}, [AUTH_OK]).call("Authorize")["idToken"] == {
        "idToken": "TAG1", "type": "ISO14443",
    }  # fmt: skip
    tr = V16ToV201({})
    remote = {"idToken": {"idToken": "app-User-1", "type": "Central"}, "remoteStartId": 3, "evseId": 1}
    started = drive(tr, ctx, CSMS, "RequestStartTransaction", remote, [{"status": "Accepted"}])
    assert started.call("RemoteStartTransaction")["idTag"] == "app-User-1"
    auth = drive(tr, ctx, CHARGER, "Authorize", {"idTag": "app-User-1"}, [AUTH_OK])
    assert auth.call("Authorize")["idToken"] == {"idToken": "app-User-1", "type": "Central"}
