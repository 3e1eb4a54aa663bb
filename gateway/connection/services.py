"""What a charger connection may use of the estate that owns it, and nothing more.

The estate (``gateway.app.Gateway``) builds one ``ConnectionServices`` at
start-up and hands it to every ``ChargerConnection`` it creates. A connection
never sees the estate itself: it cannot look at other chargers, change
routes or reach the admin API. Anything new a connection needs from its
owner is added here, by name, so the dependency stays visible.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.compare import ChargerComparisons
from gateway.config import GatewayConfig
from gateway.metrics import GatewayMetrics
from gateway.repair import RepairRule
from gateway.store import Store
from gateway.timers import TimerWheel


class ReplaySlots:
    """The estate's replay turns: at most ``limit`` chargers replay their offline queue at once.

    A returning CSMS would otherwise get every charger's backlog at the same moment. A connection
    ``claim``s a turn when its session asks for one (``ReplayTurn``) and gets ``granted`` called once it is
    its turn; it ``release``s the claim (held or still waiting) when the session gives the turn back.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = asyncio.Semaphore(limit)
        self.replaying = 0  # turns held now

    def claim(self, granted: Callable[[], None]) -> ReplayClaim:
        return ReplayClaim(self, granted)

    async def _take(self) -> None:
        await self._free.acquire()
        self.replaying += 1

    def _give(self) -> None:
        self.replaying -= 1
        self._free.release()


class ReplayClaim:
    """One connection's claim on a replay turn: waiting, then held, until ``release``."""

    __slots__ = ("_held", "_slots", "_waiter")

    def __init__(self, slots: ReplaySlots, granted: Callable[[], None]) -> None:
        self._slots = slots
        self._held = False
        self._waiter: asyncio.Task[None] | None = asyncio.ensure_future(self._wait(granted))

    async def _wait(self, granted: Callable[[], None]) -> None:
        await self._slots._take()
        self._held = True
        self._waiter = None
        granted()

    def release(self) -> None:
        """Give the turn back, or stop waiting for it; safe to call more than once."""
        if self._held:
            self._held = False
            self._slots._give()
        elif self._waiter is not None:
            self._waiter.cancel()
            self._waiter = None


@dataclass(frozen=True, slots=True)
class ConnectionServices:
    """The estate's services for its connections: shared, long-lived, read-mostly."""

    config: GatewayConfig
    store: Store
    metrics: GatewayMetrics
    timers: TimerWheel  # every session's CALL timeouts on one wheel
    connect_slots: asyncio.Semaphore  # bounds concurrent upstream handshakes (reconnect storms)
    client_ssl: Callable[[str], ssl.SSLContext | None]  # TLS context of a wss:// CSMS, by endpoint name
    background: Callable[[asyncio.Future[Any]], None]  # keep a fire-and-forget task alive until it ends
    reading_paused: Callable[[], bool]  # the message log's back-pressure: new sockets start paused
    repair_rules: tuple[RepairRule, ...]
    ws_max_size: int
    comparisons: dict[str, ChargerComparisons]  # shadow comparisons by charger id, kept across reconnects
    replay_slots: ReplaySlots  # offline.replay_concurrency: chargers replaying their offline queue at once
