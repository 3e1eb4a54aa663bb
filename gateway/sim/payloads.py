"""Payload helpers shared by the simulated peers: timestamps, schema-minimal
messages and meter readings in each version's shape.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from gateway import schemas
from gateway.ocppj import Version

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"

_MISSING = object()
# Enum values preferred when a schema-minimal message must pick one: the
# friendliest answer a peer can give to a request it does not model.
_PREFERRED = ("Accepted", "Unlocked", "Idle", "Available", "Actual")


def now_iso() -> str:
    """The current UTC time as OCPP writes it (RFC 3339, milliseconds, Z)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    while isinstance(ref, str):
        node: Any = root
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        schema = node
        ref = schema.get("$ref")
    return schema


def _minimal(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    schema = _resolve(schema, root)
    if "enum" in schema:
        values = schema["enum"]
        for preferred in _PREFERRED:
            if preferred in values:
                return preferred
        return values[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        out: dict[str, Any] = {}
        for name in schema.get("required", []):
            value = _minimal(props.get(name, {}), root)
            if value is _MISSING:
                return _MISSING
            out[name] = value
        return out
    if kind == "array":
        item = _minimal(schema.get("items", {}), root)
        if item is _MISSING:
            return _MISSING
        return [item] * int(schema.get("minItems", 0))
    if kind == "string":
        if schema.get("format") == "date-time":
            return now_iso()
        if schema.get("format") == "uri":
            return "ftp://localhost/upload"
        return "x" * int(schema.get("minLength", 0))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = max(0, int(low) + (1 if "exclusiveMinimum" in schema else 0))
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    return _MISSING


def minimal_payload(version: Version, action: str, response: bool) -> dict[str, Any] | None:
    """The smallest schema-valid payload for the message (required fields only), or None.

    Enums prefer "Accepted" (and similar friendly values), so this doubles as
    the generic answer to requests a simulator does not model.
    """
    schema = schemas.load_schema(version, action, response)
    value = _minimal(schema, schema)
    if not isinstance(value, dict) or schemas.validate(version, action, value, response) is not None:
        return None
    return value


_UNIT_SCALE = {"Wh": 1.0, "kWh": 1000.0, "W": 1.0, "kW": 1000.0}


def reading(sampled_value: dict[str, Any], version: Version, measurand: str) -> float | None:
    """The sampled value in Wh / W if it is ``measurand`` (per the version's defaults), else None."""
    if sampled_value.get("measurand", ENERGY) != measurand:
        return None
    if sampled_value.get("phase") is not None:
        return None  # per-phase readings are not the total
    try:
        value = float(sampled_value["value"])
    except (KeyError, TypeError, ValueError):
        return None
    if version is Version.V16:
        unit = sampled_value.get("unit", "Wh" if measurand == ENERGY else "W")
        return value * _UNIT_SCALE.get(unit, 1.0)
    uom = sampled_value.get("unitOfMeasure") or {}
    unit = uom.get("unit", "Wh" if measurand == ENERGY else "W")
    return value * _UNIT_SCALE.get(unit, 1.0) * 10.0 ** int(uom.get("multiplier", 0))


def meter_value(
    version: Version, energy_wh: float, power_w: float | None = None, context: str = "Sample.Periodic"
) -> dict[str, Any]:
    """One MeterValue (timestamp + energy register, optionally power) in the version's shape."""
    sampled: list[dict[str, Any]] = []
    if version is Version.V16:
        sampled.append({"value": f"{energy_wh:.0f}", "context": context, "measurand": ENERGY, "unit": "Wh"})
        if power_w is not None:
            sampled.append({"value": f"{power_w:.0f}", "context": context, "measurand": POWER, "unit": "W"})
    else:
        sampled.append(
            {"value": round(energy_wh), "context": context, "measurand": ENERGY, "unitOfMeasure": {"unit": "Wh"}}
        )
        if power_w is not None:
            sampled.append(
                {"value": round(power_w), "context": context, "measurand": POWER, "unitOfMeasure": {"unit": "W"}}
            )
    return {"timestamp": now_iso(), "sampledValue": sampled}
