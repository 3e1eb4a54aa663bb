"""Gate evaluation: when a wave may move, and when a moved wave fails."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.migration.gates import ChargerSignals, health, readiness
from gateway.migration.plan import Gates

S = ChargerSignals


@pytest.mark.parametrize(("gates", "signals", "ok", "reasons"), [
    ({}, {"A": S(), "B": S()}, True, []),
    ({"min_compared": 10}, {"A": S(compared=10), "B": S(compared=12)}, True, []),
    ({"min_compared": 10}, {"A": S(compared=10), "B": S(compared=9)}, False,
     ["1 charger(s) have fewer than 10 compared exchanges: B"]),
    ({"max_disagreement": 0.1}, {"A": S(compared=10, differed=1), "B": S(compared=10, differed=1)}, True, []),
    ({"max_disagreement": 0.1}, {"A": S(compared=10, differed=3), "B": S(compared=10)}, False,
     ["disagreement 15.0% (3/20) is above 10.0%"]),
    ({"max_disagreement": 0.0}, {"A": S()}, True, []),  # nothing compared, nothing disagreed
    ({"min_compared": 1}, {f"C{i}": S() for i in range(7)}, False,
     ["7 charger(s) have fewer than 1 compared exchanges: C0, C1, C2, C3, C4 and 2 more"]),
])
def test_readiness(gates: dict[str, Any], signals: dict[str, ChargerSignals], ok: bool, reasons: list[str]) -> None:
    """A wave is ready when each charger was compared enough and the wave agreed enough."""
    result = readiness(Gates(**gates), signals)
    assert (result.ok, result.reasons) == (ok, reasons)


@pytest.mark.parametrize(("gates", "signals", "connect_failures", "ok", "reasons"), [
    ({}, {"A": S(answers=10), "B": S(answers=5)}, 0, True, []),
    ({}, {"A": S(answers=10, rejected_boots=1)}, 0, False, ["1 Rejected boot(s) (limit 0), from A"]),
    ({"max_rejected_boots": 2}, {"A": S(rejected_boots=1), "B": S(rejected_boots=1)}, 0, True, []),
    ({"max_callerror_rate": 0.1}, {"A": S(answers=10, callerrors=1)}, 0, True, []),
    ({"max_callerror_rate": 0.1}, {"A": S(answers=10, callerrors=2), "B": S(answers=10)}, 0, True, []),
    ({"max_callerror_rate": 0.1}, {"A": S(answers=10, callerrors=3)}, 0, False,
     ["CALLERROR rate 30.0% (3/10) is above 10.0%"]),
    ({}, {"A": S()}, 1, False, ["1 upstream connect failure(s) (limit 0)"]),
    ({"max_connect_failures": 2}, {"A": S(upstream_down=True)}, 1, True, []),
    ({"max_connect_failures": 2}, {"A": S(upstream_down=True), "B": S(upstream_down=True)}, 1, False,
     ["3 upstream connect failure(s) (limit 2)"]),
    ({}, {"A": S(answers=2, callerrors=2, rejected_boots=1)}, 0, False,
     ["1 Rejected boot(s) (limit 0), from A", "CALLERROR rate 100.0% (2/2) is above 5.0%"]),
])
def test_health(gates: dict[str, Any], signals: dict[str, ChargerSignals], connect_failures: int, ok: bool,
                reasons: list[str]) -> None:
    """A moved wave fails on Rejected boots, a CALLERROR rate or connect failures beyond the plan's limits."""
    result = health(Gates(**gates), signals, connect_failures)
    assert (result.ok, result.reasons) == (ok, reasons)
    assert result.as_dict()["figures"]["chargers"] == len(signals)
