"""Semantic comparison of two CSMSs' answers to the same charger CALL, and what it adds up to.

Both answers are compared as the charger would receive them: the primary's
as the gateway sent it to the charger, the shadow's (or a replay
candidate's) as its own session would have sent it. So they are in one
OCPP version already, whatever versions the two CSMSs speak, and one rule
table serves every pairing.

Two answers agree where they say the same thing. They do not differ where:

- a field is absent on one side and the other holds the value that absence
  means (``defaults``: no ``idTagInfo`` on StopTransaction is "Accepted");
- a value is one each CSMS assigns on its own (``by_role``: the
  ``transactionId`` of StartTransaction): both must hold one, of the same type;
- a clock value (``clock``: ``currentTime``) is within a tolerance once each
  is taken relative to the moment its answer arrived (live shadowing gets
  both at once; a replay compares an answer from today with one from the log);
- a number is within a tolerance (``within``: the heartbeat ``interval``);
- the key is vendor data or free text (``ignore``: ``customData``, ``statusInfo``).

Every other difference has a path, both values and a kind:

    status   a ``status`` (or ``...Status``) field says something else
    value    any other field says something else
    missing  the primary's answer has a field the shadow's lacks
    extra    the shadow's answer has a field the primary's lacks
    error    one side answered with a CALLERROR (or both, with other codes)
    timeout  one side did not answer at all

A charger is ready to move when the last ``ready_after`` exchanges compared
had no difference of a blocking kind (status, error, missing, timeout);
``ChargerComparisons`` keeps that count with the tallies and the latest
differing exchanges. Pure: no I/O, no clock (times come in as arguments).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Kind = Literal["status", "value", "missing", "extra", "error", "timeout"]
KINDS: tuple[Kind, ...] = ("status", "value", "missing", "extra", "error", "timeout")
# Kinds that say the shadow would treat the charger differently; value and extra are worth reading, not blocking.
BLOCKING: frozenset[str] = frozenset({"status", "error", "missing", "timeout"})
ROOT = "$"

# An answer as the charger receives it: the OCPP-J frame ([3, id, payload] or [4, id, code, description,
# details]), or None when none came (the CSMS timed out).
Answer = list[Any] | None

# ----------------------------------------------------------------------------------------------- rules
#
# Paths are dotted keys from the payload's root; ``[]`` stands for any list index. Rules under "*" apply to
# every action. Tolerances are in seconds for clock values and in the field's own unit for numbers.

RULES: dict[str, dict[str, Any]] = {
    "*": {
        "ignore": ["customData", "statusInfo"],  # key names, at any depth: vendor extensions, free-text reasons
        "clock": {"currentTime": 120},
    },
    "BootNotification": {
        "within": {"interval": 300},  # heartbeat interval: a tuning choice, not a behaviour
    },
    "Authorize": {
        "defaults": {"idTokenInfo.chargingPriority": 0},
        "clock": {"idTagInfo.expiryDate": 3600, "idTokenInfo.cacheExpiryDateTime": 3600},
    },
    "StartTransaction": {
        "by_role": ["transactionId"],
        "clock": {"idTagInfo.expiryDate": 3600},
    },
    "StopTransaction": {
        "defaults": {"idTagInfo": {"status": "Accepted"}},  # 1.6: optional, and only judged when an idTag came
        "clock": {"idTagInfo.expiryDate": 3600},
    },
    "TransactionEvent": {
        "defaults": {"idTokenInfo": {"status": "Accepted"}, "idTokenInfo.chargingPriority": 0,
                     "chargingPriority": 0},
        "clock": {"idTokenInfo.cacheExpiryDateTime": 3600},
    },
}


@dataclass(frozen=True, slots=True)
class Rules:
    """The comparison rules of one action, with the "*" rules merged in."""

    ignore: frozenset[str] = frozenset()
    by_role: frozenset[str] = frozenset()
    clock: Mapping[str, float] = field(default_factory=dict)
    within: Mapping[str, float] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)


def _merge(*tables: Mapping[str, Any]) -> Rules:
    return Rules(
        ignore=frozenset(k for t in tables for k in t.get("ignore", ())),
        by_role=frozenset(p for t in tables for p in t.get("by_role", ())),
        clock={p: float(s) for t in tables for p, s in t.get("clock", {}).items()},
        within={p: float(s) for t in tables for p, s in t.get("within", {}).items()},
        defaults={p: v for t in tables for p, v in t.get("defaults", {}).items()},
    )


_COMPILED: dict[str, Rules] = {}


def rules_for(action: str) -> Rules:
    """The rules that apply to ``action``'s answers."""
    rules = _COMPILED.get(action)
    if rules is None:
        rules = _COMPILED[action] = _merge(RULES["*"], RULES.get(action, {}))
    return rules


# ----------------------------------------------------------------------------------------- comparison


@dataclass(frozen=True, slots=True)
class Difference:
    """One thing two answers say differently."""

    path: str
    primary: Any
    shadow: Any
    kind: Kind

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "primary": self.primary, "shadow": self.shadow, "kind": self.kind}


