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

    async def set_route(self, charger_id: str, route: Route | None) -> Route | None:
        """Route a charger (None: back to the config file's route); KeyError names an unknown CSMS."""

    def migration(self) -> dict[str, Any]:
        """Per charger: route, phase, compared/agreed/differed, open transactions, offline queue, readiness."""

    async def differences(self, charger_id: str, limit: int | None, action: str | None) -> list[dict[str, Any]] | None:
        """A charger's kept differing shadow exchanges, newest last (None: unknown charger)."""


class VendorHost(EstateBasics, Protocol):
    """The estate as the vendor runner sees it: virtual chargers connect to it like real ones."""

    @property
    def listen_port(self) -> int: ...
