"""Pure payload conversions between 1.6 and 2.0.1 structures (meter values, tokens, profiles)."""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.v16_v201 import tables

ENERGY_REGISTER = "Energy.Active.Import.Register"
_SIGNED = "SignedData"

# -- numbers ----------------------------------------------------------------------------------


def number(text: Any) -> int | float | None:
    """A 1.6 value string as a JSON number (int when integral as written), None if not a number."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        return text
    try:
        d = Decimal(str(text).strip())
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    if d == d.to_integral_value() and "." not in str(text) and "e" not in str(text).lower():
        return int(d)
    return float(d)


def tenth(x: float | int) -> float | int:
    """A limit rounded to the 0.1 steps 1.6 allows (int when whole)."""
    r = round(float(x), 1)
    return int(r) if r == int(r) else r


def text(value: Any) -> str:
    """A 2.0.1 'any JSON' value as the string 1.6 carries (strings unchanged, the rest JSON-encoded)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def strip_custom(value: Any) -> Any:
    """A 2.0.1 structure without its customData extensions (1.6 schemas allow no extra properties)."""
    if isinstance(value, dict):
        return {k: strip_custom(v) for k, v in value.items() if k != "customData"}
    if isinstance(value, list):
        return [strip_custom(v) for v in value]
    return value


# -- meter values -----------------------------------------------------------------------------


def _ocmf_reading(blob: str) -> tuple[int | float, str] | None:
    """(value, unit) of the last reading in an OCMF signed meter value, if the blob is OCMF."""
    m = re.match(r"^OCMF\|(\{.*?\})\|", blob, re.S)
    if not m:
        return None
    try:
        readings = json.loads(m.group(1)).get("RD") or []
        last = readings[-1]
        value = number(last["RV"])
        return None if value is None else (value, str(last.get("RU", "Wh")))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def _signed(blob: str) -> dict[str, Any]:
    encoding = "OCMF" if blob.startswith("OCMF|") else "Other"
    # 1.6 carries the signed blob alone: method and key are inside it (OCMF) or unknown.
    return {"signedMeterData": blob[:2500], "signingMethod": "", "encodingMethod": encoding, "publicKey": ""}


def _sample_key(sv: dict[str, Any]) -> tuple[Any, ...]:
    return (sv.get("measurand", ENERGY_REGISTER), sv.get("phase"), sv.get("location"), sv.get("context"))


def sampled_value_to_v201(sv: dict[str, Any], value: int | float | None = None) -> dict[str, Any] | None:
    """One 1.6 sampledValue as 2.0.1, or None when 2.0.1 cannot express it (measurand, non-number)."""
    out: dict[str, Any] = {}
    v = number(sv.get("value")) if value is None else value
    if v is None:
        return None
    out["value"] = v
    if "context" in sv:
        out["context"] = sv["context"]
    if "measurand" in sv:
        measurand = tables.to_v201("measurands", sv["measurand"])
        if measurand is None:
            return None
        out["measurand"] = measurand
    for field in ("phase", "location"):
        if field in sv:
            out[field] = sv[field]
    if "unit" in sv:
        unit = tables.unit_to_v201(sv["unit"])
        u, mult = unit if unit else (sv["unit"], 0)
        out["unitOfMeasure"] = {"unit": u, "multiplier": mult}
    return out


def meter_value_to_v201(mv: dict[str, Any]) -> dict[str, Any] | None:
    """One 1.6 meterValue as 2.0.1; SignedData samples ride on their Raw twin as signedMeterValue."""
    raw = [sv for sv in mv.get("sampledValue", []) if sv.get("format") != _SIGNED]
    signed = [sv for sv in mv.get("sampledValue", []) if sv.get("format") == _SIGNED]
    out: list[dict[str, Any]] = []
    by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    for sv in raw:
        converted = sampled_value_to_v201(sv)
        if converted is not None:
            out.append(converted)
            by_key.setdefault(_sample_key(sv), converted)
    for sv in signed:
        blob = str(sv.get("value", ""))
        twin = by_key.get(_sample_key(sv))
        if twin is not None and "signedMeterValue" not in twin:
            twin["signedMeterValue"] = _signed(blob)
            continue
        reading = _ocmf_reading(blob)
        if reading is None:
            continue  # 2.0.1 needs a number next to the signature; a bare non-OCMF blob has none
        value, unit = reading
        converted = sampled_value_to_v201({**sv, "unit": unit} if unit in ("Wh", "kWh") else sv, value)
        if converted is not None:
            converted["signedMeterValue"] = _signed(blob)
            out.append(converted)
    if not out:
        return None
    return {"timestamp": mv["timestamp"], "sampledValue": out}


def meter_values_to_v201(mvs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in (meter_value_to_v201(mv) for mv in mvs) if m is not None]


def energy_reading(timestamp: str, wh: int, context: str) -> dict[str, Any]:
    """A meterStart/meterStop reading (integer Wh in 1.6) as a 2.0.1 meterValue."""
    return {
        "timestamp": timestamp,
        "sampledValue": [
            {
                "value": wh,
                "context": context,
                "measurand": ENERGY_REGISTER,
                "unitOfMeasure": {"unit": "Wh", "multiplier": 0},
            }
        ],
    }


# -- tokens -----------------------------------------------------------------------------------

