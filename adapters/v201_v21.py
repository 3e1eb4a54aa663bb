"""OCPP 2.0.1 <-> 2.1, in both orientations (2.0.1 charger -> 2.1 CSMS, 2.1 charger -> 2.0.1 CSMS).

2.1 is almost a superset of 2.0.1, so the translation is derived from the two
versions' JSON schemas instead of being written message by message: a payload
is rebuilt by walking the *target* version's schema.

- Fields the target does not define are dropped (every schema sets
  ``additionalProperties: false``), e.g. 2.1's ``tariff`` or V2X period fields
  going down.
- Enumeration values the target lacks are mapped through
  mappings/v21_v201_enums.yaml (2.1 -> nearest 2.0.1). A value mapped to
  null cannot be expressed: a sampled value carrying it is dropped, anything
  else makes the message unrepresentable.
- Fields the target requires and the source may omit are derived (``_DERIVED``)
  or make the message unrepresentable (a 2.1 charging period without
  ``limit``).
- Strings longer than the target allows are truncated when they are free text
  (``_TRUNCATABLE``), otherwise unrepresentable (a 255-character 2.1 idToken
  cannot become a 36-character 2.0.1 one). Numbers the target wants as
  integers are rounded; values outside the target's minimum/maximum are
  unrepresentable.

An unrepresentable request is refused (NotSupported, naming the field); an
unrepresentable answer is reported to the originator as an InternalError. A
2.1-only message going to a 2.0.1 peer is refused with NotSupported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import mappings
from adapters import directions
from adapters.base import Context, CoverageRow, Handler, OutCall, Refuse, Side, Support
from adapters.registry import register
from gateway import schemas
from gateway.ocppj import Call, ErrorKind, MessageType, Version

ENUM_TABLE = "v21_v201_enums"

# Properties whose value is free text, safe to shorten to the target's maxLength.
_TRUNCATABLE = frozenset({"additionalInfo", "content"})
# Properties (arrays, or optional objects) whose unrepresentable items, or whole value, may be dropped
# instead of failing the message: a meter reading or a monitor 2.0.1 cannot name is left out.
_DROPPABLE = frozenset({"sampledValue", "meterValue", "signedMeterValue", "variableMonitoring", "monitor"})


class Unrepresentable(Exception):
    """A value the target version cannot express."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@cache
def enum_map() -> dict[tuple[str, str], str | None]:
    """(2.0.1 enumeration name, 2.1 value) -> 2.0.1 value, or None when there is none."""
    table: dict[tuple[str, str], str | None] = {}
    for row in mappings.rows(ENUM_TABLE):
        table[(str(row["enum"]), str(row["v21"]))] = row["v201"]
    return table


@dataclass
class _Memory:
    """What a 2.1 peer may leave out because it said it before (per charger, persisted)."""

    ns: dict[str, Any]

    @property
    def signed(self) -> dict[str, str]:
        return self.ns.setdefault("signed_meter", {})  # type: ignore[no-any-return]


Derivation = Callable[[_Memory], Any]

# Required in the target version, optional in the source: how to fill it in.
_DERIVED: dict[tuple[str, str], tuple[Derivation, str]] = {
    ("SignedMeterValueType", "signingMethod"): (
        lambda m: m.signed.get("signingMethod", ""),
        "the last signingMethod this charger sent, else empty (2.1 omits a repeated one)",
    ),
    ("SignedMeterValueType", "publicKey"): (
        lambda m: m.signed.get("publicKey", ""),
        "the last publicKey this charger sent, else empty (2.0.1's value when the key is not sent)",
    ),
    ("NetworkConnectionProfileType", "ocppVersion"): (lambda m: "OCPP20", "OCPP20, the 2.0.1 charger's own"),
    ("VariableMonitoringType", "eventNotificationType"): (
        lambda m: "PreconfiguredMonitor",
        "PreconfiguredMonitor (2.0.1 does not say who set a monitor) [D]",
    ),
}


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    name = None
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = schema["definitions"][name]
    return node, name


@dataclass
class Conversion:
    """A payload rebuilt for the target version, and what was lost or made up on the way."""

    payload: dict[str, Any]
    changes: list[str] = field(default_factory=list)


# A conversion's place in the payload, rendered only for a change note or an error: the root "$", or
# (parent, ".key") / (parent, index) for a property or an array item.
_Path = Any
# A compiled converter: (value, where it is, the conversion's state) -> the value for the target.
_Converter = Callable[[Any, _Path, "_Run"], Any]


