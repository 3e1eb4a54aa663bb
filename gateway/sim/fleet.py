"""A fleet of simulated chargers with mixed OCPP versions, for the demo and load tests.

Each charger connects, boots, reports status, then repeats: pause (with
heartbeats), authorize, run a transaction with meter values, stop. Intervals
are small and jittered so a short demo shows steady traffic. A lost
connection is retried with exponential backoff and jitter. ``Fleet.stats``
holds live counters a summary printer reads (``stats.line()``); it is plain
data updated on the event loop, so reading it from the same loop is safe.

    async with Fleet(gateway_url, count=300) as fleet:
        await asyncio.sleep(30)
        print(fleet.stats.line())
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from gateway.ocppj import Version
from gateway.sim.charger import SimCharger
from gateway.sim.peer import Counters, InvalidResponse, MalformedAnswer, OcppCallError

log = logging.getLogger(__name__)

Range = tuple[float, float]


@dataclass(slots=True)
class FleetStats:
    """Live counters of a fleet."""

    chargers: int = 0
    connected: int = 0
    connected_by_version: dict[str, int] = field(default_factory=dict)
    connects: int = 0
    disconnects: int = 0
    connect_failures: int = 0
    boots: int = 0
    sessions: int = 0  # transactions completed
    rejected: int = 0  # sessions the CSMS did not authorize
    energy_wh: int = 0
    other_errors: int = 0
    last_error: str | None = None
    counters: Counters = field(default_factory=Counters)  # frames / calls, shared by every charger
    started_at: float = field(default_factory=time.monotonic)
    ever_connected: set[str] = field(default_factory=set)  # chargers that connected at least once
    booted: set[str] = field(default_factory=set)  # chargers that completed at least one boot
    sessions_running: int = 0  # transactions under way right now

    @property
    def reconnects(self) -> int:
        """Connections beyond each charger's first: 0 when no charger ever lost its link."""
        return self.connects - len(self.ever_connected)

    @property
    def errors(self) -> int:
        """CALLERRORs received, timeouts, protocol violations seen, failed connects and other failures."""
        c = self.counters
        return c.call_errors + c.timeouts + c.violations + self.connect_failures + self.other_errors

    def _error(self, charger_id: str, exc: BaseException) -> None:
        self.last_error = f"{charger_id}: {type(exc).__name__}: {exc}"
        log.debug("fleet: %s", self.last_error)

    def snapshot(self) -> dict[str, Any]:
        c = self.counters
        return {
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "chargers": self.chargers,
            "connected": self.connected,
            "connected_by_version": dict(sorted(self.connected_by_version.items())),
            "connects": self.connects,
            "disconnects": self.disconnects,
            "boots": self.boots,
            "booted": len(self.booted),
            "reconnects": self.reconnects,
            "frames_sent": c.frames_sent,
            "frames_received": c.frames_received,
            "calls": c.calls_sent,
            "sessions": self.sessions,
            "rejected": self.rejected,
            "energy_kwh": round(self.energy_wh / 1000, 1),
            "call_errors": c.call_errors,
            "timeouts": c.timeouts,
            "violations": c.violations,
            "connect_failures": self.connect_failures,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    def line(self) -> str:
        """One human line: connected (per version), messages, sessions, errors."""
        c = self.counters
        versions = ", ".join(f"{v}: {n}" for v, n in sorted(self.connected_by_version.items()) if n)
        return (
            f"chargers {self.connected}/{self.chargers} connected ({versions or 'none'}) | "
            f"messages sent {c.frames_sent} received {c.frames_received} | "
            f"sessions {self.sessions} ({self.energy_wh / 1000:.1f} kWh) | errors {self.errors}"
        )


class Fleet:
    """Run ``count`` simulated chargers against ``url`` (a CSMS or the gateway)."""

    def __init__(
        self,
        url: str,
        count: int = 10,
        versions: Sequence[Version] = (Version.V16, Version.V201, Version.V21),
        *,
        id_prefix: str = "SIM",
        ids: Sequence[str] | None = None,
        heartbeat_interval: float = 10.0,
        session_pause: Range = (1.0, 4.0),
        meter_interval: Range = (0.3, 1.0),
        samples: tuple[int, int] = (2, 4),
        energy_wh: tuple[int, int] = (500, 8000),
        ramp_up: float | None = None,
        backoff: Range = (0.5, 10.0),
        keep_frames: int = 50,
        call_timeout: float = 15.0,
        id_tags: Sequence[str] = ("SIMTAG0001", "SIMTAG0002", "SIMTAG0003"),
        id_tag_of: Mapping[str, str] | None = None,
        password: str | None = None,
        seed: int | None = None,
    ) -> None:
        if not versions:
            raise ValueError("a fleet needs at least one OCPP version")
        names = list(ids) if ids is not None else [f"{id_prefix}{i:04d}" for i in range(1, count + 1)]
        self.url = url
        self.specs: list[tuple[str, Version]] = [(cid, versions[i % len(versions)]) for i, cid in enumerate(names)]
        self.heartbeat_interval = heartbeat_interval
        self.session_pause = session_pause
        self.meter_interval = meter_interval
        self.samples = samples
        self.energy_wh = energy_wh
        self.ramp_up = min(5.0, 0.02 * len(names)) if ramp_up is None else ramp_up
        self.backoff = backoff
        self.keep_frames = keep_frames
        self.call_timeout = call_timeout
        self.id_tags = tuple(id_tags)
        self.id_tag_of = dict(id_tag_of or {})  # chargers that always present this tag (else: one of id_tags)
        self.password = password
        self.seed = seed
        self.stats = FleetStats(chargers=len(names))
        self.chargers: dict[str, SimCharger] = {}
        self._stopping = asyncio.Event()
        self._winding_down = asyncio.Event()  # set: no new sessions start; running ones finish
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def versions(self) -> dict[str, Version]:
        """Charger id -> OCPP version (for routing / allow-lists)."""
        return dict(self.specs)

    async def start(self) -> Fleet:
        self._stopping.clear()
        self.stats.started_at = time.monotonic()
        n = max(len(self.specs), 1)
        loop = asyncio.get_running_loop()
        for i, (cid, version) in enumerate(self.specs):
            delay = self.ramp_up * i / n
            self._tasks.append(loop.create_task(self._run_one(cid, version, delay), name=f"fleet-{cid}"))
        return self

    async def stop(self) -> None:
        """Stop every charger and close its connection cleanly."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.gather(*(c.close() for c in self.chargers.values()), return_exceptions=True)

    async def wind_down(self, timeout: float) -> bool:
        """Start no new sessions and wait (at most ``timeout`` s) for the running ones to end; True if they did."""
        self._winding_down.set()
        try:
            await self.wait_for(lambda: self.stats.sessions_running == 0, timeout)
        except TimeoutError:
            return False
        return True

    async def run(self, duration: float) -> FleetStats:
        """Start, run for ``duration`` seconds, stop; returns the final stats."""
        await self.start()
        try:
            await asyncio.sleep(duration)
        finally:
            await self.stop()
        return self.stats

    async def __aenter__(self) -> Fleet:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def wait_for(self, predicate: Any, timeout: float = 30.0, poll: float = 0.05) -> Any:
        """Poll ``predicate()`` until truthy (fleet-level conditions span many chargers)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"fleet condition not met within {timeout}s; {self.stats.line()}")
            await asyncio.sleep(poll)

    # ----------------------------------------------------------------- one charger

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless the fleet stops first; True if it is stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), max(seconds, 0.0))
        except TimeoutError:
            return False
        return True

    async def _pause(self, charger: SimCharger, seconds: float) -> bool:
        """Idle on a connected charger: True if the fleet stops; ConnectionError if the link drops."""
        if self._stopping.is_set():
            return True
        if charger.closed.is_set():
            raise ConnectionError(f"{charger.charger_id}: connection lost")
        loop = asyncio.get_running_loop()
        stop = loop.create_task(self._stopping.wait())
        lost = loop.create_task(charger.closed.wait())
        try:
            done, _ = await asyncio.wait({stop, lost}, timeout=max(seconds, 0.0), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            lost.cancel()
        if stop in done:
            return True
        if lost in done:
            raise ConnectionError(f"{charger.charger_id}: connection lost")
        return False

    def _rng(self, cid: str) -> random.Random:
        return random.Random(f"{self.seed}-{cid}") if self.seed is not None else random.Random()

    async def _run_one(self, cid: str, version: Version, delay: float) -> None:
        rng = self._rng(cid)
        if await self._sleep(delay):
            return
        backoff = self.backoff[0]
        while not self._stopping.is_set():
            charger = SimCharger(
                cid,
                version,
                self.url,
                id_tag=self.id_tag_of.get(cid) or rng.choice(self.id_tags),
                counters=self.stats.counters,
                keep_frames=self.keep_frames,
                call_timeout=self.call_timeout,
                password=self.password,
                meter_start_wh=rng.randrange(0, 5_000_000),
            )
            self.chargers[cid] = charger
            try:
                await charger.connect()
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                self.stats.connect_failures += 1
                self.stats._error(cid, exc)
                if await self._sleep(backoff * rng.uniform(0.5, 1.5)):
                    return
                backoff = min(backoff * 2, self.backoff[1])
                continue
            backoff = self.backoff[0]
            self.stats.ever_connected.add(cid)
            self._connected(charger.version, +1)
            try:
                await self._life(charger, rng)
            except (ConnectionClosed, ConnectionError) as exc:
                if not self._stopping.is_set():
                    self.stats.disconnects += 1
                    self.stats._error(cid, exc)
            except (TimeoutError, OcppCallError, InvalidResponse, MalformedAnswer) as exc:
                self.stats._error(cid, exc)  # already counted by the charger's counters
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.other_errors += 1
                self.stats._error(cid, exc)
                log.exception("fleet charger %s failed", cid)
            finally:
                self._connected(charger.version, -1)
                await charger.close()
            if await self._sleep(backoff * rng.uniform(0.5, 1.5)):
                return

    def _connected(self, version: Version, delta: int) -> None:
        self.stats.connected += delta
        by = self.stats.connected_by_version
        by[version.value] = by.get(version.value, 0) + delta
        if delta > 0:
            self.stats.connects += 1

    async def _life(self, charger: SimCharger, rng: random.Random) -> None:
        while True:
            response = await charger.boot()
            if charger.booted:
                break
            if await self._pause(charger, min(float(response.get("interval") or 5), 10.0) * rng.uniform(0.8, 1.2)):
                return
        self.stats.boots += 1
        self.stats.booted.add(charger.charger_id)
        next_heartbeat = time.monotonic() + self.heartbeat_interval * rng.uniform(0.5, 1.0)
        while not self._stopping.is_set():
            pause_end = time.monotonic() + rng.uniform(*self.session_pause)
            while time.monotonic() < pause_end:
                wake = min(pause_end, next_heartbeat)
                if await self._pause(charger, wake - time.monotonic()):
                    return
                if time.monotonic() >= next_heartbeat:
                    await charger.heartbeat()
                    next_heartbeat = time.monotonic() + self.heartbeat_interval * rng.uniform(0.8, 1.2)
            if self._winding_down.is_set():
                continue
            self.stats.sessions_running += 1
            try:
                summary = await charger.run_session(
                    energy_wh=rng.randint(*self.energy_wh),
                    meter_interval=rng.uniform(*self.meter_interval),
                    samples=rng.randint(*self.samples),
                    suspend=rng.random() < 0.3,
                )
            except (OcppCallError, InvalidResponse, MalformedAnswer, TimeoutError) as exc:
                # The charger stays up; abandon the session as a real one would after errors.
                self.stats._error(charger.charger_id, exc)
                charger.transactions.clear()
                continue
            finally:
                self.stats.sessions_running -= 1
            if summary.transaction_id is not None and summary.auth_status == "Accepted":
                self.stats.sessions += 1
                self.stats.energy_wh += summary.energy_wh
            else:
                self.stats.rejected += 1
