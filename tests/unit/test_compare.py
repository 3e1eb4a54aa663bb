"""Semantic comparison of two CSMSs' answers: one row per rule, then the tallies and readiness."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.compare import (
    RULES,
    ChargerComparisons,
    Difference,
    compare_answers,
    outcome,
    readiness,
)


def ok(payload: dict[str, Any]) -> list[Any]:
    return [3, "u1", payload]


def err(code: str, description: str = "") -> list[Any]:
    return [4, "u1", code, description, {}]


T0 = 1_767_261_600.0  # 2026-01-01T10:00:00Z

# (rule, action, primary answer, shadow answer, differences as (path, kind), shadow answered this long after)
CASES: list[tuple[str, str, Any, Any, list[tuple[str, str]], float]] = [
    ("equal payloads agree", "Heartbeat",
     ok({"currentTime": "2026-01-01T10:00:00Z"}), ok({"currentTime": "2026-01-01T10:00:00Z"}), [], 0),
    ("a different status is a status difference", "Authorize",
     ok({"idTagInfo": {"status": "Accepted"}}), ok({"idTagInfo": {"status": "Invalid"}}),
     [("idTagInfo.status", "status")], 0),
    ("a ...Status field is a status too", "Authorize",
     ok({"idTokenInfo": {"status": "Accepted"}, "certificateStatus": "Accepted"}),
     ok({"idTokenInfo": {"status": "Accepted"}, "certificateStatus": "CertificateExpired"}),
     [("certificateStatus", "status")], 0),
    ("any other field is a value difference", "DataTransfer",
     ok({"status": "Accepted", "data": "x"}), ok({"status": "Accepted", "data": "y"}), [("data", "value")], 0),
    ("a field only the primary has is missing", "Authorize",
     ok({"idTagInfo": {"status": "Accepted", "parentIdTag": "P"}}), ok({"idTagInfo": {"status": "Accepted"}}),
     [("idTagInfo.parentIdTag", "missing")], 0),
    ("a field only the shadow has is extra", "Authorize",
     ok({"idTagInfo": {"status": "Accepted"}}), ok({"idTagInfo": {"status": "Accepted", "parentIdTag": "P"}}),
     [("idTagInfo.parentIdTag", "extra")], 0),
    ("absent idTagInfo on StopTransaction means Accepted", "StopTransaction",
     ok({}), ok({"idTagInfo": {"status": "Accepted"}}), [], 0),
    ("absent idTagInfo is still not Blocked", "StopTransaction",
     ok({}), ok({"idTagInfo": {"status": "Blocked"}}), [("idTagInfo.status", "status")], 0),
    ("the default works the other way round too", "StopTransaction",
     ok({"idTagInfo": {"status": "Accepted"}}), ok({}), [], 0),
    ("absent chargingPriority means 0", "Authorize",
     ok({"idTokenInfo": {"status": "Accepted"}}), ok({"idTokenInfo": {"status": "Accepted", "chargingPriority": 0}}),
     [], 0),
    ("a chargingPriority other than the default differs", "Authorize",
     ok({"idTokenInfo": {"status": "Accepted"}}), ok({"idTokenInfo": {"status": "Accepted", "chargingPriority": 5}}),
     [("idTokenInfo.chargingPriority", "value")], 0),
    ("transactionIds are compared by role, not value", "StartTransaction",
     ok({"transactionId": 17, "idTagInfo": {"status": "Accepted"}}),
     ok({"transactionId": 500, "idTagInfo": {"status": "Accepted"}}), [], 0),
    ("a transactionId must still be there", "StartTransaction",
     ok({"transactionId": 17, "idTagInfo": {"status": "Accepted"}}), ok({"idTagInfo": {"status": "Accepted"}}),
     [("transactionId", "missing")], 0),
    ("a transactionId of another type differs", "StartTransaction",
     ok({"transactionId": 17, "idTagInfo": {"status": "Accepted"}}),
     ok({"transactionId": "17", "idTagInfo": {"status": "Accepted"}}), [("transactionId", "value")], 0),
    ("currentTime within the tolerance agrees", "BootNotification",
     ok({"currentTime": "2026-01-01T10:00:00Z", "interval": 300, "status": "Accepted"}),
     ok({"currentTime": "2026-01-01T10:01:00.500Z", "interval": 300, "status": "Accepted"}), [], 0),
    ("currentTime far off differs", "Heartbeat",
     ok({"currentTime": "2026-01-01T10:00:00Z"}), ok({"currentTime": "2026-01-01T12:00:00Z"}),
     [("currentTime", "value")], 0),
    ("currentTime is taken relative to when each answer came (replay)", "Heartbeat",
     ok({"currentTime": "2026-01-01T10:00:00Z"}), ok({"currentTime": "2026-01-02T10:00:03Z"}), [], 86_400),
    ("an interval within the tolerance agrees", "BootNotification",
     ok({"currentTime": "2026-01-01T10:00:00Z", "interval": 300, "status": "Accepted"}),
     ok({"currentTime": "2026-01-01T10:00:00Z", "interval": 60, "status": "Accepted"}), [], 0),
    ("an interval far off differs", "BootNotification",
     ok({"currentTime": "2026-01-01T10:00:00Z", "interval": 300, "status": "Accepted"}),
     ok({"currentTime": "2026-01-01T10:00:00Z", "interval": 3600, "status": "Accepted"}),
     [("interval", "value")], 0),
    ("customData and statusInfo are ignored", "BootNotification",
     ok({"currentTime": "2026-01-01T10:00:00Z", "interval": 300, "status": "Accepted",
         "statusInfo": {"reasonCode": "A"}}),
     ok({"currentTime": "2026-01-01T10:00:00Z", "interval": 300, "status": "Accepted",
         "customData": {"vendorId": "x"}}), [], 0),
    ("a CALLERROR against a result is an error", "Authorize",
     ok({"idTagInfo": {"status": "Accepted"}}), err("InternalError"), [("$", "error")], 0),
    ("two CALLERRORs with the same code agree", "Authorize", err("NotSupported", "a"), err("NotSupported", "b"), [], 0),
    ("two CALLERRORs with other codes differ", "Authorize",
     err("NotSupported"), err("InternalError"), [("errorCode", "error")], 0),
    ("no answer is a timeout", "Authorize", ok({"idTagInfo": {"status": "Accepted"}}), None, [("$", "timeout")], 0),
    ("lists compare item by item", "DataTransfer",
     ok({"status": "Accepted", "data": [1, 2]}), ok({"status": "Accepted", "data": [1, 3, 4]}),
     [("data[1]", "value"), ("data[2]", "extra")], 0),
    ("true is not 1", "DataTransfer",
     ok({"status": "Accepted", "data": True}), ok({"status": "Accepted", "data": 1}), [("data", "value")], 0),
]


@pytest.mark.parametrize(("rule", "action", "primary", "shadow", "expected", "later"), CASES,
                         ids=[c[0] for c in CASES])
def test_comparison_rule(rule: str, action: str, primary: Any, shadow: Any, expected: list[tuple[str, str]],
                         later: float) -> None:
    """Each rule of the comparison, as a row: two answers in, the differences (path, kind) out."""
    found = compare_answers(action, primary, shadow, primary_at=T0, shadow_at=T0 + later)
    assert [(d.path, d.kind) for d in found] == expected


def test_every_rule_in_the_table_names_a_known_kind_of_rule() -> None:
    """The rule table holds only rule kinds the comparison reads (a typo would silently do nothing)."""
    known = {"ignore", "by_role", "clock", "within", "defaults"}
    assert all(set(rules) <= known for rules in RULES.values())


def test_a_difference_carries_both_values() -> None:
    """A difference says what each side answered."""
    found = compare_answers("Authorize", ok({"idTagInfo": {"status": "Accepted"}}),
                            ok({"idTagInfo": {"status": "Invalid"}}))
    assert found == [Difference("idTagInfo.status", "Accepted", "Invalid", "status")]


@pytest.mark.parametrize(("primary", "shadow", "word"), [
    (ok({}), ok({}), "match"),
    (ok({"status": "A"}), ok({"status": "B"}), "differ"),
    (ok({"status": "A"}), err("InternalError"), "shadow_error"),
    (ok({"status": "A"}), None, "shadow_error"),
    (err("InternalError"), ok({"status": "A"}), "primary_error"),
])
def test_outcome_keeps_the_metrics_words(primary: Any, shadow: Any, word: str) -> None:
    """The existing metric's outcomes (match, differ, shadow_error, primary_error) still come out."""
    assert outcome(primary, shadow, compare_answers("DataTransfer", primary, shadow)) == word


