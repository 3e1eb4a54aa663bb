"""2.0.1 charging station -> 1.6J central system: every payload checked against its version's schema."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from adapters import registry
from adapters.base import (
    DROP,
    Context,
    Defer,
    Deferring,
    Handler,
    Notify,
    OutCall,
    PeerError,
    PeerTimeout,
    Refuse,
    Side,
    Support,
    Translator,
)
from adapters.v201_v16 import PNC_VENDOR, V201V16
from gateway import schemas
from gateway.ocppj import Call, ErrorKind, Version

V16, V201, V21 = Version.V16, Version.V201, Version.V21
T0 = "2024-05-01T10:00:00.000Z"


def ts(minute: int) -> str:
    return f"2024-05-01T10:{minute:02d}:00.000Z"


def valid(version: Version, action: str, payload: dict[str, Any], response: bool = False) -> None:
    violation = schemas.validate(version, action, payload, response=response)
    kind = "response" if response else "request"
    assert violation is None, f"OCPP {version.value} {action} {kind} {payload}: {violation.describe()}"


Answer = Callable[[str, dict[str, Any]], dict[str, Any]]


def csms16() -> Answer:
    """A strict 1.6 central system: valid answers, integer transaction ids from 1."""
    ids = itertools.count(1)
    fixed: dict[str, dict[str, Any]] = {
        "BootNotification": {"status": "Accepted", "currentTime": T0, "interval": 300},
        "Heartbeat": {"currentTime": T0},
        "Authorize": {"idTagInfo": {"status": "Accepted"}},
        "StopTransaction": {"idTagInfo": {"status": "Accepted"}},
        "DataTransfer": {"status": "Accepted", "data": "pong"},
        "SignCertificate": {"status": "Accepted"},
    }

    def answer(action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if action == "StartTransaction":
            return {"transactionId": next(ids), "idTagInfo": {"status": "Accepted", "parentIdTag": "GROUP"}}
        return copy.deepcopy(fixed.get(action, {}))

    return answer


def station201(answers: dict[str, dict[str, Any]]) -> Answer:
    def answer(action: str, payload: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(answers[action])

    return answer


@dataclass
class Link:
    """The gateway's two links as a test sees them: everything sent, validated, and answered."""

    tr: Translator = field(default_factory=V201V16)
    ctx: Context = field(default_factory=lambda: Context("CS1", V201, V16))
    csms: Answer = field(default_factory=csms16)
    station: Answer = field(default_factory=lambda: station201({}))
    sent: list[tuple[Side, str, dict[str, Any]]] = field(default_factory=list)
    down: set[Side] = field(default_factory=set)  # sides that do not answer (PeerTimeout)
    # What the translator deferred and the CSMS has not settled, oldest first: the charger's offline queue,
    # as the session keeps it (action, payload, ref).
    queue: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)

    def call(self, origin: Side, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """One CALL from ``origin`` through the translator; returns the answer it gets."""
        station_version, csms_version = self.ctx.charger_version, self.ctx.csms_version
        version = station_version if origin is Side.CHARGER else csms_version
        valid(version, action, payload)
        handler: Handler = self.tr.handle_call(origin, Call(f"m{len(self.sent)}", action, payload), self.ctx)
        value: dict[str, Any] | None = None
        error: BaseException | None = None
        while True:
            try:
                step = handler.throw(error) if error else handler.send(value)
            except StopIteration as stop:
                if stop.value is not None:
                    valid(version, action, stop.value, response=True)
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            if isinstance(step, Defer):
                # Queued; sent at once when nothing is queued ahead of it, as the session does.
                self.queue.append((step.call.action, step.call.payload, step.ref))
                if len(self.queue) == 1:
                    value = self._deliver_head()
                continue
            assert isinstance(step, OutCall | Notify)
            target = station_version if step.to is Side.CHARGER else csms_version
            valid(target, step.action, step.payload)
            self.sent.append((step.to, step.action, step.payload))
            if step.to in self.down:
                error = PeerTimeout("Timeout", "no answer")
                continue
            peer = self.station if step.to is Side.CHARGER else self.csms
            try:
                reply = peer(step.action, step.payload)
            except PeerError as exc:  # the peer answered with a CALLERROR
                error = exc
                continue
            valid(target, step.action, reply, response=True)
            if isinstance(step, OutCall):
                value = reply

    def _deliver_head(self) -> dict[str, Any] | None:
        """The queue's oldest message to the CSMS as its translator resolves it; settled with the answer unless
        the CSMS did not answer or the translator keeps it. The answer, when it is settled with one."""
        action, payload, ref = self.queue[0]
        deferring = cast(Deferring, self.tr)
        resolved = deferring.resolve(ref, action, payload, self.ctx)
        if resolved is None:
            return None
        if resolved is DROP:
            self.queue.pop(0)
            return None
        valid(self.ctx.csms_version, action, resolved)
        self.sent.append((Side.CSMS, action, resolved))
        if Side.CSMS in self.down:
            return None
        reply: dict[str, Any] | None = None
        error: PeerError | None = None
        try:
            reply = self.csms(action, resolved)
            valid(self.ctx.csms_version, action, reply, response=True)
        except PeerError as exc:
            error = exc
        settlement = deferring.settled(ref, action, reply, error, self.ctx)
        for notify in settlement.notify:
            valid(self.ctx.csms_version, notify.action, notify.payload)
            self.sent.append((Side.CSMS, notify.action, notify.payload))
        if settlement.keep:
            return None
        self.queue.pop(0)
        return reply

    def replay(self) -> None:
        """Send what is queued, in order, until the queue is empty or its head must wait (as the session's replay)."""
        while self.queue:
            head = self.queue[0]
            self._deliver_head()
            if self.queue and self.queue[0] is head:
                return

    def take(self) -> list[tuple[Side, str, dict[str, Any]]]:
        out, self.sent = self.sent, []
        return out

    def to_csms(self) -> list[tuple[str, dict[str, Any]]]:
        return [(a, p) for s, a, p in self.take() if s is Side.CSMS]


def tx_event(event: str, seq: int, minute: int, trigger: str, **extra: Any) -> dict[str, Any]:
    info = {"transactionId": "tx-A", **extra.pop("info", {})}
    payload = {"eventType": event, "timestamp": ts(minute), "triggerReason": trigger, "seqNo": seq}
    return {**payload, "transactionInfo": info, **extra}


def energy(wh: float, context: str, minute: int, unit: str = "Wh", multiplier: int = 0) -> list[dict[str, Any]]:
    sv = {
        "value": wh,
        "context": context,
        "measurand": "Energy.Active.Import.Register",
        "unitOfMeasure": {"unit": unit, "multiplier": multiplier},
    }
    return [{"timestamp": ts(minute), "sampledValue": [sv]}]


TOKEN = {"idToken": "04A2B3C4D5", "type": "ISO14443"}


def status(minute: int, connector_status: str) -> dict[str, Any]:
    return {"timestamp": ts(minute), "connectorStatus": connector_status, "evseId": 1, "connectorId": 1}


# --- the playbook: one full charging session ------------------------------------------------------------------


def test_full_charging_session_reaches_the_16_csms_with_the_energy_values() -> None:
    """Boot, authorize, plug in, charge, stop: the 1.6 CSMS sees the 1.6 session with meterStart/meterStop in Wh."""
    link = Link()
    boot = {"reason": "PowerUp", "chargingStation": {"vendorName": "ACME", "model": "Wallbox 22", "serialNumber": "S1"}}
    assert link.call(Side.CHARGER, "BootNotification", boot) == {
        "currentTime": T0,
        "interval": 300,
        "status": "Accepted",
    }
    link.call(Side.CHARGER, "StatusNotification", status(0, "Available"))
    auth = link.call(Side.CHARGER, "Authorize", {"idToken": TOKEN})
    assert auth == {"idTokenInfo": {"status": "Accepted"}}
    link.call(Side.CHARGER, "StatusNotification", status(1, "Occupied"))
    started = link.call(
        Side.CHARGER,
        "TransactionEvent",
        tx_event(
            "Started",
            0,
            1,
            "Authorized",
            idToken=TOKEN,
            evse={"id": 1, "connectorId": 1},
            info={"chargingState": "EVConnected"},
            meterValue=energy(1000, "Transaction.Begin", 1),
        ),
    )
    assert started == {"idTokenInfo": {"status": "Accepted", "groupIdToken": {"idToken": "GROUP", "type": "ISO14443"}}}
    link.call(
        Side.CHARGER,
        "TransactionEvent",
        tx_event("Updated", 1, 2, "ChargingStateChanged", info={"chargingState": "Charging"}),
    )
    link.call(
        Side.CHARGER,
        "TransactionEvent",
        tx_event("Updated", 2, 30, "MeterValuePeriodic", meterValue=energy(2.5, "Sample.Periodic", 30, "kWh")),
    )
    link.call(
        Side.CHARGER,
        "TransactionEvent",
        tx_event("Updated", 3, 50, "ChargingStateChanged", info={"chargingState": "SuspendedEV"}),
    )
    ended = tx_event(
        "Ended",
        4,
        59,
        "EVCommunicationLost",
        info={"stoppedReason": "EVDisconnected"},
        meterValue=energy(7.3, "Transaction.End", 59, "Wh", 3),
    )
    assert link.call(Side.CHARGER, "TransactionEvent", ended) == {}
    link.call(Side.CHARGER, "StatusNotification", status(59, "Available"))

    sent = link.to_csms()
    assert [a for a, _ in sent] == [
        "BootNotification",
        "StatusNotification",
        "Authorize",
        "StatusNotification",
        "StartTransaction",
        "StatusNotification",
        "StatusNotification",
        "MeterValues",
        "StatusNotification",
        "StopTransaction",
        "StatusNotification",
        "StatusNotification",
    ]
    statuses = [p["status"] for a, p in sent if a == "StatusNotification"]
    assert statuses == ["Available", "Preparing", "SuspendedEVSE", "Charging", "SuspendedEV", "Finishing", "Available"]
    start = dict(sent)["StartTransaction"]
    assert start == {"connectorId": 1, "idTag": "04A2B3C4D5", "meterStart": 1000, "timestamp": ts(1)}
    meter = dict(sent)["MeterValues"]
    assert meter["transactionId"] == 1 and meter["connectorId"] == 1
    assert meter["meterValue"][0]["sampledValue"] == [
        {"value": "2.5", "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register", "unit": "kWh"}
    ]
    stop = dict(sent)["StopTransaction"]
    assert (stop["transactionId"], stop["meterStop"], stop["reason"], stop["timestamp"]) == (
        1,
        7300,
        "EVDisconnected",
        ts(59),
    )
    assert stop["transactionData"][0]["sampledValue"][0]["value"] == "7.3"
    assert stop["transactionData"][0]["sampledValue"][0]["unit"] == "kWh"
    assert link.ctx.dirty


def test_meter_stop_falls_back_to_the_last_energy_seen() -> None:
    """An Ended without a Transaction.End register stops at the last energy reading of the transaction."""
    link = Link()
    start = tx_event(
        "Started", 0, 1, "Authorized", idToken=TOKEN, evse={"id": 1}, meterValue=energy(500, "Transaction.Begin", 1)
    )
    link.call(Side.CHARGER, "TransactionEvent", start)
    link.call(
        Side.CHARGER,
        "TransactionEvent",
        tx_event("Updated", 1, 9, "MeterValuePeriodic", meterValue=energy(4321.6, "Sample.Periodic", 9)),
    )
    link.call(
        Side.CHARGER,
        "TransactionEvent",
        tx_event("Ended", 2, 10, "StopAuthorized", idToken=TOKEN, info={"stoppedReason": "Local"}),
    )
    stop = dict(link.to_csms())["StopTransaction"]
    assert (stop["meterStop"], stop["reason"], stop["idTag"]) == (4322, "Local", "04A2B3C4D5")
    assert "transactionData" not in stop


# --- transaction ids and held events ------------------------------------------------------------------------


def test_events_before_the_integer_id_is_known_are_deferred_and_sent_in_order() -> None:
    """When StartTransaction gets no answer, the station is answered, and the start and later events wait in the
    offline queue, in order; the replay gives the MeterValues the id the CSMS assigned."""
    link = Link()
    link.down.add(Side.CSMS)
    started = tx_event(
        "Started",
        0,
        1,
        "Authorized",
        idToken=TOKEN,
        evse={"id": 1},
        offline=True,
        meterValue=energy(100, "Transaction.Begin", 1),
    )
    assert link.call(Side.CHARGER, "TransactionEvent", started) == {}
    assert (
        link.call(
            Side.CHARGER,
            "TransactionEvent",
            tx_event("Updated", 1, 5, "MeterValuePeriodic", offline=True, meterValue=energy(900, "Sample.Periodic", 5)),
        )
        == {}
    )
    assert [a for a, _ in link.to_csms()] == ["StartTransaction"]  # tried once, at once: no answer
    assert [a for a, _, _ in link.queue] == ["StartTransaction", "MeterValues"]
    link.down.clear()
    link.call(Side.CHARGER, "Heartbeat", {})
    assert [a for a, _ in link.to_csms()] == ["Heartbeat"]  # the queue is the session's to replay, not the handler's
    link.replay()
    sent = [(a, p) for a, p in link.to_csms() if a != "StatusNotification"]
    assert [a for a, _ in sent] == ["StartTransaction", "MeterValues"] and sent[1][1]["transactionId"] == 1
    link.call(
        Side.CHARGER,
        "TransactionEvent",
        tx_event("Ended", 2, 9, "StopAuthorized", meterValue=energy(1200, "Transaction.End", 9)),
    )
    stop = dict(link.to_csms())["StopTransaction"]
    assert (stop["transactionId"], stop["meterStop"]) == (1, 1200)


def test_started_without_a_token_waits_for_the_authorizing_event() -> None:
    """A Started with no idToken reaches 1.6 only once an Updated brings the token; its meter values follow."""
    link = Link()
    begin = tx_event(
        "Started",
        0,
        1,
        "CablePluggedIn",
        evse={"id": 1},
        info={"chargingState": "EVConnected"},
        meterValue=energy(10, "Transaction.Begin", 1),
    )
    assert link.call(Side.CHARGER, "TransactionEvent", begin) == {}
    early = tx_event("Updated", 1, 2, "MeterValuePeriodic", meterValue=energy(10, "Sample.Periodic", 2))
    link.call(Side.CHARGER, "TransactionEvent", early)
    assert [a for a, _ in link.to_csms()] == []
    answer = link.call(Side.CHARGER, "TransactionEvent", tx_event("Updated", 2, 3, "Authorized", idToken=TOKEN))
    assert answer is not None and answer["idTokenInfo"]["status"] == "Accepted"
    sent = link.to_csms()
    assert [a for a, _ in sent] == ["StartTransaction", "MeterValues"]
    assert sent[0][1]["meterStart"] == 10 and sent[0][1]["timestamp"] == ts(1)


def test_a_transaction_never_authorized_is_not_reported() -> None:
    """Plug in and out without a token: 1.6 has no transaction to start or stop."""
    link = Link()
    link.call(Side.CHARGER, "TransactionEvent", tx_event("Started", 0, 1, "CablePluggedIn", evse={"id": 1}))
    link.call(
        Side.CHARGER,
        "TransactionEvent",
        tx_event("Ended", 1, 2, "EVCommunicationLost", info={"stoppedReason": "EVDisconnected"}),
    )
    assert [a for a, _ in link.to_csms()] == []
    assert link.ctx.state["v201_v16"]["tx"] == {}


def test_anonymous_id_tag_option_starts_tokenless_transactions_at_once() -> None:
    """With anonymous_id_tag set, a Started without idToken becomes a StartTransaction with that idTag."""
    link = Link(tr=V201V16({"anonymous_id_tag": "FREE"}))
    link.call(Side.CHARGER, "TransactionEvent", tx_event("Started", 0, 1, "CablePluggedIn", evse={"id": 1}))
    assert dict(link.to_csms())["StartTransaction"]["idTag"] == "FREE"


def test_a_repeated_event_is_answered_without_a_second_16_message() -> None:
    """A station retrying an event whose answer it missed (same seqNo) does not start a second transaction."""
    link = Link()
    started = tx_event("Started", 0, 1, "Authorized", idToken=TOKEN, evse={"id": 1})
    first = link.call(Side.CHARGER, "TransactionEvent", started)
    again = link.call(Side.CHARGER, "TransactionEvent", started)
    assert first == again
    assert [a for a, _ in link.to_csms()].count("StartTransaction") == 1


def test_state_survives_a_restart_mid_transaction() -> None:
    """A new translator over the persisted (JSON round-tripped) state ends the transaction under the same id."""
    link = Link()
    link.call(Side.CHARGER, "TransactionEvent", tx_event("Started", 0, 1, "Authorized", idToken=TOKEN, evse={"id": 1}))
    restored = Context("CS1", V201, V16, state=json.loads(json.dumps(link.ctx.state)))
    after = Link(ctx=restored)
    after.csms = link.csms
    after.call(
        Side.CHARGER,
        "TransactionEvent",
        tx_event("Ended", 1, 5, "StopAuthorized", meterValue=energy(50, "Transaction.End", 5)),
    )
    assert dict(after.to_csms())["StopTransaction"]["transactionId"] == 1


def test_a_start_the_csms_refuses_is_retried_then_given_up() -> None:
    """StartTransaction answered with CALLERROR: the station is answered, the start stays at the head of the queue
    for the replay to try again, and after 3 refusals it is dropped with the MeterValues behind it."""
    link = Link()
    fallback = link.csms

    def refuse_start(action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if action == "StartTransaction":
            raise PeerError("InternalError", "db down")
        return fallback(action, payload)

    link.csms = refuse_start
    started = tx_event("Started", 0, 1, "Authorized", idToken=TOKEN, evse={"id": 1})
    assert link.call(Side.CHARGER, "TransactionEvent", started) == {}
    updated = tx_event("Updated", 1, 5, "MeterValuePeriodic", meterValue=energy(900, "Sample.Periodic", 5))
    assert link.call(Side.CHARGER, "TransactionEvent", updated) == {}
    assert [a for a, _, _ in link.queue] == ["StartTransaction", "MeterValues"]
    link.replay()
    assert [a for a, _, _ in link.queue] == ["StartTransaction", "MeterValues"]  # kept: refused twice
    link.replay()
    assert link.queue == []
    assert [a for a, _ in link.to_csms()] == ["StartTransaction"] * 3  # the MeterValues went with it
    assert link.ctx.state["v201_v16"]["tx"] == {}


def test_messages_an_older_gateway_held_in_the_state_are_adopted_once_in_order() -> None:
    """A state saved with held messages (tx.start, tx.queue) hands them over as deferred messages, in order, and
    forgets them; a transaction still waiting for its token keeps its messages; the replay then delivers them."""
    mv = {"connectorId": 1, "meterValue": [{"timestamp": ts(5), "sampledValue": [{"value": "900"}]}]}
    stop = {"meterStop": 1200, "timestamp": ts(9), "reason": "Local"}
    start = {"connectorId": 1, "idTag": "04A2B3C4D5", "meterStart": 100, "timestamp": ts(1)}
    old = {"v201_v16": {"tx": {
        "tx-A": {"connector": 1, "int": None, "started": ts(1), "begin_wh": 100, "seqs": [0, 1, 2], "start": start,
                 "queue": [{"action": "MeterValues", "payload": mv}, {"action": "StopTransaction", "payload": stop}]},
        "tx-B": {"connector": 2, "int": 41, "started": ts(2), "begin_wh": 0, "seqs": [0, 1],
                 "queue": [{"action": "MeterValues", "payload": {**mv, "connectorId": 2}}]},
        "tx-C": {"connector": 3, "int": None, "started": ts(3), "begin_wh": 0, "seqs": [0, 1],
                 "queue": [{"action": "MeterValues", "payload": {**mv, "connectorId": 3}}]},
    }}}
    link = Link(ctx=Context("CS1", V201, V16, state=json.loads(json.dumps(old))))
    adopted = link.tr.adopt_held(link.ctx)  # type: ignore[attr-defined]
    assert [(d.ref["tx"], d.call.action) for d in adopted] == [
        ("tx-A", "StartTransaction"), ("tx-A", "MeterValues"), ("tx-A", "StopTransaction"), ("tx-B", "MeterValues")]
    assert link.ctx.dirty
    txs = link.ctx.state["v201_v16"]["tx"]
    assert not any("queue" in tx or "start" in tx for tx in txs.values())
    assert [m["action"] for m in txs["tx-C"]["waiting"]] == ["MeterValues"]  # still no token: a translation rule
    assert link.tr.adopt_held(link.ctx) == []  # type: ignore[attr-defined]

    link.queue = [(d.call.action, d.call.payload, d.ref) for d in adopted]
    link.replay()
    sent = [(a, p) for a, p in link.to_csms() if a != "StatusNotification"]
    assert [(a, p.get("transactionId")) for a, p in sent] == [
        ("StartTransaction", None), ("MeterValues", 1), ("StopTransaction", 1), ("MeterValues", 41)]
    assert link.queue == [] and list(txs) == ["tx-B", "tx-C"]


# --- station messages, one row each --------------------------------------------------------------------------

CHARGER_CASES: list[tuple[str, str, dict[str, Any], str | None, dict[str, Any] | None, dict[str, Any]]] = [
    (
        "boot: vendor name cut to 20 characters",
        "BootNotification",
        {
            "reason": "RemoteReset",
            "chargingStation": {
                "vendorName": "V" * 40,
                "model": "M" * 20,
                "serialNumber": "S" * 25,
                "firmwareVersion": "1.2",
                "modem": {"iccid": "8931", "imsi": "2620"},
            },
        },
        "BootNotification",
        {
            "chargePointVendor": "V" * 20,
            "chargePointModel": "M" * 20,
            "chargePointSerialNumber": "S" * 25,
            "firmwareVersion": "1.2",
            "iccid": "8931",
            "imsi": "2620",
        },
        {"currentTime": T0, "interval": 300, "status": "Accepted"},
    ),
    ("heartbeat", "Heartbeat", {}, "Heartbeat", {}, {"currentTime": T0}),
    (
        "meter values without transaction: unit prefix kept, multiplier folded in when 1.6 has no prefix",
        "MeterValues",
        {
            "evseId": 2,
            "meterValue": [
                {
                    "timestamp": T0,
                    "sampledValue": [
                        {
                            "value": 11,
                            "measurand": "Power.Active.Import",
                            "unitOfMeasure": {"unit": "W", "multiplier": 3},
                        },
                        {
                            "value": 16.5,
                            "measurand": "Current.Import",
                            "phase": "L1",
                            "unitOfMeasure": {"unit": "A", "multiplier": -1},
                        },
                        {"value": 3, "measurand": "Energy.Active.Net"},
                    ],
                }
            ],
        },
        "MeterValues",
        {
            "connectorId": 2,
            "meterValue": [
                {
                    "timestamp": T0,
                    "sampledValue": [
                        {"value": "11", "measurand": "Power.Active.Import", "unit": "kW"},
                        {"value": "1.65", "phase": "L1", "measurand": "Current.Import", "unit": "A"},
                    ],
                }
            ],
        },
        {},
    ),
    (
        "signed meter value gets a SignedData twin",
        "MeterValues",
        {
            "evseId": 1,
            "meterValue": [
                {
                    "timestamp": T0,
                    "sampledValue": [
                        {
                            "value": 5,
                            "signedMeterValue": {
                                "signedMeterData": "T0NNRg==",
                                "signingMethod": "",
                                "encodingMethod": "OCMF",
                                "publicKey": "",
                            },
                        }
                    ],
                }
            ],
        },
        "MeterValues",
        {
            "connectorId": 1,
            "meterValue": [
                {"timestamp": T0, "sampledValue": [{"value": "5"}, {"value": "T0NNRg==", "format": "SignedData"}]}
            ],
        },
        {},
    ),
    (
        "data transfer with JSON data goes as a string",
        "DataTransfer",
        {"vendorId": "acme", "messageId": "ping", "data": {"n": 1}},
        "DataTransfer",
        {"vendorId": "acme", "messageId": "ping", "data": '{"n":1}'},
        {"status": "Accepted", "data": "pong"},
    ),
    (
        "firmware status only 2.0.1 has folds into the 1.6 phase",
        "FirmwareStatusNotification",
        {"status": "DownloadScheduled", "requestId": 7},
        "FirmwareStatusNotification",
        {"status": "Downloading"},
        {},
    ),
    (
        "log status without a 1.6 GetLog is a diagnostics status",
        "LogStatusNotification",
        {"status": "UploadFailure", "requestId": 3},
        "DiagnosticsStatusNotification",
        {"status": "UploadFailed"},
        {},
    ),
    (
        "security event",
        "SecurityEventNotification",
        {"type": "FirmwareUpdated", "timestamp": T0, "techInfo": "v2"},
        "SecurityEventNotification",
        {"type": "FirmwareUpdated", "timestamp": T0, "techInfo": "v2"},
        {},
    ),
    (
        "station certificate signing request",
        "SignCertificate",
        {"csr": "-----BEGIN CSR-----", "certificateType": "ChargingStationCertificate"},
        "SignCertificate",
        {"csr": "-----BEGIN CSR-----"},
        {"status": "Accepted"},
    ),
    (
        "V2G certificate signing goes as Plug & Charge DataTransfer",
        "SignCertificate",
        {"csr": "CSR", "certificateType": "V2GCertificate"},
        "DataTransfer",
        {
            "vendorId": PNC_VENDOR,
            "messageId": "SignCertificate",
            "data": '{"csr": "CSR", "certificateType": "V2GCertificate"}',
        },
        {"status": "Rejected"},
    ),
    (
        "a long idToken is cut to the 20 characters of an idTag",
        "Authorize",
        {"idToken": {"idToken": "E" * 30, "type": "eMAID"}},
        "Authorize",
        {"idTag": "E" * 20},
        {"idTokenInfo": {"status": "Accepted"}},
    ),
]


@pytest.mark.parametrize(
    ("action", "payload", "action16", "payload16", "answer"),
    [c[1:] for c in CHARGER_CASES],
    ids=[c[0] for c in CHARGER_CASES],
)
def test_station_message_becomes_its_16_counterpart(
    action: str, payload: dict[str, Any], action16: str, payload16: dict[str, Any], answer: dict[str, Any]
) -> None:
    """Each station message reaches the 1.6 CSMS as the documented 1.6 message, and the answer comes back."""
    link = Link()
    assert link.call(Side.CHARGER, action, payload) == answer
    assert link.to_csms() == [(action16, payload16)]


def test_firmware_status_after_a_16_signed_update_is_a_signed_firmware_status() -> None:
    """After a 1.6 SignedUpdateFirmware, the station's firmware statuses go as SignedFirmwareStatusNotification."""
    link = Link(station=station201({"UpdateFirmware": {"status": "Accepted"}}))
    firmware = {"location": "https://fw/x", "retrieveDateTime": T0, "signingCertificate": "CERT", "signature": "SIG"}
    link.call(Side.CSMS, "SignedUpdateFirmware", {"requestId": 42, "firmware": firmware})
    link.take()
    link.call(Side.CHARGER, "FirmwareStatusNotification", {"status": "SignatureVerified", "requestId": 42})
    assert link.to_csms() == [("SignedFirmwareStatusNotification", {"status": "SignatureVerified", "requestId": 42})]


@pytest.mark.parametrize(("status201", "status16"), [("Uploading", "Uploading"), ("AcceptedCanceled", "Idle")])
def test_log_status_for_a_16_security_get_log_keeps_its_request_id(status201: str, status16: str) -> None:
    """After a 1.6 security GetLog the station's log statuses go as 1.6 LogStatusNotification with the requestId."""
    link = Link(station=station201({"GetLog": {"status": "Accepted"}}))
    link.call(Side.CSMS, "GetLog", {"logType": "SecurityLog", "requestId": 8, "log": {"remoteLocation": "ftp://x/"}})
    link.take()
    link.call(Side.CHARGER, "LogStatusNotification", {"status": status201, "requestId": 8})
    assert link.to_csms() == [("LogStatusNotification", {"status": status16, "requestId": 8})]


def test_plug_and_charge_answer_from_the_csms_is_unwrapped() -> None:
    """A CSMS that handles the Plug & Charge DataTransfer answers with the 2.0.1 response as JSON data."""
    link = Link()
    answer = {"status": "Accepted", "ocspResult": "b2NzcA=="}
    link.csms = lambda action, payload: {"status": "Accepted", "data": json.dumps(answer)}
    ocsp = {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": "a",
        "issuerKeyHash": "b",
        "serialNumber": "c",
        "responderURL": "http://o",
    }
    assert link.call(Side.CHARGER, "GetCertificateStatus", {"ocspRequestData": ocsp}) == answer


LOCAL: list[tuple[str, dict[str, Any]]] = [
    (
        "NotifyEvent",
        {
            "generatedAt": T0,
            "seqNo": 0,
            "eventData": [
                {
                    "eventId": 1,
                    "timestamp": T0,
                    "trigger": "Alerting",
                    "actualValue": "x",
                    "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "EVSE"},
                    "variable": {"name": "Problem"},
                }
            ],
        },
    ),
    (
        "NotifyReport",
        {
            "requestId": 1,
            "generatedAt": T0,
            "seqNo": 0,
            "reportData": [
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                    "variableAttribute": [{"value": "300", "mutability": "ReadOnly"}],
                }
            ],
        },
    ),
    ("NotifyMonitoringReport", {"requestId": 1, "seqNo": 0, "generatedAt": T0}),
    ("NotifyCustomerInformation", {"data": "x", "seqNo": 0, "generatedAt": T0, "requestId": 1}),
    ("NotifyDisplayMessages", {"requestId": 1}),
    ("NotifyChargingLimit", {"chargingLimit": {"chargingLimitSource": "EMS"}}),
    ("ClearedChargingLimit", {"chargingLimitSource": "EMS"}),
    ("NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "DC"}}),
    (
        "NotifyEVChargingSchedule",
        {
            "timeBase": T0,
            "evseId": 1,
            "chargingSchedule": {
                "id": 1,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 1.0}],
            },
        },
    ),
    (
        "ReportChargingProfiles",
        {
            "requestId": 1,
            "chargingLimitSource": "CSO",
            "evseId": 1,
            "chargingProfile": [
                {
                    "id": 1,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "TxDefaultProfile",
                    "chargingProfileKind": "Absolute",
                    "chargingSchedule": [
                        {"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 1.0}]}
                    ],
                }
            ],
        },
    ),
    ("ReservationStatusUpdate", {"reservationId": 1, "reservationUpdateStatus": "Expired"}),
    ("PublishFirmwareStatusNotification", {"status": "Published"}),
]


@pytest.mark.parametrize(("action", "payload"), LOCAL, ids=[a for a, _ in LOCAL])
def test_station_message_without_16_counterpart_is_answered_locally(action: str, payload: dict[str, Any]) -> None:
    """No 1.6 message is sent; the station gets a valid answer (checked in Link.call)."""
    link = Link()
    assert link.call(Side.CHARGER, action, payload) is not None
    assert link.to_csms() == []


def test_plug_and_charge_request_without_a_csms_answer_fails_cleanly() -> None:
    """Get15118EVCertificate through DataTransfer; a CSMS that does not know it leaves the station a Failed."""
    link = Link()
    link.csms = lambda action, payload: {"status": "UnknownVendorId"}
    req = {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install", "exiRequest": "AAAA"}
    assert link.call(Side.CHARGER, "Get15118EVCertificate", req) == {"status": "Failed", "exiResponse": ""}
    assert link.to_csms()[0][1]["messageId"] == "Get15118EVCertificate"


# --- CSMS calls, one row each --------------------------------------------------------------------------------

CSMS_CASES: list[tuple[str, str, dict[str, Any], str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "reset soft",
        "Reset",
        {"type": "Soft"},
        "Reset",
        {"type": "Immediate"},
        {"status": "Scheduled"},
        {"status": "Accepted"},
    ),
    (
        "reset hard",
        "Reset",
        {"type": "Hard"},
        "Reset",
        {"type": "Immediate"},
        {"status": "Rejected"},
        {"status": "Rejected"},
    ),
    (
        "change availability of the station",
        "ChangeAvailability",
        {"connectorId": 0, "type": "Inoperative"},
        "ChangeAvailability",
        {"operationalStatus": "Inoperative"},
        {"status": "Scheduled"},
        {"status": "Scheduled"},
    ),
    (
        "change availability of a connector",
        "ChangeAvailability",
        {"connectorId": 2, "type": "Operative"},
        "ChangeAvailability",
        {"operationalStatus": "Operative", "evse": {"id": 2}},
        {"status": "Accepted"},
        {"status": "Accepted"},
    ),
    (
        "unlock during a transaction fails as 1.6 says it",
        "UnlockConnector",
        {"connectorId": 1},
        "UnlockConnector",
        {"evseId": 1, "connectorId": 1},
        {"status": "OngoingAuthorizedTransaction"},
        {"status": "UnlockFailed"},
    ),
    (
        "trigger diagnostics status",
        "TriggerMessage",
        {"requestedMessage": "DiagnosticsStatusNotification"},
        "TriggerMessage",
        {"requestedMessage": "LogStatusNotification"},
        {"status": "Accepted"},
        {"status": "Accepted"},
    ),
    (
        "trigger status of a connector",
        "TriggerMessage",
        {"requestedMessage": "StatusNotification", "connectorId": 1},
        "TriggerMessage",
        {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}},
        {"status": "NotImplemented"},
        {"status": "NotImplemented"},
    ),
    (
        "extended trigger for the station certificate",
        "ExtendedTriggerMessage",
        {"requestedMessage": "SignChargePointCertificate"},
        "TriggerMessage",
        {"requestedMessage": "SignChargingStationCertificate"},
        {"status": "Accepted"},
        {"status": "Accepted"},
    ),
    ("clear cache", "ClearCache", {}, "ClearCache", {}, {"status": "Accepted"}, {"status": "Accepted"}),
    (
        "station max profile",
        "SetChargingProfile",
        {
            "connectorId": 0,
            "csChargingProfiles": {
                "chargingProfileId": 9,
                "stackLevel": 1,
                "chargingProfilePurpose": "ChargePointMaxProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "startSchedule": T0,
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.5, "numberPhases": 3}],
                },
            },
        },
        "SetChargingProfile",
        {
            "evseId": 0,
            "chargingProfile": {
                "id": 9,
                "stackLevel": 1,
                "chargingProfilePurpose": "ChargingStationMaxProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": [
                    {
                        "id": 9,
                        "chargingRateUnit": "A",
                        "startSchedule": T0,
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.5, "numberPhases": 3}],
                    }
                ],
            },
        },
        {"status": "Accepted"},
        {"status": "Accepted"},
    ),
    (
        "clear profiles by criteria",
        "ClearChargingProfile",
        {"connectorId": 1, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 2},
        "ClearChargingProfile",
        {"chargingProfileCriteria": {"evseId": 1, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 2}},
        {"status": "Unknown"},
        {"status": "Unknown"},
    ),
    (
        "composite schedule",
        "GetCompositeSchedule",
        {"connectorId": 1, "duration": 3600, "chargingRateUnit": "W"},
        "GetCompositeSchedule",
        {"duration": 3600, "evseId": 1, "chargingRateUnit": "W"},
        {
            "status": "Accepted",
            "schedule": {
                "evseId": 1,
                "duration": 3600,
                "scheduleStart": T0,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7360.04}],
            },
        },
        {
            "status": "Accepted",
            "connectorId": 1,
            "scheduleStart": T0,
            "chargingSchedule": {
                "duration": 3600,
                "startSchedule": T0,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7360}],
            },
        },
    ),
    (
        "diagnostics become a diagnostics log",
        "GetDiagnostics",
        {"location": "ftp://logs.example/", "startTime": T0, "retries": 2},
        "GetLog",
        {
            "logType": "DiagnosticsLog",
            "requestId": 1,
            "log": {"remoteLocation": "ftp://logs.example/", "oldestTimestamp": T0},
            "retries": 2,
        },
        {"status": "Accepted", "filename": "diag.zip"},
        {"fileName": "diag.zip"},
    ),
    (
        "security log",
        "GetLog",
        {"logType": "SecurityLog", "requestId": 5, "log": {"remoteLocation": "https://logs.example/"}},
        "GetLog",
        {"logType": "SecurityLog", "requestId": 5, "log": {"remoteLocation": "https://logs.example/"}},
        {"status": "Accepted", "filename": "sec.log"},
        {"status": "Accepted", "filename": "sec.log"},
    ),
    (
        "firmware update gets a request id",
        "UpdateFirmware",
        {"location": "https://fw.example/1.bin", "retrieveDate": T0, "retryInterval": 30},
        "UpdateFirmware",
        {
            "requestId": 1,
            "firmware": {"location": "https://fw.example/1.bin", "retrieveDateTime": T0},
            "retryInterval": 30,
        },
        {"status": "Accepted"},
        {},
    ),
    (
        "local list",
        "SendLocalList",
        {
            "listVersion": 3,
            "updateType": "Full",
            "localAuthorizationList": [
                {"idTag": "T1", "idTagInfo": {"status": "Blocked", "parentIdTag": "G"}},
                {"idTag": "T2"},
            ],
        },
        "SendLocalList",
        {
            "versionNumber": 3,
            "updateType": "Full",
            "localAuthorizationList": [
                {
                    "idToken": {"idToken": "T1", "type": "Central"},
                    "idTokenInfo": {"status": "Blocked", "groupIdToken": {"idToken": "G", "type": "Central"}},
                },
                {"idToken": {"idToken": "T2", "type": "Central"}},
            ],
        },
        {"status": "VersionMismatch"},
        {"status": "VersionMismatch"},
    ),
    (
        "local list version",
        "GetLocalListVersion",
        {},
        "GetLocalListVersion",
        {},
        {"versionNumber": 3},
        {"listVersion": 3},
    ),
    (
        "reserve the station",
        "ReserveNow",
        {"connectorId": 0, "expiryDate": T0, "idTag": "T1", "reservationId": 4},
        "ReserveNow",
        {"id": 4, "expiryDateTime": T0, "idToken": {"idToken": "T1", "type": "Central"}},
        {"status": "Occupied"},
        {"status": "Occupied"},
    ),
    (
        "cancel reservation",
        "CancelReservation",
        {"reservationId": 4},
        "CancelReservation",
        {"reservationId": 4},
        {"status": "Rejected"},
        {"status": "Rejected"},
    ),
    (
        "vendor data transfer",
        "DataTransfer",
        {"vendorId": "acme", "messageId": "x", "data": "y"},
        "DataTransfer",
        {"vendorId": "acme", "messageId": "x", "data": "y"},
        {"status": "Accepted", "data": {"ok": True}},
        {"status": "Accepted", "data": '{"ok":true}'},
    ),
    (
        "Plug & Charge certificate through DataTransfer",
        "DataTransfer",
        {
            "vendorId": PNC_VENDOR,
            "messageId": "CertificateSigned",
            "data": '{"certificateChain": "PEM", "certificateType": "V2GCertificate"}',
        },
        "CertificateSigned",
        {"certificateChain": "PEM", "certificateType": "V2GCertificate"},
        {"status": "Accepted"},
        {"status": "Accepted", "data": '{"status": "Accepted"}'},
    ),
    (
        "station certificate",
        "CertificateSigned",
        {"certificateChain": "PEM"},
        "CertificateSigned",
        {"certificateChain": "PEM", "certificateType": "ChargingStationCertificate"},
        {"status": "Rejected"},
        {"status": "Rejected"},
    ),
    (
        "install a CSMS root",
        "InstallCertificate",
        {"certificateType": "CentralSystemRootCertificate", "certificate": "PEM"},
        "InstallCertificate",
        {"certificateType": "CSMSRootCertificate", "certificate": "PEM"},
        {"status": "Accepted"},
        {"status": "Accepted"},
    ),
    (
        "installed certificate ids",
        "GetInstalledCertificateIds",
        {"certificateType": "ManufacturerRootCertificate"},
        "GetInstalledCertificateIds",
        {"certificateType": ["ManufacturerRootCertificate"]},
        {
            "status": "Accepted",
            "certificateHashDataChain": [
                {
                    "certificateType": "ManufacturerRootCertificate",
                    "certificateHashData": {
                        "hashAlgorithm": "SHA256",
                        "issuerNameHash": "a",
                        "issuerKeyHash": "b",
                        "serialNumber": "c",
                    },
                }
            ],
        },
        {
            "status": "Accepted",
            "certificateHashData": [
                {"hashAlgorithm": "SHA256", "issuerNameHash": "a", "issuerKeyHash": "b", "serialNumber": "c"}
            ],
        },
    ),
    (
        "delete certificate",
        "DeleteCertificate",
        {
            "certificateHashData": {
                "hashAlgorithm": "SHA256",
                "issuerNameHash": "a",
                "issuerKeyHash": "b",
                "serialNumber": "c",
            }
        },
        "DeleteCertificate",
        {
            "certificateHashData": {
                "hashAlgorithm": "SHA256",
                "issuerNameHash": "a",
                "issuerKeyHash": "b",
                "serialNumber": "c",
            }
        },
        {"status": "NotFound"},
        {"status": "NotFound"},
    ),
]


