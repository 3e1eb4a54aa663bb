"""Which chargers a plan selects, and in which waves: pure functions over what the estate knows.

``ChargerFacts`` is one charger as the estate describes it (id, OCPP
version, current route) plus what its last BootNotification said (vendor,
model, firmware). A criterion the estate knows nothing about for a charger
(it never booted through the gateway, say) does not match it: a plan never
moves a charger on a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from gateway.config import Route
from gateway.migration.plan import Selection


@dataclass(frozen=True, slots=True)
class ChargerFacts:
    charger_id: str
    ocpp_version: str | None = None
    route: Route | None = None
    vendor: str | None = None
    model: str | None = None
    firmware: str | None = None
    connected: bool = False


def boot_identity(payload: Mapping[str, Any] | None) -> tuple[str | None, str | None, str | None]:
    """(vendor, model, firmware) from a BootNotification request of any OCPP version."""
    if not isinstance(payload, Mapping):
        return None, None, None
    station = payload.get("chargingStation")
    if isinstance(station, Mapping):  # 2.0.1 / 2.1
        return _text(station.get("vendorName")), _text(station.get("model")), _text(station.get("firmwareVersion"))
    return (_text(payload.get("chargePointVendor")), _text(payload.get("chargePointModel")),
            _text(payload.get("firmwareVersion")))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _glob(pattern: str | None, value: str | None) -> bool:
    """Whether ``value`` matches the shell glob (case-insensitive); no pattern matches everything."""
    if pattern is None:
        return True
    return value is not None and fnmatchcase(value.casefold(), pattern.casefold())


def matches(selection: Selection, charger: ChargerFacts) -> bool:
    """Whether every criterion of ``selection`` holds for ``charger``."""
    if selection.ids is not None and charger.charger_id not in selection.ids:
        return False
    if selection.id_pattern is not None and not fnmatchcase(charger.charger_id, selection.id_pattern):
        return False
    if selection.ocpp is not None and charger.ocpp_version not in {v.value for v in selection.ocpp}:
        return False
    if selection.current_csms is not None and (charger.route is None
                                               or charger.route.primary != selection.current_csms):
        return False
    return (_glob(selection.vendor, charger.vendor) and _glob(selection.model, charger.model)
            and _glob(selection.firmware, charger.firmware))


def select(selection: Selection, chargers: Iterable[ChargerFacts], target: Route) -> tuple[list[str], list[str]]:
    """(ids to move, ids selected but already on ``target``), each sorted."""
    to_move: list[str] = []
    already: list[str] = []
    for charger in chargers:
        if matches(selection, charger):
            (already if charger.route == target else to_move).append(charger.charger_id)
    return sorted(to_move), sorted(already)


def waves(charger_ids: list[str], size: int) -> list[list[str]]:
    """The chargers cut into waves of ``size`` (the last may be smaller), in order."""
    return [charger_ids[i:i + size] for i in range(0, len(charger_ids), size)]
