"""Issue 19, items 6 and 7: remote starts without an idToken, and CALLERROR details across versions."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from adapters.base import Context, Side
from adapters.registry import translator_for
from gateway.ocppj import Version
from gateway.session import ChargerSession, Send
from tests.unit.test_v201_v16 import Link, energy, station201, tx_event

V16, V201, V21 = Version.V16, Version.V201, Version.V21
REMOTE = "REMOTE1"

# --- item 6: a remote-started transaction whose events carry only the remoteStartId ---------------------------

# Placeholders in a script, filled in as it runs.
RSID = "<the remoteStartId the gateway issued>"
REMOTE_START = "<RemoteStartTransaction from the 1.6 CSMS>"


@dataclass(frozen=True)
class RemoteCase:
    name: str
    answer: dict[str, Any]  # the station's RequestStartTransactionResponse
    script: list[Any]  # REMOTE_START or TransactionEvent payloads (RSID stands for the issued remoteStartId)
    to_csms: list[str]  # what the 1.6 CSMS receives, in order
    id_tag: str | None  # the StartTransaction's idTag (None: no StartTransaction)


def _fill(value: Any, rsid: int) -> Any:
    if value == RSID:
        return rsid
    if isinstance(value, dict):
        return {k: _fill(v, rsid) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, rsid) for v in value]
    return value


EVSE = {"id": 1, "connectorId": 1}
STARTED_REMOTE = tx_event("Started", 0, 1, "RemoteStart", evse=EVSE, info={"remoteStartId": RSID})
STARTED_PLUGGED = tx_event("Started", 0, 1, "CablePluggedIn", evse=EVSE, info={"chargingState": "EVConnected"})
UPDATED_METER = tx_event("Updated", 1, 5, "MeterValuePeriodic", meterValue=energy(1500, "Sample.Periodic", 5))
UPDATED_REMOTE = tx_event("Updated", 1, 2, "RemoteStart", info={"remoteStartId": RSID, "chargingState": "Charging"})
ENDED = tx_event("Ended", 2, 9, "StopAuthorized", info={"stoppedReason": "Remote"})

REMOTE_CASES = [
    RemoteCase(
        "Started names the remoteStartId, no idToken (the issue's frames)",
        {"status": "Accepted"},
        [REMOTE_START, STARTED_REMOTE, UPDATED_METER, ENDED],
        ["StartTransaction", "MeterValues", "StopTransaction"],
        REMOTE,
    ),
    RemoteCase(
        "a waiting transaction's Updated names the remoteStartId",
        {"status": "Accepted"},
        [STARTED_PLUGGED, REMOTE_START, UPDATED_REMOTE, ENDED],
        ["StartTransaction", "StopTransaction"],
        REMOTE,
    ),
    RemoteCase(
        "the answer names the waiting transaction; the next event carries neither idToken nor remoteStartId",
        {"status": "Accepted", "transactionId": "tx-A"},
        [STARTED_PLUGGED, REMOTE_START, UPDATED_METER, ENDED],
        ["StartTransaction", "MeterValues", "StopTransaction"],
        REMOTE,
    ),
    RemoteCase(
        "a remoteStartId the gateway never issued authorizes nothing",
        {"status": "Accepted"},
        [tx_event("Started", 0, 1, "RemoteStart", evse=EVSE, info={"remoteStartId": 999}), UPDATED_METER, ENDED],
        [],
        None,
    ),
    RemoteCase(
        "an idToken in the Started wins over the remembered remote start",
        {"status": "Accepted"},
        [REMOTE_START, {**STARTED_REMOTE, "idToken": {"idToken": "CARD9", "type": "ISO14443"}}, ENDED],
        ["StartTransaction", "StopTransaction"],
        "CARD9",
    ),
]


@pytest.mark.parametrize("station", [V201, V21], ids=["2.0.1 station", "2.1 station (composed)"])
@pytest.mark.parametrize("case", REMOTE_CASES, ids=[c.name for c in REMOTE_CASES])
def test_remote_started_transaction_reaches_the_16_csms(case: RemoteCase, station: Version) -> None:
    """A transaction naming the remoteStartId the gateway issued is started, metered and stopped under its idTag."""
    translator = translator_for(station, V16)
    assert translator is not None
    link = Link(
        tr=translator,
        ctx=Context("CS1", station, V16),
        station=station201({"RequestStartTransaction": case.answer}),
    )
    rsid: int | None = None
    for step in case.script:
        if step == REMOTE_START:
            answer = link.call(Side.CSMS, "RemoteStartTransaction", {"connectorId": 1, "idTag": REMOTE})
            assert answer == {"status": "Accepted"}
            [(_, action, request)] = link.take()
            assert (action, request["idToken"]["idToken"]) == ("RequestStartTransaction", REMOTE)
            rsid = request["remoteStartId"]
        else:
            link.call(Side.CHARGER, "TransactionEvent", _fill(step, rsid))
    to_csms = [(a, p) for a, p in link.to_csms() if a != "StatusNotification"]
    assert [a for a, _ in to_csms] == case.to_csms
    starts = [p for a, p in to_csms if a == "StartTransaction"]
    assert [p["idTag"] for p in starts] == ([case.id_tag] if case.id_tag else [])
    for action, payload in to_csms:
        if action in ("MeterValues", "StopTransaction"):
            assert payload["transactionId"] == 1


def test_a_remote_start_is_used_once() -> None:
    """A second transaction naming the same remoteStartId does not get the idTag again."""
    link = Link(station=station201({"RequestStartTransaction": {"status": "Accepted"}}))
    link.call(Side.CSMS, "RemoteStartTransaction", {"connectorId": 1, "idTag": REMOTE})
    rsid = link.take()[0][2]["remoteStartId"]
    for tx_id in ("tx-A", "tx-B"):
        started = _fill(STARTED_REMOTE, rsid)
        started["transactionInfo"] = {**started["transactionInfo"], "transactionId": tx_id}
        link.call(Side.CHARGER, "TransactionEvent", started)
    assert [a for a, _ in link.to_csms() if a != "StatusNotification"] == ["StartTransaction"]


# --- item 7: a relayed CALLERROR's errorDetails make sense to the receiver ------------------------------------


def _frame(*parts: Any) -> str:
    return orjson.dumps(list(parts)).decode()


@dataclass(frozen=True)
class ErrorCase:
    name: str
    charger: Version
    csms: Version
    origin: Side  # who sends the CALL
    call: tuple[str, dict[str, Any]]
    error: tuple[str, str, dict[str, Any] | str]  # the peer's code, description, details ("payload": its request)
    relayed: list[Any]  # the CALLERROR the originator gets, without its message id


CHANGE_AVAILABILITY = ("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})

ERROR_CASES = [
    ErrorCase(
        "2.0.1 station NotImplemented with its request as details -> 1.6 CSMS",
        V201,
        V16,
        Side.CSMS,
        CHANGE_AVAILABILITY,
        ("NotImplemented", "ChangeAvailability is not implemented", "payload"),
        [
            "NotImplemented",
            "ChangeAvailability is not implemented",
            {"relayedFrom": "OCPP 2.0.1 charger", "errorCode": "NotImplemented"},
        ],
    ),
    ErrorCase(
        "2.1 station (composed) NotImplemented with its request as details -> 1.6 CSMS",
        V21,
        V16,
        Side.CSMS,
        CHANGE_AVAILABILITY,
        ("NotImplemented", "no", "payload"),
        ["NotImplemented", "no", {"relayedFrom": "OCPP 2.1 charger", "errorCode": "NotImplemented"}],
    ),
    ErrorCase(
        "1.6 CSMS error on a 2.0.1 station's Authorize -> 2.0.1 station",
        V201,
        V16,
        Side.CHARGER,
        ("Authorize", {"idToken": {"idToken": "CARD1", "type": "ISO14443"}}),
        ("FormationViolation", "bad", {"idTag": "CARD1"}),
        ["FormatViolation", "bad", {"relayedFrom": "OCPP 1.6 csms", "errorCode": "FormationViolation"}],
    ),
    ErrorCase(
        "2.0.1 CSMS error on a 1.6 charger's Heartbeat -> 1.6 charger",
        V16,
        V201,
        Side.CHARGER,
        ("Heartbeat", {}),
        ("FormatViolation", "bad", "payload"),
        ["FormationViolation", "bad", {"relayedFrom": "OCPP 2.0.1 csms", "errorCode": "FormatViolation"}],
    ),
    ErrorCase(
        "same version: the details go as they came",
        V201,
        V201,
        Side.CSMS,
        ("ClearCache", {}),
        ("NotImplemented", "no", {"hint": "firmware 1.2"}),
        ["NotImplemented", "no", {"hint": "firmware 1.2"}],
    ),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c.name for c in ERROR_CASES])
def test_relayed_callerror_details_are_in_the_receivers_terms(case: ErrorCase) -> None:
    """A peer's CALLERROR reaches the originator in its version; foreign errorDetails become provenance."""
    ids = itertools.count(1)
    ctx = Context("CS1", case.charger, case.csms, new_uuid=lambda: f"gw-{next(ids)}")
    translator = translator_for(case.charger, case.csms)
    assert translator is not None
    session = ChargerSession("CS1", translator, ctx)
    session.link_up(Side.CSMS, 0.0)
    action, payload = case.call
    out = session.receive(case.origin, _frame(2, "call-1", action, payload), 1.0)
    [relayed_call] = [orjson.loads(a.text) for a in out if isinstance(a, Send) and a.to is case.origin.other]
    code, description, details = case.error
    peer_details = relayed_call[3] if details == "payload" else details
    out = session.receive(case.origin.other, _frame(4, relayed_call[1], code, description, peer_details), 2.0)
    [answer] = [orjson.loads(a.text) for a in out if isinstance(a, Send) and a.to is case.origin]
    assert answer == [4, "call-1", *case.relayed]