_ABSENT = object()


def compare_answers(action: str, primary: Answer, shadow: Answer, *, primary_at: float = 0.0,
                    shadow_at: float = 0.0) -> list[Difference]:
    """Every difference between two answers to one ``action`` CALL (empty: they agree).

    ``primary_at`` and ``shadow_at`` are when each answer arrived (unix
    seconds); clock values are compared relative to them.
    """
    if primary is None or shadow is None:
        if primary is None and shadow is None:
            return []
        return [Difference(ROOT, _summary(primary), _summary(shadow), "timeout")]
    if primary[0] != 3 or shadow[0] != 3:
        if primary[0] != 3 and shadow[0] != 3:
            if primary[2] == shadow[2]:
                return []
            return [Difference("errorCode", primary[2], shadow[2], "error")]
        return [Difference(ROOT, _summary(primary), _summary(shadow), "error")]
    out: list[Difference] = []
    _walk(rules_for(action), "", primary[2], shadow[2], primary_at, shadow_at, out)
    return out


def _summary(answer: Answer) -> Any:
    """What a whole answer says, for a difference at the root: its payload or its error."""
    if answer is None:
        return None
    if answer[0] == 3:
        return answer[2]
    return {"errorCode": answer[2], "errorDescription": answer[3] if len(answer) > 3 else ""}


def _walk(rules: Rules, path: str, p: Any, s: Any, p_at: float, s_at: float, out: list[Difference]) -> None:
    pattern = _pattern(path)
    if p is _ABSENT or s is _ABSENT:
        default = rules.defaults.get(pattern, _ABSENT)
        if default is not _ABSENT:
            _walk(rules, path, default if p is _ABSENT else p, default if s is _ABSENT else s, p_at, s_at, out)
        elif p is _ABSENT:
            out.append(Difference(path, None, s, "extra"))
        else:
            out.append(Difference(path, p, None, "missing"))
        return
    if isinstance(p, dict) and isinstance(s, dict):
        for key in [*p, *(k for k in s if k not in p)]:
            if key in rules.ignore:
                continue
            child = f"{path}.{key}" if path else key
            _walk(rules, child, p.get(key, _ABSENT), s.get(key, _ABSENT), p_at, s_at, out)
        return
    if isinstance(p, list) and isinstance(s, list):
        for i in range(max(len(p), len(s))):
            _walk(rules, f"{path}[{i}]", p[i] if i < len(p) else _ABSENT, s[i] if i < len(s) else _ABSENT,
                  p_at, s_at, out)
        return
    if _same(rules, pattern, p, s, p_at, s_at):
        return
    leaf = path.rpartition(".")[2]
    kind: Kind = "status" if leaf == "status" or leaf.endswith("Status") else "value"
    out.append(Difference(path or ROOT, p, s, kind))


def _same(rules: Rules, pattern: str, p: Any, s: Any, p_at: float, s_at: float) -> bool:
    if pattern in rules.by_role:
        return _json_type(p) == _json_type(s)
    tolerance = rules.clock.get(pattern)
    if tolerance is not None:
        pt, st = _instant(p), _instant(s)
        if pt is not None and st is not None:
            return abs((pt - p_at) - (st - s_at)) <= tolerance
    tolerance = rules.within.get(pattern)
    if tolerance is not None and _json_type(p) == _json_type(s) == "number":
        return bool(abs(p - s) <= tolerance)
    return _json_type(p) == _json_type(s) and p == s


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _instant(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None  # OCPP times carry a zone; a bare one cannot be placed
    ts = parsed.timestamp()
    return ts if math.isfinite(ts) else None


def _pattern(path: str) -> str:
    """``meterValue[3].x`` -> ``meterValue[].x``: the form rules are written in."""
    if "[" not in path:
        return path
    out, skipping = [], False
    for ch in path:
        if ch == "[":
            skipping = True
            out.append("[]")
        elif ch == "]":
            skipping = False
        elif not skipping:
            out.append(ch)
    return "".join(out)


def outcome(primary: Answer, shadow: Answer, differences: list[Difference]) -> str:
    """The metric's word for a comparison: match, differ, shadow_error or primary_error."""
    if not differences:
        return "match"
    p_ok = primary is not None and primary[0] == 3
    s_ok = shadow is not None and shadow[0] == 3
    if p_ok and not s_ok:
        return "shadow_error"
    if s_ok and not p_ok:
        return "primary_error"
    return "differ"


# ------------------------------------------------------------------------------------ per-charger tally

# The store keeps each charger's comparisons as a saved state under this prefix and its charger id.
STATE_PREFIX = "__compare__/"
DEFAULT_READY_AFTER = 20
DEFAULT_KEPT = 50
FORMAT = 1


@dataclass(slots=True)
class Tally:
    compared: int = 0
    agreed: int = 0
    differed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"compared": self.compared, "agreed": self.agreed, "differed": self.differed}