@pytest.mark.parametrize(
    ("action16", "payload16", "action", "payload", "answer", "result16"),
    [c[1:] for c in CSMS_CASES],
    ids=[c[0] for c in CSMS_CASES],
)
def test_csms_call_becomes_its_201_counterpart(
    action16: str,
    payload16: dict[str, Any],
    action: str,
    payload: dict[str, Any],
    answer: dict[str, Any],
    result16: dict[str, Any],
) -> None:
    """Each 1.6 CSMS call reaches the station as the documented 2.0.1 call; its answer goes back as 1.6."""
    link = Link(station=station201({action: answer}))
    assert link.call(Side.CSMS, action16, payload16) == result16
    assert [(a, p) for s, a, p in link.take()] == [(action, payload)]


# --- remote start / stop ---------------------------------------------------------------------------------------


def test_remote_start_and_stop_map_ids_both_ways() -> None:
    """RemoteStart gets a remoteStartId and the token type the station showed; RemoteStop maps int -> string."""
    link = Link(
        station=station201(
            {"RequestStartTransaction": {"status": "Accepted"}, "RequestStopTransaction": {"status": "Accepted"}}
        )
    )
    link.call(Side.CHARGER, "Authorize", {"idToken": TOKEN})
    link.take()
    assert link.call(Side.CSMS, "RemoteStartTransaction", {"connectorId": 1, "idTag": "04A2B3C4D5"}) == {
        "status": "Accepted"
    }
    ((_, action, request),) = link.take()
    assert action == "RequestStartTransaction"
    assert request["evseId"] == 1 and request["idToken"] == TOKEN and isinstance(request["remoteStartId"], int)
    started = tx_event(
        "Started", 0, 1, "RemoteStart", idToken=TOKEN, evse={"id": 1}, info={"remoteStartId": request["remoteStartId"]}
    )
    link.call(Side.CHARGER, "TransactionEvent", started)
    assert "StartTransaction" in dict(link.to_csms())  # the CSMS numbers it 1
    assert link.call(Side.CSMS, "RemoteStopTransaction", {"transactionId": 1}) == {"status": "Accepted"}
    assert [(a, p) for s, a, p in link.take()] == [("RequestStopTransaction", {"transactionId": "tx-A"})]
    assert link.call(Side.CSMS, "RemoteStopTransaction", {"transactionId": 99}) == {"status": "Rejected"}
    assert link.take() == []


