"""Chargers configured alike share one set of session limits; limits that cannot be shared still work."""

from __future__ import annotations

from gateway.connection.charger import _shared_limits
from gateway.offline import OfflinePolicy
from gateway.repair import RepairRule
from gateway.session import SessionLimits


def test_equal_limits_are_one_object_and_different_ones_stay_apart() -> None:
    """Limits built separately for two chargers configured alike come back as the same object; others do not."""
    first = _shared_limits(SessionLimits(call_timeout=12.0, offline=OfflinePolicy(max_queue=7)))
    again = _shared_limits(SessionLimits(call_timeout=12.0, offline=OfflinePolicy(max_queue=7)))
    other = _shared_limits(SessionLimits(call_timeout=13.0, offline=OfflinePolicy(max_queue=7)))
    assert again is first and other is not first and other.call_timeout == 13.0


def test_limits_with_an_unhashable_repair_rule_are_used_as_they_are() -> None:
    """A repair rule mapping to a list (an operator's table) cannot be shared: the charger gets its own limits."""
    rule = RepairRule("r1", "enum_value", "*", "*", "*", source=["a"], target={"b": 1})
    limits = SessionLimits(repair_rules=(rule,))
    assert _shared_limits(limits) is limits
