"""Route rules and transaction ownership, without sockets: the rules a hot route change relies on."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import Route, route_problems
from gateway.connection.charger import migrate_state, primary_state
from gateway.connection.ledger import TransactionLedger, open_transactions
from gateway.ocppj import Call, Version
from gateway.routing import RouteChange, RouteChangeState, RouteError, check_route

CSMS = {"legacy": {}, "new": {}}


@pytest.mark.parametrize(("route", "problem"), [
    (Route(primary="legacy"), None),
    (Route(primary="legacy", shadow="new"), None),
    (Route(primary="legacy", shadow="legacy"), "every CALL twice"),
    (Route(primary="nowhere"), "no csms named 'nowhere' (the primary)"),
    (Route(primary="legacy", shadow="nowhere"), "no csms named 'nowhere' (the shadow)"),
])
def test_check_route(route: Route, problem: str | None) -> None:
    """A route names configured CSMSs, and its shadow is not its primary."""
    if problem is None:
        check_route(route, CSMS)
    else:
        with pytest.raises(RouteError, match=problem.replace("(", r"\(").replace(")", r"\)")):
            check_route(route, CSMS)


def test_config_refuses_a_shadow_that_is_the_primary() -> None:
    """check-config names the charger whose shadow is its primary, and why that is refused."""
    problems = route_problems({"csms": CSMS, "default_route": {"primary": "legacy"},
                               "chargers": {"CP1": {"route": {"primary": "new", "shadow": "new"}}}})
    assert len(problems) == 1
    assert problems[0].startswith("chargers.CP1.route.shadow: the shadow is the primary 'new'")


def test_route_change_round_trips_through_the_store() -> None:
    """A change is stored as plain JSON and read back equal."""
    change = RouteChange("CP1", Route(primary="new"), Route(primary="new"), Route(primary="legacy"),
                         RouteChangeState.PENDING, "waiting", ("7",), "idle", 1e9, True, "plan", 1.0, None, 3)
    assert RouteChange.from_dict(change.as_dict()) == change
    settled = change.settle(RouteChangeState.APPLIED)
    assert settled.settled and settled.decided_at is not None and not change.settled


def call(action: str, payload: dict[str, Any], uid: str = "u1") -> Call:
    return Call(uid, action, payload)


def test_v16_transactions_belong_to_the_csms_that_answered_their_start() -> None:
    """1.6: the StartTransaction's answer names the id; updates and the end go to that CSMS, whoever is primary."""
    state: dict[str, Any] = {}
    ledger = TransactionLedger(state, Version.V16)
    assert ledger.route(call("StartTransaction", {"connectorId": 1}, "s1"), "legacy", "new") == ("legacy", True)
    ledger.answered("s1", [3, "s1", {"transactionId": 42, "idTagInfo": {"status": "Accepted"}}])
    assert state["transactions"] == {"42": {"owner": "legacy", "shadow": "new"}}
    assert ledger.open_for("legacy") == ["42"] and ledger.shadow_copies("new") == ["42"]
    steps = [
        (call("MeterValues", {"transactionId": 42}), "new", None, ("legacy", False)),
        (call("MeterValues", {"connectorId": 1}), "new", None, ("new", True)),
        (call("Heartbeat", {}), "new", None, ("new", True)),
        (call("MeterValues", {"transactionId": 42}), "new", "new", ("legacy", True)),
        (call("StopTransaction", {"transactionId": 7}), "new", None, ("new", False)),  # never seen: the primary's
        (call("StopTransaction", {"transactionId": 42}), "new", None, ("legacy", False)),
        (call("MeterValues", {"transactionId": 42}), "new", None, ("new", False)),  # ended: nobody owns it now
    ]
    for frame, primary, shadow, expected in steps:
        assert ledger.route(frame, primary, shadow) == expected, frame
    assert open_transactions(state, "legacy") == []


def test_v16_start_refused_by_the_csms_opens_nothing() -> None:
    """A StartTransaction answered with a CALLERROR names no transaction."""
    ledger = TransactionLedger({}, Version.V16)
    ledger.route(call("StartTransaction", {"connectorId": 1}, "s1"), "legacy", None)
    ledger.answered("s1", [4, "s1", "InternalError", "", {}])
    assert ledger.book == {} and ledger.starts == {}


def test_v201_transactions_belong_to_the_primary_of_their_first_event() -> None:
    """2.x: the first event of a transaction fixes its owner; Ended goes to the owner and closes it."""
    state: dict[str, Any] = {}
    ledger = TransactionLedger(state, Version.V201)

    def event(kind: str, tx: str = "T1") -> Call:
        return call("TransactionEvent", {"eventType": kind, "transactionInfo": {"transactionId": tx}})

    assert ledger.route(event("Started"), "legacy", None) == ("legacy", False)
    assert ledger.route(event("Updated"), "new", "legacy") == ("legacy", False)  # the shadow never saw it start
    assert ledger.route(event("Started", "T2"), "new", "legacy") == ("new", True)
    assert ledger.open_for("legacy") == ["T1"] and ledger.open_for("new") == ["T2"]
    assert ledger.route(event("Ended"), "new", None) == ("legacy", False)
    assert ledger.route(event("Ended", "T9"), "new", None) == ("new", False)  # unknown Ended opens nothing
    assert list(state["transactions"]) == ["T2"] and ledger.take_changed() and not ledger.take_changed()


def test_state_saved_before_per_csms_state_moves_under_its_primary() -> None:
    """Translator state saved at the top level belongs to the primary; charger-wide keys stay where they are."""
    state: dict[str, Any] = {"v16_v201": {"next_tx": 5}, "charger": {"model": "One"}, "shadow": {"new": {}},
                             "boot": {"chargePointModel": "One"}}
    migrate_state(state, "legacy")
    assert state == {"primary": {"legacy": {"v16_v201": {"next_tx": 5}, "charger": {"model": "One"}}},
                     "shadow": {"new": {}}, "boot": {"chargePointModel": "One"}}
    migrate_state(state, "new")  # once only
    assert primary_state(state, "legacy") == {"v16_v201": {"next_tx": 5}, "charger": {"model": "One"}}
    assert primary_state(state, "new") == {} and set(state["primary"]) == {"legacy", "new"}
