"""A migration plan as an operator writes it (YAML), validated with pydantic.

    name: move-west-to-new
    selection: {id_pattern: "WEST-*", vendor: ACME, ocpp: ["1.6"], current_csms: legacy}
    route: {primary: new}
    waves: {size: 50, pause: 10m}
    gates: {min_compared: 20, max_disagreement: 0.02, max_callerror_rate: 0.01,
            max_connect_failures: 0, max_rejected_boots: 0, observe: 5m}
    on_failure: rollback

``parse_plan`` raises ``PlanError`` whose lines name the file and the key,
like the gateway's own configuration. docs/migration-plans.md explains
every key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.config import Route, config_problems
from gateway.ocppj import Version

# The same words as gateway.routing.When: a plan passes them through to the estate's set_route.
When = Literal["idle", "now"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class PlanError(ValueError):
    """A plan that cannot be used; ``problems`` has one ``file: key: message`` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _seconds(value: Any) -> Any:
    """30, 30s, 5m, 1.5h, 2d -> seconds; anything else is left for pydantic to refuse."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError("expected a duration: seconds, or a number with s, m, h or d (e.g. 30s, 10m)")
        return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    return value


Duration = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Selection(_Model):
    """Which chargers the plan moves: every given criterion must hold (patterns are shell globs)."""

    ids: list[str] | None = None
    id_pattern: str | None = None
    model: str | None = None
    vendor: str | None = None
    firmware: str | None = None
    ocpp: list[Version] | None = None
    current_csms: str | None = None

    @field_validator("ocpp", mode="before")
    @classmethod
    def _versions(cls, v: Any) -> Any:
        """``ocpp: 1.6`` means ``ocpp: [1.6]``."""
        if v is not None and not isinstance(v, list):
            v = [v]
        if isinstance(v, list):
            return [Version.parse(str(x)) if isinstance(x, str | float | int) else x for x in v]
        return v

    @model_validator(mode="after")
    def _something(self) -> Selection:
        if not any(getattr(self, name) is not None for name in type(self).model_fields):
            raise ValueError("name at least one of ids, id_pattern, model, vendor, firmware, ocpp, current_csms")
        return self


class Waves(_Model):
    size: int = Field(ge=1)
    pause: Duration = 0.0


class Gates(_Model):
    """What must hold before a wave moves (shadow comparison) and while it settles (failure signals)."""

    min_compared: int = Field(0, ge=0)
    max_disagreement: float = Field(1.0, ge=0, le=1)
    max_callerror_rate: float = Field(0.05, ge=0, le=1)
    max_connect_failures: int = Field(0, ge=0)
    max_rejected_boots: int = Field(0, ge=0)
    observe: Duration = 60.0
    wait_ready: Duration = 0.0


class Plan(_Model):
    name: str
    selection: Selection
    route: Route
    waves: Waves
    gates: Gates = Field(default_factory=Gates)
    on_failure: Literal["stop", "rollback"] = "rollback"
    when: When = "idle"
    deadline: Duration | None = None
    force: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.match(NAME_PATTERN, v):
            raise ValueError("use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> Plan:
        if self.route.shadow is not None and self.route.shadow == self.route.primary:
            raise ValueError("route: primary and shadow name the same CSMS")
        return self


def parse_plan(data: Any, source: str = "<plan>") -> Plan:
    """The plan in ``data``; PlanError naming ``source`` and each bad key otherwise."""
    if not isinstance(data, dict):
        raise PlanError([f"{source}: expected a YAML mapping at the top level"])
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError([f"{source}: {line}" for line in config_problems(exc, Plan)]) from None


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file."""
    return parse_plan(read_plan_data(path), str(path))


def read_plan_data(path: str | Path) -> Any:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError([f"{p}: cannot read: {exc.strerror}"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlanError([f"{p}: not valid YAML: {exc}"]) from None


def check_csms(plan: Plan, known: set[str], source: str = "<plan>") -> None:
    """PlanError when the plan names a CSMS the gateway does not have."""
    problems = []
    for key, name in (("route.primary", plan.route.primary), ("route.shadow", plan.route.shadow),
                      ("selection.current_csms", plan.selection.current_csms)):
        if name is not None and name not in known:
            problems.append(f"{source}: {key}: no csms named {name!r} (known: {', '.join(sorted(known))})")
    if problems:
        raise PlanError(problems)