def _exchange(book: ChargerComparisons, ts: float, action: str = "Heartbeat", differ: str | None = None) -> None:
    diffs = [Difference("x", 1, 2, differ)] if differ else []  # type: ignore[arg-type]
    book.record(ts, "new", action, f"u{ts}", {"a": 1}, ok({}), ok({}), diffs)


def test_tallies_and_ring_survive_a_snapshot() -> None:
    """Compared/agreed/differed per action and the kept differing exchanges come back from the store's JSON."""
    book = ChargerComparisons("CP1", kept=2)
    for i in range(5):
        _exchange(book, i, "Authorize", differ="status" if i % 2 else None)
    restored = ChargerComparisons.restore(book.snapshot(), kept=2)
    assert restored.targets["new"].by_action["Authorize"].as_dict() == {"compared": 5, "agreed": 3, "differed": 2}
    assert [d["ts"] for d in restored.latest()] == [1, 3]
    assert restored.latest(limit=1)[0]["ts"] == 3
    assert restored.latest(action="Heartbeat") == []


def test_ready_after_enough_clean_exchanges() -> None:
    """Ready once ready_after exchanges were compared with no blocking difference among the latest of them."""
    book = ChargerComparisons("CP1")
    assert readiness(book, "new", 3) == {"ready": False, "reasons": [
        "no exchange has been compared by new yet: give the charger a shadow route or run ocpp-gateway replay"]}
    _exchange(book, 1)
    _exchange(book, 2)
    assert readiness(book, "new", 3)["reasons"] == ["2 of 3 exchanges compared"]
    _exchange(book, 3)
    assert readiness(book, "new", 3) == {"ready": True, "reasons": []}


@pytest.mark.parametrize(("kind", "blocks"), [
    ("status", True), ("error", True), ("missing", True), ("timeout", True), ("value", False), ("extra", False),
])
def test_which_kinds_hold_a_charger_back(kind: str, blocks: bool) -> None:
    """status, error, missing and timeout differences reset readiness; value and extra ones are only listed."""
    book = ChargerComparisons("CP1")
    for i in range(3):
        _exchange(book, i)
    _exchange(book, 3, "Authorize", differ=kind)
    state = readiness(book, "new", 3)
    assert state["ready"] is not blocks
    if blocks:
        assert state["reasons"] == [f"Authorize differed ({kind} at x) 0 exchange(s) ago; 3 clean exchanges needed "
                                    "since"]
