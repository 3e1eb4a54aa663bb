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
