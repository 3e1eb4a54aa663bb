"""What the admin API and the vendor runner may use of the estate: two narrow interfaces.

``gateway.app.Gateway`` is the estate: it owns the charger server, admission,
routing and every ``ChargerConnection``. The admin API and the vendor runner
sit beside it and see it only through these Protocols, so neither can reach
into a connection or the gateway's internals, and ``Gateway`` can change
inside without touching them.
"""

from __future__ import annotations

from typing import Any, Protocol

from gateway.config import GatewayConfig, Route
from gateway.metrics import GatewayMetrics
from gateway.routing import RouteChange, When
from gateway.store import Store


class EstateBasics(Protocol):
    """What every neighbour of the estate may read: its configuration, metrics and store."""

    @property
    def config(self) -> GatewayConfig: ...

    @property
    def metrics(self) -> GatewayMetrics: ...

    @property
    def store(self) -> Store: ...

    def is_connected(self, charger_id: str) -> bool:
        """Whether a charger with this id is connected now."""


class AdminEstate(EstateBasics, Protocol):
    """The estate as the admin API sees it."""

    def connected_count(self) -> int:
        """How many chargers are connected now."""

    def store_status(self) -> dict[str, Any]:
        """This instance's name, whether the store answers, how many sessions wait for it."""

    def describe_chargers(self) -> list[dict[str, Any]]:
        """Every known charger, connected or not, as the API shows it."""

    async def refresh_record(self, charger_id: str) -> None:
        """Re-read the record of a charger not served here (another instance may have written it since)."""

    async def set_route(
        self, charger_id: str, route: Route | None, *, when: When = "idle", deadline: float | None = None,
        force: bool = False, actor: str = "api",
    ) -> RouteChange:
        """Route a charger (None: back to the config file's route) without closing its socket.

        Answers once the change is applied, rejected, cancelled or known to
        wait (pending, with the open transactions it waits for). Raises
        ``RouteError`` for a route that cannot be (unknown CSMS, primary ==
        shadow).
        """

    def route_change(self, charger_id: str) -> RouteChange | None:
        """The charger's latest route change (pending, or how it ended), if any."""

    def route_overridden(self, charger_id: str) -> bool:
        """Whether the charger's route was set through the API (rather than the config file's)."""

    def route_history(self, charger_id: str) -> list[dict[str, Any]]:
        """The charger's last few settled route changes, oldest first."""

    def migration(self) -> dict[str, Any]:
        """Per charger: route, phase, compared/agreed/differed, open transactions, offline queue, readiness."""

    async def differences(self, charger_id: str, limit: int | None, action: str | None) -> list[dict[str, Any]] | None:
        """A charger's kept differing shadow exchanges, newest last (None: unknown charger)."""

    @property
    def migration_plans(self) -> MigrationPlans: ...


class MigrationEstate(EstateBasics, Protocol):
    """The estate as migration plans see it (``gateway.migration.GatewayTarget``)."""

    def describe_chargers(self) -> list[dict[str, Any]]:
        """Every known charger, connected or not, as the API shows it."""

    def route_for(self, charger_id: str) -> Route | None:
        """The charger's effective route (None: unknown)."""

    def route_overridden(self, charger_id: str) -> bool:
        """Whether the charger's route was set through the API or a plan (rather than the config file's)."""

    async def set_route(
        self, charger_id: str, route: Route | None, *, when: When = "idle", deadline: float | None = None,
        force: bool = False, actor: str = "api",
    ) -> RouteChange:
        """Move a charger hot and transaction-safe (see ``AdminEstate.set_route``)."""

    def route_change(self, charger_id: str) -> RouteChange | None:
        """The charger's latest route change (pending or settled), if any."""

    def shadow_tally(self, charger_id: str, shadow: str) -> tuple[int, int]:
        """(compared, differed): the charger's exchanges compared with CSMS ``shadow`` (gateway.compare)."""


class VendorHost(EstateBasics, Protocol):
    """The estate as the vendor runner sees it: virtual chargers connect to it like real ones."""

    @property
    def listen_port(self) -> int: ...


class MigrationRequestError(Exception):
    """A migration-plan request refused; ``status`` is the HTTP status to answer, ``problems`` one line each."""

    def __init__(self, status: int, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.status = status
        self.problems = problems


class MigrationPlans(Protocol):
    """Migration plans as the admin API sees them (``gateway.migration.PlanRunner``); answers are JSON-ready."""

    async def preview(self, data: Any) -> dict[str, Any]:
        """What a plan would move, in which waves, and which gates hold today (nothing is stored)."""

    async def submit(self, data: Any, actor: str) -> dict[str, Any]:
        """Store a plan and start running it; MigrationRequestError for a bad or conflicting plan."""

    def plans(self) -> list[dict[str, Any]]:
        """Every plan's summary, newest first."""

    def plan(self, name: str, history: int | None = None) -> dict[str, Any] | None:
        """One plan with its waves, moves and (the last ``history``) history entries; None if unknown."""

    async def control(self, name: str, command: str, actor: str) -> dict[str, Any]:
        """pause, resume or abort a plan; MigrationRequestError when that is not possible now."""