@dataclass(slots=True)
class Target:
    """One charger compared against one CSMS: tallies by action and the run of clean exchanges."""

    by_action: dict[str, Tally] = field(default_factory=dict)
    clean_run: int = 0  # exchanges compared since the last blocking difference
    last_blocking: dict[str, Any] | None = None  # {ts, action, path, kind} of the newest blocking difference

    def total(self) -> Tally:
        t = Tally()
        for a in self.by_action.values():
            t.compared += a.compared
            t.agreed += a.agreed
            t.differed += a.differed
        return t


class ChargerComparisons:
    """One charger's comparisons: tallies per CSMS and action, and its latest differing exchanges.

    ``kept`` bounds the ring of differing exchanges; ``snapshot`` and
    ``restore`` turn it into JSON for the store and back.
    """

    def __init__(self, charger_id: str, kept: int = DEFAULT_KEPT) -> None:
        self.charger_id = charger_id
        self.targets: dict[str, Target] = {}
        self.differences: deque[dict[str, Any]] = deque(maxlen=kept)
        self.last_at: float | None = None

    def record(self, ts: float, csms: str, action: str, unique_id: str | None, request: Any,
               primary: Answer, shadow: Answer, differences: list[Difference]) -> None:
        """Count one compared exchange; keep it if the answers differed."""
        target = self.targets.get(csms)
        if target is None:
            target = self.targets[csms] = Target()
        tally = target.by_action.get(action)
        if tally is None:
            tally = target.by_action[action] = Tally()
        tally.compared += 1
        self.last_at = ts
        if not differences:
            tally.agreed += 1
            target.clean_run += 1
            return
        tally.differed += 1
        blocking = next((d for d in differences if d.kind in BLOCKING), None)
        if blocking is None:
            target.clean_run += 1
        else:
            target.clean_run = 0
            target.last_blocking = {"ts": ts, "action": action, "path": blocking.path, "kind": blocking.kind}
        self.differences.append({
            "ts": ts, "csms": csms, "action": action, "unique_id": unique_id, "request": request,
            "primary": primary, "shadow": shadow, "differences": [d.as_dict() for d in differences],
        })

    def latest(self, limit: int | None = None, action: str | None = None) -> list[dict[str, Any]]:
        """The kept differing exchanges, newest last (only ``action``'s, the newest ``limit``)."""
        items = [d for d in self.differences if action is None or d["action"] == action]
        return items[-limit:] if limit else items

    def main_target(self, preferred: Iterable[str | None] = ()) -> str | None:
        """The CSMS whose comparisons count: the first of ``preferred`` compared, else the most compared."""
        for name in preferred:
            if name is not None and name in self.targets:
                return name
        if not self.targets:
            return None
        return max(self.targets, key=lambda n: self.targets[n].total().compared)

    def snapshot(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "charger_id": self.charger_id,
            "last_at": self.last_at,
            "targets": {
                name: {"by_action": {a: t.as_dict() for a, t in target.by_action.items()},
                       "clean_run": target.clean_run, "last_blocking": target.last_blocking}
                for name, target in self.targets.items()
            },
            "differences": list(self.differences),
        }

    @classmethod
    def restore(cls, data: Mapping[str, Any], kept: int = DEFAULT_KEPT) -> ChargerComparisons:
        """The comparisons a ``snapshot`` saved (a snapshot of another format starts afresh)."""
        book = cls(str(data.get("charger_id", "")), kept)
        if data.get("format") != FORMAT:
            return book
        book.last_at = data.get("last_at")
        for name, raw in data.get("targets", {}).items():
            target = book.targets[name] = Target(clean_run=int(raw.get("clean_run", 0)),
                                                 last_blocking=raw.get("last_blocking"))
            for action, t in raw.get("by_action", {}).items():
                target.by_action[action] = Tally(int(t["compared"]), int(t["agreed"]), int(t["differed"]))
        book.differences.extend(data.get("differences", []))
        return book


def readiness(comparisons: ChargerComparisons | None, csms: str | None,
              ready_after: int = DEFAULT_READY_AFTER) -> dict[str, Any]:
    """Whether a charger's traffic has been answered alike by ``csms`` long enough to move it, and why not."""
    if csms is None or comparisons is None or csms not in comparisons.targets:
        where = f"by {csms} " if csms else ""
        return {"ready": False, "reasons": [
            f"no exchange has been compared {where}yet: give the charger a shadow route or run ocpp-gateway replay"]}
    target = comparisons.targets[csms]
    compared = target.total().compared
    reasons: list[str] = []
    if compared < ready_after:
        reasons.append(f"{compared} of {ready_after} exchanges compared")
    if target.last_blocking is not None and target.clean_run < ready_after:
        b = target.last_blocking
        reasons.append(f"{b['action']} differed ({b['kind']} at {b['path']}) {target.clean_run} exchange(s) ago; "
                       f"{ready_after} clean exchanges needed since")
    return {"ready": not reasons, "reasons": reasons}
