"""A session's timers on the estate's shared timer wheel."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from gateway.logs import get_logger
from gateway.metrics import GatewayMetrics
from gateway.session import Action, ChargerSession
from gateway.timers import TimerWheel


class SessionTimers:
    """Carries out a session's StartTimer / CancelTimer actions on a shared timer wheel.

    When a timer fires, the session's ``timer_fired`` actions are applied at once.
    """

    def __init__(self, wheel: TimerWheel, metrics: GatewayMetrics, session: ChargerSession,
                 apply: Callable[[list[Action]], None]) -> None:
        self.wheel = wheel
        self.metrics = metrics
        self.session = session
        self.apply = apply
        # The timers running, None while there are none: an idle charger would otherwise keep a set (216 bytes)
        # from its last CALL.
        self.keys: set[str] | None = None
        self.closed = False

    def start(self, key: str, delay: float) -> None:
        if not self.closed:
            if self.keys is None:
                self.keys = set()
            self.keys.add(key)
            self.wheel.start((self, key), delay, functools.partial(self._fired, key))

    def cancel(self, key: str) -> None:
        if self.keys is not None and key in self.keys:
            self._forget(key)
            self.wheel.cancel((self, key))

    def close(self) -> None:
        self.closed = True
        for key in self.keys or ():
            self.wheel.cancel((self, key))
        self.keys = None

    def _forget(self, key: str) -> None:
        if self.keys is not None:
            self.keys.discard(key)
            if not self.keys:
                self.keys = None

    def _fired(self, key: str) -> None:
        self._forget(key)
        if self.closed:
            return
        try:
            self.apply(self.session.timer_fired(key, time.time()))
        except Exception as exc:  # a timer must not take the event loop's callback down with it
            self.metrics.problem("timer_handling_error")
            get_logger(charger_id=self.session.charger_id).error("timer_handling_error", key=key, error=repr(exc),
                                                                exc_info=True)
