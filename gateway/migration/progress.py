"""A plan's progress and history, and how they are kept in the store.

Everything the runner knows about a plan is one ``PlanProgress``: the plan
as submitted, its waves, each selected charger's move (from which route, to
which, in what state) and the history of who moved what when. It is saved
after every step under the store state keys ``__migration__/plan/<name>...``
(``__migration__/plans`` lists the names; ``PlanBook`` says how a plan is
split), so a restarted gateway resumes the plan where it stopped.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

STATE_PREFIX = "__migration__/"
INDEX_KEY = STATE_PREFIX + "plans"

PlanStatus = Literal["running", "paused", "completed", "stopped", "aborted"]
WaveState = Literal["waiting", "gating", "moving", "observing", "done", "rolled_back", "failed"]
# moved: on the target route; pending: asked, waiting for the charger (idle, connect); rolled_back: back on
# its old route after its wave failed; failed: the estate refused the move.
MoveState = Literal["waiting", "pending", "moved", "rolled_back", "failed"]
ACTIVE: tuple[PlanStatus, ...] = ("running", "paused")


def plan_key(name: str) -> str:
    return f"{STATE_PREFIX}plan/{name}"


def control_key(name: str) -> str:
    """Where an instance that does not run the plan leaves a command for the one that does."""
    return f"{STATE_PREFIX}plan/{name}/control"


@dataclass(slots=True)
class ChargerMove:
    charger_id: str
    wave: int
    from_route: dict[str, Any] | None
    from_override: bool  # the old route was an admin override (else the config file's, restored by removal)
    to_route: dict[str, Any]
    state: MoveState = "waiting"
    reason: str | None = None
    moved_at: float | None = None


@dataclass(slots=True)
class WaveProgress:
    index: int  # 1-based, as operators count
    chargers: list[str]
    state: WaveState = "waiting"
    started_at: float | None = None
    moved_at: float | None = None
    finished_at: float | None = None
    connect_failures_before: float = 0.0
    log_position: int = 0  # the message log's newest record id when the wave started moving
    readiness: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    reason: str | None = None


@dataclass(slots=True)
class PlanProgress:
    name: str
    plan: dict[str, Any]
    actor: str
    status: PlanStatus = "running"
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    waves: list[WaveProgress] = field(default_factory=list)
    moves: dict[str, ChargerMove] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    next_wave_at: float | None = None
    reason: str | None = None

    def note(self, actor: str, outcome: str, *, wave: int | None = None, charger: str | None = None,
             from_route: dict[str, Any] | None = None, to_route: dict[str, Any] | None = None,
             reason: str | None = None) -> None:
        """Add a history entry {ts, actor, plan, wave, charger, from, to, outcome, reason}."""
        self.history.append({"ts": time.time(), "actor": actor, "plan": self.name, "wave": wave,
                             "charger": charger, "from": from_route, "to": to_route, "outcome": outcome,
                             "reason": reason})

    def counts(self) -> dict[str, int]:
        """Chargers per move state (every state present, zero included)."""
        out = dict.fromkeys(("waiting", "pending", "moved", "rolled_back", "failed"), 0)
        for move in self.moves.values():
            out[move.state] += 1
        return out

    def wave_counts(self) -> dict[str, int]:
        """Waves per state (every state present, zero included)."""
        out = dict.fromkeys(("waiting", "gating", "moving", "observing", "done", "rolled_back", "failed"), 0)
        for wave in self.waves:
            out[wave.state] += 1
        return out

    def current_wave(self) -> int | None:
        for wave in self.waves:
            if wave.state not in ("done", "rolled_back", "failed"):
                return wave.index
        return None

    def summary(self) -> dict[str, Any]:
        """The plan at a glance, as GET /api/migration/plans lists it."""
        return {"name": self.name, "status": self.status, "actor": self.actor, "reason": self.reason,
                "created_at": self.created_at, "updated_at": self.updated_at, "chargers": len(self.moves),
                "waves": len(self.waves), "current_wave": self.current_wave(), "next_wave_at": self.next_wave_at,
                "counts": self.counts(),
                "wave_states": self.wave_counts(), "route": self.plan.get("route")}

    def as_dict(self, history: int | None = None) -> dict[str, Any]:
        data = asdict(self)
        data["moves"] = list(data["moves"].values())
        if history is not None:
            data["history"] = data["history"][-history:] if history else []
        data["summary"] = self.summary()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanProgress:
        waves = [WaveProgress(**w) for w in data.get("waves", [])]
        moves = {m["charger_id"]: ChargerMove(**m) for m in data.get("moves", [])}
        kept = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k not in ("waves", "moves")}
        return cls(**kept, waves=waves, moves=moves)


class StateStore(Protocol):
    """The part of ``gateway.store.Store`` plans are kept in."""

    def save_state(self, charger_id: str, state: dict[str, Any]) -> None: ...

    async def load_state(self, charger_id: str) -> dict[str, Any] | None: ...

    async def flush(self) -> None: ...


class PlanBook:
    """Plans in the store: saved after every step, loaded at start.

    A plan is kept in pieces so that a step writes what it changed, not the
    whole plan: the plan record (``plan/<name>``: status, waves, counters),
    each wave's moves (``plan/<name>/wave/<n>``) and the history in chunks of
    ``HISTORY_CHUNK`` entries (``plan/<name>/history/<k>``). Steps within one
    event-loop turn (moves finishing together) are written as one.
    """

    HISTORY_CHUNK = 500

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.names: list[str] = []
        self._dirty: dict[str, tuple[PlanProgress, set[int]]] = {}
        self._history_saved: dict[str, int] = {}  # entries already in full chunks, per plan
        self._flush_scheduled = False

    async def load(self) -> list[PlanProgress]:
        index = await self.store.load_state(INDEX_KEY) or {}
        self.names = [str(n) for n in index.get("names", [])]
        plans = []
        for name in self.names:
            progress = await self.load_one(name)
            if progress is not None:
                plans.append(progress)
        return plans

    async def load_one(self, name: str) -> PlanProgress | None:
        """One plan as the store has it now (another gateway instance may have moved it on)."""
        key = plan_key(name)
        data = await self.store.load_state(key)
        if data is None:
            return None
        moves: list[dict[str, Any]] = []
        for wave in data.get("waves", []):
            moves.extend((await self.store.load_state(f"{key}/wave/{wave['index']}") or {}).get("moves", []))
        history: list[dict[str, Any]] = []
        for chunk in range(int(data.get("history_chunks", 0))):
            history.extend((await self.store.load_state(f"{key}/history/{chunk}") or {}).get("entries", []))
        self._history_saved[name] = len(history) - len(history) % self.HISTORY_CHUNK
        if name not in self.names:  # made on another instance: the index this one writes must keep it
            self.names.append(name)
        return PlanProgress.from_dict({**data, "moves": moves, "history": history})

    async def persist(self) -> None:
        """Write what is noted and wait until the store has it (before telling other instances to read it)."""
        self.flush()
        await self.store.flush()

    async def request(self, name: str, command: str, actor: str) -> str:
        """Leave a pause/resume/abort for the instance that runs the plan; returns the request's id."""
        request_id = uuid.uuid4().hex
        self.store.save_state(control_key(name), {"id": request_id, "command": command, "actor": actor})
        await self.store.flush()
        return request_id

    async def pending_request(self, name: str) -> dict[str, Any] | None:
        return await self.store.load_state(control_key(name))

    def save(self, progress: PlanProgress, waves: set[int] | None = None) -> None:
        """Note that ``progress`` (and the moves of ``waves``) changed; written at the end of this loop turn."""
        progress.updated_at = time.time()
        _, dirty = self._dirty.setdefault(progress.name, (progress, set()))
        dirty.update(waves or ())
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (a script): write now
                self.flush()

    def flush(self) -> None:
        """Write every noted change to the store's queue (its writer persists the latest of each key)."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, {}
        for progress, waves in dirty.values():
            key = plan_key(progress.name)
            for index in sorted(waves):
                moves = [m for m in progress.moves.values() if m.wave == index]
                self.store.save_state(f"{key}/wave/{index}", {"moves": moves})
            saved = self._history_saved.get(progress.name, 0)
            chunks = (len(progress.history) + self.HISTORY_CHUNK - 1) // self.HISTORY_CHUNK
            for chunk in range(saved // self.HISTORY_CHUNK, chunks):
                entries = progress.history[chunk * self.HISTORY_CHUNK:(chunk + 1) * self.HISTORY_CHUNK]
                self.store.save_state(f"{key}/history/{chunk}", {"entries": entries})
            self._history_saved[progress.name] = len(progress.history) - len(progress.history) % self.HISTORY_CHUNK
            data = {name: getattr(progress, name) for name in PlanProgress.__dataclass_fields__
                    if name not in ("moves", "history")}
            self.store.save_state(key, {**data, "history_chunks": chunks})
            if progress.name not in self.names:
                self.names.append(progress.name)
                self.store.save_state(INDEX_KEY, {"names": self.names})
