"""The timer wheel: every session timeout fires once, in deadline order, at most one slot late."""

from __future__ import annotations

import asyncio

from gateway.timers import TimerWheel


async def test_timers_fire_in_deadline_order_within_one_slot() -> None:
    """Three timers started out of order fire earliest first, none early, none more than a slot late."""
    wheel = TimerWheel(resolution=0.02)
    loop = asyncio.get_running_loop()
    start = loop.time()
    fired: list[tuple[str, float]] = []
    for name, delay in [("c", 0.15), ("a", 0.05), ("b", 0.1)]:
        wheel.start(name, delay, lambda name=name: fired.append((name, loop.time() - start)))  # type: ignore[misc]
    await asyncio.sleep(0.3)
    assert [name for name, _ in fired] == ["a", "b", "c"]
    for (_, at), delay in zip(fired, (0.05, 0.1, 0.15), strict=True):
        assert delay <= at < delay + 0.02 + 0.05  # one slot, plus scheduling slack on a busy machine
    assert len(wheel) == 0


async def test_a_cancelled_timer_never_fires() -> None:
    """cancel() before the deadline removes the timer; cancelling twice or an unknown token is harmless."""
    wheel = TimerWheel(resolution=0.01)
    fired: list[str] = []
    wheel.start("x", 0.03, lambda: fired.append("x"))
    wheel.start("y", 0.03, lambda: fired.append("y"))
    wheel.cancel("x")
    wheel.cancel("x")
    wheel.cancel("never-started")
    await asyncio.sleep(0.1)
    assert fired == ["y"]


async def test_restarting_a_token_replaces_its_deadline() -> None:
    """start() with a pending token moves it: it fires once, at the new deadline."""
    wheel = TimerWheel(resolution=0.01)
    fired: list[str] = []
    wheel.start("t", 0.02, lambda: fired.append("first"))
    wheel.start("t", 0.08, lambda: fired.append("second"))
    await asyncio.sleep(0.05)
    assert fired == []
    await asyncio.sleep(0.08)
    assert fired == ["second"]


async def test_a_callback_may_cancel_or_start_timers() -> None:
    """A firing callback that cancels a timer in the same slot, or starts a new one, is honoured."""
    wheel = TimerWheel(resolution=0.05)
    fired: list[str] = []

    def first() -> None:
        fired.append("first")
        wheel.cancel("second")
        wheel.start("third", 0.01, lambda: fired.append("third"))

    wheel.start("first", 0.01, first)
    wheel.start("second", 0.011, lambda: fired.append("second"))
    await asyncio.sleep(0.2)
    assert fired == ["first", "third"]
    assert len(wheel) == 0


async def test_close_drops_every_timer() -> None:
    """After close() nothing fires."""
    wheel = TimerWheel(resolution=0.01)
    fired: list[str] = []
    wheel.start("a", 0.02, lambda: fired.append("a"))
    wheel.close()
    await asyncio.sleep(0.05)
    assert fired == [] and len(wheel) == 0
