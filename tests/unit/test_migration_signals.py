"""Reading a wave's signals from message-log records: shadow comparisons, CSMS answers, Rejected boots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from gateway.app import Gateway
from gateway.compare import Answer, ChargerComparisons, Difference
from gateway.config import GatewayConfig
from gateway.migration.gates import ChargerSignals
from gateway.migration.target import primary_signals
from gateway.store import iso_utc


def rec(ts: float, peer: str, mtype: str, uid: str, action: str | None, frame: list[Any],
        direction: str = "in") -> dict[str, Any]:
    payload = frame[2] if mtype == "CALLRESULT" else None
    return {"ts": iso_utc(ts), "peer": peer, "direction": direction, "message_type": mtype, "unique_id": uid,
            "action": action, "frame": orjson.dumps(frame).decode(), "payload": payload}


ACCEPTED = [3, "1", {"status": "Accepted", "currentTime": "t", "interval": 300}]
REJECTED = [3, "2", {"status": "Rejected", "currentTime": "t", "interval": 300}]
LOG = [
    rec(100, "charger", "CALL", "1", "BootNotification", [2, "1", "BootNotification", {}]),
    rec(100, "csms", "CALLRESULT", "1", "BootNotification", ACCEPTED),
    rec(100, "shadow:new", "CALLRESULT", "1", "BootNotification", ACCEPTED),
    rec(101, "csms", "CALLRESULT", "2", "Authorize", [3, "2", {"idTagInfo": {"status": "Accepted"}}]),
    rec(101, "shadow:new", "CALLRESULT", "2", "Authorize", [3, "2", {"idTagInfo": {"status": "Invalid"}}]),
    rec(102, "csms", "CALLRESULT", "3", "Heartbeat", [3, "3", {"currentTime": "t"}]),  # the shadow never answered
    rec(103, "csms", "CALLRESULT", "4", "Heartbeat", [3, "4", {"currentTime": "t"}], direction="out"),
    rec(200, "csms", "CALLRESULT", "5", "BootNotification", REJECTED),
    rec(201, "csms", "CALLERROR", "6", "Heartbeat", [4, "6", "InternalError", "", {}]),
    rec(202, "shadow:other", "CALLRESULT", "3", "Heartbeat", [3, "3", {"currentTime": "t"}]),
]


def test_plan_gates_read_the_estates_field_by_field_tallies(tmp_path: Path) -> None:
    """A wave's comparison gate counts what gateway.compare tallied for the charger against that shadow CSMS."""
    config = GatewayConfig.model_validate({
        "store": f"sqlite:///{tmp_path / 'gw.db'}",
        "csms": {"legacy": {"url": "ws://127.0.0.1:1/ocpp", "ocpp": "1.6"},
                 "new": {"url": "ws://127.0.0.1:2/ocpp", "ocpp": "2.0.1"}},
        "chargers": {"CP1": {"route": {"primary": "legacy", "shadow": "new"}}},
    })
    gw = Gateway(config)
    kept = gw.comparisons["CP1"] = ChargerComparisons("CP1")
    same: Answer = [3, "x", {"status": "Accepted"}]
    kept.record(1.0, "new", "BootNotification", "1", {}, same, same, [])
    kept.record(2.0, "new", "Authorize", "2", {}, same, same,
                [Difference("idTagInfo.status", "Accepted", "Invalid", "status")])
    assert gw.shadow_tally("CP1", "new") == (2, 1)
    assert gw.shadow_tally("CP1", "other") == (0, 0)
    assert gw.shadow_tally("CP9", "new") == (0, 0)


def test_primary_signals_count_only_answers_from_the_primary_since_the_move() -> None:
    """Answers, CALLERRORs and Rejected boots received from the primary at or after the move."""
    assert primary_signals(LOG, 0) == (5, 1, 1)
    assert primary_signals(LOG, 150) == (2, 1, 1)
    assert primary_signals(LOG, 201.5) == (0, 0, 0)


def test_signals_add_up_across_looks() -> None:
    """Counts from successive looks add up; the link state is the latest look's."""
    first = ChargerSignals(1, 0, 3, 1, 1, True)
    assert first.plus(ChargerSignals(0, 1, 2, 0, 0, False)) == ChargerSignals(1, 1, 5, 1, 1, False)
