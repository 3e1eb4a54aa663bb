"""Gates: whether a wave may move (shadow comparison) and whether it stays (failure signals). Pure.

A wave is *ready* when every charger in it has at least ``min_compared``
shadow exchanges compared against the target CSMS and the wave's
disagreement rate (differed / compared) is at most ``max_disagreement``.
A moved wave is *healthy* while its chargers' Rejected boots, CSMS
CALLERROR rate (CALLERRORs / answers from the CSMS) and upstream connect
failures stay within their limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.migration.plan import Gates


@dataclass(frozen=True, slots=True)
class ChargerSignals:
    """What the estate saw of one charger: shadow comparisons and, since a moment, the CSMS's answers."""

    compared: int = 0
    differed: int = 0
    answers: int = 0  # CALLRESULTs and CALLERRORs from the primary CSMS
    callerrors: int = 0
    rejected_boots: int = 0
    upstream_down: bool = False  # connected to the gateway, but its link to the CSMS is not up

    def plus(self, later: ChargerSignals) -> ChargerSignals:
        """These counts and ``later``'s added up; the link state is ``later``'s."""
        return ChargerSignals(self.compared + later.compared, self.differed + later.differed,
                              self.answers + later.answers, self.callerrors + later.callerrors,
                              self.rejected_boots + later.rejected_boots, later.upstream_down)


@dataclass(frozen=True, slots=True)
class GateResult:
    ok: bool
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reasons": self.reasons, "figures": self.figures}


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def readiness(gates: Gates, signals: Mapping[str, ChargerSignals]) -> GateResult:
    """Whether a wave's chargers have been compared enough, and agreed enough, to move."""
    short = sorted(cid for cid, s in signals.items() if s.compared < gates.min_compared)
    compared = sum(s.compared for s in signals.values())
    differed = sum(s.differed for s in signals.values())
    rate = _rate(differed, compared)
    reasons = []
    if short:
        shown = ", ".join(short[:5]) + (f" and {len(short) - 5} more" if len(short) > 5 else "")
        reasons.append(f"{len(short)} charger(s) have fewer than {gates.min_compared} compared exchanges: {shown}")
    if rate > gates.max_disagreement:
        reasons.append(f"disagreement {rate:.1%} ({differed}/{compared}) is above {gates.max_disagreement:.1%}")
    figures = {"chargers": len(signals), "compared": compared, "differed": differed,
               "disagreement": round(rate, 4), "short_of_comparisons": len(short)}
    return GateResult(not reasons, reasons, figures)


def health(gates: Gates, signals: Mapping[str, ChargerSignals], connect_failures: int) -> GateResult:
    """Whether a moved wave shows no failure signal beyond the plan's limits."""
    answers = sum(s.answers for s in signals.values())
    callerrors = sum(s.callerrors for s in signals.values())
    rejected = sorted(cid for cid, s in signals.items() if s.rejected_boots)
    rejected_boots = sum(s.rejected_boots for s in signals.values())
    down = sorted(cid for cid, s in signals.items() if s.upstream_down)
    failures = connect_failures + len(down)
    rate = _rate(callerrors, answers)
    reasons = []
    if rejected_boots > gates.max_rejected_boots:
        reasons.append(f"{rejected_boots} Rejected boot(s) (limit {gates.max_rejected_boots}), from "
                       + ", ".join(rejected[:5]) + (" ..." if len(rejected) > 5 else ""))
    if rate > gates.max_callerror_rate:
        reasons.append(f"CALLERROR rate {rate:.1%} ({callerrors}/{answers}) is above {gates.max_callerror_rate:.1%}")
    if failures > gates.max_connect_failures:
        reasons.append(f"{failures} upstream connect failure(s) (limit {gates.max_connect_failures})")
    figures = {"chargers": len(signals), "answers": answers, "callerrors": callerrors,
               "callerror_rate": round(rate, 4), "rejected_boots": rejected_boots,
               "connect_failures": connect_failures, "upstream_down": len(down)}
    return GateResult(not reasons, reasons, figures)