def test_remote_start_for_an_unseen_tag_uses_the_configured_type_and_converts_the_profile() -> None:
    """A tag the station never showed gets remote_token_type; the 1.6 TxProfile becomes a 2.0.1 one."""
    link = Link(
        tr=V201V16({"remote_token_type": "Local"}),
        station=station201({"RequestStartTransaction": {"status": "Rejected"}}),
    )
    profile = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000}]},
    }
    assert link.call(Side.CSMS, "RemoteStartTransaction", {"idTag": "NEW", "chargingProfile": profile}) == {
        "status": "Rejected"
    }
    ((_, _, request),) = link.take()
    assert request["idToken"] == {"idToken": "NEW", "type": "Local"} and "evseId" not in request
    assert request["chargingProfile"]["chargingProfilePurpose"] == "TxProfile"


def test_tx_profile_needs_a_transaction() -> None:
    """A TxProfile for a connector without transaction is Rejected by the gateway; with one it names the string id."""
    link = Link(station=station201({"SetChargingProfile": {"status": "Accepted"}}))
    profile = {
        "chargingProfileId": 2,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}]},
    }
    assert link.call(Side.CSMS, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": profile}) == {
        "status": "Rejected"
    }
    link.call(Side.CHARGER, "TransactionEvent", tx_event("Started", 0, 1, "Authorized", idToken=TOKEN, evse={"id": 1}))
    link.take()
    tx_profile = {**profile, "transactionId": 1}
    assert link.call(Side.CSMS, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": tx_profile}) == {
        "status": "Accepted"
    }
    ((_, _, request),) = link.take()
    assert request["chargingProfile"]["transactionId"] == "tx-A"