def _render(path: _Path) -> str:
    parts = []
    while type(path) is tuple:
        path, step = path
        parts.append(f"[{step}]" if type(step) is int else step)
    return str(path) + "".join(reversed(parts))


@dataclass(slots=True)
class _Run:
    """One conversion's state: what changed, and the charger's memory."""

    memory: _Memory
    changes: list[str] = field(default_factory=list)


def _unchanged(value: Any, path: _Path, run: _Run) -> Any:
    return value


class _Compiler:
    """The target schema turned into nested converters, once per message: the walk's decisions (which
    rule applies to a node, which properties exist, what is required) are made here, not per payload."""

    def __init__(self, target: Version, schema: dict[str, Any]) -> None:
        self.target = target
        self.schema = schema
        self.done: dict[tuple[int, str, str | None], _Converter] = {}

    def node(self, node: dict[str, Any], prop: str, def_name: str | None) -> _Converter:
        key = (id(node), prop, def_name)
        found = self.done.get(key)
        if found is None:
            self.done[key] = lambda value, path, run: self.done[key](value, path, run)  # a recursive reference
            found = self.done[key] = self._build(node, prop, def_name)
        return found

    def _build(self, node: dict[str, Any], prop: str, def_name: str | None) -> _Converter:
        node, ref = _resolve(self.schema, node)
        def_name = ref or def_name
        if def_name == "CustomDataType":
            return _unchanged  # open by design in both versions
        if "enum" in node:
            return self._enum(node, def_name)
        kind = node.get("type")
        if kind == "object":
            return self._object(node, def_name)
        if kind == "array":
            return self._array(node, prop)
        if kind == "string":
            return self._string(node, prop)
        if kind in ("integer", "number"):
            return self._number(node, integer=kind == "integer")
        return _unchanged

    def _enum(self, node: dict[str, Any], def_name: str | None) -> _Converter:
        allowed, name, target = node["enum"], def_name or "", self.target.value
        fast = frozenset(v for v in allowed if type(v) is str)

        def convert_enum(value: Any, path: _Path, run: _Run) -> Any:
            if (value in fast) if type(value) is str else (value in allowed):
                return value
            table = enum_map()
            key = (name, str(value)) if (name, str(value)) in table else (name, "*")
            if key not in table:
                raise Unrepresentable(_render(path), f"{value!r} is not a {name} value in OCPP {target}")
            mapped = table[key]
            if mapped is None:
                raise Unrepresentable(_render(path), f"{value!r} has no OCPP {target} counterpart")
            run.changes.append(f"{_render(path)} {value} -> {mapped}")
            return mapped

        return convert_enum

    def _string(self, node: dict[str, Any], prop: str) -> _Converter:
        limit, target = node.get("maxLength"), self.target.value
        if limit is None:
            return _unchanged
        truncatable = prop in _TRUNCATABLE

        def convert_string(value: Any, path: _Path, run: _Run) -> Any:
            if isinstance(value, str) and len(value) > limit:
                if not truncatable:
                    raise Unrepresentable(_render(path), f"longer than the {limit} characters OCPP {target} allows")
                run.changes.append(f"{_render(path)} truncated to {limit} characters")
                return value[:limit]
            return value

        return convert_string

    def _number(self, node: dict[str, Any], integer: bool) -> _Converter:
        low, high, target = node.get("minimum"), node.get("maximum"), self.target.value

        def convert_number(value: Any, path: _Path, run: _Run) -> Any:
            if integer and isinstance(value, float):
                if not -(2**63) <= value < 2**63:
                    raise Unrepresentable(_render(path), f"{value} does not fit a 64-bit integer")
                run.changes.append(f"{_render(path)} rounded to an integer")
                value = round(value)
            if isinstance(value, int | float) and not isinstance(value, bool) and (
                    (low is not None and value < low) or (high is not None and value > high)):
                raise Unrepresentable(_render(path), f"{value} is outside what OCPP {target} allows")
            return value

        return convert_number

    def _object(self, node: dict[str, Any], def_name: str | None) -> _Converter:
        props = {key: ("." + key, self.node(sub, key, None)) for key, sub in node.get("properties", {}).items()}
        required = frozenset(node.get("required", []))
        name, target = def_name or "", self.target.value
        signed = def_name == "SignedMeterValueType"

        def convert_object(value: Any, path: _Path, run: _Run) -> Any:
            if not isinstance(value, dict):
                return value
            if signed:
                for key in ("signingMethod", "publicKey"):
                    if value.get(key):
                        run.memory.signed[key] = value[key]
            out: dict[str, Any] = {}
            for key, item in value.items():
                known = props.get(key)
                if known is None:
                    run.changes.append(f"{_render(path)}.{key} dropped")
                    continue
                step, convert_item = known
                try:
                    out[key] = convert_item(item, (path, step), run)
                except Unrepresentable as exc:
                    if key in required or key not in _DROPPABLE:
                        raise
                    run.changes.append(f"{_render(path)}.{key} dropped ({exc.reason})")
            if not required <= out.keys():
                for key in sorted(required - out.keys()):
                    derived = _DERIVED.get((name, key))
                    if derived is None:
                        raise Unrepresentable(f"{_render(path)}.{key}", f"required in OCPP {target} and not given")
                    out[key] = derived[0](run.memory)
                    run.changes.append(f"{_render(path)}.{key} derived")
            return out

        return convert_object

    def _array(self, node: dict[str, Any], prop: str) -> _Converter:
        convert_item = self.node(node.get("items", {}), prop, None)
        fewest, most, target = node.get("minItems", 0), node.get("maxItems"), self.target.value
        droppable = prop in _DROPPABLE

        def convert_array(value: Any, path: _Path, run: _Run) -> Any:
            if not isinstance(value, list):
                return value
            out = []
            for i, item in enumerate(value):
                try:
                    out.append(convert_item(item, (path, i), run))
                except Unrepresentable as exc:
                    if not droppable:
                        raise
                    run.changes.append(f"{_render((path, i))} dropped ({exc.reason})")
            if len(out) < fewest:
                raise Unrepresentable(_render(path), f"nothing left that OCPP {target} can express")
            if most is not None and len(out) > most:
                raise Unrepresentable(_render(path), f"more than {most} items")
            return out

        return convert_array


