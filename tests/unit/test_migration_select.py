"""Which chargers a plan selects, from what the estate knows, and how they split into waves."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import Route
from gateway.migration.plan import Selection
from gateway.migration.select import ChargerFacts, boot_identity, select, waves

LEGACY, NEW = Route(primary="legacy"), Route(primary="new")
ESTATE = [
    ChargerFacts("CP-001", "1.6", LEGACY, "ACME", "One", "1.2.3"),
    ChargerFacts("CP-002", "2.0.1", LEGACY, "acme", "Two", "2.0.0"),
    ChargerFacts("CP-003", "1.6", NEW, "ACME", "One", "1.2.3"),
    ChargerFacts("WEST-01", "1.6", LEGACY, "Other", "X", None),
    ChargerFacts("WEST-02", "2.1", Route(primary="legacy", shadow="new"), None, None, None),
]


@pytest.mark.parametrize(("criteria", "to_move", "already"), [
    ({"ids": ["CP-001", "WEST-01", "NOPE"]}, ["CP-001", "WEST-01"], []),
    ({"id_pattern": "WEST-*"}, ["WEST-01", "WEST-02"], []),
    ({"vendor": "ACME"}, ["CP-001", "CP-002"], ["CP-003"]),  # case-insensitive
    ({"model": "T*"}, ["CP-002"], []),
    ({"firmware": "1.2.*"}, ["CP-001"], ["CP-003"]),
    ({"ocpp": ["2.0.1", "2.1"]}, ["CP-002", "WEST-02"], []),
    ({"current_csms": "new"}, [], ["CP-003"]),
    ({"current_csms": "legacy", "ocpp": "1.6"}, ["CP-001", "WEST-01"], []),
    ({"id_pattern": "CP-*", "vendor": "ACME", "model": "One"}, ["CP-001"], ["CP-003"]),
    ({"firmware": "*"}, ["CP-001", "CP-002"], ["CP-003"]),  # a charger that never booted matches no pattern
])
def test_selection_criteria_all_hold(criteria: dict[str, Any], to_move: list[str], already: list[str]) -> None:
    """Every criterion must hold; chargers already on the target route are set apart."""
    assert select(Selection.model_validate(criteria), ESTATE, NEW) == (to_move, already)


def test_a_shadowed_route_is_not_the_target_route() -> None:
    """A charger that only shadows the target still moves (its primary changes)."""
    assert select(Selection(ids=["WEST-02"]), ESTATE, NEW) == (["WEST-02"], [])
    assert select(Selection(ids=["WEST-02"]), ESTATE, Route(primary="legacy", shadow="new")) == ([], ["WEST-02"])


@pytest.mark.parametrize(("payload", "identity"), [
    ({"chargePointVendor": "ACME", "chargePointModel": "One", "firmwareVersion": "1.2"}, ("ACME", "One", "1.2")),
    ({"chargePointVendor": "ACME", "chargePointModel": "One"}, ("ACME", "One", None)),
    ({"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M", "firmwareVersion": "9"}},
     ("V", "M", "9")),
    ({"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}}, ("V", "M", None)),
    (None, (None, None, None)),
    ({"chargePointVendor": 7}, (None, None, None)),
])
def test_boot_identity_reads_every_version(payload: Any, identity: tuple[str | None, ...]) -> None:
    """Vendor, model and firmware come from a 1.6 or a 2.x BootNotification alike."""
    assert boot_identity(payload) == identity


def test_waves_cut_in_order() -> None:
    """Waves hold ``size`` chargers in order; the last one holds the rest."""
    ids = [f"C{i}" for i in range(7)]
    assert waves(ids, 3) == [["C0", "C1", "C2"], ["C3", "C4", "C5"], ["C6"]]
    assert waves(ids, 10) == [ids]
    assert waves([], 3) == []