def test_trigger_meter_values_during_a_transaction_asks_for_a_transaction_event() -> None:
    """1.6 expects transaction meter values with transactionId: the station is asked for a TransactionEvent."""
    link = Link(station=station201({"TriggerMessage": {"status": "Accepted"}}))
    link.call(Side.CHARGER, "TransactionEvent", tx_event("Started", 0, 1, "Authorized", idToken=TOKEN, evse={"id": 1}))
    link.take()
    link.call(Side.CSMS, "TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1})
    assert link.take()[0][2]["requestedMessage"] == "TransactionEvent"


# --- configuration -----------------------------------------------------------------------------------------


def test_get_configuration_reads_variables_and_reports_unknown_keys() -> None:
    """Known keys come back with their values; readonly comes from the station's NotifyReport; unknown keys listed."""
    answer = {
        "getVariableResult": [
            {
                "attributeStatus": "Accepted",
                "attributeValue": "300",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
            },
            {
                "attributeStatus": "UnknownComponent",
                "component": {"name": "OCPP16LegacyCtrlr"},
                "variable": {"name": "VendorThing"},
            },
        ]
    }
    link = Link(station=station201({"GetVariables": answer}))
    link.call(Side.CHARGER, "NotifyReport", LOCAL[1][1])
    result = link.call(Side.CSMS, "GetConfiguration", {"key": ["HeartbeatInterval", "VendorThing"]})
    assert result == {
        "configurationKey": [{"key": "HeartbeatInterval", "readonly": True, "value": "300"}],
        "unknownKey": ["VendorThing"],
    }
    ((_, _, request),) = link.take()
    assert request["getVariableData"] == [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
        {"component": {"name": "OCPP16LegacyCtrlr"}, "variable": {"name": "VendorThing"}},
    ]


def test_get_configuration_of_all_keys_asks_in_chunks() -> None:
    """No keys: every standard key of the table, asked get_variables_chunk at a time."""

    def unknown(action: str, payload: dict[str, Any]) -> dict[str, Any]:
        results = [{"attributeStatus": "UnknownVariable", **d} for d in payload["getVariableData"]]
        return {"getVariableResult": results}

    link = Link(tr=V201V16({"get_variables_chunk": 5}), station=unknown)
    assert link.call(Side.CSMS, "GetConfiguration", {}) == {}
    calls = link.take()
    assert len(calls) > 1 and all(len(p["getVariableData"]) <= 5 for _, _, p in calls)


@pytest.mark.parametrize(
    ("attribute_status", "status16"),
    [
        ("Accepted", "Accepted"),
        ("RebootRequired", "RebootRequired"),
        ("UnknownVariable", "NotSupported"),
        ("Rejected", "Rejected"),
    ],
)
def test_change_configuration_sets_the_variable(attribute_status: str, status16: str) -> None:
    """ChangeConfiguration becomes SetVariables on the table's variable; the attribute status maps back."""
    answer = {
        "setVariableResult": [
            {
                "attributeStatus": attribute_status,
                "component": {"name": "SampledDataCtrlr"},
                "variable": {"name": "TxUpdatedInterval"},
            }
        ]
    }
    link = Link(station=station201({"SetVariables": answer}))
    assert link.call(Side.CSMS, "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "60"}) == {
        "status": status16
    }
    ((_, _, request),) = link.take()
    assert request == {
        "setVariableData": [
            {
                "attributeValue": "60",
                "component": {"name": "SampledDataCtrlr"},
                "variable": {"name": "TxUpdatedInterval"},
            }
        ]
    }


# --- conformance and the composed pairs ------------------------------------------------------------------------


def test_coverage_has_one_row_per_message_each_side_can_send() -> None:
    """Every 2.0.1 station message and every 1.6 CSMS call is listed; none of them is unsupported."""
    rows = V201V16().coverage()
    keys = [(r.origin, r.action) for r in rows]
    assert len(keys) == len(set(keys))
    assert {a for s, a in keys if s is Side.CHARGER} >= {"TransactionEvent", "NotifyReport", "StatusNotification"}
    assert {a for s, a in keys if s is Side.CSMS} >= {"RemoteStartTransaction", "GetConfiguration", "GetDiagnostics"}
    assert all(r.support is not Support.NOT_SUPPORTED for r in rows)
    assert {r.action for r in rows if r.support is Support.LOCAL} == {a for a, _ in LOCAL}


def test_a_csms_only_message_from_the_station_is_refused() -> None:
    """A message the station may not send (a CSMS call) is refused NotSupported."""
    with pytest.raises(Refuse) as caught:
        V201V16().handle_call(Side.CHARGER, Call("x", "Reset", {"type": "Immediate"}), Context("CS1", V201, V16))
    assert caught.value.kind is ErrorKind.NOT_SUPPORTED


def _drive_composed(
    origin: Side, action: str, payload: dict[str, Any], ctx: Context, csms: Answer
) -> list[tuple[str, dict[str, Any]]]:
    tr = registry.translator_for(V21, V16)
    assert tr is not None
    valid(V21 if origin is Side.CHARGER else V16, action, payload)
    handler = tr.handle_call(origin, Call("c1", action, payload), ctx)
    sent: list[tuple[str, dict[str, Any]]] = []
    value = None
    while True:
        try:
            step = handler.send(value)
        except StopIteration as stop:
            if stop.value is not None:
                valid(V21, action, stop.value, response=True)
            return sent
        value = None
        if isinstance(step, Defer):  # nothing is queued ahead of it here: it goes at once
            deferring = cast(Deferring, tr)
            resolved = deferring.resolve(step.ref, step.call.action, step.call.payload, ctx)
            assert resolved is not None and resolved is not DROP
            valid(V16, step.call.action, resolved)
            sent.append((step.call.action, resolved))
            value = csms(step.call.action, resolved)
            settlement = deferring.settled(step.ref, step.call.action, value, None, ctx)
            sent += [(n.action, n.payload) for n in settlement.notify]
            continue
        assert isinstance(step, OutCall | Notify)
        valid(V16, step.action, step.payload)
        sent.append((step.action, step.payload))
        if isinstance(step, OutCall):
            value = csms(step.action, step.payload)


def test_21_station_reaches_a_16_csms_through_both_steps() -> None:
    """A 2.1 session (with 2.1-only fields and values) arrives at the 1.6 CSMS as valid 1.6 messages."""
    ctx = Context("CS21", V21, V16)
    csms = csms16()
    token21 = {"idToken": "VIN12345678901234567", "type": "VIN"}
    started = {
        **tx_event(
            "Started",
            0,
            1,
            "Authorized",
            idToken=token21,
            evse={"id": 1},
            meterValue=energy(200, "Transaction.Begin", 1),
        ),
        "preconditioningStatus": "Unknown",
    }
    sent = _drive_composed(Side.CHARGER, "TransactionEvent", started, ctx, csms)
    assert sent[0] == (
        "StartTransaction",
        {"connectorId": 1, "idTag": "VIN12345678901234567", "meterStart": 200, "timestamp": ts(1)},
    )
    ended = tx_event(
        "Ended",
        1,
        20,
        "SoCLimitReached",
        info={"stoppedReason": "ReqEnergyTransferRejected"},
        meterValue=energy(9000, "Transaction.End", 20),
    )
    sent = _drive_composed(Side.CHARGER, "TransactionEvent", ended, ctx, csms)
    stop = dict(sent)["StopTransaction"]
    assert (stop["transactionId"], stop["meterStop"], stop["reason"]) == (1, 9000, "Other")


def test_21_only_message_from_a_21_station_behind_a_16_csms_is_refused() -> None:
    """NotifyDERAlarm has no 2.0.1 (so no 1.6) counterpart: NotSupported, nothing sent."""
    tr = registry.translator_for(V21, V16)
    assert tr is not None
    alarm = {"controlType": "FreqDroop", "timestamp": T0}
    valid(V21, "NotifyDERAlarm", alarm)
    with pytest.raises(Refuse) as caught:
        next(tr.handle_call(Side.CHARGER, Call("d1", "NotifyDERAlarm", alarm), Context("CS21", V21, V16)))
    assert caught.value.kind is ErrorKind.NOT_SUPPORTED


def test_only_a_changed_status_saves_the_state() -> None:
    """A StatusNotification repeating the connector's status leaves the state unsaved; a new status saves it."""
    link = Link()
    link.call(Side.CHARGER, "StatusNotification", status(0, "Available"))
    assert link.ctx.dirty
    link.ctx.dirty = False
    link.call(Side.CHARGER, "StatusNotification", status(1, "Available"))
    assert not link.ctx.dirty
    link.call(Side.CHARGER, "StatusNotification", status(2, "Occupied"))
    assert link.ctx.dirty
    assert link.sent[-1] == (Side.CSMS, "StatusNotification",
                             {"connectorId": 1, "status": "Preparing", "errorCode": "NoError", "timestamp": ts(2)})