@cache
def _converter(target: Version, action: str, response: bool) -> _Converter:
    schema = schemas.load_schema(target, action, response)
    return _Compiler(target, schema).node(schema, "", f"{action}{'Response' if response else 'Request'}")


def convert(
    target: Version, action: str, payload: dict[str, Any], *, response: bool, memory: dict[str, Any] | None = None
) -> Conversion:
    """Rebuild ``payload`` (an action's request or response) for ``target``; raises Unrepresentable."""
    run = _Run(_Memory(memory if memory is not None else {}))
    result = _converter(target, action, response)(payload, "$", run)
    return Conversion(result, run.changes)


class V201V21:
    """2.0.1 <-> 2.1 for one orientation; the other orientation is the same class."""

    def __init__(self, charger_version: Version, csms_version: Version, options: dict[str, Any] | None = None) -> None:
        if {charger_version, csms_version} != {Version.V201, Version.V21}:
            raise ValueError("V201V21 translates between OCPP 2.0.1 and 2.1 only")
        self.charger_version = charger_version
        self.csms_version = csms_version
        self.options = options or {}
        self.name = "v201_v21" if charger_version is Version.V201 else "v21_v201"

    def _version(self, side: Side) -> Version:
        return self.charger_version if side is Side.CHARGER else self.csms_version

    def handle_call(self, origin: Side, call: Call, ctx: Context) -> Handler:
        source, target = self._version(origin), self._version(origin.other)
        memory = ctx.namespace(self.name)
        remembered = dict(memory.get("signed_meter", {}))
        if call.action not in schemas.actions(target):
            raise Refuse(
                ErrorKind.NOT_SUPPORTED,
                f"{call.action} does not exist in OCPP {target.value}, which the {origin.other.value} speaks",
            )
        try:
            request = convert(target, call.action, call.payload, response=False, memory=memory)
        except Unrepresentable as exc:
            raise Refuse(
                ErrorKind.NOT_SUPPORTED,
                f"{call.action} cannot be expressed in OCPP {target.value}: {exc}",
                {"path": exc.path},
            ) from None
        if memory.get("signed_meter", {}) != remembered:
            ctx.save()
        send = call.message_type is MessageType.SEND
        result = yield OutCall(origin.other, call.action, request.payload, unique_id=call.unique_id, send=send)
        if send or result is None:
            return None
        try:
            return convert(source, call.action, result, response=True, memory=memory).payload
        except Unrepresentable as exc:
            raise Refuse(
                ErrorKind.INTERNAL,
                f"the {call.action} answer from OCPP {target.value} cannot be expressed in OCPP {source.value}: {exc}",
                {"path": exc.path},
            ) from None

    def coverage(self) -> list[CoverageRow]:
        rows = []
        for side in (Side.CHARGER, Side.CSMS):
            source, target = self._version(side), self._version(side.other)
            for action in directions.sent_by(source, side):
                if action not in schemas.actions(target):
                    rows.append(
                        CoverageRow(
                            side, action, Support.NOT_SUPPORTED, "", f"OCPP {source.value} only: refused (NotSupported)"
                        )
                    )
                    continue
                notes = [f"request: {n}" for n in schema_losses(source, target, action, response=False)]
                notes += [f"response: {n}" for n in schema_losses(target, source, action, response=True)]
                # Shortening free text (status details, display text) loses no meaning worth a 'partial'.
                lossy = [n for n in notes if not n.split(": ", 1)[1].startswith("truncates")]
                support = Support.PARTIAL if lossy else Support.SUPPORTED
                rows.append(CoverageRow(side, action, support, action, "; ".join(notes)))
        return rows