# How a 1.6 idTag (a bare string) is typed as a 2.0.1 idToken when neither the CSMS nor the operator
# said: the first rule that matches wins. A 2.0.1 CSMS may check the format of a typed token (CitrineOS
# refuses an "ISO14443" token that is not 8 or 14 hex digits), so a tag that fits no card shape is Local.
TOKEN_TYPE_RULES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"[0-9A-Fa-f]{8}|[0-9A-Fa-f]{14}"), "ISO14443", "8 or 14 hex digits: a 4- or 7-byte RFID card UID"),
    (re.compile(r"[0-9A-Fa-f]{16}"), "ISO15693", "16 hex digits: an 8-byte vicinity card UID"),
    (
        re.compile(r"[A-Za-z]{2}-?[A-Za-z0-9]{3}-?[A-Za-z0-9]{9}(-?[A-Za-z0-9])?"),
        "eMAID",
        "an ISO 15118 contract id: country, provider, 9-character instance, optional check digit "
        "(e.g. DE-8AC-C12345678-9)",
    ),
)
FALLBACK_TOKEN_TYPE = "Local"


def infer_token_type(id_tag: str) -> str:
    """The 2.0.1 IdTokenEnumType a 1.6 idTag's shape says it is (``TOKEN_TYPE_RULES``, else Local)."""
    for pattern, token_type, _ in TOKEN_TYPE_RULES:
        if pattern.fullmatch(id_tag):
            return token_type
    return FALLBACK_TOKEN_TYPE



def id_tag_info(info: dict[str, Any] | None) -> dict[str, Any]:
    """2.0.1 idTokenInfo -> 1.6 idTagInfo (absent info means Accepted: the CSMS raised no objection)."""
    if not info:
        return {"status": "Accepted"}
    out: dict[str, Any] = {"status": tables.to_v16("authorization_status", info["status"]) or "Invalid"}
    if "cacheExpiryDateTime" in info:
        out["expiryDate"] = info["cacheExpiryDateTime"]
    group = (info.get("groupIdToken") or {}).get("idToken")
    if group and len(group) <= 20:  # a longer group id cannot be cut without naming another token
        out["parentIdTag"] = group
    return out


# -- charging profiles ------------------------------------------------------------------------


class ProfileError(ValueError):
    """A 2.0.1 charging profile that 1.6 cannot express; the message is the reason."""


def schedule_to_v16(schedule: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"chargingRateUnit": schedule["chargingRateUnit"]}
    for field in ("duration", "startSchedule"):
        if field in schedule:
            out[field] = schedule[field]
    out["chargingSchedulePeriod"] = [
        {
            "startPeriod": p["startPeriod"],
            "limit": tenth(p["limit"]),
            **({"numberPhases": p["numberPhases"]} if "numberPhases" in p else {}),
        }
        for p in schedule["chargingSchedulePeriod"]
    ]
    if "minChargingRate" in schedule:
        out["minChargingRate"] = tenth(schedule["minChargingRate"])
    return out


def profile_to_v16(profile: dict[str, Any], transaction_int: int | None = None) -> dict[str, Any]:
    """2.0.1 ChargingProfileType -> 1.6 csChargingProfiles (first schedule; phaseToUse, salesTariff lost)."""
    purpose = tables.to_v16("charging_profile_purpose", profile["chargingProfilePurpose"])
    if purpose is None:
        raise ProfileError(f"1.6 has no {profile['chargingProfilePurpose']} profiles")
    out: dict[str, Any] = {
        "chargingProfileId": profile["id"],
        "stackLevel": profile["stackLevel"],
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": profile["chargingProfileKind"],
    }
    if transaction_int is not None:
        out["transactionId"] = transaction_int
    for field in ("recurrencyKind", "validFrom", "validTo"):
        if field in profile:
            out[field] = profile[field]
    out["chargingSchedule"] = schedule_to_v16(profile["chargingSchedule"][0])
    return out


def profile_as_installed(profile: dict[str, Any]) -> dict[str, Any]:
    """The 2.0.1 profile as a 1.6 charger holds it: first schedule, 0.1 limits, no phaseToUse or salesTariff."""
    schedule = strip_custom(profile["chargingSchedule"][0])
    schedule.pop("salesTariff", None)
    for period in schedule["chargingSchedulePeriod"]:
        period.pop("phaseToUse", None)
        period["limit"] = tenth(period["limit"])
    if "minChargingRate" in schedule:
        schedule["minChargingRate"] = tenth(schedule["minChargingRate"])
    return {**strip_custom(profile), "chargingSchedule": [schedule]}


def composite_to_v201(result: dict[str, Any], evse_id: int, duration: int, now: str) -> dict[str, Any]:
    """1.6 GetCompositeSchedule.conf -> 2.0.1 response (duration/start from the request when 1.6 omits them)."""
    out: dict[str, Any] = {"status": tables.status_to_v201("GetCompositeSchedule", result["status"]) or "Rejected"}
    sched = result.get("chargingSchedule")
    if out["status"] == "Accepted" and sched:
        out["schedule"] = {
            "evseId": evse_id,
            "duration": sched.get("duration", duration),
            "scheduleStart": result.get("scheduleStart") or sched.get("startSchedule") or now,
            "chargingRateUnit": sched["chargingRateUnit"],
            "chargingSchedulePeriod": [
                {
                    "startPeriod": p["startPeriod"],
                    "limit": p["limit"],
                    **({"numberPhases": p["numberPhases"]} if "numberPhases" in p else {}),
                }
                for p in sched["chargingSchedulePeriod"]
            ],
        }
    return out


def status_info(reason: str, info: str = "") -> dict[str, Any]:
    """A 2.0.1 statusInfo (reasonCode <= 20 characters, additionalInfo <= 512)."""
    return {"reasonCode": reason[:20], **({"additionalInfo": info[:512]} if info else {})}
