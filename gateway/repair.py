"""Quirk repair: fix the known ways real chargers break the letter of the schemas.

The rules come from ``mappings/repairs.yaml`` (operators add their own). A
repair is driven by the validator itself: validate, look at the violation
(rule, path, offending value, schema fragment), apply the first matching row,
validate again — until the payload is valid, no row matches, or a bound is
reached. The caller keeps the raw frame and logs the repaired one.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import mappings
from gateway import schemas
from gateway.ocppj import Version

KINDS = {
    "truncate": "maxLength",
    "enum_value": "enum",
    "enum_case": "enum",
    "coerce_number": "type",
    "coerce_string": "type",
    "datetime": "format",
    "drop_unknown_property": "additionalProperties",
}
MAX_REPAIRS = 50
_NUMBER = re.compile(r"^\s*-?\d+(\.\d+)?([eE][-+]?\d+)?\s*$")
_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(:\d{2}(\.\d+)?)?)(Z|[+-]\d{2}:?\d{2})?$")


@dataclass(frozen=True, slots=True)
class RepairRule:
    id: str
    kind: str
    version: str
    action: str
    field: str
    source: Any = None
    target: Any = None

    def matches(self, version: Version, action: str, rule: str, field: str) -> bool:
        return (
            KINDS[self.kind] == rule
            and self.version in ("*", version.value)
            and self.action in ("*", action)
            and self.field in ("*", field)
        )


# What the gateway itself may fix in a frame it produced: numbers that are integers written as floats
# (2.x schemas accept 60.0 for an integer, 1.6's do not), so a faithful copy does not become invalid.
TRANSLATION_FIXES = (RepairRule("integral-float", "coerce_number", "*", "*", "*"),)


def load_rules() -> tuple[RepairRule, ...]:
    """The repair table, checked row by row; a bad row raises MappingError naming file and row."""
    out = []
    for row in mappings.rows("repairs"):
        kind = row["kind"]
        if kind not in KINDS:
            raise mappings.MappingError(
                f"{row.file}: row {row.index}: unknown kind {kind!r} (known: {', '.join(sorted(KINDS))})"
            )
        if kind == "enum_value" and ("from" not in row.data or "to" not in row.data):
            raise mappings.MappingError(f"{row.file}: row {row.index}: enum_value needs 'from' and 'to'")
        out.append(
            RepairRule(
                id=str(row["id"]), kind=kind, version=str(row.get("version", "*")), action=str(row.get("action", "*")),
                field=str(row.get("field", "*")), source=row.get("from"), target=row.get("to"),
            )
        )
    return tuple(out)


@dataclass(slots=True)
class RepairResult:
    payload: dict[str, Any]
    applied: list[str]  # "<rule id> at <path>"
    violation: schemas.Violation | None  # what is still wrong (None: valid now)


def repair(
    version: Version, action: str, payload: dict[str, Any], rules: tuple[RepairRule, ...], response: bool = False
) -> RepairResult:
    """Apply repair rules until the payload validates or no rule helps; the input is not modified."""
    try:
        fixed = copy.deepcopy(payload)
    except RecursionError:  # absurdly deep JSON: nothing a repair rule could help with
        return RepairResult(payload, [], schemas.validate(version, action, payload, response))
    applied: list[str] = []
    for _ in range(MAX_REPAIRS):
        violation = schemas.validate(version, action, fixed, response)
        if violation is None:
            return RepairResult(fixed, applied, None)
        if not _apply_one(version, action, fixed, violation, rules, applied):
            return RepairResult(fixed, applied, violation)
    return RepairResult(fixed, applied, schemas.validate(version, action, fixed, response))


def _apply_one(
    version: Version, action: str, payload: dict[str, Any], v: schemas.Violation,
    rules: tuple[RepairRule, ...], applied: list[str],
) -> bool:
    keys = list(v.keys)
    field = next((k for k in reversed(keys) if not isinstance(k, int)), "")
    for rule in rules:
        if not rule.matches(version, action, v.rule, field):
            continue
        if _fix(rule, payload, keys, v):
            applied.append(f"{rule.id} at {v.path}")
            return True
    return False


def _parent(payload: Any, keys: list[Any]) -> tuple[Any, Any]:
    node = payload
    for k in keys[:-1]:
        node = node[k]
    return node, keys[-1] if keys else None


def _fix(rule: RepairRule, payload: dict[str, Any], keys: list[Any], v: schemas.Violation) -> bool:
    value = v.value
    definition = v.definition if isinstance(v.definition, dict) else {}
    if rule.kind == "drop_unknown_property":
        node, last = _parent(payload, [*keys, None])
        allowed = set(definition.get("properties", {}))
        extra = [k for k in node if k not in allowed] if isinstance(node, dict) else []
        for k in extra:
            del node[k]
        return bool(extra)
    if not keys:
        return False
    parent, last = _parent(payload, keys)
    if rule.kind == "truncate" and isinstance(value, str) and "maxLength" in definition:
        parent[last] = value[: definition["maxLength"]]
        return True
    if rule.kind == "enum_value" and value == rule.source:
        if rule.target is None:
            # Drop the list element that holds the bad value (e.g. the whole sampled value).
            for i in range(len(keys) - 1, -1, -1):
                if isinstance(keys[i], int):
                    holder, idx = _parent(payload, keys[: i + 1])
                    del holder[idx]
                    return True
            return False
        parent[last] = rule.target
        return True
    if rule.kind == "enum_case" and isinstance(value, str):
        for option in definition.get("enum", []):
            if isinstance(option, str) and option.lower() == value.lower() and option != value:
                parent[last] = option
                return True
        return False
    if rule.kind == "coerce_number" and isinstance(value, float) and value.is_integer():
        # 2.x accepts 60.0 where it says integer; 1.6's validators do not.
        if definition.get("type") == "integer" and -(2**63) <= value < 2**63:
            parent[last] = int(value)
            return True
        return False
    if rule.kind == "coerce_number" and isinstance(value, str) and _NUMBER.match(value):
        wanted = definition.get("type")
        number = float(value)
        if wanted == "integer" and number.is_integer():
            parent[last] = int(number)
            return True
        if wanted == "number":
            parent[last] = int(number) if number.is_integer() and "." not in value else number
            return True
        return False
    if rule.kind == "coerce_string" and isinstance(value, int | float) and not isinstance(value, bool):
        if definition.get("type") == "string":
            parent[last] = str(value)
            return True
        return False
    if rule.kind == "datetime" and isinstance(value, str) and definition.get("format") == "date-time":
        m = _DATETIME.match(value.strip())
        if m:
            date, time, seconds, _frac, zone = m.groups()
            parent[last] = f"{date}T{time}{'' if seconds else ':00'}{zone or 'Z'}"
            return True
    return False
