"""Payload validation against the JSON schemas shipped in the ``ocpp`` package.

Validators are compiled once (fastjsonschema turns each schema into Python
code, an order of magnitude faster than interpreting it per frame) and cached
per (version, action, request/response).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema

from gateway.ocppj import ErrorKind, Version

_DIRS = {Version.V16: "v16", Version.V201: "v201", Version.V21: "v21"}

# Which schema keyword failed -> the OCPP error kind to answer with.
_KIND_BY_RULE = {
    "required": ErrorKind.OCCURRENCE,
    "minItems": ErrorKind.OCCURRENCE,
    "maxItems": ErrorKind.OCCURRENCE,
    "type": ErrorKind.TYPE,
    "enum": ErrorKind.PROPERTY,
    "const": ErrorKind.PROPERTY,
    "maxLength": ErrorKind.PROPERTY,
    "minLength": ErrorKind.PROPERTY,
    "minimum": ErrorKind.PROPERTY,
    "maximum": ErrorKind.PROPERTY,
    "exclusiveMinimum": ErrorKind.PROPERTY,
    "exclusiveMaximum": ErrorKind.PROPERTY,
    "multipleOf": ErrorKind.PROPERTY,
    "pattern": ErrorKind.PROPERTY,
    "format": ErrorKind.PROPERTY,
}


@dataclass(frozen=True, slots=True)
class Violation:
    """One schema violation: what kind, where (a JSON path) and why."""

    kind: ErrorKind
    path: str
    message: str
    rule: str
    keys: tuple[str | int, ...] = ()  # the path as keys and list indexes, for repairs
    value: Any = None  # the offending value
    definition: Any = None  # the schema fragment it broke

    def describe(self) -> str:
        return f"{self.path}: {self.message}"


Validator = Callable[[dict[str, Any]], Any]
_lock = threading.Lock()


# 2.1 messages that only travel as SEND (no response): their schema file has no "Request" suffix.
SEND_ONLY = {Version.V21: frozenset({"NotifyPeriodicEventStream"})}


def _schema_file(version: Version, action: str, response: bool) -> str:
    if version is Version.V16 or action in SEND_ONLY.get(version, ()):
        return f"{action}Response.json" if response else f"{action}.json"
    return f"{action}Response.json" if response else f"{action}Request.json"


@cache
def actions(version: Version) -> frozenset[str]:
    """Every action the version defines (those with a request schema)."""
    root = resources.files("ocpp") / _DIRS[version] / "schemas"
    names = set()
    for entry in root.iterdir():
        name = entry.name.removesuffix(".json")
        if version is Version.V16:
            if not name.endswith("Response"):
                names.add(name)
        elif name.endswith("Request"):
            names.add(name.removesuffix("Request"))
    return frozenset(names | SEND_ONLY.get(version, frozenset()))


@cache
def load_schema(version: Version, action: str, response: bool) -> dict[str, Any]:
    root = resources.files("ocpp") / _DIRS[version] / "schemas"
    text = (root / _schema_file(version, action, response)).read_text(encoding="utf-8-sig")
    schema: dict[str, Any] = json.loads(text)
    return schema


_compiled: dict[tuple[Version, str, bool], Validator] = {}


def validator(version: Version, action: str, response: bool) -> Validator:
    """The compiled validator for one message; compiled on first use, then cached."""
    key = (version, action, response)
    fn = _compiled.get(key)
    if fn is None:
        with _lock:
            fn = _compiled.get(key)
            if fn is None:
                # use_default=False: validation must never change the payload it checks.
                fn = fastjsonschema.compile(load_schema(version, action, response), use_default=False)
                _compiled[key] = fn
    return fn


# What every charger sends right after (re)connecting, and the bulk of steady traffic.
HOT_ACTIONS = frozenset({
    "BootNotification", "Heartbeat", "StatusNotification", "Authorize", "MeterValues",
    "StartTransaction", "StopTransaction", "TransactionEvent", "NotifyEvent",
})


def warm_up(versions: list[Version], only: frozenset[str] | None = None) -> int:
    """Compile the validators of the given versions (all actions, or ``only`` these) ahead of use."""
    n = 0
    for v in versions:
        for action in sorted(actions(v) if only is None else actions(v) & only):
            for response in (False,) if action in SEND_ONLY.get(v, ()) else (False, True):
                validator(v, action, response)
                n += 1
    return n


def validate(version: Version, action: str, payload: dict[str, Any], response: bool = False) -> Violation | None:
    """None if the payload is valid for the action, else the first violation."""
    if response and action in SEND_ONLY.get(version, ()):
        return Violation(ErrorKind.PROTOCOL, "$", f"{action} is sent as SEND and has no response", "send_only")
    try:
        validator(version, action, response)(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        keys = tuple(int(p) if p.isdigit() else p for p in (exc.path or [])[1:])
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in keys)
        rule = exc.rule or ""
        return Violation(_KIND_BY_RULE.get(rule, ErrorKind.FORMAT), path, exc.message, rule, keys, exc.value,
                         exc.definition)
    return None
