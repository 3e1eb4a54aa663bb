"""One event-loop timer for every session's CALL timeouts.

Every CALL the gateway relays starts a timeout and, nearly always, cancels
it a few milliseconds later. With ``loop.call_later`` that is a TimerHandle,
a heap push and a cancelled entry left in the heap per CALL. ``TimerWheel``
keeps deadlines in slots of ``resolution`` seconds (a dict each) and keeps
one loop timer armed for the earliest slot: starting and cancelling are dict
operations, and a timeout fires at most ``resolution`` late.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Hashable

Callback = Callable[[], None]


class TimerWheel:
    """Deadlines in slots of ``resolution`` seconds, fired in slot order by one loop timer."""

    def __init__(self, resolution: float = 0.05) -> None:
        self.resolution = resolution
        self._slots: dict[int, dict[Hashable, Callback]] = {}
        self._where: dict[Hashable, int] = {}  # token -> its slot
        self._armed_slot: int | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._where)

    def start(self, token: Hashable, delay: float, callback: Callback) -> None:
        """Call ``callback`` in ``delay`` seconds (up to one slot later), replacing ``token``'s pending timer."""
        if token in self._where:
            self.cancel(token)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        slot = math.ceil((loop.time() + delay) / self.resolution)
        bucket = self._slots.get(slot)
        if bucket is None:
            bucket = self._slots[slot] = {}
        bucket[token] = callback
        self._where[token] = slot
        if self._armed_slot is None or slot < self._armed_slot:
            self._arm(slot)

    def cancel(self, token: Hashable) -> None:
        slot = self._where.pop(token, None)
        if slot is None:
            return
        bucket = self._slots.get(slot)
        if bucket is not None:  # None: the slot is firing right now, and _tick skips tokens no longer in _where
            del bucket[token]
            if not bucket:
                del self._slots[slot]  # the armed timer finds nothing there and re-arms for the next slot

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._armed_slot = None
        self._slots.clear()
        self._where.clear()

    def _arm(self, slot: int) -> None:
        assert self._loop is not None
        if self._handle is not None:
            self._handle.cancel()
        self._armed_slot = slot
        self._handle = self._loop.call_at(slot * self.resolution, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        self._handle = self._armed_slot = None
        now_slot = math.floor(self._loop.time() / self.resolution)
        while self._slots:
            slot = min(self._slots)
            if slot > now_slot:
                self._arm(slot)
                return
            bucket = self._slots.pop(slot)
            for token, callback in bucket.items():
                if self._where.get(token) != slot:  # cancelled or restarted by an earlier callback
                    continue
                del self._where[token]
                callback()
