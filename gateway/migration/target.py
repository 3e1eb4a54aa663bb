"""``GatewayTarget``: the ``PlanTarget`` over the gateway, seen through ``gateway.estate.MigrationEstate``.

What a plan reads comes from what the estate keeps anyway: the charger
list (``describe_chargers``), the route overrides and changes, the shadow
comparison tallies, the message log (boots, the CSMS's answers) and the
metrics (upstream connect failures). Nothing is added to the relay's hot path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.config import Route
from gateway.estate import MigrationEstate
from gateway.logs import get_logger
from gateway.migration.gates import ChargerSignals
from gateway.migration.runner import MoveResult
from gateway.migration.select import ChargerFacts, boot_identity
from gateway.store import StoreError, iso_utc

LOG_PAGE = 5000  # log records read per query when following the log for a wave's health


def primary_signals(records: list[dict[str, Any]], since: float) -> tuple[int, int, int]:
    """(answers, CALLERRORs, Rejected boots) from the primary CSMS in ``records`` at or after ``since``."""
    after = iso_utc(since)
    answers = errors = rejected = 0
    for rec in records:
        if rec["peer"] != "csms" or rec["direction"] != "in" or rec["ts"] < after:
            continue
        if rec["message_type"] == "CALLERROR":
            answers += 1
            errors += 1
        elif rec["message_type"] == "CALLRESULT":
            answers += 1
            payload = rec["payload"]
            rejected += (rec["action"] == "BootNotification" and isinstance(payload, dict)
                         and payload.get("status") == "Rejected")
    return answers, errors, rejected


class GatewayTarget:
    """What migration plans need of the gateway."""

    def __init__(self, estate: MigrationEstate) -> None:
        self.estate = estate
        self.log = get_logger()

    @property
    def csms_names(self) -> set[str]:
        return set(self.estate.config.csms)

    async def chargers(self) -> list[ChargerFacts]:
        try:
            boots = await self.estate.store.latest_calls("BootNotification")
        except StoreError as exc:
            self.log.warning("migration_boots_unavailable", error=str(exc))
            boots = {}
        out = []
        for item in self.estate.describe_chargers():
            route = item.get("route")
            vendor, model, firmware = boot_identity(boots.get(item["id"]))
            out.append(ChargerFacts(item["id"], item.get("ocpp_version"), Route(**route) if route else None,
                                    vendor, model, firmware, bool(item.get("connected"))))
        return out

    def current_route(self, charger_id: str) -> tuple[Route | None, bool]:
        return self.estate.route_for(charger_id), self.estate.route_overridden(charger_id)

    async def move(self, charger_id: str, route: Route | None, *, when: str, deadline: float | None, force: bool,
                   actor: str) -> MoveResult:
        """A hot, transaction-safe route change (docs/cutover.md); its state maps one to one."""
        change = await self.estate.set_route(charger_id, route, when="now" if when == "now" else "idle",
                                             deadline=deadline, force=force, actor=actor)
        return MoveResult(change.state.value, change.reason)

    async def move_state(self, charger_id: str) -> MoveResult | None:
        change = self.estate.route_change(charger_id)
        return None if change is None else MoveResult(change.state.value, change.reason)

    async def _flushed(self) -> None:
        try:
            await self.estate.store.flush()  # what the chargers said up to now is in the log
        except StoreError as exc:
            self.log.warning("migration_signals_unflushed", error=str(exc))

    async def comparisons(self, charger_ids: Sequence[str], shadow: str) -> dict[str, ChargerSignals]:
        """The shadow comparison tallies the estate keeps per charger (field by field, gateway.compare)."""
        return {cid: ChargerSignals(*self.estate.shadow_tally(cid, shadow)) for cid in charger_ids}

    async def log_position(self) -> int:
        await self._flushed()
        try:
            newest = await self.estate.store.messages(None, limit=1)
        except StoreError:
            return 0
        return int(newest[-1]["id"]) if newest else 0

    async def health(self, since: Mapping[str, float], after: int) -> tuple[dict[str, ChargerSignals], int]:
        await self._flushed()
        mine: dict[str, list[dict[str, Any]]] = {cid: [] for cid in since}
        position = after
        while True:  # only what was logged since the last look, for every charger at once
            try:
                page = await self.estate.store.messages(None, limit=LOG_PAGE, after_id=position)
            except StoreError as exc:
                self.log.warning("migration_signals_unreadable", error=str(exc))
                break
            for rec in page:
                if rec["charger_id"] in mine:
                    mine[rec["charger_id"]].append(rec)
            if page:
                position = int(page[-1]["id"])
            if len(page) < LOG_PAGE:
                break
        down = {item["id"] for item in self.estate.describe_chargers()
                if item.get("connected") and (item.get("upstream") or {}).get("state") != "up"}
        out = {}
        for cid, records in mine.items():
            answers, errors, rejected = primary_signals(records, since[cid])
            out[cid] = ChargerSignals(0, 0, answers, errors, rejected, cid in down)
        return out, position

    def connect_failures(self, csms: str) -> float:
        value = self.estate.metrics.registry.get_sample_value(
            "ocpp_gateway_upstream_connect_attempts_total", {"csms": csms, "outcome": "failed"})
        return float(value or 0.0)
