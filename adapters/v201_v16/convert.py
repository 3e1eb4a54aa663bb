"""Pure value conversions: 2.0.1 station payloads to 1.6, and the 1.6 answers back."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from adapters.base import Refuse
from adapters.v16_v201 import tables
from adapters.v201_v16.state import State
from gateway.ocppj import ErrorKind

ENERGY = "Energy.Active.Import.Register"


def num_text(value: Decimal | float | int) -> str:
    """A JSON number as a 1.6 value string, without exponent or trailing zeros."""
    digits = format(Decimal(str(value)), "f")
    return digits.rstrip("0").rstrip(".") if "." in digits else digits


def energy_wh(sv: dict[str, Any]) -> float | None:
    """The active import energy register of a 2.0.1 sampled value in Wh, or None if it is something else."""
    if sv.get("measurand", ENERGY) != ENERGY or sv.get("phase"):
        return None
    unit = sv.get("unitOfMeasure", {})
    scale = {"Wh": 1, "kWh": 1000}.get(unit.get("unit", "Wh"))
    if scale is None:
        return None
    return float(Decimal(str(sv["value"])) * scale * (Decimal(10) ** int(unit.get("multiplier", 0))))


def last_energy(meter_values: list[dict[str, Any]], context: str | None = None) -> float | None:
    """The last energy register reading, preferring samples of ``context``."""
    found: float | None = None
    preferred: float | None = None
    for mv in meter_values:
        for sv in mv["sampledValue"]:
            wh = energy_wh(sv)
            if wh is None:
                continue
            found = wh
            if context is not None and sv.get("context") == context:
                preferred = wh
    return preferred if preferred is not None else found


def sampled_value_to_v16(sv: dict[str, Any], hertz: bool = True) -> list[dict[str, Any]]:
    """One 2.0.1 sampled value as 1.6 ones: the reading, plus a SignedData twin when it was signed.

    Nothing when 1.6 cannot name the measurand or unit. ``hertz`` is False for
    StopTransaction, whose 1.6 schema lacks that unit (the unit is then omitted).
    """
    out: dict[str, Any] = {}
    value = Decimal(str(sv["value"]))
    for key in ("context", "phase", "location"):
        if key in sv:
            out[key] = sv[key]
    if "measurand" in sv:
        measurand = tables.to_v16("measurands", sv["measurand"])
        if measurand is None:
            return []
        out["measurand"] = measurand
    if "unitOfMeasure" in sv:
        unit = str(sv["unitOfMeasure"].get("unit", "Wh"))
        multiplier = int(sv["unitOfMeasure"].get("multiplier", 0))
        unit16 = tables.unit_to_v16(unit, multiplier)
        if unit16 is None:
            unit16 = tables.unit_to_v16(unit, 0)
            if unit16 is None:
                return []
            value = value * (Decimal(10) ** multiplier)
        if unit16 != "Hertz" or hertz:
            out["unit"] = unit16
    reading = {"value": num_text(value), **out}
    signed = sv.get("signedMeterValue")
    if not signed:
        return [reading]
    return [reading, {**reading, "value": signed["signedMeterData"], "format": "SignedData"}]


def meter_values_to_v16(meter_values: list[dict[str, Any]], hertz: bool = True) -> list[dict[str, Any]]:
    out = []
    for mv in meter_values:
        sampled = [s for sv in mv["sampledValue"] for s in sampled_value_to_v16(sv, hertz)]
        if sampled:
            out.append({"timestamp": mv["timestamp"], "sampledValue": sampled})
    return out


def id_token_info(info: dict[str, Any] | None, token_type: str) -> dict[str, Any]:
    """1.6 idTagInfo -> 2.0.1 idTokenInfo (a parent id tag becomes a group token of the same type)."""
    if not info:
        return {"status": "Accepted"}
    out: dict[str, Any] = {"status": tables.to_v201("authorization_status", info["status"]) or "Invalid"}
    if "expiryDate" in info:
        out["cacheExpiryDateTime"] = info["expiryDate"]
    if info.get("parentIdTag"):
        out["groupIdToken"] = {"idToken": info["parentIdTag"], "type": token_type}
    return out


def id_tag_info_to_token_info(info: dict[str, Any], st: State, default_type: str) -> dict[str, Any]:
    """1.6 idTagInfo of a local list entry -> 2.0.1 idTokenInfo."""
    parent = info.get("parentIdTag")
    return id_token_info(info, st.token(parent, default_type)["type"] if parent else default_type)


def profile_to_v201(profile: dict[str, Any], transaction_id: str | None = None) -> dict[str, Any]:
    """1.6 csChargingProfiles -> 2.0.1 ChargingProfileType (one schedule, its id the profile's)."""
    purpose = tables.to_v201("charging_profile_purpose", profile["chargingProfilePurpose"])
    if purpose is None:
        raise Refuse(ErrorKind.PROPERTY, f"no 2.0.1 purpose for {profile['chargingProfilePurpose']}")
    sched = profile["chargingSchedule"]
    if not sched["chargingSchedulePeriod"]:
        raise Refuse(ErrorKind.OCCURRENCE, "a charging schedule without periods has no 2.0.1 form (minItems 1)")
    schedule: dict[str, Any] = {"id": profile["chargingProfileId"], "chargingRateUnit": sched["chargingRateUnit"]}
    for key in ("startSchedule", "duration", "minChargingRate"):
        if key in sched:
            schedule[key] = sched[key]
    schedule["chargingSchedulePeriod"] = [
        {k: p[k] for k in ("startPeriod", "limit", "numberPhases") if k in p} for p in sched["chargingSchedulePeriod"]
    ]
    out: dict[str, Any] = {
        "id": profile["chargingProfileId"],
        "stackLevel": profile["stackLevel"],
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": profile["chargingProfileKind"],
    }
    for key in ("recurrencyKind", "validFrom", "validTo"):
        if key in profile:
            out[key] = profile[key]
    if transaction_id is not None:
        out["transactionId"] = transaction_id
    out["chargingSchedule"] = [schedule]
    return out


def status16(message: str, status: str, default: str = "Rejected") -> str:
    """A 2.0.1 response status as the 1.6 one for ``message`` (the 1.6 action), per response_status."""
    return tables.status_to_v16(message, status) or default


def status201(message: str, status: str, default: str = "Rejected") -> str:
    return tables.status_to_v201(message, status) or default
