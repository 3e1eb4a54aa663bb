"""Route changes as values: what an operator (or a migration plan) asked for, and where it stands.

The estate (``gateway.app.Gateway``) carries route changes out; this module
only names them, so the admin API, the CLI and migration plans share one
vocabulary without importing the estate. It imports nothing of the estate
or the connection layer.

A change is ``applied`` (the charger's traffic goes to the new primary),
``pending`` (waiting for the charger's open transactions to end, or for the
charger to connect), ``rejected`` (the new primary refused the charger's
boot, or the change could not be carried out: the old route stays) or
``cancelled`` (a newer change replaced it, or its deadline passed without
``force``). docs/cutover.md tells the story for operators.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from gateway.config import Route

When = Literal["idle", "now"]
WHEN_VALUES: tuple[When, ...] = ("idle", "now")


class RouteChangeState(StrEnum):
    APPLIED = "applied"
    PENDING = "pending"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class RouteError(ValueError):
    """A route change that is refused before anything happens (unknown CSMS, primary == shadow, bad deadline)."""


@dataclass(frozen=True, slots=True)
class RouteChange:
    """One route change for one charger and where it stands.

    ``route`` is the route asked for (``None``: back to the config file's
    route) and ``target`` the route that results. ``open_transactions`` are
    the transaction ids (as the current primary knows them) that keep a
    ``when: idle`` change pending, or that stay with the old primary as a
    drain after a forced change. ``deadline`` is epoch seconds.
    """

    charger_id: str
    route: Route | None
    target: Route | None
    previous: Route | None
    state: RouteChangeState
    reason: str | None = None
    open_transactions: tuple[str, ...] = ()
    when: When = "idle"
    deadline: float | None = None
    force: bool = False
    actor: str = "api"
    requested_at: float = field(default_factory=time.time)
    decided_at: float | None = None
    version: int = 0

    @property
    def settled(self) -> bool:
        """Whether the change is over (applied, rejected or cancelled) rather than waiting."""
        return self.state is not RouteChangeState.PENDING

    def settle(self, state: RouteChangeState, reason: str | None = None, **changes: Any) -> RouteChange:
        """This change, decided now."""
        return replace(self, state=state, reason=reason, decided_at=time.time(), **changes)

    def as_dict(self) -> dict[str, Any]:
        """The change as the admin API and the store show it."""
        return {
            "id": self.charger_id,
            "requested_route": _route_dict(self.route),
            "route": _route_dict(self.target),
            "previous_route": _route_dict(self.previous),
            "state": self.state.value,
            "reason": self.reason,
            "open_transactions": list(self.open_transactions),
            "when": self.when,
            "deadline": self.deadline,
            "force": self.force,
            "actor": self.actor,
            "requested_at": self.requested_at,
            "decided_at": self.decided_at,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouteChange:
        return cls(
            charger_id=str(data["id"]),
            route=_route_from(data.get("requested_route")),
            target=_route_from(data.get("route")),
            previous=_route_from(data.get("previous_route")),
            state=RouteChangeState(data["state"]),
            reason=data.get("reason"),
            open_transactions=tuple(str(t) for t in data.get("open_transactions") or ()),
            when=data.get("when", "idle"),
            deadline=data.get("deadline"),
            force=bool(data.get("force", False)),
            actor=str(data.get("actor", "api")),
            requested_at=float(data.get("requested_at") or 0.0),
            decided_at=data.get("decided_at"),
            version=int(data.get("version", 0)),
        )


def check_route(route: Route, csms_names: set[str] | dict[str, Any]) -> None:
    """Raise ``RouteError`` for a route the gateway must not carry out."""
    for role, name in (("primary", route.primary), ("shadow", route.shadow)):
        if name is not None and name not in csms_names:
            raise RouteError(f"no csms named {name!r} (the {role})")
    if route.shadow is not None and route.shadow == route.primary:
        raise RouteError(
            f"primary and shadow are both {route.primary!r}: that CSMS would get every CALL twice, "
            "StartTransaction included; drop the shadow or name another CSMS")


def _route_dict(route: Route | None) -> dict[str, Any] | None:
    return None if route is None else {"primary": route.primary, "shadow": route.shadow}


def _route_from(data: Any) -> Route | None:
    return None if data is None else Route(**data)
