"""Charging profiles -> the current limit in amps a vendor's API takes."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from adapters.vendor_base.model import ChargerInfo, Reading


def _amps(limit: float, unit: str, phases: int | None, reading: Reading, charger: ChargerInfo) -> float:
    if unit == "A":
        return float(limit)
    voltage = reading.voltage or float(charger.extra.get("voltage") or 230.0)
    n = phases or reading.phases or int(charger.extra.get("phases") or 3)
    return float(limit) / (voltage * max(n, 1))


def profile_limit_a(profile: dict[str, Any], now: float, reading: Reading, charger: ChargerInfo) -> float | None:
    """The per-phase current limit a stored charging profile asks for at ``now`` (None: no limit now)."""
    valid_from = profile.get("validFrom")
    valid_to = profile.get("validTo")
    if valid_from and parse_ts(valid_from) > now:
        return None
    if valid_to and parse_ts(valid_to) <= now:
        return None
    limits = []
    for schedule in profile.get("chargingSchedule", []):
        start = schedule.get("startSchedule")
        if profile.get("chargingProfileKind") == "Relative" or not start:
            origin = float(profile.get("_received", now))
        else:
            origin = parse_ts(start)
        elapsed = now - origin
        duration = schedule.get("duration")
        if profile.get("chargingProfileKind") == "Recurring" and origin <= now:
            period = 86400.0 if profile.get("recurrencyKind", "Daily") == "Daily" else 7 * 86400.0
            elapsed = math.fmod(elapsed, period)
        if elapsed < 0 or (duration is not None and elapsed >= duration):
            continue
        active = None
        for p in sorted(schedule.get("chargingSchedulePeriod", []), key=lambda p: p["startPeriod"]):
            if p["startPeriod"] <= elapsed:
                active = p
        if active is not None:
            limits.append(_amps(active["limit"], schedule.get("chargingRateUnit", "A"), active.get("numberPhases"),
                                reading, charger))
    if not limits:
        return None
    return float(math.floor(min(limits) * 10) / 10)


def parse_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
