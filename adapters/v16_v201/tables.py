"""Typed views of the 1.6 <-> 2.0.1 mapping tables, usable by both translation directions.

Every fact lives in ``mappings/*.yaml``; this module only reads the rows the
way ``mappings.two_way`` does (first ``both`` row per key, a one-way row for
that direction overrides it, an operator row overrides a built-in one), but
returns whole rows so extra columns (``trigger_reason``, ``charging_state``,
``multiplier``, ``v16_action``, ...) come along with the value.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mappings
from mappings import MappingError, Row

V16, V201 = "v16", "v201"

# Tables of one 1.6 enum <-> one 2.0.1 enum, each with v16 / v201 / note columns.
ENUM_TABLES = (
    "stop_reasons",
    "authorization_status",
    "connector_status",
    "units",
    "firmware_status",
    "log_status",
    "reset_type",
    "availability_type",
    "trigger_message",
    "charging_profile_purpose",
    "reading_context_trigger",
    "measurands",
)

_cache: dict[tuple[str, str], tuple[tuple[Row, ...], dict[Any, Row]]] = {}


def _is_builtin(row: Row) -> bool:
    return row.file.startswith(str(mappings.BUILTIN_DIR))


def _index(name: str, towards: str, key: Callable[[Row], Hashable]) -> dict[Any, Row]:
    """Rows of ``name`` usable when translating towards ``towards`` (v16 or v201), by ``key``."""
    source = mappings.rows(name)
    cache_key = (name, towards)
    hit = _cache.get(cache_key)
    if hit is not None and hit[0] is source:
        return hit[1]
    out: dict[Any, Row] = {}
    for row in source:
        direction = row.get("direction", "both")
        if direction not in ("both", "to_v16", "to_v201"):
            raise MappingError(f"{row.file}: row {row.index}: direction must be both, to_v16 or to_v201")
        if direction not in ("both", f"to_{towards}"):
            continue
        k = key(row)
        if direction != "both" or k not in out or not _is_builtin(row):
            out[k] = row
    _cache[cache_key] = (source, out)
    return out


def to_v201_row(name: str, v16_value: Any) -> Row | None:
    """The row that translates 1.6 ``v16_value`` of table ``name`` to 2.0.1 (None: no mapping)."""
    return _index(name, V201, lambda r: r[V16]).get(v16_value)


def to_v16_row(name: str, v201_value: Any) -> Row | None:
    """The row that translates 2.0.1 ``v201_value`` of table ``name`` to 1.6 (None: no mapping)."""
    return _index(name, V16, lambda r: r[V201]).get(v201_value)


def to_v201(name: str, v16_value: str) -> str | None:
    row = to_v201_row(name, v16_value)
    return None if row is None else str(row[V201])


def to_v16(name: str, v201_value: str) -> str | None:
    row = to_v16_row(name, v201_value)
    return None if row is None else str(row[V16])


# ---------------------------------------------------------------------------------------------
# Units: the 2.0.1 side is a pair (unit, multiplier)


def unit_to_v201(unit: str) -> tuple[str, int] | None:
    """1.6 unit -> (2.0.1 unit, multiplier); the number itself is carried unchanged."""
    row = to_v201_row("units", unit)
    return None if row is None else (str(row[V201]), int(row["multiplier"]))


def unit_to_v16(unit: str, multiplier: int) -> str | None:
    """2.0.1 (unit, multiplier) -> 1.6 unit, or None when 1.6 cannot say it without rescaling."""
    row = _index("units", V16, lambda r: (r[V201], int(r["multiplier"]))).get((unit, multiplier))
    return None if row is None else str(row[V16])


# ---------------------------------------------------------------------------------------------
# Response statuses per message pair


def status_to_v201(message: str, v16_status: str) -> str | None:
    """The 2.0.1 status for a 1.6 ``message`` response status (``message`` is the 1.6 action)."""
    row = _index("response_status", V201, lambda r: (r["message"], r[V16])).get((message, v16_status))
    return None if row is None else str(row[V201])


def status_to_v16(message: str, v201_status: str) -> str | None:
    """The 1.6 status for a 2.0.1 response status of the pair named by the 1.6 action ``message``."""
    row = _index("response_status", V16, lambda r: (r["message"], r[V201])).get((message, v201_status))
    return None if row is None else str(row[V16])


# ---------------------------------------------------------------------------------------------
# Configuration keys <-> device-model variables

LEGACY_COMPONENT = "OCPP16LegacyCtrlr"
MUTABILITIES = ("ReadOnly", "ReadWrite", "WriteOnly")


@dataclass(frozen=True, slots=True)
class ConfigVariable:
    """Where a 1.6 configuration key lives in the 2.0.1 device model."""

    key: str
    component: str
    variable: str
    instance: str | None = None  # the variable's instance
    data_type: str = "string"
    gateway_managed: bool = False  # a security setting of the link that ends at the gateway: not CSMS-writable
    max_limit: bool = False  # the 1.6 value is the variable's maxLimit; its Actual value (a count) is unknown
    mutability: str | None = None  # the 2.0.1 mutability when it is not the 1.6 key's readonly flag

    def mutability_for(self, readonly: bool) -> str:
        """The 2.0.1 mutability of this variable when the 1.6 key says ``readonly``."""
        if self.mutability:
            return self.mutability
        return "ReadOnly" if readonly or self.max_limit else "ReadWrite"

    def component_json(self) -> dict[str, Any]:
        return {"name": self.component}

    def variable_json(self) -> dict[str, Any]:
        return {"name": self.variable, **({"instance": self.instance} if self.instance else {})}


_CONFIG_KEYS: dict[tuple[str, ...], tuple[int, ConfigKeys]] = {}


class ConfigKeys:
    """The two-way config key table, built-in rows plus operator and per-charger files (later rows win)."""

    def __init__(self, table_rows: Iterable[Row]) -> None:
        self._by_key: dict[str, ConfigVariable] = {}
        self._by_var: dict[tuple[str, str, str | None], ConfigVariable] = {}
        for row in table_rows:
            direction = row.get("direction", "both")
            if direction not in ("both", "to_v16", "to_v201"):
                raise MappingError(f"{row.file}: row {row.index}: direction must be both, to_v16 or to_v201")
            value_column = row.get("value_is")
            if value_column not in (None, "maxLimit"):
                raise MappingError(f"{row.file}: row {row.index}: value_is must be maxLimit")
            mutability = row.get("mutability")
            if mutability is not None and mutability not in MUTABILITIES:
                raise MappingError(f"{row.file}: row {row.index}: mutability must be one of {', '.join(MUTABILITIES)}")
            var = ConfigVariable(
                key=str(row[V16]),
                component=str(row["component"]),
                variable=str(row["variable"]),
                instance=str(row["instance"]) if row.get("instance") else None,
                data_type=str(row.get("data_type") or "string"),
                gateway_managed=bool(row.get("gateway_managed", False)),
                max_limit=value_column == "maxLimit",
                mutability=mutability,
            )
            if direction in ("both", "to_v201"):
                self._by_key[var.key] = var
            if direction in ("both", "to_v16"):
                self._by_var[(var.component, var.variable, var.instance)] = var
        self.components = frozenset(c for c, _, _ in self._by_var) | {LEGACY_COMPONENT}

    @classmethod
    def load(cls, extra_files: Iterable[str | Path] = ()) -> ConfigKeys:
        """The built-in/operator table plus these per-charger files (same columns).

        Shared by every charger with the same files: a table per charger would cost ~12 KiB each.
        """
        files = tuple(str(p) for p in extra_files)
        generation = mappings.generation()
        cached = _CONFIG_KEYS.get(files)
        if cached is None or cached[0] != generation:
            table_rows = list(mappings.rows("config_keys"))
            for path in files:
                table_rows.extend(mappings.read_rows(Path(path)))
            cached = _CONFIG_KEYS[files] = (generation, cls(table_rows))
        return cached[1]

    def for_key(self, key: str) -> ConfigVariable:
        """The variable of a 1.6 key; a key without a row lives in the legacy component under its own name."""
        var = self._by_key.get(key)
        return var if var is not None else ConfigVariable(key, LEGACY_COMPONENT, key)

    def for_variable(self, component: str, variable: str, instance: str | None) -> ConfigVariable | None:
        """The 1.6 key of a 2.0.1 variable, or None (any legacy-component variable is the key of that name)."""
        var = self._by_var.get((component, variable, instance))
        if var is None and component == LEGACY_COMPONENT and instance is None:
            return self._by_key.get(variable) or ConfigVariable(variable, LEGACY_COMPONENT, variable)
        return var

    def rows(self) -> list[ConfigVariable]:
        return sorted(self._by_key.values(), key=lambda v: v.key)