# --- what the schemas say is lost: the conformance notes ---------------------------------------------------


def schema_losses(source: Version, target: Version, action: str, *, response: bool) -> list[str]:
    """What converting ``action`` from ``source`` to ``target`` drops, maps, derives or may refuse."""
    s1 = schemas.load_schema(source, action, response)
    s2 = schemas.load_schema(target, action, response)
    found: dict[str, list[str]] = {}
    for kind, text in _diff(s1, s1, s2, s2, "", None, None):
        found.setdefault(kind, []).append(text)
    return [f"{kind} {', '.join(dict.fromkeys(texts))}" for kind, texts in found.items()]


def _diff(
    s1: dict[str, Any],
    n1: dict[str, Any],
    s2: dict[str, Any],
    n2: dict[str, Any],
    path: str,
    prop: str | None,
    scope: str | None,
) -> Iterator[tuple[str, str]]:
    """(kind, text) of each difference; ``scope`` is the innermost droppable array around ``path``."""
    r1, _ = _resolve(s1, n1)
    r2, name2 = _resolve(s2, n2)
    if name2 == "CustomDataType":
        return
    where = path or "$"
    if "enum" in r2:
        table = enum_map()
        extra = [v for v in r1.get("enum", []) if v not in r2["enum"]]
        if "enum" not in r1:
            fallback = table.get((name2 or "", "*"))
            yield "maps", f"{where} (open string -> {name2}, else {fallback})"
        for v in extra:
            mapped = table.get((name2 or "", v))
            if mapped is None:
                yield (f"drops the {scope} item with" if scope else "refuses"), f"{where}={v}"
            else:
                yield "maps", f"{where} {v}->{mapped}"
    limit1, limit2 = r1.get("maxLength"), r2.get("maxLength")
    if limit1 is None and "enum" in r1:
        limit1 = max(len(v) for v in r1["enum"])
    if limit2 is not None and (limit1 is None or limit1 > limit2):
        verb = "truncates" if prop in _TRUNCATABLE else "refuses longer"
        yield verb, f"{where} (>{limit2})"
    if r2.get("type") == "integer" and r1.get("type") == "number":
        yield "rounds", where
    for bound in ("minimum", "maximum"):
        # A negative id or count is nonsense in either version: not worth a note.
        if bound in r2 and r1.get(bound) != r2[bound] and not (bound == "minimum" and r2[bound] <= 0):
            yield "refuses out-of-range", f"{where} ({bound} {r2[bound]:g})"
    if r2.get("type") == "object":
        p1, p2 = r1.get("properties", {}), r2.get("properties", {})
        q1, q2 = set(r1.get("required", [])), set(r2.get("required", []))
        for key in p1:
            if key not in p2:
                yield "drops", f"{path}.{key}".lstrip(".")
        for key in p2:
            if key == "customData":
                continue
            sub = f"{path}.{key}".lstrip(".")
            if key in q2 and key not in q1:
                derived = _DERIVED.get((name2 or "", key))
                if derived is not None:
                    yield "derives", f"{sub} = {derived[1]}"
                else:
                    yield "refuses missing", sub
            if key in p1:
                yield from _diff(s1, p1[key], s2, p2[key], sub, key, scope)
    if r2.get("type") == "array":
        inner = prop if prop in _DROPPABLE else scope
        yield from _diff(s1, r1.get("items", {}), s2, r2.get("items", {}), f"{path}[]", prop, inner)


def _factory(charger: Version, csms: Version) -> Callable[[dict[str, Any]], V201V21]:
    return lambda options: V201V21(charger, csms, options)


register(Version.V201, Version.V21, _factory(Version.V201, Version.V21))
register(Version.V21, Version.V201, _factory(Version.V21, Version.V201))
